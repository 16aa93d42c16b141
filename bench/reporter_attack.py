#!/usr/bin/env python3
"""Benchmarks the status-reporter's listeners under attack: valid reports'
latency while slow TLS handshakes, silent connections and chunked uploads of
100 MB (with no token) hold the HTTPS port, and the reporter's peak RSS.

    bench/reporter_attack.py --status-reporter PATH [--label TEXT] [--compare PATH
        [--compare-label TEXT]] [--duration 30] [--slow 100] [--silent 100]
        [--uploads 4] [--upload-mib 100] [--clients 4] [--vmis 40]
        [--report-timeout 10] [--write]

Starts the API-server fixture (tests/apiserver) and one status-reporter on
127.0.0.1 (the integration tests' harness), seeds --vmis launcher pods and
VMIs with a pod-bound token each, then:
  1. baseline: --clients threads POST valid reports for --duration/3 s, a new
     HTTPS connection per report, as the sidecars do;
  2. attack: a separate process keeps --slow connections sending a TLS
     ClientHello one byte every 0.5 s and --silent connections that send
     nothing (each reopened as soon as the reporter closes it, so that
     slow+silent stay open), and --uploads connections each streaming a chunked
     body of --upload-mib MiB to /v1/reports without a token (again and again);
     meanwhile the clients POST valid reports for --duration s. The attacker
     runs at nice 19 (its CPU is not the reporter's; see attacker()).
Report latency is first byte sent → answer read, including the TLS handshake.
A report not answered 202 within --report-timeout counts as failed.
VmHWM comes from /proc/PID/status. --compare measures a second binary the
same way, and once more with the uploads alone (a server that cannot accept
the uploads under the full attack does not show what they cost). Prints a
markdown section; --write replaces the one in docs/benchmarks.md between its
markers. Loopback only; everything is stopped on every exit path."""

import argparse
import http.client
import json
import multiprocessing
import os
import select
import shlex
import socket
import ssl
import sys
import threading
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(REPO, "status-reporter", "tests", "integration"))
import harness  # noqa: E402


def hold_connections(port, slow, silent, stop, counters):
    """Keeps `slow` trickling and `silent` connections open until `stop`."""
    hello = harness.client_hello()
    conns = []  # [socket or None, is_slow, bytes sent]

    def connect():
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=2)
            s.setblocking(False)
            counters["opened"] += 1
            return s
        except OSError:
            return None

    for i in range(slow + silent):
        conns.append([connect(), i < slow, 0])
    open_samples = []
    while not stop.is_set():
        for c in conns:
            s = c[0]
            if s is None:
                c[0], c[2] = connect(), 0
                continue
            closed = False
            try:
                if select.select([s], [], [], 0)[0] and not s.recv(4096):
                    closed = True
                elif c[1]:
                    s.send(hello[c[2] % len(hello):c[2] % len(hello) + 1])
                    c[2] += 1
            except OSError:
                closed = True
            if closed:
                s.close()
                counters["closed_by_server"] += 1
                c[0], c[2] = connect(), 0
        open_samples.append(sum(1 for c in conns if c[0] is not None))
        stop.wait(0.5)
    counters["open_min"] = min(open_samples) if open_samples else 0
    for c in conns:
        if c[0] is not None:
            c[0].close()


def answer_waiting(s):
    """An answer's first bytes on TLS socket `s`, or None (TLS 1.3 session
    tickets also make the raw socket readable)."""
    if not s.pending() and not select.select([s], [], [], 0)[0]:
        return None
    s.settimeout(0)
    try:
        return s.recv(64) or None
    except (ssl.SSLWantReadError, BlockingIOError):
        return None
    finally:
        s.settimeout(10)


