#!/usr/bin/env bash
# Sets up, builds (warnings are errors), and runs every test with ctest.
# Extra arguments go to ctest, e.g. -L unit or -R integration.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGM_WERROR=ON >/dev/null
cmake --build build -j"$(nproc)"
ctest --test-dir build --output-on-failure -j2 "$@"
