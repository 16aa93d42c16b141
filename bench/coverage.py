#!/usr/bin/env python3
"""Benchmarks the status-reporter's report states on the API-server fixture
(tests/apiserver): N running VMIs (default 1,000) of mixed shapes, network
bindings and opt-outs, plus a few that are not running. The sidecars that
can reach the reporter (masquerade on the pod network) post one report each;
those that cannot (bridge binding or Multus as the default network, an
egress NetworkPolicy in their namespace) post nothing, as on a cluster; opted
out and skipped pods have no sidecar. It then reads the reporter's /metrics
until every running VMI is in exactly its expected report state with the
right ratios, and records the time that took and the API requests made.

    bench/coverage.py --status-reporter PATH [--vmis N] [--write]

--write replaces the report-states section of docs/benchmarks.md (between
its markers). Uses only 127.0.0.1; the fixture and the reporter are stopped
and the temp dir removed on every exit path.

What the fixture cannot show: namespace opt-outs, injection off and pods
that predate the install need cluster-scoped objects (namespaces, the
webhook configuration) the fixture does not serve; unit tests
(tests/unit/report_state_test.cpp) cover those reasons."""

import argparse
import collections
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reporter_load as rl  # noqa: E402  (the 10,000-VMI benchmark's objects and clients)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(REPO, "tests", "apiserver", "fixture.py")
DOC = os.path.join(REPO, "docs", "benchmarks.md")
BEGIN, END = "<!-- report-states-bench:begin -->", "<!-- report-states-bench:end -->"

# Cases, cycled over the VMIs: (name, what is done to the objects, expected state, reason, reports?)
CASES = [
    ("masquerade", "pod network, masquerade", "reporting", "report_accepted", True),
    ("masquerade-2", "pod network, masquerade", "reporting", "report_accepted", True),
    ("masquerade-3", "pod network, masquerade", "reporting", "report_accepted", True),
    ("masquerade-4", "pod network, masquerade", "reporting", "report_accepted", True),
    ("bridge", "bridge binding on the pod network", "silent", "never_reported", False),
    ("multus-default", "Multus as the default network", "silent", "never_reported", False),
    ("egress-policy", "namespace with an egress NetworkPolicy", "silent", "never_reported", False),
    ("opted-out", "VM template label inject=false", "not_injected", "opted_out", False),
    ("skipped", "webhook failed open (no sidecar, no label)", "not_injected", "webhook_skipped", False),
    ("masquerade-5", "pod network, masquerade", "reporting", "report_accepted", True),
]
NOT_RUNNING_EVERY = 50  # every 50th VMI is Scheduling: it must have no state


def shape(i, ns):
    """VMI, pod, report target and expectations of VMI i."""
    vmi, pod, t = rl.vmi_and_pod(i, ns)
    case, what, state, reason, reports = CASES[i % len(CASES)]
    spec = vmi["spec"]
    if case == "bridge":
        spec["domain"]["devices"]["interfaces"] = [{"name": "default", "bridge": {}}]
    elif case == "multus-default":
        spec["domain"]["devices"]["interfaces"] = [{"name": "default", "bridge": {}}]
        spec["networks"] = [{"name": "default", "multus": {"networkName": "vlan-10", "default": True}}]
    if case in ("opted-out", "skipped"):
        pod["spec"].pop("initContainers")
        pod["status"].pop("initContainerStatuses")
        pod["metadata"]["annotations"].pop("guestmetrics.kubevirt.io/injected")
        pod["spec"]["volumes"] = [v for v in pod["spec"]["volumes"] if v["name"] != "guest-exporter-token"]
        if case == "opted-out":
            pod["metadata"]["labels"]["guestmetrics.kubevirt.io/inject"] = "false"
    running = i % NOT_RUNNING_EVERY != NOT_RUNNING_EVERY - 1
    if not running:
        vmi["status"]["phase"] = "Scheduling"
        reports = False
    t.update(case=what, state=state if running else None, reason=reason, reports=reports)
    return vmi, pod, t


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, timeout, fn, interval=0.2):
    end = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > end:
            sys.exit(f"coverage-bench: timed out waiting for {what}")
        time.sleep(interval)


