"""Tests of the API-server fixture, run against a live instance over HTTPS.

Every test works in its own namespace, so tests do not see each other's
objects; faults and the request log are reset before each test."""

import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from schema import crd_has_ratio_fields  # noqa: E402  (the fixture's own module)
VMIS = "/apis/kubevirt.io/v1/namespaces/{ns}/virtualmachineinstances"
VMI_CRD = "virtualmachineinstances.kubevirt.io"
PODS = "/api/v1/namespaces/{ns}/pods"
LEASES = "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases"
MERGE = "application/merge-patch+json"
JSONPATCH = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
RATIO_PATCH = {"status": {"memory": {"guestCurrent": "2Gi", "memoryOvercommitRatio": "1.5"},
                          "currentCPUTopology": {"cores": 2, "cpuAllocationRatio": 10}}}
MEM_WARNING = '299 - "unknown field \\"status.memory.memoryOvercommitRatio\\""'
CPU_WARNING = '299 - "unknown field \\"status.currentCPUTopology.cpuAllocationRatio\\""'


class Fixture:
    """A fixture process and a client for it."""

    def __init__(self, *extra_args):
        self.dir = tempfile.mkdtemp(prefix="apiserver-fixture-")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "fixture.py"), "--port", "0",
             "--state-dir", self.dir, *extra_args],
            stdout=subprocess.DEVNULL, stderr=sys.stderr)
        ready = os.path.join(self.dir, "ready.json")
        deadline = time.monotonic() + 20
        while not os.path.exists(ready):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the fixture did not become ready")
            time.sleep(0.05)
        with open(ready) as f:
            info = json.load(f)
        self.port, self.token, self.kubeconfig = info["port"], info["token"], info["kubeconfig"]
        self.ssl = ssl.create_default_context(cafile=info["ca"])

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)

    def connect(self, timeout=10):
        return http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ssl,
                                           timeout=timeout)

    def call(self, method, path, body=None, token=None, ctype="application/json"):
        """(status, headers as a list of pairs, parsed JSON body)."""
        conn = self.connect()
        headers = {}
        if token is not False:
            headers["Authorization"] = f"Bearer {token or self.token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = ctype
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
        conn.close()
        return resp.status, resp.getheaders(), (json.loads(raw) if raw else None)

    def watch(self, path):
        return WatchStream(self, path)


class WatchStream:
    def __init__(self, fixture, path):
        self.conn = fixture.connect()
        self.conn.request("GET", path, headers={"Authorization": f"Bearer {fixture.token}"})
        self.resp = self.conn.getresponse()

    def next(self, timeout=5):
        """The next event, or None at the clean end of the stream."""
        self.conn.sock.settimeout(timeout)
        line = self.resp.readline()
        return json.loads(line) if line else None

    def close(self):
        self.conn.close()


def pod(name, labels=None, node="node-1", sa="launcher", **spec):
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels or {}},
            "spec": dict({"nodeName": node, "serviceAccountName": sa,
                          "containers": [{"name": "compute"}]}, **spec)}


def vmi(name, **meta):
    return {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
            "metadata": dict({"name": name}, **meta), "spec": {"domain": {"cpu": {"cores": 1}}}}


