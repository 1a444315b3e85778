#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A slow reader cannot pin a capped backend (docs/hardening.md, "Slow clients
and single-slot backends"): a response from a backend with a cap may keep
waiting on its client for --slow-client-budget in total; a client that
takes a little every few hundred milliseconds (so the send timeout never
fires) is cut with a reset, the cut is counted, and the backend's only slot
is free again for the next request. A client that reads at full speed is
never cut."""
import os
import socket
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403

deadline(45)
BIG = 16 << 20


def handler(conn):
    while True:
        req = conn.recv_request(timeout=30)
        if req is None:
            return
        if req.target == "/big":
            if not conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                             b"Content-Length: %d\r\n\r\n" % BIG):
                return
            chunk = b"x" * 65536
            for _ in range(BIG // len(chunk)):
                if not conn.send(chunk):
                    return
        elif not conn.send(respond_ok('{"backend":"b1"}')):
            return


def metric(p, name):
    r = request(p.admin, "GET", "/metrics", timeout=5)
    for line in r.body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


be = FakeBackend(handler, name="b1")
# one backend with the default cap of 1 slot; a send timeout far beyond the test
p = lb("--backend", be.backend_arg(), "--slow-client-budget", "1500ms", "--send-timeout", "60s",
       "--queue-timeout", "20s")

# A client with a tiny receive window that takes 2 KiB every 200 ms: it always
# makes progress, so only the total budget can end it.
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect(split_addr(p.addr))
s.sendall(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n")
t0 = time.time()
got, cut, how = 0, False, ""
s.settimeout(2)
while time.time() - t0 < 20:
    try:
        d = s.recv(2048)
    except ConnectionResetError:
        cut, how = True, "reset"
        break
    except socket.timeout:
        continue
    if not d:
        cut, how = True, "eof"
        break
    got += len(d)
    time.sleep(0.2)
el = time.time() - t0
s.close()
ok(cut and got < BIG, "the slow reader was cut (%s after %d bytes, %.1f s)" % (how, got, el))
is_(how, "reset", "with a reset, so it cannot be taken for a whole answer")
ok(el < 12, "within the budget plus the time its buffers took to fill (%.1f s)" % el)
is_(metric(p, "llamalb_slow_client_cuts_total"), 1.0, "counted in llamalb_slow_client_cuts_total")
t1 = time.time()
r = request(p.addr, "GET", "/small", timeout=10)
is_(r.status, 200, "the backend's only slot is free again for the next client")
ok(time.time() - t1 < 3, "at once (%.1f s)" % (time.time() - t1))

# A client that reads as fast as it can gets the whole 16 MiB, never cut.
s = connect(p.addr)
s.sendall(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n")
buf = b""
s.settimeout(10)
while b"\r\n\r\n" not in buf:
    buf += s.recv(65536)
n = len(buf) - buf.index(b"\r\n\r\n") - 4
while n < BIG:
    d = s.recv(1 << 20)
    if not d:
        break
    n += len(d)
s.close()
is_(n, BIG, "a fast reader gets the whole response")
is_(metric(p, "llamalb_slow_client_cuts_total"), 1.0, "and is not cut")

# With no cap (--default-max-inflight 0) the backend is not pinned: no budget applies.
p.stop()
p = lb("--backend", be.backend_arg(), "--slow-client-budget", "500ms", "--send-timeout", "60s",
       "--default-max-inflight", "0")
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect(split_addr(p.addr))
s.sendall(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n")
s.settimeout(2)
t0 = time.time()
alive = True
while time.time() - t0 < 3:
    try:
        d = s.recv(2048)
    except (ConnectionResetError, socket.timeout):
        alive = False
        break
    if not d:
        alive = False
        break
    time.sleep(0.2)
s.close()
ok(alive, "an uncapped backend's slow reader is left to --send-timeout")
done()
