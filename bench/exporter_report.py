#!/usr/bin/env python3
"""Helper for bench/exporter.sh (python3 standard library only).

  exporter_report.py port                    print a free TCP port on 127.0.0.1
  exporter_report.py smaps PID PREFIX [FLOOR_PID]
        key=value lines: top mappings by Rss and by Anonymous; with FLOOR_PID, also
        the Rss per mapping beyond that process's (the libvirt floor client)
  exporter_report.py render RESULTS [--doc DOC]
        print the exporter section (markdown) built from RESULTS (key=value
        lines written by exporter.sh); with --doc, also replace the text
        between the exporter-bench markers in DOC (creating DOC if needed),
        leaving every other section as it is.
"""
import os
import re
import socket
import sys

BEGIN = "<!-- exporter-bench:begin -->"
END = "<!-- exporter-bench:end -->"

INTRO = """# Benchmarks

Every figure in this file is produced by a script in `bench/` and pasted here
by that script (`--write`), never typed by hand: each section says which
command produced it, on which machine and when. To rerun one, run its command
from the repository root on a Debian bookworm machine (the scripts install
what they need with `scripts/install-deps.sh` and build the binaries they
measure); a rerun replaces only its own section, between its markers.
"""

MIB = 1024.0


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def mappings(pid):
    """Rss and Anonymous KiB per mapping name (shared objects without their version suffix)."""
    rss, anon = {}, {}
    name = None
    header = re.compile(r"^[0-9a-f]+-[0-9a-f]+ ")
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            if header.match(line):
                parts = line.split(None, 5)
                name = parts[5].strip() if len(parts) > 5 and parts[5].strip() else "[anon]"
                name = os.path.basename(name) if name.startswith("/") else name
            elif line.startswith("Rss:"):
                rss[name] = rss.get(name, 0) + int(line.split()[1])
            elif line.startswith("Anonymous:"):
                anon[name] = anon.get(name, 0) + int(line.split()[1])
    return rss, anon


def smaps(pid, prefix, floor_pid=None):
    rss, anon = mappings(pid)

    def top(d, n):
        items = sorted(((v, k) for k, v in d.items() if v > 0), reverse=True)
        head = items[:n]
        rest = sum(v for v, _ in items[n:])
        return ";".join(f"{k}:{v}" for v, k in head) + (f";(other {len(items) - n}):{rest}" if rest else "")
    print(f"{prefix}_smaps_top_rss={top(rss, 8)}")
    print(f"{prefix}_smaps_top_anon={top(anon, 6)}")
    if floor_pid:
        # What guest-exporter has resident beyond the floor client, mapping by
        # mapping, read at the same moment: its own binary, the libraries only
        # it maps, and the extra pages it touches in the ones both map.
        frss, _ = mappings(floor_pid)
        diff = {k: rss.get(k, 0) - frss.get(k, 0) for k in set(rss) | set(frss)}
        items = sorted(((v, k) for k, v in diff.items() if v != 0), key=lambda t: -abs(t[0]))
        head, rest = items[:12], items[12:]
        text = ";".join(f"{k}:{v:+d}" for v, k in head)
        if rest:
            text += f";(other {len(rest)}):{sum(v for v, _ in rest):+d}"
        print(f"{prefix}_smaps_beyond_floor={text}")
        print(f"{prefix}_smaps_beyond_floor_total={sum(rss.values()) - sum(frss.values())}")


def load(path):
    r = {}
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if "=" in line:
                k, v = line.split("=", 1)
                r[k] = v
    return r


def num(r, k, default=None):
    v = r.get(k)
    if v is None or v == "":
        return default
    try:
        return float(v)
    except ValueError:
        return default


def mib(kib):
    return "n/a" if kib is None else f"{kib / MIB:.1f} MiB"


def mib_kib(kib):
    return "n/a" if kib is None else f"{kib / MIB:.2f} MiB ({kib:.0f} KiB)"


def ms(us):
    return "n/a" if us is None else f"{us / 1000.0:.3f} ms"


