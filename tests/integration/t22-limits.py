#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Request limits (docs/hardening.md, "Limits at a glance"; S-09): 414 request
line, 431 header count and size, 413 body over --max-body by Content-Length
(before the body is read) and chunked (at the limit), 505 version, 417
expectation, 405 for CONNECT and TRACE. Each: status, JSON error,
connection closed, upstream untouched; bodies at the limit pass."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403

deadline(50)

be = FakeBackend(name="b1")
p = lb("--backend", be.backend_arg(), "--max-body", "1m", "--header-timeout", "3s",
       "--body-timeout", "3s")


def expect(name, data, status, send_more=None):
    c0, raw0 = be.nconns, be.raw_total
    s = connect(p.addr)
    t0 = time.time()
    s.sendall(data)
    if send_more:
        try:
            send_more(s)
        except OSError:
            pass
    out, closed = read_until_close(s, 4)
    el = time.time() - t0
    s.close()
    r, _ = parse_response(out)
    if not ok(r is not None and r.status == status, "%s: %d" % (name, status)):
        note("  got %r" % out[:200])
        return None
    ok(closed, name + ": connection closed")
    try:
        e = json.loads(r.body)["error"]
        ok(set(e) >= {"message", "type", "param", "code"}, name + ": JSON error body")
    except Exception:  # noqa: BLE001
        ok(False, name + ": JSON error body (%r)" % r.body[:100])
    ok(be.nconns == c0 and be.raw_total == raw0, name + ": upstream saw nothing")
    return el


expect("414 request line over 8 KiB", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414)
expect("431 101 header lines",
       b"GET / HTTP/1.1\r\nHost: a\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(101)) + b"\r\n",
       431)
expect("431 head over 32 KiB",
       b"GET / HTTP/1.1\r\nHost: a\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 1000)
                                                 for i in range(40)) + b"\r\n", 431)
# 100 header lines (Host + 99) is the limit, still fine
r = request(p.addr, "GET", "/v1/x", headers={"X-%d" % i: "1" for i in range(98)})
is_(r.status, 200, "99 extra headers + Host (100) pass")

el = expect("413 Content-Length over --max-body (body never sent)",
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nContent-Length: 2097152\r\n\r\n", 413)
ok(el is not None and el < 1.0, "413 answered before any body byte (%.2fs)" % (el or -1))


def trickle_chunks(s):
    for _ in range(40):
        s.sendall(b"8000\r\n" + b"x" * 0x8000 + b"\r\n")


raw0 = be.raw_total
expect("413 chunked body over --max-body",
       b"POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
       413, send_more=trickle_chunks)
ok(be.raw_total == raw0, "no byte of the oversized chunked body reached a backend")

body = b"y" * (1024 * 1024)
r = request(p.addr, "POST", "/v1/chat/completions", body, headers={"Content-Type": "application/json"})
ok(r.status == 200 and be.requests and be.requests[-1].body == body, "body of exactly --max-body passes")

expect("505 HTTP/2.0", b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505)
expect("505 HTTP/3.0", b"GET / HTTP/3.0\r\nHost: a\r\n\r\n", 505)
expect("505 HTTP/0.9-ish HTTP/0.9", b"GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505)
expect("417 unknown expectation",
       b"POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\nContent-Length: 2\r\n\r\n{}",
       417)
expect("405 CONNECT origin-form", b"CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n", 405)
expect("405 CONNECT authority-form", b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 405)
expect("405 TRACE", b"TRACE / HTTP/1.1\r\nHost: a\r\n\r\n", 405)
done()
