#!/usr/bin/env bash
# End-to-end test "e2e.guest-load": a real guest under QEMU (TCG), driven by a
# real libvirt, read by the real guest-exporter, scraped by a real Prometheus
# that runs the shipped rules (promrules/*.yaml).
#
#   1. builds (cached) the guest: Debian's kernel + a busybox initramfs holding
#      the project's tiny guest agent (tests/e2e/agent/gm-agent.c);
#   2. starts a private libvirtd in *session* mode (as an unprivileged user, on a
#      socket in a temp dir) -- the shape of a non-root virt-launcher pod;
#   3. boots the guest; starts guest-exporter (2 s poll, TCP on loopback, with
#      CPU/memory requests), the vCPU stand-in for virt-handler (vcpu-stats.py)
#      and Debian's prometheus (loopback, 1 s rule evaluation, the shipped
#      rules with only their `for:` durations shortened);
#   4. idle guest: low load; the exporter's load = the guest's /proc/loadavg;
#      vCPUs, memory and both ratios match the domain XML and the requests;
#      in Prometheus the vCPU count matches the XML and no queue alert is active;
#   5. CPU burners in the guest (test-only agent command x-gm-burn, 64 busy
#      loops on the one vCPU): load_1m climbs; GuestVCPUQueueHighWarning fires
#      (straight away: the shipped rule has no `for`), GuestVCPUQueueHighCritical
#      goes pending -> firing; every recorded run-queue sample equals
#      max(load_1m - vCPUs, 0) of the load sample it was computed from;
#   6. stops the agent (test-only x-gm-stop-agent): the exporter's load series
#      vanish with guest_exporter_guest_load_status{reason="agent_disconnected"};
#      in Prometheus the load and queue series vanish, the queue alerts
#      resolve and GuestLoadMetricsMissing goes pending -> firing, as
#      docs/operations.md and runbooks/GuestLoadMetricsMissing.md describe.
#
# Why a daemon and not qemu:///embed: the embedded driver lives inside one
# process and locks its root (ROOT/run/qemu/driver.pid), so a second process
# (virsh, or guest-exporter) cannot open the same root. A root libvirtd would
# use the host's /etc/libvirt and /run/libvirt. A session libvirtd run as an
# unprivileged user takes all its paths from XDG_* variables, needs no
# libvirt-qemu user, no cgroups and no security driver -- and is what KubeVirt
# itself runs in a non-root launcher.
#
# libvirt here is Debian bookworm's 9.0: it rejects VIR_DOMAIN_GUEST_INFO_LOAD,
# so the exporter takes its agent-command path (guest-get-load through
# virDomainQemuAgentCommand). The native path (libvirt >= 11.2) is covered by
# the unit tests; see README.md.
#
# Usage: run-guest.sh [--exporter PATH] [--rules-dir DIR] [--prepare]
#   --prepare   only fetch/build the cached guest (kernel, agent, initramfs)
# Env: GM_E2E_BURN_COUNT (64), GM_E2E_IDLE_MAX (2), GM_E2E_RULE_FOR (10s),
#      GM_E2E_DEADLINE (480: seconds for the whole run, then it fails and cleans up),
#      GM_E2E_KERNEL_DEB (a linux-image-*.deb to use instead of apt-get download)
# Exit: 0 pass, 1 fail, 77 skip (QEMU, libvirt's QEMU driver, Prometheus or the
#       guest's ingredients are not available here; the message says which).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# The guest, its libvirtd, V/agent/alive/stop_pid: shared with scripts/run-demo.sh.
# shellcheck source=tests/e2e/lib/guest.sh
source "$HERE/lib/guest.sh"
EXPORTER="$HERE/../../build/exporter/guest-exporter"
RULES_DIR="$HERE/../../promrules"
PREPARE_ONLY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --exporter) EXPORTER=$2; shift 2 ;;
    --rules-dir) RULES_DIR=$2; shift 2 ;;
    --prepare) PREPARE_ONLY=1; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "$0"; exit 0 ;;
    *) echo "run-guest.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

BURN_COUNT=${GM_E2E_BURN_COUNT:-64}
IDLE_MAX=${GM_E2E_IDLE_MAX:-2}
RULE_FOR=${GM_E2E_RULE_FOR:-10s}
DEADLINE=${GM_E2E_DEADLINE:-480}
BURN_SECONDS=600 # the burners outlive every check; the domain is destroyed at the end
DOMAIN=e2e_guest-load # KubeVirt's <namespace>_<name> form
NODE=e2e-node
LABELS="namespace=\"e2e\",name=\"guest-load\",node=\"$NODE\""
SEL='{namespace="e2e",name="guest-load"}'
# Requests "given" to the exporter, as the injector passes them: compute CPU
# and memory requests and KubeVirt v1.9's overhead annotation.
CPU_REQUEST=100m CPU_REQUEST_CORES=0.1
MEMORY_REQUEST=228Mi MEMORY_REQUEST_BYTES=$((228 * 1048576))
MEMORY_OVERHEAD=100Mi MEMORY_OVERHEAD_BYTES=$((100 * 1048576))

