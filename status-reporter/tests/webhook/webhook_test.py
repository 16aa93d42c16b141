#!/usr/bin/env python3
"""Integration tests of the status-reporter's mutating webhook (POST /mutate).

Starts the API-server fixture (tests/apiserver) and the real status-reporter
binary against it, with an openssl-generated serving certificate, sends
admission.k8s.io/v1 AdmissionReviews to https://127.0.0.1:PORT/mutate as the
API server would, applies the JSONPatch that comes back and checks the pod
that results. The reporter authenticates to the fixture with a service-account
token of its own pod, so the fixture's request log tells its lookups apart.

Usage: webhook_test.py --reporter PATH [--guest-exporter PATH] [unittest args]
(also $STATUS_REPORTER / $GUEST_EXPORTER). Standard library and openssl only.
"""

import argparse
import base64
import copy
import datetime
import http.client
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "apiserver"))
from test_fixture import Fixture  # noqa: E402  (the fixture's own client)

REPORTER_BIN = os.environ.get("STATUS_REPORTER")
EXPORTER_BIN = os.environ.get("GUEST_EXPORTER")

REPORTER_NS = "gm-system"
REPORTER_POD = "status-reporter-0"
REPORTER_SA = "status-reporter"
REPORTER_USER = f"system:serviceaccount:{REPORTER_NS}:{REPORTER_SA}"
AUDIENCE = "gm-test-audience"
IMAGE = "registry.example/kubevirt-guest-metrics:test"
REPORTS_URL = "https://gm-status-reporter.gm-system.svc/v1/reports"
LEADER_LABEL = "guestmetrics.kubevirt.io/leader"
OPT_OUT_LABEL = "guestmetrics.kubevirt.io/inject"
SIDECAR = "guest-exporter"
# The guest's shares of the compute requests (gm::DeriveLauncherShape): the
# vCPUs' CPU request and the guest's memory request without overhead.
SHARES = ("GUEST_EXPORTER_CPU_REQUEST", "GUEST_EXPORTER_VMI_MEMORY_REQUEST")
# Raw inputs the webhook no longer passes: the sidecar's precedence would pick
# compute - overhead (wrong with hugepages or overcommitGuestOverhead) first.
RAW_INPUTS = ("GUEST_EXPORTER_MEMORY_REQUEST", "GUEST_EXPORTER_MEMORY_OVERHEAD",
              "GUEST_EXPORTER_CLUSTER_MEMORY_OVERCOMMIT")
Mi = 1024 * 1024

VMIS = "/apis/kubevirt.io/v1/namespaces/{ns}/virtualmachineinstances"
PODS = "/api/v1/namespaces/{ns}/pods"
KUBEVIRTS = "/apis/kubevirt.io/v1/namespaces/kubevirt/kubevirts"


# -- RFC 6902 JSON Patch ------------------------------------------------------------


class JsonPatchError(Exception):
    pass


def _tokens(pointer):
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise JsonPatchError(f"bad pointer {pointer!r}")
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def _index(container, token, for_add):
    if for_add and token == "-":
        return len(container)
    if not re.fullmatch(r"0|[1-9][0-9]*", token):
        raise JsonPatchError(f"bad array index {token!r}")
    i = int(token)
    if i > len(container) or (not for_add and i == len(container)):
        raise JsonPatchError(f"index {i} out of range")
    return i


def _parent(doc, pointer):
    tokens = _tokens(pointer)
    if not tokens:
        raise JsonPatchError("the root has no parent")
    node = doc
    for t in tokens[:-1]:
        if isinstance(node, list):
            node = node[_index(node, t, False)]
        elif isinstance(node, dict) and t in node:
            node = node[t]
        else:
            raise JsonPatchError(f"{pointer}: {t!r} does not exist")
    return node, tokens[-1]


def _get(doc, pointer):
    node = doc
    for t in _tokens(pointer):
        if isinstance(node, list):
            node = node[_index(node, t, False)]
        elif isinstance(node, dict) and t in node:
            node = node[t]
        else:
            raise JsonPatchError(f"{pointer} does not exist")
    return node


def _add(doc, pointer, value):
    if pointer == "":
        return value
    parent, key = _parent(doc, pointer)
    if isinstance(parent, list):
        parent.insert(_index(parent, key, True), value)
    elif isinstance(parent, dict):
        parent[key] = value
    else:
        raise JsonPatchError(f"{pointer}: parent is not a container")
    return doc


def _remove(doc, pointer):
    parent, key = _parent(doc, pointer)
    if isinstance(parent, list):
        del parent[_index(parent, key, False)]
    elif isinstance(parent, dict) and key in parent:
        del parent[key]
    else:
        raise JsonPatchError(f"{pointer} does not exist")
    return doc


def apply_json_patch(doc, patch):
    """A new document: `patch` (a list of RFC 6902 operations) applied to `doc`."""
    doc = copy.deepcopy(doc)
    if not isinstance(patch, list):
        raise JsonPatchError("a patch is a JSON array")
    for op in patch:
        kind, path = op.get("op"), op.get("path")
        if not isinstance(path, str):
            raise JsonPatchError(f"operation without a path: {op}")
        if kind == "add":
            doc = _add(doc, path, copy.deepcopy(op["value"]))
        elif kind == "remove":
            doc = _remove(doc, path)
        elif kind == "replace":
            _get(doc, path)
            doc = copy.deepcopy(op["value"]) if path == "" else _add(_remove(doc, path), path, copy.deepcopy(op["value"]))
        elif kind == "move":
            value = _get(doc, op["from"])
            doc = _add(_remove(doc, op["from"]), path, value)
        elif kind == "copy":
            doc = _add(doc, path, copy.deepcopy(_get(doc, op["from"])))
        elif kind == "test":
            if _get(doc, path) != op["value"]:
                raise JsonPatchError(f"test failed at {path}")
        else:
            raise JsonPatchError(f"unknown op {kind!r}")
    return doc


