"""The real status-reporter binary against the API-server fixture: what a user
checks with kubectl and curl after the reporter has handled sidecar reports.

    python3 reporter_test.py --status-reporter=PATH [-v] [Class.test]

Reports are posted here the way a guest-exporter sidecar posts them (a
pod-bound projected token, the GuestReport JSON), so every field — including
guest load, which libvirt's test driver cannot produce — is under the test's
control. e2e_test.py drives the same path with real sidecars.

GM_KEEP_TEST_DIRS=1 keeps the temp dirs, with each reporter's debug log."""

import os
import ssl
import subprocess
import sys
import time
import unittest

import harness
from harness import (CPU_ANNOTATION, MEMORY_ANNOTATION, Cluster, Reporter, annotations, report, status_ratios,
                     unique, wait_until)

SETTLE = 20  # seconds a write may take to land, on a loaded 2-core machine


class ReporterCase(unittest.TestCase):
    """One fixture and one leading reporter per class; each test works in its
    own namespace."""

    fixture_args = ()

    @classmethod
    def setUpClass(cls):
        cls.dir = harness.temp_dir("status-reporter-it-")
        cls.cert, cls.key = harness.serving_certificate(cls.dir)
        cls.cluster = Cluster(*cls.fixture_args)
        cls.addClassCleanup(cls.cluster.stop)
        cls.reporter = cls.start_reporter("reporter-a")
        wait_until(cls.reporter.serving, SETTLE, "the reporter to lead and sync")

    @classmethod
    def start_reporter(cls, identity):
        r = Reporter(cls.cluster.kubeconfig, identity, cls.dir, cls.cert, cls.key)
        cls.addClassCleanup(r.kill)
        return r

    def setUp(self):
        self.ns = unique("ns")

    def tearDown(self):
        self.cluster.reset_faults()

    # -- helpers ---------------------------------------------------------------

    def log_mark(self):
        return len(self.cluster.requests())

    def writes_since(self, mark):
        return self.cluster.reporter_writes(self.ns, since=mark)

    def post_until(self, reporter, body, token, want, result=None, timeout=SETTLE):
        """Posts until the answer is HTTP `want` (with `result`, if given):
        the reporter's caches may lag the API by a watch event."""
        last = []

        def attempt():
            last[:] = reporter.post_report(body, token)
            return last[0] == want and (result is None or last[1]["result"] == result)
        wait_until(attempt, timeout, lambda: f"HTTP {want} {result or ''} for the report; last answer {last}",
                   interval=0.2)
        return last[1]

    def accept(self, body, token, reporter=None):
        self.assertEqual(self.post_until(reporter or self.reporter, body, token, 202), {"result": "accepted"})

    def wait_pod_ratios(self, name, cpu, memory, ns=None):
        ns = ns or self.ns
        want = {CPU_ANNOTATION: cpu, MEMORY_ANNOTATION: memory}

        def got():
            a = annotations(self.cluster.pod(ns, name))
            return {k: a.get(k) for k in want}
        wait_until(lambda: got() == want, SETTLE, lambda: f"pod {ns}/{name} annotations {want}, have {got()}")

    def wait_vmi_status_ratios(self, name, cpu, memory, ns=None):
        ns = ns or self.ns
        wait_until(lambda: status_ratios(self.cluster.vmi(ns, name)) == (cpu, memory), SETTLE,
                   lambda: f"VMI {ns}/{name} status ratios {(cpu, memory)}, "
                           f"have {status_ratios(self.cluster.vmi(ns, name))}")

    def reconciles(self, reporter=None):
        return (reporter or self.reporter).metric("status_reporter_reconcile_duration_seconds_count") or 0

    def wait_idle_after(self, reconciles_before, reporter=None):
        """Waits until the reporter has reconciled at least once more and its
        queue is empty: every write the last report could cause is done."""
        r = reporter or self.reporter
        wait_until(lambda: self.reconciles(r) > reconciles_before and r.metric("status_reporter_queue_depth") == 0,
                   SETTLE, "the reporter to reconcile and drain its queue")

    def refused(self, reason):
        return self.reporter.metric("status_reporter_reports_total", result=reason) or 0

    def successful_patches(self, requests, name, subresource=None):
        return [r for r in requests if r["method"] == "PATCH" and r["name"] == name
                and r["subresource"] == subresource and r["code"] == 200]


