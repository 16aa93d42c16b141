"""The status-reporter's two listeners under the peers a production server
meets: slow TLS handshakes, silent and byte-a-second connections, chunked
uploads larger than any report, a worker pool held up by a slow API server,
and IPv6. The real binary against the API-server fixture.

    python3 listeners_test.py --status-reporter=PATH [-v] [Class.test]

The bounds compare with what the bugs these tests guard against cost
(tens of seconds, hundreds of MiB), not with an idle machine's speed."""

import json
import os
import re
import select
import socket
import ssl
import sys
import threading
import time
import unittest
import uuid

import harness
from harness import Cluster, Reporter, report, unique, wait_until

SETTLE = 20
# The reporter's own limits (status-reporter/src/servers.h).
REQUEST_DEADLINE = 10  # seconds for a whole request, headers and body
MAX_REPORT_BYTES = 16 * 1024
# A valid report or AdmissionReview must be answered within this while
# attackers hold connections; starved, they took 20-46 s.
ANSWER_BOUND = 3.0


class Trickler:
    """Connections that send `payload` one byte every `interval` seconds, on
    one thread, until stopped; plus connections that send nothing."""

    def __init__(self, host, port, slow=0, silent=0, payload=b"", interval=0.5):
        self.socks = []
        self.slow = []
        for i in range(slow + silent):
            s = socket.create_connection((host, port), timeout=5)
            self.socks.append(s)
            if i < slow:
                self.slow.append(s)
        self.payload = payload
        self.interval = interval
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        i = 0
        while not self.stop_event.wait(self.interval) and i < len(self.payload):
            for s in self.slow:
                try:
                    s.send(self.payload[i:i + 1])
                except OSError:
                    pass
            i += 1

    def close(self):
        self.stop_event.set()
        self.thread.join(5)
        for s in self.socks:
            s.close()


def timed(fn, *args):
    start = time.monotonic()
    value = fn(*args)
    return value, time.monotonic() - start


def plain_pod_review(ns):
    """An AdmissionReview of a pod that is not a launcher: allowed unchanged,
    with no lookup, so its answer time is the listener's alone."""
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": ns},
           "spec": {"containers": [{"name": "web", "image": "nginx"}]}}
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": str(uuid.uuid4()), "kind": {"group": "", "version": "v1", "kind": "Pod"},
                        "resource": {"group": "", "version": "v1", "resource": "pods"},
                        "namespace": ns, "operation": "CREATE", "object": pod, "dryRun": False,
                        "userInfo": {"username": "system:serviceaccount:kubevirt:kubevirt-controller"}}}


def app_data_waiting(sock):
    """Bytes of an answer waiting on TLS socket `sock`, b"" at end of stream,
    None if nothing came. (The raw socket is also readable for TLS 1.3
    session tickets, which are not an answer.)"""
    if not sock.pending() and not select.select([sock], [], [], 0)[0]:
        return None
    timeout = sock.gettimeout()
    sock.settimeout(0)
    try:
        return sock.recv(4096)
    except (ssl.SSLWantReadError, BlockingIOError):
        return None
    except (ssl.SSLError, OSError):
        return b""
    finally:
        sock.settimeout(timeout)


def read_response_head(sock, timeout, data=b""):
    """(status, lower-cased raw head+body read so far) of an HTTP answer on
    `sock`, reading until the peer closes or `timeout`."""
    sock.settimeout(timeout)
    try:
        while b"\r\n\r\n" not in data or len(data) < 4096:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    except (socket.timeout, ssl.SSLError, OSError):
        pass
    m = re.match(rb"HTTP/1\.1 (\d{3})", data)
    return (int(m.group(1)) if m else None), data.decode(errors="replace")


