#!/usr/bin/env bash
# Sets up, builds (warnings are errors), and runs every test with ctest; then,
# when no arguments narrow the run, the sanitizer tier (scripts/run-sanitized.sh:
# unit and integration tests under ASan+UBSan, and the fuzz targets).
# Extra arguments go to ctest, e.g. -L unit or -R integration; see
# CONTRIBUTING.md for the tiers.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh
# ccache (installed by install-deps) lets a rebuild, or a fresh clone on the
# same machine, reuse earlier compiles; paths are taken relative to the clone.
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGM_WERROR=ON "${launcher[@]}" >/dev/null
cmake --build build -j"$(nproc)"
ctest --test-dir build --output-on-failure -j2 "$@"

if [ $# -eq 0 ]; then
  ./scripts/run-sanitized.sh
fi
