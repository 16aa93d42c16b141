#!/usr/bin/env python3
"""Benchmarks the status-reporter's report states on the API-server fixture
(tests/apiserver): N running VMIs (default 1,000) of mixed shapes (VM_SHAPES:
default, IOThread pool, dedicated CPUs with an isolated emulator thread, an
explicit CPU request, hugepages; launcher pods as KubeVirt v1.9.0 renders
them), network bindings and opt-outs, plus a few that are not running. Each
launcher pod that has the sidecar first goes through the reporter's mutating
webhook as an AdmissionReview; the sidecar's CPU and memory shares are taken
from the patch and checked against the shape's (docs/ratios.md). The sidecars that
can reach the reporter (masquerade on the pod network) post one report each,
with the ratios computed from those shares;
those that cannot (bridge binding or Multus as the default network, an
egress NetworkPolicy in their namespace) post nothing, as on a cluster; opted
out and skipped pods have no sidecar. It then reads the reporter's /metrics
until every running VMI is in exactly its expected report state with its
shape's expected ratios, and records the time that took and the API requests made.

    bench/coverage.py --status-reporter PATH [--vmis N] [--write]

--write replaces the report-states section of docs/benchmarks.md (between
its markers). Uses only 127.0.0.1; the fixture and the reporter are stopped
and the temp dir removed on every exit path.

What the fixture cannot show: namespace opt-outs, injection off and pods
that predate the install need cluster-scoped objects (namespaces, the
webhook configuration) the fixture does not serve; unit tests
(tests/unit/report_state_test.cpp) cover those reasons."""

import argparse
import base64
import collections
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
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

Mi = 1048576
OVERHEAD = 300 * Mi  # kubevirt.io/memory-overhead-bytes on every pod (v1.9: VmiMemoryOverheadReport is on)
KUBEVIRT_VERSION = "v1.9.0"  # the KubeVirt CR's observed version and the compute image's tag

