#!/usr/bin/env bash
# Sets up, builds (warnings are errors), and runs every test with ctest; then,
# when no arguments narrow the run, the sanitizer tier (scripts/run-sanitized.sh:
# unit and integration tests under ASan+UBSan, and the fuzz targets).
# Extra arguments go to ctest, e.g. -L unit or -R integration; see
# CONTRIBUTING.md for the tiers.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh
./scripts/build.sh
ctest --test-dir build --output-on-failure -j2 "$@"

if [ $# -eq 0 ]; then
  ./scripts/run-sanitized.sh
fi
