#!/usr/bin/env bash
# The main job: build edgekv and chat with SmolLM2-135M-Instruct on this
# machine's GPU when it has one. The Vulkan backend is built (setup_deps.sh
# installs its toolchain) and the chat asks for backend auto, which picks a
# GPU and otherwise the CPU (never a software rasterizer such as lavapipe);
# the first line says which device it runs on. Extra arguments go to the
# chat sample (e.g. --prompt "..." for one turn, nothing for an interactive
# session, --backend cpu to force the CPU).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
model="$(tools/setup_deps.sh | tail -n 1)"
# The vulkan preset is also the test build: leave its fault injection out of the chat.
cmake --preset vulkan -DEDGEKV_FAULT_INJECTION=OFF >/dev/null
cmake --build build/vulkan --target edgekv_chat edgekv_cli >/dev/null
if [ $# -eq 0 ] && [ ! -t 0 ]; then
  set -- --prompt "What is the capital of France?" --prompt "And what is it famous for?"
fi
exec build/vulkan/samples/chat --model "$model" --backend auto "$@"
