#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Malformed requests (docs/hardening.md, "Failure and attack catalogue",
P-01..P-30 with variants): the status from the table, the connection closed
by the proxy, an OpenAI-style JSON error body, and the upstream never sees a
byte. Then the positive controls, which must reach the backend intact."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403

deadline(50)

be = FakeBackend(name="b1")
p = lb("--backend", be.backend_arg(), "--header-timeout", "3s", "--body-timeout", "3s")

PFX = b"POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\n"


def ck(body):
    return PFX + b"Transfer-Encoding: chunked\r\n\r\n" + body


def check_error_body(r, name):
    try:
        j = json.loads(r.body)
        e = j["error"]
        return ok(isinstance(e["message"], str) and e["message"] and isinstance(e["type"], str)
                  and "param" in e and isinstance(e["code"], str),
                  name + ": OpenAI-style error JSON")
    except Exception as ex:  # noqa: BLE001
        return ok(False, name + ": OpenAI-style error JSON (%s: %r)" % (ex, r.body[:100]))


def reject(name, data, want=(400,)):
    s = connect(p.addr)
    try:
        s.sendall(data)
        # Half-close nothing: the proxy must close on its own.
        out, closed = read_until_close(s, 3)
    finally:
        s.close()
    r, _ = parse_response(out)
    if not ok(r is not None and r.status in want, "%s: status %s" % (name, "/".join(map(str, want)))):
        note("  got %r" % out[:200])
        return
    ok(closed, name + ": connection closed by the proxy")
    like(r.header("content-type"), r"^application/json", name + ": JSON content type")
    check_error_body(r, name)
    ok(be.nconns == 0 and be.raw_total == 0, name + ": upstream saw nothing")


