"""A stand-in cluster for one launcher pod, for scripts/run-demo.sh: the
API-server fixture (tests/apiserver) seeded with a virt-launcher pod and its
running VMI as KubeVirt makes them, and a real status-reporter serving report
intake over HTTPS on loopback against it. Built from the status-reporter's
integration-test harness (status-reporter/tests/integration/harness.py), the
same helpers its sidecar-to-reporter test uses: nothing here is a copy.

    python3 cluster.py --status-reporter PATH --dir DIR --namespace NS --vmi NAME
                       --pod NAME --node NODE --cpu-request 100m --memory-request 228Mi
                       --memory-overhead-bytes N [--sidecar-uid UID]

Once the reporter leads and its caches are synced, it writes DIR/cluster.env
(shell assignments: the reporter's report URL, its CA, the sidecar's
pod-bound token file, the pod's UID, and how to read the fixture and the
reporter's /metrics) and then runs until SIGTERM or SIGINT; every process it
started ends with it, also when it is killed (the harness's PR_SET_PDEATHSIG)."""

import argparse
import json
import os
import shlex
import signal
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.join(REPO, "status-reporter", "tests", "integration"))
import harness  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--status-reporter", required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--namespace", required=True)
    ap.add_argument("--vmi", required=True)
    ap.add_argument("--pod", required=True)
    ap.add_argument("--node", required=True)
    ap.add_argument("--cpu-request", required=True)
    ap.add_argument("--memory-request", required=True)
    ap.add_argument("--memory-overhead-bytes", required=True, type=int)
    ap.add_argument("--sidecar-uid", type=int, help="owner of the token file (the sidecar's user)")
    ap.add_argument("--settle", type=float, default=30, help="seconds the reporter gets to lead and sync")
    args = ap.parse_args()
    harness.STATUS_REPORTER = args.status_reporter

    cert, key = harness.serving_certificate(args.dir)
    # The fixture's default: a stock KubeVirt VMI schema that prunes the VEP
    # 156 status fields, so the reporter records the ratios as VMI annotations.
    cluster = harness.Cluster()
    ns = args.namespace
    pod = cluster.ok("POST", f"/api/v1/namespaces/{ns}/pods?{harness.OWN}", {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": args.pod,
                     "labels": {"kubevirt.io": "virt-launcher", "kubevirt.io/created-by": "demo-vmi-uid"},
                     "annotations": {"kubevirt.io/domain": args.vmi,
                                     "kubevirt.io/memory-overhead-bytes": str(args.memory_overhead_bytes)}},
        "spec": {"nodeName": args.node, "serviceAccountName": "launcher",
                 "containers": [{"name": "compute", "resources": {"requests": {
                     "cpu": args.cpu_request, "memory": args.memory_request}}}]}})
    uid = pod["metadata"]["uid"]
    cluster.load_vmi(ns, args.vmi, args.node, {uid: args.node})
    token_file = os.path.join(args.dir, "token")
    with open(token_file, "w") as f:
        f.write(cluster.token(ns, args.pod, uid))
    if args.sidecar_uid is not None:
        os.chown(token_file, args.sidecar_uid, -1)

    reporter = harness.Reporter(cluster.kubeconfig, "status-reporter-demo", args.dir, cert, key)
    harness.wait_until(reporter.serving, args.settle,
                       lambda: f"the status-reporter to lead and sync\n{reporter.log_tail()}")

    fx = cluster.fx
    with open(os.path.join(fx.dir, "ready.json")) as f:
        api_ca = json.load(f)["ca"]
    env = {
        "REPORTER_URL": f"https://127.0.0.1:{reporter.https_port}/v1/reports",
        "REPORTER_CA": cert,
        "REPORTER_METRICS": f"http://127.0.0.1:{reporter.http_port}/metrics",
        "REPORTER_LOG": reporter.log_path,
        "TOKEN_FILE": token_file,
        "POD_UID": uid,
        "API": f"https://127.0.0.1:{fx.port}",
        "API_CA": api_ca,
        "API_TOKEN": fx.token,
    }
    tmp = os.path.join(args.dir, "cluster.env.tmp")
    with open(tmp, "w") as f:
        f.writelines(f"{k}={shlex.quote(v)}\n" for k, v in env.items())
    os.rename(tmp, os.path.join(args.dir, "cluster.env"))
    print(f"ready: {env['REPORTER_URL']}", flush=True)
    while True:  # until SIGTERM or SIGINT, on which the harness stops the reporter and the fixture
        signal.pause()


if __name__ == "__main__":
    main()
