#!/usr/bin/env bash
# edgekv's CUDA backend against llama.cpp's CUDA build (llama-bench) on the
# same GGUF files, on a machine with an NVIDIA GPU (the device tool's lent
# H100/H200). Synthetic Llama 1B/3B (8B when the budget allows) in Q4_0 and
# Q4_K_M are generated there (tools/gen_synthetic_llama.py: a real model does
# not fit the 64 MiB the tool carries). llama.cpp's sources come from
# .device-carry/llama.cpp (tools/prepare_device_carry.sh; carry .device-carry).
#
# Measures decode tok/s at each depth (edgekv f16 / KIVI-4 / KIVI-2 KV; llama.cpp
# f16 / q8_0 / q4_0 KV, flash attention on, all layers on the GPU), prefill
# pp512, edgekv with CUDA graphs off (EKV_CUDA_GRAPHS=0) and with the KV in
# host memory (offloaded cache: decode against the same f16 KV on the GPU; the
# copy ahead should bring it near max(compute, copy)), and the bandwidth
# floor: bytes read per decoded token / the GPU's measured copy bandwidth.
# Logs and results (edgekv.jsonl, llama.jsonl, summary.md, times.txt) are
# written to build/cuda-bench/work and packed into ONE file,
# $OUT/cuda_bench.tar.gz (the device tool returns at most 8 files); the table
# is printed last. Each part prints its time.
#
#   tools/cuda_bench.sh                               # on the GPU machine
#   EKV_BENCH_BACKEND=cpu EKV_BENCH_SHAPES=tiny ... # the same logic on a CPU
#
# Time on an H100 (16 cores), estimated, not yet measured: edgekv CLI build
# 1-2 min (skip it: EKV_EDGEKV) with the ~6 GB of files written meanwhile,
# llama-bench's CUDA build 3-5 min (~150 .cu files for sm_90), then ~45 s per
# model (8 edgekv runs, 3 llama-bench runs): ~8-9 min for 1B and 3B. Give the
# device call timeout_s 600; models not started by EKV_BENCH_BUDGET_S are
# skipped, and the table covers what ran.
#
# Environment (all optional):
#   EKV_BENCH_BACKEND   cuda (default) or cpu (llama.cpp built without CUDA)
#   EKV_BENCH_SHAPES    default "1b 3b"; 8b is added when EKV_BENCH_8B=1
#   EKV_BENCH_TYPES     default "q4_0 q4_k_m"
#   EKV_BENCH_DEPTHS    default "512 8192" (decode depths; prefill is pp512)
#   EKV_BENCH_N_DECODE  decode steps per run, default 128
#   EKV_BENCH_KV        edgekv KV storages, default "f16 kivi4 kivi2"
#   EKV_LLAMA_KV        llama.cpp KV types, default "f16 q8_0 q4_0"
#   EKV_LLAMA_REPS      llama-bench repetitions, default 2
#   EKV_BENCH_BUDGET_S  a model is not started after this many seconds (default 450)
#   EKV_CUDA_ARCH       default 90 (H100/H200)
#   EKV_EDGEKV          a built edgekv CLI: skips the edgekv build
#   EKV_LLAMA_BENCH     a built llama-bench: skips the llama.cpp build
#   EKV_LLAMA_SRC       llama.cpp sources, default .device-carry/llama.cpp
#   EKV_MODELS_DIR      where the GGUF files go, default /tmp/ekv-synthetic (reused when present)
#   EKV_SKIP_LLAMA=1    no llama.cpp;  EKV_SKIP_GRAPHS_OFF=1  no graphs-off runs
#   EKV_SKIP_HOST_KV=1  no run with the KV in host memory (an offloaded cache,
#                       its layers copied to the GPU one layer ahead)
#   EKV_THREADS         CPU threads for the cpu backend (edgekv --threads, llama-bench -t)
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
backend="${EKV_BENCH_BACKEND:-cuda}"
dest="${OUT:-$root/build/cuda-bench}"
out="$root/build/cuda-bench/work"
rm -rf "$out"
mkdir -p "$out" "$dest"
shapes="${EKV_BENCH_SHAPES:-1b 3b}"
[ "${EKV_BENCH_8B:-0}" = 1 ] && shapes="$shapes 8b"
types="${EKV_BENCH_TYPES:-q4_0 q4_k_m}"
depths="${EKV_BENCH_DEPTHS:-512 8192}"
n_decode="${EKV_BENCH_N_DECODE:-128}"
ekv_kvs="${EKV_BENCH_KV:-f16 kivi4 kivi2}"
llama_kvs="${EKV_LLAMA_KV:-f16 q8_0 q4_0}"
budget="${EKV_BENCH_BUDGET_S:-450}"
arch="${EKV_CUDA_ARCH:-90}"
models="${EKV_MODELS_DIR:-/tmp/ekv-synthetic}"
llama_src="${EKV_LLAMA_SRC:-$root/.device-carry/llama.cpp}"
jobs="$(nproc)"
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
threads=()
[ -n "${EKV_THREADS:-}" ] && threads=(--threads "$EKV_THREADS")
t0=$SECONDS
part=$SECONDS
stamp() {  # ends the part before, starts the next
  [ -n "${part_name:-}" ] && echo "   ${part_name}: $((SECONDS - part)) s" | tee -a "$out/times.txt"
  part=$SECONDS
  part_name="$1"
  echo "== $1 (at $((SECONDS - t0)) s)"
}
status=0
mkdir -p "$models"
: >"$out/edgekv.jsonl"
: >"$out/llama.jsonl"
: >"$out/times.txt"

