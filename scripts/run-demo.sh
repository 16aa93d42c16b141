#!/usr/bin/env bash
# The project's data path on one machine, with real numbers:
#
#   1. set-up: installs the Debian packages (scripts/install-deps.sh), builds
#      guest-exporter and status-reporter, and builds (once, cached) the small
#      test guest of the end-to-end test: Debian's kernel + a busybox initramfs
#      holding the project's guest agent;
#   2. boots that guest under QEMU (TCG, no KVM needed) through a private
#      session libvirtd -- the shape of a non-root virt-launcher pod -- with
#      the same helpers as the e2e test (tests/e2e/lib/guest.sh);
#   3. starts a status-reporter against the API-server fixture (tests/apiserver),
#      seeded with the guest's launcher pod and running VMI (tests/e2e/lib/cluster.py);
#   4. starts guest-exporter as the webhook would inject it: the pod's libvirt,
#      the compute container's requests, a pod-bound token, the reporter's URL;
#   5. prints the guest's kubevirt_vmi_guest_load_1m|5m|15m, the two ratios,
#      the report the reporter accepted, and the annotations it wrote on the
#      launcher pod and the VMI;
#   6. with --burn: CPU burners in the guest, and the load climbing every 5 s.
#
# Where QEMU, libvirt's QEMU driver or the guest's ingredients are missing, it
# says which and falls back to the test-driver demo (no guest agent there, so
# no load values).
#
# Usage: scripts/run-demo.sh [--burn [SECONDS]] [--test-driver] [--no-deps]
#   --burn [S]     after the numbers, burn the guest's CPU for S s (default 60)
#   --test-driver  skip the guest: guest-exporter on libvirt's test driver only
#   --no-deps      do not run scripts/install-deps.sh (packages already there)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

BURN=0 BURN_SECONDS=60 TEST_DRIVER=0 DEPS=1
while [ $# -gt 0 ]; do
  case "$1" in
    --burn)
      BURN=1
      if [[ ${2:-} =~ ^[0-9]+$ ]]; then BURN_SECONDS=$2; shift; fi
      shift ;;
    --burn=*) BURN=1 BURN_SECONDS=${1#--burn=}; shift ;;
    --test-driver) TEST_DRIVER=1; shift ;;
    --no-deps) DEPS=0; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "$0"; exit 0 ;;
    *) echo "run-demo.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ $BURN_SECONDS =~ ^[0-9]+$ ]] && [ "$BURN_SECONDS" -ge 5 ] && [ "$BURN_SECONDS" -le 600 ] ||
  { echo "run-demo.sh: --burn wants 5..600 seconds" >&2; exit 2; }

START=$SECONDS
log() { printf 'demo [%3ds] %s\n' "$((SECONDS - START))" "$*"; }
title() { printf '\n=== %s\n' "$*"; }

# ------------------------------------------------------------------ set-up
if [ $DEPS -eq 1 ]; then ./scripts/install-deps.sh; fi
./scripts/build.sh guest-exporter status-reporter
EXPORTER_BIN=$REPO/build/exporter/guest-exporter
REPORTER_BIN=$REPO/build/status-reporter/status-reporter

