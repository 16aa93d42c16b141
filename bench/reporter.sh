#!/usr/bin/env bash
# Benchmarks status-reporter at scale against the API-server fixture
# (tests/apiserver): N running VMIs with their active virt-launcher pods, one
# pod-bound token and one valid report per VMI. Measures the time from the
# first report until every pod and VMI carries its ratios, against the time
# the reporter's client-side QPS limit implies; the reporter's peak RSS
# (VmHWM) and RssAnon; the API requests per VMI by verb (fixture request log),
# with writes counted per object; TokenReviews; report results from the
# reporter's /metrics; then a second pass of the same reports, which must
# write nothing. Before that, a short ceiling run measures how many API
# requests per second the fixture serves with no QPS limit, so that the stated
# QPS is one the fixture sustains. Prints a markdown section; with --write it
# replaces the reporter section of docs/benchmarks.md (between its markers).
#
#   bench/reporter.sh [--write] [--vmis N] [--qps Q] [--burst B] [--workers W]
#                     [--client-threads T] [--ceiling-vmis N | --no-ceiling]
#
# Defaults: --vmis 10000 --qps 100 --burst 200 --workers 4 --client-threads 4
# --ceiling-vmis 2000. At 10,000 VMIs the reporter makes about 30,000 API
# requests (TokenReview + pod patch + VMI patch per VMI), 300 s at 100 QPS.
# Environment (optional): BUILD_DIR (default <repo>/build-reporter-bench),
# SKIP_DEPS=1 (do not run scripts/install-deps.sh).
# Uses only 127.0.0.1; everything it starts is stopped, and its temp dir
# removed, on every exit path.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
write=0
VMIS=10000
QPS=100
BURST=200
WORKERS=4
CLIENT_THREADS=4
CEILING_VMIS=2000
NAMESPACES=10
args_shown=()
while [ $# -gt 0 ]; do
  case "$1" in
    --write) write=1 ;;
    --vmis) VMIS=$2; args_shown+=("$1 $2"); shift ;;
    --qps) QPS=$2; args_shown+=("$1 $2"); shift ;;
    --burst) BURST=$2; args_shown+=("$1 $2"); shift ;;
    --workers) WORKERS=$2; args_shown+=("$1 $2"); shift ;;
    --client-threads) CLIENT_THREADS=$2; args_shown+=("$1 $2"); shift ;;
    --ceiling-vmis) CEILING_VMIS=$2; args_shown+=("$1 $2"); shift ;;
    --no-ceiling) CEILING_VMIS=0; args_shown+=("$1") ;;
    -h|--help) sed -n 2,24p "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done
for v in "$VMIS" "$BURST" "$WORKERS" "$CLIENT_THREADS" "$CEILING_VMIS"; do
  [[ "$v" =~ ^[0-9]+$ ]] || { echo "not a whole number: $v" >&2; exit 2; }
done
[[ "$QPS" =~ ^[0-9]+(\.[0-9]+)?$ ]] || { echo "--qps takes a number" >&2; exit 2; }
[ "$VMIS" -ge 1 ] || { echo "--vmis must be at least 1" >&2; exit 2; }
[ "$VMIS" -ge "$NAMESPACES" ] || NAMESPACES=1

BUILD_DIR=${BUILD_DIR:-$repo/build-reporter-bench}
helper="$repo/bench/reporter_load.py"
fixture="$repo/tests/apiserver/fixture.py"
log() { echo "reporter-bench: $*" >&2; }

# --- dependencies and build -------------------------------------------------
[ "${SKIP_DEPS:-0}" = 1 ] || "$repo/scripts/install-deps.sh" >&2
# shellcheck source=bench/lib.sh
. "$repo/bench/lib.sh"
bench_build reporter-bench status-reporter "$BUILD_DIR" -DGM_BUILD_TESTS=OFF
cxx_flags=$(sed -n "s/^CMAKE_CXX_FLAGS_$(echo "$build_type" | tr '[:lower:]' '[:upper:]'):STRING=//p" "$BUILD_DIR/CMakeCache.txt")
SR="$BUILD_DIR/status-reporter/status-reporter"

# --- processes and results ---------------------------------------------------
# stop_all (bench/lib.sh) also runs between the ceiling run and the main run.
bench_workspace reporter-bench
alive() { kill -0 "$1" 2>/dev/null; }
status_kib() { awk -v k="$2:" '$1 == k {print $2}' /proc/"$1"/status; }
cpu_s() {  # utime+stime of a process, seconds
  local stat
  stat=$(cat /proc/"$1"/stat)
  stat=${stat##*) }
  echo "$stat" | awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($12 + $13) / hz}'
}
sub() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", b - a}'; }