SMUGGLED = b"0\r\n\r\nGET /x HTTP/1.1\r\nHost: a\r\n\r\n"
reject("P-01 CL then TE", PFX + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n" + SMUGGLED)
reject("P-02 TE then CL", PFX + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n" + SMUGGLED)
reject("P-03 two different CL", PFX + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nab")
reject("P-04 two identical CL", PFX + b"Content-Length: 1\r\nContent-Length: 1\r\n\r\na")
reject("P-05 CL list 1, 2", PFX + b"Content-Length: 1, 2\r\n\r\nab")
reject("P-05 CL list 1, 1", PFX + b"Content-Length: 1, 1\r\n\r\na")
for v in [b"+5", b"-1", b"0x5", b"1 0", b"5_0", b"1Z", b"", b"5.0", b"\xff5"]:
    reject("P-06 CL %r" % v, PFX + b"Content-Length: " + v + b"\r\n\r\nhello")
reject("P-07 CL overflow", PFX + b"Content-Length: 99999999999999999999999\r\n\r\nx")
reject("P-07 CL 2^64", PFX + b"Content-Length: 18446744073709551616\r\n\r\nx")
for v in [b"xchunked", b"identity", b"gzip", b"chunkedx", b"chunked;q=1"]:
    reject("P-09 TE %r" % v, PFX + b"Transfer-Encoding: " + v + b"\r\n\r\n0\r\n\r\n", (400, 501))
reject("P-10 TE chunked, gzip", PFX + b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n")
reject("P-11 TE gzip, chunked", PFX + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", (501,))
reject("P-12 TE chunked, chunked", PFX + b"Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n")
reject("P-12 two TE lines", PFX + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
reject("P-13 TE ,chunked", PFX + b"Transfer-Encoding: ,chunked\r\n\r\n0\r\n\r\n")
reject("P-13 TE chunked,", PFX + b"Transfer-Encoding: chunked,\r\n\r\n0\r\n\r\n")
reject("P-14 TE space before colon", PFX + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n")
reject("P-14 CL space before colon", PFX + b"Content-Length : 5\r\n\r\nhello")
reject("P-14 CL tab before colon", PFX + b"Content-Length\t: 5\r\n\r\nhello")
for v in [b"\x0bchunked", b"\x0cchunked", b"\xa0chunked", b"chunked\x00"]:
    reject("P-15 TE %r" % v, PFX + b"Transfer-Encoding:" + v + b"\r\n\r\n0\r\n\r\n")
reject("P-16 TE obs-fold", PFX + b"Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n")
reject("P-17 obs-fold any header", PFX + b"X-A: a\r\n b\r\nContent-Length: 0\r\n\r\n")
reject("P-17 obs-fold with tab", PFX + b"X-A: a\r\n\tb\r\nContent-Length: 0\r\n\r\n")
reject("P-18 TE in HTTP/1.0",
       b"POST /v1/chat/completions HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
for v in [b"0x1", b"+1", b"-1", b"1_0", b" 1", b"1 ", b"", b"g"]:
    reject("P-19 chunk size %r" % v, ck(v + b"\r\nZ\r\n0\r\n\r\n"))
reject("P-20 chunk size beyond 64 bits", ck(b"FFFFFFFFFFFFFFFFF1\r\nZ\r\n0\r\n\r\n"))
reject("P-20 chunk size 17 hex digits", ck(b"10000000000000000\r\nZ\r\n0\r\n\r\n"))
reject("P-21 chunk-ext bare CR", ck(b"1;a\rb\r\nZ\r\n0\r\n\r\n"))
reject("P-21 chunk-ext bare LF", ck(b"1;a\nb\r\nZ\r\n0\r\n\r\n"))
reject("P-21 chunk-ext over 4 KiB", ck(b"1;a=" + b"x" * 5000 + b"\r\nZ\r\n0\r\n\r\n"))
reject("P-22 chunk data longer than size", ck(b"1\r\nZZ\r\n0\r\n\r\n"))
reject("P-22 missing CRLF after data", ck(b"1\r\nZ0\r\n\r\n"))
reject("P-23 bare-LF chunk lines", ck(b"1\nZ\n0\n\n"))
reject("P-25 NUL in value", PFX + b"X: a\x00b\r\nContent-Length: 0\r\n\r\n")
reject("P-26 bare CR in value", PFX + b"X: a\rb\r\nContent-Length: 0\r\n\r\n")
reject("P-27 bare-LF head", b"GET / HTTP/1.1\nHost: a\n\n")
reject("P-27 mixed line ends", b"GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n")
for v in [b": x", b"X Y: 1", b"X\x01: 1", b"X\x85: 1", b"X(: 1", b"X\x7f: 1"]:
    reject("P-28 header name %r" % v, PFX + v + b"\r\nContent-Length: 0\r\n\r\n")
reject("P-29 header without colon", PFX + b"Content-Length 10\r\n\r\n0123456789")
reject("P-30 whitespace before first header", b"GET / HTTP/1.1\r\n Host: a\r\n\r\n")
reject("P-30 tab before first header", b"GET / HTTP/1.1\r\n\tX: 1\r\nHost: a\r\n\r\n")
# RFC 9112 §3.2 Host, request line
reject("missing Host", b"GET /v1/models HTTP/1.1\r\n\r\n")
reject("duplicate Host", b"GET /v1/models HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
reject("invalid Host", b"GET /v1/models HTTP/1.1\r\nHost: a b\r\n\r\n")
reject("bad method", b"G@T / HTTP/1.1\r\nHost: a\r\n\r\n")
reject("lowercase-ish bad version", b"GET / http/1.1\r\nHost: a\r\n\r\n")
reject("bad version HTTP/1.x", b"GET / HTTP/1.x\r\nHost: a\r\n\r\n")
reject("two spaces in request line", b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n")
reject("space in target", b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n")
reject("bare CR in request line", b"GET /a\rb HTTP/1.1\r\nHost: a\r\n\r\n")
reject("NUL in target", b"GET /a\x00 HTTP/1.1\r\nHost: a\r\n\r\n")

# ---------------------------------------------------------------- P-06b, P-24
s = connect(p.addr)
s.sendall(PFX + b"Content-Length: 007\r\n\r\n{\"a\":1}")
out, _ = read_until_close(s, 3)
s.close()
r, _ = parse_response(out)
if r is not None and r.status == 400:
    ok(be.nconns == 0, "P-06b CL 007: rejected 400, upstream saw nothing")
else:
    ok(r is not None and r.status == 200, "P-06b CL 007: forwarded")
    last = be.requests[-1] if be.requests else None
    ok(last is not None and last.header_all("content-length") == ["7"] and last.body == b'{"a":1}',
       "P-06b CL 007: forwarded normalized as 7, never verbatim")

for tname in [b"Content-Length: 99", b"Transfer-Encoding: chunked", b"Host: evil"]:
    n0 = len(be.requests)
    s = connect(p.addr)
    s.sendall(ck(b"2\r\nhi\r\n0\r\n" + tname + b"\r\n\r\n"))
    out, _ = read_until_close(s, 2)
    s.close()
    r, _ = parse_response(out)
    if r is not None and r.status == 400:
        ok(len(be.requests) == n0, "P-24 trailer %r: rejected 400, not forwarded" % tname)
        continue
    ok(r is not None and r.status == 200 and len(be.requests) == n0 + 1,
       "P-24 trailer %r: request forwarded" % tname)
    fr = be.requests[-1]
    ok(fr.body == b"hi" and fr.header_all("content-length") == ["2"] and
       fr.header_all("host") == ["a"] and fr.header("transfer-encoding") is None and
       tname not in fr.raw, "P-24 trailer %r dropped, not merged" % tname)

# ---------------------------------------------------------------- positive controls
be_req0 = len(be.requests)


def accept(name, data, want_body=None, want_target=None):
    n0 = len(be.requests)
    s = connect(p.addr, timeout=20)
    try:
        s.sendall(data)
        buf = b""
        r = None
        end = time.time() + 20
        while time.time() < end:
            r, _ = parse_response(buf)
            if r is not None and (r.header("content-length") is None or
                                  len(r.body) == int(r.header("content-length"))):
                break
            s.settimeout(max(0.01, end - time.time()))
            c = s.recv(65536)
            if not c:
                r, _ = parse_response(buf)
                break
            buf += c
    finally:
        s.close()
    ok(r is not None and r.status == 200, name + ": 200")
    ok(len(be.requests) == n0 + 1, name + ": reached the backend once")
    if len(be.requests) == n0 + 1:
        fr = be.requests[-1]
        if want_body is not None:
            ok(fr.body == want_body, name + ": body intact (%d bytes)" % len(want_body))
        if want_target is not None:
            is_(fr.target, want_target, name + ": target")


accept("TE: Chunked (case-insensitive)",
       PFX + b"Transfer-Encoding: Chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", b"abc")
accept("chunk-ext 1;foo=bar", ck(b"1;foo=bar\r\nZ\r\n0\r\n\r\n"), b"Z")
accept("trailer X-T: 1", ck(b"1\r\nZ\r\n0\r\nX-T: 1\r\n\r\n"), b"Z")
accept("upper-case hex chunk size", ck(b"A\r\n0123456789\r\n0\r\n\r\n"), b"0123456789")
hdrs = b"".join(b"X-Pad-%02d: %s\r\n" % (i, b"v" * 250) for i in range(32))
accept("8 KiB of headers", PFX + hdrs + b"Content-Length: 2\r\n\r\n{}", b"{}")
big = b'{"model":"m","messages":[{"role":"user","content":"' + b"x" * (16 * 1024 * 1024 - 60)
big += b'"}]}'
accept("16 MiB JSON body", PFX + b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
       % len(big) + big, big)
accept("OPTIONS *", b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", want_target="*")
accept("absolute-form target", b"GET http://a/v1/x HTTP/1.1\r\nHost: a\r\n\r\n",
       want_target="/v1/x")
done()
