"""The status-reporter's VEP 156 switch and its status-mode detection, with
the real binary against the API-server fixture:

- --write-ratios=false: a valid report is taken and its guest load served,
  and nothing is written to the launcher pod or the VMI;
- before anything was probed the mode metric says unknown;
- the VMI CRD gains the VEP 156 status fields while the reporter runs (a
  KubeVirt upgrade): the reporter switches to status mode within seconds,
  not at its 600 s re-probe, and its informers get over the 410 that the
  CRD change causes (the watch cache restarts).

    python3 ratio_mode_test.py --status-reporter=PATH [-v] [Class.test]"""

import sys
import time
import unittest

import harness
from harness import (CPU_ANNOTATION, MEMORY_ANNOTATION, Reporter, annotations, report, status_ratios,
                     wait_until)
from reporter_test import SETTLE, ReporterCase

CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
VMI_CRD = "virtualmachineinstances.kubevirt.io"
# What the reporter must beat: its periodic re-probe is 600 s. A loaded
# 2-core machine needs a few seconds for a watch event, a reconcile and two writes.
SWITCH_BOUND = 30


def modes(metrics_text):
    return {labels["mode"]: value for labels, value in harness.samples(metrics_text, "status_reporter_vmi_ratio_mode")}


class RatiosOffTest(ReporterCase):
    """--write-ratios=false on a CRD that would keep the status fields."""

    fixture_args = ("--no-prune-vmi-status",)

    @classmethod
    def start_reporter(cls, identity):
        r = Reporter(cls.cluster.kubeconfig, identity, cls.dir, cls.cert, cls.key,
                     extra_args=("--write-ratios=false",))
        cls.addClassCleanup(r.kill)
        return r

    def test_a_valid_report_writes_nothing_and_its_load_is_served(self):
        self.assertEqual(modes(self.reporter.metrics()),
                         {"off": 1, "unknown": 0, "status": 0, "annotations": 0})
        uid = self.cluster.launcher(self.ns, "vm-o", "virt-launcher-vm-o-x1", "node-1")
        mark = self.log_mark()
        before = self.reconciles()
        self.accept(report(self.ns, "vm-o", "virt-launcher-vm-o-x1", uid, "node-1", cpu=10.0, memory=1.5,
                           load=(3.5, 2.0, 1.0)),
                    self.cluster.token(self.ns, "virt-launcher-vm-o-x1"))
        vm = {"namespace": self.ns, "name": "vm-o", "node": "node-1"}
        wait_until(lambda: harness.sample(self.reporter.metrics(), "kubevirt_vmi_guest_load_1m", **vm) == 3.5,
                   SETTLE, "the VM's guest load on /metrics")
        self.wait_idle_after(before)  # the report went through the writers

        self.assertEqual(self.writes_since(mark), [])
        pod = self.cluster.pod(self.ns, "virt-launcher-vm-o-x1")
        vmi = self.cluster.vmi(self.ns, "vm-o")
        self.assertNotIn(CPU_ANNOTATION, annotations(pod))
        self.assertNotIn(MEMORY_ANNOTATION, annotations(pod))
        self.assertNotIn(CPU_ANNOTATION, annotations(vmi))
        self.assertEqual(status_ratios(vmi), (None, None))
        m = self.reporter.metrics()
        self.assertEqual(modes(m)["off"], 1)
        # The feature is off as a whole: no ratio gauges either.
        self.assertIsNone(harness.sample(m, "kubevirt_vmi_cpu_allocation_ratio", **vm))
        self.assertIsNone(harness.sample(m, "kubevirt_vmi_memory_overcommit_ratio", **vm))


