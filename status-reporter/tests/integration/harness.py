"""Test support for the status-reporter's integration tests: the API-server
fixture (tests/apiserver), status-reporter and guest-exporter processes,
launcher pods and VMIs shaped as KubeVirt makes them, reports, tokens, the
fixture's request log, and polling with a deadline.

Every process and temp dir a test starts is registered here and removed on
every way out: the test's own cleanup, normal interpreter exit, SIGTERM or
SIGINT (ctest's timeout), and — for the binaries — the death of this
process (PR_SET_PDEATHSIG), so nothing outlives a killed test run."""

import atexit
import ctypes
import functools
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
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "apiserver"))
import test_fixture  # noqa: E402  (the fixture's own process wrapper, reused)

AUDIENCE = "kubevirt-guest-metrics"
CPU_ANNOTATION = "guestmetrics.kubevirt.io/cpu-allocation-ratio"
MEMORY_ANNOTATION = "guestmetrics.kubevirt.io/memory-overcommit-ratio"
LEASE_NAMESPACE = "guest-metrics-system"
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
# The tests' own writes carry this (a query parameter every API server
# accepts), so the request log tells them from the reporter's.
OWN = "fieldManager=integration-test"

# Paths of the binaries under test: argv of the test script, then environment.
STATUS_REPORTER = os.environ.get("STATUS_REPORTER_BIN", "")
GUEST_EXPORTER = os.environ.get("GUEST_EXPORTER_BIN", "")


def take_binary_args(argv):
    """Reads --status-reporter=PATH and --guest-exporter=PATH from argv (as
    CMake passes them) and returns the rest for unittest."""
    global STATUS_REPORTER, GUEST_EXPORTER
    rest = []
    for arg in argv:
        if arg.startswith("--status-reporter="):
            STATUS_REPORTER = arg.split("=", 1)[1]
        elif arg.startswith("--guest-exporter="):
            GUEST_EXPORTER = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    return rest


# -- cleanup on every exit path ------------------------------------------------

_cleanups = {}  # handle -> callable; handles grow, so newest first is reverse order
_next_handle = [0]


def register_cleanup(fn):
    _next_handle[0] += 1
    _cleanups[_next_handle[0]] = fn
    return _next_handle[0]


def unregister_cleanup(handle):
    _cleanups.pop(handle, None)


def run_all_cleanups():
    for handle in sorted(_cleanups, reverse=True):
        fn = _cleanups.pop(handle, None)
        if fn is not None:
            try:
                fn()
            except Exception as e:  # cleanup must go on with the rest
                print(f"cleanup failed: {e!r}", file=sys.stderr)
    _cleanups.clear()


def _on_signal(signum, _frame):
    run_all_cleanups()
    os._exit(128 + signum)


atexit.register(run_all_cleanups)
signal.signal(signal.SIGTERM, _on_signal)
signal.signal(signal.SIGINT, _on_signal)

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent():
    # Runs in the child between fork and exec: a SIGKILLed test run must not
    # leave reporters holding ports and Leases.
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def temp_dir(prefix):
    """A temp dir removed at the end; GM_KEEP_TEST_DIRS=1 keeps it (and the
    processes' logs in it) for a post-mortem."""
    path = tempfile.mkdtemp(prefix=prefix)
    if os.environ.get("GM_KEEP_TEST_DIRS"):
        print(f"keeping {path}", file=sys.stderr)
    else:
        register_cleanup(lambda: shutil.rmtree(path, ignore_errors=True))
    return path


# -- polling -------------------------------------------------------------------

