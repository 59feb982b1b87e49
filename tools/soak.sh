#!/usr/bin/env bash
# The full long-stream soak (issue 18): streams TOKENS (default 100,000)
# tokens of text through a sink cache (4 sinks, window 512) and a 2-bit KIVI
# sink cache of SmolLM2-135M-Instruct, printing the cache's bytes, RSS and
# peak RSS every EVERY (default 5,000) tokens, and failing if either grows
# once the window is full. CI runs the same test on 3,000 tokens.
#   tools/soak.sh [TOKENS] [EVERY]      (about 15-25 minutes on 2 cores)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
model="$(tools/setup_deps.sh | tail -n 1)"
cmake --preset cpu >/dev/null && cmake --build --preset cpu --target edgekv_tests >/dev/null
EKV_SMOLLM2_GGUF="$model" EKV_FIXTURES_DIR=tests/fixtures EKV_SOAK_TOKENS="${1:-100000}" EKV_SOAK_EVERY="${2:-5000}" \
  build/cpu/tests/edgekv_tests --gtest_filter='LongStreamSoak.*'