# Starts a fixture seeded with N VMIs + pods in DIR; sets fx_pid.
start_fixture() {  # start_fixture DIR N
  local dir=$1 n=$2
  mkdir -p "$dir/state"
  python3 "$helper" seed "$dir/seed.json" "$dir/pods.jsonl" "$n" "$NAMESPACES" >"$dir/seed.out"
  python3 "$fixture" --port 0 --state-dir "$dir/state" --seed "$dir/seed.json" >"$dir/fixture.log" 2>&1 &
  fx_pid=$!
  pids+=("$fx_pid")
  wait_for 120 test -s "$dir/state/ready.json" || { cat "$dir/fixture.log" >&2; echo "fixture did not start" >&2; exit 1; }
  rm -f "$dir/seed.json"
}

# Starts status-reporter against the fixture in DIR; sets sr_pid, sr_https, sr_metrics.
start_reporter() {  # start_reporter DIR QPS BURST
  local dir=$1 qps=$2 burst=$3 hp mp
  hp=$(python3 "$helper" port); mp=$(python3 "$helper" port)
  while [ "$mp" = "$hp" ]; do mp=$(python3 "$helper" port); done
  sr_args=(--kubeconfig "$dir/state/kubeconfig" --namespace kubevirt-guest-metrics --identity bench-reporter
    --https-address "127.0.0.1:$hp" --metrics-address "127.0.0.1:$mp"
    --tls-cert-file "$dir/state/server.crt" --tls-key-file "$dir/state/server.key"
    --qps "$qps" --burst "$burst" --workers "$WORKERS" --log-level warn)
  "$SR" "${sr_args[@]}" >"$dir/reporter.log" 2>&1 &
  sr_pid=$!
  pids+=("$sr_pid")
  sr_https="https://127.0.0.1:$hp/v1/reports"
  sr_metrics="http://127.0.0.1:$mp/metrics"
  local exe
  exe=$(readlink "/proc/$sr_pid/exe" || true)
  [ "${exe% (deleted)}" = "$(readlink -f "$SR")" ] || { echo "pid $sr_pid runs '$exe', not $SR" >&2; exit 1; }
  reporter_ready() {
    alive "$sr_pid" || return 1
    curl -s --max-time 5 "$sr_metrics" >"$dir/m.txt" 2>/dev/null || return 1
    grep -q '^status_reporter_caches_synced 1' "$dir/m.txt" && grep -q '^status_reporter_leader 1' "$dir/m.txt"
  }
  wait_for 300 reporter_ready || { tail -20 "$dir/reporter.log" >&2; echo "status-reporter did not sync and lead" >&2; exit 1; }
}

# Samples the reporter's RssAnon every 0.5 s; the peak (KiB) goes to FILE.
start_sampler() {  # start_sampler PID FILE
  (
    peak=0
    while kill -0 "$1" 2>/dev/null; do
      v=$(awk '$1 == "RssAnon:" {print $2}' /proc/"$1"/status 2>/dev/null || echo 0)
      if [ "${v:-0}" -gt "$peak" ]; then peak=$v; echo "$peak" >"$2"; fi
      sleep 0.5
    done
  ) &
  pids+=("$!")
}

# --- machine ------------------------------------------------------------------
put date "$(date -u '+%Y-%m-%d %H:%M UTC')"
put nproc "$(nproc)"
put cpu_model "$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
put mem_total_kib "$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)"
put kernel "$(uname -r)"
put debian "$(cat /etc/debian_version 2>/dev/null || echo unknown)"
put python_version "$(python3 --version | awk '{print $2}')"
put build_type "$build_type (CXXFLAGS $cxx_flags)"
put revision "$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$repo" diff --quiet HEAD -- status-reporter common 2>/dev/null || echo ' + uncommitted changes in status-reporter/ or common/')"
put loadavg_start "$(cut -d' ' -f1-3 /proc/loadavg)"
put vmis "$VMIS"
put namespaces "$NAMESPACES"
put qps "$QPS"
put burst "$BURST"
put workers "$WORKERS"
put command "bench/reporter.sh --write${args_shown[*]:+ ${args_shown[*]}}"
t_start=$(date +%s)

