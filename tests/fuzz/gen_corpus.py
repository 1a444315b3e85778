#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Writes the seed corpora of the fuzz targets into tests/fuzz/corpus/<target>/,
# from the cases of docs/hardening.md (P-01..P-30), the positive controls and
# typical OpenAI-style traffic. Written by hand, nothing fetched. Head and
# chunked seeds start with the two control bytes of tests/fuzz/fuzz_http1.h.
# Usage: tests/fuzz/gen_corpus.py   (re-run after editing; files are named by
# content hash, so re-running only adds what is new)
import hashlib
import os

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
PRE = b"POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\n"
BODY = b'{"model":"llama-3-8b","messages":[{"role":"user","content":"Hello"}],"stream":true}'


def write(target, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def ctl_variants(target, data, extra=()):
    # whole + random split; byte by byte; small limits; (responses) HEAD
    for ctl in (b"\x00\x03", b"\x01\x00", b"\x02\x05") + extra:
        write(target, ctl + data)


requests = [
    PRE + b"Content-Length: %d\r\nContent-Type: application/json\r\n\r\n" % len(BODY) + BODY,
    PRE + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    PRE + b"Transfer-Encoding: Chunked\r\n\r\n",
    PRE + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /x HTTP/1.1\r\nHost: a\r\n\r\n",
    PRE + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
    PRE + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\n",
    PRE + b"Content-Length: 1\r\nContent-Length: 1\r\n\r\n",
    PRE + b"Content-Length: 1, 2\r\n\r\n",
    PRE + b"Content-Length: +5\r\n\r\n",
    PRE + b"Content-Length: 0x5\r\n\r\n",
    PRE + b"Content-Length: 1 0\r\n\r\n",
    PRE + b"Content-Length: 007\r\n\r\n",
    PRE + b"Content-Length: 99999999999999999999999\r\n\r\n",
    PRE + b"Content-Length: 33554433\r\n\r\n",
    PRE + b"Transfer-Encoding: xchunked\r\n\r\n",
    PRE + b"Transfer-Encoding: identity\r\n\r\n",
    PRE + b"Transfer-Encoding: chunked, gzip\r\n\r\n",
    PRE + b"Transfer-Encoding: gzip, chunked\r\n\r\n",
    PRE + b"Transfer-Encoding: chunked, chunked\r\n\r\n",
    PRE + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
    PRE + b"Transfer-Encoding: ,chunked\r\n\r\n",
    PRE + b"Transfer-Encoding : chunked\r\n\r\n",
    PRE + b"Transfer-Encoding:\x0bchunked\r\n\r\n",
    PRE + b"Transfer-Encoding:\xa0chunked\r\n\r\n",
    PRE + b"Transfer-Encoding: chunked\x00\r\n\r\n",
    PRE + b"Transfer-Encoding:\r\n chunked\r\n\r\n",
    PRE + b"X-A: a\r\n b\r\n\r\n",
    b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
    PRE + b"X: a\x00b\r\n\r\n",
    PRE + b"X: a\rb\r\n\r\n",
    b"GET / HTTP/1.1\nHost: a\n\n",
    PRE + b": x\r\n\r\n",
    PRE + b"A\x85B: x\r\n\r\n",
    PRE + b"Content-Length 10\r\n\r\n",
    b"GET / HTTP/1.1\r\n Host: a\r\n\r\n",
    b"GET / HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    b"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
    PRE + b"Expect: 100-continue\r\nContent-Length: 2\r\n\r\n{}",
    PRE + b"Expect: foo\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET http://a/v1/models HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"GET /v1/models HTTP/1.1\r\nHost: lb\r\nConnection: close\r\nAuthorization: Bearer sk\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"POST /v1/completions HTTP/1.1\r\nHost: a\r\n"
    + b"".join(b"X-H%02d: %s\r\n" % (i, b"v" * 100) for i in range(20)) + b"\r\n",
    # Connection options: across headers, case, OWS, empty elements, the bound
    b"GET / HTTP/1.1\r\nHost: a\r\nConnection: X-A, ,\tx-b ,\r\nX-A: 1\r\nconnection: x-A, Close\r\nX-B: 2\r\n\r\n",
    b"GET / HTTP/1.0\r\nConnection: a b, \"x\", Keep-Alive\r\nX: 1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nConnection: " + b",".join(b"o%d" % i for i in range(32)) + b"\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nConnection: " + b",".join(b"o%d" % i for i in range(33)) + b"\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nConnection: " + b",".join([b"x"] * 33) + b"\r\n\r\n",
]
for r in requests:
    ctl_variants("http1_request", r)

responses = [
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n",
    b"SSH-2.0-x\r\n\r\n",
    b"HTTP/1.1 2x0 OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n\r\nclose-delimited",
    b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
    b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\r\n",
    b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade, X-Hop\r\nUpgrade: x\r\nX-Hop: 1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: " + b",".join(b"o%d" % i for i in range(33)) + b"\r\n\r\n",
]
for r in responses:
    ctl_variants("http1_response", r, (b"\x04\x01",))


def chunk(data, ext=b""):
    return b"%x%s\r\n%s\r\n" % (len(data), ext, data)


sse = b"".join(chunk(b'data: {"choices":[{"delta":{"content":"tok%d"}}]}\n\n' % i) for i in range(5))
bodies = [
    b"5\r\nhello\r\n0\r\n\r\n",
    sse + chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n",
    b"1;foo=bar\r\nZ\r\n0\r\n\r\n",
    b"0\r\nX-T: 1\r\n\r\n",
    b"1\r\nZ\r\n0\r\nContent-Length: 5\r\nHost: x\r\n\r\n",
    b"0x1\r\nZ\r\n0\r\n\r\n",
    b"1 \r\nZ\r\n0\r\n\r\n",
    b"FFFFFFFFFFFFFFFFF1\r\n",
    b"FFFFFFFFFFFFFFFF\r\nabc",
    b"1;a\rb\r\nZ\r\n0\r\n\r\n",
    b"1\r\nZZ\r\n0\r\n\r\n",
    b"1\nZ\n0\n\n",
    b"A\r\n0123456789\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n",
    chunk(BODY) + b"0\r\n\r\n",
]
for b in bodies:
    ctl_variants("chunked", b)

jsons = [
    BODY,
    b'{"model":"m","prompt":"x","max_tokens":16,"temperature":0.7,"stop":["\\n"]}',
    b'{"messages":[{"role":"system","content":"a \\"quoted\\" \\u00e9 \\ud83d\\ude00"}],"model":"late"}',
    b'{"mod\\u0065l":"escaped"}',
    b'{"model":null,"model":"dup"}',
    b'{"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}',
    b'{"type":"ADDED","object":{"metadata":{"name":"sim-1","namespace":"default"},"status":{"podIP":"10.0.0.7"}}}',
    b"[1,2.5,-3e2,true,false,null,\"s\",{},[]]",
    b"[1,]",
    b'{"a":01}',
    b'"\\ud800"',
    b'"\xc0\xaf"',
    b"[" * 65 + b"]" * 65,
    b"-9223372036854775808",
    b'{"":"","model":""}',
    b'{"model":"a","model":"b"}',
    b'{"model":"a","user":"u","mod\\u0065l":"b","id":1,"\\u0069d":"x"}',
    b'{"messages":[{"model":"in"}],"model":"out","x":{"model":{"model":1}}}',
    b'{"model":"a"} {"model":"b"}',
    b'{"x":[1},"model":"b"]}',
]
for j in jsons:
    write("json", j)
