#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Header rewriting: hop-by-hop headers (the fixed list and every name the
Connection header lists) removed in both directions, X-Forwarded-For
appended, X-Forwarded-Proto set, X-Request-Id generated (32 hex) or kept
when valid, Host and end-to-end headers kept."""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403

deadline(30)

RESP = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: keep-alive, X-Resp-Hop\r\n"
        b"X-Resp-Hop: secret\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\n"
        b"Upgrade: h2c\r\nX-End: kept\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 2\r\n\r\nok")
be = FakeBackend(serve_loop(lambda c, r: RESP), name="b1")
p = lb("--backend", be.backend_arg())


def send(extra, host=b"my.host:8080"):
    s = connect(p.addr)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: " + host + b"\r\n" + extra +
              b"Content-Length: 2\r\n\r\n{}")
    buf = b""
    s.settimeout(3)
    while True:
        r, _ = parse_response(buf)
        if r is not None and len(r.body) >= 2:
            break
        d = s.recv(65536)
        if not d:
            break
        buf += d
    s.close()
    return r, be.requests[-1]


r, fr = send(b"Connection: keep-alive, X-Custom-Hop, Foo\r\nX-Custom-Hop: secret\r\nFoo: bar\r\n"
             b"Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\n"
             b"Upgrade: websocket\r\nX-Keep: 1\r\nAuthorization: Bearer abc\r\n")
ok(r is not None and r.status == 200, "request through")
for h in ["connection", "x-custom-hop", "foo", "keep-alive", "proxy-connection", "te", "upgrade",
          "transfer-encoding"]:
    ok(fr.header(h) is None, "request: hop-by-hop %s not forwarded" % h)
is_(fr.header("x-keep"), "1", "request: end-to-end header kept")
is_(fr.header("authorization"), "Bearer abc", "request: Authorization kept")
is_(fr.header_all("host"), ["my.host:8080"], "request: Host kept as sent")
is_(fr.header_all("x-forwarded-for"), ["127.0.0.1"], "request: X-Forwarded-For set to the peer")
is_(fr.header_all("x-forwarded-proto"), ["http"], "request: X-Forwarded-Proto: http")
rid = fr.header_all("x-request-id")
ok(len(rid) == 1 and re.fullmatch(r"[0-9a-f]{32}", rid[0]), "request: X-Request-Id generated, 32 hex (%r)" % rid)
is_(fr.version, "HTTP/1.1", "request: sent upstream as HTTP/1.1")
# response side
for h in ["x-resp-hop", "keep-alive", "proxy-connection", "upgrade"]:
    ok(r.header(h) is None, "response: hop-by-hop %s removed" % h)
ok((r.header("connection") or "").lower() != "keep-alive, x-resp-hop", "response: backend Connection not relayed")
is_(r.header("x-end"), "kept", "response: end-to-end header kept")
is_([v for k, v in r.headers if k.lower() == "set-cookie"], ["a=1", "b=2"], "response: repeated Set-Cookie kept")

r, fr = send(b"X-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Proto: https\r\nX-Request-Id: abc-123_X.y\r\n")
is_(fr.header_all("x-forwarded-for"), ["203.0.113.7, 127.0.0.1"], "X-Forwarded-For appended")
is_(fr.header_all("x-forwarded-proto"), ["http"], "client X-Forwarded-Proto replaced")
is_(fr.header_all("x-request-id"), ["abc-123_X.y"], "valid X-Request-Id preserved")

r, fr = send(b"X-Forwarded-For: 198.51.100.1\r\nX-Forwarded-For: 203.0.113.7\r\n")
is_(fr.header_all("x-forwarded-for"), ["198.51.100.1, 203.0.113.7, 127.0.0.1"],
    "two X-Forwarded-For lines: all hops kept, peer appended")

for bad in [b"has space", b"x" * 100, b"semi;colon", b"<script>"]:
    r, fr = send(b"X-Request-Id: " + bad + b"\r\n")
    rid = fr.header_all("x-request-id")
    ok(len(rid) == 1 and re.fullmatch(r"[0-9a-f]{32}", rid[0]),
       "invalid X-Request-Id %r replaced by a generated one" % bad[:20])

r, fr = send(b"X-Request-Id: first-id\r\nX-Request-Id: second-id\r\n")
is_(fr.header_all("x-request-id"), ["first-id"], "two X-Request-Id: exactly one forwarded")
done()
