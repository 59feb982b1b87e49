#!/usr/bin/env bash
# The main job: build edgekv and chat with SmolLM2-135M-Instruct on the CPU.
# Extra arguments go to the chat sample (e.g. --prompt "..." for one turn, or
# nothing for an interactive session).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
model="$(tools/setup_deps.sh | tail -n 1)"
cmake --preset cpu >/dev/null
cmake --build --preset cpu --target edgekv_chat edgekv_cli >/dev/null
if [ $# -eq 0 ] && [ ! -t 0 ]; then
  set -- --prompt "What is the capital of France?" --prompt "And what is it famous for?"
fi
exec build/cpu/samples/chat --model "$model" "$@"