class JsonPatchHelperTest(unittest.TestCase):
    """The test helper itself, on RFC 6902's examples (appendix A)."""

    def test_rfc_examples(self):
        self.assertEqual(apply_json_patch({"foo": ["bar", "baz"]}, [{"op": "add", "path": "/foo/1", "value": "qux"}]),
                         {"foo": ["bar", "qux", "baz"]})
        self.assertEqual(apply_json_patch({"foo": [1]}, [{"op": "add", "path": "/foo/-", "value": 2}]), {"foo": [1, 2]})
        self.assertEqual(apply_json_patch({"baz": "qux", "foo": "bar"}, [{"op": "remove", "path": "/baz"}]), {"foo": "bar"})
        self.assertEqual(apply_json_patch({"baz": "qux"}, [{"op": "replace", "path": "/baz", "value": "boo"}]), {"baz": "boo"})
        self.assertEqual(apply_json_patch({"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}},
                                          [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}]),
                         {"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}})
        self.assertEqual(apply_json_patch({"a/b": {"m~n": 1}}, [{"op": "copy", "from": "/a~1b/m~0n", "path": "/c"}]),
                         {"a/b": {"m~n": 1}, "c": 1})
        original = {"foo": "bar"}
        for bad in ([{"op": "add", "path": "/baz/bat", "value": "qux"}], [{"op": "test", "path": "/foo", "value": "x"}],
                    [{"op": "remove", "path": "/nope"}], [{"op": "add", "path": "/foo/01", "value": 1}]):
            with self.assertRaises(JsonPatchError, msg=bad):
                apply_json_patch(original, bad)
        self.assertEqual(original, {"foo": "bar"})


# -- objects -----------------------------------------------------------------------


def launcher_pod(vmi, ns, uid="11111111-2222-3333-4444-555555555555", overhead=None, guaranteed=False,
                 labels=None, annotations=None, image="quay.io/kubevirt/virt-launcher:v1.3.0", cpu="200m"):
    """A virt-launcher pod as KubeVirt (v1.3 and on, non-root) renders it."""
    if guaranteed:
        compute_res = {"requests": {"cpu": "2", "memory": "2294Mi", "devices.kubevirt.io/kvm": "1"},
                       "limits": {"cpu": "2", "memory": "2294Mi", "devices.kubevirt.io/kvm": "1"}}
        init_res = {"requests": {"cpu": "10m", "memory": "40M"}, "limits": {"cpu": "10m", "memory": "40M"}}
    else:
        compute_res = {"requests": {"cpu": cpu, "memory": "2294Mi", "ephemeral-storage": "50M",
                                    "devices.kubevirt.io/kvm": "1", "devices.kubevirt.io/tun": "1"},
                       "limits": {"devices.kubevirt.io/kvm": "1", "devices.kubevirt.io/tun": "1"}}
        init_res = {"requests": {"cpu": "10m", "memory": "1M"}, "limits": {"cpu": "100m", "memory": "40M"}}
    ann = {"kubevirt.io/domain": vmi, "kubectl.kubernetes.io/default-container": "compute",
           "descheduler.alpha.kubernetes.io/request-evict-only": "",
           "post.hook.backup.velero.io/container": "compute",
           "post.hook.backup.velero.io/command": f'["/usr/bin/virt-freezer", "--unfreeze", "--name", "{vmi}", "--namespace", "{ns}"]'}
    if overhead:
        ann["kubevirt.io/memory-overhead-bytes"] = overhead
    ann.update(annotations or {})
    lab = {"kubevirt.io": "virt-launcher", "kubevirt.io/created-by": uid, "vm.kubevirt.io/name": f"{vmi}-host"}
    lab.update(labels or {})
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "generateName": f"virt-launcher-{vmi}-", "namespace": ns, "labels": lab, "annotations": ann,
            "ownerReferences": [{"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance", "name": vmi,
                                 "uid": uid, "controller": True, "blockOwnerDeletion": True}]},
        "spec": {
            "automountServiceAccountToken": False,
            "securityContext": {"runAsUser": 107, "runAsGroup": 107, "runAsNonRoot": True, "fsGroup": 107},
            "containers": [{
                "name": "compute", "image": image,
                "command": ["/usr/bin/virt-launcher-monitor", "--qemu-timeout", "321s", "--name", vmi, "--uid", uid,
                            "--namespace", ns, "--kubevirt-share-dir", "/var/run/kubevirt",
                            "--ephemeral-disk-dir", "/var/run/kubevirt-ephemeral-disks",
                            "--container-disk-dir", "/var/run/kubevirt/container-disks",
                            "--grace-period-seconds", "195", "--hook-sidecars", "0", "--ovmf-path", "/usr/share/OVMF"],
                "env": [{"name": "XDG_CACHE_HOME", "value": "/var/run/kubevirt-private"},
                        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                "resources": compute_res,
                "securityContext": {"runAsUser": 107, "runAsGroup": 107, "runAsNonRoot": True, "privileged": False,
                                    "allowPrivilegeEscalation": False,
                                    "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]}},
                "volumeMounts": [{"name": "private", "mountPath": "/var/run/kubevirt-private"},
                                 {"name": "public", "mountPath": "/var/run/kubevirt"},
                                 {"name": "ephemeral-disks", "mountPath": "/var/run/kubevirt-ephemeral-disks"},
                                 {"name": "container-disks", "mountPath": "/var/run/kubevirt/container-disks",
                                  "mountPropagation": "HostToContainer"},
                                 {"name": "libvirt-runtime", "mountPath": "/var/run/libvirt"},
                                 {"name": "sockets", "mountPath": "/var/run/kubevirt/sockets"},
                                 {"name": "hotplug-disks", "mountPath": "/var/run/kubevirt/hotplug-disks",
                                  "mountPropagation": "HostToContainer"}],
                "terminationMessagePolicy": "File"}],
            "initContainers": [
                {"name": "container-disk-binary", "image": "quay.io/kubevirt/virt-launcher:v1.3.0",
                 "command": ["/usr/bin/cp", "/usr/bin/container-disk", "/init/usr/bin/container-disk"],
                 "resources": init_res,
                 "volumeMounts": [{"name": "virt-bin-share-dir", "mountPath": "/init/usr/bin"}]},
                {"name": "volumecontainerdisk-init", "image": "quay.io/containerdisks/fedora:40",
                 "command": ["/usr/bin/container-disk"], "args": ["--no-op"],
                 "resources": init_res,
                 "volumeMounts": [{"name": "container-disks", "mountPath": "/var/run/kubevirt-ephemeral-disks/container-disk-data/" + uid},
                                  {"name": "virt-bin-share-dir", "mountPath": "/usr/bin"}]}],
            "volumes": [{"name": n, "emptyDir": {}} for n in
                        ("private", "public", "sockets", "virt-bin-share-dir", "libvirt-runtime", "ephemeral-disks",
                         "container-disks", "hotplug-disks")],
            "nodeSelector": {"kubevirt.io/schedulable": "true", "cpu-vendor.node.kubevirt.io/Intel": "true"},
            "readinessGates": [{"conditionType": "kubevirt.io/virtual-machine-unpaused"}],
            "hostname": f"{vmi}-host", "serviceAccountName": "default", "terminationGracePeriodSeconds": 210,
            "restartPolicy": "Never", "schedulerName": "default-scheduler",
        },
    }


def vmi_object(name, memory_request=None, **domain):
    resources = {"requests": {"memory": memory_request}} if memory_request else {}
    return {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance", "metadata": {"name": name},
            "spec": {"domain": {"cpu": {"cores": 2}, "memory": {"guest": "2Gi"}, "resources": resources,
                                "devices": {}, **domain}}}


def review(obj, uid="req-1", ns=None, operation="CREATE", kind=None, sub_resource=None):
    req = {"uid": uid, "kind": kind or {"group": "", "version": "v1", "kind": "Pod"},
           "resource": {"group": "", "version": "v1", "resource": "pods"},
           "requestKind": kind or {"group": "", "version": "v1", "kind": "Pod"},
           "requestResource": {"group": "", "version": "v1", "resource": "pods"},
           "namespace": ns or obj.get("metadata", {}).get("namespace", ""), "operation": operation,
           "userInfo": {"username": "system:serviceaccount:kubevirt:kubevirt-controller",
                        "groups": ["system:serviceaccounts", "system:authenticated"]},
           "object": obj, "oldObject": None, "dryRun": False,
           "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}}
    if sub_resource:
        req["subResource"] = sub_resource
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req}


def env_of(container):
    """name -> value, or 'fieldRef:PATH' for the downward API."""
    out = {}
    for e in container.get("env", []):
        out[e["name"]] = e["value"] if "value" in e else "fieldRef:" + e["valueFrom"]["fieldRef"]["fieldPath"]
    return out


def shares_of(env):
    """The guest's shares the sidecar got; it never gets a raw input."""
    raw = [k for k in RAW_INPUTS if k in env]
    assert not raw, f"raw inputs passed: {raw}"
    return {k: env[k] for k in SHARES if k in env}


def sidecar_of(pod):
    found = [c for c in pod["spec"].get("initContainers", []) if c["name"] == SIDECAR]
    assert len(found) == 1, f"expected one {SIDECAR} init container, found {len(found)}"
    return found[0]


# -- the processes -------------------------------------------------------------------


class Stack:
    """One API-server fixture and one status-reporter binary against it."""

    def __init__(self, name, fixture_args=(), reporter_args=(), faults=()):
        self.name = name
        self.reporter = None
        self.fx = Fixture("--bookmark-interval", "0.5", *fixture_args)
        unittest.addModuleCleanup(self.fx.stop)
        # The reporter's own pod, whose token it uses (the request log then names
        # it) and which it labels while it leads.
        self.api("POST", PODS.format(ns=REPORTER_NS),
                 {"apiVersion": "v1", "kind": "Pod",
                  "metadata": {"name": REPORTER_POD, "labels": {"app.kubernetes.io/component": "status-reporter"}},
                  "spec": {"serviceAccountName": REPORTER_SA, "nodeName": "node-0",
                           "containers": [{"name": "status-reporter", "image": IMAGE}]}})
        token = self.api("POST", "/fixture/tokens", {"namespace": REPORTER_NS, "serviceAccount": REPORTER_SA,
                                                      "podName": REPORTER_POD})["token"]
        with open(self.fx.kubeconfig) as f:
            kubeconfig = re.sub(r"token: .*", f"token: {token}", f.read())
        kubeconfig_path = os.path.join(Env.tmp, f"kubeconfig-{name}")
        with open(kubeconfig_path, "w") as f:
            f.write(kubeconfig)

        if faults:  # in place before the reporter's first request
            self.api("POST", "/fixture/faults", {"faults": list(faults)})
        self.log_path = os.path.join(Env.tmp, f"status-reporter-{name}.log")
        log = open(self.log_path, "w")
        self.reporter = subprocess.Popen(
            [REPORTER_BIN, "--kubeconfig", kubeconfig_path, "--namespace", REPORTER_NS, "--identity", REPORTER_POD,
             "--audience", AUDIENCE, "--https-address", "127.0.0.1:0", "--metrics-address", "127.0.0.1:0",
             "--tls-cert-file", Env.crt, "--tls-key-file", Env.key, "--sidecar-image", IMAGE,
             "--sidecar-reporter-url", REPORTS_URL, "--sidecar-ca-file", Env.crt, "--sidecar-interval", "60",
             "--sidecar-cpu", "15m", "--sidecar-memory", "30Mi", "--sidecar-token-expiration", "7200",
             "--lease-name", "gm-webhook-test", "--log-level", "debug", *reporter_args],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        unittest.addModuleCleanup(self.stop_reporter)

        deadline = time.monotonic() + 30
        while True:
            m = re.search(r"reports on https port (\d+), metrics on http port (\d+)", self.log())
            if m:
                self.port, self.http_port = int(m.group(1)), int(m.group(2))
                break
            if self.reporter.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"status-reporter did not start:\n{self.log()}")
            time.sleep(0.05)

    def stop_reporter(self):
        p, self.reporter = self.reporter, None
        if p is None:
            return
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except (OSError, TypeError):
            return ""

    def wait_for_log(self, pattern, timeout=20):
        deadline = time.monotonic() + timeout
        while True:
            m = re.search(pattern, self.log())
            if m:
                return m
            if time.monotonic() > deadline:
                raise AssertionError(f"no log line matching {pattern!r}:\n{self.log()[-3000:]}")
            time.sleep(0.05)

    def api(self, method, path, body=None, ctype="application/json", expect=(200, 201)):
        status, _, data = self.fx.call(method, path, body, ctype=ctype)
        if status not in expect:
            raise AssertionError(f"{method} {path}: {status} {data}")
        return data

    def metrics(self):
        """The reporter's /metrics as {'name{labels}': value}."""
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=10)
        try:
            conn.request("GET", "/metrics")
            text = conn.getresponse().read().decode()
        finally:
            conn.close()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                out[key] = float(value)
        return out


class Env:
    main = None  # the Stack of the fixture serving a server with native sidecars
    fx = None
    ssl = None
    ca_pem = None
    crt = key = None
    tmp = None


def _openssl(*args):
    subprocess.run(["openssl", *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=30)


def _reporter_log():
    return Env.main.log() if Env.main else ""


def setUpModule():
    if not REPORTER_BIN or not os.access(REPORTER_BIN, os.X_OK):
        raise unittest.SkipTest("give the status-reporter binary with --reporter or $STATUS_REPORTER")
    if not shutil.which("openssl"):
        raise unittest.SkipTest("openssl is needed")
    Env.tmp = tempfile.mkdtemp(prefix="gm-webhook-test-")
    unittest.addModuleCleanup(shutil.rmtree, Env.tmp, ignore_errors=True)

    # The serving certificate, as the chart's (EC P-256, SANs), for 127.0.0.1.
    Env.crt, Env.key = os.path.join(Env.tmp, "tls.crt"), os.path.join(Env.tmp, "tls.key")
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", Env.key,
             "-out", Env.crt, "-days", "1", "-subj", "/CN=status-reporter",
             "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost")
    with open(Env.crt) as f:
        Env.ca_pem = f.read()
    Env.ssl = ssl.create_default_context(cafile=Env.crt)

    Env.main = Stack("main")  # the fixture's default version: native sidecars
    Env.fx = Env.main.fx
    # The webhook injects once it has read the server's /version.
    Env.main.wait_for_log(r"the API server is v1\.30\.0: it has native sidecars")


def api(method, path, body=None, ctype="application/json", expect=(200, 201)):
    return Env.main.api(method, path, body, ctype, expect)


def admin(method, path, body=None):
    return api(method, path, body)


def post(path, body, raw=None, timeout=20, headers=None, stack=None):
    """(HTTP status, parsed body or raw text, seconds) of a POST to the reporter."""
    conn = http.client.HTTPSConnection("127.0.0.1", (stack or Env.main).port, context=Env.ssl, timeout=timeout)
    data = raw if raw is not None else json.dumps(body).encode()
    start = time.monotonic()
    try:
        conn.request("POST", path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        text = resp.read().decode()
        elapsed = time.monotonic() - start
    finally:
        conn.close()
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = text
    return resp.status, parsed, elapsed


# -- the tests -------------------------------------------------------------------------


class WebhookCalls:
    """Sends reviews to a Stack's reporter and checks what comes back."""

    def setUp(self):
        self.ns = ("wh-" + self._testMethodName[5:].replace("_", "-"))[:60].strip("-")
        self.on().api("POST", "/fixture/faults/reset")
        self.on().api("POST", "/fixture/requests/reset")
        self.set_kubevirt_cr(present=True, overcommit=None)

    def tearDown(self):
        self.on().api("POST", "/fixture/faults/reset")

    def run(self, result=None):
        # A failing test shows what the status-reporter said meanwhile.
        start = len(self.on().log())
        bad = (lambda r: len(r.failures) + len(r.errors)) if result is not None else (lambda r: 0)
        before = bad(result)
        out = super().run(result)
        if result is not None and bad(result) > before:
            sys.stderr.write(f"--- status-reporter log during {self.id()} ---\n{self.on().log()[start:][-6000:]}\n")
        return out

    # -- helpers --------------------------------------------------------------------

    stack = None  # Env.main unless a test class says otherwise

    def on(self):
        return self.stack or Env.main

    def set_kubevirt_cr(self, present, overcommit=None, version=None):
        """The cluster's one KubeVirt CR, with or without memoryOvercommit and
        status.observedKubeVirtVersion (written through its status subresource)."""
        self.on().api("DELETE", KUBEVIRTS + "/kubevirt", expect=(200, 404))
        if present:
            dev = {"memoryOvercommit": overcommit} if overcommit is not None else {}
            self.on().api("POST", KUBEVIRTS, {"apiVersion": "kubevirt.io/v1", "kind": "KubeVirt",
                                    "metadata": {"name": "kubevirt", "namespace": "kubevirt"},
                                    "spec": {"configuration": {"developerConfiguration": dev}}})
            if version:
                self.on().api("PATCH", KUBEVIRTS + "/kubevirt/status",
                              {"status": {"observedKubeVirtVersion": version}}, ctype="application/merge-patch+json")
        self.on().api("POST", "/fixture/requests/reset")

    def create_vmi(self, name, memory_request=None, **domain):
        self.on().api("POST", VMIS.format(ns=self.ns), vmi_object(name, memory_request, **domain))
        self.on().api("POST", "/fixture/requests/reset")

    # The webhook's two lookups for a launcher pod whose VMI exists.
    def both_lookups(self, vmi):
        return [("get", "virtualmachineinstances", self.ns, vmi, 200), ("list", "kubevirts", "", "", 200)]

    def lookups(self):
        """The reporter's requests that are not its informers' list/watch."""
        log = self.on().api("GET", "/fixture/requests")["requests"]
        return [(r["verb"], r["resource"], r["namespace"], r["name"], r["code"]) for r in log
                if r["user"] == REPORTER_USER and
                ((r["resource"] == "virtualmachineinstances" and r["name"]) or r["resource"] == "kubevirts")]


    def admit(self, obj, uid="req-1", query="?timeout=10s", **kw):
        """The AdmissionReview response for `obj`; checks the envelope."""
        status, body, elapsed = post("/mutate" + query, review(obj, uid=uid, **kw), stack=self.on())
        self.assertEqual(status, 200, body)
        self.assertEqual((body["apiVersion"], body["kind"]), ("admission.k8s.io/v1", "AdmissionReview"))
        resp = body["response"]
        self.assertEqual(resp["uid"], uid)
        self.assertIs(resp["allowed"], True)
        resp["_elapsed"] = elapsed
        return resp

    def mutate(self, pod, **kw):
        """(the pod after the webhook's patch, the patch, the response). The
        API server then creates that pod: it must accept it."""
        resp = self.admit(pod, **kw)
        self.assertEqual(resp.get("patchType"), "JSONPatch", resp)
        patch = json.loads(base64.b64decode(resp["patch"], validate=True))
        out = apply_json_patch(pod, patch)
        self.assert_creatable(out)
        return out, patch, resp

    def assert_creatable(self, pod):
        """The API server accepts POD (under a generated name, in this test's namespace)."""
        ns = self.ns
        obj = copy.deepcopy(pod)
        obj["metadata"] = dict(obj.get("metadata", {}), namespace=ns, generateName="created-")
        obj["metadata"].pop("name", None)
        status, headers, body = self.on().fx.call("POST", PODS.format(ns=ns), obj)
        self.assertEqual(status, 201, f"the API server refused the pod: {body}")
        self.assertNotIn("Warning", dict(headers))
        return body

    def assert_unchanged(self, obj, **kw):
        resp = self.admit(obj, **kw)
        self.assertNotIn("patch", resp)
        self.assertNotIn("patchType", resp)
        return resp

    def decisions(self):
        """status_reporter_admissions_total by decision."""
        prefix = 'status_reporter_admissions_total{decision="'
        return {k[len(prefix):-2]: v for k, v in self.on().metrics().items() if k.startswith(prefix)}

    def assert_counted(self, before, decision, n=1):
        after = self.decisions()
        self.assertEqual(after.get(decision, 0) - before.get(decision, 0), n,
                         f"{decision}: {before} -> {after}")


class WebhookTest(WebhookCalls, unittest.TestCase):
    # -- injection ----------------------------------------------------------------

    def test_injects_a_native_sidecar_and_leaves_compute_alone(self):
        self.create_vmi("vm-a", memory_request="2Gi")
        pod = launcher_pod("vm-a", self.ns, overhead="224395264")
        before = self.decisions()
        out, patch, _ = self.mutate(pod)
        self.assert_counted(before, "injected")
        self.assertEqual(self.on().metrics()["status_reporter_native_sidecars"], 1)

        # Only appends: nothing of the pod is replaced, moved or removed.
        self.assertEqual({op["op"] for op in patch}, {"add"})
        self.assertEqual(out["spec"]["containers"], pod["spec"]["containers"])
        self.assertEqual(out["spec"]["containers"][0]["name"], "compute")
        self.assertEqual(out["metadata"], pod["metadata"])
        self.assertEqual(set(out["spec"]), set(pod["spec"]))
        for key in set(pod["spec"]) - {"initContainers", "volumes"}:
            self.assertEqual(out["spec"][key], pod["spec"][key], key)
        inits = out["spec"]["initContainers"]
        self.assertEqual(inits[:-1], pod["spec"]["initContainers"])
        self.assertEqual(inits[-1]["name"], SIDECAR)
        self.assertEqual(out["spec"]["volumes"][:len(pod["spec"]["volumes"])], pod["spec"]["volumes"])

        c = sidecar_of(out)
        self.assertEqual(c["restartPolicy"], "Always")  # native sidecar
        self.assertEqual(c["image"], IMAGE)
        self.assertEqual(c["command"], ["/usr/local/bin/guest-exporter"])
        volumes = {v["name"]: v for v in out["spec"]["volumes"]}
        mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
        for m in c["volumeMounts"]:
            self.assertIn(m["name"], volumes, "every mount has its volume")
        self.assertEqual(mounts["/var/run/libvirt"]["name"], "libvirt-runtime")
        self.assertNotIn("readOnly", mounts["/var/run/libvirt"])  # the socket is written to

        # The projected, audience-bound token the reports carry.
        env = env_of(c)
        token_dir = os.path.dirname(env["GUEST_EXPORTER_TOKEN_FILE"])
        token_mount = mounts[token_dir]
        self.assertIs(token_mount["readOnly"], True)
        (source,) = volumes[token_mount["name"]]["projected"]["sources"]
        self.assertEqual(source["serviceAccountToken"], {
            "audience": AUDIENCE, "expirationSeconds": 7200,
            "path": os.path.basename(env["GUEST_EXPORTER_TOKEN_FILE"])})

        # Identity from the pod; the guest's shares from the compute container,
        # the overhead annotation, the VMI and the KubeVirt CR.
        self.assertEqual(env["GUEST_EXPORTER_VMI_NAME"], "vm-a")  # kubevirt.io/domain, not vm.kubevirt.io/name
        self.assertEqual(env["GUEST_EXPORTER_VMI_NAMESPACE"], "fieldRef:metadata.namespace")
        self.assertEqual(env["GUEST_EXPORTER_POD_NAME"], "fieldRef:metadata.name")
        self.assertEqual(env["GUEST_EXPORTER_POD_UID"], "fieldRef:metadata.uid")
        self.assertEqual(env["GUEST_EXPORTER_NODE_NAME"], "fieldRef:spec.nodeName")
        # 2 vCPUs at 100m; compute 2294Mi - overhead 224395264 bytes.
        self.assertEqual(shares_of(env), {"GUEST_EXPORTER_CPU_REQUEST": "200m",
                                          "GUEST_EXPORTER_VMI_MEMORY_REQUEST": str(2294 * Mi - 224395264)})
        self.assertEqual(self.lookups(), self.both_lookups("vm-a"))
        self.assertEqual(env["GUEST_EXPORTER_REPORTER_URL"], REPORTS_URL)
        self.assertEqual(env["GUEST_EXPORTER_REPORTER_CA_PEM"], Env.ca_pem)
        self.assertEqual(env["GUEST_EXPORTER_GUEST_INFO_INTERVAL"], "60")
        self.assertEqual(env["GUEST_EXPORTER_LISTEN_ADDRESS"], "")  # unix socket only
        self.assertEqual(env["GUEST_EXPORTER_LIBVIRT_URI"],
                         "qemu+unix:///session?socket=/var/run/libvirt/virtqemud-sock")

        # No probes: its readiness would gate the VMI's Ready condition, and an
        # exec of the libvirt-linked binary costs ~50 ms CPU per run. The
        # kubelet restarts it (restartPolicy Always) when its watchdog exits.
        socket_path = env["GUEST_EXPORTER_SOCKET"]
        self.assertIn(os.path.dirname(socket_path), mounts)
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            self.assertNotIn(probe, c)
        self.assertNotIn("ports", c)

        # Locked down, as the launcher's own user (it owns the libvirt socket).
        sc = c["securityContext"]
        self.assertEqual((sc["runAsUser"], sc["runAsGroup"], sc["runAsNonRoot"]), (107, 107, True))
        self.assertIs(sc["allowPrivilegeEscalation"], False)
        self.assertIs(sc["readOnlyRootFilesystem"], True)
        self.assertEqual(sc["capabilities"], {"drop": ["ALL"]})
        self.assertEqual(sc["seccompProfile"], {"type": "RuntimeDefault"})
        self.assertNotIn("privileged", sc)
        self.assertEqual(c["resources"], {"requests": {"cpu": "15m", "memory": "30Mi"}, "limits": {"memory": "30Mi"}})

        # The API server accepts the result, and it is still Burstable.
        created = api("POST", PODS.format(ns=self.ns), out)
        self.assertEqual(created["status"]["qosClass"], "Burstable")

    def test_memory_request_comes_from_the_vmi_when_the_pod_has_no_overhead_annotation(self):
        self.create_vmi("vm-b", memory_request="2Gi")
        out, _, _ = self.mutate(launcher_pod("vm-b", self.ns))
        env = env_of(sidecar_of(out))
        self.assertEqual(shares_of(env), {"GUEST_EXPORTER_CPU_REQUEST": "200m",
                                          "GUEST_EXPORTER_VMI_MEMORY_REQUEST": str(2048 * Mi)})
        # One GET of that VMI, one list of KubeVirt CRs, nothing else.
        self.assertEqual(self.lookups(), self.both_lookups("vm-b"))

    def test_memory_overcommit_comes_from_the_kubevirt_cr_when_the_vmi_sets_no_request(self):
        # KubeVirt v1.6.4+ leaves the VMI's memory request unset.
        self.create_vmi("vm-c")
        self.set_kubevirt_cr(present=True, overcommit=150, version="v1.7.0")
        pod = launcher_pod("vm-c", self.ns, image="quay.io/kubevirt/virt-launcher:v1.7.0")
        out, _, _ = self.mutate(pod)
        env = env_of(sidecar_of(out))
        # guest 2Gi x 100 / 150, in whole bytes
        self.assertEqual(shares_of(env)["GUEST_EXPORTER_VMI_MEMORY_REQUEST"], str(2048 * Mi * 100 // 150))
        self.assertEqual(self.lookups(), self.both_lookups("vm-c"))

        # A CR without memoryOvercommit: KubeVirt's default, 100.
        self.set_kubevirt_cr(present=True, overcommit=None, version="v1.7.0")
        out, _, _ = self.mutate(pod)
        self.assertEqual(shares_of(env_of(sidecar_of(out)))["GUEST_EXPORTER_VMI_MEMORY_REQUEST"], str(2048 * Mi))

        # No KubeVirt CR at all: no memory share rather than a guess; the CPU's
        # needs only the pod and the VMI.
        self.set_kubevirt_cr(present=False)
        out, _, _ = self.mutate(pod)
        self.assertEqual(shares_of(env_of(sidecar_of(out))), {"GUEST_EXPORTER_CPU_REQUEST": "200m"})

    def test_an_iothreads_vmi_gets_the_vcpus_share_of_the_cpu_request(self):
        # 2 vCPUs and a supplemental IOThread pool of 1: KubeVirt v1.5.2+
        # requests (2 + 1) / 10 = 300m. The vCPUs' share is 200m: ratio 10, not 6.67.
        self.create_vmi("vm-io", memory_request="2Gi", ioThreadsPolicy="supplementalPool",
                        ioThreads={"supplementalPoolThreadCount": 1})
        pod = launcher_pod("vm-io", self.ns, image="registry.example/kubevirt/virt-launcher@sha256:" + "0" * 64,
                           cpu="300m")
        self.set_kubevirt_cr(present=True, version="v1.5.2")
        out, _, _ = self.mutate(pod)
        self.assertEqual(shares_of(env_of(sidecar_of(out))), {"GUEST_EXPORTER_CPU_REQUEST": "200m",
                                                               "GUEST_EXPORTER_VMI_MEMORY_REQUEST": str(2048 * Mi)})
        self.assertEqual(self.lookups(), self.both_lookups("vm-io"))

        # No version anywhere (the image is a digest), but a CR: its
        # cpuAllocationRatio (KubeVirt's 10 when unset) tells the rules apart.
        self.set_kubevirt_cr(present=True)
        out, _, _ = self.mutate(pod)
        self.assertEqual(shares_of(env_of(sidecar_of(out)))["GUEST_EXPORTER_CPU_REQUEST"], "200m")

        # Nothing tells them apart: no CPU share, and the log says what to give.
        self.set_kubevirt_cr(present=False)
        before = self.decisions()
        out, _, _ = self.mutate(pod)
        self.assert_counted(before, "injected")
        self.assertEqual(shares_of(env_of(sidecar_of(out))), {"GUEST_EXPORTER_VMI_MEMORY_REQUEST": str(2048 * Mi)})
        self.on().wait_for_log(r"no CPU share: the KubeVirt version is unknown.*give the version or the "
                               r"cluster's cpuAllocationRatio")

    def test_guaranteed_pod_stays_guaranteed(self):
        pod = launcher_pod("vm-d", self.ns, overhead="224395264", guaranteed=True)
        self.assertEqual(api("POST", PODS.format(ns=self.ns), dict(pod, metadata=dict(
            pod["metadata"], generateName="before-")))["status"]["qosClass"], "Guaranteed")
        out, _, _ = self.mutate(pod)
        c = sidecar_of(out)
        self.assertEqual(c["resources"]["requests"], c["resources"]["limits"])
        self.assertEqual(c["resources"]["limits"], {"cpu": "15m", "memory": "30Mi"})
        # Every container, the sidecar included: requests == limits.
        for each in out["spec"]["containers"] + out["spec"]["initContainers"]:
            res = each["resources"]
            for r in ("cpu", "memory"):
                self.assertEqual(res["requests"][r], res["limits"][r], f"{each['name']} {r}")
        self.assertEqual(out["spec"]["containers"][0]["resources"], pod["spec"]["containers"][0]["resources"])
        created = api("POST", PODS.format(ns=self.ns), out)
        self.assertEqual(created["status"]["qosClass"], "Guaranteed")

    def test_second_pass_changes_nothing(self):
        out, _, _ = self.mutate(launcher_pod("vm-e", self.ns, overhead="224395264"))
        before = self.decisions()
        again = self.assert_unchanged(out, uid="req-2")
        self.assert_counted(before, "already_injected")
        self.assertEqual(again["uid"], "req-2")
        # The API server's own view of the pod (defaults, status) as well.
        stored = api("POST", PODS.format(ns=self.ns), out)
        self.assert_unchanged(stored, uid="req-3", ns=self.ns)
        self.assertEqual(len([c for c in stored["spec"]["initContainers"] if c["name"] == SIDECAR]), 1)

    def test_opt_out_label_leaves_the_pod_alone(self):
        self.create_vmi("vm-f", memory_request="2Gi")
        self.assert_unchanged(launcher_pod("vm-f", self.ns, labels={OPT_OUT_LABEL: "false"}))
        self.assertEqual(self.lookups(), [], "an opted-out pod costs no API call")
        # Any other value injects.
        out, _, _ = self.mutate(launcher_pod("vm-f", self.ns, labels={OPT_OUT_LABEL: "true"}))
        sidecar_of(out)

    def test_migration_target_pod_gets_the_same_sidecar(self):
        # KubeVirt renders the target from the same VMI, plus the migration's
        # label and annotation and the source's node constraints.
        self.create_vmi("vm-g", memory_request="2Gi")
        source = launcher_pod("vm-g", self.ns)
        target = launcher_pod("vm-g", self.ns, labels={"kubevirt.io/migrationJobUID": "7e7f0e3c-mig"},
                              annotations={"kubevirt.io/migrationJobName": "vm-g-migration"})
        target["spec"]["affinity"] = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
            "labelSelector": {"matchLabels": {"kubevirt.io/created-by": source["metadata"]["labels"]["kubevirt.io/created-by"]}},
            "topologyKey": "kubernetes.io/hostname"}]}}
        src_out, src_patch, _ = self.mutate(source, uid="src")
        tgt_out, tgt_patch, _ = self.mutate(target, uid="tgt")
        self.assertEqual(tgt_patch, src_patch)
        self.assertEqual(sidecar_of(tgt_out), sidecar_of(src_out))
        self.assertEqual(tgt_out["spec"]["containers"], target["spec"]["containers"])
        self.assertEqual(tgt_out["spec"]["affinity"], target["spec"]["affinity"])
        self.assertEqual(env_of(sidecar_of(tgt_out))["GUEST_EXPORTER_VMI_MEMORY_REQUEST"], str(2048 * Mi))

    def test_root_launcher_gets_the_system_uri(self):
        pod = launcher_pod("vm-h", self.ns, overhead="1")
        pod["spec"]["securityContext"] = {}
        del pod["spec"]["containers"][0]["securityContext"]["runAsUser"]
        del pod["spec"]["containers"][0]["securityContext"]["runAsGroup"]
        del pod["spec"]["containers"][0]["securityContext"]["runAsNonRoot"]
        out, _, _ = self.mutate(pod)
        c = sidecar_of(out)
        self.assertEqual(env_of(c)["GUEST_EXPORTER_LIBVIRT_URI"], "qemu:///system")
        self.assertNotIn("runAsNonRoot", c["securityContext"])
        self.assertEqual(c["securityContext"]["capabilities"], {"drop": ["ALL"]})

    def test_large_launcher_pod(self):
        # Many disks and networks make a launcher pod tens of KiB; the review
        # carries it whole.
        pod = launcher_pod("vm-i", self.ns, overhead="224395264", annotations={
            "k8s.v1.cni.cncf.io/network-status": json.dumps([{"name": f"net-{i}", "interface": f"pod{i:040x}",
                                                               "ips": [f"10.{i}.0.2"], "mac": "02:00:00:00:00:01"}
                                                              for i in range(100)])})
        for i in range(150):
            pod["spec"]["volumes"].append({"name": f"disk-{i}", "persistentVolumeClaim": {"claimName": f"data-{i:032x}"}})
            pod["spec"]["containers"][0]["volumeMounts"].append({"name": f"disk-{i}", "mountPath": f"/var/run/kubevirt-private/vmi-disks/disk-{i}"})
        self.assertGreater(len(json.dumps(review(pod))), 40 * 1024)  # the old limit was 16 KiB
        out, _, _ = self.mutate(pod)
        self.assertEqual(out["spec"]["containers"], pod["spec"]["containers"])
        sidecar_of(out)
        # Reports stay small: a declared oversized report is refused before it is read.
        status, body, _ = post("/v1/reports", None, raw=b" " * (64 * 1024))
        self.assertEqual(status, 413, body)

    # -- names it must not take ----------------------------------------------------------

    def test_volumes_named_like_ours_are_not_duplicated(self):
        # A pod may already have volumes named as the webhook names its own
        # (another injector, a user's template). A duplicate volume name makes
        # the API server refuse the pod, and with it the VM.
        pod = launcher_pod("vm-o", self.ns, overhead="1")
        for name in ("guest-exporter-run", "guest-metrics-token", "guest-exporter-run-1"):
            pod["spec"]["volumes"].append({"name": name, "emptyDir": {}})
        self.assert_creatable(pod)  # valid as it comes
        before = self.decisions()
        out, patch, _ = self.mutate(pod)  # and the API server accepts what comes out
        self.assert_counted(before, "injected")
        self.assertEqual({op["op"] for op in patch}, {"add"})
        n = len(pod["spec"]["volumes"])
        self.assertEqual(out["spec"]["volumes"][:n], pod["spec"]["volumes"])
        names = [v["name"] for v in out["spec"]["volumes"]]
        self.assertEqual(len(names), len(set(names)), names)
        # The sidecar mounts its own two volumes, never the pod's namesakes.
        ours = {v["name"]: v for v in out["spec"]["volumes"][n:]}
        self.assertEqual(len(ours), 2)
        c = sidecar_of(out)
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        token_dir = os.path.dirname(env_of(c)["GUEST_EXPORTER_TOKEN_FILE"])
        run_dir = os.path.dirname(env_of(c)["GUEST_EXPORTER_SOCKET"])
        self.assertIn("projected", ours[mounts[token_dir]])
        self.assertEqual(ours[mounts[run_dir]]["emptyDir"]["medium"], "Memory")
        self.assertEqual(mounts["/var/run/libvirt"], "libvirt-runtime")

    def test_a_container_named_like_ours_that_is_not_ours_is_left_alone(self):
        # The sidecar keeps its name (the PodMonitor and the docs find it by
        # it): a pod whose own container already has that name is admitted
        # unchanged, with the reason counted and logged.
        before = self.decisions()
        for where in ("containers", "initContainers"):
            with self.subTest(where):
                pod = launcher_pod("vm-p", self.ns, overhead="1")
                pod["spec"][where].append({"name": SIDECAR, "image": "example.org/someone-elses:1"})
                self.assert_creatable(pod)
                self.assert_unchanged(pod, uid=f"foreign-{where}")
        self.assert_counted(before, "name_conflict", 2)
        self.assert_counted(before, "already_injected", 0)
        self.assertIn("admission: name_conflict", self.on().log())

    # -- what it lets through unchanged ------------------------------------------------

    def test_pods_it_does_not_understand_are_allowed_unchanged(self):
        self.create_vmi("vm-j", memory_request="2Gi")
        cases = {}
        p = launcher_pod("vm-j", self.ns)
        p["metadata"]["labels"]["kubevirt.io"] = "virt-handler"
        cases["not a launcher"] = p
        p = launcher_pod("vm-j", self.ns)
        p["spec"]["volumes"] = [v for v in p["spec"]["volumes"] if v["name"] != "libvirt-runtime"]
        cases["no libvirt-runtime volume"] = p
        p = launcher_pod("vm-j", self.ns)
        p["spec"]["containers"].insert(0, {"name": "hook-sidecar-0", "image": "x"})
        cases["compute not first"] = p
        p = launcher_pod("vm-j", self.ns)
        del p["metadata"]["annotations"]["kubevirt.io/domain"]
        cases["no kubevirt.io/domain"] = p
        p = launcher_pod("vm-j", self.ns)
        p["spec"]["containers"] = []
        cases["no containers"] = p
        p = launcher_pod("vm-j", self.ns)
        p["spec"]["volumes"] = "libvirt-runtime"
        cases["volumes of the wrong type"] = p
        for what, pod in cases.items():
            with self.subTest(what):
                self.assert_unchanged(pod, uid=what.replace(" ", "-"))
        with self.subTest("UPDATE"):
            self.assert_unchanged(launcher_pod("vm-j", self.ns), operation="UPDATE")
        with self.subTest("not a Pod"):
            self.assert_unchanged({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "x"}},
                                  kind={"group": "", "version": "v1", "kind": "Binding"}, ns=self.ns)
        with self.subTest("a subresource"):
            self.assert_unchanged(launcher_pod("vm-j", self.ns), sub_resource="ephemeralcontainers")
        with self.subTest("no object"):
            status, body, _ = post("/mutate", {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                                               "request": {"uid": "u", "operation": "DELETE",
                                                           "kind": {"group": "", "version": "v1", "kind": "Pod"}}})
            self.assertEqual((status, body["response"]), (200, {"uid": "u", "allowed": True}))
        self.assertEqual(self.lookups(), [], "none of these costs an API call")

    def test_malformed_reviews_get_a_clear_error(self):
        cases = {
            "not JSON": (b"{nope", "the body is not JSON"),
            "empty body": (b"", "the body is not JSON"),
            "an array": (b"[]", "not a JSON object"),
            "v1beta1": (json.dumps(dict(review(launcher_pod("x", self.ns)), apiVersion="admission.k8s.io/v1beta1")).encode(),
                        "apiVersion/kind must be admission.k8s.io/v1 AdmissionReview"),
            "no request": (b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}', "request is missing"),
            "no uid": (json.dumps(review(launcher_pod("x", self.ns), uid="")).encode(), "request.uid is missing"),
        }
        for what, (raw, why) in cases.items():
            with self.subTest(what):
                status, body, _ = post("/mutate", None, raw=raw)
                self.assertEqual(status, 400, body)
                self.assertEqual(body, {"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
                                        "message": f"malformed AdmissionReview: {why}", "reason": "BadRequest",
                                        "code": 400})
        # The listener is none the worse.
        self.assert_unchanged(launcher_pod("x", self.ns, labels={OPT_OUT_LABEL: "false"}))

    # -- a slow or failing API server --------------------------------------------------

    def test_answers_in_time_when_the_api_server_hangs(self):
        self.create_vmi("vm-k", memory_request="2Gi")
        admin("POST", "/fixture/faults", {"verb": "get", "resource": "virtualmachineinstances",
                                          "delaySeconds": 8, "count": -1})
        # The API server waits 3 s (it says so in ?timeout=); the webhook
        # answers before, with the sidecar and no shares: without the VMI any
        # value would be a guess (the raw 200m is wrong for an IOThread pool).
        before = self.decisions()
        out, _, resp = self.mutate(launcher_pod("vm-k", self.ns), query="?timeout=3s")
        self.assertLess(resp["_elapsed"], 3.0)
        self.assertEqual(shares_of(env_of(sidecar_of(out))), {})
        self.assert_counted(before, "injected_lookup_failed")
        self.assertIn("injected_lookup_failed", _reporter_log())
        # Without the parameter: the API server's default (10 s), and the
        # lookup's own 2 s limit.
        _, _, resp = self.mutate(launcher_pod("vm-k", self.ns), query="")
        self.assertLess(resp["_elapsed"], 4.0)

    def test_answers_at_once_when_the_api_server_throttles(self):
        self.create_vmi("vm-l", memory_request="2Gi")
        admin("POST", "/fixture/faults", {"verb": "get", "resource": "virtualmachineinstances",
                                          "code": 429, "retryAfterSeconds": 5, "count": -1})
        out, _, resp = self.mutate(launcher_pod("vm-l", self.ns), query="?timeout=5s")
        self.assertLess(resp["_elapsed"], 2.0, "a Retry-After is not waited for")
        self.assertEqual(shares_of(env_of(sidecar_of(out))), {})
        # One attempt, and no fallback to the cluster's overcommit.
        self.assertEqual(self.lookups(), [("get", "virtualmachineinstances", self.ns, "vm-l", 429)])

    def test_failing_kubevirt_lookup_gives_no_memory_input(self):
        self.create_vmi("vm-m")  # no request: the guest's share needs the CR's memoryOvercommit
        self.set_kubevirt_cr(present=True, overcommit=150, version="v1.7.0")
        admin("POST", "/fixture/faults", {"verb": "list", "resource": "kubevirts", "code": 503, "count": -1})
        before = self.decisions()
        out, _, _ = self.mutate(launcher_pod("vm-m", self.ns, image="quay.io/kubevirt/virt-launcher:v1.7.0"),
                                query="?timeout=5s")
        # The CPU share needs only the pod and the VMI; no memory share, no guess.
        self.assertEqual(shares_of(env_of(sidecar_of(out))), {"GUEST_EXPORTER_CPU_REQUEST": "200m"})
        self.assert_counted(before, "injected_lookup_failed")
        self.assertEqual(self.lookups(), [("get", "virtualmachineinstances", self.ns, "vm-m", 200),
                                          ("list", "kubevirts", "", "", 503)])

    def test_a_missing_vmi_is_no_failure(self):
        # The VMI is gone (or not yet visible): nothing to derive shares from,
        # and nothing else to ask.
        self.set_kubevirt_cr(present=True, overcommit=120)
        before = self.decisions()
        out, _, _ = self.mutate(launcher_pod("vm-gone", self.ns))
        self.assert_counted(before, "injected")
        self.assertEqual(shares_of(env_of(sidecar_of(out))), {})
        self.assertEqual(self.lookups(), [("get", "virtualmachineinstances", self.ns, "vm-gone", 404)])

    # -- the sidecar it injects exists --------------------------------------------------

    def test_injected_settings_are_known_to_guest_exporter(self):
        if not EXPORTER_BIN or not os.access(EXPORTER_BIN, os.X_OK):
            self.skipTest("no guest-exporter binary (--guest-exporter)")
        self.create_vmi("vm-n", memory_request="2Gi")
        out, _, _ = self.mutate(launcher_pod("vm-n", self.ns, overhead="1"))
        c = sidecar_of(out)
        self.assertEqual(set(shares_of(env_of(c))), set(SHARES))
        help_text = subprocess.run([EXPORTER_BIN, "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, timeout=10).stdout
        known = set(re.findall(r"GUEST_EXPORTER_[A-Z0-9_]+", help_text))
        self.assertIn("GUEST_EXPORTER_REPORTER_URL", known, help_text)
        self.assertEqual(set(env_of(c)) - known, set(), "variables guest-exporter does not read")


class NoNativeSidecarsTest(WebhookCalls, unittest.TestCase):
    """An API server before 1.29 (SidecarContainers) drops an init container's
    restartPolicy: a sidecar with probes is refused (422), one without becomes
    an init container that never ends and holds the VM back. There the webhook
    admits launcher pods unchanged."""

    @classmethod
    def setUpClass(cls):
        cls.stack = Stack("v1-26", fixture_args=("--server-version", "1.26.3"))
        cls.stack.wait_for_log(r"the API server is v1\.26\.3")

    @classmethod
    def tearDownClass(cls):
        cls.stack.stop_reporter()

    def test_launcher_pods_go_in_unchanged(self):
        before = self.decisions()
        pod = launcher_pod("vm-a", self.ns, overhead="224395264")
        self.assert_unchanged(pod)
        self.assert_creatable(pod)
        self.assert_counted(before, "no_native_sidecars")
        self.assertEqual(self.on().metrics()["status_reporter_native_sidecars"], 0)
        pod = launcher_pod("vm-b", self.ns)  # would need a lookup: none is made
        self.create_vmi("vm-b", memory_request="2Gi")
        self.assert_unchanged(pod, uid="req-2")
        self.assertEqual(self.lookups(), [])
        # Said once, not once per pod.
        self.assertEqual(len(re.findall(r"has no native sidecars", self.on().log())), 1, self.on().log())

    def test_what_it_injects_elsewhere_would_not_work_here(self):
        # The reason for the above: the pod the main fixture's webhook makes.
        pod = launcher_pod("vm-c", self.ns, overhead="1")
        status, body, _ = post("/mutate", review(pod), stack=Env.main)
        self.assertEqual(status, 200, body)
        out = apply_json_patch(pod, json.loads(base64.b64decode(body["response"]["patch"])))
        self.assertEqual(sidecar_of(out)["restartPolicy"], "Always")
        status, _, created = self.on().fx.call("POST", PODS.format(ns=self.ns), out)
        if status == 201:  # no probes: accepted, as an init container that never exits
            self.assertNotIn("restartPolicy", sidecar_of(created))
        else:
            self.assertEqual(status, 422, created)


class ServerVersionTest(WebhookCalls, unittest.TestCase):
    """How the reporter learns whether the server has native sidecars."""

    def version_reads(self):
        return [(r["code"], r["user"]) for r in self.on().api("GET", "/fixture/requests")["requests"]
                if r["resource"] == "version"]

    def test_an_unanswered_version_read_is_retried_with_backoff(self):
        # The first read fails: nothing is injected until one succeeds, the
        # failure is logged once, and the next read comes after a backoff of
        # seconds, not at once and not after the 10-minute period.
        self.stack = Stack("version-503", faults=[{"resource": "version", "code": 503, "count": 1}])
        self.addCleanup(self.stack.stop_reporter)
        failed = self.stack.wait_for_log(r"(\S+) warning cannot read the API server's /version")
        pod = launcher_pod("vm-a", self.ns, overhead="1")
        before = self.decisions()
        self.assert_unchanged(pod)
        self.assert_creatable(pod)
        self.assert_counted(before, "native_sidecars_unknown")
        self.assertEqual(self.on().metrics()["status_reporter_native_sidecars"], 0)
        answered = self.stack.wait_for_log(r"(\S+) info the API server is v1\.30\.0: it has native sidecars",
                                           timeout=30)
        # By the log's own clock: the backoff starts at 5 s, jittered down to half.
        waited = (datetime.datetime.fromisoformat(answered.group(1).rstrip("Z")) -
                  datetime.datetime.fromisoformat(failed.group(1).rstrip("Z"))).total_seconds()
        self.assertTrue(2.4 <= waited <= 10, f"retried after {waited} s")
        self.assertIn("the API server's /version answers again", self.on().log())
        self.assertEqual(len(re.findall(r"cannot read the API server's /version", self.on().log())), 1)
        self.assertEqual([code for code, _ in self.version_reads()], [503, 200])
        self.mutate(launcher_pod("vm-b", self.ns, overhead="1"), uid="req-2")
        self.assertEqual(self.on().metrics()["status_reporter_native_sidecars"], 1)

    def test_native_sidecars_flag_overrides_the_version(self):
        # A 1.29+ server with SidecarContainers turned off looks like any other.
        self.stack = Stack("sidecars-off", reporter_args=("--native-sidecars", "false"))
        self.addCleanup(self.stack.stop_reporter)
        self.stack.wait_for_log(r"--native-sidecars=false: it has no native sidecars")
        self.set_kubevirt_cr(present=True)
        before = self.decisions()
        pod = launcher_pod("vm-c", self.ns, overhead="1")
        self.assert_unchanged(pod)
        self.assert_counted(before, "no_native_sidecars")
        self.assertEqual(self.version_reads(), [])  # not asked


class LeaderLabelTest(unittest.TestCase):
    def test_the_leader_labels_its_own_pod(self):
        # The chart's HTTPS Service selects this label: reports and webhook
        # calls reach the replica that leads.
        deadline = time.monotonic() + 20
        while True:
            labels = api("GET", PODS.format(ns=REPORTER_NS) + "/" + REPORTER_POD)["metadata"].get("labels", {})
            if labels.get(LEADER_LABEL) == "true":
                break
            if time.monotonic() > deadline:
                self.fail(f"{REPORTER_POD} was not labelled {LEADER_LABEL}=true: {labels}\n{_reporter_log()[-3000:]}")
            time.sleep(0.1)
        self.assertEqual(labels["app.kubernetes.io/component"], "status-reporter")


def main():
    global REPORTER_BIN, EXPORTER_BIN
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--reporter", default=REPORTER_BIN)
    p.add_argument("--guest-exporter", default=EXPORTER_BIN)
    args, rest = p.parse_known_args()
    REPORTER_BIN, EXPORTER_BIN = args.reporter, args.guest_exporter
    unittest.main(argv=[sys.argv[0], *rest])


if __name__ == "__main__":
    main()