# ------------------------------------------- fallback: the test-driver demo
test_driver_demo() {
  local run_dir pid port
  title "guest-exporter on libvirt's test driver (three KubeVirt-shaped domains, exporter/testdata/node.xml)"
  run_dir=$(mktemp -d)
  ./build/exporter/guest-exporter \
    --libvirt-uri "test://$PWD/exporter/testdata/node.xml" \
    --guest-info-interval 5 --node-name demo-node \
    --socket "$run_dir/metrics.sock" --listen-address 127.0.0.1:0 >"$run_dir/exporter.log" 2>&1 &
  pid=$!
  for _ in $(seq 50); do
    curl -sf --max-time 2 --unix-socket "$run_dir/metrics.sock" http://localhost/readyz >/dev/null 2>&1 && break
    sleep 0.1
  done
  sleep 1 # let the first poll finish
  cat "$run_dir/exporter.log"
  port=$(sed -n 's/.*listen=127\.0\.0\.1:0 (port \([0-9]*\)).*/\1/p' "$run_dir/exporter.log" | head -n1)
  echo "--- /metrics over the unix socket $run_dir/metrics.sock"
  curl -s --max-time 5 --unix-socket "$run_dir/metrics.sock" http://localhost/metrics || true
  echo "--- the same on TCP (127.0.0.1:${port:-?}), guest load series only"
  curl -s --max-time 5 "http://127.0.0.1:${port:-0}/metrics" | grep -E '^(kubevirt_vmi_guest_load|guest_exporter_guest_load_status)' || true
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -rf "$run_dir"
  echo
  echo "libvirt's test driver cannot reach a guest agent, so every domain shows"
  echo "reason=\"unsupported\" and no load gauges: no stale or invented values."
}

if [ $TEST_DRIVER -eq 1 ]; then
  test_driver_demo
  exit 0
fi

# ---------------------------------------------------- the real data path
# The names KubeVirt would give: domain <namespace>_<vmi>, pod virt-launcher-<vmi>-<hash>.
NS=demo VMI=guest-load POD=virt-launcher-guest-load-x7k2p NODE=demo-node
DOMAIN="${NS}_${VMI}"
# The compute container's requests as virt-controller renders them for a
# 1-vCPU, 256 MiB VMI at cpuAllocationRatio 10 (100m) and memoryOvercommit
# 200 % (128 MiB for the VM) plus 100 MiB of overhead (KubeVirt v1.9+ says so
# in the pod annotation kubevirt.io/memory-overhead-bytes): the same requests
# as the e2e test, so the ratios are 10 and 2.
CPU_REQUEST=100m MEMORY_REQUEST=228Mi MEMORY_OVERHEAD=100Mi MEMORY_OVERHEAD_BYTES=$((100 * 1048576))

EXPORTER_PID="" CLUSTER_PID="" FALLBACK=""
# shellcheck source=tests/e2e/lib/guest.sh
source "$REPO/tests/e2e/lib/guest.sh"

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  stop_pid "$EXPORTER_PID"
  stop_pid "$CLUSTER_PID" # on SIGTERM it stops the reporter and the fixture
  guest_stop
  [ -n "$RUN" ] && rm -rf "$RUN"
  if [ -n "$FALLBACK" ] && [ "$rc" -eq 0 ]; then
    test_driver_demo
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
dump() {
  local f
  for f in "$RUN/d/console.log" "$RUN/d/libvirtd.log" "$RUN/exporter/exporter.log" \
    "$RUN/cluster/cluster.log" "$RUN/cluster/status-reporter-demo.log"; do
    [ -s "$f" ] || continue
    echo "----- ${f#"$RUN"/} (last 20 lines)" >&2
    tail -n 20 "$f" >&2
  done
}
fail() { echo "demo: FAILED: $*" >&2; [ -n "$RUN" ] && dump; exit 1; }
# The guest cannot run here: say why, clean up, and show what can be shown.
skip() {
  echo >&2
  echo "demo: cannot boot the test guest here: $*" >&2
  echo "demo: falling back to the test-driver demo (no guest agent: no load values)" >&2
  FALLBACK=1
  exit 0
}

need python3 "install python3"
need jq "install jq"
need openssl "install openssl"
guest_preflight
t=$SECONDS
guest_prepare
log "set-up done: guest kernel $KVER, initramfs $(du -k "$GUEST/initrd.img" | cut -f1) KiB ($((SECONDS - t)) s)"
T0=$SECONDS # the demo proper starts here

guest_rundir
mkdir -p "$RUN/exporter" "$RUN/cluster"
cp "$EXPORTER_BIN" "$RUN/guest-exporter"
cp "$(dirname "$EXPORTER_BIN")/guest-exporter-flags" "$RUN/"  # its flag parser, run from beside it
chown "$RUN_UID:$RUN_GID" "$RUN/exporter"
chmod 755 "$RUN/cluster"

