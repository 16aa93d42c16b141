#!/usr/bin/env bash
# Every C and C++ file the repository tracks is formatted as .clang-format
# says. Fails with the files and the first differences; `clang-format -i FILE`
# fixes them.
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v clang-format >/dev/null || { echo "clang-format is not installed (scripts/install-deps.sh installs it)"; exit 1; }
mapfile -t files < <(git ls-files '*.c' '*.cc' '*.cpp' '*.h' '*.hpp')
[ ${#files[@]} -gt 0 ] || { echo "FAIL: no C/C++ files found (is this a git checkout?)"; exit 1; }
bad=()
for f in "${files[@]}"; do
  clang-format --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done
if [ ${#bad[@]} -gt 0 ]; then
  echo "FAIL: ${#bad[@]} of ${#files[@]} files are not formatted (clang-format $(clang-format --version | grep -o '[0-9][0-9.]*' | head -n1)):"
  printf '  %s\n' "${bad[@]}"
  for f in "${bad[@]:0:3}"; do diff -u "$f" <(clang-format "$f") | head -n 20 || true; done
  exit 1
fi
echo "${#files[@]} files formatted as .clang-format says"
