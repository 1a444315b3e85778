#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Graceful shutdown G-01/G-02: on SIGTERM the listener closes at once (new
connects refused), idle keep-alive connections close, an active stream runs
to its end and the process exits 0; a stream longer than --drain-timeout is
cut at the cap and the process still exits 0 within cap + 1 s."""
import atexit
import os
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403

deadline(40)


def chunk(b):
    return b"%x\r\n%s\r\n" % (len(b), b)


def sse(conn):
    req = conn.recv_request()
    if req is None:
        return
    n = int(req.header("x-events", "10"))
    conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
    for i in range(n):
        if not conn.send(chunk(b"data: %d\n\n" % i)):
            return
        time.sleep(0.15)
    conn.send(chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
    conn.wait_eof(5)


be = FakeBackend(sse, name="sse")


def start_stream(p, n):
    s = connect(p.addr, timeout=10)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nX-Events: %d\r\nContent-Length: 2\r\n\r\n{}" % n)
    first = s.recv(65536)
    return s, first


def refused(addr):
    try:
        c = socket.create_connection(split_addr(addr), timeout=1)
    except ConnectionRefusedError:
        return True
    except OSError:
        return True
    c.close()
    return False


# G-01
p = lb("--backend", be.backend_arg(), "--drain-timeout", "10s")
idle = connect(p.addr)
r = request(p.addr, "POST", "/v1/chat/completions", b"{}", headers={"X-Events": "0"}, conn=idle)
ok(r.status == 200, "idle keep-alive connection set up")
s, first = start_stream(p, 10)
ok(first.startswith(b"HTTP/1.1 200"), "G-01 stream started")
t0 = time.time()
p.p.send_signal(signal.SIGTERM)
time.sleep(0.1)
ok(refused(p.addr), "G-01 new connects refused at once after SIGTERM")
out, closed = read_until_close(idle, 1)
ok(closed and out == b"", "G-01 idle keep-alive connection closed")
rest, closed = read_until_close(s, 5)
body = first + rest
ok(body.endswith(b"0\r\n\r\n") and b"data: 9\n\n" in body and b"[DONE]" in body,
   "G-01 the stream finished with all events and its terminal chunk")
ok(b"Connection: close" in body.split(b"\r\n\r\n")[0] or closed, "G-01 stream connection closed after it")
try:
    rc = p.p.wait(5)
except Exception:  # noqa: BLE001
    rc = None
is_(rc, 0, "G-01 exit 0 (%.2fs after SIGTERM)" % (time.time() - t0))
s.close()

# G-02
p = lb("--backend", be.backend_arg(), "--drain-timeout", "1s")
s, first = start_stream(p, 100)
t0 = time.time()
p.p.send_signal(signal.SIGTERM)
rest, closed = read_until_close(s, 5)
el = time.time() - t0
ok(closed and 0.8 < el < 1.6, "G-02 stream longer than the cap closed at --drain-timeout 1s (%.2fs)" % el)
ok(not rest.endswith(b"0\r\n\r\n"), "G-02 forced close is a truncation (no terminal chunk)")
try:
    rc = p.p.wait(3)
except Exception:  # noqa: BLE001
    rc = None
el = time.time() - t0
is_(rc, 0, "G-02 exit 0")
ok(el < 2.0, "G-02 exited within cap + 1 s (%.2fs)" % el)
s.close()
# G-03: --drain-hook, the drain a pod's preStop httpGet hook can start (a
# GET, no token: the kubelet sends neither a method of its choice nor a
# Secret); the path is the credential.
HOOK = "/hooks/drain-5f1c2e9a7b"
for bad in ("/short", "/api/drain-0123456789abcdef", "/hooks/drain 0123456789"):
    r = subprocess.run([LB, "-t", "--backend", be.backend_arg(), "--drain-hook", bad],
                       capture_output=True, timeout=10)
    ok(r.returncode != 0 and b"drain-hook" in r.stderr, "G-03 --drain-hook %r refused at start" % bad)
tf = tempfile.NamedTemporaryFile("w", delete=False, suffix=".token")
tf.write("s3cret-token-0123456789abcdef\n")
tf.close()
atexit.register(lambda: os.unlink(tf.name))
p = lb("--backend", be.backend_arg(), "--drain-hook", HOOK, "--admin-token-file", tf.name)
is_(request(p.admin, "POST", HOOK, b"{}", timeout=5).status, 405, "G-03 the hook takes GET only")
is_(request(p.admin, "GET", HOOK + "x", timeout=5).status, 404, "G-03 another path is not the hook")
is_(request(p.admin, "GET", "/readyz", timeout=5).status, 200, "G-03 ready before the hook")
r = request(p.admin, "GET", HOOK, timeout=5)
ok(r.status == 200 and r.body == b"draining\n", "G-03 GET on the hook, without the token, drains")
try:
    rc = p.p.wait(5)
except Exception:  # noqa: BLE001
    rc = None
is_(rc, 0, "G-03 the drained process exits 0")

done()
