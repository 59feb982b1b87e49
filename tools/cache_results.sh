#!/usr/bin/env bash
# Regenerates the README's cache-family numbers on SmolLM2-135M-Instruct Q4_1:
#  1. quality: windowed perplexity (--ctx 1024, the first 4096 tokens of GPL-3)
#     for f16 and KIVI 8/4/2-bit (group 32, residual 128);
#  2. streaming: the license texts as one stream through sink (4 + 512),
#     sliding_window 512 and dynamic caches, running perplexity to CSV and a
#     plot (tools/results/streaming_ppl.png);
#  3. memory and speed: KV bytes per token of every storage format, and
#     decode tokens/s at 4096 tokens of context, KIVI vs f16.
# Numbers, not assertions; run on an otherwise idle machine.
#   tools/cache_results.sh [STREAM_TOKENS] [THREADS]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
model="$(tools/setup_deps.sh | tail -n 1)"
stream_tokens="${1:-12000}"
threads="${2:-2}"
out="$root/tools/results"
mkdir -p "$out"
cmake --preset cpu >/dev/null && cmake --build --preset cpu --target edgekv_cli >/dev/null
cli="build/cpu/samples/edgekv"
licenses=/usr/share/common-licenses
gpl3="$licenses/GPL-3"
stream_text="$(mktemp)"
trap 'rm -f "$stream_text"' EXIT
# A fixed order so the stream is the same on every machine with base-files.
cat "$licenses/GPL-3" "$licenses/LGPL-2.1" "$licenses/GPL-2" "$licenses/MPL-2.0" "$licenses/Apache-2.0" \
    "$licenses/GFDL-1.3" > "$stream_text"

kivi() { echo "--nbits $1 --q-group-size 32 --residual-length 128"; }
json() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"; }

{
echo "### Quality: windowed perplexity, GPL-3, ctx 1024, 4096 tokens ($threads threads)"
echo
echo "| KV storage | perplexity | vs f16 | KV bytes/token |"
echo "|---|---|---|---|"
base=""
for fmt in f16 q8 q4 q2; do
  case "$fmt" in
    f16) flags="--cache dynamic" ;;
    q8) flags="--cache quantized $(kivi 8)" ;;
    q4) flags="--cache quantized $(kivi 4)" ;;
    q2) flags="--cache quantized $(kivi 2)" ;;
  esac
  # shellcheck disable=SC2086
  r="$($cli perplexity --model "$model" --file "$gpl3" --ctx 1024 --max-tokens 4096 --threads "$threads" $flags --json)"
  ppl="$(echo "$r" | json 'd["perplexity"]')"
  bpt="$(echo "$r" | json 'd["kv_bytes_per_token"]')"
  [ -z "$base" ] && base="$ppl"
  echo "| $fmt | $(printf %.4f "$ppl") | $(python3 -c "print('%+.2f %%' % (100*($ppl/$base-1)))") | $bpt |"
done
echo
echo "### Streaming: $stream_tokens tokens of license texts as one stream ($threads threads)"
echo
r="$($cli perplexity --model "$model" --file "$stream_text" --ctx 1024 --max-tokens "$stream_tokens" \
     --threads "$threads" --cache dynamic --json)"
windowed="$(echo "$r" | json 'd["perplexity"]')"
echo "$windowed" > "$out/windowed_ppl.txt"  # for the plot, outside this subshell
echo "Reference: the same tokens in windows of 1024 (f16, dynamic): perplexity $(printf %.4f "$windowed")."
echo
echo "| cache | perplexity over the stream | vs windowed ctx 1024 | tokens held at the end | KV MiB at the end | peak RSS MiB |"
echo "|---|---|---|---|---|---|"
for cfg in sink sliding_window dynamic; do
  case "$cfg" in
    sink) flags="--cache sink --window-length 512 --num-sink-tokens 4" ;;
    sliding_window) flags="--cache sliding_window --window-length 512" ;;
    dynamic) flags="--cache dynamic" ;;
  esac
  # shellcheck disable=SC2086
  r="$($cli perplexity --model "$model" --file "$stream_text" --stream --max-tokens "$stream_tokens" --batch 32 \
       --report-every 256 --curve "$out/stream_$cfg.csv" --threads "$threads" $flags --json)"
  ppl="$(echo "$r" | json 'd["perplexity"]')"
  echo "| $cfg | $(printf %.4f "$ppl") | $(python3 -c "print('%+.1f %%' % (100*($ppl/$windowed-1)))") | $(echo "$r" | json 'd["cache_tokens_held"]') |" \
       "$(echo "$r" | json '"%.1f" % (d["kv_used_bytes"]/2**20)') | $(echo "$r" | json '"%.0f" % (d["peak_rss_bytes"]/2**20)') |"
done
echo
echo "### Memory and speed: 4096 tokens of context, then 64 decoded ($threads threads)"
echo
echo "| KV storage | KV bytes/token | KV MiB at 4160 tokens (residual included) | prefill tok/s | decode tok/s |"
echo "|---|---|---|---|---|"
for fmt in f16 q8 q4 q2; do
  case "$fmt" in
    f16) flags="--cache dynamic" ;;
    q8) flags="--cache quantized $(kivi 8)" ;;
    q4) flags="--cache quantized $(kivi 4)" ;;
    q2) flags="--cache quantized $(kivi 2)" ;;
  esac
  # shellcheck disable=SC2086
  r="$($cli bench --model "$model" --ctx 4096 --n-decode 64 --reps 2 --threads "$threads" $flags --json)"
  echo "| $fmt | $(echo "$r" | json 'd["kv_bytes_per_token"]') | $(echo "$r" | json '"%.1f" % (d["kv_used_bytes"]/2**20)') |" \
       "$(echo "$r" | json '"%.1f" % d["prefill_tokens_per_s"]') | $(echo "$r" | json '"%.2f" % d["decode_tokens_per_s"]') |"
done
} | tee "$out/cache_results.md"

# The plot needs matplotlib: a private venv under the cache directory.
venv="${EDGEKV_CACHE_DIR:-$root/.edgekv-cache}/venv-plot"
[ -x "$venv/bin/python" ] || { python3 -m venv "$venv" && "$venv/bin/pip" install -q matplotlib; }
"$venv/bin/python" tools/plot_streaming.py "$out" "$(cat "$out/windowed_ppl.txt")"
rm -f "$out/windowed_ppl.txt"
