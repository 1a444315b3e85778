#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Regressions for defects a code review found in the request path:
an absolute-form target with no authority hung a worker; a response bigger
than 64 relay rounds stalled forever on a fast client; a request followed by
a half-close was dropped unanswered; an early error answer was lost to a
TCP reset over unread request bytes; a pooled upstream connection that had
only part of its request sent was reused; the backend's stream-idle timer
ran while the relay waited on a slow client; a pipelined request refused
before its head was parsed was logged under the previous request's line.
Also: a Content-Length body read straight into the body buffer stops at the
body's end."""
import hashlib
import os
import socket
import tempfile
import time

from harness import (FakeBackend, connect, deadline, done, is_, lb, ok, parse_response, raw,
                     read_until_close, request, respond_ok, serve_loop, sim, wait_for)

deadline(120)
s = sim(name="m")
p = lb("--backend", "m=%s" % s.addr, "--default-max-inflight", "0")

# -- "GET http:// HTTP/1.1" is refused, and the worker still serves
out = raw(p.addr, b"GET http:// HTTP/1.1\r\nHost: x\r\n\r\n", timeout=3)
ok(out.startswith(b"HTTP/1.1 400"), "an absolute-form target without authority gets 400")
is_(request(p.addr, "GET", "/echo", timeout=3).status, 200, "and the worker is still serving")

# -- a response of 8 MiB to a fast client arrives whole (no stall after 64 rounds)
big = 8 << 20
def big_answer(conn, req):
    return (b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % big) + b"x" * big
fb = FakeBackend(serve_loop(big_answer), name="big")
p2 = lb("--backend", fb.backend_arg(), "--stream-idle-timeout", "3s")
t0 = time.time()
r = request(p2.addr, "GET", "/v1/files/download/file_x", timeout=20)
ok(r.status == 200 and len(r.body) == big,
   "an 8 MiB response arrives whole (%d bytes in %.2f s)" % (len(r.body), time.time() - t0))

# -- a request followed by a half-close is answered
# The request and the FIN go out in one segment (TCP_CORK holds the data,
# shutdown appends the FIN to it), so the balancer reads both before it
# dispatches. A FIN that arrives after dispatch is taken as the client
# leaving, as nginx does by default (hardening.md F-09: free the backend at
# once); sent separately, the two could land either way and the check flaked.
c = connect(p.addr)
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
c.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
c.shutdown(socket.SHUT_WR)
data, _ = read_until_close(c, timeout=5)
ok(data.startswith(b"HTTP/1.1 200"), "a request sent before a half-close still gets its answer")
c.close()

# -- an early 413 reaches a client still sending its body (no RST)
p3 = lb("--backend", "m=%s" % s.addr, "--max-body", "1k")
c = connect(p3.addr)
c.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" +
          b"y" * 60000)
time.sleep(0.2)
try:
    c.sendall(b"y" * 40000)
except OSError:
    pass
got = b""
c.settimeout(5)
try:
    while True:
        d = c.recv(65536)
        if not d:
            break
        got += d
except OSError:
    pass
ok(got.startswith(b"HTTP/1.1 413"), "the 413 is read by a client that kept sending (%r)" % got[:20])
c.close()

