#!/usr/bin/env bash
# The chat server on SmolLM2-135M-Instruct: builds edgekv like tools/demo.sh
# (GPU through Vulkan when there is one) and runs `edgekv serve` on
# http://127.0.0.1:8080 — open it in a browser, or point an OpenAI client at
# http://127.0.0.1:8080/v1. Extra arguments go to `edgekv serve` (--port,
# --cache sink --window-length 512, ...; see edgekv serve --help).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
model="$(tools/setup_deps.sh | tail -n 1)"
cmake --preset vulkan -DEDGEKV_SERVER=ON -DEDGEKV_FAULT_INJECTION=OFF >/dev/null
cmake --build build/vulkan --target edgekv_cli >/dev/null
exec build/vulkan/samples/edgekv serve --model "$model" --backend auto "$@"