# The API-server fixture and a status-reporter, in the background while the guest boots.
setpriv --pdeathsig KILL python3 "$REPO/tests/e2e/lib/cluster.py" --status-reporter "$REPORTER_BIN" \
  --dir "$RUN/cluster" --namespace "$NS" --vmi "$VMI" --pod "$POD" --node "$NODE" \
  --cpu-request "$CPU_REQUEST" --memory-request "$MEMORY_REQUEST" \
  --memory-overhead-bytes "$MEMORY_OVERHEAD_BYTES" --sidecar-uid "$RUN_UID" \
  >"$RUN/cluster/cluster.log" 2>&1 </dev/null &
CLUSTER_PID=$!
log "starting the API-server fixture and a status-reporter (pid $CLUSTER_PID)"

guest_start_libvirtd
guest_create

t=$SECONDS
until [ -f "$RUN/cluster/cluster.env" ]; do
  alive "$CLUSTER_PID" || fail "the fixture or the status-reporter did not start"
  [ $((SECONDS - t)) -lt 60 ] || fail "the status-reporter did not lead and sync within 60 s"
  sleep 0.2
done
# shellcheck source=/dev/null
source "$RUN/cluster/cluster.env"
log "status-reporter leads and serves reports at $REPORTER_URL"

# guest-exporter as the webhook injects it: the pod's libvirt and user, the
# compute container's requests, the pod-bound token, the reporter's CA.
SOCK="$RUN/exporter/metrics.sock"
env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$RUN/d/home" \
  "${AS_USER[@]}" "$RUN/guest-exporter" --libvirt-uri "$URI" --guest-info-interval 2 \
  --socket "$SOCK" --listen-address "" --node-name "$NODE" \
  --pod-name "$POD" --pod-uid "$POD_UID" --vmi-namespace "$NS" --vmi-name "$VMI" \
  --cpu-request "$CPU_REQUEST" --memory-request "$MEMORY_REQUEST" --memory-overhead "$MEMORY_OVERHEAD" \
  --reporter-url "$REPORTER_URL" --reporter-ca-file "$REPORTER_CA" --token-file "$TOKEN_FILE" \
  >"$RUN/exporter/exporter.log" 2>&1 </dev/null &
EXPORTER_PID=$!
log "guest-exporter started (pid $EXPORTER_PID), reading $URI"

log "waiting for the guest's agent (a TCG boot takes 10-40 s)"
guest_wait_agent 150