def upload_forever(port, mib, stop, counters, lock):
    """Chunked uploads of `mib` MiB without a token, one after the other."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    chunk = b"{" * 65536
    frame = b"%x\r\n" % len(chunk) + chunk + b"\r\n"
    while not stop.is_set():
        sent = 0
        s = None
        try:
            raw = socket.create_connection(("127.0.0.1", port), timeout=10)
            s = ctx.wrap_socket(raw)
            s.sendall(b"POST /v1/reports HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            head = None
            while sent < mib * 2**20 and not stop.is_set():
                head = answer_waiting(s)
                if head:
                    break
                s.sendall(frame)
                sent += len(chunk)
            if not head and sent >= mib * 2**20:
                s.sendall(b"0\r\n\r\n")
                head = s.recv(64)
            status = head[9:12].decode(errors="replace") if head else "none"
        except OSError:
            status = "reset"
        finally:
            if s is not None:
                s.close()
        with lock:
            counters["upload_bytes"] += sent
            counters[f"upload_{status}"] = counters.get(f"upload_{status}", 0) + 1


def attacker(port, a, stop, out):
    """Runs in its own process, so the clients' timing is not the GIL's, at
    nice 19: on one shared machine the attacker's own work (encrypting ~50
    MB/s in Python) would otherwise be measured as the reporter's latency;
    real attackers run elsewhere."""
    os.nice(19)
    lock = threading.Lock()
    counters = {"opened": 0, "closed_by_server": 0, "upload_bytes": 0}
    threads = [threading.Thread(target=hold_connections, args=(port, a.slow, a.silent, stop, counters))]
    threads += [threading.Thread(target=upload_forever, args=(port, a.upload_mib, stop, counters, lock))
                for _ in range(a.uploads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put(counters)


def post_reports(reporter, targets, seconds, timeout, results):
    deadline = time.monotonic() + seconds
    i = 0
    while time.monotonic() < deadline:
        body, token = targets[i % len(targets)]
        i += 1
        start = time.monotonic()
        try:
            conn = http.client.HTTPSConnection("127.0.0.1", reporter.https_port, context=reporter.ssl,
                                               timeout=timeout)
            conn.request("POST", "/v1/reports", body=json.dumps(body).encode(),
                         headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
            resp = conn.getresponse()
            resp.read()
            ok = resp.status == 202
            conn.close()
        except OSError:
            ok = False
        results.append((ok, time.monotonic() - start))


def measure(reporter, targets, clients, seconds, timeout):
    results = []
    threads = [threading.Thread(target=post_reports, args=(reporter, targets[c::clients], seconds, timeout, results))
               for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")


def summary(results):
    ok = [t * 1000 for good, t in results if good]
    return {"reports": len(results), "ok": len(ok), "failed": len(results) - len(ok),
            "p50": pct(ok, 50), "p99": pct(ok, 99), "max": max(ok) if ok else float("nan")}


def run(path, a, slow, silent):
    """One reporter (binary `path`) under one attack: the figures as a dict."""
    harness.STATUS_REPORTER = os.path.abspath(path)
    directory = harness.temp_dir("reporter-attack-")
    cert, key = harness.serving_certificate(directory)
    cluster = harness.Cluster("--no-prune-vmi-status")
    reporter = harness.Reporter(cluster.kubeconfig, "reporter-attack", directory, cert, key, log_level="info")
    harness.wait_until(reporter.serving, 30, "the reporter to lead and sync")
    targets = []
    for i in range(a.vmis):
        ns, vmi, pod = "bench", f"vm-{i}", f"virt-launcher-vm-{i}"
        uid = cluster.launcher(ns, vmi, pod, "node-1")
        targets.append((harness.report(ns, vmi, pod, uid, "node-1"), cluster.token(ns, pod)))
    harness.wait_until(lambda: reporter.post_report(*targets[-1])[0] == 202, 30, "reports to be accepted",
                       interval=0.2)
    load_start = os.getloadavg()[0]
    baseline = summary(measure(reporter, targets, a.clients, a.duration / 3, a.report_timeout))
    hwm_before = reporter.rss_kib("VmHWM")

    attack = argparse.Namespace(**{**vars(a), "slow": slow, "silent": silent})
    stop = multiprocessing.Event()
    out = multiprocessing.Queue()
    proc = multiprocessing.Process(target=attacker, args=(reporter.https_port, attack, stop, out), daemon=True)
    proc.start()
    peak_rss = [0]
    sampling = threading.Event()

    def sample():
        while not sampling.wait(0.2):
            try:
                peak_rss[0] = max(peak_rss[0], reporter.rss_kib("VmRSS"))
            except (OSError, AssertionError):
                return
    sampler = threading.Thread(target=sample)
    sampler.start()
    time.sleep(2)  # the attack is under way
    healthz_start = time.monotonic()
    try:
        healthz = str(reporter.get("/healthz")[0])
    except OSError as e:
        healthz = type(e).__name__
    healthz_ms = (time.monotonic() - healthz_start) * 1000
    attacked = summary(measure(reporter, targets, a.clients, a.duration, a.report_timeout))
    stop.set()
    counters = out.get(timeout=60)
    proc.join(30)
    sampling.set()
    sampler.join()
    alive = reporter.proc.poll() is None
    hwm = reporter.rss_kib("VmHWM") if alive else float("nan")
    reporter.kill()
    cluster.stop()
    return {"baseline": baseline, "attacked": attacked, "hwm_before": hwm_before, "hwm": hwm,
            "peak_rss": peak_rss[0], "healthz": f"{healthz} in {healthz_ms:.0f} ms", "counters": counters,
            "alive": alive, "slow": slow, "silent": silent, "load": (load_start, os.getloadavg()[0])}


def render(label, r, a):
    b, t, c = r["baseline"], r["attacked"], r["counters"]
    uploads = ", ".join(f"{k[7:]}: {v}" for k, v in sorted(c.items())
                        if k.startswith("upload_") and k != "upload_bytes") or "none"
    lines = [f"**{label}** — {r['slow']} slow handshakes + {r['silent']} silent connections, "
             f"{a.uploads} chunked {a.upload_mib} MB uploads (load average {r['load'][0]:.2f} → {r['load'][1]:.2f})",
             "",
             "| figure | before the attack | under attack |", "|---|---|---|",
             f"| valid reports posted / answered 202 / failed (error or > {a.report_timeout:g} s) | "
             f"{b['reports']} / {b['ok']} / {b['failed']} | {t['reports']} / {t['ok']} / {t['failed']} |",
             f"| report latency p50 / p99 / max (ms) | {b['p50']:.1f} / {b['p99']:.1f} / {b['max']:.1f} | "
             f"{t['p50']:.1f} / {t['p99']:.1f} / {t['max']:.1f} |",
             f"| VmHWM (peak RSS) | {r['hwm_before'] / 1024:.1f} MiB | **{r['hwm'] / 1024:.1f} MiB** |",
             f"| metrics port `/healthz`, 2 s into the attack | | {r['healthz']} |",
             f"| slow/silent connections the attacker opened / the reporter closed / fewest open at once | | "
             f"{c['opened']} / {c['closed_by_server']} / {c.get('open_min')} |",
             f"| chunked uploads by answer; MiB sent | | {uploads}; {c['upload_bytes'] / 2**20:.0f} |",
             f"| reporter alive at the end | | {r['alive']} |", ""]
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--status-reporter", required=True, help="the binary to measure")
    p.add_argument("--label", default="this build")
    p.add_argument("--compare", help="another binary (e.g. built from an older revision), measured the same way "
                                     "and once more with the uploads alone")
    p.add_argument("--compare-label", default="compared build")
    p.add_argument("--duration", type=float, default=30)
    p.add_argument("--slow", type=int, default=100)
    p.add_argument("--silent", type=int, default=100)
    p.add_argument("--uploads", type=int, default=4)
    p.add_argument("--upload-mib", type=int, default=100)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--vmis", type=int, default=40)
    p.add_argument("--report-timeout", type=float, default=10)
    p.add_argument("--write", action="store_true", help="replace the attack section of docs/benchmarks.md")
    a = p.parse_args()

    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    parts = [render(a.label, run(a.status_reporter, a, a.slow, a.silent), a)]
    if a.compare:
        parts.append(render(a.compare_label, run(a.compare, a, a.slow, a.silent), a))
        parts.append(render(a.compare_label + ", uploads alone", run(a.compare, a, 0, 0), a))
    command = shlex.join(["bench/reporter_attack.py"] + sys.argv[1:])
    section = (f"Produced by `{command}` on {started} (nproc {os.cpu_count()}, the machine shared with other "
               f"builds: see the load averages). The attacker runs at nice 19 in its own process; latency is "
               f"measured from a new HTTPS connection per report, as the sidecars post, by {a.clients} client "
               f"threads over {a.vmis} VMIs for {a.duration / 3:g} s before and {a.duration:g} s during the "
               f"attack.\n\n" + "\n".join(parts))
    print(section)
    if a.write:
        doc = os.path.join(REPO, "docs", "benchmarks.md")
        with open(doc) as f:
            text = f.read()
        begin, end = "<!-- reporter-attack:begin -->", "<!-- reporter-attack:end -->"
        i, j = text.index(begin) + len(begin), text.index(end)
        with open(doc, "w") as f:
            f.write(text[:i] + "\n" + section + "\n" + text[j:])


if __name__ == "__main__":
    main()