if [ "$backend" = cuda ]; then
  stamp "GPU and copy bandwidth"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv 2>&1 | tee "$out/gpu.txt"
  # Device-to-device copy of 2 GiB, best of 20 (CUDA events), read + written bytes.
  python3 - "$out/bandwidth.json" <<'EOF' || status=1
import json, sys, torch
n = 2 << 30
a = torch.empty(n, dtype=torch.uint8, device="cuda"); a.random_(0, 255)
b = torch.empty_like(a)
times = []
for i in range(23):
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record(); b.copy_(a); e.record(); torch.cuda.synchronize()
    if i >= 3: times.append(s.elapsed_time(e) / 1e3)
t = min(times)
d = {"device": torch.cuda.get_device_name(), "copy_bytes": n, "copy_s": t, "copy_bytes_per_s": 2 * n / t}
print(json.dumps(d)); json.dump(d, open(sys.argv[1], "w"))
EOF
fi

# The GGUF files, in the background while edgekv builds.
stamp "synthetic GGUF files (background) and the edgekv build"
gen_pids=()
for s in $shapes; do
  for t in $types; do
    f="$models/${s}_$t.gguf"
    [ -s "$f" ] && continue
    python3 tools/gen_synthetic_llama.py --shape "$s" --type "$t" --out "$f.tmp" >>"$out/gen.log" 2>&1 \
      && mv "$f.tmp" "$f" &
    gen_pids+=($!)
  done
done
edgekv="${EKV_EDGEKV:-}"
if [ -z "$edgekv" ]; then
  build="$root/build/cuda-bench-edgekv"
  cuda_flag=OFF
  [ "$backend" = cuda ] && cuda_flag=ON
  if cmake -S . -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DEDGEKV_CUDA="$cuda_flag" \
       -DEDGEKV_CUDA_ARCHITECTURES="$arch" -DEDGEKV_VULKAN=OFF -DEDGEKV_SERVER=OFF -DEDGEKV_BUILD_TESTS=OFF \
       >"$out/edgekv_configure.log" 2>&1 &&
     cmake --build "$build" -j "$jobs" --target edgekv_cli >"$out/edgekv_build.log" 2>&1; then
    edgekv="$build/samples/edgekv"
  else
    tail -30 "$out/edgekv_configure.log"; grep -E "error" -A3 "$out/edgekv_build.log" | head -40
    echo "edgekv build failed"; status=1
  fi
