#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Connection handling: keep-alive on both sides (one upstream connection
for a run of client requests), pipelining answered in order, HTTP/1.0 with
and without keep-alive, Connection: close, Expect: 100-continue."""
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403

deadline(40)


def fn(conn, req):
    body = ("%s %s conn=%d body=%d" % (req.method, req.target, conn.index, len(req.body))).encode()
    return respond_ok(body, "text/plain")


be = FakeBackend(serve_loop(fn), name="b1")
p = lb("--backend", be.backend_arg())

# keep-alive both ways
s = connect(p.addr)
rs = [request(p.addr, "POST", "/v1/chat/completions/%d" % i, b"{}", conn=s) for i in range(5)]
ok(all(r.status == 200 for r in rs), "5 requests on one client connection: all 200")
ok(all(r.header("connection") is None for r in rs), "HTTP/1.1 keep-alive responses carry no Connection: close")
is_(be.nconns, 1, "the backend saw them on one upstream connection")
is_([r.body.decode().split()[1] for r in rs], ["/v1/chat/completions/%d" % i for i in range(5)],
    "answers in request order")
s.close()

# pipelining: 3 requests in one write
s = connect(p.addr)
s.sendall(b"".join(b"GET /pipe/%d HTTP/1.1\r\nHost: a\r\n\r\n" % i for i in range(3)))
buf = b""
got = []
end = time.time() + 5
while len(got) < 3 and time.time() < end:
    s.settimeout(end - time.time())
    d = s.recv(65536)
    if not d:
        break
    buf += d
    while True:
        r, rest = parse_response(buf)
        if r is None or (r.header("content-length") and len(r.body) < int(r.header("content-length"))):
            break
        got.append(r)
        buf = rest
is_([r.body.decode().split()[1] for r in got], ["/pipe/0", "/pipe/1", "/pipe/2"],
    "pipelined: 3 answers, in order")
r = request(p.addr, "GET", "/pipe/after", conn=s)
ok(r.status == 200, "connection usable after the pipelined batch")
s.close()

# pipelined POSTs with bodies in one write, the last with Connection: close
s = connect(p.addr)
s.sendall(b"POST /pb/0 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
          b"POST /pb/1 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nxy\r\n0\r\n\r\n"
          b"POST /pb/2 HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Length: 1\r\n\r\nz")
out, closed = read_until_close(s, 4)
s.close()
bodies = []
while out:
    r, out = parse_response(out)
    if r is None:
        break
    bodies.append(r.body.decode())
is_([" ".join(b.split()[:2] + b.split()[3:]) for b in bodies],
    ["POST /pb/0 body=3", "POST /pb/1 body=2", "POST /pb/2 body=1"],
    "pipelined POSTs (CL, chunked, CL): 3 answers in order, bodies intact")
ok(closed, "Connection: close on the last pipelined request closes after its answer")

# HTTP/1.0 without keep-alive
s = connect(p.addr)
s.sendall(b"GET /h10 HTTP/1.0\r\nHost: a\r\n\r\n")
out, closed = read_until_close(s, 3)
s.close()
r, _ = parse_response(out)
ok(r is not None and r.status == 200 and r.body.startswith(b"GET /h10"), "HTTP/1.0: 200")
ok(closed, "HTTP/1.0 without keep-alive: closed after the response")

# HTTP/1.0 with keep-alive
s = connect(p.addr)
s.settimeout(3)
for i in range(2):
    s.sendall(b"GET /h10ka/%d HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n" % i)
    buf = b""
    while True:
        r, _ = parse_response(buf)
        if r is not None and r.header("content-length") and len(r.body) >= int(r.header("content-length")):
            break
        d = s.recv(65536)
        if not d:
            break
        buf += d
    ok(r is not None and r.status == 200 and (r.header("connection") or "").lower() == "keep-alive"
       and r.header("content-length"), "HTTP/1.0 keep-alive request %d: 200, Connection: keep-alive, CL" % i)
s.close()

# Connection: close on HTTP/1.1
s = connect(p.addr)
s.sendall(b"GET /close HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
out, closed = read_until_close(s, 3)
s.close()
r, _ = parse_response(out)
ok(r is not None and r.status == 200 and (r.header("connection") or "").lower() == "close" and closed,
   "HTTP/1.1 Connection: close: answered with Connection: close, then closed")

# Expect: 100-continue
n0 = len(be.requests)
s = connect(p.addr)
s.settimeout(3)
s.sendall(b"POST /expect HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
first = s.recv(65536)
ok(first.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"), "Expect: 100-continue answered 100 before the body")
s.sendall(b"hello")
buf = first[len(b"HTTP/1.1 100 Continue\r\n\r\n"):]
while True:
    r, _ = parse_response(buf)
    if r is not None and len(r.body) >= int(r.header("content-length") or 0):
        break
    d = s.recv(65536)
    if not d:
        break
    buf += d
ok(r is not None and r.status == 200 and b"body=5" in r.body, "Expect: body forwarded, 200")
ok(len(be.requests) == n0 + 1 and be.requests[-1].header("expect") is None,
   "Expect header not forwarded upstream (the proxy answered it)")
s.close()

# HTTP/1.0 + Expect: no 1xx to an HTTP/1.0 client (RFC 9110 §15.2)
s = connect(p.addr)
s.settimeout(0.8)
s.sendall(b"POST /expect10 HTTP/1.0\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
try:
    early = s.recv(100)
except socket.timeout:
    early = b""
is_(early, b"", "HTTP/1.0 with Expect: no 100 Continue sent")
s.sendall(b"{}")
out, closed = read_until_close(s, 3)
ok((early + out).startswith(b"HTTP/1.1 200") and closed, "HTTP/1.0 with Expect: 200 once the body came")
s.close()

# Expect with a chunked body; token case-insensitive
for hdrs, body, name in [(b"Transfer-Encoding: chunked", b"2\r\n{}\r\n0\r\n\r\n", "chunked"),
                         (b"Content-Length: 2", b"{}", "100-Continue spelling")]:
    s = connect(p.addr)
    s.settimeout(2)
    exp = b"100-Continue" if "spelling" in name else b"100-continue"
    s.sendall(b"POST /e HTTP/1.1\r\nHost: a\r\nExpect: " + exp + b"\r\n" + hdrs + b"\r\n\r\n")
    first = s.recv(100)
    s.sendall(body)
    rest = s.recv(1000)
    ok(first == b"HTTP/1.1 100 Continue\r\n\r\n" and rest.startswith(b"HTTP/1.1 200"),
       "Expect (%s): 100 then 200" % name)
    s.close()
done()
