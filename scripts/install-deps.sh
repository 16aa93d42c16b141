#!/usr/bin/env bash
# Installs every build, test and benchmark dependency from Debian's package
# registry (bookworm). Idempotent: packages already present are skipped, and
# apt is only consulted when something is missing.
set -euo pipefail

packages=(
  # build
  build-essential cmake pkg-config
  libvirt-dev prometheus-cpp-dev libcli11-dev libspdlog-dev doctest-dev
  nlohmann-json3-dev libcurl4-openssl-dev libcpp-httplib-dev libssl-dev libyaml-cpp-dev
  # tests: a real libvirt daemon (test driver), Prometheus and promtool,
  # openssl for test certificates, python3 for the API-server fixture
  libvirt-daemon libvirt-clients prometheus openssl python3 curl
  # benchmarks: the Go peer the exporter is measured against
  prometheus-libvirt-exporter procps wrk
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
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
echo "install-deps: done"
