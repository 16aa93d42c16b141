#!/usr/bin/env bash
# One version number: VERSION. CMake reads it (the binaries' --version and
# build_info), tests/image/build-image.sh passes it to the image labels, and
# the chart must carry it as version and appVersion; nothing else may spell it out.
set -euo pipefail
cd "$(dirname "$0")/../.."
version=$(head -n1 VERSION)
[[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "FAIL: VERSION holds '$version', not MAJOR.MINOR.PATCH"; exit 1; }
chart=helm/kubevirt-guest-metrics/Chart.yaml
for key in version appVersion; do
  got=$(sed -n "s/^$key: *\"\{0,1\}\([^\"]*\)\"\{0,1\} *\$/\1/p" "$chart")
  [ "$got" = "$version" ] || { echo "FAIL: $chart $key is '$got', VERSION is '$version'"; exit 1; }
done
# A literal copy anywhere else drifts: look for it in the build and packaging files.
if hits=$(grep -nF "$version" CMakeLists.txt Dockerfile common/build_info.h.in tests/image/build-image.sh 2>/dev/null); then
  echo "FAIL: the version is written out beside VERSION:"; echo "$hits"; exit 1
fi
built=${1:-}
if [ -n "$built" ]; then
  out=$("$built" --version)
  [[ $out == "$version"* ]] || { echo "FAIL: $built --version says '$out', VERSION is '$version'"; exit 1; }
fi
echo "version $version: VERSION, CMake, chart version and appVersion${built:+ and $(basename "$built") --version} agree"