metrics() { curl -sf --max-time 5 --unix-socket "$SOCK" http://localhost/metrics; }
SEL="{namespace=\"$NS\",name=\"$VMI\",node=\"$NODE\"}"
value() { awk -v s="$1$SEL" '$1 == s {print $2}' <<<"$SCRAPE"; }
SCRAPE=""
t=$SECONDS
until SCRAPE=$(metrics) && [ -n "$(value kubevirt_vmi_guest_load_1m)" ]; do
  alive "$EXPORTER_PID" || fail "guest-exporter exited"
  [ $((SECONDS - t)) -lt 30 ] || fail "guest-exporter serves no load 30 s after the agent answered"
  sleep 0.5
done

title "guest-exporter's /metrics (unix socket $SOCK): the guest's load and the VM's ratios"
grep -E "^(kubevirt_vmi_guest_load_(1m|5m|15m)|kubevirt_vmi_cpu_allocation_ratio|kubevirt_vmi_memory_overcommit_ratio|guest_exporter_guest_(vcpus|memory_bytes|load_status))\{" <<<"$SCRAPE"
echo "--- the same load read directly from the guest's agent (its /proc/loadavg):"
agent '{"execute":"guest-get-load"}'
vcpus=$(value guest_exporter_guest_vcpus)
mem=$(value guest_exporter_guest_memory_bytes)
echo "--- ratios: cpu = $vcpus vCPU / $CPU_REQUEST = $(value kubevirt_vmi_cpu_allocation_ratio);" \
  "memory = $(awk -v b="$mem" 'BEGIN { printf "%d", b / 1048576 }') MiB / ($MEMORY_REQUEST - $MEMORY_OVERHEAD) = $(value kubevirt_vmi_memory_overcommit_ratio)"

# ------------------------------------------------ what the reporter wrote
kget() { curl -sf --max-time 5 --cacert "$API_CA" -H "Authorization: Bearer $API_TOKEN" "$API$1"; }
ours() { jq -c '.metadata.annotations // {} | with_entries(select(.key | startswith("guestmetrics.kubevirt.io/")))'; }
t=$SECONDS
until pod_ann=$(kget "/api/v1/namespaces/$NS/pods/$POD" | ours) && [ "$pod_ann" != "{}" ] &&
  vmi_ann=$(kget "/apis/kubevirt.io/v1/namespaces/$NS/virtualmachineinstances/$VMI" | ours) && [ "$vmi_ann" != "{}" ]; do
  alive "$EXPORTER_PID" || fail "guest-exporter exited"
  [ $((SECONDS - t)) -lt 60 ] || fail "no ratio annotations on the pod and the VMI 60 s after the load appeared"
  sleep 0.5
done
SCRAPE=$(metrics)
RM=$(curl -sf --max-time 5 "$REPORTER_METRICS") || fail "the status-reporter's /metrics does not answer"
title "the report, accepted by the status-reporter (TokenReview of the pod-bound token)"
grep -E '^guest_exporter_reports_total\{' <<<"$SCRAPE" | sed 's/^/sidecar:  /'
grep -E '^status_reporter_reports_total\{result="accepted"' <<<"$RM" | sed 's/^/reporter: /'
grep -E "^(kubevirt_vmi_guest_load_1m|kubevirt_vmi_cpu_allocation_ratio|kubevirt_vmi_memory_overcommit_ratio)\{.*name=\"$VMI\"" <<<"$RM" |
  sed 's/^/reporter: /' || true
title "annotations the status-reporter wrote"
echo "pod $NS/$POD:"
jq . <<<"$pod_ann"
echo "VMI $NS/$VMI (the fixture serves KubeVirt's stock VMI schema, which prunes the VEP 156 status fields, so the reporter records annotations):"
jq . <<<"$vmi_ann"

if [ $BURN -eq 1 ]; then
  count=32
  title "x-gm-burn: $count busy loops on the guest's one vCPU for $BURN_SECONDS s (the e2e test's burners)"
  agent "{\"execute\":\"x-gm-burn\",\"arguments\":{\"count\":$count,\"seconds\":$BURN_SECONDS}}" >/dev/null ||
    fail "x-gm-burn failed"
  t=$SECONDS
  while [ $((SECONDS - t)) -le "$BURN_SECONDS" ]; do
    SCRAPE=$(metrics) || SCRAPE=""
    l1=$(value kubevirt_vmi_guest_load_1m)
    r1=$(curl -sf --max-time 5 "$REPORTER_METRICS" | awk -v s="kubevirt_vmi_guest_load_1m$SEL" '$1 == s {print $2}' || true)
    printf '  +%3ds  exporter: load_1m %-6s load_5m %-6s load_15m %-6s run queue %-6s  reporter: load_1m %s\n' \
      "$((SECONDS - t))" "${l1:--}" "$(value kubevirt_vmi_guest_load_5m)" "$(value kubevirt_vmi_guest_load_15m)" \
      "$(awk -v l="${l1:-0}" -v v="${vcpus:-1}" 'BEGIN { q = l - v; printf "%.2f", (q > 0 ? q : 0) }')" "${r1:--}"
    sleep 5
  done
  echo "(run queue = load_1m - vCPUs; the shipped alerts: GuestVCPUQueueHighWarning above 10,"
  echo " GuestVCPUQueueHighCritical above 20 for 2m -- see runbooks/)"
fi

echo
log "done in $((SECONDS - T0)) s after set-up; cleaning up"