class StatusModeTest(ReporterCase):
    """A KubeVirt whose VMI CRD has the VEP 156 fields (not pruned)."""

    fixture_args = ("--no-prune-vmi-status",)

    def test_ratios_land_on_pod_and_vmi_status_with_one_write_each(self):
        uid = self.cluster.launcher(self.ns, "vm-a", "virt-launcher-vm-a-x1", "node-1")
        token = self.cluster.token(self.ns, "virt-launcher-vm-a-x1")
        mark = self.log_mark()
        body = report(self.ns, "vm-a", "virt-launcher-vm-a-x1", uid, "node-1", cpu=10.0, memory=1.5,
                      load=(2.5, 1.75, 1.25))
        self.accept(body, token)

        self.wait_pod_ratios("virt-launcher-vm-a-x1", "10.0", "1.5")
        self.wait_vmi_status_ratios("vm-a", 10.0, 1.5)
        vmi = self.cluster.vmi(self.ns, "vm-a")
        self.assertNotIn(CPU_ANNOTATION, annotations(vmi), "status mode keeps the VMI's record in status only")
        self.assertNotIn(MEMORY_ANNOTATION, annotations(vmi))

        m = self.reporter.metrics()
        vm = {"namespace": self.ns, "name": "vm-a", "node": "node-1"}
        self.assertEqual(harness.sample(m, "kubevirt_vmi_guest_load_1m", **vm), 2.5)
        self.assertEqual(harness.sample(m, "kubevirt_vmi_guest_load_5m", **vm), 1.75)
        self.assertEqual(harness.sample(m, "kubevirt_vmi_guest_load_15m", **vm), 1.25)
        self.assertEqual(harness.sample(m, "kubevirt_vmi_cpu_allocation_ratio", **vm), 10.0)
        self.assertEqual(harness.sample(m, "kubevirt_vmi_memory_overcommit_ratio", **vm), 1.5)
        self.assertEqual(harness.sample(m, "status_reporter_vmi_ratio_mode", mode="status"), 1)
        self.assertEqual(harness.sample(m, "status_reporter_vmi_ratio_mode", mode="annotations"), 0)

        # The same report again (the sidecar's heartbeat) writes nothing.
        before = self.reconciles()
        self.accept(body, token)
        self.wait_idle_after(before)
        writes = self.writes_since(mark)
        self.assertEqual([(w["method"], w["resource"], w["name"], w["subresource"], w["code"]) for w in writes],
                         [("PATCH", "pods", "virt-launcher-vm-a-x1", None, 200),
                          ("PATCH", "virtualmachineinstances", "vm-a", "status", 200)],
                         "one write per changed object, none for a repeated report")

    def test_changed_ratios_are_written_again(self):
        uid = self.cluster.launcher(self.ns, "vm-h", "virt-launcher-vm-h-x1", "node-1")
        token = self.cluster.token(self.ns, "virt-launcher-vm-h-x1")
        self.accept(report(self.ns, "vm-h", "virt-launcher-vm-h-x1", uid, "node-1", cpu=10.0, memory=1.5), token)
        self.wait_vmi_status_ratios("vm-h", 10.0, 1.5)
        # CPU hotplug: more vCPUs on the same request.
        self.accept(report(self.ns, "vm-h", "virt-launcher-vm-h-x1", uid, "node-1", cpu=15.0, memory=1.5), token)
        self.wait_pod_ratios("virt-launcher-vm-h-x1", "15.0", "1.5")
        self.wait_vmi_status_ratios("vm-h", 15.0, 1.5)

    def test_refused_reports_get_a_clear_4xx_and_write_nothing(self):
        active_uid = self.cluster.launcher(self.ns, "vm-r", "virt-launcher-vm-r-x1", "node-1")
        # A second launcher pod of the same VMI that is not (yet) active: a
        # migration target before the hand-off.
        other_uid = self.cluster.create_launcher_pod(self.ns, "virt-launcher-vm-r-y2", "vm-r", "node-2")[
            "metadata"]["uid"]
        ghost_uid = self.cluster.create_launcher_pod(self.ns, "virt-launcher-ghost", "ghost", "node-1")[
            "metadata"]["uid"]
        active_token = self.cluster.token(self.ns, "virt-launcher-vm-r-x1")
        other_token = self.cluster.token(self.ns, "virt-launcher-vm-r-y2")
        ghost_token = self.cluster.token(self.ns, "virt-launcher-ghost")
        api_audience_token = self.cluster.token(self.ns, "virt-launcher-vm-r-x1",
                                                audiences=("https://kubernetes.default.svc.cluster.local",))
        good = report(self.ns, "vm-r", "virt-launcher-vm-r-x1", active_uid, "node-1")
        from_other = report(self.ns, "vm-r", "virt-launcher-vm-r-y2", other_uid, "node-2", cpu=3.0)
        # The reporter must see both pods and the VMI before the checks mean anything.
        self.post_until(self.reporter, from_other, other_token, 409, "not_active_pod")
        self.post_until(self.reporter, report(self.ns, "ghost", "virt-launcher-ghost", ghost_uid, "node-1"),
                        ghost_token, 404, "unknown_vmi")
        mark = self.log_mark()

        cases = [
            ("no token", good, None, 401, "unauthenticated"),
            ("token for another audience", good, api_audience_token, 401, "unauthenticated"),
            ("token of a pod that did not send it", good, other_token, 403, "token_mismatch"),
            ("not the active pod", from_other, other_token, 409, "not_active_pod"),
            ("not a report", {"hello": "world"}, active_token, 400, "bad_report"),
            ("a ratio that is not positive", dict(good, cpuAllocationRatio=-1), active_token, 400, "bad_report"),
            ("VMI unknown", report(self.ns, "ghost", "virt-launcher-ghost", ghost_uid, "node-1"), ghost_token,
             404, "unknown_vmi"),
        ]
        for what, body, token, code, reason in cases:
            with self.subTest(what):
                before = self.refused(reason)
                status, answer = self.reporter.post_report(body, token)
                self.assertEqual((status, answer["result"]), (code, reason), answer)
                self.assertTrue(answer["message"], "a refusal says why")
                self.assertEqual(self.refused(reason), before + 1)

        self.assertEqual(self.writes_since(mark), [], "a refused report writes nothing")
        self.assertEqual(self.reporter.metric("status_reporter_queue_depth"), 0)
        m = self.reporter.metrics()
        self.assertEqual([s for s in harness.samples(m, "kubevirt_vmi_guest_load_1m")
                          if s[0]["namespace"] == self.ns], [], "nothing of a refused report is shown")
        self.assertNotIn(CPU_ANNOTATION, annotations(self.cluster.pod(self.ns, "virt-launcher-vm-r-y2")))
        self.assertEqual(status_ratios(self.cluster.vmi(self.ns, "vm-r")), (None, None))

    def test_a_failed_token_review_refuses_with_503_and_the_retry_is_accepted(self):
        uid = self.cluster.launcher(self.ns, "vm-t", "virt-launcher-vm-t-x1", "node-1")
        token = self.cluster.token(self.ns, "virt-launcher-vm-t-x1")
        body = report(self.ns, "vm-t", "virt-launcher-vm-t-x1", uid, "node-1", cpu=10.0, memory=1.5)
        self.cluster.faults({"verb": "create", "resource": "tokenreviews", "code": 503, "count": -1})
        mark = self.log_mark()
        before = self.refused("tokenreview_failed")
        status, answer = self.reporter.post_report(body, token)
        self.assertEqual((status, answer["result"]), (503, "tokenreview_failed"), answer)
        self.assertTrue(answer["message"], "the refusal says why")
        self.assertEqual(self.refused("tokenreview_failed"), before + 1)
        self.assertEqual(self.writes_since(mark), [], "an unauthenticated report writes nothing")
        # The API recovers: the sidecar's retry is accepted (the failure was not cached).
        self.cluster.reset_faults()
        self.accept(body, token)
        self.wait_vmi_status_ratios("vm-t", 10.0, 1.5)

    def test_after_migration_the_new_active_pods_ratios_replace_the_old(self):
        src_uid = self.cluster.launcher(self.ns, "vm-m", "virt-launcher-vm-m-src", "node-1")
        src_token = self.cluster.token(self.ns, "virt-launcher-vm-m-src")
        from_src = report(self.ns, "vm-m", "virt-launcher-vm-m-src", src_uid, "node-1", cpu=10.0, memory=1.5)
        self.accept(from_src, src_token)
        self.wait_vmi_status_ratios("vm-m", 10.0, 1.5)

        # Migration in progress: the target pod runs and is in activePods, but
        # the VMI still runs on the source node.
        tgt_uid = self.cluster.create_launcher_pod(self.ns, "virt-launcher-vm-m-tgt", "vm-m", "node-2")[
            "metadata"]["uid"]
        self.cluster.patch_vmi_status(self.ns, "vm-m", {
            "activePods": {src_uid: "node-1", tgt_uid: "node-2"},
            "migrationState": {"sourcePod": "virt-launcher-vm-m-src", "targetPod": "virt-launcher-vm-m-tgt",
                               "targetNode": "node-2"}})
        tgt_token = self.cluster.token(self.ns, "virt-launcher-vm-m-tgt")
        from_tgt = report(self.ns, "vm-m", "virt-launcher-vm-m-tgt", tgt_uid, "node-2", cpu=8.0, memory=1.25,
                          load=(4.0, 3.0, 2.0))
        self.post_until(self.reporter, from_tgt, tgt_token, 409, "not_active_pod")
        self.assertEqual(status_ratios(self.cluster.vmi(self.ns, "vm-m")), (10.0, 1.5))

        # Hand-off: the VMI runs on the target node; the source pod is gone from activePods.
        self.cluster.patch_vmi_status(self.ns, "vm-m", {
            "nodeName": "node-2", "activePods": {src_uid: None, tgt_uid: "node-2"},
            "migrationState": {"completed": True}})
        self.accept(from_tgt, tgt_token)
        self.wait_pod_ratios("virt-launcher-vm-m-tgt", "8.0", "1.25")
        self.wait_vmi_status_ratios("vm-m", 8.0, 1.25)

        # The VMI has one series, on its new node.
        m = self.reporter.metrics()
        series = [s for s in harness.samples(m, "kubevirt_vmi_cpu_allocation_ratio") if s[0]["namespace"] == self.ns]
        self.assertEqual(series, [({"namespace": self.ns, "name": "vm-m", "node": "node-2"}, 8.0)])
        self.assertEqual(harness.sample(m, "kubevirt_vmi_guest_load_1m", namespace=self.ns, name="vm-m"), 4.0)

        # The source sidecar's late heartbeat no longer counts.
        status, answer = self.reporter.post_report(from_src, src_token)
        self.assertEqual((status, answer["result"]), (409, "not_active_pod"))
        self.assertEqual(status_ratios(self.cluster.vmi(self.ns, "vm-m")), (8.0, 1.25))

    def test_api_faults_and_dropped_watches_converge_with_nothing_lost(self):
        vms = [f"vm-f{i}" for i in range(4)]
        uids = {vm: self.cluster.launcher(self.ns, vm, f"virt-launcher-{vm}", "node-1") for vm in vms}
        tokens = {vm: self.cluster.token(self.ns, f"virt-launcher-{vm}") for vm in vms}
        # Let the reporter see them all before the API starts failing.
        for vm in vms:
            self.accept(report(self.ns, vm, f"virt-launcher-{vm}", uids[vm], "node-1", cpu=None, memory=None,
                               load=None), tokens[vm])
        mark = self.log_mark()

        # Writes fail in every way the API fails (for vm-f1..3; vm-f0 migrates
        # below, and the test's own status patch must not meet the faults),
        # and the watches drop as when an API server restarts.
        others = "vm-f[123]"
        self.cluster.faults(
            {"method": "PATCH", "path": f"/pods/virt-launcher-{others}$", "code": 500, "count": 3},
            {"method": "PATCH", "path": f"/{others}/status$", "code": 429, "count": 2, "retryAfterSeconds": 1},
            {"method": "PATCH", "path": f"/{others}/status$", "code": 409, "count": 1},
            {"method": "PATCH", "path": f"/{others}/status$", "code": 503, "count": 1},
            {"verb": "watch", "code": 500, "count": 2})
        self.cluster.ok("POST", "/fixture/drop-watches", {"graceful": False})
        for i, vm in enumerate(vms):
            self.accept(report(self.ns, vm, f"virt-launcher-{vm}", uids[vm], "node-1", cpu=10.0 + i, memory=1.5),
                        tokens[vm])
        # A migration that completes while the watches are down: the reporter
        # learns it only by watching again.
        new_uid = self.cluster.create_launcher_pod(self.ns, "virt-launcher-vm-f0-new", "vm-f0", "node-2")[
            "metadata"]["uid"]
        self.cluster.patch_vmi_status(self.ns, "vm-f0", {"nodeName": "node-2", "activePods": {
            uids["vm-f0"]: None, new_uid: "node-2"}})
        self.accept(report(self.ns, "vm-f0", "virt-launcher-vm-f0-new", new_uid, "node-2", cpu=20.0, memory=2.0),
                    self.cluster.token(self.ns, "virt-launcher-vm-f0-new"))

        self.wait_pod_ratios("virt-launcher-vm-f0-new", "20.0", "2.0")
        self.wait_vmi_status_ratios("vm-f0", 20.0, 2.0)
        for i, vm in enumerate(vms[1:], start=1):
            self.wait_pod_ratios(f"virt-launcher-{vm}", f"{10 + i}.0", "1.5")
            self.wait_vmi_status_ratios(vm, 10.0 + i, 1.5)
        self.assertEqual(self.cluster.ok("GET", "/fixture/faults")["faults"], [], "every fault was hit")

        writes = self.writes_since(mark)
        log = "\n".join(f'{w["method"]} {w["name"]} {w["subresource"]} {w["code"]}' for w in writes)
        failed = [w for w in writes if w["code"] != 200]
        self.assertEqual(len(failed), 3 + 2 + 1 + 1, f"each injected failure was retried:\n{log}")
        for vm in vms[1:]:
            self.assertEqual(len(self.successful_patches(writes, f"virt-launcher-{vm}")), 1, f"{vm}:\n{log}")
            self.assertEqual(len(self.successful_patches(writes, vm, "status")), 1, f"{vm}:\n{log}")
        self.assertEqual(len(self.successful_patches(writes, "virt-launcher-vm-f0-new")), 1)
        self.assertLessEqual(len(self.successful_patches(writes, "vm-f0", "status")), 2,
                             "vm-f0 changed twice at most (old pod's ratios, then the new pod's)")

    def test_expired_watch_relists_and_sees_what_changed_meanwhile(self):
        uid = self.cluster.launcher(self.ns, "vm-c", "virt-launcher-vm-c-x1", "node-1")
        token = self.cluster.token(self.ns, "virt-launcher-vm-c-x1")
        self.accept(report(self.ns, "vm-c", "virt-launcher-vm-c-x1", uid, "node-1", cpu=None, memory=None,
                           load=None), token)
        mark = self.log_mark()
        # Keep the watches down while objects change, then make their
        # resourceVersion too old: only a fresh LIST can catch up.
        self.cluster.faults({"verb": "watch", "code": 503, "count": -1})
        self.cluster.ok("POST", "/fixture/drop-watches", {"graceful": False})
        late_uid = self.cluster.launcher(self.ns, "vm-late", "virt-launcher-vm-late", "node-3")
        self.cluster.ok("POST", "/fixture/compact", {})
        self.cluster.reset_faults()
        self.accept(report(self.ns, "vm-late", "virt-launcher-vm-late", late_uid, "node-3", cpu=5.0, memory=1.0),
                    self.cluster.token(self.ns, "virt-launcher-vm-late"))
        self.wait_pod_ratios("virt-launcher-vm-late", "5.0", "1.0")
        self.wait_vmi_status_ratios("vm-late", 5.0, 1.0)
        # The CRD informer's watch failed on the same 503s and backs off on its
        # own clock: its relist may come after vm-late's writes.
        everyone = {"pods", "virtualmachineinstances", "customresourcedefinitions"}
        relists = lambda: {r["resource"] for r in self.cluster.requests()[mark:] if r["verb"] == "list"}
        wait_until(lambda: relists() >= everyone, SETTLE, "every informer (pods, VMIs, the VMI CRD) listed again")
        self.assertEqual(relists(), everyone, "nothing else was listed")

    def test_a_deleted_vmi_leaves_metrics(self):
        uid = self.cluster.launcher(self.ns, "vm-d", "virt-launcher-vm-d-x1", "node-1")
        self.accept(report(self.ns, "vm-d", "virt-launcher-vm-d-x1", uid, "node-1"),
                    self.cluster.token(self.ns, "virt-launcher-vm-d-x1"))
        wait_until(lambda: self.reporter.metric("kubevirt_vmi_guest_load_1m", namespace=self.ns) is not None,
                   SETTLE, "the VM's guest load on /metrics")
        self.cluster.ok("DELETE", f"/apis/kubevirt.io/v1/namespaces/{self.ns}/virtualmachineinstances/vm-d")
        wait_until(lambda: not [s for s in harness.samples(self.reporter.metrics(), "kubevirt_vmi_guest_load_1m")
                                if s[0]["namespace"] == self.ns],
                   SETTLE, "the deleted VM's series to disappear")