def samples(text, metric):
    out = []
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$", line)
        if m and m.group(1) == metric:
            out.append((dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or "")), float(m.group(3))))
    return out


def check(text, targets):
    """(problems, counts): every running VMI in exactly its expected state, the
    others in none, counts agreeing, the reporting ones with their ratios."""
    problems = []
    rows = collections.defaultdict(list)
    for lbl, _ in samples(text, "status_reporter_vmi_report_state"):
        rows[(lbl["namespace"], lbl["name"])].append((lbl["state"], lbl["reason"]))
    cpu = {(lbl["namespace"], lbl["name"]): v for lbl, v in samples(text, "kubevirt_vmi_cpu_allocation_ratio")}
    mem = {(lbl["namespace"], lbl["name"]): v for lbl, v in samples(text, "kubevirt_vmi_memory_overcommit_ratio")}
    want_counts = collections.Counter()
    for t in targets:
        key = (t["ns"], t["vmi"])
        got = rows.get(key, [])
        if t["state"] is None:
            if got:
                problems.append(f"{key} is not running but has {got}")
            continue
        want_counts[(t["state"], t["reason"])] += 1
        if got != [(t["state"], t["reason"])]:
            problems.append(f"{key} ({t['case']}): want {t['state']}/{t['reason']}, have {got}")
        if t["reports"]:
            if abs(cpu.get(key, -1) - t["cpu"]) > 1e-9 or abs(mem.get(key, -1) - t["mem"]) > 1e-9:
                problems.append(f"{key}: ratios {cpu.get(key)}, {mem.get(key)}; want {t['cpu']}, {t['mem']}")
        elif key in cpu or key in mem:
            problems.append(f"{key} sent no report but has ratios")
    extra = set(rows) - {(t["ns"], t["vmi"]) for t in targets}
    if extra:
        problems.append(f"states for VMIs not seeded: {sorted(extra)[:3]}")
    counts = {(lbl["state"], lbl["reason"]): int(v) for lbl, v in samples(text, "status_reporter_vmis")}
    for k, n in want_counts.items():
        if counts.get(k) != n:
            problems.append(f"status_reporter_vmis{k} = {counts.get(k)}, want {n}")
    return problems, counts