def render(r):
    ex = [("ge", "guest-exporter"), ("go", "prometheus-libvirt-exporter")]
    out = []
    w = out.append
    w(BEGIN)
    w("## guest-exporter vs. prometheus-libvirt-exporter")
    w("")
    w(f"Produced by `{r.get('command', 'bench/exporter.sh --write')}` on {r.get('date', '?')} "
      f"(measurement phase {r.get('measure_s', '?')} s; build type **{r.get('build_type', '?')}**, "
      f"guest-exporter revision `{r.get('revision', '?')}`).")
    w("")
    w("| machine | |")
    w("|---|---|")
    w(f"| CPU | {r.get('cpu_model', '?')}, nproc {r.get('nproc', '?')} |")
    w(f"| memory | {mib(num(r, 'mem_total_kib'))} |")
    w(f"| kernel | {r.get('kernel', '?')} |")
    w(f"| Debian | {r.get('debian', '?')} |")
    w(f"| libvirt (libvirtd, test driver) | {r.get('libvirt_version', '?')} |")
    w(f"| prometheus-libvirt-exporter (Debian package) | {r.get('go_version', '?')} |")
    w(f"| wrk | {r.get('wrk_version', '?')} |")
    w(f"| load average at start / end | {r.get('loadavg_start', '?')} / {r.get('loadavg_end', '?')} |")
    w("")
    w("Setup: one private `libvirtd` serving libvirt's test driver (`test:///default`, one running "
      "domain `test`) on a unix socket in a temp dir, no host drivers loaded; both exporters read it "
      f"through `{r.get('uri_shape', 'test+unix:///default?socket=DIR/libvirt-sock')}` and listen on "
      "127.0.0.1. libvirtd pings every client that runs an event loop after "
      f"{r.get('libvirtd_keepalive_s', '?')} s of silence (`keepalive_interval`, its default and virtqemud's in a "
      "virt-launcher pod), whatever keepalive the client asks for. A plain libvirt client, `bench/libvirt-floor.c` "
      f"(connect, keepalive {r.get('floor_keepalive', '?')} like guest-exporter, list the domains, "
      "run libvirt's event loop), holds a connection for the whole run, which keeps the test driver's shared "
      "state alive; its RSS and idle CPU are the floor of any libvirt client that keeps a connection with "
      "events here. guest-exporter's reports to the status-reporter: "
      f"{r.get('ge_reports', '?')}. libvirtd, both exporters and wrk run at niceness "
      f"{r.get('bench_nice', '?')}. guest-exporter: `" + r.get("ge_cmd", "?") + "`. Go exporter: `" + r.get("go_cmd", "?") + "`.")
    w("")
    w("Method: RSS from `/proc/PID/status` (VmRSS = total, RssAnon = anonymous, RssFile = file-backed, "
      f"mostly shared libraries) {r.get('idle_settle_s', '?')} s after both are ready (guest-exporter "
      "has done its first poll; neither has been scraped yet), and again after the scrapes counted "
      "below. Idle CPU: sum of the first field of `/proc/PID/task/*/schedstat` (ns on CPU) over a "
      f"window of {num(r, 'idle_window_s', 0):.1f} s with no scrape of either exporter (both windows run "
      f"concurrently; guest-exporter read the domain {r.get('ge_polls_in_window', '?')} times in it, "
      f"at its 120 s interval, and delivered {r.get('ge_reports_in_window', '?')} reports), extrapolated to one hour; utime+stime (10 ms ticks) is shown as a cross-check. "
      f"Latency: `wrk -t1 -c1 -d15s --latency` and `wrk -t{r.get('wrk_threads', '?')} -c32 -d15s --latency` on "
      "`http://127.0.0.1:PORT/metrics` (keep-alive), run one after the other, never concurrently; "
      "wrk shares the cores with the exporter and libvirtd (one wrk thread: on 2 cores a second one would take the "
      "core the exporter under test needs, and p99 would measure the scheduler). The machine is shared: the rows \"CPU used by "
      "other processes\" (machine busy time from `/proc/stat` less the exporter, libvirtd and wrk) tell how much "
      f"else ran during each latency run; during the idle window other processes used {r.get('idle_other_cores', '?')} cores.")
    w("")
    w("| figure | guest-exporter | prometheus-libvirt-exporter |")
    w("|---|---|---|")

    def row(label, fmt):
        w(f"| {label} | {fmt('ge')} | {fmt('go')} |")

    row("VmRSS (total), idle", lambda p: mib(num(r, f"{p}_idle_vmrss")))
    row("RssAnon, idle", lambda p: mib(num(r, f"{p}_idle_rssanon")))
    row("RssFile, idle", lambda p: mib(num(r, f"{p}_idle_rssfile")))
    row("threads, idle", lambda p: r.get(f"{p}_idle_threads", "?"))
    row("scrapes done before the next rows (exact)", lambda p: r.get(f"{p}_scrapes", "?"))
    row("VmRSS (total), after the scrapes", lambda p: mib(num(r, f"{p}_after_vmrss")))
    row("RssAnon, after the scrapes", lambda p: mib(num(r, f"{p}_after_rssanon")))
    row("RssFile, after the scrapes", lambda p: mib(num(r, f"{p}_after_rssfile")))
    row("VmHWM (peak total RSS)", lambda p: mib(num(r, f"{p}_after_vmhwm")))
    row("threads, after the scrapes", lambda p: r.get(f"{p}_after_threads", "?"))
    row(f"CPU per idle hour (schedstat, {num(r, 'idle_window_s', 0):.0f} s window)",
        lambda p: f"{num(r, f'{p}_idle_cpu_s_per_h', 0):.3f} s")
    row("CPU in the idle window (schedstat / utime+stime)",
        lambda p: f"{num(r, f'{p}_idle_cpu_ns', 0) / 1e6:.1f} ms / {num(r, f'{p}_idle_ticks_ms', 0):.0f} ms")
    row("context switches in the idle window (≈ wakeups)", lambda p: r.get(f"{p}_idle_ctxsw", "?"))
    row("/metrics body (bytes, HTTP status)", lambda p: f"{r.get(f'{p}_resp_bytes', '?')} ({r.get(f'{p}_resp_code', '?')})")
    for c in ("1", "32"):
        row(f"p50 / p99, {c} client{'s' if c != '1' else ''}",
            lambda p, c=c: f"{ms(num(r, f'{p}_c{c}_p50_us'))} / {ms(num(r, f'{p}_c{c}_p99_us'))}")
        row(f"requests/s, {c} client{'s' if c != '1' else ''}", lambda p, c=c: f"{num(r, f'{p}_c{c}_rps', 0):.0f}")
        row(f"wrk requests / non-2xx / socket errors, {c} client{'s' if c != '1' else ''}",
            lambda p, c=c: f"{r.get(f'{p}_c{c}_requests', '?')} / {r.get(f'{p}_c{c}_non2xx', '?')} / {r.get(f'{p}_c{c}_sockerr', '?')}")
    for c in ("1", "32"):
        row(f"CPU used by other processes during the {c}-client run", lambda p, c=c: f"{num(r, f'{p}_c{c}_other_cores', 0):.2f} cores")
    row("exporter CPU per scrape, 32 clients", lambda p: f"{num(r, f'{p}_c32_cpu_us_per_req', 0):.0f} µs")
    row("libvirtd CPU per scrape, 32 clients", lambda p: f"{num(r, f'{p}_c32_libvirtd_us_per_req', 0):.0f} µs")
    w("")
    w("guest-exporter's threads in the idle window (main thread = HTTP server, libvirt event loop, poll loop, "
      "then the report loop when reports are on): "
      f"CPU {r.get('ge_idle_thread_ms', '?')} ms; context switches {r.get('ge_idle_thread_ctxsw', '?')}. "
      f"The floor client (`bench/libvirt-floor.c`) switched {r.get('fl_idle_ctxsw', '?')} times in the same window: "
      "answering the daemon's pings.")
    w("")
    # Go exporter check.
    w(f"prometheus-libvirt-exporter against the test driver over the remote URI: "
      f"`libvirt_up {r.get('go_libvirt_up', '?')}`, {r.get('go_domain_series', '?')} `libvirt_domain_*` series "
      f"for domain `test` ({r.get('go_domain_families', '?')}); it opens a new libvirt connection in every scrape. "
      f"guest-exporter: `guest_exporter_libvirt_up {r.get('ge_libvirt_up', '?')}`, "
      f"`guest_exporter_guest_load_status{{name=\"test\",reason=\"{r.get('ge_test_reason', '?')}\"}}` "
      "(the test driver has no guest agent, so no load gauges; the exposition is otherwise complete).")
    w("")
    # Targets.
    w("| target for guest-exporter | measured | met? |")
    w("|---|---|---|")
    ge_anon = max(num(r, "ge_idle_rssanon", 1e12), num(r, "ge_after_rssanon", 1e12))
    ge_rss = max(num(r, "ge_idle_vmrss", 1e12), num(r, "ge_after_vmrss", 1e12))
    ge_cpu = num(r, "ge_idle_cpu_s_per_h", 1e12)
    ge_p99 = num(r, "ge_c32_p99_us", 1e12)

    def yn(ok):
        return "**met**" if ok else "**not met**"

    w(f"| anonymous RSS ≤ 3 MiB (idle and after the scrapes) | {mib_kib(num(r, 'ge_idle_rssanon'))} / {mib_kib(num(r, 'ge_after_rssanon'))} | {yn(ge_anon <= 3 * MIB)} |")
    w(f"| total RSS ≤ 20 MiB (idle and after the scrapes) | {mib_kib(num(r, 'ge_idle_vmrss'))} / {mib_kib(num(r, 'ge_after_vmrss'))} | {yn(ge_rss <= 20 * MIB)} |")
    w(f"| idle CPU ≤ 1 s per hour at a 120 s interval | {ge_cpu:.3f} s | {yn(ge_cpu <= 1.0)} |")
    w(f"| p99 ≤ 2 ms with 32 clients | {ms(ge_p99)} | {yn(ge_p99 <= 2000)} |")
    better = []
    worse = []
    cmp = [
        ("RssAnon idle", "idle_rssanon", False), ("VmRSS idle", "idle_vmrss", False),
        ("RssAnon after", "after_rssanon", False), ("VmRSS after", "after_vmrss", False),
        ("idle CPU", "idle_cpu_s_per_h", False),
        ("p50 1 client", "c1_p50_us", False), ("p99 1 client", "c1_p99_us", False),
        ("p50 32 clients", "c32_p50_us", False), ("p99 32 clients", "c32_p99_us", False),
        ("req/s 1 client", "c1_rps", True), ("req/s 32 clients", "c32_rps", True),
    ]
    for label, key, higher in cmp:
        a, b = num(r, f"ge_{key}"), num(r, f"go_{key}")
        if a is None or b is None:
            worse.append(label + " (missing)")
        elif (a > b) if higher else (a < b):
            better.append(label)
        else:
            worse.append(label)
    w(f"| every figure better than the Go peer's | better: {', '.join(better) or 'none'}; "
      f"not better: {', '.join(worse) or 'none'} | {yn(not worse)} |")
    w("")
    # Where the RSS goes.
    w("Where guest-exporter's RSS goes after the scrapes (`/proc/PID/smaps`, KiB per mapping; "
      "file-backed pages of shared libraries are shared with every other process mapping them):")
    w("")
    w(f"- by Rss: {r.get('ge_smaps_top_rss', '?').replace(';', ', ')}")
    w(f"- by Anonymous: {r.get('ge_smaps_top_anon', '?').replace(';', ', ')}")
    if r.get("ge_smaps_beyond_floor"):
        w(f"- beyond the floor client's mappings (guest-exporter's Rss minus `bench/libvirt-floor.c`'s, read at "
          f"the same moment, KiB; {num(r, 'ge_smaps_beyond_floor_total', 0):+.0f} KiB in all): "
          f"{r.get('ge_smaps_beyond_floor').replace(';', ', ')}")
    w(f"- for reference, a C program that only links libvirt and holds one connection (`bench/libvirt-floor.c`): "
      f"VmRSS {mib_kib(num(r, 'fl_idle_vmrss'))}, RssAnon {mib(num(r, 'fl_idle_rssanon'))}, "
      f"RssFile {mib(num(r, 'fl_idle_rssfile'))}, idle CPU {num(r, 'fl_idle_cpu_s_per_h', 0):.3f} s per hour, "
      f"{r.get('fl_idle_ctxsw', '?')} context switches in the idle window")
    w(f"- Pss after the scrapes: guest-exporter {mib(num(r, 'ge_after_pss'))}, Go exporter {mib(num(r, 'go_after_pss'))}")
    w("")
    w("Reproduce: `bench/exporter.sh --write` from the repository root (about 6 minutes, most of it the "
      "idle window); without `--write` it only prints this section.")
    w(END)
    return "\n".join(out) + "\n"


def write_doc(doc, section):
    text = open(doc).read() if os.path.exists(doc) else ""
    if not text.strip():
        text = INTRO + "\n"
    if BEGIN in text and END in text and text.index(BEGIN) < text.index(END):
        pre = text[: text.index(BEGIN)]
        post = text[text.index(END) + len(END):]
        post = post[1:] if post.startswith("\n") else post
        text = pre + section + post
    else:
        text = text.rstrip("\n") + "\n\n" + section
    tmp = doc + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, doc)


def main(argv):
    if len(argv) >= 2 and argv[1] == "port":
        print(free_port())
    elif len(argv) in (4, 5) and argv[1] == "smaps":
        smaps(argv[2], argv[3], argv[4] if len(argv) == 5 else None)
    elif len(argv) >= 3 and argv[1] == "render":
        section = render(load(argv[2]))
        sys.stdout.write(section)
        if len(argv) == 5 and argv[3] == "--doc":
            write_doc(argv[4], section)
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
