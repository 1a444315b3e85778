#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Streaming relay: SSE passed through byte for byte (chunked and
close-delimited), each event reaching the client before the backend sends
the next (no buffering), HTTP/1.0 clients get a de-chunked close-delimited
stream, HEAD and 204/304 keep their framing and the connection."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403

deadline(40)


def chunk(b):
    return b"%x\r\n%s\r\n" % (len(b), b)


EVENTS = [b'data: {"id":"c1","choices":[{"delta":{"content":"H\xc3\xa9llo"}}]}\n\n',
          b': keep-alive comment\n\n',
          b'event: x\r\ndata: line1\r\ndata: line2\r\n\r\n',
          b'data: {"choices":[{"delta":{"content":" w"}}]}\n\ndata: {"x":2}\n\n',
          b'data: [DONE]\n\n']
# odd chunk boundaries: split events across chunks, with a chunk extension
CHUNKED = (chunk(EVENTS[0][:10]) + chunk(EVENTS[0][10:]) + b"%x;ext=1\r\n%s\r\n" % (len(EVENTS[1]), EVENTS[1])
           + chunk(EVENTS[2] + EVENTS[3]) + chunk(EVENTS[4]) + b"0\r\n\r\n")
SENT = []   # (event index, time sent)


def handler(conn):
    while True:
        req = conn.recv_request()
        if req is None:
            return
        t = req.target
        if t == "/chunked":
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
            conn.send(CHUNKED)
        elif t == "/closedelim":
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n")
            for e in EVENTS:
                conn.send(e)
                time.sleep(0.02)
            return
        elif t == "/paced":
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
            for i in range(4):
                SENT.append((i, time.time()))
                conn.send(chunk(b"data: %d\n\n" % i))
                time.sleep(0.2)
            conn.send(b"0\r\n\r\n")
        elif t == "/head":
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n")
        elif t == "/204":
            conn.send(b"HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n")
        elif t == "/304":
            conn.send(b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n")
        else:
            conn.send(respond_ok(b"plain"))


be = FakeBackend(handler, name="b1")
p = lb("--backend", be.backend_arg())

body_all = b"".join(EVENTS)

# byte for byte, HTTP/1.1 chunked
s = connect(p.addr)
s.sendall(b"POST /chunked HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}")
out = b""
while not out.endswith(b"0\r\n\r\n"):
    d = s.recv(65536)
    if not d:
        break
    out += d
s.close()
head, _, rest = out.partition(b"\r\n\r\n")
ok(b"Transfer-Encoding: chunked" in head and b"text/event-stream" in head, "SSE head relayed")
is_(rest, CHUNKED, "SSE chunked body passed through byte for byte (chunk boundaries, extension)")
r, _ = parse_response(out)
ok(r is not None and r.body == body_all, "de-chunked content equals the events")

# close-delimited SSE from the backend
s = connect(p.addr)
s.sendall(b"POST /closedelim HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}")
out, closed = read_until_close(s, 4)
s.close()
head, _, rest = out.partition(b"\r\n\r\n")
ok(closed, "close-delimited response: client connection closed at the end")
is_(rest, body_all, "close-delimited SSE passed through byte for byte")
ok(b"Connection: close" in head, "close-delimited response says Connection: close")

# each event as it is sent
s = connect(p.addr)
s.sendall(b"POST /paced HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}")
arr = {}
buf = b""
end = time.time() + 5
while time.time() < end and not buf.endswith(b"0\r\n\r\n"):
    s.settimeout(end - time.time())
    d = s.recv(65536)
    if not d:
        break
    t = time.time()
    buf += d
    for i in range(4):
        if i not in arr and (b"data: %d\n\n" % i) in buf:
            arr[i] = t
s.close()
sent = dict(SENT[-4:])
ok(len(arr) == 4 and len(sent) == 4, "paced stream: all 4 events arrived")
for i in range(3):
    if i in arr and i + 1 in sent:
        ok(arr[i] < sent[i + 1], "event %d arrived %.0f ms after it was sent, before event %d was sent" %
           (i, (arr[i] - sent[i]) * 1000, i + 1))

# HTTP/1.0 client: de-chunked, close-delimited
s = connect(p.addr)
s.sendall(b"POST /chunked HTTP/1.0\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}")
out, closed = read_until_close(s, 4)
s.close()
head, _, rest = out.partition(b"\r\n\r\n")
ok(out.startswith(b"HTTP/1.1 200"), "HTTP/1.0 client: 200")
ok(b"transfer-encoding" not in head.lower() and b"content-length" not in head.lower(),
   "HTTP/1.0 client: no Transfer-Encoding, no Content-Length")
is_(rest, body_all, "HTTP/1.0 client: de-chunked stream, exact bytes")
ok(closed, "HTTP/1.0 client: end of stream marked by close")

# HEAD, 204, 304 on one keep-alive connection
s = connect(p.addr)
r = request(p.addr, "HEAD", "/head", conn=s)
ok(r.status == 200 and r.header("content-length") == "100" and r.body == b"", "HEAD: CL kept, no body")
r = request(p.addr, "GET", "/204", conn=s)
ok(r.status == 204 and r.header("x-a") == "1" and r.header("content-length") is None and
   r.header("transfer-encoding") is None, "204: no body, no framing headers")
r = request(p.addr, "GET", "/304", conn=s)
ok(r.status == 304 and r.header("etag") == '"x"', "304 relayed")
r = request(p.addr, "GET", "/plain", conn=s)
ok(r.status == 200 and r.body == b"plain", "connection still in sync after HEAD/204/304")
s.close()
done()
