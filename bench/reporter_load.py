#!/usr/bin/env python3
"""Helper of bench/reporter.sh: builds the fixture's objects, mints the
sidecars' tokens, posts the reports, watches the fixture until every launcher
pod and VMI carries its ratios, reads the fixture's request log and the
reporter's /metrics, and renders the markdown section.

Subcommands (all print key=value lines for the results file unless noted):
  port                                  a free TCP port on 127.0.0.1
  seed OUT PODS N NAMESPACES            the fixture's seed file, and PODS (one report target per line)
  tokens READY PODS TOKENS AUDIENCE     mint one pod-bound token per pod
  run READY PODS TOKENS URL CA PREFIX   post every report, wait until all is written (see --help)
  requests READY PODS PREFIX            the request log: requests by verb, writes per object
  reset-requests READY                  clear the request log
  metrics URL PREFIX                    the reporter's /metrics: reports and API requests
  render RESULTS [--doc FILE]           the markdown section (to stdout, or into FILE)
"""

import argparse
import collections
import http.client
import json
import os
import queue
import re
import socket
import ssl
import sys
import threading
import time
import uuid

AUDIENCE_DEFAULT = "kubevirt-guest-metrics"
OBSERVER = "bench-observer"
OBSERVER_USER = f"system:serviceaccount:{OBSERVER}:{OBSERVER}"
CPU_ANN = "guestmetrics.kubevirt.io/cpu-allocation-ratio"
MEM_ANN = "guestmetrics.kubevirt.io/memory-overcommit-ratio"
UUID_NS = uuid.UUID("6f1c3a52-0b8e-4d43-9a57-3c1f2e9d7b10")
# Ratios the reports carry, cycled over the VMIs: (vCPUs, CPU request in
# millicores, guest MiB, memory request MiB).
SHAPES = [(2, 200, 2048, 2048), (4, 500, 4096, 3277), (1, 250, 1024, 683), (8, 1000, 8192, 8192)]


def out(key, value):
    print(f"{key}={value}", flush=True)


def fmt_ratio(r):
    """gm::FormatRatio: three decimals, trailing zeros dropped but one."""
    s = "%.3f" % (round(r * 1000.0) / 1000.0)
    while len(s) > 1 and s[-1] == "0" and s[-2] != ".":
        s = s[:-1]
    return s


# --- objects ---------------------------------------------------------------------

