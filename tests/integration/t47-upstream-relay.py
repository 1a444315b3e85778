#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The upstream side and the relay (src/proxy/upstream.c, relay.c),
regressions from a code review: a response bigger than 64 relay rounds
stalled forever on a fast client; a pooled upstream connection that had only
part of its request sent was reused; the backend's stream-idle timer ran
while the relay waited on a slow client."""
import time

from harness import FakeBackend, connect, deadline, done, lb, ok, request, serve_loop

deadline(90)
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

done()