class ReportStateTest(ReporterCase):
    """Every running VMI in exactly one report state on /metrics, with its
    sidecar's health from its reports. The sidecars' interval is 2 s and one
    silent interval is enough, so silence shows within the test."""

    @classmethod
    def start_reporter(cls, identity):
        r = Reporter(cls.cluster.kubeconfig, identity, cls.dir, cls.cert, cls.key,
                     extra_args=("--sidecar-interval=2", "--silent-intervals=1"))
        cls.addClassCleanup(r.kill)
        return r

    def pod(self, vmi, sidecar, labels=None):
        """A launcher pod of `vmi` on node-1, with the injected sidecar or not."""
        name = f"virt-launcher-{vmi}-x1"
        spec = {"nodeName": "node-1", "serviceAccountName": "launcher",
                "containers": [{"name": "compute", "resources": {"requests": {"cpu": "400m", "memory": "4Gi"}}}]}
        if sidecar:
            spec["initContainers"] = [{"name": "guest-exporter", "image": "x", "restartPolicy": "Always"}]
        uid = self.cluster.ok("POST", f"/api/v1/namespaces/{self.ns}/pods?{harness.OWN}", {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "annotations": {"kubevirt.io/domain": vmi},
                         "labels": {"kubevirt.io": "virt-launcher", **(labels or {})}},
            "spec": spec})["metadata"]["uid"]
        self.cluster.load_vmi(self.ns, vmi, "node-1", {uid: "node-1"})
        return name, uid

    def states(self):
        m = self.reporter.metrics()
        return {lbl["name"]: (lbl["state"], lbl["reason"])
                for lbl, _ in harness.samples(m, "status_reporter_vmi_report_state") if lbl["namespace"] == self.ns}

    def test_every_running_vmi_has_one_state_and_the_reporting_ones_their_health(self):
        rep, rep_uid = self.pod("vm-rep", sidecar=True)
        self.pod("vm-quiet", sidecar=True)
        self.pod("vm-opt", sidecar=False, labels={"guestmetrics.kubevirt.io/inject": "false"})
        self.pod("vm-skip", sidecar=False)
        # A VMI that is not running has no state.
        self.cluster.ok("POST", "/fixture/load", [{
            "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
            "metadata": {"name": "vm-pending", "namespace": self.ns},
            "status": {"phase": "Scheduling"}}])

        body = report(self.ns, "vm-rep", rep, rep_uid, "node-1")
        body["health"] = {"libvirtUp": True, "intervalSeconds": 2, "failedAttempts": 3, "lastError": "unreachable"}
        token = self.cluster.token(self.ns, rep)
        self.accept(body, token)

        want = {"vm-rep": ("reporting", "report_accepted"), "vm-quiet": ("silent", "never_reported"),
                "vm-opt": ("not_injected", "opted_out"), "vm-skip": ("not_injected", "webhook_skipped")}
        # vm-rep keeps reporting (every second, as a 2 s sidecar would) while vm-quiet goes silent.
        def settled():
            self.reporter.post_report(body, token)
            return self.states() == want
        wait_until(settled, SETTLE, lambda: f"states {want}, have {self.states()}", interval=1.0)

        m = self.reporter.metrics()
        vm = {"namespace": self.ns, "name": "vm-rep", "node": "node-1"}
        self.assertEqual(harness.sample(m, "status_reporter_sidecar_libvirt_up", **vm), 1)
        self.assertEqual(harness.sample(m, "status_reporter_sidecar_report_failures", error="unreachable", **vm), 3)
        self.assertEqual(harness.sample(m, "status_reporter_sidecar_guest_load_status", reason="ok", **vm), 1)
        # The counts are over every namespace; this one's four are among them.
        self.assertGreaterEqual(harness.sample(m, "status_reporter_vmis", state="not_injected", reason="opted_out"), 1)
        self.assertGreaterEqual(harness.sample(m, "status_reporter_vmis", state="silent", reason="never_reported"), 1)

        # Its sidecar stops: after one 2 s interval it is silent, and says it stopped.
        wait_until(lambda: self.states().get("vm-rep") == ("silent", "stopped_reporting"), SETTLE,
                   lambda: f"vm-rep silent/stopped_reporting, have {self.states()}")


