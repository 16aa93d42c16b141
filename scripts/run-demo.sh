#!/usr/bin/env bash
# Sets up, builds, and runs guest-exporter against libvirt's embedded test
# driver (three KubeVirt-shaped domains from exporter/testdata/node.xml), then
# prints real /metrics output read over its unix socket and its TCP port.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target guest-exporter

run_dir=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$run_dir"' EXIT
./build/exporter/guest-exporter \
  --libvirt-uri "test://$PWD/exporter/testdata/node.xml" \
  --guest-info-interval 5 --node-name demo-node \
  --socket "$run_dir/metrics.sock" --listen-address 127.0.0.1:9477 &
pid=$!

# The exec probe the sidecar uses: ready as soon as it serves.
for _ in $(seq 50); do
  ./build/exporter/guest-exporter probe --socket "$run_dir/metrics.sock" 2>/dev/null && break
  sleep 0.1
done
sleep 1  # let the first poll finish

echo
echo "=== /metrics over the unix socket $run_dir/metrics.sock ==="
curl -s --unix-socket "$run_dir/metrics.sock" http://localhost/metrics
echo
echo "=== the same on TCP, guest load series only ==="
curl -s http://127.0.0.1:9477/metrics | grep -E '^(kubevirt_vmi_guest_load|guest_exporter_guest_load_status)' || true
echo
echo "libvirt's test driver cannot reach a guest agent, so every domain shows"
echo "reason=\"unsupported\" and no load gauges: no stale or invented values."
