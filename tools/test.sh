#!/usr/bin/env bash
# The whole test suite, as CI runs it on a fresh machine: dependencies, the
# optimised build with every backend (CPU + Vulkan, the Vulkan tests on Mesa's
# lavapipe with the Khronos validation layer on; CUDA compiled for every listed
# architecture, its no-driver behaviour tested, its device tests left to a
# GPU machine: tools/cuda_device_check.sh) and all its tests, the AddressSanitizer/UBSan build + tests (without the
# longest real-model comparisons, which add no memory paths the tiny models
# do not cover), the ThreadSanitizer build of the thread, C ABI and chat server tests, and
# the libFuzzer targets for a bounded time, the aarch64 cross build's
# kernel tests (NEON) under qemu, and the CUDA backend's device tests on the
# CUDA emulator (tests/cuda_emu: the backend and kernels compiled as host C++
# under ASan, kernels run block by block on the CPU; a GPU's numbers still
# come from tools/cuda_device_check.sh). Prints each part's time and a summary.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# At least this many tests must run per preset (a little under the real
# counts): a test that CMake silently drops (an empty model path, a lost
# source glob) fails the run instead of shrinking it.
declare -A min_tests=([ci]=525 [asan]=455 [tsan]=40 [fuzz]=9 [arm64]=105 [cuda-emu]=50)

parts=() times=()
record() { parts+=("$1"); times+=("$2"); echo "== $1: $2 s"; }

start=$SECONDS
t=$SECONDS
models="$(tools/setup_deps.sh --tests)"
export EKV_SMOLLM2_GGUF="$(echo "$models" | tail -n 1)"
export EKV_GEMMA3_GGUF="$(echo "$models" | tail -n 2 | head -n 1)"
export EKV_WHISPER_GGUF="$(echo "$models" | tail -n 3 | head -n 1)"
echo "== models: $EKV_SMOLLM2_GGUF $EKV_GEMMA3_GGUF $EKV_WHISPER_GGUF"
record setup $((SECONDS - t))

total_passed=0
# arm64: the aarch64 cross build's kernel tests (NEON kernels) under qemu.
# cuda-emu: the CUDA tests on the CUDA emulator (not the real-model ones).
for preset in ci asan tsan fuzz arm64 cuda-emu; do
  echo "== workflow preset: $preset"
  t=$SECONDS
  launcher=()
  # TSan's shadow memory needs the old address layout on kernels with more
  # mmap randomisation bits ("unexpected memory mapping"): no ASLR there.
  [ "$preset" = tsan ] && launcher=(setarch "$(uname -m)" -R)
  out="build/$preset.workflow.log"
  mkdir -p build
  "${launcher[@]}" cmake --workflow --preset "$preset" --fresh 2>&1 | tee "$out"
  log="build/$preset/Testing/Temporary/LastTest.log"
  # A skipped test is not a pass: everything must run here. gtest prints
  # [  SKIPPED ], c_check.h's SKIP prints SKIPPED:, and a SKIP_RETURN_CODE
  # exit shows only in ctest's own output.
  if grep -qi "skipped" "$log" || grep -q '\*\*\*Skipped\|tests did not run' "$out"; then
    grep -i "skipped" "$log" "$out" | grep -v " - skipped$" | head -20 || true
    echo "== tests were skipped in preset $preset: failing" >&2
    exit 1
  fi
  # ctest's own per-test lines (LastTest.log says "Test Passed." even for a
  # test whose executable was not built).
  passed=$(grep -cE '^ *[0-9]+/[0-9]+ Test +#[0-9]+: .* Passed +[0-9.]+ sec$' "$out" || true)
  if [ "$passed" -lt "${min_tests[$preset]}" ]; then
    echo "== only $passed tests ran in preset $preset, expected at least ${min_tests[$preset]}: failing" >&2
    exit 1
  fi
  # The chat server's end-to-end tests (openai client, Chromium) must have
  # run in the optimised build, whatever the count says.
  if [ "$preset" = ci ]; then
    for e2e in server_openai_client server_browser; do
      grep -qE "Test +#[0-9]+: $e2e \.+ +Passed" "$out" ||
        { echo "== $e2e did not pass in preset ci: failing" >&2; exit 1; }
    done
    echo "== server test artifacts (screenshots, transcript): build/ci/artifacts"
  fi
  total_passed=$((total_passed + passed))
  record "$preset ($passed tests)" $((SECONDS - t))
done

echo "== install + find_package + pkg-config consumer"
t=$SECONDS
prefix="$(mktemp -d)"
cmake --install build/ci --prefix "$prefix" >/dev/null
cmake -S tests/install -B "$prefix/consumer-build" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$prefix/consumer-build" >/dev/null
LD_LIBRARY_PATH="$prefix/lib" "$prefix/consumer-build/consumer"
PKG_CONFIG_PATH="$prefix/lib/pkgconfig" cc -std=c99 tests/install/consumer.c -o "$prefix/consumer-pc" \
  $(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --cflags --libs edgekv)
LD_LIBRARY_PATH="$prefix/lib" "$prefix/consumer-pc"
record "install consumer" $((SECONDS - t))

# The bindings against that install: Swift (XCTest, plain and under ASan)
# and Kotlin (JUnit 4 with -Xcheck:jni). Each script fails on a skipped test.
echo "== swift binding"
t=$SECONDS
bindings/swift/run_tests.sh "$prefix" 2>&1 | tee build/swift.log
# The last "Executed N tests" of each XCTest run (plain and ASan) is its total.
swift_passed=0
for f in bindings/swift/.build/logs/test.log bindings/swift/.build/logs/test-asan.log; do
  n=$(grep -oE 'Executed [0-9]+ tests?, with 0 failures' "$f" | tail -n 1 | grep -oE '^Executed [0-9]+' | cut -d' ' -f2)
  swift_passed=$((swift_passed + ${n:-0}))
done
total_passed=$((total_passed + swift_passed))
record "swift binding ($swift_passed tests)" $((SECONDS - t))

echo "== kotlin binding"
t=$SECONDS
bindings/kotlin/run_tests.sh "$prefix" 2>&1 | tee build/kotlin.log
kotlin_passed=$(grep -E '^[0-9]+ passed, 0 failed$' build/kotlin.log | tail -n 1 | cut -d' ' -f1)
total_passed=$((total_passed + ${kotlin_passed:-0}))
record "kotlin binding (${kotlin_passed:-0} tests)" $((SECONDS - t))
rm -rf "$prefix"

echo "== times"
for i in "${!parts[@]}"; do printf '   %-24s %6d s\n' "${parts[$i]}" "${times[$i]}"; done
printf '   %-24s %6d s\n' total $((SECONDS - start))
echo "$total_passed passed, 0 failed"