START=$SECONDS
RUN=""
log() { printf 'e2e [%3ds] %s\n' "$((SECONDS - START))" "$*"; }
dump_logs() {
  [ -n "$RUN" ] && [ -d "$RUN" ] || return 0
  local f
  for f in "$RUN/d/console.log" "$RUN/d/libvirtd.log" "$RUN/d/cache/libvirt/qemu/log/$DOMAIN.log" \
    "$RUN/exporter.log" "$RUN/prom/vcpu-stats.log" "$RUN/prom/prometheus.log"; do
    [ -s "$f" ] || continue
    echo "----- ${f#$RUN/} (last 40 lines)" >&2
    tail -n 40 "$f" >&2
  done
}
skip() { echo "e2e: SKIP: $*" >&2; exit 77; }
fail() {
  echo "e2e: FAIL: $*" >&2
  dump_logs
  exit 1
}

# ------------------------------------------- processes, cleanup, deadline
# Every exit path (pass, fail, skip, signal, deadline) ends every process the
# test started, by pid, and removes its temp files.
EXPORTER_PID="" VCPU_PID="" PROM_PID=""

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  if [ -n "${WATCHDOG_PID:-}" ]; then
    kill -TERM "$WATCHDOG_PID" 2>/dev/null
    wait "$WATCHDOG_PID" 2>/dev/null
  fi
  stop_pid "$PROM_PID"
  stop_pid "$VCPU_PID"
  stop_pid "$EXPORTER_PID"
  guest_stop
  [ -n "$RUN" ] && rm -rf "$RUN"
  log "cleaned up (exit $rc)"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'echo "e2e: FAIL: terminated (signal, or the ${DEADLINE} s deadline passed)" >&2; dump_logs; exit 1' TERM
# The whole run is bounded, below ctest's TIMEOUT (whose SIGKILL would leave
# QEMU behind): at the deadline the watchdog TERMs the test, whose trap cleans
# up. The watchdog is one subshell with no child: it waits in `read -t` on a
# pipe that only this script holds, so it also ends (without killing) the
# moment the test is gone for any reason, and it checks that its parent is
# still this test before it signals.
# shellcheck disable=SC2034 # WATCHDOG: the coproc's fds; WATCHDOG_PID is used
coproc WATCHDOG {
  read -r -t "$DEADLINE" _
  rc=$?
  read -r _ _ _ ppid _ </proc/self/stat
  if [ $rc -gt 128 ] && [ "$ppid" = "$$" ]; then kill -TERM "$$"; fi
}