class PruningModeTest(ReporterCase):
    """Stock KubeVirt: the VMI CRD prunes the VEP 156 status fields."""

    def test_pruned_status_falls_back_to_vmi_annotations(self):
        uid = self.cluster.launcher(self.ns, "vm-p", "virt-launcher-vm-p-x1", "node-1")
        mark = self.log_mark()
        self.accept(report(self.ns, "vm-p", "virt-launcher-vm-p-x1", uid, "node-1", cpu=10.0, memory=1.5),
                    self.cluster.token(self.ns, "virt-launcher-vm-p-x1"))
        self.wait_pod_ratios("virt-launcher-vm-p-x1", "10.0", "1.5")
        wanted = {CPU_ANNOTATION: "10.0", MEMORY_ANNOTATION: "1.5"}
        wait_until(lambda: {k: annotations(self.cluster.vmi(self.ns, "vm-p")).get(k) for k in wanted} == wanted,
                   SETTLE, "the ratios as VMI annotations")
        self.assertEqual(status_ratios(self.cluster.vmi(self.ns, "vm-p")), (None, None))
        m = self.reporter.metrics()
        self.assertEqual(harness.sample(m, "status_reporter_vmi_ratio_mode", mode="annotations"), 1)
        self.assertEqual(harness.sample(m, "status_reporter_vmi_ratio_mode", mode="status"), 0)

        # How it found out: a strict status patch the schema refused, then the annotations.
        vmi_writes = [(w["subresource"], w["code"], "fieldValidation=Strict" in w["query"])
                      for w in self.writes_since(mark) if w["resource"] == "virtualmachineinstances"]
        self.assertEqual(vmi_writes, [("status", 422, True), (None, 200, False)])

        # Once in annotation mode, the next VMI costs one write, not a doomed status patch first.
        uid2 = self.cluster.launcher(self.ns, "vm-q", "virt-launcher-vm-q-x1", "node-1")
        mark = self.log_mark()
        self.accept(report(self.ns, "vm-q", "virt-launcher-vm-q-x1", uid2, "node-1", cpu=4.0, memory=1.0),
                    self.cluster.token(self.ns, "virt-launcher-vm-q-x1"))
        self.wait_pod_ratios("virt-launcher-vm-q-x1", "4.0", "1.0")
        wait_until(lambda: annotations(self.cluster.vmi(self.ns, "vm-q")).get(CPU_ANNOTATION) == "4.0", SETTLE,
                   "vm-q's annotations")
        vmi_writes = [(w["subresource"], w["code"]) for w in self.writes_since(mark)
                      if w["resource"] == "virtualmachineinstances"]
        self.assertEqual(vmi_writes, [(None, 200)])


