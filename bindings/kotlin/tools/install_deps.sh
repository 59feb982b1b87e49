#!/usr/bin/env bash
# Installs the Debian packages the Kotlin binding builds and tests with, when
# missing: kotlinc 1.3.31, OpenJDK 17 (headless), JUnit 4, kotlinx-coroutines
# 1.0.1 and atomicfu (its run-time dependency), CMake and a C compiler.
# Idempotent: does nothing when everything is installed.
set -euo pipefail
need=()
for pkg in kotlin default-jdk-headless junit4 libkotlinx-coroutines-java libkotlinx-atomicfu-java cmake gcc; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
[ ${#need[@]} -eq 0 ] && exit 0
sudo_cmd=""
[ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
echo "installing: ${need[*]}" >&2
if ! DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q --no-install-recommends "${need[@]}" >&2; then
  $sudo_cmd apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q --no-install-recommends "${need[@]}" >&2
fi