# VM shapes, cycled over the VMIs across the cases (shape (i // len(CASES)) % len(VM_SHAPES), so every case
# gets every shape). Each: the VMI's spec.domain parts, the compute container's requests as KubeVirt v1.9.0
# renders them for it (docs/ratios.md "Shapes", which cites RR = renderresources.go; the same cases are in
# tests/unit/launcher_shape_test.cpp), vCPUs and guest memory, and what the webhook must give the sidecar:
# the vCPUs' share of the CPU request (cores) and the guest's share of the memory request (bytes).
VM_SHAPES = [
    {"name": "default", "example": "7",
     "what": "2 vCPUs, guest 3Gi, no requests on the VMI",
     "cpu": {"cores": 2, "sockets": 1, "threads": 1}, "memory": {"guest": "3Gi"}, "resources": {}, "domain": {},
     # RR WithoutDedicatedCPU: 2 / cpuAllocationRatio 10; memory guest x 100 / memoryOvercommit 100 + overhead
     "requests": {"cpu": "200m", "memory": f"{3072 * Mi + OVERHEAD}"}, "limits": {},
     "vcpus": 2, "guest": 3072 * Mi, "cpu_share": 0.2, "mem_share": 3072 * Mi, "ratios": (10.0, 1.0)},
    {"name": "iothreads-pool", "example": "13",
     "what": "2 vCPUs, ioThreadsPolicy supplementalPool, supplementalPoolThreadCount 1, guest 2Gi",
     "cpu": {"cores": 2, "sockets": 1, "threads": 1}, "memory": {"guest": "2Gi"}, "resources": {},
     "domain": {"ioThreadsPolicy": "supplementalPool", "ioThreads": {"supplementalPoolThreadCount": 1}},
     # RR v1.5.2+ getIOThreadsCount: (2 + 1) / 10 = 300m; the vCPUs' part is 200m (2 / 0.3 would say 6.67)
     "requests": {"cpu": "300m", "memory": f"{2048 * Mi + OVERHEAD}"}, "limits": {},
     "vcpus": 2, "guest": 2048 * Mi, "cpu_share": 0.2, "mem_share": 2048 * Mi, "ratios": (10.0, 1.0)},
    {"name": "dedicated-isolated", "example": "12",
     "what": "4 vCPUs, dedicatedCpuPlacement + isolateEmulatorThread, guest 4Gi",
     "cpu": {"cores": 4, "sockets": 1, "threads": 1, "dedicatedCpuPlacement": True, "isolateEmulatorThread": True},
     "memory": {"guest": "4Gi"}, "resources": {}, "domain": {},
     # RR WithCPUPinning: request = limit = 4 vCPUs + 1 emulator CPU; the vCPUs have 4 (4 / 5 would say 0.8)
     "requests": {"cpu": "5", "memory": f"{4096 * Mi + OVERHEAD}"},
     "limits": {"cpu": "5", "memory": f"{4096 * Mi + OVERHEAD}"},
     "vcpus": 4, "guest": 4096 * Mi, "cpu_share": 4.0, "mem_share": 4096 * Mi, "ratios": (1.0, 1.0)},
    {"name": "explicit-cpu-request", "example": "9, 21",
     "what": "4 vCPUs (2 sockets x 2 cores), requests.cpu 500m, requests.memory 4Gi, guest 8Gi",
     "cpu": {"cores": 2, "sockets": 2, "threads": 1}, "memory": {"guest": "8Gi"},
     "resources": {"requests": {"cpu": "500m", "memory": "4Gi"}}, "domain": {},
     # RR Requests(): the VMI's 500m replaces the computed one, all of it the vCPUs'; memory 4Gi + overhead
     "requests": {"cpu": "500m", "memory": f"{4096 * Mi + OVERHEAD}"}, "limits": {},
     "vcpus": 4, "guest": 8192 * Mi, "cpu_share": 0.5, "mem_share": 4096 * Mi, "ratios": (8.0, 2.0)},
    {"name": "hugepages-1Gi", "example": "18",
     "what": "2 vCPUs, guest 4Gi on 1Gi hugepages",
     "cpu": {"cores": 2, "sockets": 1, "threads": 1}, "memory": {"guest": "4Gi", "hugepages": {"pageSize": "1Gi"}},
     "resources": {}, "domain": {},
     # RR v1.9.0 WithHugePages: hugepages-1Gi 4Gi, the memory request is the overhead alone (compute -
     # overhead = 0); the guest's request is hugepages 4Gi + 0
     "requests": {"cpu": "200m", "memory": f"{OVERHEAD}", "hugepages-1Gi": "4Gi"}, "limits": {"hugepages-1Gi": "4Gi"},
     "vcpus": 2, "guest": 4096 * Mi, "cpu_share": 0.2, "mem_share": 4096 * Mi, "ratios": (10.0, 1.0)},
]
SIDECAR = "guest-exporter"


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
    vs = VM_SHAPES[(i // len(CASES)) % len(VM_SHAPES)]
    spec["domain"]["cpu"] = dict(vs["cpu"], model="host-model")
    spec["domain"]["memory"] = json.loads(json.dumps(vs["memory"]))
    spec["domain"]["resources"] = json.loads(json.dumps(vs["resources"]))
    spec["domain"].update(json.loads(json.dumps(vs["domain"])))
    st = vmi["status"]
    st["currentCPUTopology"] = {k: vs["cpu"][k] for k in ("cores", "sockets", "threads")}
    guest = f"{vs['guest'] // Mi}Mi"
    st["memory"].update(guestAtBoot=guest, guestCurrent=guest, guestRequested=guest, memoryOverhead="300Mi")
    st["launcherContainerImageVersion"] = f"quay.io/kubevirt/virt-launcher:{KUBEVIRT_VERSION}"
    pod["metadata"]["annotations"]["kubevirt.io/memory-overhead-bytes"] = str(OVERHEAD)
    compute = pod["spec"]["containers"][0]
    compute["image"] = f"quay.io/kubevirt/virt-launcher:{KUBEVIRT_VERSION}"
    pod["status"]["containerStatuses"][0]["image"] = compute["image"]
    req, lim = compute["resources"]["requests"], compute["resources"]["limits"]
    for k in ("cpu", "memory"):
        req.pop(k, None)
    req.update(vs["requests"])
    lim.update(vs["limits"])
    if vs["limits"].get("cpu"):
        pod["status"]["qosClass"] = vmi["status"]["qosClass"] = "Guaranteed"
    running = i % NOT_RUNNING_EVERY != NOT_RUNNING_EVERY - 1
    if not running:
        vmi["status"]["phase"] = "Scheduling"
        reports = False
    t.update(case=what, state=state if running else None, reason=reason, reports=reports, shape=vs["name"],
             vcpus=vs["vcpus"], memoryBytes=vs["guest"], want_cpu=vs["ratios"][0], want_mem=vs["ratios"][1],
             injected=case not in ("opted-out", "skipped"))
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
            # The shape's ratios (docs/ratios.md), not merely what was posted: the posted ones come from
            # the shares the webhook gave.
            if abs(cpu.get(key, -1) - t["want_cpu"]) > 1e-9 or abs(mem.get(key, -1) - t["want_mem"]) > 1e-9:
                problems.append(f"{key} ({t['shape']}): ratios {cpu.get(key)}, {mem.get(key)}; "
                                f"want {t['want_cpu']}, {t['want_mem']}")
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


def admission_pod(pod):
    """The launcher pod as KubeVirt asks the API server to create it: no name, uid, node or status yet,
    and neither the sidecar nor anything else the webhook adds."""
    p = json.loads(json.dumps(pod))
    md = p["metadata"]
    for k in ("name", "uid", "creationTimestamp"):
        md.pop(k, None)
    md["annotations"].pop("guestmetrics.kubevirt.io/injected", None)
    p.pop("status", None)
    p["spec"].pop("nodeName", None)
    p["spec"]["initContainers"] = [c for c in p["spec"].get("initContainers", []) if c["name"] != SIDECAR]
    if not p["spec"]["initContainers"]:
        p["spec"].pop("initContainers")
    p["spec"]["volumes"] = [v for v in p["spec"]["volumes"] if v["name"] != "guest-exporter-token"]
    return p


def review(pod, uid):
    kind = {"group": "", "version": "v1", "kind": "Pod"}
    res = {"group": "", "version": "v1", "resource": "pods"}
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": uid, "kind": kind, "resource": res, "requestKind": kind, "requestResource": res,
        "namespace": pod["metadata"]["namespace"], "operation": "CREATE",
        "userInfo": {"username": "system:serviceaccount:kubevirt:kubevirt-controller",
                     "groups": ["system:serviceaccounts", "system:authenticated"]},
        "object": pod, "oldObject": None, "dryRun": False,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}}}


