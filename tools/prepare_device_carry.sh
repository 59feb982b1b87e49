#!/usr/bin/env bash
# Prepares .device-carry/ (git-ignored) with the sources a lent GPU machine
# cannot download: name `.device-carry` in the device tool's `carry`.
#   .device-carry/llama.cpp   llama.cpp from llama-cpp-python 0.3.36's sdist (the
#                             version tools/bench_vs_llamacpp.sh uses on the CPU),
#                             trimmed to what llama-bench with GGML_CUDA needs
#                             (tools/cuda_bench.sh builds it there)
#   .device-carry/googletest  GoogleTest's sources for tools/cuda_device_check.sh
#                             (EKV_GTEST_SRC=.device-carry/googletest)
# Needs pip (downloads the sdist once into .edgekv-cache/llamacpp-sdist, or set
# EKV_LLAMACPP_SDIST to a local llama_cpp_python-0.3.36.tar.gz) and
# /usr/src/googletest (EKV_GTEST_SRC). Prints the sizes against the tool's 64 MiB.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
version=0.3.36
carry=.device-carry
sdist="${EKV_LLAMACPP_SDIST:-.edgekv-cache/llamacpp-sdist/llama_cpp_python-$version.tar.gz}"
if [ ! -f "$sdist" ]; then
  mkdir -p "$(dirname "$sdist")"
  python3 -m pip download --no-binary :all: --no-deps "llama-cpp-python==$version" -d "$(dirname "$sdist")"
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
tar -xzf "$sdist" -C "$tmp" "llama_cpp_python-$version/vendor/llama.cpp"
src="$tmp/llama_cpp_python-$version/vendor/llama.cpp"
dst="$carry/llama.cpp"
rm -rf "$dst"
mkdir -p "$dst/ggml/src" "$dst/tools" "$dst/vendor"
cp -a "$src"/{CMakeLists.txt,LICENSE,cmake,include,src,common} "$dst/"
cp -a "$src"/ggml/{CMakeLists.txt,cmake,include} "$dst/ggml/"
# ggml's core files and the two backends built (CPU, CUDA); the others are
# only added when their GGML_<NAME> option is on.
find "$src/ggml/src" -maxdepth 1 -type f -exec cp -a {} "$dst/ggml/src/" \;
cp -a "$src"/ggml/src/{ggml-cpu,ggml-cuda} "$dst/ggml/src/"
cp -a "$src/tools/llama-bench" "$dst/tools/"
cp -a "$src"/vendor/{nlohmann,sheredom,cpp-httplib} "$dst/vendor/"
# Only the parts kept: llama-bench among the tools; common's vendored libraries.
cat >"$dst/tools/CMakeLists.txt" <<'EOF'
# trimmed by edgekv's tools/prepare_device_carry.sh: llama-bench only
find_package(Threads REQUIRED)
llama_add_compile_flags()
add_subdirectory(llama-bench)
EOF
cat >"$dst/vendor/CMakeLists.txt" <<'EOF'
# trimmed by edgekv's tools/prepare_device_carry.sh: what llama-common links
add_subdirectory(nlohmann)
add_subdirectory(sheredom)
if (LLAMA_BUILD_COMMON)
    add_subdirectory(cpp-httplib)
endif()
EOF

gtest="${EKV_GTEST_SRC:-/usr/src/googletest}"
rm -rf "$carry/googletest"
if [ -d "$gtest" ]; then
  cp -a "$gtest" "$carry/googletest"
  rm -rf "$carry/googletest/docs"
else
  echo "note: no GoogleTest sources at $gtest; tools/cuda_device_check.sh will need EKV_GTEST_SRC" >&2
fi

tracked=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
carried=$(du -sb "$carry" | cut -f1)
printf '%s: llama.cpp %s B, googletest %s B; tracked files %s B; together %.1f of 64 MiB\n' "$carry" \
  "$(du -sb "$dst" | cut -f1)" "$(du -sb "$carry/googletest" 2>/dev/null | cut -f1 || echo 0)" "$tracked" \
  "$(echo "($carried + $tracked) / 1048576" | bc -l)"
