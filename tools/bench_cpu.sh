#!/usr/bin/env bash
# Prints the README's CPU numbers for SmolLM2-135M-Instruct Q4_1: prefill and
# decode tokens/s with 1 and 2 threads (f32 and 8-bit activations) and KV
# bytes per token. Run on an otherwise idle machine; numbers, not assertions.
#   tools/bench_cpu.sh [CTX] [N_DECODE] [REPS]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
model="$(tools/setup_deps.sh | tail -n 1)"
ctx="${1:-256}"; n_decode="${2:-64}"; reps="${3:-3}"
cmake --preset cpu >/dev/null && cmake --build --preset cpu --target edgekv_cli >/dev/null
echo "| threads | activations | prefill tok/s (ctx $ctx) | decode tok/s (after $ctx) | KV bytes/token | peak RSS MiB |"
echo "|---|---|---|---|---|---|"
for threads in 1 2; do
  for act in f32 int8; do
    flag=""; [ "$act" = int8 ] && flag="--int8-activations"
    build/cpu/samples/edgekv bench --model "$model" --ctx "$ctx" --n-decode "$n_decode" --reps "$reps" \
      --threads "$threads" $flag --json |
      python3 -c 'import json,sys; d=json.load(sys.stdin); print("| %d | %s | %.1f | %.1f | %d | %.0f |" % (d["threads"], sys.argv[1], d["prefill_tokens_per_s"], d["decode_tokens_per_s"], d["kv_bytes_per_token"], d["peak_rss_bytes"]/2**20))' "$act"
  done
done
