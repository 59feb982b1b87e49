#!/usr/bin/env bash
# The whole test suite, as CI runs it on a fresh machine: dependencies, the
# optimised build + tests, the AddressSanitizer/UBSan build + tests, the
# libFuzzer targets for a bounded time, and the Vulkan backend on Mesa's
# lavapipe with the Khronos validation layer on.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
models="$(tools/setup_deps.sh)"
export EKV_SMOLLM2_GGUF="$(echo "$models" | tail -n 1)"
export EKV_GEMMA3_GGUF="$(echo "$models" | tail -n 2 | head -n 1)"
export EKV_WHISPER_GGUF="$(echo "$models" | tail -n 3 | head -n 1)"
echo "== models: $EKV_SMOLLM2_GGUF $EKV_GEMMA3_GGUF $EKV_WHISPER_GGUF"

start=$SECONDS
for preset in cpu asan fuzz vulkan; do
  echo "== workflow preset: $preset"
  cmake --workflow --preset "$preset" --fresh
  # A skipped test is not a pass: everything must run here.
  log="build/$preset/Testing/Temporary/LastTest.log"
  if grep -q "Skipped\|\[  SKIPPED \]" "$log"; then
    grep "SKIPPED\|Skipped" "$log" | head -20
    echo "== tests were skipped in preset $preset: failing" >&2
    exit 1
  fi
  echo "== $preset done after $((SECONDS - start)) s"
done
echo "== install + find_package + pkg-config consumer"
prefix="$(mktemp -d)"
cmake --install build/cpu --prefix "$prefix" >/dev/null
cmake -S tests/install -B "$prefix/consumer-build" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$prefix/consumer-build" >/dev/null
LD_LIBRARY_PATH="$prefix/lib" "$prefix/consumer-build/consumer"
PKG_CONFIG_PATH="$prefix/lib/pkgconfig" cc -std=c99 tests/install/consumer.c -o "$prefix/consumer-pc" \
  $(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --cflags --libs edgekv)
LD_LIBRARY_PATH="$prefix/lib" "$prefix/consumer-pc"
rm -rf "$prefix"

echo "== all tests passed in $((SECONDS - start)) s"