class LeaderFailoverTest(ReporterCase):
    fixture_args = ("--no-prune-vmi-status",)

    def lease_holder(self):
        lease = self.cluster.ok(
            "GET", f"/apis/coordination.k8s.io/v1/namespaces/{harness.LEASE_NAMESPACE}/leases/"
                   "kubevirt-guest-metrics-status-reporter")
        return lease["spec"].get("holderIdentity")

    def leader_label(self, pod):
        labels = self.cluster.pod(harness.LEASE_NAMESPACE, pod)["metadata"].get("labels") or {}
        return labels.get("guestmetrics.kubevirt.io/leader")

    def test_standby_does_not_serve_and_takes_over_when_the_leader_dies(self):
        # The standby's own pod, as in a cluster: the leader labels its pod so
        # that the chart's HTTPS Service reaches only the leader.
        self.cluster.ok("POST", f"/api/v1/namespaces/{harness.LEASE_NAMESPACE}/pods",
                        {"apiVersion": "v1", "kind": "Pod",
                         "metadata": {"name": "reporter-b", "namespace": harness.LEASE_NAMESPACE},
                         "spec": {"containers": [{"name": "status-reporter", "image": "x"}]}})
        standby = self.start_reporter("reporter-b")
        leader = self.reporter
        wait_until(lambda: standby.metric("status_reporter_caches_synced") == 1, SETTLE, "the standby to sync")
        self.assertEqual(self.lease_holder(), "reporter-a")
        self.assertTrue(leader.serving())
        # Ready means "synced, can take over" (rollouts and the PDB need it);
        # serving is the leader's alone.
        self.assertEqual(standby.get("/readyz")[0], 200, "a synced standby is Ready to take over")
        self.assertEqual(standby.metric("status_reporter_leader"), 0)
        self.assertIsNone(self.leader_label("reporter-b"), "a standby's pod is not selected by the HTTPS Service")

        uid = self.cluster.launcher(self.ns, "vm-l", "virt-launcher-vm-l-x1", "node-1")
        token = self.cluster.token(self.ns, "virt-launcher-vm-l-x1")
        mark = self.log_mark()
        status, answer = standby.post_report(report(self.ns, "vm-l", "virt-launcher-vm-l-x1", uid, "node-1"), token)
        self.assertEqual((status, answer["result"]), (503, "not_leader"), "a standby sends the sidecar elsewhere")
        self.assertEqual(self.writes_since(mark), [])

        self.accept(report(self.ns, "vm-l", "virt-launcher-vm-l-x1", uid, "node-1", cpu=10.0, memory=1.5), token,
                    reporter=leader)
        self.wait_vmi_status_ratios("vm-l", 10.0, 1.5)

        leader.kill()  # crashed: the Lease is not handed back
        wait_until(standby.is_leader, 15, "the standby to take over after the lease duration")
        self.assertEqual(self.lease_holder(), "reporter-b")
        wait_until(lambda: self.leader_label("reporter-b") == "true", 5, "the new leader to label its pod")

        # Nothing was lost: the record stays, and the new leader writes changes.
        self.assertEqual(status_ratios(self.cluster.vmi(self.ns, "vm-l")), (10.0, 1.5))
        self.accept(report(self.ns, "vm-l", "virt-launcher-vm-l-x1", uid, "node-1", cpu=12.0, memory=1.5), token,
                    reporter=standby)
        self.wait_vmi_status_ratios("vm-l", 12.0, 1.5)
        self.wait_pod_ratios("virt-launcher-vm-l-x1", "12.0", "1.5")

        # A graceful stop hands the Lease back, so the next replica leads at once.
        self.assertEqual(standby.stop(), 0)
        self.assertEqual(self.lease_holder(), "")
        self.assertIsNone(self.leader_label("reporter-b"), "a stopped leader takes its label off")
        successor = self.start_reporter("reporter-c")
        wait_until(successor.is_leader, 10, "a new replica to lead a released Lease")


