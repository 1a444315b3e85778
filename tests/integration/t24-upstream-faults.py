#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Upstream faults F-01..F-06 (docs/hardening.md, "Retries" and the F-cases of
"Failure and attack catalogue"): refused backend skipped and marked down;
all refused -> fast 503; connect timeout against a listener whose backlog
is full -> next backend, else 504; a backend that never answers -> 504
after --response-timeout with no retry; 503 retried once elsewhere,
forwarded when alone; a reset after the status line closes the client
connection with nothing appended and no retry; a reset before any byte is
retried."""
import json
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403

deadline(55)


def services(p):
    return json.loads(admin_request(p, "GET", "/api/services").body)


# ---------------------------------------------------------------- F-01
good = FakeBackend(name="good")
bad = refused_addr()
p = lb("--backend", "bad=%s" % bad, "--backend", good.backend_arg(), "--policy", "wrr")
sts = [request(p.addr, "GET", "/v1/x").status for _ in range(6)]
is_(sts, [200] * 6, "F-01 refused + healthy: every request 200")
is_(good.nrequests, 6, "F-01 healthy backend served all 6")
st = {s["name"]: s.get("state") for s in services(p)}
is_(st.get("bad"), "down", "F-01 refused backend shown down in /api/services")
is_(st.get("good"), "up", "F-01 healthy backend shown up")
p.stop()

# ---------------------------------------------------------------- F-02
p = lb("--backend", "a=%s" % refused_addr(), "--backend", "b=%s" % refused_addr())
for i in range(3):
    t0 = time.time()
    r = request(p.addr, "POST", "/v1/chat/completions", {"model": "m"})
    el = time.time() - t0
    ok(r.status == 503 and el < 1.0, "F-02 all refused, request %d: 503 in %.3fs (got %d)" %
       (i + 1, el, r.status))
    ok(r.json()["error"]["type"] == "server_error", "F-02 OpenAI-style error body")
p.stop()

# ---------------------------------------------------------------- F-03
# A listener with backlog 0 whose queue we fill: the kernel drops further
# SYNs, so connect() neither succeeds nor fails (a connect timeout).
bh = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
bh.bind(("127.0.0.1", 0))
bh.listen(0)
bh_addr = "127.0.0.1:%d" % bh.getsockname()[1]
fillers = []
for _ in range(4):
    f = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    f.setblocking(False)
    try:
        f.connect(bh.getsockname())
    except BlockingIOError:
        pass
    fillers.append(f)
time.sleep(0.3)
probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
probe.settimeout(0.5)
try:
    probe.connect(bh.getsockname())
    blackhole_works = False
except (socket.timeout, OSError):
    blackhole_works = True
probe.close()
ok(blackhole_works, "F-03 full-backlog listener makes connect() hang on this kernel")

good = FakeBackend(name="good")
p = lb("--backend", "hole=%s" % bh_addr, "--backend", good.backend_arg(), "--policy", "wrr",
       "--connect-timeout", "500ms")
t0 = time.time()
sts = [request(p.addr, "POST", "/v1/chat/completions", {"model": "m"}).status for _ in range(2)]
el = time.time() - t0
is_(sts, [200, 200], "F-03 connect timeout + healthy: 200 via the next backend")
ok(0.4 < el < 2.0, "F-03 the connect timeout was waited once, then the hole ejected (%.2fs)" % el)
p.stop()
p = lb("--backend", "hole=%s" % bh_addr, "--connect-timeout", "500ms")
t0 = time.time()
r = request(p.addr, "POST", "/v1/chat/completions", {"model": "m"})
el = time.time() - t0
ok(r.status == 504 and 0.4 < el < 1.5, "F-03 only backend times out connecting: 504 in %.2fs (got %d)" %
   (el, r.status))
p.stop()
for f in fillers:
    f.close()
bh.close()


# ---------------------------------------------------------------- F-04
def silent(conn):
    conn.recv_request()
    conn.wait_eof(20)


s1 = FakeBackend(silent, name="s1")
s2 = FakeBackend(silent, name="s2")
p = lb("--backend", s1.backend_arg(), "--backend", s2.backend_arg(), "--response-timeout", "1s")
t0 = time.time()
r = request(p.addr, "POST", "/v1/chat/completions", {"model": "m"})
el = time.time() - t0
ok(r.status == 504 and 0.9 < el < 1.8, "F-04 never answers: 504 after --response-timeout (%.2fs, %d)" %
   (el, r.status))
time.sleep(0.3)
is_(s1.nrequests + s2.nrequests, 1, "F-04 no retry: exactly one request reached a backend")
p.stop()

# ---------------------------------------------------------------- F-05
busy = FakeBackend(serve_loop(lambda c, r: b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n"
                              b"Content-Type: text/plain\r\nX-From: busy\r\n\r\nbusy"), name="busy")
good = FakeBackend(name="good")
p = lb("--backend", busy.backend_arg(), "--backend", good.backend_arg(), "--policy", "wrr",
       "--eject-after", "0")
for i in range(4):
    r = request(p.addr, "POST", "/v1/chat/completions", {"model": "m"})
    ok(r.status == 200 and b"good" in r.body, "F-05 503 + healthy, request %d: 200 from the healthy one" % (i + 1))
ok(busy.nrequests >= 1, "F-05 the 503 backend was tried (%d)" % busy.nrequests)
is_(good.nrequests, 4, "F-05 each request answered once by the healthy backend")
ok(all(r.body == b'{"model": "m"}' for r in good.requests) and
   all(r.body == b'{"model": "m"}' for r in busy.requests), "F-05 the retried request body replayed intact")
p.stop()
p = lb("--backend", busy.backend_arg())
n0 = busy.nrequests
r = request(p.addr, "POST", "/v1/chat/completions", {"model": "m"})
ok(r.status == 503 and r.body == b"busy" and r.header("x-from") == "busy",
   "F-05 single backend: its 503 forwarded as is")
is_(busy.nrequests - n0, 1, "F-05 single backend: tried once")
p.stop()


# 429: retried elsewhere, but a busy backend is not a failing one (never ejected)
lim = FakeBackend(serve_loop(lambda c, r: b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\n"
                             b"Content-Length: 0\r\n\r\n"), name="lim")
good = FakeBackend(name="good")
p = lb("--backend", lim.backend_arg(), "--backend", good.backend_arg(), "--policy", "wrr",
       "--eject-after", "2")
sts = [request(p.addr, "POST", "/v1/chat/completions", {"model": "m"}).status for _ in range(8)]
is_(sts, [200] * 8, "429 + healthy: every request 200 via retry")
ok(lim.nrequests >= 4, "429 backend not ejected: still tried (%d of 8)" % lim.nrequests)
p.stop()

# ---------------------------------------------------------------- F-06
def rst_after_status(conn):
    if conn.recv_request():
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        time.sleep(0.1)
        conn.reset()


rs = FakeBackend(rst_after_status, name="rs")
good = FakeBackend(name="good")
p = lb("--backend", rs.backend_arg(), "--backend", good.backend_arg(), "--policy", "wrr")
s = connect(p.addr)
s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}")
out, closed = read_until_close(s, 3)
s.close()
ok(out.startswith(b"HTTP/1.1 200 OK\r\n") and out.endswith(b"partial"),
   "F-06 RST after the status line: client got the head and partial body")
ok(closed, "F-06 client connection closed")
ok(b"HTTP/1.1 5" not in out and b"error" not in out, "F-06 no 5xx page appended")
is_(good.nrequests, 0, "F-06 no retry after bytes reached the client")
p.stop()


def rst_before_status(conn):
    if conn.recv_request():
        conn.reset()


rb = FakeBackend(rst_before_status, name="rb")
good = FakeBackend(name="good")
p = lb("--backend", rb.backend_arg(), "--backend", good.backend_arg(), "--policy", "wrr")
sts = [request(p.addr, "POST", "/v1/chat/completions", {"model": "m"}).status for _ in range(2)]
is_(sts, [200, 200], "reset before the status line: retried once on the other backend")
ok(rb.nrequests >= 1, "the resetting backend was tried")
p.stop()
done()
