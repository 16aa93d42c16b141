#!/usr/bin/env bash
# The one build configuration of the README's two commands: build/ in
# RelWithDebInfo with warnings as errors, through ccache when it is installed
# (paths relative to the clone, so a fresh clone on the same machine reuses
# earlier compiles). Arguments are the targets to build (default: all).
set -euo pipefail
cd "$(dirname "$0")/.."
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGM_WERROR=ON "${launcher[@]}" >/dev/null
targets=()
for t in "$@"; do targets+=(--target "$t"); done
cmake --build build -j"$(nproc)" "${targets[@]}"
