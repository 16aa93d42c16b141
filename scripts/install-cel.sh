#!/usr/bin/env bash
# Installs the CEL evaluator the chart's tests use, idempotently, and prints
# the node_modules directory on stdout (messages go to stderr).
#
# Debian has no CEL evaluator. @bufbuild/cel (Buf's CEL for ECMAScript,
# Apache-2.0, run against the CEL conformance suite) comes from the npm
# registry at the exact versions of helm/tests/cel/package-lock.json: `npm ci`
# installs nothing else and checks every tarball against the lock file's
# integrity hash. helm/tests/test_chart.py evaluates the chart's
# ValidatingAdmissionPolicy with it (helm/tests/cel/eval.js).
#
# Where it goes: ${GM_CEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubevirt-guest-metrics}/cel-<lock hash>/node_modules
#
# Options:
#   --print  print the path it would install to and exit
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
src="$here/../helm/tests/cel"
key=$(cat "$src/package.json" "$src/package-lock.json" | sha256sum | cut -c1-12)
cache_root="${GM_CEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubevirt-guest-metrics}"
dir="$cache_root/cel-$key"

if [ "${1:-}" = --print ]; then
  echo "$dir/node_modules"
  exit 0
fi
if [ -f "$dir/complete" ]; then
  echo "install-cel: @bufbuild/cel present" >&2
  echo "$dir/node_modules"
  exit 0
fi
command -v npm >/dev/null || { echo "install-cel: npm not found (install Debian's npm)" >&2; exit 1; }
tmp=$(mktemp -d "${cache_root%/}/.cel.XXXXXX" 2>/dev/null || { mkdir -p "$cache_root" && mktemp -d "$cache_root/.cel.XXXXXX"; })
trap 'rm -rf "$tmp"' EXIT
cp "$src/package.json" "$src/package-lock.json" "$tmp/"
echo "install-cel: npm ci (@bufbuild/cel, pinned by helm/tests/cel/package-lock.json)" >&2
(cd "$tmp" && timeout 300 npm ci --no-audit --no-fund --ignore-scripts >&2)
node -e 'require(process.argv[1] + "/node_modules/@bufbuild/cel")' "$tmp" ||
  { echo "install-cel: the installed @bufbuild/cel does not load" >&2; exit 1; }
touch "$tmp/complete"
rm -rf "$dir"
mv "$tmp" "$dir"
trap - EXIT
echo "$dir/node_modules"
