#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Mid-stream upstream faults F-07..F-10: an SSE stream cut by the backend
reaches the client truncated (no terminal chunk, no [DONE]); a stalled stream
is closed after --stream-idle-timeout and the upstream closed; a client that
leaves mid-stream gets its upstream closed within ~100 ms; a pooled
connection that the backend closed is retried on a fresh one."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403

deadline(50)

SSE_HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")


def chunk(b):
    return b"%x\r\n%s\r\n" % (len(b), b)


def ev(i):
    return b'data: {"n":%d}\n\n' % i


STREAM_REQ = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
              b"Content-Length: 15\r\n\r\n{\"stream\":true}")


def behaviour(conn):
    req = conn.recv_request()
    if req is None:
        return
    mode = req.header("x-mode")
    conn.send(SSE_HEAD)
    if mode == "close":
        for i in range(3):
            conn.send(chunk(ev(i)))
            time.sleep(0.05)
        conn.close()
    elif mode == "stall":
        for i in range(3):
            conn.send(chunk(ev(i)))
        conn.wait_eof(10)
    elif mode == "forever":
        for i in range(200):
            if not conn.send(chunk(ev(i))):
                break
            end = time.time() + 0.03
            while time.time() < end and not conn.eof:
                conn._fill(end - time.time())
            if conn.eof:
                break


be = FakeBackend(behaviour, name="sse")
p = lb("--backend", be.backend_arg(), "--stream-idle-timeout", "1s")


def stream(mode, timeout=5):
    s = connect(p.addr)
    s.sendall(STREAM_REQ.replace(b"Host: a\r\n", b"Host: a\r\nX-Mode: " + mode + b"\r\n"))
    return s


# F-07
s = stream(b"close")
out, closed = read_until_close(s, 4)
s.close()
ok(out.startswith(b"HTTP/1.1 200 OK\r\n") and b"Transfer-Encoding: chunked\r\n" in out,
   "F-07 stream head relayed")
body = out.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in out else b""
is_(body, b"".join(chunk(ev(i)) for i in range(3)), "F-07 the 3 events arrive, chunk for chunk")
ok(closed, "F-07 client connection closed when the backend left")
ok(not body.endswith(b"0\r\n\r\n") and b"[DONE]" not in out, "F-07 no terminal chunk, no [DONE]")

# F-08
s = stream(b"stall")
t0 = time.time()
out, closed = read_until_close(s, 4)
el = time.time() - t0
s.close()
ok(out.count(b"data: ") == 3, "F-08 the 3 events before the stall arrive")
ok(closed and 0.9 < el < 2.0, "F-08 closed after --stream-idle-timeout 1s (%.2fs)" % el)
ok(not out.endswith(b"0\r\n\r\n"), "F-08 no terminal chunk")
c = be.conns[-1]
ok(c.wait_eof(1), "F-08 upstream connection closed")

# F-09
s = stream(b"forever")
s.settimeout(3)
got = b""
while got.count(b"data: ") < 3:
    d = s.recv(65536)
    if not d:
        break
    got += d
c = be.conns[-1]
ok(not c.eof, "F-09 stream running")
s.close()
t_close = time.time()
ok(c.wait_eof(2), "F-09 upstream sees EOF after the client left")
if c.eof_time:
    lag = c.eof_time - t_close
    ok(lag < 0.15, "F-09 upstream closed within ~100 ms (%.0f ms)" % (lag * 1000))


# F-10: the backend serves one request per connection on keep-alive, then
# closes the idle connection without a word; a second variant takes the next
# request and closes without answering (the race at reuse).
def one_then_close(conn):
    req = conn.recv_request()
    if req is None:
        return
    conn.send(respond_ok(b"first"))
    if req.header("x-race"):
        r2 = conn.recv_request(timeout=5)   # the proxy reuses: close unanswered
        conn.close()
        return
    time.sleep(0.1)
    conn.close()


b2 = FakeBackend(one_then_close, name="stale")
p2 = lb("--backend", b2.backend_arg())
s = connect(p2.addr)
r = request(p2.addr, "POST", "/v1/chat/completions", b"{}", conn=s)
time.sleep(0.4)
r2 = request(p2.addr, "POST", "/v1/chat/completions", b"{}", conn=s)
ok(r.status == 200 and r2.status == 200, "F-10 idle pooled connection closed by the backend: 200")
is_(b2.nconns, 2, "F-10 second request on a fresh upstream connection")
n0 = b2.nconns
r = request(p2.addr, "POST", "/v1/chat/completions", b"{}", headers={"X-Race": "1"}, conn=s)
r2 = request(p2.addr, "POST", "/v1/chat/completions", b"{}", headers={"X-Race": "1"}, conn=s)
ok(r.status == 200 and r2.status == 200, "F-10 pooled connection closed at reuse: retried, 200")
ok(b2.nconns == n0 + 2, "F-10 the retry used a fresh connection (%d new)" % (b2.nconns - n0))
s.close()
done()
