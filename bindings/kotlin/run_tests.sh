#!/usr/bin/env bash
# Builds the Kotlin binding against an installed edgekv and runs its JUnit 4
# tests on the JVM with -Xcheck:jni.
#
#   bindings/kotlin/run_tests.sh PREFIX
#
# PREFIX is where edgekv was installed (cmake --install ... --prefix PREFIX).
# Steps: apt packages (when missing) -> libedgekv_jni.so (CMake, find_package
# edgekv) -> kotlinc main -> kotlinc tests + chat -> JUnit. Prints each step's
# wall time and ends with "N passed, M failed"; exits non-zero on any failure
# (a test that is skipped counts as failed, and so does any -Xcheck:jni
# warning). Outputs go to bindings/kotlin/build/.
#
# Models: EKV_SMOLLM2_GGUF (default: the path tools/setup_deps.sh prints last)
# and EKV_FIXTURES_DIR (default: tests/fixtures).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
prefix="${1:-}"
if [ -z "$prefix" ] || [ ! -d "$prefix" ]; then
  echo "usage: $0 PREFIX   (an edgekv installation: PREFIX/lib/cmake/edgekv)" >&2
  exit 2
fi
prefix="$(cd "$prefix" && pwd)"
shift  # any further arguments: test classes to run (default: all)
build="$here/build"
mkdir -p "$build"

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
seconds_since() { local d=$(( $(now_ms) - $1 )); printf '%d.%d' $((d / 1000)) $(((d % 1000) / 100)); }
t_total=$(now_ms)
# Whatever happens, the last line says how it went.
summary=""
trap 'rc=$?; if [ -z "$summary" ]; then echo "the build failed before the tests ran" >&2; echo "0 passed, 1 failed"; fi; exit $rc' EXIT
step_start() { t_step=$(now_ms); echo "== $1" >&2; }
step_end() { echo "== $1: $(seconds_since "$t_step") s" >&2; }
# kotlinc prints warnings on stdout too; the log is shown only on failure.
run_kotlinc() {
  local log="$1"; shift
  if ! nice -n 10 kotlinc "$@" >"$log" 2>&1 || grep -qE '(^|: )(error|exception):' "$log"; then
    grep -v 'warning:' "$log" >&2; echo "kotlinc failed (log: $log)" >&2; exit 1
  fi
}

# ---- 1. packages --------------------------------------------------------------
step_start "packages"
"$here/tools/install_deps.sh"
step_end "packages"

jars=/usr/share/java
kotlin_stdlib="$jars/kotlin-stdlib.jar:$jars/kotlin-stdlib-jdk7.jar:$jars/kotlin-stdlib-jdk8.jar"
coroutines="$jars/kotlinx-coroutines-core.jar:$jars/atomicfu.jar"
junit="$jars/junit4.jar:$jars/hamcrest-core.jar"
for j in ${kotlin_stdlib//:/ } ${coroutines//:/ } ${junit//:/ }; do
  [ -f "$j" ] || { echo "missing $j (apt packages kotlin, junit4, libkotlinx-coroutines-java, libkotlinx-atomicfu-java)" >&2; exit 1; }
done
# Debian's JDK 17 (default-java), which kotlinc 1.3 is packaged for, whatever
# JAVA_HOME says (another JDK may be installed); EKV_JAVA_HOME overrides.
JAVA_HOME="${EKV_JAVA_HOME:-/usr/lib/jvm/default-java}"
if [ ! -x "$JAVA_HOME/bin/javac" ]; then
  JAVA_HOME="$(dirname "$(dirname "$(readlink -f "$(command -v javac)")")")"
fi
export JAVA_HOME
unset JAVACMD
java="$JAVA_HOME/bin/java"

# ---- 2. JNI library -----------------------------------------------------------
step_start "libedgekv_jni.so (cmake)"
rm -f "$build/jni/CMakeCache.txt" # PREFIX may differ from the last run's
nice -n 10 cmake -S "$here/jni" -B "$build/jni" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix" \
      -DJAVA_HOME="$JAVA_HOME" >"$build/jni-configure.log" 2>&1 \
  || { cat "$build/jni-configure.log" >&2; exit 1; }
nice -n 10 cmake --build "$build/jni" -j2 >"$build/jni-build.log" 2>&1 || { cat "$build/jni-build.log" >&2; exit 1; }
step_end "libedgekv_jni.so (cmake)"

# ---- 3. Kotlin: main ------------------------------------------------------------
kotlinc_flags=(-jvm-target 1.8 -no-stdlib -no-reflect -nowarn
               -Xuse-experimental=kotlinx.coroutines.ExperimentalCoroutinesApi)
step_start "kotlinc main"
rm -rf "$build/classes/main" && mkdir -p "$build/classes/main" "$build/libs"
run_kotlinc "$build/kotlinc-main.log" "${kotlinc_flags[@]}" -module-name edgekv -cp "$kotlin_stdlib:$coroutines" -d "$build/classes/main" \
        $(find "$here/src/main/kotlin" -name '*.kt' | sort)
(cd "$build/classes/main" && "$JAVA_HOME/bin/jar" cf "$build/libs/edgekv.jar" .)
step_end "kotlinc main"

# ---- 4. Kotlin: tests and the chat sample ---------------------------------------
step_start "kotlinc tests + chat"
rm -rf "$build/classes/test" && mkdir -p "$build/classes/test"
run_kotlinc "$build/kotlinc-test.log" "${kotlinc_flags[@]}" -module-name edgekv-tests -cp "$build/classes/main:$kotlin_stdlib:$coroutines:$junit" \
        -Xfriend-paths="$build/classes/main" -d "$build/classes/test" \
        $(find "$here/src/test/kotlin" "$here/samples/chat" -name '*.kt' | sort)
step_end "kotlinc tests + chat"

# ---- 5. JUnit -----------------------------------------------------------------------
if [ -z "${EKV_SMOLLM2_GGUF:-}" ]; then
  EKV_SMOLLM2_GGUF="$("$root/tools/setup_deps.sh" | tail -n 1)"
fi
export EKV_SMOLLM2_GGUF
export EKV_FIXTURES_DIR="${EKV_FIXTURES_DIR:-$root/tests/fixtures}"
step_start "junit (-Xcheck:jni)"
set +e
"$java" -Xcheck:jni -Xss4m -Djava.library.path="$build/jni" \
        -cp "$build/classes/test:$build/libs/edgekv.jar:$kotlin_stdlib:$coroutines:$junit" \
        dev.edgekv.test.RunAll "$@" 2>&1 | tee "$build/junit.log"
rc=${PIPESTATUS[0]}
set -e
step_end "junit (-Xcheck:jni)"

# -Xcheck:jni reports misuse as warnings on stderr and goes on: any is a failure.
if grep -E "in native method|WARNING: JNI|JNI call made" "$build/junit.log" >/dev/null; then
  echo "-Xcheck:jni reported problems (see $build/junit.log)" >&2
  rc=1
fi
echo "== total: $(seconds_since "$t_total") s" >&2
summary="$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$build/junit.log" | tail -n 1 || true)"
[ -n "$summary" ] || summary="0 passed, 1 failed"
[ "$rc" -eq 0 ] || case "$summary" in *", 0 failed") summary="${summary%, 0 failed}, 1 failed";; esac
echo "$summary"
exit "$rc"