class CommandLineAndShutdownTest(unittest.TestCase):
    """What an operator meets when the configuration or the API is wrong."""

    @classmethod
    def setUpClass(cls):
        cls.dir = harness.temp_dir("status-reporter-cli-")
        cls.cert, cls.key = harness.serving_certificate(cls.dir)
        cls.kubeconfig = harness.unreachable_kubeconfig(cls.dir)

    def run_reporter(self, *args):
        return subprocess.run([harness.STATUS_REPORTER, "--kubeconfig", self.kubeconfig, "--tls-cert-file", self.cert,
                               "--tls-key-file", self.key, "--https-address", "127.0.0.1:0",
                               "--metrics-address", "127.0.0.1:0", *args],
                              capture_output=True, text=True, timeout=20)

    def test_bad_leader_election_timing_fails_at_start_with_a_message(self):
        out = self.run_reporter("--leader-elect-lease-duration", "3", "--leader-elect-renew-deadline", "5")
        self.assertEqual(out.returncode, 1, out.stderr)
        self.assertIn("lease duration", out.stderr)
        out = self.run_reporter("--leader-elect-retry-period", "0")
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("--leader-elect-retry-period", out.stderr)

    def test_stops_promptly_while_the_api_is_unreachable(self):
        r = Reporter(self.kubeconfig, "reporter-lonely", self.dir, self.cert, self.key)
        self.addCleanup(r.kill)
        self.assertEqual(r.get("/healthz")[0], 200)
        self.assertEqual(r.get("/readyz")[0], 503, "never synced, never leading: not Ready")
        self.assertEqual(r.metric("status_reporter_caches_synced"), 0)
        started = time.monotonic()
        self.assertEqual(r.stop(timeout=10), 0)
        self.assertLess(time.monotonic() - started, 5, "SIGTERM ends it well within a pod's grace period")


    def test_a_renewed_certificate_is_served_without_a_restart(self):
        directory = harness.temp_dir("status-reporter-tls-")
        cert, key = harness.serving_certificate(directory)
        r = Reporter(self.kubeconfig, "reporter-tls", directory, cert, key)
        self.addCleanup(r.kill)

        def served():
            return ssl.PEM_cert_to_DER_cert(ssl.get_server_certificate(("127.0.0.1", r.https_port)))

        def on_disk():
            with open(cert) as f:
                return ssl.PEM_cert_to_DER_cert(f.read())

        first = on_disk()
        self.assertEqual(served(), first)

        # A broken renewal changes nothing: the last good pair stays served.
        # (The reporter looks at the files at most every 2 s: wait past that.)
        with open(cert + ".new", "w") as f:
            f.write("not a certificate\n")
        os.replace(cert + ".new", cert)
        time.sleep(2.5)
        self.assertEqual(served(), first, "a certificate that does not load is not served")
        self.assertEqual(served(), first)

        # A good renewal, written as the kubelet updates a Secret volume (whole files replaced).
        renewed_dir = harness.temp_dir("status-reporter-tls-renewed-")
        new_cert, new_key = harness.serving_certificate(renewed_dir)
        os.replace(new_key, key)
        os.replace(new_cert, cert)
        renewed = on_disk()
        self.assertNotEqual(renewed, first)
        wait_until(lambda: served() == renewed, 10, "the renewed certificate to be served")
        self.assertEqual(r.get("/healthz")[0], 200, "no restart")


if __name__ == "__main__":
    unittest.main(argv=harness.take_binary_args(sys.argv))