class CrdUpgradeTest(ReporterCase):
    """Stock KubeVirt first (the CRD prunes the fields), then an upgrade."""

    def test_mode_is_unknown_until_probed(self):
        # A reporter of its own: the class's may have probed already.
        r = Reporter(self.cluster.kubeconfig, harness.unique("fresh"), self.dir, self.cert, self.key)
        self.addCleanup(r.kill)
        wait_until(lambda: r.metric("status_reporter_caches_synced") == 1, SETTLE, "the caches to sync")
        self.assertEqual(modes(r.metrics()), {"unknown": 1, "status": 0, "annotations": 0, "off": 0})

    def test_vmi_crd_gaining_the_fields_switches_to_status_within_seconds(self):
        uid = self.cluster.launcher(self.ns, "vm-u", "virt-launcher-vm-u-x1", "node-1")
        self.accept(report(self.ns, "vm-u", "virt-launcher-vm-u-x1", uid, "node-1", cpu=10.0, memory=1.5),
                    self.cluster.token(self.ns, "virt-launcher-vm-u-x1"))
        wanted = {CPU_ANNOTATION: "10.0", MEMORY_ANNOTATION: "1.5"}
        wait_until(lambda: {k: annotations(self.cluster.vmi(self.ns, "vm-u")).get(k) for k in wanted} == wanted,
                   SETTLE, "the ratios as VMI annotations")
        self.assertEqual(modes(self.reporter.metrics())["annotations"], 1)

        # The upgrade: the VMI CRD's status schema gains both fields (an update
        # of the CRD object, as KubeVirt's operator makes it).
        crd = self.cluster.ok("GET", f"{CRDS}/{VMI_CRD}")
        status = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
        status["memory"]["properties"]["memoryOvercommitRatio"] = {"type": "number"}
        status["currentCPUTopology"]["properties"]["cpuAllocationRatio"] = {"type": "number"}
        mark = self.log_mark()
        changed = time.monotonic()
        self.cluster.ok("PUT", f"{CRDS}/{VMI_CRD}?{harness.OWN}", crd)

        # No new report is sent: the CRD change alone brings the switch.
        wait_until(lambda: status_ratios(self.cluster.vmi(self.ns, "vm-u")) == (10.0, 1.5), SWITCH_BOUND,
                   lambda: f"the ratios in the VMI's status; reporter log:\n{self.reporter.log_tail()}")
        wait_until(lambda: CPU_ANNOTATION not in annotations(self.cluster.vmi(self.ns, "vm-u")), SETTLE,
                   "the annotation-mode record to be removed")
        took = time.monotonic() - changed
        self.assertLess(took, SWITCH_BOUND)
        self.assertEqual(modes(self.reporter.metrics()), {"status": 1, "annotations": 0, "unknown": 0, "off": 0})
        print(f"\nswitched to status mode {took:.1f} s after the CRD update", file=sys.stderr)

        # The VMI watch ended with the CRD change; resuming answered 410 and
        # the informer relisted.
        vmi_lists = [r for r in self.cluster.requests()[mark:]
                     if r["resource"] == "virtualmachineinstances" and r["verb"] == "list" and not r["namespace"]]
        self.assertTrue(vmi_lists, "the reporter relists VMIs after the 410")
        def log():
            with open(self.reporter.log_path, errors="replace") as f:
                return f.read()
        wait_until(lambda: "virtualmachineinstances: 410 Expired: too old resource version" in log(), SETTLE,
                   "the VMI informer to log the 410 it recovered from")
        # And it keeps following VMIs: one created after the change is known to it.
        uid2 = self.cluster.launcher(self.ns, "vm-w", "virt-launcher-vm-w-x1", "node-1")
        self.accept(report(self.ns, "vm-w", "virt-launcher-vm-w-x1", uid2, "node-1", cpu=4.0, memory=1.0),
                    self.cluster.token(self.ns, "virt-launcher-vm-w-x1"))
        self.wait_vmi_status_ratios("vm-w", 4.0, 1.0)


class CrdForbiddenTest(ReporterCase):
    """RBAC without the chart's rule on the VMI CRD: the reporter says so
    once and falls back to its periodic re-probe; reports still work."""

    @classmethod
    def setUpClass(cls):
        cls.dir = harness.temp_dir("status-reporter-it-")
        cls.cert, cls.key = harness.serving_certificate(cls.dir)
        cls.cluster = harness.Cluster()
        cls.addClassCleanup(cls.cluster.stop)
        cls.cluster.faults({"resource": "customresourcedefinitions", "code": 403, "count": -1})
        cls.reporter = cls.start_reporter("reporter-a")
        wait_until(cls.reporter.serving, SETTLE, "the reporter to lead and sync")

    def tearDown(self):
        pass  # the 403 stays for the whole class

    def test_forbidden_crd_is_logged_once_and_ratios_still_flow(self):
        uid = self.cluster.launcher(self.ns, "vm-f", "virt-launcher-vm-f-x1", "node-1")
        self.accept(report(self.ns, "vm-f", "virt-launcher-vm-f-x1", uid, "node-1", cpu=10.0, memory=1.5),
                    self.cluster.token(self.ns, "virt-launcher-vm-f-x1"))
        wait_until(lambda: annotations(self.cluster.vmi(self.ns, "vm-f")).get(CPU_ANNOTATION) == "10.0", SETTLE,
                   "the ratios as VMI annotations")
        self.assertEqual(modes(self.reporter.metrics())["annotations"], 1)
        time.sleep(2)  # time for a retry storm, if there were one
        with open(self.reporter.log_path, errors="replace") as f:
            log = f.read()
        self.assertEqual(log.count("cannot read customresourcedefinitions"), 1, log[-3000:])
        self.assertIn("re-probed every 10 min", log)
        crd_requests = [r for r in self.cluster.requests() if r["resource"] == "customresourcedefinitions"]
        self.assertEqual(len(crd_requests), 1, "one GET, then nothing for 10 min")


if __name__ == "__main__":
    unittest.main(argv=harness.take_binary_args(sys.argv))