# --- ceiling: the fixture's own limit, with no effective QPS limit --------------
if [ "$CEILING_VMIS" -gt 0 ]; then
  log "ceiling run: $CEILING_VMIS VMIs, --qps 10000 --burst 10000"
  cdir="$tmp/ceiling"
  start_fixture "$cdir" "$CEILING_VMIS"
  python3 "$helper" tokens "$cdir/state/ready.json" "$cdir/pods.jsonl" "$cdir/tokens" --threads 4 >/dev/null
  start_reporter "$cdir" 10000 10000
  python3 "$helper" reset-requests "$cdir/state/ready.json"
  f0=$(cpu_s "$fx_pid"); r0=$(cpu_s "$sr_pid"); w0=$(date +%s.%N)
  python3 "$helper" run "$cdir/state/ready.json" "$cdir/pods.jsonl" "$cdir/tokens" "$sr_https" \
    "$cdir/state/ca.crt" c --threads "$CLIENT_THREADS" --timeout 600 >"$cdir/run.out"
  f1=$(cpu_s "$fx_pid"); r1=$(cpu_s "$sr_pid"); w1=$(date +%s.%N)
  python3 "$helper" requests "$cdir/state/ready.json" "$cdir/pods.jsonl" c >>"$cdir/run.out"
  c_done=$(sed -n 's/^c_done_s=//p' "$cdir/run.out")
  c_req=$(sed -n 's/^c_api_requests=//p' "$cdir/run.out")
  grep -q '^c_done=1' "$cdir/run.out" || { cat "$cdir/run.out" >&2; echo "the ceiling run did not complete" >&2; exit 1; }
  put ceiling_vmis "$CEILING_VMIS"
  put ceiling_done_s "$c_done"
  put ceiling_api_requests "$c_req"
  put ceiling_rps "$(awk -v n="$c_req" -v t="$c_done" 'BEGIN {printf "%.1f", n / t}')"
  wall=$(sub "$w0" "$w1")
  put ceiling_fixture_cores "$(awk -v c="$(sub "$f0" "$f1")" -v w="$wall" 'BEGIN {printf "%.2f", c / w}')"
  put ceiling_fixture_ms_per_req "$(awk -v c="$(sub "$f0" "$f1")" -v n="$c_req" 'BEGIN {printf "%.2f", c * 1000 / n}')"
  put ceiling_reporter_cores "$(awk -v c="$(sub "$r0" "$r1")" -v w="$wall" 'BEGIN {printf "%.2f", c / w}')"
  log "ceiling: $c_req API requests in $c_done s"
  stop_all
  rm -rf "$cdir"
fi

# --- the run --------------------------------------------------------------------
dir="$tmp/main"
log "seeding the fixture with $VMIS VMIs and their launcher pods"
start_fixture "$dir" "$VMIS"
cat "$dir/seed.out" >>"$res"
log "minting $VMIS pod-bound tokens"
python3 "$helper" tokens "$dir/state/ready.json" "$dir/pods.jsonl" "$dir/tokens" --threads 4 >>"$res"
log "starting status-reporter (--qps $QPS --burst $BURST --workers $WORKERS) and waiting for its caches"
start_reporter "$dir" "$QPS" "$BURST"
put reporter_cmd "status-reporter --kubeconfig K --https-address 127.0.0.1:P --metrics-address 127.0.0.1:P --tls-cert-file C --tls-key-file K --qps $QPS --burst $BURST --workers $WORKERS --log-level warn"
start_sampler "$sr_pid" "$tmp/peak_rssanon"
put synced_rssanon "$(status_kib "$sr_pid" RssAnon)"
put synced_vmrss "$(status_kib "$sr_pid" VmRSS)"
# The startup traffic (lists, watches, lease) is not part of pass 1.
python3 "$helper" requests "$dir/state/ready.json" "$dir/pods.jsonl" s0 >>"$res"
python3 "$helper" reset-requests "$dir/state/ready.json"
# Let the token bucket refill to its burst, as on a reporter that has been idle.
sleep "$(awk -v b="$BURST" -v q="$QPS" 'BEGIN {s = b / q + 1; print (s > 30 ? 30 : s)}')"

implied_guess=$(awk -v n="$VMIS" -v q="$QPS" 'BEGIN {printf "%d", 3 * n / q}')
log "pass 1: $VMIS reports (about ${implied_guess} s at $QPS QPS)"
f0=$(cpu_s "$fx_pid"); r0=$(cpu_s "$sr_pid")
python3 "$helper" run "$dir/state/ready.json" "$dir/pods.jsonl" "$dir/tokens" "$sr_https" "$dir/state/ca.crt" p1 \
  --threads "$CLIENT_THREADS" --timeout "$((implied_guess * 3 + 120))" >>"$res"