# ---------------------------------------------------------------- preflight
guest_preflight
need prometheus "install Debian's prometheus"
need promtool "install Debian's prometheus"
need python3 "install python3"
need jq "install jq"
[ -x "$EXPORTER" ] || { [ $PREPARE_ONLY -eq 1 ] || fail "guest-exporter not built at $EXPORTER"; }
RULE_FILES=("$RULES_DIR"/*.yaml)
[ -f "${RULE_FILES[0]}" ] || fail "no rule files in $RULES_DIR"

# --------------------------------------------------- the guest, cached build
t=$SECONDS
guest_prepare
log "guest ready: kernel $KVER, initramfs $(du -k "$GUEST/initrd.img" | cut -f1) KiB ($((SECONDS - t)) s)"
[ $PREPARE_ONLY -eq 1 ] && exit 0

# ------------------------------------------------------------- the run dir
guest_rundir
mkdir -p "$RUN/exporter" "$RUN/prom"/{rules,data}
cp "$EXPORTER" "$RUN/guest-exporter"
cp "$(dirname "$EXPORTER")/guest-exporter-flags" "$RUN/"  # its flag parser, run from beside it

# The shipped rules, in a temporary copy in which ONLY the `for:` durations
# are rewritten (to $RULE_FOR) so that pending -> firing takes seconds, not
# minutes. The evaluation interval is set in prometheus.yml (global
# evaluation_interval); the rule groups set none, so nothing else changes.
# The check below proves it: apart from `for:` lines the copy is identical.
n_for=0
for f in "${RULE_FILES[@]}"; do
  dst="$RUN/prom/rules/$(basename "$f")"
  sed -E "s/^([[:space:]]*)for:[[:space:]]*[0-9smhdwy]+[[:space:]]*$/\1for: $RULE_FOR/" "$f" >"$dst"
  cmp -s <(grep -Ev '^[[:space:]]*for:' "$f") <(grep -Ev '^[[:space:]]*for:' "$dst") ||
    fail "rewriting the for: durations of $f changed other lines"
  n_for=$((n_for + $(grep -Ec '^[[:space:]]*for:' "$f" || true)))  # grep -c exits 1 on a file without for:
  [ "$(grep -Ec "^[[:space:]]*for: $RULE_FOR\$" "$dst")" -eq "$(grep -Ec '^[[:space:]]*for:' "$f")" ] ||
    fail "not every for: duration of $f could be rewritten"
done
out=$(promtool check rules "$RUN"/prom/rules/*.yaml 2>&1) || fail "promtool rejects the rule copy: $out"
log "rules: ${#RULE_FILES[@]} shipped file(s) from $RULES_DIR, $n_for for: durations set to $RULE_FOR, nothing else changed"
chown -R "$RUN_UID:$RUN_GID" "$RUN/d" "$RUN/exporter" "$RUN/prom"
chmod 644 "$RUN/d/vmlinuz" "$RUN/d/initrd.img"

# --------------------------------------------------------------- libvirtd
guest_start_libvirtd

# ------------------------------------------------------------------ guest
guest_create

# ---------------------------------- guest-exporter, vCPU stand-in, Prometheus
# Started while the guest boots, so Prometheus' first scrapes (5-9 s after
# start) overlap the boot.
SOCK="$RUN/exporter/metrics.sock"
log "starting guest-exporter: 2 s poll, TCP 127.0.0.1:0, --cpu-request $CPU_REQUEST --memory-request $MEMORY_REQUEST --memory-overhead $MEMORY_OVERHEAD"
env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$RUN/d/home" \
  "${AS_USER[@]}" "$RUN/guest-exporter" --libvirt-uri "$URI" --guest-info-interval 2 \
  --socket "$SOCK" --listen-address 127.0.0.1:0 --node-name "$NODE" --log-level debug \
  --cpu-request "$CPU_REQUEST" --memory-request "$MEMORY_REQUEST" --memory-overhead "$MEMORY_OVERHEAD" \
  >"$RUN/exporter.log" 2>&1 </dev/null &
EXPORTER_PID=$!

# kubevirt_vmi_vcpu_seconds_total, which the shipped rules count vCPUs from,
# is virt-handler's; vcpu-stats.py computes it as virt-handler does, live from
# this libvirt's vCPU statistics at every scrape (see that file).
env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$RUN/d/home" \
  "${AS_USER[@]}" python3 "$HERE/vcpu-stats.py" --uri "$URI" --node "$NODE" \
  --port-file "$RUN/prom/vcpu-stats.port" >"$RUN/prom/vcpu-stats.log" 2>&1 </dev/null &
VCPU_PID=$!

t=$SECONDS
EXPORTER_PORT="" VCPU_PORT=""
while [ -z "$EXPORTER_PORT" ] || [ -z "$VCPU_PORT" ]; do
  [ $((SECONDS - t)) -lt 30 ] || fail "guest-exporter or vcpu-stats.py did not start listening within 30 s"
  alive "$EXPORTER_PID" || fail "guest-exporter exited"
  alive "$VCPU_PID" || fail "vcpu-stats.py exited"
  EXPORTER_PORT=$(sed -n 's/.*listen=127\.0\.0\.1:0 (port \([0-9]*\)).*/\1/p' "$RUN/exporter.log" | head -n1)
  VCPU_PORT=$(cat "$RUN/prom/vcpu-stats.port" 2>/dev/null || true)
  sleep 0.2
done
log "guest-exporter on 127.0.0.1:$EXPORTER_PORT, vcpu-stats.py on 127.0.0.1:$VCPU_PORT"

# Prometheus on an ephemeral loopback port. Scrapes every 2 s (the exporter
# polls every 2 s), rules every 1 s. A free port is picked, then bound by
# Prometheus: another process may take it in between, so retry.
cat >"$RUN/prom/prometheus.yml" <<EOF
# e2e: short intervals; the rules are the shipped files (only for: shortened).
global:
  scrape_interval: 2s
  scrape_timeout: 2s
  evaluation_interval: 1s
rule_files:
  - $RUN/prom/rules/*.yaml
scrape_configs:
  - job_name: guest-exporter
    static_configs:
      - targets: ['127.0.0.1:$EXPORTER_PORT']
  - job_name: virt-handler-vcpu
    static_configs:
      - targets: ['127.0.0.1:$VCPU_PORT']
EOF
chown "$RUN_UID:$RUN_GID" "$RUN/prom/prometheus.yml"
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
t=$SECONDS
for _attempt in 1 2 3; do
  PROM_PORT=$(free_port)
  env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$RUN/d/home" \
    "${AS_USER[@]}" prometheus --config.file="$RUN/prom/prometheus.yml" \
    --storage.tsdb.path="$RUN/prom/data" --web.listen-address="127.0.0.1:$PROM_PORT" \
    --log.level=warn >"$RUN/prom/prometheus.log" 2>&1 </dev/null &
  PROM_PID=$!
  PROM="http://127.0.0.1:$PROM_PORT"
  for _ in $(seq 150); do
    curl -sf --max-time 2 "$PROM/-/ready" >/dev/null 2>&1 && break 2
    alive "$PROM_PID" || break
    sleep 0.2
  done
  grep -q "address already in use" "$RUN/prom/prometheus.log" || fail "prometheus did not become ready"
  stop_pid "$PROM_PID"
  PROM_PID=""
done
[ -n "$PROM_PID" ] || fail "prometheus found no free port in 3 attempts"
log "prometheus $(prometheus --version 2>&1 | awk 'NR == 1 {print $3}') ready on 127.0.0.1:$PROM_PORT after $((SECONDS - t)) s"

# Prometheus' HTTP API, 3 tries; a query that keeps failing fails the test
# (set -e), never reads as "no series" or "no alert".
api() {
  local _try
  for _try in 1 2 3; do
    curl -sf --max-time 5 -G "$PROM/api/v1/$1" "${@:2}" && return 0
    sleep 1
  done
  echo "e2e: FAIL: Prometheus API /api/v1/$1 does not answer" >&2
  return 1
}
pquery() { api query --data-urlencode "query=$1"; }
pvalue() { pquery "$1" | jq -r '.data.result[0].value[1] // empty'; } # first result's value, or empty
pcount() { pquery "$1" | jq -r '.data.result | length'; }
ALERTS_JSON='{}'
fetch_alerts() { ALERTS_JSON=$(api alerts) || fail "cannot read /api/v1/alerts"; }
alert_state() { jq -r --arg a "$1" '[.data.alerts[]? | select(.labels.alertname == $a) | .state][0] // "inactive"' <<<"$ALERTS_JSON"; }
alert_json() { jq -c --arg a "$1" '[.data.alerts[]? | select(.labels.alertname == $a)][0] // empty' <<<"$ALERTS_JSON"; }
eq() { awk -v a="$1" -v b="$2" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a != "" && b != "" && d <= 1e-9 * (1 + (b < 0 ? -b : b))) }'; }

# ------------------------------------------------------------ agent comes up
log "waiting for the guest agent"
guest_wait_agent 120
V dumpxml "$DOMAIN" | grep -q "name='org.qemu.guest_agent.0' state='connected'" ||
  fail "libvirt does not show the agent channel connected"

info=$(agent '{"execute":"guest-info"}') || fail "guest-info failed"
echo "$info" | grep -q '"enabled":true,"name":"guest-get-load"' || fail "guest-info lacks guest-get-load: $info"
load=$(agent '{"execute":"guest-get-load"}') || fail "guest-get-load failed"
log "virsh qemu-agent-command guest-get-load -> $load"
echo "$load" | grep -Eq '^\{"return":\{"load1m":[0-9.]+,"load5m":[0-9.]+,"load15m":[0-9.]+\}\}$' ||
  fail "unexpected guest-get-load answer: $load"
if out=$(agent '{"execute":"guest-no-such-command"}' 2>&1); then
  fail "an unknown command succeeded: $out"
fi
echo "$out" | grep -q "The command guest-no-such-command has not been found" ||
  fail "unknown command: unexpected error: $out"

# ------------------------------------------------- idle guest: the exporter
metrics() { curl -sf --max-time 5 --unix-socket "$SOCK" http://localhost/metrics; }
# value of series NAME{LABELS} in the last scrape, or empty
value() { awk -v s="$1{$LABELS}" '$1 == s {print $2}' <<<"$SCRAPE"; }
status_reason() { grep -o "^guest_exporter_guest_load_status{$LABELS,reason=\"[a-z_]*\"} 1" <<<"$SCRAPE" | sed 's/.*reason="\([a-z_]*\)".*/\1/'; }
SCRAPE="" SCRAPES=0 SCRAPES_FAILED=0 SCRAPE_MAX_MS=0
scrape() {
  local t0 ms
  t0=$(date +%s%N)
  SCRAPE=$(metrics) || { SCRAPE=""; SCRAPES_FAILED=$((SCRAPES_FAILED + 1)); }
  ms=$((($(date +%s%N) - t0) / 1000000))
  SCRAPES=$((SCRAPES + 1))
  [ $ms -le $SCRAPE_MAX_MS ] || SCRAPE_MAX_MS=$ms
}

t=$SECONDS
until scrape && [ -n "$(value kubevirt_vmi_guest_load_1m)" ]; do
  [ $((SECONDS - t)) -lt 30 ] || fail "no kubevirt_vmi_guest_load_1m{$LABELS} 30 s after the agent answered"
  alive "$EXPORTER_PID" || fail "guest-exporter exited"
  sleep 0.5
done
log "exporter serves the load after $((SECONDS - t)) s: load_1m=$(value kubevirt_vmi_guest_load_1m) status=$(status_reason)"
[ "$(status_reason)" = ok ] || fail "status reason is $(status_reason), want ok"
# Which load path: libvirt < 11.2 rejects VIR_DOMAIN_GUEST_INFO_LOAD (0x80),
# and the exporter then reads guest-get-load through the agent command.
if [ -n "$LIBVIRT_VERSION" ] && [ "$(printf '%s\n' "$LIBVIRT_VERSION" 11.2.0 | sort -V | head -n1)" != 11.2.0 ]; then
  grep -q "unsupported guest information types '0x80'" "$RUN/d/libvirtd.log" ||
    fail "libvirt $LIBVIRT_VERSION did not reject the LOAD guest-info type: which path did the exporter take?"
  log "libvirt $LIBVIRT_VERSION rejected GetGuestInfo(LOAD): the exporter reads the load through the agent-command path"
else
  log "libvirt ${LIBVIRT_VERSION:-?}: the exporter may use the native LOAD path"
fi
tcp=$(curl -sf --max-time 5 "http://127.0.0.1:$EXPORTER_PORT/metrics") || fail "the exporter's TCP /metrics does not answer"
grep -q "^kubevirt_vmi_guest_load_1m{$LABELS} " <<<"$tcp" || fail "the exporter's TCP /metrics lacks the load"

# The exporter's value is the guest's: compare with virsh around a scrape, at
# a moment the guest's value did not change (it moves every 5 s).
GUEST_L1=""
same_as_guest() {
  local a b m
  for _ in $(seq 10); do
    a=$(agent '{"execute":"guest-get-load"}' | sed 's/.*"load1m":\([0-9.]*\).*/\1/' || true)
    scrape
    m=$(value kubevirt_vmi_guest_load_1m)
    b=$(agent '{"execute":"guest-get-load"}' | sed 's/.*"load1m":\([0-9.]*\).*/\1/' || true)
    if [ -n "$m" ] && [ "$a" = "$b" ] && awk -v m="$m" -v a="$a" 'BEGIN { exit !(m + 0 == a + 0) }'; then
      log "exporter load_1m $m = guest's /proc/loadavg $a"
      GUEST_L1=$m
      return 0
    fi
    sleep 1.1
  done
  fail "exporter load_1m never matched the guest's (last: exporter $m, guest $a/$b)"
}
same_as_guest
awk -v l="$GUEST_L1" -v m="$IDLE_MAX" 'BEGIN { exit !(l + 0 <= m + 0) }' ||
  fail "the idle guest's load_1m is $GUEST_L1, above $IDLE_MAX (GM_E2E_IDLE_MAX)"

# vCPUs, memory and the two ratios as the domain XML and the requests say.
xml=$(V dumpxml "$DOMAIN")
want_vcpus=$(sed -n "s#.*<vcpu[^>]*>\([0-9]*\)</vcpu>.*#\1#p" <<<"$xml")
want_kib=$(sed -n "s#.*<memory unit='KiB'>\([0-9]*\)</memory>.*#\1#p" <<<"$xml")
[ -n "$want_vcpus" ] && [ -n "$want_kib" ] || fail "cannot read vCPUs/memory from the domain XML"
want_cpu_ratio=$(awk -v v="$want_vcpus" -v c="$CPU_REQUEST_CORES" 'BEGIN { printf "%.12g", v / c }')
want_mem_ratio=$(awk -v k="$want_kib" -v r="$MEMORY_REQUEST_BYTES" -v o="$MEMORY_OVERHEAD_BYTES" \
  'BEGIN { printf "%.12g", k * 1024 / (r - o) }')
got_vcpus=$(value guest_exporter_guest_vcpus)
got_bytes=$(value guest_exporter_guest_memory_bytes)
got_cpu_ratio=$(value kubevirt_vmi_cpu_allocation_ratio)
got_mem_ratio=$(value kubevirt_vmi_memory_overcommit_ratio)
log "vCPUs: XML $want_vcpus, exporter $got_vcpus; memory: XML $want_kib KiB, exporter $got_bytes bytes"
log "ratios: cpu $got_cpu_ratio (want $want_vcpus / $CPU_REQUEST = $want_cpu_ratio), memory $got_mem_ratio (want ${want_kib}KiB / ($MEMORY_REQUEST - $MEMORY_OVERHEAD) = $want_mem_ratio)"
[ "$got_vcpus" = "$want_vcpus" ] || fail "guest_exporter_guest_vcpus=$got_vcpus, domain XML says $want_vcpus"
awk -v b="$got_bytes" -v k="$want_kib" 'BEGIN { exit !(b + 0 == k * 1024) }' ||
  fail "guest_exporter_guest_memory_bytes=$got_bytes, domain XML says $want_kib KiB"
eq "$got_cpu_ratio" "$want_cpu_ratio" || fail "kubevirt_vmi_cpu_allocation_ratio=$got_cpu_ratio, want $want_cpu_ratio"
eq "$got_mem_ratio" "$want_mem_ratio" || fail "kubevirt_vmi_memory_overcommit_ratio=$got_mem_ratio, want $want_mem_ratio"

# ----------------------------------------------- idle guest: in Prometheus
t=$SECONDS
while :; do
  up_e=$(pvalue 'up{job="guest-exporter"}' || true)
  up_v=$(pvalue 'up{job="virt-handler-vcpu"}' || true)
  p_queue=$(pvalue "vmi:kubevirt_vmi_guest_queue_length:sum$SEL" || true)
  [ "$up_e" = 1 ] && [ "$up_v" = 1 ] && [ -n "$p_queue" ] && break
  [ $((SECONDS - t)) -lt 60 ] ||
    fail "Prometheus has no run queue for the VMI after 60 s (up: exporter ${up_e:-none}, vcpu ${up_v:-none})"
  sleep 1
done
log "Prometheus scrapes both targets and records the run queue ($((SECONDS - t)) s)"
p_vcpus=$(pvalue "vmi:kubevirt_vmi_vcpu:count$SEL")
p_vcpus_vep=$(pvalue "kubevirt_vmi_vcpu_count$SEL")
p_exporter_vcpus=$(pvalue "guest_exporter_guest_vcpus$SEL")
log "Prometheus: vmi:kubevirt_vmi_vcpu:count=$p_vcpus kubevirt_vmi_vcpu_count=$p_vcpus_vep guest_exporter_guest_vcpus=$p_exporter_vcpus (XML $want_vcpus)"
[ "$p_vcpus" = "$want_vcpus" ] && [ "$p_vcpus_vep" = "$want_vcpus" ] && [ "$p_exporter_vcpus" = "$want_vcpus" ] ||
  fail "vCPU counts in Prometheus differ from the domain XML's $want_vcpus"
labels=$(pquery "vmi:kubevirt_vmi_guest_queue_length:sum$SEL" | jq -c '.data.result[0].metric')
[ "$labels" = "{\"__name__\":\"vmi:kubevirt_vmi_guest_queue_length:sum\",\"name\":\"guest-load\",\"namespace\":\"e2e\",\"node\":\"$NODE\"}" ] ||
  fail "the recorded run queue has labels $labels, want exactly namespace, name, node"
p_cpu_ratio=$(pvalue "kubevirt_vmi_cpu_allocation_ratio$SEL")
p_mem_ratio=$(pvalue "kubevirt_vmi_memory_overcommit_ratio$SEL")
eq "$p_cpu_ratio" "$want_cpu_ratio" && eq "$p_mem_ratio" "$want_mem_ratio" ||
  fail "ratios in Prometheus: cpu $p_cpu_ratio, memory $p_mem_ratio; want $want_cpu_ratio, $want_mem_ratio"
# A guest that was missing its load while it booted may have raised
# GuestLoadMetricsMissing (its for: is short here); with the load present it
# must resolve. No queue alert may be active for an idle guest.
t=$SECONDS
while fetch_alerts; [ "$(alert_state GuestLoadMetricsMissing)" != inactive ]; do
  [ $((SECONDS - t)) -lt 20 ] || fail "GuestLoadMetricsMissing still $(alert_state GuestLoadMetricsMissing) with the load present"
  sleep 1
done
for a in GuestVCPUQueueHighWarning GuestVCPUQueueHighCritical; do
  [ "$(alert_state $a)" = inactive ] || fail "$a is $(alert_state $a) for an idle guest"
done
log "idle: queue=$(pvalue "vmi:kubevirt_vmi_guest_queue_length:sum$SEL"), no queue alert, GuestLoadMetricsMissing inactive"

# ------------------------------------------------------------------- load
log "x-gm-burn: $BURN_COUNT busy loops on the guest's one vCPU"
out=$(agent "{\"execute\":\"x-gm-burn\",\"arguments\":{\"count\":$BURN_COUNT,\"seconds\":$BURN_SECONDS}}") ||
  fail "x-gm-burn failed"
log "x-gm-burn answered $out"
t_burn=$SECONDS
W_PENDING="" W_FIRING="" C_PENDING="" C_FIRING="" C_FIRING_WALL="" W_JSON="" C_JSON="" c_active_at=""
last_print=-10
# Queue > 20 (Critical) needs load_1m > 21 on one vCPU; the guest's 1-minute
# average climbs towards $BURN_COUNT with a time constant of 60-100 s under
# TCG. 180 s is a generous bound for a busy 2-core machine.
while [ $((SECONDS - t_burn)) -lt 180 ]; do
  scrape
  l1=$(value kubevirt_vmi_guest_load_1m)
  fetch_alerts
  w=$(alert_state GuestVCPUQueueHighWarning)
  c=$(alert_state GuestVCPUQueueHighCritical)
  el=$((SECONDS - t_burn))
  [ "$w" = pending ] && [ -z "$W_PENDING" ] && W_PENDING=$el
  [ "$w" = firing ] && [ -z "$W_FIRING" ] && { W_FIRING=$el; W_JSON=$(alert_json GuestVCPUQueueHighWarning); }
  [ "$c" = pending ] && [ -z "$C_PENDING" ] && { C_PENDING=$el; c_active_at=$(alert_json GuestVCPUQueueHighCritical | jq -r .activeAt); }
  [ "$c" = firing ] && [ -z "$C_FIRING" ] && {
    C_FIRING=$el C_FIRING_WALL=$(date +%s)
    C_JSON=$(alert_json GuestVCPUQueueHighCritical)
  }
  if [ $((SECONDS - last_print)) -ge 10 ]; then
    log "  +$el s: exporter load_1m=${l1:-absent}; Prometheus queue=$(pvalue "vmi:kubevirt_vmi_guest_queue_length:sum$SEL" || true); Warning $w, Critical $c"
    last_print=$SECONDS
  fi
  [ -n "$W_FIRING" ] && [ -n "$C_FIRING" ] && break
  sleep 1
done
log "after $((SECONDS - t_burn)) s of burning: Warning pending@${W_PENDING:--} firing@${W_FIRING:--}, Critical pending@${C_PENDING:--} firing@${C_FIRING:--} (s)"
[ -n "$W_FIRING" ] || fail "GuestVCPUQueueHighWarning did not fire within 180 s of x-gm-burn (load_1m ${l1:-absent})"
# The shipped warning has no `for` (VEP 67): Prometheus makes it firing in the
# very evaluation that first sees the queue above 10, so it is never pending.
[ -z "$W_PENDING" ] || fail "GuestVCPUQueueHighWarning was pending; the shipped rule has no for:"
[ -n "$C_PENDING" ] || fail "GuestVCPUQueueHighCritical was never seen pending"
[ -n "$C_FIRING" ] || fail "GuestVCPUQueueHighCritical did not go from pending to firing within 180 s"
# Firing no sooner than `for` after it became active (activeAt, set when it
# went pending, is kept when it fires).
case "$RULE_FOR" in
  *s) for_s=${RULE_FOR%s} ;;
  *m) for_s=$((${RULE_FOR%m} * 60)) ;;
  *) fail "GM_E2E_RULE_FOR=$RULE_FOR: use seconds (10s) or minutes (1m)" ;;
