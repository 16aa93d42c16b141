#!/usr/bin/env python3
"""A Kubernetes API server fixture for the integration tests: serves pods,
KubeVirt VMIs and KubeVirt CRs, leases and TokenReview over HTTPS with
bearer-token auth. See README.md beside this file."""

import argparse
import json
import os
import signal
import ssl
import subprocess
import sys
import threading

from auth import Authenticator
from http_api import DEFAULT_VERSION, ApiServer, Server
from pod_validation import ServerVersion
from store import Store


def ensure_certificates(state_dir):
    """A CA and a server certificate for 127.0.0.1/localhost, made with the
    openssl CLI once per state directory (reused on restart)."""
    ca_crt, ca_key = os.path.join(state_dir, "ca.crt"), os.path.join(state_dir, "ca.key")
    crt, key = os.path.join(state_dir, "server.crt"), os.path.join(state_dir, "server.key")
    if all(os.path.exists(p) for p in (ca_crt, crt, key)):
        return ca_crt, crt, key
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    run("req", "-x509", *ec, "-keyout", ca_key, "-out", ca_crt, "-days", "3650",
        "-subj", "/CN=kube-apiserver-fixture-ca",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    csr, ext = os.path.join(state_dir, "server.csr"), os.path.join(state_dir, "server.ext")
    run("req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=kube-apiserver-fixture")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                "extendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n")
    run("x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key, "-CAcreateserial",
        "-out", crt, "-days", "3650", "-extfile", ext)
    return ca_crt, crt, key


def write_kubeconfig(path, port, ca, token):
    with open(path, "w") as f:
        f.write(f"""apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority: {ca}
    server: https://127.0.0.1:{port}
  name: fixture
contexts:
- context:
    cluster: fixture
    namespace: default
    user: fixture-admin
  name: fixture
current-context: fixture
preferences: {{}}
users:
- name: fixture-admin
  user:
    token: {token}
""")


def write_atomically(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--state-dir", required=True,
                   help="where certificates, kubeconfig and ready.json go")
    p.add_argument("--prune-vmi-status", action=argparse.BooleanOptionalAction, default=True,
                   help="serve KubeVirt's stock VMI schema, which prunes the VEP 156 ratio "
                        "fields (default); --no-prune-vmi-status serves a variant that has them")
    p.add_argument("--tls-cert", help="server certificate (default: generated)")
    p.add_argument("--tls-key", help="server key (with --tls-cert)")
    p.add_argument("--tls-ca", help="CA for clients to trust (default: --tls-cert)")
    p.add_argument("--admin-token", help="admin bearer token (default: random)")
    p.add_argument("--bookmark-interval", type=float, default=60.0,
                   help="seconds between watch bookmarks (the real server: about 60)")
    p.add_argument("--history-size", type=int, default=100000,
                   help="watch events kept per resource before old ones expire")
    p.add_argument("--seed", help="JSON file: a list of objects or {\"items\": [...]}")
    p.add_argument("--server-version", default=DEFAULT_VERSION,
                   help="Kubernetes version served on /version and modelled for pods: before "
                        "1.29 an init container's restartPolicy is dropped, so a native "
                        f"sidecar with probes is refused (default {DEFAULT_VERSION})")
    p.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = p.parse_args(argv)
    try:
        ServerVersion(args.server_version)
    except ValueError as e:
        p.error(f"--server-version: {e}")
    if bool(args.tls_cert) != bool(args.tls_key):
        p.error("--tls-cert and --tls-key go together")
    if args.bookmark_interval <= 0 or args.history_size <= 0:
        p.error("--bookmark-interval and --history-size must be positive")
    return args


def main(argv=None):
    args = parse_args(argv)
    state_dir = os.path.abspath(args.state_dir)
    os.makedirs(state_dir, exist_ok=True)
    if args.tls_cert:
        crt, key = os.path.abspath(args.tls_cert), os.path.abspath(args.tls_key)
        ca = os.path.abspath(args.tls_ca or args.tls_cert)
    else:
        ca, crt, key = ensure_certificates(state_dir)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(crt, key)

    store = Store(history_limit=args.history_size)
    auth = Authenticator(store, args.admin_token)
    api = ApiServer(store, auth, args.prune_vmi_status, args.bookmark_interval, args.verbose,
                    args.server_version)
    if args.seed:
        with open(args.seed) as f:
            seed = json.load(f)
        api.load(seed.get("items") if isinstance(seed, dict) else seed)

    server = Server(("127.0.0.1", args.port), api, context)
    port = server.server_address[1]
    kubeconfig = os.path.join(state_dir, "kubeconfig")
    write_kubeconfig(kubeconfig, port, ca, auth.admin_token)
    # The socket listens already: connections queue until serve_forever runs.
    write_atomically(os.path.join(state_dir, "ready.json"), json.dumps(
        {"port": port, "ca": ca, "token": auth.admin_token, "kubeconfig": kubeconfig}))
    print(f"kube-apiserver fixture serving on https://127.0.0.1:{port}", flush=True)

    def stop(*_):
        threading.Thread(target=server.shutdown, daemon=True).start()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        try:
            os.remove(os.path.join(state_dir, "ready.json"))
        except FileNotFoundError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
