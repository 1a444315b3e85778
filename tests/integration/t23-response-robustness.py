#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Response-side robustness (docs/hardening.md R-01..R-06) against a scripted
backend: CL+TE responses relayed chunked and the upstream connection not
reused; conflicting or invalid CL, garbage, bad status lines, obs-fold and
oversized heads answered 502 without forwarding a byte of them; bytes past
the message never forwarded; interim 100/103 before the final response."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403

deadline(55)

CASES = {
    "/r01": b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\n\r\n",
    "/r02a": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
    "/r02b": b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\nabc",
    "/r02c": b"HTTP/1.1 200 OK\r\nContent-Length: 3, 4\r\n\r\nabcd",
    "/r02d": b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nabc",
    "/r03a": b"SSH-2.0-x\r\n",
    "/r03b": b"HTTP/1.1 2x0 OK\r\nContent-Length: 3\r\n\r\nabc",
    "/r03c": b"HTTP/1.1 200 OK\r\nX-A: a\r\n folded\r\nContent-Length: 3\r\n\r\nabc",
    "/r03d": b"HTTP/1.1 1000 OK\r\nContent-Length: 3\r\n\r\nabc",
    "/r03e": b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 3\r\n\r\nabc",
    "/r03f": b"HTTP/1.1 200 OK\nContent-Length: 3\n\nabc",
    "/r03h": b"<html>hello</html>",
    "/r04a": b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 1000) for i in range(40))
             + b"Content-Length: 3\r\n\r\nabc",
    "/r04b": b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(101))
             + b"Content-Length: 3\r\n\r\nabc",
    "/r05a": b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcEXTRA-BYTES",
    "/r05b": b"HTTP/1.1 204 No Content\r\n\r\nEXTRA-BYTES",
    "/r05c": b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\nEXTRA",
    "/r05d": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nEXTRA",  # for HEAD
    "/r06a": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
    "/r06b": b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
             b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
    "/r06c": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\n\r\n"
             b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
}


def fn(conn, req):
    return CASES.get(req.target.split("?")[0], respond_ok(b"fine"))


be = FakeBackend(serve_loop(fn), name="b1")
p = lb("--backend", be.backend_arg(), "--response-timeout", "3s")


def served_by(target):
    for c in list(be.conns):
        if any(r.target == target for r in c.requests):
            return c
    return None


def run(target, method="GET"):
    s = connect(p.addr)
    s.sendall(("%s %s HTTP/1.1\r\nHost: a\r\n\r\n" % (method, target)).encode())
    out = b""
    end = time.time() + 4
    while time.time() < end:
        r, rest = parse_response(out, head_request=(method == "HEAD"))
        if r is not None and (r.status >= 200) and (
                method == "HEAD" or r.status in (204, 304) or r.header("content-length") or
                "chunked" in (r.header("transfer-encoding") or "")):
            time.sleep(0.2)  # anything extra arrives now
            s.setblocking(False)
            try:
                out += s.recv(65536)
            except OSError:
                pass
            break
        s.settimeout(max(0.01, end - time.time()))
        try:
            c = s.recv(65536)
        except OSError:
            break
        if not c:
            break
        out += c
    s.close()
    return out


#
out = run("/r01")
r, rest = parse_response(out)
ok(r is not None and r.status == 200, "R-01 CL+TE: 200")
if r:
    is_(r.header("transfer-encoding"), "chunked", "R-01 relayed chunked")
    is_(r.header("content-length"), None, "R-01 no Content-Length to the client")
    is_(r.body, b"hello", "R-01 body by the chunked framing")
c = served_by("/r01")
ok(c is not None and c.wait_eof(2), "R-01 upstream connection closed, not pooled")
n0 = be.nconns
r2 = request(p.addr, "GET", "/after-r01")
ok(r2.status == 200 and be.nconns == n0 + 1, "R-01 next request on a new upstream connection")

for t in ["/r02a", "/r02b", "/r02c", "/r02d", "/r03a", "/r03b", "/r03c", "/r03d", "/r03e",
          "/r03f", "/r03h", "/r04a", "/r04b"]:
    t0 = time.time()
    out = run(t)
    el = time.time() - t0
    r, _ = parse_response(out)
    ok(r is not None and r.status == 502 and el < 1.5, "%s: 502 at once (%.2fs)" % (t, el))
    bad = CASES[t]
    ok(bad not in out and b"SSH-2.0" not in out and b"abc" not in out and b"<html>" not in out,
       "%s: none of the backend's bytes forwarded" % t)
    c = served_by(t)
    ok(c is not None and c.wait_eof(2), "%s: upstream connection closed" % t)

#
out = run("/r05a")
r, rest = parse_response(out)
ok(r is not None and r.status == 200 and r.body == b"abc", "R-05 CL 3: exactly 3 bytes")
ok(b"EXTRA" not in out, "R-05 bytes past Content-Length not forwarded")
c = served_by("/r05a")
ok(c is not None and c.wait_eof(2), "R-05 upstream with extra bytes not pooled")
for t, method, st in [("/r05b", "GET", 204), ("/r05c", "GET", 304), ("/r05d", "HEAD", 200)]:
    out = run(t, method)
    r, rest = parse_response(out, head_request=True)
    ok(r is not None and r.status == st, "R-05 %s %s: %d" % (method, t, st))
    ok(b"EXTRA" not in out, "R-05 %s %s: body bytes not forwarded" % (method, t))
    if method == "HEAD" and r:
        is_(r.header("content-length"), "5", "R-05 HEAD keeps the backend's Content-Length")
    c = served_by(t)
    ok(c is not None and c.wait_eof(2), "R-05 %s: upstream not pooled after stray bytes" % t)

#
for t in ["/r06a", "/r06b", "/r06c"]:
    out = run(t)
    # skip any interim responses the proxy chose to forward
    rest = out
    r = None
    while True:
        r, rest2 = parse_response(rest)
        if r is None or r.status >= 200:
            break
        rest = rest2
    ok(r is not None and r.status == 200 and r.body == b"abc", "R-06 %s: final 200 with its body" % t)
    ok(rest2 == b"" if r is not None else False, "R-06 %s: framing intact, nothing after" % t)
# The proxy still works after all that
r = request(p.addr, "GET", "/final")
ok(r.status == 200 and r.body == b"fine", "proxy serves normally afterwards")
ok(p.alive(), "proxy alive")
done()