def render(r):
    lines = [BEGIN, "## status-reporter: report states of 1,000 VMIs" if r["vmis"] == 1000
             else f"## status-reporter: report states of {r['vmis']} VMIs", "",
             f"`{r['command']}` on {r['date']} ({r['nproc']} cores, load {r['loadavg']} at the start; "
             f"revision {r['revision']}). API-server fixture (tests/apiserver) seeded with "
             f"{r['vmis']} VMIs and their launcher pods in {r['namespaces']} namespaces; status-reporter "
             f"with its defaults (`--sidecar-interval 120 --silent-intervals 3`, `--qps {r['qps']}`). "
             "The VMIs' bindings and opt-outs are in their specs and labels; only those whose sidecar "
             "can reach the reporter (masquerade) post a report, one each from the benchmark as the "
             "sidecar would; for the others the network failure is modelled by posting nothing.", "",
             "| case | VMIs | expected state | on /metrics |", "|---|---|---|---|"]
    for case, n, state, ok in r["cases"]:
        lines.append(f"| {case} | {n} | {state} | {ok} |")
    lines += ["",
              f"- Every one of the {r['running']} running VMIs in exactly its expected state, the "
              f"{r['not_running']} not running in none, `status_reporter_vmis` agreeing, and the "
              f"{r['reporting']} reporting VMIs with the ratios they reported: **{r['verdict']}**.",
              f"- From the first report to all states and ratios right on /metrics: **{r['settle_s']} s** "
              f"({r['reports']} reports posted in {r['post_s']} s).",
              f"- API requests from the first report until the write queue drained ({r['drain_s']} s): "
              f"**{r['api_requests']}** ({r['api_by_verb']}), {r['api_per_reporting']} per reporting VMI "
              "(a TokenReview and the ratio writes); the states themselves cost none: they are derived "
              "from the informers' caches at each scrape.",
              f"- /metrics with the states: {r['metrics_kib']} KiB, rendered in {r['scrape_ms']} ms "
              f"(median of 5 scrapes); {r['state_series']} `status_reporter_vmi_report_state` series.",
              f"- Reporter after the run: VmRSS {r['vmrss_mib']} MiB.",
              "", "Not covered by the fixture (it serves no namespaces or webhook configurations): "
              "`namespace_opted_out`, `injection_off`, `pod_predates_install`; the unit tests cover them.",
              END]
    return "\n".join(lines) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--status-reporter", required=True)
    p.add_argument("--vmis", type=int, default=1000)
    p.add_argument("--namespaces", type=int, default=10)
    p.add_argument("--qps", type=float, default=100)
    p.add_argument("--timeout", type=float, default=300)
    p.add_argument("--write", action="store_true")
    a = p.parse_args()
    if a.vmis < len(CASES):
        sys.exit(f"--vmis must be at least {len(CASES)}")

    tmp = tempfile.mkdtemp(prefix="coverage-bench-")
    procs = []

    def cleanup(*_):
        for pr in procs:
            if pr.poll() is None:
                pr.terminate()
                try:
                    pr.wait(10)
                except subprocess.TimeoutExpired:
                    pr.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        r = {"vmis": a.vmis, "namespaces": a.namespaces, "qps": int(a.qps) if a.qps == int(a.qps) else a.qps,
             "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "nproc": os.cpu_count(),
             "loadavg": " ".join(open("/proc/loadavg").read().split()[:3]),
             "command": "bench/coverage.py --write" + ("" if a.vmis == 1000 else f" --vmis {a.vmis}")}
        r["revision"] = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True,
                                       text=True).stdout.strip() or "unknown"
        per_ns = (a.vmis + a.namespaces - 1) // a.namespaces
        items, targets = [], []
        for i in range(a.vmis):
            vmi, pod, t = shape(i, f"vms-{i // per_ns:02d}")
            items += [vmi, pod]
            targets.append(t)
        state_dir = os.path.join(tmp, "state")
        os.makedirs(state_dir)
        with open(os.path.join(tmp, "seed.json"), "w") as f:
            json.dump({"items": items}, f)
        fx_log = open(os.path.join(tmp, "fixture.log"), "wb")
        procs.append(subprocess.Popen([sys.executable, FIXTURE, "--port", "0", "--state-dir", state_dir,
                                       "--seed", os.path.join(tmp, "seed.json")], stdout=fx_log, stderr=fx_log))
        ready = os.path.join(state_dir, "ready.json")
        wait_for("the fixture", 120, lambda: os.path.exists(ready) and os.path.getsize(ready) > 0)
        fx = rl.Fixture(ready)

        reporting = [t for t in targets if t["reports"]]
        tokens = {}
        for t in reporting:
            tokens[t["pod"]] = fx.call("POST", "/fixture/tokens", {
                "namespace": t["ns"], "serviceAccount": "default", "podName": t["pod"],
                "podUID": t["podUID"], "audiences": [rl.AUDIENCE_DEFAULT]})["token"]

        hp, mp = free_port(), free_port()
        sr_log = open(os.path.join(tmp, "reporter.log"), "wb")
        sr = subprocess.Popen([a.status_reporter, "--kubeconfig", os.path.join(state_dir, "kubeconfig"),
                               "--namespace", "kubevirt-guest-metrics", "--identity", "bench-reporter",
                               "--https-address", f"127.0.0.1:{hp}", "--metrics-address", f"127.0.0.1:{mp}",
                               "--tls-cert-file", os.path.join(state_dir, "server.crt"),
                               "--tls-key-file", os.path.join(state_dir, "server.key"),
                               "--qps", str(a.qps), "--burst", str(int(2 * a.qps)), "--log-level", "warn"],
                              stdout=sr_log, stderr=sr_log)
        procs.append(sr)
        metrics_url = f"http://127.0.0.1:{mp}/metrics"

        def leading():
            if sr.poll() is not None:
                sys.exit(f"status-reporter exited: {open(os.path.join(tmp, 'reporter.log')).read()[-2000:]}")
            try:
                m = rl.scrape(metrics_url)
            except OSError:
                return None
            return "status_reporter_leader 1" in m and "status_reporter_caches_synced 1" in m
        wait_for("the reporter to sync and lead", 120, leading)
        # The fixture logs the initial list's pages after the reporter has them; the startup
        # traffic is not part of what is measured.
        time.sleep(3)
        fx.call("POST", "/fixture/requests/reset")

        stats = {"connections": 0, "reconnects": 0, "latencies": [], "by_code": collections.Counter(),
                 "first": None, "last": None, "final": collections.Counter()}
        t0 = time.monotonic()
        errors = rl.post_all(f"https://127.0.0.1:{hp}/v1/reports", os.path.join(state_dir, "ca.crt"), reporting,
                             [tokens[t["pod"]] for t in reporting], 4, stats)
        if errors or stats["final"].get("accepted", 0) != len(reporting):
            sys.exit(f"coverage-bench: reports not all accepted: {dict(stats['final'])} {errors[:1]}")
        r["post_s"] = "%.1f" % (time.monotonic() - t0)
        last = {}

        def settled():
            text = rl.scrape(metrics_url)
            last["problems"], last["counts"] = check(text, targets)
            last["text"] = text
            return not last["problems"]
        end = time.monotonic() + a.timeout
        while not settled():
            if time.monotonic() > end:
                sys.exit("coverage-bench: states did not settle:\n  " + "\n  ".join(last["problems"][:10]))
            time.sleep(0.2)
        r["settle_s"] = "%.1f" % (time.monotonic() - t0)

        def drained():
            q = samples(rl.scrape(metrics_url), "status_reporter_queue_depth")
            return q and q[0][1] == 0
        wait_for("the write queue to drain", a.timeout, drained)
        time.sleep(2)  # the last writes' answers
        r["drain_s"] = "%.1f" % (time.monotonic() - t0)
        reqs = fx.call("GET", "/fixture/requests")["requests"]
        by = collections.Counter(f"{q['verb']} {q['resource']}{'/' + q['subresource'] if q.get('subresource') else ''}"
                                 if q["resource"] else f"{q['method']} {q['path']} ({q['code']})" for q in reqs)
        r["api_requests"] = len(reqs)
        r["api_by_verb"] = ", ".join(f"{k}: {v}" for k, v in sorted(by.items()))
        r["api_per_reporting"] = "%.2f" % (len(reqs) / max(1, len(reporting)))
        times = []
        for _ in range(5):
            s = time.monotonic()
            text = rl.scrape(metrics_url)
            times.append(time.monotonic() - s)
        r["scrape_ms"] = "%.0f" % (sorted(times)[2] * 1000)
        r["metrics_kib"] = "%.0f" % (len(text.encode()) / 1024)
        r["state_series"] = len(samples(text, "status_reporter_vmi_report_state"))
        with open(f"/proc/{sr.pid}/status") as f:
            rss = int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))
        r["vmrss_mib"] = "%.1f" % (rss / 1024)
        running = [t for t in targets if t["state"]]
        r["running"], r["not_running"] = len(running), len(targets) - len(running)
        r["reporting"], r["reports"] = len(reporting), len(reporting)
        r["verdict"] = "yes" if not last["problems"] else "no"
        per_case = collections.OrderedDict()
        for t in running:
            k = (t["case"], f"{t['state']} / {t['reason']}")
            per_case[k] = per_case.get(k, 0) + 1
        r["cases"] = [(case, n, state, "all" if not last["problems"] else "see problems")
                      for (case, state), n in per_case.items()]
        r["cases"].append(("not running (Scheduling)", r["not_running"], "none", "none"))
        section = render(r)
        print(section)
        if a.write:
            with open(DOC) as f:
                doc = f.read()
            if BEGIN in doc and END in doc:
                doc = doc[:doc.index(BEGIN)] + section.rstrip("\n") + doc[doc.index(END) + len(END):]
            else:
                doc = doc.rstrip("\n") + "\n\n" + section
            with open(DOC, "w") as f:
                f.write(doc)
            print("coverage-bench: wrote the report-states section of docs/benchmarks.md", file=sys.stderr)
    finally:
        cleanup()


if __name__ == "__main__":
    main()