class FixtureTest(unittest.TestCase):
    fx = None

    @classmethod
    def setUpClass(cls):
        cls.fx = Fixture("--bookmark-interval", "0.3")

    @classmethod
    def tearDownClass(cls):
        cls.fx.stop()

    def setUp(self):
        self.ns = self._testMethodName.replace("_", "-")[:60].strip("-")
        self.admin("POST", "/fixture/faults/reset")
        self.admin("POST", "/fixture/requests/reset")
        self.admin("POST", "/fixture/pruning", {"enabled": True})
        self.admin("POST", "/fixture/version", {"version": "1.30.0"})

    # -- helpers ---------------------------------------------------------------

    def admin(self, method, path, body=None):
        status, _, data = self.fx.call(method, path, body)
        self.assertLess(status, 300, data)
        return data

    def ok(self, method, path, body=None, ctype="application/json", expect=(200, 201)):
        status, _, data = self.fx.call(method, path, body, ctype=ctype)
        self.assertIn(status, expect, data)
        return data

    def create_pod(self, name, **kw):
        return self.ok("POST", PODS.format(ns=self.ns), pod(name, **kw))

    def create_vmi(self, name, **meta):
        return self.ok("POST", VMIS.format(ns=self.ns), vmi(name, **meta))

    def assertStatus(self, response, code, reason, message=None):
        status, _, body = response
        self.assertEqual(status, code, body)
        self.assertEqual((body["kind"], body["apiVersion"], body["status"], body["code"],
                          body["reason"]), ("Status", "v1", "Failure", code, reason))
        if message is not None:
            self.assertEqual(body["message"], message)
        return body

    # -- authentication ------------------------------------------------------------

    def test_missing_or_bad_token_is_401_status(self):
        for token in (False, "not-a-token"):
            self.assertStatus(self.fx.call("GET", PODS.format(ns=self.ns), token=token),
                              401, "Unauthorized", "Unauthorized")
        self.assertStatus(self.fx.call("GET", "/fixture/requests", token=False),
                          401, "Unauthorized")

    def test_version_is_public(self):
        status, _, body = self.fx.call("GET", "/version", token=False)
        self.assertEqual((status, body["major"], body["minor"], body["gitVersion"]),
                         (200, "1", "30", "v1.30.0"))

    def test_kubeconfig_points_at_the_fixture(self):
        with open(self.fx.kubeconfig) as f:
            text = f.read()
        self.assertIn(f"server: https://127.0.0.1:{self.fx.port}", text)
        self.assertIn(f"token: {self.fx.token}", text)

    # -- CRUD ----------------------------------------------------------------------

    def test_create_sets_system_fields(self):
        p = self.create_pod("p1")
        meta = p["metadata"]
        self.assertTrue(meta["uid"] and meta["creationTimestamp"].endswith("Z"))
        self.assertIsInstance(meta["resourceVersion"], str)
        self.assertNotIn("generation", meta)  # pods (v1.26) have none
        self.assertEqual(p["status"], {"phase": "Pending", "qosClass": "BestEffort"})
        v = self.create_vmi("v1")
        self.assertEqual(v["metadata"]["generation"], 1)
        self.assertGreater(int(v["metadata"]["resourceVersion"]),
                           int(meta["resourceVersion"]))
        got = self.ok("GET", PODS.format(ns=self.ns) + "/p1")
        self.assertEqual(got, p)

    def test_create_errors(self):
        self.create_pod("p1")
        body = self.assertStatus(self.fx.call("POST", PODS.format(ns=self.ns), pod("p1")),
                                 409, "AlreadyExists", 'pods "p1" already exists')
        self.assertEqual(body["details"], {"name": "p1", "kind": "pods"})
        self.assertStatus(self.fx.call("POST", PODS.format(ns=self.ns), pod("Bad_Name")),
                          422, "Invalid")
        other = pod("p2")
        other["metadata"]["namespace"] = "elsewhere"
        self.assertStatus(self.fx.call("POST", PODS.format(ns=self.ns), other),
                          400, "BadRequest")
        with_rv = pod("p3")
        with_rv["metadata"]["resourceVersion"] = "5"
        self.assertStatus(self.fx.call("POST", PODS.format(ns=self.ns), with_rv),
                          500, "InternalError")
        generated = pod("")
        generated["metadata"] = {"generateName": "virt-launcher-"}
        name = self.ok("POST", PODS.format(ns=self.ns), generated)["metadata"]["name"]
        self.assertRegex(name, r"^virt-launcher-[a-z0-9]{5}$")
        self.assertStatus(self.fx.call("GET", VMIS.format(ns=self.ns) + "/nope"), 404,
                          "NotFound", 'virtualmachineinstances.kubevirt.io "nope" not found')

    def test_update_optimistic_concurrency(self):
        p = self.create_pod("p1")
        stale = json.loads(json.dumps(p))
        p["metadata"]["labels"] = {"a": "1"}
        updated = self.ok("PUT", PODS.format(ns=self.ns) + "/p1", p)
        self.assertNotEqual(updated["metadata"]["resourceVersion"],
                            p["metadata"]["resourceVersion"])
        stale["metadata"]["labels"] = {"a": "2"}
        body = self.assertStatus(
            self.fx.call("PUT", PODS.format(ns=self.ns) + "/p1", stale), 409, "Conflict",
            'Operation cannot be fulfilled on pods "p1": the object has been modified; '
            "please apply your changes to the latest version and try again")
        self.assertEqual(body["details"], {"name": "p1", "kind": "pods"})
        # Without a resourceVersion the update is unconditional.
        del stale["metadata"]["resourceVersion"]
        self.assertEqual(self.ok("PUT", PODS.format(ns=self.ns) + "/p1", stale)
                         ["metadata"]["labels"], {"a": "2"})

    def test_no_op_write_is_not_a_write(self):
        p = self.create_pod("p1", labels={"a": "1"})
        again = self.ok("PATCH", PODS.format(ns=self.ns) + "/p1",
                        {"metadata": {"labels": {"a": "1"}}}, MERGE)
        self.assertEqual(again["metadata"]["resourceVersion"], p["metadata"]["resourceVersion"])

    def test_merge_patch_rfc7386(self):
        self.create_pod("p1", labels={"a": "1", "b": "2"})
        got = self.ok("PATCH", PODS.format(ns=self.ns) + "/p1",
                      {"metadata": {"labels": {"a": None, "c": "3"},
                                    "annotations": {"x": "y"}}}, MERGE)
        self.assertEqual(got["metadata"]["labels"], {"b": "2", "c": "3"})
        self.assertEqual(got["metadata"]["annotations"], {"x": "y"})
        got = self.ok("PATCH", PODS.format(ns=self.ns) + "/p1",
                      {"metadata": {"annotations": {"z": "1"}}}, STRATEGIC)
        self.assertEqual(got["metadata"]["annotations"], {"x": "y", "z": "1"})

    def test_strategic_merge_patch_is_415_for_custom_resources(self):
        self.create_vmi("v1")
        body = self.assertStatus(self.fx.call("PATCH", VMIS.format(ns=self.ns) + "/v1",
                                              {"metadata": {"labels": {"a": "b"}}},
                                              ctype=STRATEGIC), 415, "UnsupportedMediaType")
        self.assertIn("application/merge-patch+json", body["message"])
        self.assertNotIn("strategic", body["message"])

    def test_json_patch_rfc6902(self):
        self.create_vmi("v1", annotations={"keep": "1"})
        path = VMIS.format(ns=self.ns) + "/v1"
        got = self.ok("PATCH", path, [
            {"op": "test", "path": "/metadata/annotations/keep", "value": "1"},
            {"op": "add", "path": "/metadata/annotations/kubevirt.io~1ratio", "value": "2"},
            {"op": "copy", "from": "/metadata/annotations/keep", "path": "/metadata/labels"},
            {"op": "remove", "path": "/metadata/labels"},
            {"op": "replace", "path": "/spec/domain/cpu/cores", "value": 2}], JSONPATCH)
        self.assertEqual(got["metadata"]["annotations"], {"keep": "1", "kubevirt.io/ratio": "2"})
        self.assertEqual(got["metadata"]["generation"], 2)  # spec changed
        body = self.assertStatus(self.fx.call("PATCH", path, [
            {"op": "test", "path": "/metadata/annotations/keep", "value": "other"},
            {"op": "add", "path": "/metadata/annotations/x", "value": "y"}], ctype=JSONPATCH),
            422, "Invalid")
        self.assertIn("test failed", body["details"]["causes"][0]["message"])
        self.assertNotIn("x", self.ok("GET", path)["metadata"]["annotations"])

    def test_patch_with_stale_resource_version_conflicts(self):
        v = self.create_vmi("v1")
        self.ok("PATCH", VMIS.format(ns=self.ns) + "/v1",
                {"metadata": {"labels": {"a": "1"}}}, MERGE)
        self.assertStatus(self.fx.call(
            "PATCH", VMIS.format(ns=self.ns) + "/v1",
            {"metadata": {"resourceVersion": v["metadata"]["resourceVersion"],
                          "labels": {"a": "2"}}}, ctype=MERGE), 409, "Conflict")

    def test_delete(self):
        self.create_pod("unscheduled", node="")
        gone = self.ok("DELETE", PODS.format(ns=self.ns) + "/unscheduled")
        self.assertEqual(gone["kind"], "Pod")  # pods answer with the object
        self.create_vmi("v1")
        status = self.ok("DELETE", VMIS.format(ns=self.ns) + "/v1")
        self.assertEqual((status["kind"], status["status"], status["details"]["name"]),
                         ("Status", "Success", "v1"))
        self.assertStatus(self.fx.call("DELETE", VMIS.format(ns=self.ns) + "/v1"), 404,
                          "NotFound")
        # Finalizers hold the object until the last one is removed.
        self.create_vmi("v2", finalizers=["kubevirt.io/foregroundDeleteVirtualMachine"])
        held = self.ok("DELETE", VMIS.format(ns=self.ns) + "/v2")
        self.assertIn("deletionTimestamp", held["metadata"])
        self.ok("PATCH", VMIS.format(ns=self.ns) + "/v2", {"metadata": {"finalizers": None}},
                MERGE)
        self.assertStatus(self.fx.call("GET", VMIS.format(ns=self.ns) + "/v2"), 404,
                          "NotFound")

    def test_running_pod_deletion_is_graceful(self):
        p = self.create_pod("p1")
        w = self.fx.watch(PODS.format(ns=self.ns) +
                          f"?watch=1&resourceVersion={p['metadata']['resourceVersion']}")
        answered = self.ok("DELETE", PODS.format(ns=self.ns) + "/p1")
        self.assertEqual(answered["metadata"]["deletionGracePeriodSeconds"], 30)
        first, second = w.next(), w.next()
        w.close()
        self.assertEqual((first["type"], second["type"]), ("MODIFIED", "DELETED"))
        self.assertIn("deletionTimestamp", first["object"]["metadata"])

    # -- status subresource and pruning -------------------------------------------

    def test_vmi_status_subresource_separation(self):
        path = VMIS.format(ns=self.ns) + "/v1"
        created = self.ok("POST", VMIS.format(ns=self.ns),
                          dict(vmi("v1"), status={"phase": "Running"}))
        self.assertNotIn("status", created)  # create cannot set status
        got = self.ok("PATCH", path + "/status",
                      {"metadata": {"labels": {"ignored": "1"}}, "spec": {"x": 1},
                       "status": {"phase": "Running", "nodeName": "node-1"}}, MERGE)
        self.assertEqual(got["status"], {"phase": "Running", "nodeName": "node-1"})
        self.assertNotIn("labels", got["metadata"])
        self.assertEqual((got["spec"], got["metadata"]["generation"]),
                         (created["spec"], 1))
        got = self.ok("PATCH", path, {"status": {"phase": "Failed"},
                                      "metadata": {"labels": {"a": "1"}}}, MERGE)
        self.assertEqual((got["status"]["phase"], got["metadata"]["labels"]),
                         ("Running", {"a": "1"}))
        self.assertEqual(got["metadata"]["generation"], 1)  # metadata is not spec

    def test_pod_status_subresource_keeps_spec(self):
        self.create_pod("p1")
        got = self.ok("PATCH", PODS.format(ns=self.ns) + "/p1/status",
                      {"spec": {"nodeName": "elsewhere"}, "status": {"phase": "Running"},
                       "metadata": {"annotations": {"a": "1"}}}, MERGE)
        self.assertEqual(got["spec"]["nodeName"], "node-1")
        self.assertEqual(got["status"], {"phase": "Running", "qosClass": "BestEffort"})
        self.assertEqual(got["metadata"]["annotations"], {"a": "1"})
        got = self.ok("PATCH", PODS.format(ns=self.ns) + "/p1",
                      {"status": {"phase": "Failed"}}, MERGE)
        self.assertEqual(got["status"]["phase"], "Running")

    def test_pruning_drops_ratio_fields_with_warnings(self):
        self.create_vmi("v1")
        status, headers, body = self.fx.call("PATCH", VMIS.format(ns=self.ns) + "/v1/status",
                                             RATIO_PATCH, ctype=MERGE)
        self.assertEqual(status, 200)
        self.assertEqual([v for k, v in headers if k == "Warning"], [CPU_WARNING, MEM_WARNING])
        self.assertEqual(body["status"], {"memory": {"guestCurrent": "2Gi"},
                                          "currentCPUTopology": {"cores": 2}})
        self.assertEqual(self.ok("GET", VMIS.format(ns=self.ns) + "/v1")["status"],
                         body["status"])
        _, headers, _ = self.fx.call("PATCH", VMIS.format(ns=self.ns) +
                                     "/v1/status?fieldValidation=Ignore", RATIO_PATCH,
                                     ctype=MERGE)
        self.assertNotIn("Warning", [k for k, _ in headers])

    def test_pruning_strict_is_422_and_changes_nothing(self):
        before = self.create_vmi("v1")
        body = self.assertStatus(
            self.fx.call("PATCH", VMIS.format(ns=self.ns) + "/v1/status?fieldValidation=Strict",
                         {"status": {"memory": {"memoryOvercommitRatio": "1.5"}}}, ctype=MERGE),
            422, "Invalid")
        self.assertTrue(body["message"].endswith(
            'strict decoding error: unknown field "status.memory.memoryOvercommitRatio"'),
            body["message"])
        self.assertEqual(self.ok("GET", VMIS.format(ns=self.ns) + "/v1"), before)

    def test_pruning_off_keeps_ratio_fields_and_switching_back_prunes(self):
        self.create_vmi("v1")
        self.admin("POST", "/fixture/pruning", {"enabled": False})
        status, headers, body = self.fx.call(
            "PATCH", VMIS.format(ns=self.ns) + "/v1/status?fieldValidation=Strict",
            RATIO_PATCH, ctype=MERGE)
        self.assertEqual(status, 200, body)
        self.assertNotIn("Warning", [k for k, _ in headers])
        self.assertEqual(body["status"]["memory"]["memoryOvercommitRatio"], "1.5")
        self.assertEqual(body["status"]["currentCPUTopology"]["cpuAllocationRatio"], 10)
        self.admin("POST", "/fixture/pruning", {"enabled": True})
        self.assertEqual(self.ok("GET", VMIS.format(ns=self.ns) + "/v1")["status"],
                         {"memory": {"guestCurrent": "2Gi"}, "currentCPUTopology": {"cores": 2}})

    def test_vmi_crd_is_served_and_its_schema_decides_the_pruning(self):
        crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
        listed = self.ok("GET", crds + "?fieldSelector=metadata.name%3D" + VMI_CRD)
        self.assertEqual([i["metadata"]["name"] for i in listed["items"]], [VMI_CRD])
        crd = self.ok("GET", f"{crds}/{VMI_CRD}")
        memory = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"][
            "status"]["properties"]["memory"]["properties"]
        self.assertNotIn("memoryOvercommitRatio", memory)
        self.assertEqual(self.fx.call("GET", f"/apis/apiextensions.k8s.io/v1/namespaces/x/"
                                             f"customresourcedefinitions/{VMI_CRD}")[0], 404)
        # A client updates the CRD (a KubeVirt upgrade): the ratio fields are kept from then on.
        self.create_vmi("v1")
        gen = crd["metadata"]["generation"]
        for group, field in (("memory", "memoryOvercommitRatio"),
                             ("currentCPUTopology", "cpuAllocationRatio")):
            crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"][
                "properties"][group]["properties"][field] = {"type": "number"}
        crd = self.ok("PUT", f"{crds}/{VMI_CRD}", crd)
        self.assertEqual(crd["metadata"]["generation"], gen + 1)
        self.assertEqual(self.admin("GET", "/fixture/pruning"), {"enabled": False})
        status, _, body = self.fx.call("PATCH", VMIS.format(ns=self.ns) +
                                       "/v1/status?fieldValidation=Strict", RATIO_PATCH,
                                       ctype=MERGE)
        self.assertEqual(status, 200, body)
        self.assertEqual(body["status"]["memory"]["memoryOvercommitRatio"], "1.5")

    def test_vmi_crd_update_ends_vmi_watches_and_old_versions_are_expired(self):
        # As a real server after a CRD update: the resource's watch cache
        # restarts, open watches end, a resume from before answers 410.
        rv = self.create_vmi("v1")["metadata"]["resourceVersion"]
        vmi_watch = self.fx.watch(VMIS.format(ns=self.ns) + f"?watch=1&resourceVersion={rv}")
        pod_watch = self.fx.watch(PODS.format(ns=self.ns) + "?watch=1")
        crd_watch = self.fx.watch("/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
                                  "?watch=1&fieldSelector=metadata.name%3D" + VMI_CRD)
        self.assertEqual(crd_watch.next()["type"], "ADDED")
        self.admin("POST", "/fixture/pruning", {"enabled": False})  # updates the CRD
        self.assertIsNone(vmi_watch.next())  # the stream ends
        vmi_watch.close()
        event = crd_watch.next()
        self.assertEqual(event["type"], "MODIFIED")
        self.assertTrue(crd_has_ratio_fields(event["object"]))
        crd_watch.close()
        resumed = self.fx.watch(VMIS.format(ns=self.ns) + f"?watch=1&resourceVersion={rv}")
        event = resumed.next()
        self.assertIsNone(resumed.next())
        resumed.close()
        self.assertEqual((event["type"], event["object"]["code"], event["object"]["reason"]),
                         ("ERROR", 410, "Expired"))
        self.assertRegex(event["object"]["message"], rf"^too old resource version: {rv} \(\d+\)$")
        # Other resources are untouched, and the relist-then-watch way back works.
        self.create_pod("p1")
        self.assertEqual(pod_watch.next()["type"], "ADDED")
        pod_watch.close()
        listed = self.ok("GET", VMIS.format(ns=self.ns))
        w = self.fx.watch(VMIS.format(ns=self.ns) +
                          f"?watch=1&resourceVersion={listed['metadata']['resourceVersion']}")
        self.ok("PATCH", VMIS.format(ns=self.ns) + "/v1", {"metadata": {"labels": {"a": "b"}}},
                MERGE)
        self.assertEqual(w.next()["type"], "MODIFIED")
        w.close()
        # Setting the same schema again is no change: no restart.
        self.admin("POST", "/fixture/pruning", {"enabled": False})

    def test_metadata_and_known_status_fields_are_never_pruned(self):
        self.create_vmi("v1", annotations={"kubevirt-guest-metrics/ratio": "1.5"})
        status = {"phase": "Running", "activePods": {"uid-1": "node-1"},
                  "migrationState": {"sourcePod": "a", "targetPod": "b", "completed": True},
                  "conditions": [{"type": "Ready", "status": "True", "bogus": 1}]}
        _, headers, got = self.fx.call("PATCH", VMIS.format(ns=self.ns) + "/v1/status",
                                       {"status": status}, ctype=MERGE)
        self.assertEqual([v for k, v in headers if k == "Warning"],
                         ['299 - "unknown field \\"status.conditions[0].bogus\\""'])
        del status["conditions"][0]["bogus"]
        self.assertEqual(got["status"], status)
        self.assertEqual(got["metadata"]["annotations"], {"kubevirt-guest-metrics/ratio": "1.5"})

    # -- list ----------------------------------------------------------------------

    def test_list_label_and_field_selectors(self):
        self.create_pod("a", labels={"app": "x", "tier": "1"})
        self.create_pod("b", labels={"app": "y"})
        self.create_pod("c", labels={})
        self.ok("PATCH", PODS.format(ns=self.ns) + "/c/status", {"status": {"phase": "Running"}},
                MERGE)
        cases = {"app=x": ["a"], "app==x": ["a"], "app!=x": ["b", "c"],
                 "app in (x, y)": ["a", "b"], "app notin (x)": ["b", "c"], "app": ["a", "b"],
                 "!app": ["c"], "app,tier=1": ["a"], "tier>0": ["a"]}
        for selector, names in cases.items():
            items = self.ok("GET", PODS.format(ns=self.ns) + "?labelSelector=" +
                            selector.replace(" ", "%20"))["items"]
            self.assertEqual([i["metadata"]["name"] for i in items], names, selector)
        for selector, names in {"status.phase=Running": ["c"], "status.phase!=Running": ["a", "b"],
                                "metadata.name=b": ["b"]}.items():
            items = self.ok("GET", PODS.format(ns=self.ns) + "?fieldSelector=" + selector)["items"]
            self.assertEqual([i["metadata"]["name"] for i in items], names, selector)
        self.assertStatus(self.fx.call("GET", VMIS.format(ns=self.ns) +
                                       "?fieldSelector=status.phase=Running"),
                          400, "BadRequest", "field label not supported: status.phase")
        self.assertStatus(self.fx.call("GET", PODS.format(ns=self.ns) + "?labelSelector=a%20in"),
                          400, "BadRequest")

    def test_list_shapes(self):
        self.create_pod("p1")
        self.create_vmi("v1")
        pods = self.ok("GET", PODS.format(ns=self.ns))
        self.assertEqual((pods["kind"], pods["apiVersion"]), ("PodList", "v1"))
        self.assertNotIn("kind", pods["items"][0])  # typed list items carry no kind
        vmis = self.ok("GET", VMIS.format(ns=self.ns))
        self.assertEqual(vmis["kind"], "VirtualMachineInstanceList")
        self.assertEqual(vmis["items"][0]["kind"], "VirtualMachineInstance")
        every = self.ok("GET", "/apis/kubevirt.io/v1/virtualmachineinstances")
        self.assertIn(f"{self.ns}/v1", [f'{i["metadata"]["namespace"]}/{i["metadata"]["name"]}'
                                        for i in every["items"]])

    def test_paging_serves_one_consistent_snapshot(self):
        for i in range(5):
            self.create_pod(f"p{i}")
        first = self.ok("GET", PODS.format(ns=self.ns) + "?limit=2")
        self.assertEqual([i["metadata"]["name"] for i in first["items"]], ["p0", "p1"])
        self.assertEqual(first["metadata"]["remainingItemCount"], 3)
        # Changes after the first page do not show in the later pages.
        self.ok("DELETE", PODS.format(ns=self.ns) + "/p3?gracePeriodSeconds=0")
        self.create_pod("p5")
        names, token = [], first["metadata"]["continue"]
        while token:
            page = self.ok("GET", PODS.format(ns=self.ns) + f"?limit=2&continue={token}")
            self.assertEqual(page["metadata"]["resourceVersion"],
                             first["metadata"]["resourceVersion"])
            names += [i["metadata"]["name"] for i in page["items"]]
            token = page["metadata"].get("continue")
        self.assertEqual(names, ["p2", "p3", "p4"])

    def test_continue_after_compaction_is_410_with_a_token(self):
        for i in range(3):
            self.create_pod(f"p{i}")
        first = self.ok("GET", PODS.format(ns=self.ns) + "?limit=1")
        self.create_pod("p3")
        self.admin("POST", "/fixture/compact")
        status, _, body = self.fx.call(
            "GET", PODS.format(ns=self.ns) + f"?limit=1&continue={first['metadata']['continue']}")
        self.assertEqual((status, body["reason"], body["code"]), (410, "Expired", 410))
        self.assertTrue(body["message"].startswith("The provided continue parameter is too old"))
        rest = self.ok("GET", PODS.format(ns=self.ns) +
                       f"?continue={body['metadata']['continue']}")
        self.assertEqual([i["metadata"]["name"] for i in rest["items"]], ["p1", "p2", "p3"])

    def test_list_resource_version_semantics(self):
        p = self.create_pod("p0")
        self.create_pod("p1")
        rv0 = p["metadata"]["resourceVersion"]
        # "0": any version, from the watch cache, which ignores limit.
        self.assertEqual(len(self.ok("GET", PODS.format(ns=self.ns) +
                                     "?resourceVersion=0&limit=1")["items"]), 2)
        # rv with limit is Exact: the list as it was at rv0.
        old = self.ok("GET", PODS.format(ns=self.ns) + f"?resourceVersion={rv0}&limit=5")
        self.assertEqual(([i["metadata"]["name"] for i in old["items"]],
                          old["metadata"]["resourceVersion"]), (["p0"], rv0))
        # Without limit it is NotOlderThan: the current list.
        self.assertEqual(len(self.ok("GET", PODS.format(ns=self.ns) +
                                     f"?resourceVersion={rv0}")["items"]), 2)
        self.assertStatus(self.fx.call("GET", PODS.format(ns=self.ns) +
                                       "?resourceVersion=99999999"), 504, "Timeout")
        self.admin("POST", "/fixture/compact")
        self.assertStatus(self.fx.call(
            "GET", PODS.format(ns=self.ns) + f"?resourceVersion={rv0}&resourceVersionMatch=Exact"),
            410, "Expired", "The resourceVersion for the provided list is too old.")

    # -- watch ---------------------------------------------------------------------

    def test_watch_initial_state_then_changes(self):
        self.create_pod("p0")
        w = self.fx.watch(PODS.format(ns=self.ns) + "?watch=true")
        self.assertEqual(w.next()["type"], "ADDED")
        self.create_pod("p1")
        self.ok("PATCH", PODS.format(ns=self.ns) + "/p1", {"metadata": {"labels": {"a": "b"}}},
                MERGE)
        deleted = self.ok("DELETE", PODS.format(ns=self.ns) + "/p1?gracePeriodSeconds=0")
        events = [w.next() for _ in range(3)]
        w.close()
        self.assertEqual([e["type"] for e in events], ["ADDED", "MODIFIED", "DELETED"])
        self.assertEqual(events[0]["object"]["kind"], "Pod")
        self.assertEqual(events[2]["object"]["metadata"]["resourceVersion"],
                         deleted["metadata"]["resourceVersion"])

    def test_watch_replays_from_resource_version(self):
        start = self.create_vmi("v0")["metadata"]["resourceVersion"]
        self.create_vmi("v1")
        self.ok("PATCH", VMIS.format(ns=self.ns) + "/v0/status", {"status": {"phase": "Running"}},
                MERGE)
        w = self.fx.watch(VMIS.format(ns=self.ns) + f"?watch=1&resourceVersion={start}")
        events = [w.next() for _ in range(2)]
        w.close()
        self.assertEqual([(e["type"], e["object"]["metadata"]["name"]) for e in events],
                         [("ADDED", "v1"), ("MODIFIED", "v0")])

    def test_watch_label_selector_transitions(self):
        rv = self.create_pod("p0", labels={"app": "x"})["metadata"]["resourceVersion"]
        w = self.fx.watch(PODS.format(ns=self.ns) +
                          f"?watch=1&resourceVersion={rv}&labelSelector=app%3Dx")
        path = PODS.format(ns=self.ns) + "/p0"
        self.ok("PATCH", path, {"metadata": {"labels": {"app": "y"}}}, MERGE)
        self.ok("PATCH", path, {"metadata": {"labels": {"app": "x"}}}, MERGE)
        events = [w.next() for _ in range(2)]
        w.close()
        self.assertEqual([e["type"] for e in events], ["DELETED", "ADDED"])

    def test_watch_bookmarks(self):
        rv = self.create_vmi("v0")["metadata"]["resourceVersion"]
        w = self.fx.watch(VMIS.format(ns=self.ns) +
                          f"?watch=1&resourceVersion={rv}&allowWatchBookmarks=true")
        event = w.next(timeout=3)
        w.close()
        self.assertEqual(event["type"], "BOOKMARK")
        self.assertEqual(event["object"]["kind"], "VirtualMachineInstance")
        self.assertGreaterEqual(int(event["object"]["metadata"]["resourceVersion"]), int(rv))
        plain = self.fx.watch(VMIS.format(ns=self.ns) + f"?watch=1&resourceVersion={rv}")
        with self.assertRaises(TimeoutError):
            plain.next(timeout=1)  # no bookmarks unless asked for
        plain.close()

    def test_watch_from_compacted_version_is_expired_error_event(self):
        rv = self.create_pod("p0")["metadata"]["resourceVersion"]
        self.create_pod("p1")
        self.admin("POST", "/fixture/compact")
        w = self.fx.watch(PODS.format(ns=self.ns) + f"?watch=1&resourceVersion={rv}")
        self.assertEqual(w.resp.status, 200)  # an ERROR event, not an HTTP error
        event = w.next()
        self.assertIsNone(w.next())
        w.close()
        self.assertEqual(event["type"], "ERROR")
        self.assertEqual((event["object"]["code"], event["object"]["reason"]), (410, "Expired"))
        self.assertRegex(event["object"]["message"], rf"^too old resource version: {rv} \(\d+\)$")

    def test_watch_timeout_ends_cleanly(self):
        w = self.fx.watch(PODS.format(ns=self.ns) + "?watch=1&timeoutSeconds=1")
        self.assertIsNone(w.next(timeout=5))
        w.close()

    def raw_watch_bytes(self, action):
        """The raw response to a watch while ACTION runs: http.client hides
        whether a chunked body ended with its terminating chunk."""
        sock = self.fx.ssl.wrap_socket(socket.create_connection(
            ("127.0.0.1", self.fx.port), timeout=5), server_hostname="127.0.0.1")
        sock.sendall(f"GET {PODS.format(ns=self.ns)}?watch=1 HTTP/1.1\r\nHost: x\r\n"
                     f"Authorization: Bearer {self.fx.token}\r\n\r\n".encode())
        data = sock.recv(65536)
        action()
        try:  # until EOF, or the end of the body on a kept-alive connection
            while not data.endswith(b"0\r\n\r\n") and (chunk := sock.recv(65536)):
                data += chunk
        except (ssl.SSLError, ConnectionError):
            pass
        sock.close()
        return data

    def test_drop_watches(self):
        cut = self.raw_watch_bytes(lambda: self.assertGreaterEqual(
            self.admin("POST", "/fixture/drop-watches")["dropped"], 1))
        self.assertTrue(cut.startswith(b"HTTP/1.1 200"))
        self.assertFalse(cut.endswith(b"0\r\n\r\n"))  # cut off, like a crashed server
        ended = self.raw_watch_bytes(
            lambda: self.admin("POST", "/fixture/drop-watches", {"graceful": True}))
        self.assertTrue(ended.endswith(b"0\r\n\r\n"))

    def test_bounded_history_expires_old_watches(self):
        small = Fixture("--history-size", "3")
        try:
            path = "/api/v1/namespaces/h/pods"
            status, _, first = small.call("POST", path, pod("p0"))
            self.assertEqual(status, 201)
            for i in range(1, 8):
                small.call("POST", path, pod(f"p{i}"))
            w = small.watch(path + f"?watch=1&resourceVersion={first['metadata']['resourceVersion']}")
            self.assertEqual(w.next()["object"]["reason"], "Expired")
            w.close()
        finally:
            small.stop()

    def test_seed_file_and_no_prune_flag(self):
        seed = os.path.join(tempfile.mkdtemp(prefix="seed-"), "seed.json")
        v = vmi("v1", namespace="s")
        v["status"] = {"memory": {"memoryOvercommitRatio": "1.5"}}
        with open(seed, "w") as f:
            json.dump({"items": [v, pod("p1")]}, f)
        other = Fixture("--seed", seed, "--no-prune-vmi-status")
        try:
            _, _, got = other.call("GET", VMIS.format(ns="s") + "/v1")
            self.assertEqual(got["status"], v["status"])
            self.assertEqual(other.call("GET", PODS.format(ns="default") + "/p1")[0], 200)
        finally:
            other.stop()
            shutil.rmtree(os.path.dirname(seed))

    # -- pod validation (pod_validation.py) ------------------------------------------

    def assertInvalidPod(self, response, name, causes):
        """422 Invalid for Pod NAME with exactly CAUSES [(field, reason, message)]."""
        body = self.assertStatus(response, 422, "Invalid")
        texts = [f"{f}: {m}" for f, _, m in causes]
        joined = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
        self.assertEqual(body["message"], f'Pod "{name}" is invalid: {joined}')
        self.assertEqual(body["details"]["kind"], "Pod")
        self.assertEqual(body["details"]["name"], name)
        self.assertEqual([(c["field"], c["reason"], c["message"]) for c in body["details"]["causes"]],
                         list(causes))
        return body

    def test_pod_with_duplicate_volume_names_is_invalid(self):
        p = pod("p1", volumes=[{"name": "run", "emptyDir": {}}, {"name": "run", "emptyDir": {}}])
        self.assertInvalidPod(self.fx.call("POST", PODS.format(ns=self.ns), p), "p1", [
            ("spec.volumes[1].name", "FieldValueDuplicate", 'Duplicate value: "run"')])
        self.assertEqual(self.fx.call("GET", PODS.format(ns=self.ns) + "/p1")[0], 404)
        # generateName: the message names the generated pod, as the real server's.
        p["metadata"] = {"generateName": "virt-launcher-"}
        body = self.assertStatus(self.fx.call("POST", PODS.format(ns=self.ns), p), 422, "Invalid")
        self.assertRegex(body["details"]["name"], r"^virt-launcher-[a-z0-9]{5}$")

    def test_container_names_are_unique_across_containers_and_init_containers(self):
        p = pod("p1", initContainers=[{"name": "setup"}, {"name": "compute"}, {"name": "setup"}])
        p["spec"]["containers"].append({"name": "compute"})
        self.assertInvalidPod(self.fx.call("POST", PODS.format(ns=self.ns), p), "p1", [
            ("spec.containers[1].name", "FieldValueDuplicate", 'Duplicate value: "compute"'),
            ("spec.initContainers[1].name", "FieldValueDuplicate", 'Duplicate value: "compute"'),
            ("spec.initContainers[2].name", "FieldValueDuplicate", 'Duplicate value: "setup"')])
        # Ephemeral containers cannot come with the pod, and share the names.
        p = pod("p1", ephemeralContainers=[{"name": "compute"}])
        self.assertInvalidPod(self.fx.call("POST", PODS.format(ns=self.ns), p), "p1", [
            ("spec.ephemeralContainers[0].name", "FieldValueDuplicate", 'Duplicate value: "compute"'),
            ("spec.ephemeralContainers", "FieldValueForbidden", "Forbidden: cannot be set on create")])

    def test_a_mount_needs_its_volume(self):
        p = pod("p1", initContainers=[{"name": "s", "volumeMounts": [{"name": "gone", "mountPath": "/x"}]}])
        self.assertInvalidPod(self.fx.call("POST", PODS.format(ns=self.ns), p), "p1", [
            ("spec.initContainers[0].volumeMounts[0].name", "FieldValueNotFound", 'Not found: "gone"')])

    def test_probes_only_on_restartable_init_containers(self):
        probe = {"exec": {"command": ["true"]}, "periodSeconds": 10}
        plain = pod("p1", initContainers=[{"name": "s", "readinessProbe": probe, "livenessProbe": probe}])
        self.assertInvalidPod(self.fx.call("POST", PODS.format(ns=self.ns), plain), "p1", [
            ("spec.initContainers[0].livenessProbe", "FieldValueForbidden",
             "Forbidden: may not be set for init containers without restartPolicy=Always"),
            ("spec.initContainers[0].readinessProbe", "FieldValueForbidden",
             "Forbidden: may not be set for init containers without restartPolicy=Always")])
        never = pod("p1", initContainers=[{"name": "s", "restartPolicy": "Never"}])
        self.assertInvalidPod(self.fx.call("POST", PODS.format(ns=self.ns), never), "p1", [
            ("spec.initContainers[0].restartPolicy", "FieldValueNotSupported",
             'Unsupported value: "Never": supported values: "Always"')])
        regular = pod("p1")
        regular["spec"]["containers"][0]["restartPolicy"] = "Always"
        self.assertInvalidPod(self.fx.call("POST", PODS.format(ns=self.ns), regular), "p1", [
            ("spec.containers[0].restartPolicy", "FieldValueForbidden",
             "Forbidden: may not be set for non-init containers")])
        # A native sidecar (1.29+) may have them, and keeps its restartPolicy.
        sidecar = pod("p1", initContainers=[{"name": "s", "restartPolicy": "Always", "readinessProbe": probe}])
        status, headers, body = self.fx.call("POST", PODS.format(ns=self.ns), sidecar)
        self.assertEqual(status, 201, body)
        self.assertEqual(body["spec"]["initContainers"][0]["restartPolicy"], "Always")
        self.assertNotIn("Warning", dict(headers))

    def test_updates_are_validated_too(self):
        self.create_pod("p1", volumes=[{"name": "a", "emptyDir": {}}])
        patch = [{"op": "add", "path": "/spec/volumes/-", "value": {"name": "a", "emptyDir": {}}}]
        self.assertInvalidPod(self.fx.call("PATCH", PODS.format(ns=self.ns) + "/p1", patch, ctype=JSONPATCH),
                              "p1", [("spec.volumes[1].name", "FieldValueDuplicate", 'Duplicate value: "a"')])
        got = self.ok("GET", PODS.format(ns=self.ns) + "/p1")
        got["spec"]["volumes"].append({"name": "a", "emptyDir": {}})
        self.assertStatus(self.fx.call("PUT", PODS.format(ns=self.ns) + "/p1", got), 422, "Invalid")
        self.assertEqual(len(self.ok("GET", PODS.format(ns=self.ns) + "/p1")["spec"]["volumes"]), 1)
        # The status subresource keeps the stored spec: nothing to refuse there.
        self.ok("PATCH", PODS.format(ns=self.ns) + "/p1/status", {"status": {"phase": "Running"}}, MERGE)

    def test_before_1_29_a_native_sidecar_with_probes_is_refused(self):
        probe = {"exec": {"command": ["true"]}}
        sidecar = pod("p1", initContainers=[{"name": "x"}, {"name": "s", "restartPolicy": "Always",
                                                            "readinessProbe": probe}])
        # 1.26: the field does not exist yet, the decoder drops it with a warning.
        self.assertEqual(self.admin("POST", "/fixture/version", {"version": "1.26"})["gitVersion"], "v1.26.0")
        status, _, body = self.fx.call("GET", "/version", token=False)
        self.assertEqual((status, body["major"], body["minor"]), (200, "1", "26"))
        status, headers, body = self.fx.call("POST", PODS.format(ns=self.ns), sidecar)
        self.assertInvalidPod((status, headers, body), "p1", [
            ("spec.initContainers[1].readinessProbe", "FieldValueForbidden",
             "Forbidden: may not be set for init containers without restartPolicy=Always")])
        self.assertIn(("Warning", '299 - "unknown field \\"spec.initContainers[1].restartPolicy\\""'), headers)
        status, _, body = self.fx.call("POST", PODS.format(ns=self.ns) + "?fieldValidation=Strict", sidecar)
        self.assertEqual(status, 400, body)
        self.assertIn('strict decoding error: unknown field "spec.initContainers[1].restartPolicy"', body["message"])
        # Without probes it is created as a plain init container: it would block the pod's start.
        del sidecar["spec"]["initContainers"][1]["readinessProbe"]
        created = self.ok("POST", PODS.format(ns=self.ns), sidecar)
        self.assertNotIn("restartPolicy", created["spec"]["initContainers"][1])
        # 1.28: the field exists, the SidecarContainers gate is off by default: dropped silently.
        self.admin("POST", "/fixture/version", {"version": "v1.28.3-gke.100"})
        sidecar["spec"]["initContainers"][1]["livenessProbe"] = probe
        status, headers, body = self.fx.call("POST", PODS.format(ns=self.ns), dict(sidecar, metadata={"name": "p2"}))
        self.assertInvalidPod((status, headers, body), "p2", [
            ("spec.initContainers[1].livenessProbe", "FieldValueForbidden",
             "Forbidden: may not be set for init containers without restartPolicy=Always")])
        self.assertNotIn("Warning", dict(headers))
        self.assertEqual(self.fx.call("GET", "/version", token=False)[2]["gitVersion"], "v1.28.3-gke.100")
        self.assertStatus(self.fx.call("POST", "/fixture/version", {"version": "1.x"}), 400, "BadRequest")

    def test_fault_on_version(self):
        self.admin("POST", "/fixture/faults", {"resource": "version", "code": 503, "count": 1})
        self.assertStatus(self.fx.call("GET", "/version", token=False), 503, "ServiceUnavailable")
        self.assertEqual(self.fx.call("GET", "/version", token=False)[0], 200)
        log = [(r["verb"], r["resource"], r["path"], r["code"]) for r in self.admin("GET", "/fixture/requests")["requests"]]
        self.assertEqual(log, [("get", "version", "/version", 503), ("get", "version", "/version", 200)])

    def test_server_version_flag(self):
        other = Fixture("--server-version", "1.26")
        try:
            status, _, body = other.call("GET", "/version", token=False)
            self.assertEqual((status, body["major"], body["minor"], body["gitVersion"]), (200, "1", "26", "v1.26.0"))
        finally:
            other.stop()
        bad = subprocess.run([sys.executable, os.path.join(HERE, "fixture.py"), "--state-dir",
                              tempfile.mkdtemp(prefix="apiserver-fixture-"), "--server-version", "one"],
                             capture_output=True, text=True, timeout=20)
        self.assertEqual(bad.returncode, 2)
        self.assertIn("--server-version: not a Kubernetes version", bad.stderr)

    # -- TokenReview ---------------------------------------------------------------

    def issue(self, **kw):
        spec = dict({"namespace": self.ns, "serviceAccount": "launcher", "podName": "p1",
                     "audiences": ["guest-metrics"]}, **kw)
        return self.fx.call("POST", "/fixture/tokens", spec)

    def review(self, token, audiences=("guest-metrics",)):
        status, _, body = self.fx.call("POST", "/apis/authentication.k8s.io/v1/tokenreviews", {
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
            "spec": {"token": token, "audiences": list(audiences)}})
        self.assertEqual(status, 201, body)
        self.assertEqual(body["kind"], "TokenReview")
        return body["status"]

    def test_tokenreview_of_pod_bound_token(self):
        p = self.create_pod("p1")
        status, _, issued = self.issue(podUID=p["metadata"]["uid"])
        self.assertEqual(status, 201, issued)
        review = self.review(issued["token"])
        self.assertTrue(review["authenticated"])
        self.assertEqual(review["audiences"], ["guest-metrics"])
        user = review["user"]
        self.assertEqual(user["username"], f"system:serviceaccount:{self.ns}:launcher")
        self.assertTrue(user["uid"])
        self.assertIn("system:authenticated", user["groups"])
        self.assertEqual(user["extra"], {"authentication.kubernetes.io/pod-name": ["p1"],
                                         "authentication.kubernetes.io/pod-uid":
                                             [p["metadata"]["uid"]]})

    def test_tokenreview_rejections(self):
        self.create_pod("p1")
        token = self.issue()[2]["token"]
        wrong = self.review(token, ["someone-else"])
        self.assertNotIn("authenticated", wrong)
        self.assertIn('token audiences ["guest-metrics"] is invalid for the target audiences '
                      '["someone-else"]', wrong["error"])
        self.assertIn("error", self.review("garbage"))
        expired = self.review(self.issue(expirationSeconds=-120)[2]["token"])
        self.assertIn("Token has expired.", expired["error"])
        # A token dies with its pod, even if a pod of that name comes back.
        self.ok("DELETE", PODS.format(ns=self.ns) + "/p1?gracePeriodSeconds=0")
        self.create_pod("p1")
        self.assertIn("does not match claim", self.review(token)["error"])

    def test_tokens_bind_only_to_the_pods_own_service_account(self):
        self.create_pod("p1", sa="launcher")
        self.assertStatus(self.issue(serviceAccount="other"), 400, "BadRequest",
                          'cannot bind token for serviceaccount "other" to pod running with '
                          "different serviceaccount name.")
        self.assertStatus(self.issue(podName="missing"), 404, "NotFound")

    def test_service_account_tokens_authenticate_api_calls_only(self):
        self.create_pod("p1")
        token = self.issue(audiences=None)[2]["token"]  # API server audience
        status, _, _ = self.fx.call("GET", PODS.format(ns=self.ns), token=token)
        self.assertEqual(status, 200)
        self.assertStatus(self.fx.call("GET", "/fixture/requests", token=token), 403, "Forbidden")

    # -- leases --------------------------------------------------------------------

    def test_leases_for_leader_election(self):
        path = LEASES.format(ns=self.ns)
        lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                 "metadata": {"name": "status-reporter"},
                 "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}}
        created = self.ok("POST", path, lease)
        self.assertStatus(self.fx.call("POST", path, lease), 409, "AlreadyExists")
        mine = dict(created, spec=dict(created["spec"], holderIdentity="b"))
        self.ok("PUT", path + "/status-reporter", mine)
        theirs = dict(created, spec=dict(created["spec"], holderIdentity="c"))
        self.assertStatus(self.fx.call("PUT", path + "/status-reporter", theirs), 409, "Conflict")
        self.assertEqual(self.ok("GET", path + "/status-reporter")["spec"]["holderIdentity"], "b")
        # PUT may create a Lease.
        other = dict(lease, metadata={"name": "other"})
        status, _, _ = self.fx.call("PUT", path + "/other", other)
        self.assertEqual(status, 201)

    # -- faults and the request log --------------------------------------------------

    def test_fault_429_with_retry_after(self):
        self.admin("POST", "/fixture/faults", {"verb": "patch", "resource": "pods", "count": 2,
                                               "code": 429, "retryAfterSeconds": 3})
        self.create_pod("p1")
        for _ in range(2):
            status, headers, body = self.fx.call("PATCH", PODS.format(ns=self.ns) + "/p1",
                                                 {"metadata": {"labels": {"a": "b"}}},
                                                 ctype=MERGE)
            self.assertEqual((status, dict(headers)["Retry-After"], body["reason"],
                              body["details"]["retryAfterSeconds"]),
                             (429, "3", "TooManyRequests", 3))
        self.ok("PATCH", PODS.format(ns=self.ns) + "/p1", {"metadata": {"labels": {"a": "b"}}},
                MERGE)

    def test_fault_500_409_and_path_match(self):
        self.create_vmi("v1")
        self.admin("POST", "/fixture/faults", {"faults": [
            {"path": r"/virtualmachineinstances/v1/status$", "code": 409},
            {"method": "GET", "resource": "virtualmachineinstances", "code": 500}]})
        self.assertStatus(self.fx.call("PATCH", VMIS.format(ns=self.ns) + "/v1/status",
                                       {"status": {}}, ctype=MERGE), 409, "Conflict")
        self.assertStatus(self.fx.call("GET", VMIS.format(ns=self.ns) + "/v1"), 500,
                          "InternalError")
        self.assertEqual(self.admin("GET", "/fixture/faults")["faults"], [])
        self.ok("GET", VMIS.format(ns=self.ns) + "/v1")

    def test_fault_on_tokenreview(self):
        self.create_pod("p1")
        token = self.issue()[2]["token"]
        self.admin("POST", "/fixture/faults", {"resource": "tokenreviews", "code": 503})
        self.assertStatus(self.fx.call("POST", "/apis/authentication.k8s.io/v1/tokenreviews", {
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
            "spec": {"token": token, "audiences": ["guest-metrics"]}}), 503, "ServiceUnavailable")
        self.assertTrue(self.review(token)["authenticated"], "the fault was used up")

    def test_fault_delay(self):
        self.admin("POST", "/fixture/faults", {"verb": "list", "delaySeconds": 0.5})
        start = time.monotonic()
        self.ok("GET", PODS.format(ns=self.ns))
        self.assertGreaterEqual(time.monotonic() - start, 0.5)

    def test_fault_answer_delay_commits_before_answering(self):
        self.create_pod("p1")
        self.assertStatus(self.fx.call("POST", "/fixture/faults",
                                       {"resource": "pods", "code": 500,
                                        "answerDelaySeconds": 1}), 400, "BadRequest")
        self.admin("POST", "/fixture/faults", {"verb": "patch", "answerDelaySeconds": 0.6})
        start = time.monotonic()
        answer = []
        patch = threading.Thread(target=lambda: answer.append(self.fx.call(
            "PATCH", PODS.format(ns=self.ns) + "/p1", {"metadata": {"labels": {"a": "b"}}},
            ctype=MERGE)[0]))
        patch.start()
        # Committed and logged while the answer is still held back.
        deadline = time.monotonic() + 0.5
        while not [r for r in self.admin("GET", "/fixture/requests")["requests"]
                   if r["verb"] == "patch"] and time.monotonic() < deadline:
            time.sleep(0.02)
        logged = [r for r in self.admin("GET", "/fixture/requests")["requests"] if r["verb"] == "patch"]
        self.assertEqual([(r["code"], r["answerDelaySeconds"]) for r in logged], [(200, 0.6)])
        self.assertEqual(self.ok("GET", PODS.format(ns=self.ns) + "/p1")["metadata"]["labels"],
                         {"a": "b"})
        self.assertTrue(patch.is_alive(), "the answer is still held back")
        patch.join()
        self.assertEqual(answer, [200])
        self.assertGreaterEqual(time.monotonic() - start, 0.6)

    def test_request_log(self):
        self.create_pod("p1")
        self.ok("PATCH", PODS.format(ns=self.ns) + "/p1/status?fieldValidation=Strict",
                {"status": {"phase": "Running"}}, MERGE)
        self.fx.call("GET", PODS.format(ns=self.ns) + "/nope")
        log = self.admin("GET", "/fixture/requests")["requests"]
        self.assertEqual([(r["verb"], r["resource"], r["subresource"], r["name"], r["code"])
                          for r in log],
                         [("create", "pods", "", "", 201), ("patch", "pods", "status", "p1", 200),
                          ("get", "pods", "", "nope", 404)])
        self.assertEqual((log[1]["query"], log[1]["contentType"], log[1]["user"]),
                         ("fieldValidation=Strict", MERGE, "fixture-admin"))
        self.admin("POST", "/fixture/requests/reset")
        self.assertEqual(self.admin("GET", "/fixture/requests")["requests"], [])

    # -- seeding -------------------------------------------------------------------

    def test_load_many_objects(self):
        items = []
        for i in range(1000):
            p = pod(f"virt-launcher-vm{i}")
            p["metadata"]["namespace"] = self.ns
            p["status"] = {"phase": "Running"}
            v = vmi(f"vm{i}", namespace=self.ns)
            v["status"] = {"phase": "Running", "activePods": {f"uid-{i}": "node-1"},
                           "memory": {"memoryOvercommitRatio": "2"}}
            items += [p, v]
        start = time.monotonic()
        self.assertEqual(self.admin("POST", "/fixture/load", {"items": items})["loaded"], 2000)
        self.assertLess(time.monotonic() - start, 10)
        vmis = self.ok("GET", VMIS.format(ns=self.ns) + "?limit=500")
        self.assertEqual(vmis["metadata"]["remainingItemCount"], 500)
        self.assertEqual(vmis["items"][0]["status"],  # loaded status is kept, but pruned
                         {"phase": "Running", "activePods": {"uid-0": "node-1"}, "memory": {}})
        running = self.ok("GET", PODS.format(ns=self.ns) + "?fieldSelector=status.phase=Running")
        self.assertEqual(len(running["items"]), 1000)


if __name__ == "__main__":
    unittest.main()