class ListenersTest(unittest.TestCase):
    """One fixture and one leading reporter; a launcher pod whose report is
    valid, to be posted while the listeners are under attack."""

    @classmethod
    def setUpClass(cls):
        cls.dir = harness.temp_dir("status-reporter-listeners-")
        cls.cert, cls.key = harness.serving_certificate(cls.dir)
        cls.cluster = Cluster("--no-prune-vmi-status")
        cls.addClassCleanup(cls.cluster.stop)
        cls.reporter = Reporter(cls.cluster.kubeconfig, "reporter-l", cls.dir, cls.cert, cls.key)
        cls.addClassCleanup(cls.reporter.kill)
        wait_until(cls.reporter.serving, SETTLE, "the reporter to lead and sync")
        cls.ns = unique("ns")
        cls.uid = cls.cluster.launcher(cls.ns, "vm-a", "virt-launcher-vm-a", "node-1")
        cls.token = cls.cluster.token(cls.ns, "virt-launcher-vm-a")
        cls.body = report(cls.ns, "vm-a", "virt-launcher-vm-a", cls.uid, "node-1")
        wait_until(lambda: cls.reporter.post_report(cls.body, cls.token)[0] == 202, SETTLE,
                   "the first report to be accepted", interval=0.2)

    def tearDown(self):
        self.cluster.reset_faults()

    def assert_alive(self):
        self.assertIsNone(self.reporter.proc.poll(), self.reporter.log_tail())

    def post_mutate(self, timeout=10):
        import http.client
        conn = http.client.HTTPSConnection("127.0.0.1", self.reporter.https_port, context=self.reporter.ssl,
                                           timeout=timeout)
        try:
            conn.request("POST", "/mutate?timeout=10s", body=json.dumps(plain_pod_review(self.ns)).encode(),
                         headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read())
        finally:
            conn.close()

    def counter(self, metric, **labels):
        """A counter on the reporter's /metrics, as an SRE reads it (0 when absent)."""
        return self.reporter.metric(metric, **labels) or 0

    def tls(self, timeout=10):
        raw = socket.create_connection(("127.0.0.1", self.reporter.https_port), timeout=timeout)
        return self.reporter.ssl.wrap_socket(raw, server_hostname="127.0.0.1")

    def test_reports_and_admission_reviews_are_answered_while_slow_peers_hold_the_https_port(self):
        attack = Trickler("127.0.0.1", self.reporter.https_port, slow=4, silent=40, payload=harness.client_hello())
        try:
            time.sleep(1)  # the handshakes are under way
            (status, body), took = timed(self.reporter.post_report, self.body, self.token)
            self.assertEqual((status, body), (202, {"result": "accepted"}))
            self.assertLess(took, ANSWER_BOUND, "a valid report waited behind slow peers")
            (status, review), took = timed(self.post_mutate)
            self.assertEqual(status, 200)
            self.assertTrue(review["response"]["allowed"])
            self.assertLess(took, ANSWER_BOUND, "an AdmissionReview waited behind slow peers")
            # And the probes on the metrics port are untouched.
            (status, _), took = timed(self.reporter.get, "/healthz")
            self.assertEqual(status, 200)
            self.assertLess(took, ANSWER_BOUND)
        finally:
            attack.close()
        self.assert_alive()

    def test_healthz_answers_while_slow_clients_hold_the_metrics_port(self):
        header = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200
        attack = Trickler("127.0.0.1", self.reporter.http_port, slow=4, silent=10, payload=header)
        try:
            time.sleep(1)
            for path in ("/healthz", "/readyz"):
                (status, text), took = timed(self.reporter.get, path)
                self.assertEqual((status, text), (200, "ok\n"), path)
                self.assertLess(took, ANSWER_BOUND, f"{path} waited behind slow clients")
        finally:
            attack.close()

    def test_a_byte_a_second_client_is_cut_off_at_the_request_deadline(self):
        timed_out = self.counter("status_reporter_requests_timed_out_total", listener="https")
        sock = self.tls()
        start = time.monotonic()
        sock.sendall(b"POST /v1/reports HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n")
        closed_after = None
        sent = 0
        try:
            while time.monotonic() - start < 2 * REQUEST_DEADLINE + 5:
                time.sleep(1.0)
                data = app_data_waiting(sock)
                if data is not None:  # closed, or answered (408) instead of waiting for the rest
                    closed_after = time.monotonic() - start
                    break
                try:
                    sock.send(b"{")
                    sent += 1
                except (ssl.SSLError, OSError):
                    closed_after = time.monotonic() - start
                    break
        finally:
            sock.close()
        self.assertIsNotNone(closed_after, f"a client sending a byte a second was still served after "
                                           f"{2 * REQUEST_DEADLINE + 5} s ({sent} bytes)")
        self.assertLess(closed_after, REQUEST_DEADLINE + 5)
        self.assertGreater(closed_after, REQUEST_DEADLINE - 1, "cut off before its deadline")
        self.assertEqual(self.counter("status_reporter_requests_timed_out_total", listener="https"),
                         timed_out + 1)

    def test_a_chunked_upload_over_the_limit_is_refused_with_413_and_memory_stays_bounded(self):
        # No token at all: the limit holds before anybody is authenticated.
        per_upload = 32 * 2**20
        chunk = b"{" * 65536
        frame = b"%x\r\n" % len(chunk) + chunk + b"\r\n"
        before = self.reporter.rss_kib("VmHWM")
        too_large = self.counter("status_reporter_bodies_too_large_total", endpoint="reports")
        results = [None] * 4

        def upload(i):
            sock = self.tls(timeout=30)
            sent = 0
            answer = None
            try:
                sock.sendall(b"POST /v1/reports HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n")
                while sent < per_upload:
                    answer = app_data_waiting(sock)
                    if answer is not None:
                        break  # the answer came: stop sending
                    try:
                        sock.sendall(frame)
                    except (ssl.SSLError, OSError):
                        break
                    sent += len(chunk)
                results[i] = (sent,) + read_response_head(sock, 10, answer or b"")
            finally:
                sock.close()

        threads = [threading.Thread(target=upload, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assert_alive()
        grown_mib = (self.reporter.rss_kib("VmHWM") - before) / 1024
        for sent, status, text in results:
            self.assertEqual(status, 413, f"after {sent} bytes: {text[:300]!r}")
            self.assertIn("connection: close", text.lower())
            self.assertIn(f'{{"error":"body larger than {MAX_REPORT_BYTES} bytes"}}', text)
            self.assertLess(sent, per_upload, "the whole upload was read before the refusal")
        self.assertLess(grown_mib, 24, f"peak RSS grew by {grown_mib:.0f} MiB for 4 refused uploads")
        self.assertEqual(self.counter("status_reporter_bodies_too_large_total", endpoint="reports"),
                         too_large + 4)

    def test_a_declared_length_over_the_targets_limit_is_refused_before_the_body(self):
        reports = self.counter("status_reporter_bodies_too_large_total", endpoint="reports")
        webhook = self.counter("status_reporter_bodies_too_large_total", endpoint="webhook")
        for path, length, limit in (("/v1/reports", MAX_REPORT_BYTES + 1, MAX_REPORT_BYTES),
                                    ("/v1/reports", 3 * 2**20, MAX_REPORT_BYTES),
                                    ("/mutate?timeout=10s", 3 * 2**20, 2 * 2**20)):
            sock = self.tls()
            try:
                sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                             f"Content-Length: {length}\r\n\r\n".encode())
                status, text = read_response_head(sock, 10)
            finally:
                sock.close()
            self.assertEqual(status, 413, f"{path} with {length} bytes: {text[:200]!r}")
            self.assertIn(f'{{"error":"body larger than {limit} bytes"}}', text)
        self.assertEqual(self.counter("status_reporter_bodies_too_large_total", endpoint="reports"),
                         reports + 2)
        self.assertEqual(self.counter("status_reporter_bodies_too_large_total", endpoint="webhook"),
                         webhook + 1)

    def test_a_full_worker_pool_answers_503_at_once_and_admission_is_not_held_up(self):
        # Every TokenReview takes 4 s: the report workers fill and their queue with them.
        tokens = [self.cluster.token(self.ns, "virt-launcher-vm-a") for _ in range(80)]
        full = self.counter("status_reporter_pool_full_total", pool="reports")
        self.cluster.faults({"resource": "tokenreviews", "delaySeconds": 4, "count": -1})
        answers = [None] * len(tokens)

        def post(i):
            try:
                answers[i] = timed(self.reporter.post_report, self.body, tokens[i])
            except Exception as e:  # noqa: BLE001  (a timeout is an answer here)
                answers[i] = ((None, repr(e)), 99)

        threads = [threading.Thread(target=post, args=(i,)) for i in range(len(tokens))]
        for t in threads:
            t.start()
        time.sleep(1.5)
        (status, review), took = timed(self.post_mutate)
        self.assertEqual(status, 200)
        self.assertLess(took, ANSWER_BOUND, "an AdmissionReview waited behind TokenReviews")
        for t in threads:
            t.join(60)
        busy = [(a, t) for a, t in answers if a[0] == 503 and a[1] and a[1].get("result") == "busy"]
        self.assertTrue(busy, f"no report was refused as busy: {sorted(set(a[0] for a, _ in answers))}")
        self.assertLess(max(t for _, t in busy), ANSWER_BOUND, "a full pool answered 503 late")
        # At least every 503 a client saw (a request that outwaited its client in the queue is
        # answered 503 too, to nobody).
        self.assertGreaterEqual(self.counter("status_reporter_pool_full_total", pool="reports"),
                                full + len(busy))
        self.assertEqual(self.counter("status_reporter_pool_full_total", pool="webhook"), 0)
        self.cluster.reset_faults()
        wait_until(lambda: self.reporter.post_report(self.body, self.token)[0] == 202, SETTLE,
                   "reports to be accepted again", interval=0.2)

    def test_unfinished_handshakes_are_counted_as_timeouts(self):
        before = self.counter("status_reporter_tls_handshake_failures_total", reason="timeout")
        # Two that never speak, two that trickle a ClientHello: all outlive the 5 s handshake deadline.
        attack = Trickler("127.0.0.1", self.reporter.https_port, slow=2, silent=2,
                          payload=harness.client_hello(), interval=1.0)
        try:
            wait_until(lambda: self.counter("status_reporter_tls_handshake_failures_total",
                                            reason="timeout") >= before + 4,
                       15, "four handshake timeouts on /metrics", interval=0.5)
        finally:
            attack.close()
        self.assertEqual(self.counter("status_reporter_tls_handshake_failures_total", reason="timeout"),
                         before + 4)

    def test_connections_over_the_metrics_ports_budget_are_closed_at_accept_and_counted(self):
        before = self.counter("status_reporter_connections_refused_total", listener="http")
        socks = []
        try:
            for _ in range(140):  # the metrics port's budget is 128
                socks.append(socket.create_connection(("127.0.0.1", self.reporter.http_port), timeout=5))
            # The reporter closes the ones over budget: their reads end at once.
            closed = 0
            deadline = time.monotonic() + 5
            for s in socks:
                s.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    if s.recv(1) == b"":
                        closed += 1
                except (socket.timeout, OSError):
                    pass
        finally:
            for s in socks:
                s.close()
        wait_until(lambda: self.reporter.get("/healthz")[0] == 200, 15, "the metrics port to answer again")
        refused = self.counter("status_reporter_connections_refused_total", listener="http") - before
        self.assertGreaterEqual(refused, 12)
        self.assertEqual(refused, closed, "refused connections are the ones closed at once")
        self.assertEqual(self.counter("status_reporter_connections_refused_total", listener="https"), 0)


def ipv6_loopback():
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@unittest.skipUnless(ipv6_loopback(), "no IPv6 loopback on this host")
class IPv6Test(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = harness.temp_dir("status-reporter-ipv6-")
        cls.cert, cls.key = harness.serving_certificate(cls.dir)
        cls.cluster = Cluster()
        cls.addClassCleanup(cls.cluster.stop)

    def start(self, identity, https_address, metrics_address, host):
        r = Reporter(self.cluster.kubeconfig, identity, self.dir, self.cert, self.key,
                     https_address=https_address, metrics_address=metrics_address, host=host)
        self.addCleanup(r.kill)
        return r

    def test_a_listener_on_the_ipv6_loopback_answers(self):
        r = self.start("reporter-v6", "[::1]:0", "[::1]:0", "::1")
        self.assertEqual(r.get("/healthz"), (200, "ok\n"))
        self.assert_https_answers(r)

    def test_the_default_wildcard_is_dual_stack(self):
        r = self.start("reporter-dual", ":0", ":0", "::1")
        self.assertEqual(r.get("/healthz"), (200, "ok\n"))
        self.assert_https_answers(r)
        r.host = "127.0.0.1"
        self.assertEqual(r.get("/healthz"), (200, "ok\n"))
        self.assert_https_answers(r)

    def assert_https_answers(self, r):
        # The report endpoint answers over TLS; which refusal (no token, or
        # not the leader: both tests' reporters share one Lease) does not matter.
        status, body = r.post_report({}, None)
        self.assertIn(status, (401, 503), body)
        self.assertIn(body["result"], ("unauthenticated", "not_leader"))


if __name__ == "__main__":
    unittest.main(argv=harness.take_binary_args(sys.argv))