fi
for p in "${gen_pids[@]}"; do wait "$p" || status=1; done
cat "$out/gen.log" 2>/dev/null

llama_bench="${EKV_LLAMA_BENCH:-}"
if [ -z "$llama_bench" ] && [ "${EKV_SKIP_LLAMA:-0}" != 1 ]; then
  stamp "llama-bench build ($backend, -j $jobs)"
  lbuild="$root/build/llama-$backend"
  lcuda=OFF
  [ "$backend" = cuda ] && lcuda=ON
  cuda_links=()
  if [ "$backend" = cuda ]; then
    # ggml-cuda links cuBLAS and the driver library. A toolkit without cuBLAS:
    # take the PyPI wheel's (PyTorch's nvidia-cublas); no driver stub: the
    # driver's own libcuda.so.1. Unversioned links for find_library.
    links="$out/cuda-links"
    mkdir -p "$links"
    nvcc_root="$(dirname "$(dirname "$(readlink -f "$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)")")")"
    if ! ls "$nvcc_root"/include/cublas_v2.h "$nvcc_root"/targets/*/include/cublas_v2.h >/dev/null 2>&1; then
      sites="$(python3 -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null)"
      # shellcheck disable=SC2086
      hdr="$(find $sites -path '*nvidia*' -name cublas_v2.h 2>/dev/null | head -1)"
      if [ -n "$hdr" ]; then
        inc="$(dirname "$hdr")"; lib="$(dirname "$inc")/lib"
        for l in cublas cublasLt; do ln -sf "$(ls "$lib"/lib$l.so.* | head -1)" "$links/lib$l.so"; done
        cuda_links=(-DCMAKE_CUDA_FLAGS="-I$inc" -DCMAKE_CXX_FLAGS="-I$inc")
        export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        echo "cuBLAS from $inc (the toolkit at $nvcc_root has none)"
      fi
    fi
    if ! ls "$nvcc_root"/lib64/stubs/libcuda.so "$nvcc_root"/targets/*/lib/stubs/libcuda.so >/dev/null 2>&1; then
      drv="$(ldconfig -p 2>/dev/null | awk '/libcuda\.so\.1 /{print $NF; exit}')"
      [ -z "$drv" ] && drv="$(ls /usr/local/nvidia/lib64/libcuda.so.1 /usr/lib/x86_64-linux-gnu/libcuda.so.1 2>/dev/null | head -1)"
      [ -n "$drv" ] && ln -sf "$drv" "$links/libcuda.so" && echo "driver library: $drv"
    fi
    cuda_links+=(-DCMAKE_LIBRARY_PATH="$links")
  fi
  if [ ! -f "$llama_src/CMakeLists.txt" ]; then
    echo "no llama.cpp sources at $llama_src (tools/prepare_device_carry.sh, carry .device-carry)"; status=1
  elif cmake -S "$llama_src" -B "$lbuild" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA="$lcuda" \
         -DCMAKE_CUDA_ARCHITECTURES="$arch" -DGGML_NATIVE=ON -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF \
         -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
         -DLLAMA_BUILD_APP=OFF "${cuda_links[@]}" >"$out/llama_configure.log" 2>&1 &&
       cmake --build "$lbuild" -j "$jobs" --target llama-bench >"$out/llama_build.log" 2>&1; then
    llama_bench="$lbuild/bin/llama-bench"
  else
    tail -30 "$out/llama_configure.log"; grep -E "error" -A3 "$out/llama_build.log" | head -40
    echo "llama-bench build failed"; status=1
  fi
fi

