#!/usr/bin/env bash
# The sanitizer tier of the test command: builds with clang, AddressSanitizer
# and UndefinedBehaviorSanitizer in build-asan/, runs the unit and
# integration tests there, then each libFuzzer target for a bounded time
# (GM_FUZZ_SECONDS, default 20) from its seed corpus. Extra arguments go to
# ctest. Called by scripts/run-tests.sh after the main tier.
set -euo pipefail
cd "$(dirname "$0")/.."

export CC=clang CXX=clang++
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DGM_WERROR=ON "${launcher[@]}" \
  -DGM_SANITIZE=address,undefined -DGM_FUZZ=ON -DGM_FUZZ_SECONDS="${GM_FUZZ_SECONDS:-20}" >/dev/null
cmake --build build-asan -j"$(nproc)"
# Leaks are reported too; libvirt's own one-time allocations are not ours.
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1"
export LSAN_OPTIONS="suppressions=$PWD/tests/fuzz/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
# Left out here (it runs in the main tier): the test that exhausts the
# exporter's file descriptors. The sanitizer runtime needs descriptors of its
# own (it probes memory through a pipe), so with none left UBSan's vptr check
# reports every virtual call as "invalid vptr" — a finding about the test's
# conditions, not about the code.
echo "run-sanitized: not run under the sanitizers: 'out of file descriptors …' (the runtime needs descriptors itself)"
ctest --test-dir build-asan --output-on-failure -j2 -L 'unit|integration|fuzz' \
  -E 'out of file descriptors' "$@"
