"""Sidecar to reporter, end to end over loopback: real guest-exporter
processes read their domain from libvirt's embedded test driver (a node XML
per launcher pod), authenticate with pod-bound tokens from the API-server
fixture, and push reports over HTTPS to a real status-reporter, which writes
the ratios to the fixture.

    python3 e2e_test.py --status-reporter=PATH --guest-exporter=PATH [-v]"""

import os
import socket
import subprocess
import sys
import unittest

import harness
from harness import CPU_ANNOTATION, MEMORY_ANNOTATION, Cluster, Reporter, annotations, status_ratios, wait_until

SETTLE = 20

# One KubeVirt-shaped domain (<namespace>_<vmi-name>): 4 vCPUs, 6 GiB.
NODE_XML = """<node>
  <domain type='test'>
    <name>{ns}_{vmi}</name>
    <memory unit='GiB'>6</memory>
    <vcpu>4</vcpu>
    <os><type>hvm</type></os>
  </domain>
</node>
"""


class Sidecar:
    """A guest-exporter as the webhook injects it into one launcher pod."""

    def __init__(self, directory, cluster, reporter, ns, vmi, pod, pod_uid, node, cpu_request):
        self.dir = os.path.join(directory, pod)
        os.mkdir(self.dir)
        node_xml = os.path.join(self.dir, "node.xml")
        with open(node_xml, "w") as f:
            f.write(NODE_XML.format(ns=ns, vmi=vmi))
        token_file = os.path.join(self.dir, "token")
        with open(token_file, "w") as f:
            f.write(cluster.token(ns, pod, pod_uid))
        self.socket = os.path.join(self.dir, "metrics.sock")
        self.log_path = os.path.join(self.dir, "exporter.log")
        self._log = open(self.log_path, "wb")
        # The compute container's request includes 320Mi of overhead, as the
        # pod annotation kubevirt.io/memory-overhead-bytes says: 4Gi for the VM.
        args = [harness.GUEST_EXPORTER, "--libvirt-uri", f"test://{node_xml}", "--socket", self.socket,
                "--listen-address", "", "--node-name", node, "--guest-info-interval", "60",
                "--vmi-namespace", ns, "--vmi-name", vmi, "--pod-name", pod, "--pod-uid", pod_uid,
                "--cpu-request", cpu_request, "--memory-request", "4416Mi", "--memory-overhead", "320Mi",
                "--reporter-url", f"https://127.0.0.1:{reporter.https_port}/v1/reports",
                "--reporter-ca-file", reporter.ca, "--token-file", token_file, "--log-level", "debug"]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
                                     preexec_fn=harness._die_with_parent)
        self._cleanup = harness.register_cleanup(self.kill)

    def metrics(self):
        """The sidecar's own /metrics, from its unix socket (the pod IP does not reach it)."""
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(self.socket)
            s.sendall(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
            raw = b""
            while chunk := s.recv(65536):
                raw += chunk
        head, _, body = raw.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.") or b" 200 " not in head.split(b"\r\n")[0]:
            raise AssertionError(f"sidecar /metrics: {head[:100]!r}")
        return body.decode()

    def reports(self, result):
        return harness.sample(self.metrics(), "guest_exporter_reports_total", result=result) or 0

    def log_tail(self, lines=30):
        with open(self.log_path, "rb") as f:
            return b"\n".join(f.read().splitlines()[-lines:]).decode(errors="replace")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        harness.unregister_cleanup(self._cleanup)
        self._log.close()


class SidecarToReporterTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = harness.temp_dir("guest-metrics-e2e-")
        cls.cert, cls.key = harness.serving_certificate(cls.dir)
        cls.cluster = Cluster("--no-prune-vmi-status")
        cls.addClassCleanup(cls.cluster.stop)
        cls.reporter = Reporter(cls.cluster.kubeconfig, "reporter-e2e", cls.dir, cls.cert, cls.key)
        cls.addClassCleanup(cls.reporter.kill)
        wait_until(cls.reporter.serving, SETTLE, "the reporter to lead and sync")

    def setUp(self):
        self.ns = harness.unique("e2e")

    def sidecar(self, vmi, pod, pod_uid, node, cpu_request):
        s = Sidecar(self.dir, self.cluster, self.reporter, self.ns, vmi, pod, pod_uid, node, cpu_request)
        self.addCleanup(s.kill)
        return s

    def wait_pod_ratios(self, pod, cpu, memory, sidecar):
        want = {CPU_ANNOTATION: cpu, MEMORY_ANNOTATION: memory}

        def have():
            a = annotations(self.cluster.pod(self.ns, pod))
            return {k: a.get(k) for k in want}
        wait_until(lambda: have() == want, SETTLE,
                   lambda: f"pod {pod} annotations {want}, have {have()}\nsidecar log:\n{sidecar.log_tail()}")

    def wait_vmi_ratios(self, vmi, ratios, sidecar):
        wait_until(lambda: status_ratios(self.cluster.vmi(self.ns, vmi)) == ratios, SETTLE,
                   lambda: f"VMI {vmi} status ratios {ratios}, have {status_ratios(self.cluster.vmi(self.ns, vmi))}"
                           f"\nsidecar log:\n{sidecar.log_tail()}")

    def test_sidecar_report_lands_on_pod_vmi_and_metrics(self):
        uid = self.cluster.launcher(self.ns, "vm-e", "virt-launcher-vm-e-a1", "node-1")
        sidecar = self.sidecar("vm-e", "virt-launcher-vm-e-a1", uid, "node-1", "400m")
        # 4 vCPUs on 400m = 10; 6 GiB on 4416Mi - 320Mi = 1.5.
        self.wait_pod_ratios("virt-launcher-vm-e-a1", "10.0", "1.5", sidecar)
        self.wait_vmi_ratios("vm-e", (10.0, 1.5), sidecar)

        m = self.reporter.metrics()
        vm = {"namespace": self.ns, "name": "vm-e", "node": "node-1"}
        self.assertEqual(harness.sample(m, "kubevirt_vmi_cpu_allocation_ratio", **vm), 10.0)
        self.assertEqual(harness.sample(m, "kubevirt_vmi_memory_overcommit_ratio", **vm), 1.5)
        # The test driver has no guest agent: no invented load.
        self.assertIsNone(harness.sample(m, "kubevirt_vmi_guest_load_1m", namespace=self.ns))
        self.assertGreaterEqual(harness.sample(m, "status_reporter_reports_total", result="accepted"), 1)
        self.assertGreaterEqual(sidecar.reports("ok"), 1, "the sidecar counts its delivered reports")
        self.assertEqual(sidecar.reports("error"), 0)
        # Its health travels in the report: the reporter shows it, no PodMonitor needed.
        self.assertEqual(harness.sample(m, "status_reporter_sidecar_libvirt_up", **vm), 1)
        self.assertEqual(harness.sample(m, "status_reporter_sidecar_report_failures", error="none", **vm), 0)
        self.assertEqual(harness.sample(m, "status_reporter_sidecar_guest_load_status", **vm), 1)
        self.assertEqual([lbl for lbl, _ in harness.samples(m, "status_reporter_vmi_report_state")
                          if lbl["namespace"] == self.ns],
                         [dict(vm, state="reporting", reason="report_accepted")])

    def test_after_migration_the_target_sidecars_ratios_replace_the_sources(self):
        src_uid = self.cluster.launcher(self.ns, "vm-m", "virt-launcher-vm-m-src", "node-1")
        src = self.sidecar("vm-m", "virt-launcher-vm-m-src", src_uid, "node-1", "400m")
        self.wait_vmi_ratios("vm-m", (10.0, 1.5), src)

        # The target pod asks for more CPU (500m: ratio 8); its sidecar starts
        # before the hand-off and is refused until then.
        tgt_uid = self.cluster.create_launcher_pod(self.ns, "virt-launcher-vm-m-tgt", "vm-m", "node-2")[
            "metadata"]["uid"]
        self.cluster.patch_vmi_status(self.ns, "vm-m", {"activePods": {src_uid: "node-1", tgt_uid: "node-2"}})
        refused = self.reporter.metric("status_reporter_reports_total", result="not_active_pod") or 0
        tgt = self.sidecar("vm-m", "virt-launcher-vm-m-tgt", tgt_uid, "node-2", "500m")
        wait_until(lambda: (self.reporter.metric("status_reporter_reports_total", result="not_active_pod") or 0)
                   > refused, SETTLE, lambda: f"the target's report to be refused\n{tgt.log_tail()}")
        self.assertEqual(status_ratios(self.cluster.vmi(self.ns, "vm-m")), (10.0, 1.5))
        self.assertNotIn(CPU_ANNOTATION, annotations(self.cluster.pod(self.ns, "virt-launcher-vm-m-tgt")))
        self.assertGreaterEqual(tgt.reports("error"), 1, "the target's sidecar sees its refusal")

        self.cluster.patch_vmi_status(self.ns, "vm-m", {"nodeName": "node-2",
                                                        "activePods": {src_uid: None, tgt_uid: "node-2"}})
        # The sidecar retries with backoff (1 s, 2 s, ...) and gets through.
        self.wait_vmi_ratios("vm-m", (8.0, 1.5), tgt)
        self.wait_pod_ratios("virt-launcher-vm-m-tgt", "8.0", "1.5", tgt)
        m = self.reporter.metrics()
        self.assertEqual([s for s in harness.samples(m, "kubevirt_vmi_cpu_allocation_ratio")
                          if s[0]["namespace"] == self.ns],
                         [({"namespace": self.ns, "name": "vm-m", "node": "node-2"}, 8.0)])


if __name__ == "__main__":
    unittest.main(argv=harness.take_binary_args(sys.argv))
