#!/usr/bin/env python3
"""A tiny HTTPS server for tests/integration/report_tls_test.cpp (standard library only).

  tls_server.py MODE CERT KEY PORT_FILE

Listens on 127.0.0.1, an ephemeral port written to PORT_FILE once listening.
MODE says how a POST is answered:
  echo     201 with Content-Length; the body is JSON: the request's
           Authorization, Host, Content-Type, body and the SNI the client sent
  chunked  200 with a chunked body "accepted"
  refuse   403 with a one-line reason
  hang     reads the request and never answers (the client's deadline must end it)
  big      403 with a 20 KiB body of "x"
  flood    200 with a 1 MiB body
"""
import http.server
import json
import os
import ssl
import sys
import threading

mode, cert, key, port_file = sys.argv[1:5]
last_sni = {"name": None}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
        if mode == "hang":
            threading.Event().wait()  # never answers; the process is killed by the test
        if mode == "echo":
            out = json.dumps({
                "authorization": self.headers.get("Authorization", ""),
                "host": self.headers.get("Host", ""),
                "content_type": self.headers.get("Content-Type", ""),
                "connection": self.headers.get("Connection", ""),
                "body": body,
                "sni": last_sni["name"],
            }).encode()
            self.send_response(201)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)
        elif mode in ("big", "flood"):
            out = b"x" * (20 * 1024 if mode == "big" else 1024 * 1024)
            self.send_response(403 if mode == "big" else 200)
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            try:
                self.wfile.write(out)
            except OSError:
                pass  # the client stops reading a flood
        elif mode == "chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"acc", b"epted"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        else:
            out = b"pod is not the VMI's active pod\n"
            self.send_response(403)
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)
        self.wfile.flush()


def sni(sock, name, ctx):
    last_sni["name"] = name


ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
ctx.sni_callback = sni
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
server.socket = ctx.wrap_socket(server.socket, server_side=True)
tmp = port_file + ".tmp"
with open(tmp, "w") as f:
    f.write(str(server.server_address[1]))
os.replace(tmp, port_file)
server.serve_forever()