esac
active_s=$(date -d "$c_active_at" +%s 2>/dev/null) || fail "bad activeAt '$c_active_at'"
[ "$(jq -r .activeAt <<<"$C_JSON")" = "$c_active_at" ] || fail "GuestVCPUQueueHighCritical was reset between pending and firing"
[ $((C_FIRING_WALL - active_s)) -ge $((for_s - 1)) ] ||
  fail "GuestVCPUQueueHighCritical fired $((C_FIRING_WALL - active_s)) s after it became active; for: is $RULE_FOR"
# Alert labels and annotations as shipped; scrape labels never reach them.
check_alert() { # name severity json
  local name=$1 sev=$2 j=$3 got want
  got=$(jq -c '.labels' <<<"$j")
  want=$(jq -cn --arg a "$name" --arg s "$sev" --arg n "$NODE" '{alertname: $a, kubernetes_operator_component: "kubevirt-guest-metrics",
    kubernetes_operator_part_of: "kubevirt", name: "guest-load", namespace: "e2e", node: $n,
    operator_health_impact: "none", severity: $s}')
  [ "$(jq -S . <<<"$got")" = "$(jq -S . <<<"$want")" ] || fail "$name labels $got, want $want"
  jq -e --arg a "$name" '.annotations.runbook_url == "https://kubevirt.io/monitoring/runbooks/" + $a' <<<"$j" >/dev/null ||
    fail "$name runbook_url: $(jq -r .annotations.runbook_url <<<"$j")"
  jq -e '.annotations.description | test("e2e/guest-load on node e2e-node")' <<<"$j" >/dev/null ||
    fail "$name description: $(jq -r .annotations.description <<<"$j")"
}
check_alert GuestVCPUQueueHighWarning warning "$W_JSON"
check_alert GuestVCPUQueueHighCritical critical "$C_JSON"
awk -v v="$(jq -r .value <<<"$W_JSON")" 'BEGIN { exit !(v + 0 > 10) }' || fail "Warning fired with value $(jq -r .value <<<"$W_JSON")"
awk -v v="$(jq -r .value <<<"$C_JSON")" 'BEGIN { exit !(v + 0 > 20) }' || fail "Critical fired with value $(jq -r .value <<<"$C_JSON")"
log "Warning fired at queue $(jq -r .value <<<"$W_JSON") (no pending: no for:); Critical pending -> firing after $((C_FIRING - C_PENDING)) s at queue $(jq -r .value <<<"$C_JSON"); labels and runbook URLs as shipped"