put p1_fixture_cpu_s "$(sub "$f0" "$(cpu_s "$fx_pid")")"
put p1_reporter_cpu_s "$(sub "$r0" "$(cpu_s "$sr_pid")")"
alive "$sr_pid" || { tail -20 "$dir/reporter.log" >&2; echo "status-reporter died in pass 1" >&2; exit 1; }
# Let the queue drain and late watch events arrive before counting.
sleep 3
python3 "$helper" requests "$dir/state/ready.json" "$dir/pods.jsonl" p1 >>"$res"
# The peak so far, before /metrics is first scraped (rendering it for every VM costs memory of its own).
put vmhwm_before_scrape "$(status_kib "$sr_pid" VmHWM)"
python3 "$helper" metrics "$sr_metrics" p1m >>"$res"
put vmhwm_after_scrape "$(status_kib "$sr_pid" VmHWM)"
put p1_rssanon "$(status_kib "$sr_pid" RssAnon)"
grep -q '^p1_done=1' "$res" || log "WARNING: pass 1 did not complete: $(grep '^p1_pending' "$res" | tr '\n' ' ')"

log "pass 2: the same $VMIS reports again (expect no writes)"
python3 "$helper" reset-requests "$dir/state/ready.json"
f0=$(cpu_s "$fx_pid"); r0=$(cpu_s "$sr_pid")
python3 "$helper" run "$dir/state/ready.json" "$dir/pods.jsonl" "$dir/tokens" "$sr_https" "$dir/state/ca.crt" p2 \
  --threads "$CLIENT_THREADS" --expect-done --settle 5 >>"$res"
put p2_fixture_cpu_s "$(sub "$f0" "$(cpu_s "$fx_pid")")"
put p2_reporter_cpu_s "$(sub "$r0" "$(cpu_s "$sr_pid")")"
alive "$sr_pid" || { tail -20 "$dir/reporter.log" >&2; echo "status-reporter died in pass 2" >&2; exit 1; }
python3 "$helper" requests "$dir/state/ready.json" "$dir/pods.jsonl" p2 >>"$res"
python3 "$helper" metrics "$sr_metrics" p2m >>"$res"
put p2_rssanon "$(status_kib "$sr_pid" RssAnon)"

put vmhwm "$(status_kib "$sr_pid" VmHWM)"
put end_rssanon "$(status_kib "$sr_pid" RssAnon)"
put end_vmrss "$(status_kib "$sr_pid" VmRSS)"
put threads "$(status_kib "$sr_pid" Threads)"
put peak_rssanon "$(cat "$tmp/peak_rssanon" 2>/dev/null || echo 0)"
# Where the anonymous memory is, after every figure above is taken: glibc's
# own count of heap bytes in use vs. held (malloc_stats, written to the
# reporter's stderr), then RssAnon once malloc_trim(0) has returned the free
# pages. Needs gdb; skipped without it.
if command -v gdb >/dev/null; then
  : >"$dir/reporter.log"
  gdb -p "$sr_pid" -batch -ex 'call (void)malloc_stats()' >/dev/null 2>&1 || true
  sleep 0.5
  put heap_system_bytes "$(awk '/^Total/ {t = 1} t && /system bytes/ {print $4; exit}' "$dir/reporter.log")"
  put heap_inuse_bytes "$(awk '/^Total/ {t = 1} t && /in use bytes/ {print $5; exit}' "$dir/reporter.log")"
  gdb -p "$sr_pid" -batch -ex 'call (int)malloc_trim(0)' >/dev/null 2>&1 || true
  put trimmed_rssanon "$(status_kib "$sr_pid" RssAnon)"
fi
put loadavg_end "$(cut -d' ' -f1-3 /proc/loadavg)"
put measure_s "$(( $(date +%s) - t_start ))"
if grep -q 'error\|critical' "$dir/reporter.log"; then
  log "reporter log errors (first 5):"
  grep 'error\|critical' "$dir/reporter.log" | head -5 >&2
fi
[ "${KEEP_RESULTS:-}" = "" ] || cp "$res" "$KEEP_RESULTS"

# --- report -------------------------------------------------------------------
if [ "$write" = 1 ]; then
  python3 "$helper" render "$res" --doc "$repo/docs/benchmarks.md"
  log "wrote the reporter section of docs/benchmarks.md"
else
  python3 "$helper" render "$res"
fi