# -- a connection whose request was only partly sent is not reused
def early_handler(conn):
    """Answers 413 as soon as a head arrives and reads nothing more, like a
    server refusing a body: the proxy cannot finish sending it, so the
    connection must not go back to the pool."""
    conn.sock.settimeout(10)
    data = b""
    while b"\r\n\r\n" not in data:
        d = conn.sock.recv(4096)
        if not d:
            return
        data += d
    conn.sock.sendall(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n")
    time.sleep(3)
fb2 = FakeBackend(early_handler, name="early")
p4 = lb("--backend", fb2.backend_arg(), "--max-body", "64m")
body = b'{"model":"m","messages":[{"role":"user","content":"' + b"z" * 30000000 + b'"}]}'
r1 = request(p4.addr, "POST", "/v1/chat/completions", body,
             headers={"Content-Type": "application/json"}, timeout=10)
r2 = request(p4.addr, "GET", "/echo", timeout=10)
ok(r1.status == 413, "the early answer is relayed (%s)" % r1.status)
ok(r2.status == 413 and fb2.nconns == 2,
   "the next request goes on a fresh upstream connection, not after the unsent body "
   "(%s, %d connections)" % (r2.status, fb2.nconns))

# -- a slow client does not trip the backend's stream-idle timeout
p5 = lb("--backend", fb.backend_arg(), "--stream-idle-timeout", "1s", "--send-timeout", "10s")
c = connect(p5.addr)
c.sendall(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
got = 0
t0 = time.time()
c.settimeout(10)
while got < big + 40 and time.time() - t0 < 15:
    d = c.recv(65536)
    if not d:
        break
    got += len(d)
    if time.time() - t0 < 2.5:
        time.sleep(0.05)  # read slowly for 2.5 s: longer than the idle timeout
ok(got >= big, "a slow reader gets the whole response past --stream-idle-timeout (%d bytes)" % got)
c.close()

# -- a Content-Length body read straight into the body buffer: whole, in order,
# and the pipelined request right behind it is not swallowed into it
echo = FakeBackend(serve_loop(lambda c, r: respond_ok('{"len":%d,"sha":"%s","path":"%s"}' % (
    len(r.body), hashlib.sha256(r.body).hexdigest(), r.target))), name="echo")
p7 = lb("--backend", echo.backend_arg(), "--default-max-inflight", "0")
big_body = bytes(range(256)) * 800  # 200 KiB
c = connect(p7.addr)
c.sendall(b"POST /v1/a HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(big_body)
          + big_body[:1000])
time.sleep(0.05)
c.sendall(big_body[1000:150000])
time.sleep(0.05)
c.sendall(big_body[150000:] + b"POST /v1/b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
got = b""
c.settimeout(10)
t0 = time.time()
while got.count(b"HTTP/1.1 200") < 2 or not got.endswith(b"}"):
    try:
        d = c.recv(65536)
    except socket.timeout:
        break
    if not d or time.time() - t0 > 10:
        break
    got += d
c.close()
want_a = '"len":%d,"sha":"%s","path":"/v1/a"' % (len(big_body), hashlib.sha256(big_body).hexdigest())
want_b = '"len":3,"sha":"%s","path":"/v1/b"' % hashlib.sha256(b"abc").hexdigest()
ok(want_a.encode() in got and want_b.encode() in got and got.index(b"/v1/a") < got.index(b"/v1/b"),
   "a 200 KiB body sent in three parts arrives whole, and the pipelined request after it too (%r)"
   % got[-300:])

# -- the access log line of a pipelined request that fails to parse is its own
logdir = tempfile.mkdtemp(prefix="llamalb-t41-")
logpath = os.path.join(logdir, "access.log")
p6 = lb("--backend", "m=%s" % s.addr, "--default-max-inflight", "0", "--access-log", logpath)
out = raw(p6.addr, b"GET /v1/models?first HTTP/1.1\r\nHost: x\r\nX-Request-Id: first-rid\r\n\r\n"
          b"GET /bad path HTTP/1.1\r\n\r\n", timeout=5)
ok(out.startswith(b"HTTP/1.1 200") and b"HTTP/1.1 400" in out, "pipelined: 200, then 400 for the bad line")


def log_lines():
    with open(logpath) as f:
        return f.read().splitlines()


wait_for(lambda: len(log_lines()) >= 2, timeout=5)
lines = log_lines()
ok(len(lines) == 2 and "/v1/models?first" in lines[0] and "rid=first-rid" in lines[0],
   "the first request is logged with its path and id (%r)" % lines[:1])
ok(len(lines) == 2 and " 400 " in lines[1] and "first" not in lines[1] and '"- - HTTP' in lines[1],
   "the refused one is logged without the first one's method, path or id (%r)" % lines[1:])
os.unlink(logpath)
os.rmdir(logdir)
done()