# The guest's own load reached Prometheus unchanged: the exporter's value,
# equal to the guest's /proc/loadavg, is among Prometheus' samples.
same_as_guest
t=$SECONDS
while ! pquery "kubevirt_vmi_guest_load_1m${SEL}[20s]" | jq -e --arg m "$GUEST_L1" \
  '[.data.result[0].values[]?[1] | tonumber] | any(. == ($m | tonumber))' >/dev/null; do
  [ $((SECONDS - t)) -lt 10 ] || fail "Prometheus never stored the guest's load_1m $GUEST_L1"
  sleep 1
done
log "Prometheus stored the guest's load_1m $GUEST_L1"

# Every recorded run-queue sample so far equals clamp_min(load_1m - vCPUs, 0)
# of the load sample the evaluation saw: the latest at or before its timestamp
# (or the one before, when a scrape was appended just after an evaluation).
# The VEP 67 names carry the same values at the same timestamps. (The two
# range queries run one after the other, and Prometheus commits each rule of
# a group on its own, so either may hold a sample at an end of the window that
# the other does not yet or no longer has: compare at the common timestamps,
# and require all but those two ends to be common.)
win=$((SECONDS - t_create + 10))
qh=$(pquery "vmi:kubevirt_vmi_guest_queue_length:sum${SEL}[${win}s]")
qv=$(pquery "kubevirt_vmi_guest_vcpu_queue${SEL}[${win}s]")
lh=$(pquery "kubevirt_vmi_guest_load_1m${SEL}[${win}s]")
ch=$(pquery "vmi:kubevirt_vmi_vcpu:count${SEL}[${win}s]")
cv=$(pquery "kubevirt_vmi_vcpu_count${SEL}[${win}s]")
verdict=$(jq -n --argjson q "$qh" --argjson qv "$qv" --argjson l "$lh" --argjson c "$ch" --argjson cv "$cv" \
  --argjson vcpus "$want_vcpus" '
  def samples(r): [r.data.result[0].values[]? | [.[0], (.[1] | tonumber)]];
  samples($l) as $L | samples($q) as $Q | samples($qv) as $QV |
  ([$Q[] | . as [$t, $v] | ([$L[] | select(.[0] <= $t)] | .[-2:] | map([.[1] - $vcpus, 0] | max)) as $want |
     select(($want | any(. - $v | fabs < 1e-9)) | not) | {t: $t, v: $v, want: $want}]) as $bad |
  {queue: ($Q | length), loads: ($L | length), above10: ([$Q[] | select(.[1] > 10)] | length),
   max: ([$Q[][1]] | max), bad: $bad[:3], nbad: ($bad | length),
   vep_same: (([$Q[] | {key: (.[0] | tostring), value: .[1]}] | from_entries) as $qm
              | [$QV[] | select($qm[.[0] | tostring] != null)] as $common
              | ($common | length) >= ($Q | length) - 2
                and ([$common[] | select($qm[.[0] | tostring] != .[1])] | length) == 0),
   counts: ([samples($c)[][1], samples($cv)[][1]] | unique)}')
log "recorded queue vs load: $(jq -c 'del(.bad)' <<<"$verdict")"
[ "$(jq .nbad <<<"$verdict")" = 0 ] || fail "recorded queue samples that are not max(load_1m - $want_vcpus, 0): $(jq -c .bad <<<"$verdict")"
[ "$(jq .queue <<<"$verdict")" -ge 20 ] || fail "too few recorded queue samples to compare"
[ "$(jq .above10 <<<"$verdict")" -ge 1 ] || fail "no recorded queue sample above 10"
[ "$(jq .vep_same <<<"$verdict")" = true ] || fail "kubevirt_vmi_guest_vcpu_queue differs from vmi:kubevirt_vmi_guest_queue_length:sum"
[ "$(jq -c .counts <<<"$verdict")" = "[$want_vcpus]" ] || fail "recorded vCPU counts $(jq -c .counts <<<"$verdict"), want only $want_vcpus"

# ------------------------------------------------------------- agent stops
log "x-gm-stop-agent: the agent exits and closes its port"
agent '{"execute":"x-gm-stop-agent"}' >/dev/null || fail "x-gm-stop-agent failed"
t_stop=$SECONDS
while :; do
  scrape
  if [ -z "$(grep '^kubevirt_vmi_guest_load_' <<<"$SCRAPE")" ] && [ -n "$(status_reason)" ] && [ "$(status_reason)" != ok ]; then
    break
  fi
  [ $((SECONDS - t_stop)) -lt 30 ] || fail "load series still there or status ok 30 s after the agent stopped"
  sleep 0.5
done
reason=$(status_reason)
log "exporter: load series gone $((SECONDS - t_stop)) s after the agent stopped; guest_exporter_guest_load_status reason=\"$reason\""
# libvirt 9.0 reports a closed agent port as "QEMU guest agent is not
# connected" (VIR_ERR_AGENT_UNRESPONSIVE), which the exporter calls:
[ "$reason" = agent_disconnected ] || fail "reason=$reason, want agent_disconnected"
V dumpxml "$DOMAIN" | grep -q "name='org.qemu.guest_agent.0' state='disconnected'" ||
  fail "libvirt does not show the agent channel disconnected"
[ "$(value guest_exporter_guest_vcpus)" = "$want_vcpus" ] || fail "the domain's other series went away with the agent"

# In Prometheus: load and queue series end (staleness), the queue alerts
# resolve, the reason is visible, and GuestLoadMetricsMissing -- vCPUs but no
# load -- goes pending, then firing after its (shortened) for:.
M_PENDING="" M_FIRING="" M_JSON="" gone=""
while [ $((SECONDS - t_stop)) -lt 90 ]; do
  fetch_alerts
  m=$(alert_state GuestLoadMetricsMissing)
  el=$((SECONDS - t_stop))
  [ "$m" = pending ] && [ -z "$M_PENDING" ] && M_PENDING=$el
  [ "$m" = firing ] && [ -z "$M_FIRING" ] && { M_FIRING=$el; M_JSON=$(alert_json GuestLoadMetricsMissing); }
  if [ -z "$gone" ] &&
    [ "$(pcount "{__name__=~\"kubevirt_vmi_guest_load_.*|vmi:kubevirt_vmi_guest_queue_length:sum|kubevirt_vmi_guest_vcpu_queue\"}")" = 0 ] &&
    [ "$(alert_state GuestVCPUQueueHighWarning)" = inactive ] && [ "$(alert_state GuestVCPUQueueHighCritical)" = inactive ]; then
    gone=$el
  fi
  [ -n "$gone" ] && [ -n "$M_FIRING" ] && break
  sleep 1
done
[ -n "$gone" ] || fail "90 s after the agent stopped, Prometheus still has load/queue series or an active queue alert"
[ -n "$M_PENDING" ] || fail "GuestLoadMetricsMissing was never seen pending"
[ -n "$M_FIRING" ] || fail "GuestLoadMetricsMissing did not fire within 90 s of the agent stopping"
jq -e '.labels == {alertname: "GuestLoadMetricsMissing", namespace: "e2e", name: "guest-load", severity: "info",
  operator_health_impact: "none", kubernetes_operator_part_of: "kubevirt",
  kubernetes_operator_component: "kubevirt-guest-metrics"}' <<<"$M_JSON" >/dev/null ||
  fail "GuestLoadMetricsMissing labels $(jq -c .labels <<<"$M_JSON")"
p_reason=$(pvalue "guest_exporter_guest_load_status{namespace=\"e2e\",name=\"guest-load\",reason=\"agent_disconnected\"}")
[ "$p_reason" = 1 ] || fail "Prometheus lacks guest_exporter_guest_load_status{reason=\"agent_disconnected\"}"
[ "$(pvalue "vmi:kubevirt_vmi_vcpu:count$SEL")" = "$want_vcpus" ] || fail "the vCPU count went away with the agent"
log "Prometheus: load and queue series gone, queue alerts resolved (+$gone s); GuestLoadMetricsMissing pending@$M_PENDING firing@$M_FIRING s; reason agent_disconnected"

log "scrapes of the unix /metrics: $SCRAPES, failed $SCRAPES_FAILED, slowest $SCRAPE_MAX_MS ms"
log "PASS: agent ${agent_s} s after create, Warning firing ${W_FIRING} s and Critical firing ${C_FIRING} s into the burn, total $((SECONDS - START)) s"