def vmi_and_pod(i, ns):
    """A running VMI and its active virt-launcher pod, shaped like KubeVirt
    v1.5's (labels, annotations, owner reference, volumes, the compute
    container, the injected guest-exporter native sidecar, status)."""
    vcpus, cpu_m, guest_mib, req_mib = SHAPES[i % len(SHAPES)]
    name = f"vm-{i:05d}"
    node = f"node-{i % 50:02d}"
    vmi_uid = str(uuid.uuid5(UUID_NS, f"vmi/{ns}/{name}"))
    pod_uid = str(uuid.uuid5(UUID_NS, f"pod/{ns}/{name}"))
    suffix = uuid.uuid5(UUID_NS, f"sfx/{ns}/{name}").hex[:5]
    pod_name = f"virt-launcher-{name}-{suffix}"
    ts = "2026-11-20T10:00:00Z"
    ip = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
    mem_req = f"{req_mib + 250}Mi"  # plus virtualization overhead
    vmi = {
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
        "metadata": {
            "name": name, "namespace": ns, "uid": vmi_uid, "generation": 8,
            "creationTimestamp": ts,
            "labels": {"kubevirt.io/nodeName": node, "kubevirt.io/vm": name,
                       "vm.kubevirt.io/name": name},
            "annotations": {"kubevirt.io/latest-observed-api-version": "v1",
                            "kubevirt.io/storage-observed-api-version": "v1",
                            "kubevirt.io/vm-generation": "1"},
            "finalizers": ["kubevirt.io/virtualMachineControllerFinalize",
                           "foregroundDeleteVirtualMachine"],
            "ownerReferences": [{"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
                                 "name": name, "uid": str(uuid.uuid5(UUID_NS, f"vm/{ns}/{name}")),
                                 "controller": True, "blockOwnerDeletion": True}],
        },
        "spec": {
            "architecture": "amd64",
            "domain": {
                "cpu": {"cores": vcpus, "sockets": 1, "threads": 1, "model": "host-model",
                        "maxSockets": 4},
                "memory": {"guest": f"{guest_mib}Mi", "maxGuest": f"{guest_mib * 4}Mi"},
                "resources": {"requests": {"memory": f"{req_mib}Mi"}},
                "devices": {
                    "disks": [{"name": "containerdisk", "disk": {"bus": "virtio"}},
                              {"name": "cloudinitdisk", "disk": {"bus": "virtio"}}],
                    "interfaces": [{"name": "default", "masquerade": {}}],
                },
                "features": {"acpi": {"enabled": True}},
                "firmware": {"uuid": str(uuid.uuid5(UUID_NS, f"fw/{ns}/{name}"))},
                "machine": {"type": "q35"},
            },
            "evictionStrategy": "LiveMigrate",
            "networks": [{"name": "default", "pod": {}}],
            "terminationGracePeriodSeconds": 180,
            "volumes": [
                {"name": "containerdisk",
                 "containerDisk": {"image": "quay.io/containerdisks/fedora:40",
                                   "imagePullPolicy": "IfNotPresent"}},
                {"name": "cloudinitdisk",
                 "cloudInitNoCloud": {"userData": "#cloud-config\nuser: fedora\n"}},
            ],
        },
        "status": {
            "phase": "Running", "nodeName": node, "qosClass": "Burstable",
            "activePods": {pod_uid: node},
            "conditions": [
                {"type": "Ready", "status": "True", "lastProbeTime": None,
                 "lastTransitionTime": ts},
                {"type": "LiveMigratable", "status": "True", "lastProbeTime": None,
                 "lastTransitionTime": None},
                {"type": "AgentConnected", "status": "True", "lastProbeTime": None,
                 "lastTransitionTime": ts},
            ],
            "guestOSInfo": {"id": "fedora", "name": "Fedora Linux", "version": "40",
                            "kernelRelease": "6.8.5-301.fc40.x86_64"},
            "interfaces": [{"name": "default", "ipAddress": ip, "ipAddresses": [ip],
                            "mac": "52:54:00:%02x:%02x:%02x" % ((i >> 16) & 255, (i >> 8) & 255, i & 255),
                            "interfaceName": "eth0", "infoSource": "domain, guest-agent",
                            "podInterfaceName": "eth0", "queueCount": 1}],
            "launcherContainerImageVersion": "quay.io/kubevirt/virt-launcher:v1.5.0",
            "migrationMethod": "BlockMigration", "migrationTransport": "Unix",
            "machine": {"type": "pc-q35-rhel9.4.0"},
            "currentCPUTopology": {"cores": vcpus, "sockets": 1, "threads": 1},
            "memory": {"guestAtBoot": f"{guest_mib}Mi", "guestCurrent": f"{guest_mib}Mi",
                       "guestRequested": f"{guest_mib}Mi", "memoryOverhead": "250Mi"},
            "phaseTransitionTimestamps": [{"phase": p, "phaseTransitionTimestamp": ts}
                                          for p in ("Pending", "Scheduling", "Scheduled", "Running")],
            "runtimeUser": 107, "selinuxContext": "none",
            "virtualMachineRevisionName": f"revision-start-vm-{vmi_uid}-2",
            "volumeStatus": [{"name": "cloudinitdisk", "target": "vdb", "size": 1048576},
                             {"name": "containerdisk", "target": "vda"}],
        },
    }
    mount = lambda n, p, ro=False: dict({"name": n, "mountPath": p}, **({"readOnly": True} if ro else {}))
    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": pod_name, "namespace": ns, "uid": pod_uid, "generateName": f"virt-launcher-{name}-",
            "creationTimestamp": ts,
            "labels": {"kubevirt.io": "virt-launcher", "kubevirt.io/created-by": vmi_uid,
                       "kubevirt.io/nodeName": node, "kubevirt.io/vm": name,
                       "vm.kubevirt.io/name": name, "vmi.kubevirt.io/id": name},
            "annotations": {
                "kubevirt.io/domain": name,
                "kubevirt.io/migrationTransportUnix": "true",
                "kubevirt.io/vm-generation": "1",
                "kubectl.kubernetes.io/default-container": "compute",
                "post.hook.backup.velero.io/command": "[\"/usr/bin/virt-freezer\", \"--unfreeze\", \"--name\", \"%s\", \"--namespace\", \"%s\"]" % (name, ns),
                "pre.hook.backup.velero.io/command": "[\"/usr/bin/virt-freezer\", \"--freeze\", \"--name\", \"%s\", \"--namespace\", \"%s\"]" % (name, ns),
                "guestmetrics.kubevirt.io/injected": "true",
            },
            "ownerReferences": [{"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
                                 "name": name, "uid": vmi_uid, "controller": True,
                                 "blockOwnerDeletion": True}],
        },
        "spec": {
            "nodeName": node, "serviceAccountName": "default", "automountServiceAccountToken": False,
            "restartPolicy": "Never", "schedulerName": "default-scheduler", "dnsPolicy": "ClusterFirst",
            "terminationGracePeriodSeconds": 210, "enableServiceLinks": False, "hostname": name,
            "securityContext": {"runAsUser": 107, "runAsGroup": 107, "fsGroup": 107, "runAsNonRoot": True},
            "nodeSelector": {"kubernetes.io/arch": "amd64", "kubevirt.io/schedulable": "true",
                             "cpu-model.node.kubevirt.io/Skylake-Server-IBRS": "true"},
            "readinessGates": [{"conditionType": "kubevirt.io/virtual-machine-unpaused"}],
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                             "effect": "NoExecute", "tolerationSeconds": 300},
                            {"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                             "effect": "NoExecute", "tolerationSeconds": 300}],
            "containers": [{
                "name": "compute", "image": "quay.io/kubevirt/virt-launcher:v1.5.0",
                "imagePullPolicy": "IfNotPresent",
                "command": ["/usr/bin/virt-launcher-monitor", "--qemu-timeout", "315s", "--name", name,
                            "--uid", vmi_uid, "--namespace", ns, "--kubevirt-share-dir", "/var/run/kubevirt",
                            "--ephemeral-disk-dir", "/var/run/kubevirt-ephemeral-disks",
                            "--container-disk-dir", "/var/run/kubevirt/container-disks",
                            "--grace-period-seconds", "195", "--hook-sidecars", "0",
                            "--ovmf-path", "/usr/share/OVMF", "--run-as-nonroot"],
                "env": [{"name": "XDG_CACHE_HOME", "value": "/var/run/kubevirt-private"},
                        {"name": "XDG_CONFIG_HOME", "value": "/var/run/kubevirt-private"},
                        {"name": "XDG_RUNTIME_DIR", "value": "/var/run"},
                        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1",
                                                                        "fieldPath": "metadata.name"}}}],
                "resources": {"limits": {"devices.kubevirt.io/kvm": "1", "devices.kubevirt.io/tun": "1",
                                         "devices.kubevirt.io/vhost-net": "1"},
                              "requests": {"cpu": f"{cpu_m}m", "memory": mem_req,
                                           "ephemeral-storage": "50M",
                                           "devices.kubevirt.io/kvm": "1", "devices.kubevirt.io/tun": "1",
                                           "devices.kubevirt.io/vhost-net": "1"}},
                "securityContext": {"allowPrivilegeEscalation": False, "privileged": False,
                                    "runAsUser": 107, "runAsGroup": 107, "runAsNonRoot": True,
                                    "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]}},
                "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
                "volumeMounts": [mount("private", "/var/run/kubevirt-private"),
                                 mount("public", "/var/run/kubevirt"),
                                 mount("ephemeral-disks", "/var/run/kubevirt-ephemeral-disks"),
                                 mount("container-disks", "/var/run/kubevirt/container-disks"),
                                 mount("libvirt-runtime", "/var/run/libvirt"),
                                 mount("sockets", "/var/run/kubevirt/sockets"),
                                 mount("hotplug-disks", "/var/run/kubevirt/hotplug-disks")],
            }],
            "initContainers": [{
                "name": "guest-exporter", "image": "ghcr.io/kubevirt-guest-metrics/guest-exporter:0.1.0",
                "restartPolicy": "Always",
                "args": ["--libvirt-uri", "qemu+unix:///session?socket=/var/run/libvirt/virtqemud-sock",
                         "--guest-info-interval", "120", "--socket", "/var/run/guest-exporter/metrics.sock",
                         "--reporter-url", "https://kubevirt-guest-metrics-status-reporter.kubevirt-guest-metrics.svc:8443/v1/reports"],
                "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                        {"name": "POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
                        {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                "resources": {"limits": {"memory": "24Mi"}, "requests": {"cpu": "10m", "memory": "24Mi"}},
                "readinessProbe": {"exec": {"command": ["/usr/bin/guest-exporter", "probe", "--socket",
                                                        "/var/run/guest-exporter/metrics.sock"]},
                                   "periodSeconds": 10},
                "volumeMounts": [mount("libvirt-runtime", "/var/run/libvirt", True),
                                 mount("guest-exporter-token", "/var/run/secrets/guest-exporter", True)],
            }],
            "volumes": [
                {"name": "private", "emptyDir": {}}, {"name": "public", "emptyDir": {}},
                {"name": "sockets", "emptyDir": {}}, {"name": "virt-bin-share-dir", "emptyDir": {}},
                {"name": "libvirt-runtime", "emptyDir": {}}, {"name": "ephemeral-disks", "emptyDir": {}},
                {"name": "container-disks", "emptyDir": {}},
                {"name": "hotplug-disks", "emptyDir": {}},
                {"name": "guest-exporter-token", "projected": {"sources": [{"serviceAccountToken": {
                    "audience": AUDIENCE_DEFAULT, "expirationSeconds": 3600, "path": "token"}}]}},
            ],
        },
        "status": {
            "phase": "Running", "hostIP": "192.168.%d.%d" % ((i % 50) // 250, 10 + i % 50),
            "podIP": ip, "podIPs": [{"ip": ip}], "qosClass": "Burstable", "startTime": ts,
            "conditions": [{"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": ts}
                           for t in ("kubevirt.io/virtual-machine-unpaused", "Initialized", "Ready",
                                     "ContainersReady", "PodScheduled")],
            "containerStatuses": [{"name": "compute", "ready": True, "restartCount": 0, "started": True,
                                   "image": "quay.io/kubevirt/virt-launcher:v1.5.0",
                                   "imageID": "quay.io/kubevirt/virt-launcher@sha256:" + "ab" * 32,
                                   "containerID": "containerd://" + uuid.uuid5(UUID_NS, f"c/{ns}/{name}").hex * 2,
                                   "state": {"running": {"startedAt": ts}}}],
            "initContainerStatuses": [{"name": "guest-exporter", "ready": True, "restartCount": 0,
                                       "started": True,
                                       "image": "ghcr.io/kubevirt-guest-metrics/guest-exporter:0.1.0",
                                       "imageID": "ghcr.io/kubevirt-guest-metrics/guest-exporter@sha256:" + "cd" * 32,
                                       "containerID": "containerd://" + uuid.uuid5(UUID_NS, f"s/{ns}/{name}").hex * 2,
                                       "state": {"running": {"startedAt": ts}}}],
        },
    }
    cpu_ratio = vcpus / (cpu_m / 1000.0)
    mem_ratio = guest_mib / req_mib
    target = {"ns": ns, "vmi": name, "pod": pod_name, "podUID": pod_uid, "node": node,
              "vcpus": vcpus, "memoryBytes": guest_mib * 1048576, "cpu": cpu_ratio, "mem": mem_ratio}
    return vmi, pod, target


