#!/usr/bin/env python3
"""Stand-in for the one virt-handler metric the shipped rules need.

The recording rule vmi:kubevirt_vmi_vcpu:count (and through it the run-queue
rules, both queue alerts and GuestLoadMetricsMissing) counts the vCPU ids of
KubeVirt's kubevirt_vmi_vcpu_seconds_total, which virt-handler exports. There is
no virt-handler in the e2e test, and nothing on a plain Debian host exports
that metric (Debian's prometheus-libvirt-exporter 0.2.0 has no per-vCPU
series). This serves it the way virt-handler computes it, from the same live
libvirt data, at every scrape -- no recorded or static values:

  virt-handler (pkg/monitoring/metrics/virt-handler/domainstats, vcpu collector):
    for each vCPU N of the domain's VIR_DOMAIN_STATS_VCPU stats that has both
    vcpu.N.state and vcpu.N.time:
      kubevirt_vmi_vcpu_seconds_total{namespace, name, node, id="N",
          state="running"|"blocked"|"offline"|"unknown"} = vcpu.N.time / 1e9

Here the stats come from `virsh domstats --vcpu --list-running` on the test's
libvirt, i.e. the same virConnectGetAllDomainStats call, and the VMI's
namespace and name from the domain name `<namespace>_<name>`, as KubeVirt names
its domains. virt-handler adds kubernetes_vmi_label_* labels too; the rules do
not use them.

Usage: vcpu-stats.py --uri URI --node NODE --port-file FILE [--listen 127.0.0.1]
Listens on an ephemeral loopback port and writes it to FILE.
"""
import argparse
import http.server
import os
import re
import signal
import subprocess
import sys

STATES = {"0": "offline", "1": "running", "2": "blocked"}
STAT_LINE = re.compile(r"^\s*vcpu\.(\d+)\.(state|time)=(\d+)\s*$")


def collect(uri, node):
    """The exposition text, or raises on a libvirt error (the scrape then fails)."""
    out = subprocess.run(
        ["virsh", "-q", "-c", uri, "domstats", "--vcpu", "--list-running"],
        check=True, capture_output=True, text=True, timeout=10,
    ).stdout
    lines = [
        "# HELP kubevirt_vmi_vcpu_seconds_total Total amount of time spent in each state by each vcpu "
        "(cpu_time excluding hypervisor time). e2e stand-in for virt-handler, read live from libvirt.",
        "# TYPE kubevirt_vmi_vcpu_seconds_total counter",
    ]
    domain, vcpus = None, {}

    def flush():
        if domain is None or "_" not in domain:
            return  # not a KubeVirt domain name: virt-handler would not know it either
        namespace, name = domain.split("_", 1)
        for idx in sorted(vcpus, key=int):
            v = vcpus[idx]
            if "state" not in v or "time" not in v:
                continue
            lines.append(
                'kubevirt_vmi_vcpu_seconds_total{namespace="%s",name="%s",node="%s",id="%s",state="%s"} %r'
                % (namespace, name, node, idx, STATES.get(v["state"], "unknown"), int(v["time"]) / 1e9))

    for line in out.splitlines():
        m = re.match(r"^Domain: '(.*)'$", line.strip())
        if m:
            flush()
            domain, vcpus = m.group(1), {}
            continue
        m = STAT_LINE.match(line)
        if m and domain is not None:
            vcpus.setdefault(m.group(1), {})[m.group(2)] = m.group(3)
    flush()
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--uri", required=True)
    ap.add_argument("--node", required=True)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--listen", default="127.0.0.1")
    args = ap.parse_args()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path != "/metrics":
                self.send_error(404)
                return
            try:
                body, code = collect(args.uri, args.node).encode(), 200
            except (subprocess.SubprocessError, OSError) as e:
                body, code = ("libvirt: %s\n" % e).encode(), 503
            self.send_response(code)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt, *a):
            pass

    server = http.server.HTTPServer((args.listen, 0), Handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % server.server_address[1])
    os.rename(tmp, args.port_file)
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
