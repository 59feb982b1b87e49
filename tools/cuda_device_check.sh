#!/usr/bin/env bash
# The CUDA backend's checks on a machine with an NVIDIA GPU (the `device`
# tool's lent H100/H200, or any CUDA machine): configure with the machine's
# own nvcc, build the CUDA tests, run them, the no-driver/driver availability
# tests and compute-sanitizer's memcheck over the op tests, and time decode on
# the tiny fixtures. Logs go to $OUT (or build/cuda-device/out).
#
# The machine needs CMake, a C++17 compiler, nvcc and GoogleTest's sources
# (EKV_GTEST_SRC, default /usr/src/googletest; the device tool's machines have
# none, so copy /usr/src/googletest into a carried folder). Real models are
# used when EKV_SMOLLM2_GGUF / EKV_GEMMA3_GGUF point at them. EKV_CUDA_BENCH=1
# then runs tools/cuda_bench.sh (edgekv vs llama.cpp) with the CLI built here.
#   tools/cuda_device_check.sh [architectures, default: native]
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
arch="${1:-native}"
out="${OUT:-$root/build/cuda-device/out}"
mkdir -p "$out"
build="$root/build/cuda-device"
gtest="${EKV_GTEST_SRC:-/usr/src/googletest}"
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
t0=$SECONDS
stamp() { echo "== $1 ($((SECONDS - t0)) s)"; }

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | tee "$out/gpu.txt"
stamp configure
cmake -S . -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DEDGEKV_CUDA=ON \
  -DEDGEKV_CUDA_ARCHITECTURES="$arch" -DEDGEKV_VULKAN=OFF -DEDGEKV_SERVER=OFF \
  -DEDGEKV_GTEST_FROM_SOURCE=ON -DEDGEKV_GTEST_SOURCE_DIR="$gtest" \
  -DEDGEKV_SMOLLM2_GGUF="${EKV_SMOLLM2_GGUF:-}" -DEDGEKV_GEMMA3_GGUF="${EKV_GEMMA3_GGUF:-}" \
  >"$out/configure.log" 2>&1 || { tail -30 "$out/configure.log"; exit 1; }
stamp build
cmake --build "$build" -j "$(nproc)" --target edgekv_cuda_tests edgekv_tests edgekv_cli \
  >"$out/build.log" 2>&1 || { grep -E "error" -A3 "$out/build.log" | head -60; exit 1; }

status=0
stamp "CUDA parity and model tests"
"$build/tests/edgekv_cuda_tests" --gtest_brief=1 2>&1 | tee "$out/cuda_tests.log" | tail -40 || status=1
stamp "availability (a driver is present: CUDA listed, AUTO picks it)"
"$build/tests/edgekv_tests" --gtest_filter='CudaAvailability.*' 2>&1 | tail -5 || status=1
if command -v compute-sanitizer >/dev/null; then
  stamp "compute-sanitizer memcheck, op tests"
  compute-sanitizer --tool memcheck --error-exitcode 3 "$build/tests/edgekv_cuda_tests" \
    --gtest_filter='CudaOps.*:CudaKivi.*:CudaAttention.*:CudaGraphs.*' --gtest_brief=1 >"$out/memcheck.log" 2>&1 || status=1
  tail -15 "$out/memcheck.log"
  stamp "compute-sanitizer racecheck, tensor-core prefill attention and the int8 tiles"
  compute-sanitizer --tool racecheck --error-exitcode 3 "$build/tests/edgekv_cuda_tests" \
    --gtest_filter='CudaAttention.Prefill*:CudaOps.Int8*' --gtest_brief=1 >"$out/racecheck.log" 2>&1 || status=1
  tail -15 "$out/racecheck.log"
fi
stamp "decode speed (tiny fixtures and real models when given)"
for m in tests/fixtures/tiny_llama/tiny_llama_q8_0.gguf ${EKV_SMOLLM2_GGUF:-} ${EKV_GEMMA3_GGUF:-}; do
  [ -f "$m" ] || continue
  for backend in cuda cpu; do
    "$build/samples/edgekv" bench --model "$m" --backend "$backend" --ctx 512 --n-decode 64 --json \
      >>"$out/bench.jsonl" 2>>"$out/bench.err" || status=1
  done
  # CUDA graphs off, for comparison (the run above has them on).
  EKV_CUDA_GRAPHS=0 "$build/samples/edgekv" bench --model "$m" --backend cuda --ctx 512 --n-decode 64 --json \
    >>"$out/bench.jsonl" 2>>"$out/bench.err" || status=1
  # Prefill attention on CUDA cores instead of tensor cores, for comparison.
  EKV_CUDA_TENSOR_CORES=0 "$build/samples/edgekv" bench --model "$m" --backend cuda --ctx 512 --n-decode 8 --json \
    >>"$out/bench.jsonl" 2>>"$out/bench.err" || status=1
done
[ -f "$out/bench.jsonl" ] && cat "$out/bench.jsonl"
if [ "${EKV_CUDA_BENCH:-0}" = 1 ]; then
  # edgekv vs llama-bench on synthetic Llama 1B/3B (tools/cuda_bench.sh; needs .device-carry).
  stamp "edgekv vs llama.cpp (tools/cuda_bench.sh)"
  OUT="$out" EKV_EDGEKV="$build/samples/edgekv" "$root/tools/cuda_bench.sh" || status=1
fi
stamp "done, status $status"
exit $status