def cmd_seed(a):
    items, targets = [], []
    per_ns = (a.n + a.namespaces - 1) // a.namespaces
    for i in range(a.n):
        vmi, pod, t = vmi_and_pod(i, f"bench-{i // per_ns:02d}")
        items += [vmi, pod]
        targets.append(t)
    # The load client's own identity for its watches and lists, so that the
    # request log tells its requests from the reporter's (both would otherwise
    # be the admin user): a service-account token bound to this pod.
    items.append({"apiVersion": "v1", "kind": "Pod",
                  "metadata": {"name": OBSERVER, "namespace": OBSERVER},
                  "spec": {"serviceAccountName": OBSERVER, "containers": [{"name": "c", "image": "x"}]},
                  "status": {"phase": "Running"}})
    with open(a.out, "w") as f:
        json.dump({"items": items}, f, separators=(",", ":"))
    with open(a.pods, "w") as f:
        for t in targets:
            f.write(json.dumps(t, separators=(",", ":")) + "\n")
    sizes = {"vmi": [], "pod": []}
    for o in items[:-1]:
        sizes["vmi" if o["kind"] == "VirtualMachineInstance" else "pod"].append(
            len(json.dumps(o, separators=(",", ":"))))
    out("pod_json_bytes", sum(sizes["pod"]) // len(sizes["pod"]))
    out("vmi_json_bytes", sum(sizes["vmi"]) // len(sizes["vmi"]))


def load_targets(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


# --- HTTP ------------------------------------------------------------------------

class Fixture:
    def __init__(self, ready_path, api_token=None):
        with open(ready_path) as f:
            r = json.load(f)
        self.port, self.token = r["port"], r["token"]
        # Kubernetes API calls (not /fixture/...) use the observer's token when given.
        self.api_token = api_token or self.token
        self.ctx = ssl.create_default_context(cafile=r["ca"])

    def conn(self, timeout=60):
        return http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=timeout)

    def call(self, method, path, body=None, conn=None):
        c = conn or self.conn()
        token = self.token if path.startswith("/fixture/") else self.api_token
        headers = {"Authorization": "Bearer " + token}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        c.request(method, path, body=data, headers=headers)
        resp = c.getresponse()
        payload = resp.read()
        if conn is None:
            c.close()
        if resp.status >= 300:
            raise RuntimeError(f"{method} {path}: {resp.status} {payload[:300]!r}")
        return json.loads(payload)


def parallel(items, threads, fn):
    """fn(item, state) over items on THREADS threads; state is per thread."""
    q = queue.SimpleQueue()
    for it in items:
        q.put(it)
    errors = []

    def work():
        state = {}
        while True:
            try:
                it = q.get_nowait()
            except queue.Empty:
                break
            try:
                fn(it, state)
            except Exception as e:  # keep the others going; report at the end
                errors.append(f"{it!r:.80}: {e!r}")
        for c in state.values():
            try:
                c.close()
            except Exception:
                pass

    ts = [threading.Thread(target=work) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return errors


def cmd_tokens(a):
    fx = Fixture(a.ready)
    targets = load_targets(a.pods)
    tokens = [None] * len(targets)

    def mint(i, state):
        for attempt in range(3):
            if "c" not in state:
                state["c"] = fx.conn()
            try:
                r = fx.call("POST", "/fixture/tokens", {
                    "namespace": targets[i]["ns"], "serviceAccount": "default", "podName": targets[i]["pod"],
                    "podUID": targets[i]["podUID"], "audiences": [a.audience], "expirationSeconds": 3600},
                    conn=state["c"])
                tokens[i] = r["token"]
                return
            except (OSError, http.client.HTTPException):
                state.pop("c").close()
                if attempt == 2:
                    raise

    t0 = time.monotonic()
    errors = parallel(range(len(targets)), a.threads, mint)
    if errors:
        sys.exit(f"minting tokens failed ({len(errors)}), first: {errors[0]}")
    with open(a.tokens, "w") as f:
        for t in tokens:
            f.write(t + "\n")
    obs = fx.call("POST", "/fixture/tokens", {"namespace": OBSERVER, "serviceAccount": OBSERVER,
                                               "podName": OBSERVER})
    with open(a.tokens + ".observer", "w") as f:
        f.write(obs["token"] + "\n")
    out("tokens_minted", len(tokens))
    out("tokens_s", "%.1f" % (time.monotonic() - t0))


# --- the watch that tells when every object carries its ratios -------------------

class Watch(threading.Thread):
    """Follows one collection from a resourceVersion and calls on_obj(obj, t)."""

    def __init__(self, fx, path, rv, on_obj):
        super().__init__(daemon=True)
        self.fx, self.path, self.rv, self.on_obj = fx, path, rv, on_obj
        self.events = 0
        self.error = None
        self.stop = False

    def run(self):
        sep = "&" if "?" in self.path else "?"
        c = self.fx.conn(timeout=3600)
        try:
            c.request("GET", f"{self.path}{sep}watch=true&resourceVersion={self.rv}&timeoutSeconds=3600",
                      headers={"Authorization": "Bearer " + self.fx.api_token})
            resp = c.getresponse()
            if resp.status != 200:
                self.error = f"watch {self.path}: HTTP {resp.status}"
                return
            while not self.stop:
                line = resp.readline()
                if not line:
                    self.error = self.error or f"watch {self.path} ended"
                    return
                ev = json.loads(line)
                t = time.monotonic()
                if ev["type"] == "ERROR":
                    self.error = f"watch {self.path}: {ev['object'].get('message')}"
                    return
                if ev["type"] in ("ADDED", "MODIFIED"):
                    self.events += 1
                    self.on_obj(ev["object"], t)
        except Exception as e:
            if not self.stop:
                self.error = f"watch {self.path}: {e!r}"
        finally:
            c.close()


def current_rv(fx, path):
    return fx.call("GET", path + ("&" if "?" in path else "?") + "limit=1")["metadata"]["resourceVersion"]


class Completion:
    """Which pods and VMIs still lack their ratios; when the last one got them."""

    def __init__(self, targets, mode):
        self.mode = mode
        self.want_pod, self.want_vmi = {}, {}
        for t in targets:
            cpu, mem = fmt_ratio(t["cpu"]), fmt_ratio(t["mem"])
            self.want_pod[(t["ns"], t["pod"])] = (cpu, mem)
            self.want_vmi[(t["ns"], t["vmi"])] = (cpu, mem) if mode == "annotations" else \
                (round(t["cpu"], 3), round(t["mem"], 3))
        self.pending = set(("pod",) + k for k in self.want_pod) | set(("vmi",) + k for k in self.want_vmi)
        self.total = len(self.pending)
        self.last_done = None
        self.lock = threading.Lock()
        self.all_done = threading.Event()

    def has(self, kind, obj):
        meta = obj["metadata"]
        key = (meta.get("namespace"), meta["name"])
        if kind == "pod":
            ann = meta.get("annotations") or {}
            want = self.want_pod.get(key)
            return key, want is not None and (ann.get(CPU_ANN), ann.get(MEM_ANN)) == want
        want = self.want_vmi.get(key)
        if want is None:
            return key, False
        if self.mode == "annotations":
            ann = meta.get("annotations") or {}
            return key, (ann.get(CPU_ANN), ann.get(MEM_ANN)) == want
        st = obj.get("status") or {}
        have = ((st.get("currentCPUTopology") or {}).get("cpuAllocationRatio"),
                (st.get("memory") or {}).get("memoryOvercommitRatio"))
        return key, have == want

    def seen(self, kind, obj, t):
        key, ok = self.has(kind, obj)
        if not ok:
            return
        with self.lock:
            k = (kind,) + key
            if k in self.pending:
                self.pending.discard(k)
                self.last_done = t
                if not self.pending:
                    self.all_done.set()


# --- posting the reports ----------------------------------------------------------

def report_body(t):
    return json.dumps({
        "apiVersion": "guestmetrics.kubevirt.io/v1alpha1", "kind": "GuestReport",
        "namespace": t["ns"], "vmiName": t["vmi"], "podName": t["pod"], "podUID": t["podUID"],
        "node": t["node"], "vcpus": t["vcpus"], "memoryBytes": t["memoryBytes"], "loadReason": "ok",
        "memoryRequestSource": "vmi-request",
        "load": {"load1m": 0.42, "load5m": 0.37, "load15m": 0.31, "ageSeconds": 3},
        "cpuAllocationRatio": t["cpu"], "memoryOvercommitRatio": t["mem"],
    }, separators=(",", ":")).encode()


def post_all(url, ca, targets, tokens, threads, stats):
    """POSTs every report once (keep-alive, THREADS connections). A 503 (not
    the leader yet, TokenReview failed) is retried after 0.5 s, at most 20
    times, as the sidecar would retry at its next interval."""
    m = re.match(r"https://([^:/]+):(\d+)(/.*)", url)
    host, port, path = m.group(1), int(m.group(2)), m.group(3)
    ctx = ssl.create_default_context(cafile=ca)
    lock = threading.Lock()

    def one(i, state):
        body = report_body(targets[i])
        headers = {"Authorization": "Bearer " + tokens[i], "Content-Type": "application/json"}
        for attempt in range(21):
            if "c" not in state:
                state["c"] = http.client.HTTPSConnection(host, port, context=ctx, timeout=30)
                with lock:
                    stats["connections"] += 1
            t0 = time.monotonic()
            try:
                state["c"].request("POST", path, body=body, headers=headers)
                resp = state["c"].getresponse()
                payload = resp.read()
            except (OSError, http.client.HTTPException):
                # The server closed an idle or used-up keep-alive connection: reconnect.
                state.pop("c").close()
                with lock:
                    stats["reconnects"] += 1
                continue
            dt = time.monotonic() - t0
            if resp.getheader("Connection", "").lower() == "close":
                state.pop("c").close()
            try:
                result = json.loads(payload).get("result", "?")
            except ValueError:
                result = "?"
            with lock:
                stats["latencies"].append(dt)
                stats["by_code"][f"{resp.status}_{result}"] += 1
                if stats["first"] is None:
                    stats["first"] = t0
                stats["last"] = time.monotonic()
            if resp.status == 503 and attempt < 20:
                time.sleep(0.5)
                continue
            with lock:
                stats["final"][result] += 1
            return
        with lock:
            stats["final"]["connection_failed"] += 1

    return parallel(range(len(targets)), threads, one)


def pct(xs, p):
    if not xs:
        return 0.0
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def cmd_run(a):
    with open(a.tokens + ".observer") as f:
        fx = Fixture(a.ready, f.read().strip())
    targets = load_targets(a.pods)
    with open(a.tokens) as f:
        tokens = [line.strip() for line in f if line.strip()]
    comp = Completion(targets, a.mode)
    pod_path = "/api/v1/pods?labelSelector=kubevirt.io%3Dvirt-launcher"
    vmi_path = "/apis/kubevirt.io/v1/virtualmachineinstances"
    watches = []
    for kind, path in (("pod", pod_path), ("vmi", vmi_path)):
        w = Watch(fx, path, current_rv(fx, path), lambda obj, t, kind=kind: comp.seen(kind, obj, t))
        w.start()
        watches.append(w)
    time.sleep(0.5)
    if a.expect_done:
        # Pass 2: everything must already be in place; check it with one list each.
        for kind, path in (("pod", pod_path), ("vmi", vmi_path)):
            for obj in fx.call("GET", path)["items"]:
                comp.seen(kind, obj, time.monotonic())
        out(f"{a.prefix}_complete_before", comp.total - len(comp.pending))
    stats = {"connections": 0, "reconnects": 0, "latencies": [], "by_code": collections.Counter(),
             "final": collections.Counter(), "first": None, "last": None}
    t_start = time.monotonic()
    errors = post_all(a.url, a.ca, targets, tokens, a.threads, stats)
    t_posted = time.monotonic()
    if errors:
        out(f"{a.prefix}_post_errors", len(errors))
        print(f"reporter-bench: first post error: {errors[0]}", file=sys.stderr)
    if a.expect_done:
        # Nothing should change: wait for the reporter's queue to drain, then
        # watch for a quiet settle period; any event seen is a write.
        time.sleep(a.settle)
        done = True
    else:
        done = comp.all_done.wait(max(1.0, a.timeout - (time.monotonic() - t_start)))
    for w in watches:
        w.stop = True
    t0 = stats["first"] or t_start
    out(f"{a.prefix}_reports", len(targets))
    out(f"{a.prefix}_client_threads", a.threads)
    out(f"{a.prefix}_connections", stats["connections"])
    out(f"{a.prefix}_reconnects", stats["reconnects"])
    for k, v in sorted(stats["by_code"].items()):
        out(f"{a.prefix}_http_{k}", v)
    for k, v in sorted(stats["final"].items()):
        out(f"{a.prefix}_final_{k}", v)
    out(f"{a.prefix}_post_s", "%.2f" % (t_posted - t0))
    out(f"{a.prefix}_post_p50_ms", "%.1f" % (pct(stats["latencies"], 50) * 1e3))
    out(f"{a.prefix}_post_p99_ms", "%.1f" % (pct(stats["latencies"], 99) * 1e3))
    out(f"{a.prefix}_post_max_ms", "%.1f" % (max(stats["latencies"] or [0]) * 1e3))
    out(f"{a.prefix}_done", int(bool(done) and not comp.pending))
    out(f"{a.prefix}_pending", len(comp.pending))
    if comp.pending:
        out(f"{a.prefix}_pending_example", " ".join(sorted("/".join(k) for k in comp.pending)[:3]))
    if comp.last_done is not None:
        out(f"{a.prefix}_done_s", "%.2f" % (comp.last_done - t0))
    out(f"{a.prefix}_watch_events", sum(w.events for w in watches))
    for w in watches:
        if w.error and not w.stop:
            out(f"{a.prefix}_watch_error", w.error)


# --- request log and metrics ------------------------------------------------------

def cmd_reset_requests(a):
    Fixture(a.ready).call("POST", "/fixture/requests/reset")


def cmd_requests(a):
    fx = Fixture(a.ready)
    reqs = [r for r in fx.call("GET", "/fixture/requests")["requests"] if r.get("user") != OBSERVER_USER]
    n_vmis = len(load_targets(a.pods))
    by = collections.Counter()
    writes = collections.Counter()  # successful writes per object
    probes = collections.Counter()
    for r in reqs:
        res = r["resource"] or "?"
        sub = ("/" + r["subresource"]) if r.get("subresource") else ""
        by[f"{r['verb']}_{res}{sub.replace('/', '_')}_{r['code']}"] += 1
        if r["verb"] in ("patch", "update", "create") and res in ("pods", "virtualmachineinstances"):
            if 200 <= (r["code"] or 0) < 300:
                writes[(res, r["namespace"], r["name"])] += 1
            else:
                probes[(res + sub, r["code"])] += 1
    total = len(reqs)
    out(f"{a.prefix}_api_requests", total)
    out(f"{a.prefix}_api_requests_per_vmi", "%.3f" % (total / n_vmis))
    for k, v in sorted(by.items()):
        out(f"{a.prefix}_req_{k}", v)
    for (res, code), v in sorted(probes.items()):
        out(f"{a.prefix}_failedwrite_{res.replace('/', '_')}_{code}", v)
    for res in ("pods", "virtualmachineinstances"):
        per = [v for (r, _, _), v in writes.items() if r == res]
        hist = collections.Counter(per)
        out(f"{a.prefix}_written_{res}", len(per))
        out(f"{a.prefix}_writes_{res}", sum(per))
        out(f"{a.prefix}_max_writes_per_{res}", max(per or [0]))
        out(f"{a.prefix}_writes_hist_{res}", " ".join(f"{k}x:{hist[k]}" for k in sorted(hist)) or "none")
    tr = sum(v for k, v in by.items() if k.startswith("create_tokenreviews_"))
    out(f"{a.prefix}_tokenreviews", tr)


def scrape(url):
    with urlopen_text(url) as body:
        return body


def urlopen_text(url):
    import contextlib
    import urllib.request

    @contextlib.contextmanager
    def cm():
        with urllib.request.urlopen(url, timeout=10) as r:
            yield r.read().decode()
    return cm()


def cmd_metrics(a):
    text = scrape(a.url)
    out(f"{a.prefix}_bytes", len(text.encode()))
    for line in text.splitlines():
        m = re.match(r'^status_reporter_reports_total\{result="([a-z_]+)"\} ([0-9.e+]+)$', line)
        if m and float(m.group(2)) > 0:
            out(f"{a.prefix}_reports_{m.group(1)}", int(float(m.group(2))))
        m = re.match(r'^status_reporter_api_requests_total\{(.*)\} ([0-9.e+]+)$', line)
        if m:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
            out(f"{a.prefix}_apimetric_{labels.get('verb')}_{labels.get('code')}", int(float(m.group(2))))
        m = re.match(r'^status_reporter_vmi_ratio_mode\{mode="(\w+)"\} 1$', line)
        if m:
            out(f"{a.prefix}_ratio_mode", m.group(1))
        m = re.match(r'^status_reporter_queue_depth ([0-9.e+]+)$', line)
        if m:
            out(f"{a.prefix}_queue_depth", int(float(m.group(1))))
        m = re.match(r'^status_reporter_reconcile_duration_seconds_(sum|count) ([0-9.e+]+)$', line)
        if m:
            out(f"{a.prefix}_reconcile_{m.group(1)}", m.group(2))


def cmd_port(_):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1])
    s.close()


# --- rendering ------------------------------------------------------------------------

BEGIN, END = "<!-- reporter-bench:begin -->", "<!-- reporter-bench:end -->"
TABLE_ROW = "| status-reporter at 10,000 VMIs | `bench/reporter.sh --write` | about 10 minutes |"


def mib(kib):
    return "%.1f MiB" % (int(kib) / 1024.0)


def render(r):
    g = lambda k, d="n/a": r.get(k, d)
    n = int(g("vmis"))
    qps, burst = float(g("qps")), int(g("burst"))
    lines = []
    A = lines.append
    A("## status-reporter: 10,000 VMIs" if n == 10000 else f"## status-reporter: {n:,} VMIs")
    A("")
    A(f"Produced by `{g('command')}` on {g('date')} (build type **{g('build_type')}**, status-reporter "
      f"revision `{g('revision')}`).")
    A("")
    A("| machine | |")
    A("|---|---|")
    A(f"| CPU | {g('cpu_model')}, nproc {g('nproc')} |")
    A(f"| memory | {int(g('mem_total_kib')) / 1024:.1f} MiB |")
    A(f"| kernel | {g('kernel')} |")
    A(f"| Debian | {g('debian')} |")
    A(f"| Python (API-server fixture) | {g('python_version')} |")
    A(f"| load average at start / end | {g('loadavg_start')} / {g('loadavg_end')} |")
    A("")
    A(f"Setup: the API-server fixture (`tests/apiserver/fixture.py`, stock KubeVirt VMI schema: the VEP 156 "
      f"status fields are pruned, so the reporter records VMI ratios as annotations) seeded with {n:,} "
      f"running VMIs and their active virt-launcher pods in {g('namespaces')} namespaces "
      f"(KubeVirt v1.5 shapes: labels `kubevirt.io=virt-launcher`, `kubevirt.io/created-by`, annotation "
      f"`kubevirt.io/domain`, owner reference, `status.nodeName`, `status.activePods`; the compute container "
      f"and the injected sidecar; mean JSON size {g('pod_json_bytes')} B per pod, {g('vmi_json_bytes')} B per VMI). "
      f"status-reporter runs against it with `{g('reporter_cmd')}`. One pod-bound token per pod "
      f"(audience `kubevirt-guest-metrics`, 3600 s) is minted through `/fixture/tokens` before the clock "
      f"starts. Then {n:,} valid reports (one per VMI, its active pod's token) are POSTed to "
      f"`/v1/reports` over HTTPS by {g('p1_client_threads')} keep-alive client threads, while a watch on pods "
      f"and VMIs notes when the last object received its ratios. Pass 2 POSTs the same {n:,} reports again. "
      f"API requests are counted from the fixture's request log (`/fixture/requests`), reset after the "
      f"caches synced and between the passes; memory from `/proc/PID/status` of the reporter, sampled every "
      f"0.5 s. Everything runs on the same {g('nproc')} cores: the fixture (one Python process), the reporter "
      f"and the load client.")
    A("")
    # QPS implied time
    p1_req = int(g("p1_api_requests", 0))
    implied = max(0.0, p1_req - burst) / qps
    done_s = float(g("p1_done_s", "nan"))
    A(f"Time the QPS limit implies: every API request the reporter makes passes its client-side token "
      f"bucket (`--qps {qps:g} --burst {burst}`), TokenReviews included, so pass 1 cannot end before "
      f"T = (R − burst) ÷ qps, where R is the API requests it made in pass 1 (TokenReviews + pod and VMI "
      f"patches + the leader lease's renewals): ({p1_req:,} − {burst}) ÷ {qps:g} = **{implied:.1f} s**. "
      f"At {n:,} VMIs: R ≈ 3 × {n:,} (one TokenReview, one pod patch, one VMI patch per VMI).")
    A("")
    if g("ceiling_rps", None):
        A(f"Fixture ceiling: with `--qps 10000 --burst 10000` (no effective limit) and {int(g('ceiling_vmis')):,} VMIs, "
          f"the same pass ran at **{float(g('ceiling_rps')):.0f} API requests/s** "
          f"({g('ceiling_api_requests')} requests in {g('ceiling_done_s')} s), with the fixture busy "
          f"{g('ceiling_fixture_cores')} cores ({g('ceiling_fixture_ms_per_req')} ms of its CPU per request) and "
          f"the reporter {g('ceiling_reporter_cores')} cores; the two share the machine's 2 cores with the load "
          f"client. The fixture (one Python process, one core at most) would serve about {1000.0 / max(float(g('ceiling_fixture_ms_per_req')), 0.001):.0f} requests/s. "
          f"The stated --qps {qps:g} is {100 * qps / float(g('ceiling_rps')):.0f}% of the measured rate, so the "
          f"fixture sustains it and the QPS limit sets the pace.")
        A("")
    A("| figure | pass 1 (new reports) | pass 2 (same reports again) |")
    A("|---|---|---|")
    A(f"| reports accepted (reporter `/metrics`, 202) | {g('p1m_reports_accepted', 0)} | "
      f"{int(g('p2m_reports_accepted', 0)) - int(g('p1m_reports_accepted', 0))} |")
    refused1 = {k[len("p1m_reports_"):]: v for k, v in r.items() if k.startswith("p1m_reports_") and k != "p1m_reports_accepted"}
    refused2 = {k[len("p2m_reports_"):]: int(v) - int(r.get("p1m_reports_" + k[len("p2m_reports_"):], 0))
                for k, v in r.items() if k.startswith("p2m_reports_") and k != "p2m_reports_accepted"}
    fmt_ref = lambda d: ", ".join(f"{k} {v}" for k, v in sorted(d.items()) if int(v)) or "none"
    A(f"| reports refused, by reason (retried after 0.5 s) | {fmt_ref(refused1)} | {fmt_ref(refused2)} |")
    A(f"| time to POST all reports (first request → last answer) | {g('p1_post_s')} s | {g('p2_post_s')} s |")
    A(f"| report latency p50 / p99 / max | {g('p1_post_p50_ms')} / {g('p1_post_p99_ms')} / {g('p1_post_max_ms')} ms | "
      f"{g('p2_post_p50_ms')} / {g('p2_post_p99_ms')} / {g('p2_post_max_ms')} ms |")
    A(f"| time until every pod and VMI carries its ratios (first report → last write seen) | **{g('p1_done_s')} s** "
      f"(QPS-implied {implied:.1f} s) | already done ({g('p2_complete_before')} of {2 * n} objects) |")
    A(f"| API requests (all verbs) | {p1_req:,} | {int(g('p2_api_requests', 0)):,} |")
    A(f"| API requests per VMI | {g('p1_api_requests_per_vmi')} | {g('p2_api_requests_per_vmi')} |")
    A(f"| TokenReviews | {g('p1_tokenreviews')} | {g('p2_tokenreviews')} |")
    A(f"| pod patches (2xx) / pods written | {g('p1_writes_pods')} / {g('p1_written_pods')} | "
      f"{g('p2_writes_pods')} / {g('p2_written_pods')} |")
    A(f"| VMI writes (2xx) / VMIs written | {g('p1_writes_virtualmachineinstances')} / "
      f"{g('p1_written_virtualmachineinstances')} | {g('p2_writes_virtualmachineinstances')} / "
      f"{g('p2_written_virtualmachineinstances')} |")
    A(f"| successful writes per object (histogram) | pods {g('p1_writes_hist_pods')}; VMIs "
      f"{g('p1_writes_hist_virtualmachineinstances')} | pods {g('p2_writes_hist_pods')}; VMIs "
      f"{g('p2_writes_hist_virtualmachineinstances')} |")
    fw1 = {k[len("p1_failedwrite_"):]: v for k, v in r.items() if k.startswith("p1_failedwrite_")}
    fw2 = {k[len("p2_failedwrite_"):]: v for k, v in r.items() if k.startswith("p2_failedwrite_")}
    A(f"| refused writes (the VMI status probe: 422 on stock KubeVirt) | {fmt_ref(fw1)} | {fmt_ref(fw2)} |")
    A(f"| watch events on pods + VMIs (= changed objects) | {g('p1_watch_events')} | {g('p2_watch_events')} |")
    A(f"| HTTPS connections the {g('p1_client_threads')} client threads opened (keep-alive) | {g('p1_connections')} | {g('p2_connections')} |")
    A(f"| reporter RssAnon at the end of the pass | {mib(g('p1_rssanon'))} | {mib(g('p2_rssanon'))} |")
    A("")
    verbs = collections.defaultdict(dict)
    for k, v in r.items():
        m = re.match(r"^(p1|p2)_req_(.*)$", k)
        if m:
            verbs[m.group(2)][m.group(1)] = v
    A(f"API requests by verb, resource and code (fixture request log; the load client's own watches and "
      f"lists are left out). From its start until its caches had synced, the reporter made "
      f"{g('s0_api_requests')} requests (list pages of 100, watches, the Lease), not counted below.")
    A("")
    A("| verb_resource_code | pass 1 | pass 2 |")
    A("|---|---|---|")
    for k in sorted(verbs):
        A(f"| {k} | {verbs[k].get('p1', 0)} | {verbs[k].get('p2', 0)} |")
    A("")
    A("| reporter memory (`/proc/PID/status`) | |")
    A("|---|---|")
    A(f"| RssAnon after the caches synced ({n:,} pods + {n:,} VMIs), before any report | {mib(g('synced_rssanon'))} |")
    A(f"| VmRSS after the caches synced | {mib(g('synced_vmrss'))} |")
    A(f"| peak RssAnon (sampled every 0.5 s) | {mib(g('peak_rssanon'))} |")
    A(f"| VmHWM after pass 1, before the first `/metrics` scrape | {mib(g('vmhwm_before_scrape'))} |")
    A(f"| VmHWM after one `/metrics` scrape ({int(g('p1m_bytes', 0)):,} bytes: guest load of {n:,} VMs) | "
      f"{mib(g('vmhwm_after_scrape'))} |")
    A(f"| **VmHWM (peak total RSS)** | **{mib(g('vmhwm'))}** |")
    A(f"| RssAnon / VmRSS at the end | {mib(g('end_rssanon'))} / {mib(g('end_vmrss'))} |")
    if g("heap_system_bytes", ""):
        A(f"| malloc heap at the end: bytes in use / held from the system (glibc `malloc_stats`, via gdb) | "
          f"{int(g('heap_inuse_bytes')) / 1048576:.1f} MiB / {int(g('heap_system_bytes')) / 1048576:.1f} MiB |")
        A(f"| RssAnon after `malloc_trim(0)` (free heap pages returned; taken after every other figure) | "
          f"{mib(g('trimmed_rssanon'))} |")
    A(f"| threads | {g('threads')} |")
    A(f"| reporter CPU, pass 1 / pass 2 | {g('p1_reporter_cpu_s')} s / {g('p2_reporter_cpu_s')} s |")
    A(f"| fixture CPU, pass 1 / pass 2 | {g('p1_fixture_cpu_s')} s / {g('p2_fixture_cpu_s')} s |")
    A("")
    # Targets
    hwm_mib = int(g("vmhwm", 0)) / 1024.0
    one_write = (g("p1_max_writes_per_pods") == "1" and g("p1_max_writes_per_virtualmachineinstances") == "1"
                 and g("p1_written_pods") == str(n) and g("p1_written_virtualmachineinstances") == str(n)
                 and int(g("p2_writes_pods", 0)) == 0 and int(g("p2_writes_virtualmachineinstances", 0)) == 0)
    in_time = g("p1_done") == "1" and done_s <= 1.1 * implied
    met = lambda ok: "**met**" if ok else "**not met**"
    A("| target | measured | met? |")
    A("|---|---|---|")
    A(f"| peak RSS ≤ 64 MiB at {n:,} VMIs | VmHWM {hwm_mib:.1f} MiB | {met(hwm_mib <= 64)} |")
    A(f"| one write per changed object (pass 1: each pod and VMI written once; pass 2: none) | pods "
      f"{g('p1_writes_pods')} writes / {g('p1_written_pods')} written, VMIs "
      f"{g('p1_writes_virtualmachineinstances')} / {g('p1_written_virtualmachineinstances')}; pass 2 "
      f"{g('p2_writes_pods')} + {g('p2_writes_virtualmachineinstances')} | {met(one_write)} |")
    A(f"| all VMIs done within the QPS-implied time + 10% | {g('p1_done_s')} s vs. {1.1 * implied:.1f} s "
      f"({implied:.1f} s + 10%) | {met(in_time)} |")
    A("")
    if g("notes", ""):
        A(g("notes"))
        A("")
    A(f"Reproduce: `{g('command')}` from the repository root; without `--write` it only prints this section.")
    return "\n".join(lines) + "\n"


def cmd_render(a):
    r = {}
    with open(a.results) as f:
        for line in f:
            line = line.rstrip("\n")
            if "=" in line:
                k, v = line.split("=", 1)
                r[k] = v
    section = render(r)
    if not a.doc:
        sys.stdout.write(section)
        return
    with open(a.doc) as f:
        doc = f.read()
    block = f"{BEGIN}\n{section}{END}"
    if BEGIN in doc and END in doc:
        doc = doc[:doc.index(BEGIN)] + block + doc[doc.index(END) + len(END):]
    else:
        doc = doc.rstrip("\n") + "\n\n" + block + "\n"
    first = re.search(r"^<!-- ", doc, re.M)  # the first section's marker line
    head = doc[:first.start()] if first else doc
    if not any(l.startswith("| ") and "`bench/reporter.sh" in l for l in head.split("\n")):
        # Add the section's row to the table of sections (after its last row).
        lines = doc.split("\n")
        idx = max(i for i, l in enumerate(lines) if l.startswith("| ") and "`bench/" in l)
        lines.insert(idx + 1, TABLE_ROW)
        doc = "\n".join(lines)
    tmp = a.doc + ".tmp"
    with open(tmp, "w") as f:
        f.write(doc)
    os.replace(tmp, a.doc)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("port").set_defaults(fn=cmd_port)
    s = sub.add_parser("seed")
    s.add_argument("out"); s.add_argument("pods"); s.add_argument("n", type=int)
    s.add_argument("namespaces", type=int)
    s.set_defaults(fn=cmd_seed)
    s = sub.add_parser("tokens")
    s.add_argument("ready"); s.add_argument("pods"); s.add_argument("tokens")
    s.add_argument("audience", nargs="?", default=AUDIENCE_DEFAULT)
    s.add_argument("--threads", type=int, default=4)
    s.set_defaults(fn=cmd_tokens)
    s = sub.add_parser("run")
    s.add_argument("ready"); s.add_argument("pods"); s.add_argument("tokens"); s.add_argument("url")
    s.add_argument("ca"); s.add_argument("prefix")
    s.add_argument("--threads", type=int, default=4)
    s.add_argument("--timeout", type=float, default=1800)
    s.add_argument("--mode", choices=["annotations", "status"], default="annotations")
    s.add_argument("--expect-done", action="store_true", help="pass 2: all is written already")
    s.add_argument("--settle", type=float, default=5.0)
    s.set_defaults(fn=cmd_run)
    s = sub.add_parser("requests")
    s.add_argument("ready"); s.add_argument("pods"); s.add_argument("prefix")
    s.set_defaults(fn=cmd_requests)
    s = sub.add_parser("reset-requests")
    s.add_argument("ready")
    s.set_defaults(fn=cmd_reset_requests)
    s = sub.add_parser("metrics")
    s.add_argument("url"); s.add_argument("prefix")
    s.set_defaults(fn=cmd_metrics)
    s = sub.add_parser("render")
    s.add_argument("results"); s.add_argument("--doc")
    s.set_defaults(fn=cmd_render)
    a = p.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
