#!/usr/bin/env bash
# The main job: build edgekv and chat with SmolLM2-135M-Instruct on this
# machine's GPU when it has one. The Vulkan backend is built (setup_deps.sh
# installs its toolchain), and the CUDA backend too where an NVIDIA driver is
# loaded (nvcc from the system, else from PyPI into the cache folder); the
# chat asks for backend auto, which picks CUDA, then a Vulkan GPU, and
# otherwise the CPU (never a software rasterizer such as lavapipe); the first
# line says which device it runs on. Extra arguments go to the
# chat sample (e.g. --prompt "..." for one turn, nothing for an interactive
# session, --backend cpu to force the CPU).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
cuda=OFF setup=()
if [ -r /proc/driver/nvidia/version ]; then cuda=ON setup=(--cuda); fi
model="$(tools/setup_deps.sh "${setup[@]}" | tail -n 1)"
# The vulkan preset is also the test build: leave its fault injection out of the chat.
cmake --preset vulkan -DEDGEKV_FAULT_INJECTION=OFF -DEDGEKV_CUDA=$cuda >/dev/null
cmake --build build/vulkan --target edgekv_chat edgekv_cli >/dev/null
if [ $# -eq 0 ] && [ ! -t 0 ]; then
  set -- --prompt "What is the capital of France?" --prompt "And what is it famous for?"
fi
exec build/vulkan/samples/chat --model "$model" --backend auto "$@"