def sidecar_env(patch):
    """name -> value of the injected sidecar's env, found in the JSON patch's values (the sidecar is added
    as the whole initContainers list or appended to it); None without a sidecar."""
    def find(v):
        if isinstance(v, dict):
            if v.get("name") == SIDECAR and "image" in v:
                return v
            vals = v.values()
        elif isinstance(v, list):
            vals = v
        else:
            return None
        for x in vals:
            c = find(x)
            if c:
                return c
        return None
    c = find([op.get("value") for op in patch if op.get("op") in ("add", "replace")])
    if c is None:
        return None
    return {e["name"]: e.get("value") for e in c.get("env", [])}


def cores(q):
    """A CPU quantity as the webhook writes it ("200m", "4", "66.667m") in cores."""
    return float(q[:-1]) / 1000 if q.endswith("m") else float(q)


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
              f"{r['reporting']} reporting VMIs with their shape's expected ratios (below): **{r['verdict']}**.",
              f"- From the first report to all states and ratios right on /metrics: **{r['settle_s']} s** "
              f"({r['reports']} reports posted in {r['post_s']} s).",
              f"- API requests from the first report until the write queue drained ({r['drain_s']} s): "
              f"**{r['api_requests']}** ({r['api_by_verb']}), {r['api_per_reporting']} per reporting VMI "
              "(a TokenReview and the ratio writes); the states themselves cost none: they are derived "
              "from the informers' caches at each scrape.",
              f"- /metrics with the states: {r['metrics_kib']} KiB, rendered in {r['scrape_ms']} ms "
              f"(median of 5 scrapes); {r['state_series']} `status_reporter_vmi_report_state` series.",
              f"- Reporter after the run: VmRSS {r['vmrss_mib']} MiB.",
              "", "### VM shapes and their ratios", "",
              f"Every VMI has one of {len(r['shapes'])} shapes, cycled across the cases above, with its launcher "
              f"pod's `compute` requests as KubeVirt {KUBEVIRT_VERSION} renders them (the fixture's KubeVirt CR "
              "says that version, with KubeVirt's defaults `cpuAllocationRatio` 10 and `memoryOvercommit` 100; "
              f"every pod has `kubevirt.io/memory-overhead-bytes` = {OVERHEAD // Mi}Mi). Each of the "
              f"{r['webhook_calls']} launcher pods that has the sidecar was first sent, without it, through the "
              "reporter's webhook (`POST /mutate`) as an AdmissionReview; the sidecar's shares "
              "(`GUEST_EXPORTER_CPU_REQUEST`, `GUEST_EXPORTER_VMI_MEMORY_REQUEST`) were taken from the JSON patch "
              "it returned and compared with the expected ones; the report each reporting sidecar then posted "
              "carries vCPUs ÷ CPU share and guest memory ÷ memory share, and /metrics was checked against the "
              "shape's expected ratios (not against what was posted).", "",
              "| shape | docs/ratios.md example | compute requests (KubeVirt renders) | expected shares (CPU, memory) "
              "| ratios expected (CPU, memory) | CPU ÷ whole request | VMIs running / injected / reporting "
              "| webhook shares right | /metrics ratios right | verdict |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for vs, c, ok in r["shapes"]:
        req = ", ".join(f"{k} {v if k != 'memory' else str(int(v) // Mi) + 'Mi'}" for k, v in vs["requests"].items())
        lines.append(f"| {vs['name']}: {vs['what']} | {vs['example']} | {req} | {vs['cpu_share']:g} cores, "
                     f"{vs['mem_share'] // Mi}Mi | {vs['ratios'][0]:g}, {vs['ratios'][1]:g} "
                     f"| {vs['vcpus'] / cores(vs['requests']['cpu']):.3g} | {c['running']} / {c['injected']} / "
                     f"{c['reporting']} | {c['shares_right']} of {c['injected']} | {c['metrics_right']} of "
                     f"{c['reporting']} | **{ok}** |")
    lines += ["",
              f"- Webhook: {r['webhook_calls']} calls in {r['webhook_s']} s, one at a time on one kept-alive "
              f"connection; latency p50 **{r['webhook_p50_ms']} ms**, p99 **{r['webhook_p99_ms']} ms**; "
              f"{r['webhook_lookups']} API lookups ({r['webhook_lookups_by']}), **{r['webhook_lookups_per_call']} "
              f"per call** (from the fixture's request log; {r['webhook_api_requests']} API requests of any kind "
              "in that phase). The reports' API requests above are counted after it. The machine was busy (load "
              "at the start above): on a quiet one the latencies would be lower.",
              "- \"CPU ÷ whole request\" is what the ratio would be if the sidecar took the whole compute "
              "request: wrong for the IOThread pool and the isolated emulator thread.",
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
        # The cluster's KubeVirt CR, which the webhook lists: KubeVirt's defaults (cpuAllocationRatio 10,
        # memoryOvercommit 100) and the version that rendered the pods.
        items.append({"apiVersion": "kubevirt.io/v1", "kind": "KubeVirt",
                      "metadata": {"name": "kubevirt", "namespace": "kubevirt"},
                      "spec": {"configuration": {"developerConfiguration": {}}},
                      "status": {"phase": "Deployed", "observedKubeVirtVersion": KUBEVIRT_VERSION,
                                 "targetKubeVirtVersion": KUBEVIRT_VERSION}})
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
                               "--qps", str(a.qps), "--burst", str(int(2 * a.qps)), "--log-level", "warn",
                               "--sidecar-image", "ghcr.io/kubevirt-guest-metrics/guest-exporter:0.1.0",
                               "--sidecar-reporter-url", f"https://127.0.0.1:{hp}/v1/reports",
                               "--sidecar-ca-file", os.path.join(state_dir, "ca.crt")],
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

        # The webhook: every launcher pod that has the sidecar on the "cluster" goes through it once, as
        # the API server would send it; the sidecar's shares come from the patch it returns.
        ctx = ssl.create_default_context(cafile=os.path.join(state_dir, "ca.crt"))
        wh = {"c": None}

        def admit(pod, uid):
            body = json.dumps(review(admission_pod(pod), uid)).encode()
            for attempt in range(2):  # one reconnect if the reporter closed the kept-alive connection
                if wh["c"] is None:
                    wh["c"] = http.client.HTTPSConnection("127.0.0.1", hp, context=ctx, timeout=30)
                s0 = time.monotonic()
                try:
                    wh["c"].request("POST", "/mutate?timeout=10s", body=body,
                                    headers={"Content-Type": "application/json"})
                    resp = wh["c"].getresponse()
                    text = resp.read()
                except (OSError, http.client.HTTPException):
                    wh["c"].close()
                    wh["c"] = None
                    if attempt:
                        raise
                    continue
                elapsed = time.monotonic() - s0
                if resp.status != 200:
                    sys.exit(f"coverage-bench: webhook answered {resp.status}: {text[:300]!r}")
                out = json.loads(text)["response"]
                patch = json.loads(base64.b64decode(out["patch"])) if out.get("patch") else []
                return sidecar_env(patch), elapsed

        pods = {t["pod"]: pod for t, pod in zip(targets, [it for it in items if it["kind"] == "Pod"])}
        injectable = [t for t in targets if t["injected"]]
        # The webhook injects once it has read the API server's /version: warm up on the first pod.
        wait_for("the webhook to inject", 60, lambda: admit(pods[injectable[0]["pod"]], "warm-up")[0] is not None)
        fx.call("POST", "/fixture/requests/reset")
        lat, share_problems = [], []
        per_shape = collections.OrderedDict((vs["name"], collections.Counter()) for vs in VM_SHAPES)
        shape_of = {vs["name"]: vs for vs in VM_SHAPES}
        t0 = time.monotonic()
        for n, t in enumerate(injectable):
            env, elapsed = admit(pods[t["pod"]], f"req-{n}")
            lat.append(elapsed)
            vs = shape_of[t["shape"]]
            env = env or {}
            cpu_q, mem_q = env.get("GUEST_EXPORTER_CPU_REQUEST"), env.get("GUEST_EXPORTER_VMI_MEMORY_REQUEST")
            cpu_share = cores(cpu_q) if cpu_q else None
            mem_share = int(mem_q) if mem_q else None
            per_shape[t["shape"]]["injected"] += 1
            if (cpu_share is not None and abs(cpu_share - vs["cpu_share"]) < 1e-9 and mem_share == vs["mem_share"]):
                per_shape[t["shape"]]["shares_right"] += 1
            else:
                share_problems.append(f"{t['ns']}/{t['vmi']} ({t['shape']}): webhook gave cpu {cpu_q}, memory "
                                      f"{mem_q}; want {vs['cpu_share']} cores, {vs['mem_share']} bytes")
            # The report its sidecar would send: live vCPUs / CPU share, guest memory / memory share.
            t["cpu"] = t["vcpus"] / cpu_share if cpu_share else None
            t["mem"] = t["memoryBytes"] / mem_share if mem_share else None
            t["naive_cpu"] = t["vcpus"] / cores(vs["requests"]["cpu"])
        r["webhook_s"] = "%.1f" % (time.monotonic() - t0)
        if wh["c"] is not None:
            wh["c"].close()
        wreqs = fx.call("GET", "/fixture/requests")["requests"]
        lookups = [q for q in wreqs if (q["resource"] == "virtualmachineinstances" and q.get("name"))
                   or (q["resource"] == "kubevirts" and q["verb"] in ("list", "get"))]
        r["webhook_calls"] = len(injectable)
        r["webhook_p50_ms"] = "%.1f" % (rl.pct(lat, 50) * 1000)
        r["webhook_p99_ms"] = "%.1f" % (rl.pct(lat, 99) * 1000)
        r["webhook_lookups"] = len(lookups)
        r["webhook_lookups_per_call"] = "%.2f" % (len(lookups) / max(1, len(injectable)))
        r["webhook_lookups_by"] = ", ".join(f"{k}: {v}" for k, v in sorted(collections.Counter(
            f"{q['verb']} {q['resource']} ({q['code']})" for q in lookups).items()))
        r["webhook_api_requests"] = len(wreqs)
        if share_problems:
            sys.exit("coverage-bench: the webhook gave wrong shares:\n  " + "\n  ".join(share_problems[:10]))
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
        # Per shape: the shares the webhook gave and the ratios /metrics shows, against docs/ratios.md.
        cpu_m = {(lbl["namespace"], lbl["name"]): v for lbl, v in samples(text, "kubevirt_vmi_cpu_allocation_ratio")}
        mem_m = {(lbl["namespace"], lbl["name"]): v
                 for lbl, v in samples(text, "kubevirt_vmi_memory_overcommit_ratio")}
        for t in running:
            per_shape[t["shape"]]["running"] += 1
        for t in reporting:
            c = per_shape[t["shape"]]
            c["reporting"] += 1
            key = (t["ns"], t["vmi"])
            if abs(cpu_m.get(key, -1) - t["want_cpu"]) < 1e-9 and abs(mem_m.get(key, -1) - t["want_mem"]) < 1e-9:
                c["metrics_right"] += 1
        r["shapes"] = []
        for vs in VM_SHAPES:
            c = per_shape[vs["name"]]
            ok = c["shares_right"] == c["injected"] and c["metrics_right"] == c["reporting"]
            r["shapes"].append((vs, c, "yes" if ok else "no"))
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