def wait_until(predicate, timeout, what, interval=0.05):
    """Polls until predicate() returns something truthy and returns it;
    fails with `what` (a string or a callable giving one) at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout} s waiting for {detail}")
        time.sleep(interval)


# -- certificates --------------------------------------------------------------

def serving_certificate(directory):
    """A self-signed EC certificate for 127.0.0.1, ::1 and localhost: (cert, key)."""
    cert, key = os.path.join(directory, "tls.crt"), os.path.join(directory, "tls.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-days", "1", "-subj", "/CN=status-reporter", "-addext",
                    "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost", "-keyout", key, "-out", cert],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return cert, key


# -- metrics -------------------------------------------------------------------

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def samples(text, metric):
    """[(labels dict, value)] of `metric` in a Prometheus text page."""
    out = []
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m and m.group(1) == metric:
            out.append((dict(_LABEL.findall(m.group(2) or "")), float(m.group(3))))
    return out


def sample(text, metric, **labels):
    """The value of the one sample of `metric` whose labels include `labels`, or None."""
    found = [v for lbl, v in samples(text, metric) if all(lbl.get(k) == v2 for k, v2 in labels.items())]
    return found[0] if len(found) == 1 else None


# -- the API-server fixture ----------------------------------------------------

class Cluster:
    """The fixture process plus the calls the tests make as an admin."""

    def __init__(self, *fixture_args):
        # Fixture starts its process itself; for the length of that call its
        # Popen also gets _die_with_parent, so a SIGKILLed run leaves no fixture.
        popen = subprocess.Popen
        subprocess.Popen = functools.partial(popen, preexec_fn=_die_with_parent)
        try:
            self.fx = test_fixture.Fixture("--bookmark-interval", "0.5", *fixture_args)
        finally:
            subprocess.Popen = popen
        self._cleanup = register_cleanup(self.fx.stop)
        self.kubeconfig = self.fx.kubeconfig

    def stop(self):
        unregister_cleanup(self._cleanup)
        self.fx.stop()

    def call(self, method, path, body=None, ctype="application/json"):
        return self.fx.call(method, path, body, ctype=ctype)

    def ok(self, method, path, body=None, ctype="application/json"):
        status, _, data = self.fx.call(method, path, body, ctype=ctype)
        if status >= 300:
            raise AssertionError(f"{method} {path}: HTTP {status}: {data}")
        return data

    # Objects ------------------------------------------------------------------

    def create_launcher_pod(self, ns, name, vmi, node, service_account="launcher"):
        """A virt-launcher pod as KubeVirt creates it (the labels and the
        annotation the reporter selects and keys on), running on `node`."""
        return self.ok("POST", f"/api/v1/namespaces/{ns}/pods?{OWN}", {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name,
                         "labels": {"kubevirt.io": "virt-launcher", "kubevirt.io/created-by": "vmi-uid"},
                         "annotations": {"kubevirt.io/domain": vmi}},
            "spec": {"nodeName": node, "serviceAccountName": service_account,
                     "containers": [{"name": "compute",
                                     "resources": {"requests": {"cpu": "400m", "memory": "4Gi"}}}]}})

    def load_vmi(self, ns, name, node, active_pods):
        """Stores a running VMI with its status as virt-handler writes it."""
        self.ok("POST", "/fixture/load", [{
            "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"domain": {"cpu": {"cores": 4}, "resources": {"requests": {"memory": "4Gi"}}}},
            "status": {"phase": "Running", "nodeName": node, "activePods": dict(active_pods)}}])
        return self.vmi(ns, name)

    def patch_vmi_status(self, ns, name, status):
        return self.ok("PATCH", f"/apis/kubevirt.io/v1/namespaces/{ns}/virtualmachineinstances/{name}/status?{OWN}",
                       {"status": status}, ctype="application/merge-patch+json")

    def pod(self, ns, name):
        return self.ok("GET", f"/api/v1/namespaces/{ns}/pods/{name}")

    def vmi(self, ns, name):
        return self.ok("GET", f"/apis/kubevirt.io/v1/namespaces/{ns}/virtualmachineinstances/{name}")

    def launcher(self, ns, vmi, pod, node):
        """A running VMI whose active pod is `pod` on `node`: (pod uid)."""
        uid = self.create_launcher_pod(ns, pod, vmi, node)["metadata"]["uid"]
        self.load_vmi(ns, vmi, node, {uid: node})
        return uid

    # Tokens -------------------------------------------------------------------

    def token(self, ns, pod, pod_uid=None, service_account="launcher", audiences=(AUDIENCE,)):
        """A projected service-account token bound to the pod, as the kubelet
        mounts it into the sidecar."""
        body = {"namespace": ns, "serviceAccount": service_account, "podName": pod,
                "audiences": list(audiences)}
        if pod_uid:
            body["podUID"] = pod_uid
        return self.ok("POST", "/fixture/tokens", body)["token"]

    # Request log and faults ---------------------------------------------------

    def requests(self):
        return self.ok("GET", "/fixture/requests")["requests"]

    def reset_requests(self):
        self.ok("POST", "/fixture/requests/reset")

    def reporter_writes(self, ns, since=0):
        """The writes to pods and VMIs in namespace `ns` that the tests did
        not make themselves, from request-log entry `since` on."""
        # The log says "" for no subresource; None reads better in assertions.
        return [dict(r, subresource=r["subresource"] or None) for r in self.requests()[since:]
                if r["method"] in WRITE_METHODS and r["namespace"] == ns
                and r["resource"] in ("pods", "virtualmachineinstances") and OWN not in r["query"]]

    def faults(self, *faults):
        self.ok("POST", "/fixture/faults", list(faults))

    def reset_faults(self):
        self.ok("POST", "/fixture/faults/reset")


# -- status-reporter -----------------------------------------------------------

class Reporter:
    """A status-reporter process using `kubeconfig`, on free loopback ports."""

    def __init__(self, kubeconfig, identity, directory, cert, key, extra_args=(),
                 https_address="127.0.0.1:0", metrics_address="127.0.0.1:0", host="127.0.0.1", log_level="debug"):
        self.identity = identity
        self.host = host  # where the tests connect
        self.ca = cert
        self.log_path = os.path.join(directory, f"{identity}.log")
        self._log = open(self.log_path, "wb")
        args = [STATUS_REPORTER, "--kubeconfig", kubeconfig, "--namespace", LEASE_NAMESPACE,
                "--identity", identity, "--https-address", https_address, "--metrics-address", metrics_address,
                "--tls-cert-file", cert, "--tls-key-file", key, "--log-level", log_level,
                "--leader-elect-lease-duration", "3", "--leader-elect-renew-deadline", "2",
                "--leader-elect-retry-period", "1", *extra_args]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
                                     preexec_fn=_die_with_parent)
        self._cleanup = register_cleanup(self.kill)
        ports = wait_until(self._ports, 15, lambda: f"{identity} to listen\n{self.log_tail()}")
        self.https_port, self.http_port = ports
        self.ssl = ssl.create_default_context(cafile=cert)

    def _ports(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.identity} exited with {self.proc.returncode}\n{self.log_tail()}")
        with open(self.log_path, "rb") as f:
            m = re.search(rb"reports on https port (\d+), metrics on http port (\d+)", f.read())
        return (int(m.group(1)), int(m.group(2))) if m else None

    def log_tail(self, lines=40):
        with open(self.log_path, "rb") as f:
            return b"\n".join(f.read().splitlines()[-lines:]).decode(errors="replace")

    def stop(self, timeout=10):
        """SIGTERM, as the kubelet stops a pod; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            code = self.proc.wait(timeout)
        finally:
            self.kill()
        return code

    def kill(self):
        """SIGKILL: a crashed replica that cannot hand its Lease back."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        unregister_cleanup(self._cleanup)
        self._log.close()

    # HTTP ---------------------------------------------------------------------

    def get(self, path):
        conn = http.client.HTTPConnection(self.host, self.http_port, timeout=10)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read().decode()
        finally:
            conn.close()

    def metrics(self):
        status, body = self.get("/metrics")
        if status != 200:
            raise AssertionError(f"/metrics answered {status}")
        return body

    def metric(self, metric, **labels):
        return sample(self.metrics(), metric, **labels)

    def ready(self):
        return self.get("/readyz")[0] == 200

    def is_leader(self):
        return self.metric("status_reporter_leader") == 1

    def serving(self):
        """Ready (caches synced) and leading: reports are accepted."""
        return self.ready() and self.is_leader()

    def rss_kib(self, field="VmRSS"):
        """A memory figure of the process from /proc/PID/status, KiB."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise AssertionError(f"no {field} in /proc/{self.proc.pid}/status")

    def post_report(self, report, token):
        """POST /v1/reports as a sidecar does: (HTTP status, JSON body)."""
        conn = http.client.HTTPSConnection(self.host, self.https_port, context=self.ssl, timeout=10)
        try:
            headers = {"Content-Type": "application/json"}
            if token is not None:
                headers["Authorization"] = f"Bearer {token}"
            conn.request("POST", "/v1/reports", body=json.dumps(report).encode(), headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
            return resp.status, (json.loads(raw) if raw else None)
        finally:
            conn.close()


def report(ns, vmi, pod, pod_uid, node, cpu=10.0, memory=1.5, load=(0.5, 0.25, 0.125), vcpus=4):
    """The report a guest-exporter sidecar sends (common/src/report.cpp)."""
    body = {"apiVersion": "guestmetrics.kubevirt.io/v1alpha1", "kind": "GuestReport",
            "namespace": ns, "vmiName": vmi, "podName": pod, "podUID": pod_uid, "node": node,
            "vcpus": vcpus, "memoryBytes": 6 * 2**30, "loadReason": "ok" if load else "unsupported",
            "memoryRequestSource": "vmi-request"}
    if load:
        body["load"] = {"load1m": load[0], "load5m": load[1], "load15m": load[2], "ageSeconds": 1.0}
    if cpu is not None:
        body["cpuAllocationRatio"] = cpu
    if memory is not None:
        body["memoryOvercommitRatio"] = memory
    return body


def annotations(obj):
    return obj["metadata"].get("annotations") or {}


def status_ratios(vmi):
    """(cpuAllocationRatio, memoryOvercommitRatio) from a VMI's status."""
    status = vmi.get("status") or {}
    return ((status.get("currentCPUTopology") or {}).get("cpuAllocationRatio"),
            (status.get("memory") or {}).get("memoryOvercommitRatio"))


def unreachable_kubeconfig(directory):
    """A kubeconfig whose API server port nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = os.path.join(directory, "unreachable.kubeconfig")
    with open(path, "w") as f:
        f.write(f"""apiVersion: v1
kind: Config
clusters:
- name: gone
  cluster: {{server: "https://127.0.0.1:{port}", insecure-skip-tls-verify: true}}
users:
- name: u
  user: {{token: not-a-real-token}}
contexts:
- name: c
  context: {{cluster: gone, user: u}}
current-context: c
""")
    return path


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def client_hello():
    """The first flight of a real TLS client, to be sent one byte at a time."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_side=False)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()