kv_args() {  # edgekv flags of a KV storage name
  case "$1" in
    f16) ;;
    f16host) echo "--cache offloaded --offload host" ;;  # KV in host memory, staged a layer ahead
    kivi8) echo "--nbits 8" ;;
    kivi4) echo "--nbits 4" ;;
    kivi2) echo "--nbits 2" ;;
  esac
}
# One edgekv bench run, its JSON tagged with what was run (one line of edgekv.jsonl).
run_edgekv() {  # file shape type kv depth graphs
  local f=$1 shape=$2 type=$3 kv=$4 depth=$5 graphs=$6 json
  # shellcheck disable=SC2046
  json=$(EKV_CUDA_GRAPHS=$graphs "$edgekv" bench --model "$f" --backend "$backend" --ctx "$depth" \
         --n-decode "$n_decode" --json "${threads[@]}" $(kv_args "$kv") 2>>"$out/edgekv.err") || {
    echo "edgekv failed: $shape $type $kv depth $depth graphs $graphs (see edgekv.err)"; status=1; return; }
  echo "{\"shape\":\"$shape\",\"type\":\"$type\",\"kv\":\"$kv\",\"depth\":$depth,\"graphs\":$graphs,\"result\":$json}" \
    >>"$out/edgekv.jsonl"
  echo "   edgekv $shape $type $kv depth $depth graphs $graphs: $(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print("prefill %.1f decode %.2f tok/s" % (d["prefill_tokens_per_s"], d["decode_tokens_per_s"]))' "$json")"
}

if [ -n "$edgekv" ]; then
  for s in $shapes; do
    for t in $types; do
      f="$models/${s}_$t.gguf"
      if [ ! -s "$f" ]; then echo "missing $f"; status=1; continue; fi
      if [ $((SECONDS - t0)) -ge "$budget" ]; then
        echo "budget of $budget s reached: skipping $s $t"; continue
      fi
      stamp "$s $t"
      for d in $depths; do
        for kv in $ekv_kvs; do run_edgekv "$f" "$s" "$t" "$kv" "$d" 1; done
        [ "${EKV_SKIP_GRAPHS_OFF:-0}" = 1 ] || [ "$backend" != cuda ] || run_edgekv "$f" "$s" "$t" f16 "$d" 0
        [ "${EKV_SKIP_HOST_KV:-0}" = 1 ] || run_edgekv "$f" "$s" "$t" f16host "$d" 1
      done
      if [ -n "$llama_bench" ]; then
        ngl=(-ngl 99)
        lthreads=()
        [ -n "${EKV_THREADS:-}" ] && lthreads=(-t "$EKV_THREADS")
        for kv in $llama_kvs; do
          # pp512 from an empty cache with f16 (as edgekv's prefill), then decode at each depth.
          p=0; dl="$(echo "$depths" | tr ' ' ',')"
          [ "$kv" = f16 ] && { p=512; dl="0,$dl"; }
          if "$llama_bench" -m "$f" -p "$p" -n "$n_decode" -d "$dl" -ctk "$kv" -ctv "$kv" -fa 1 "${ngl[@]}" \
               "${lthreads[@]}" -r "${EKV_LLAMA_REPS:-2}" -o jsonl >"$out/llama_run.jsonl" 2>>"$out/llama.err"; then
            sed "s/^{/{\"shape\":\"$s\",\"type\":\"$t\",/" "$out/llama_run.jsonl" >>"$out/llama.jsonl"
            echo "   llama.cpp $s $t $kv: $(python3 -c 'import json,sys
print(", ".join("%s%d@d%d %.1f" % ("pp" if r["n_prompt"] else "tg", r["n_prompt"] or r["n_gen"], r["n_depth"], r["avg_ts"])
                for r in map(json.loads, open(sys.argv[1])) ))' "$out/llama_run.jsonl")"
          else
            echo "llama-bench failed: $s $t $kv (see llama.err)"; tail -5 "$out/llama.err"; status=1
          fi
        done
      fi
    done
  done
fi
rm -f "$out/llama_run.jsonl"

stamp "summary"
python3 tools/cuda_bench_summary.py --out "$out" --backend "$backend" | tee "$out/summary.md" || status=1
stamp "done, status $status, $((SECONDS - t0)) s in all"
tar -czf "$dest/cuda_bench.tar.gz" -C "$out" . && echo "logs and results: $dest/cuda_bench.tar.gz"
exit $status
