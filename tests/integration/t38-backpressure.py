#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Backpressure and slow readers (S-03, S-07): a backend pushing 100 MiB
(CL and SSE-chunked) to a client that reads nothing is held back by the
proxy (the backend's send() blocks after a bounded amount), the proxy's RSS
grows by far less than 20 MiB, and after --send-timeout the proxy closes the
client and the upstream connection."""
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403

deadline(45)
TOTAL = 100 * 1024 * 1024
BLOCK = b"x" * 65536
state = {}


def pusher(conn):
    req = conn.recv_request()
    if req is None:
        return
    st = {"sent": 0, "blocked_at": None, "closed_at": None}
    state[req.target] = st
    if req.target == "/cl":
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n" % TOTAL)
        block = BLOCK
    else:
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        ev = b"data: " + b"y" * 4000 + b"\n\n"
        block = (b"%x\r\n%s\r\n" % (len(ev), ev)) * 16
    conn.sock.settimeout(0.5)
    end = time.time() + 15
    while st["sent"] < TOTAL and time.time() < end:
        try:
            n = conn.sock.send(block)
            st["sent"] += n
        except socket.timeout:
            if st["blocked_at"] is None:
                st["blocked_at"] = time.time()
        except OSError:
            st["closed_at"] = time.time()
            return
    st["closed_at"] = None


be = FakeBackend(pusher, name="push")
p = lb("--backend", be.backend_arg(), "--send-timeout", "2s", "--stream-idle-timeout", "30s")


def rss_kib():
    with open("/proc/%d/status" % p.pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])


for path in ["/cl", "/sse"]:
    rss0 = rss_kib()
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    s.connect(split_addr(p.addr))
    s.sendall(b"GET %s HTTP/1.1\r\nHost: a\r\n\r\n" % path.encode())
    t0 = time.time()
    while path not in state and time.time() - t0 < 3:
        time.sleep(0.02)
    st = state.get(path)
    ok(st is not None, "%s: backend got the request" % path)
    if st is None:
        continue
    while st["blocked_at"] is None and time.time() - t0 < 5:
        time.sleep(0.05)
    ok(st["blocked_at"] is not None, "%s: the backend's send() blocks (backpressure)" % path)
    time.sleep(1.0)
    sent_mid = st["sent"]
    rss1 = rss_kib()
    ok(sent_mid < 24 * 1024 * 1024, "%s: backend pushed only %.1f MiB of 100 before blocking" %
       (path, sent_mid / 1048576.0))
    ok(rss1 - rss0 < 20 * 1024, "%s: proxy RSS grew %.1f MiB (< 20)" % (path, (rss1 - rss0) / 1024.0))
    # the client never reads: after --send-timeout the proxy gives up
    t_block = st["blocked_at"]
    while st["closed_at"] is None and time.time() - t_block < 6:
        time.sleep(0.05)
    ok(st["closed_at"] is not None, "%s: upstream closed after the client stopped reading" % path)
    if st["closed_at"]:
        ok(st["closed_at"] - t_block < 4.5, "%s: ... within --send-timeout 2s of the stall (%.2fs)" %
           (path, st["closed_at"] - t_block))
    got, closed = read_until_close(s, 5)
    ok(closed and len(got) < 30 * 1024 * 1024, "%s: client connection closed (%.1f MiB delivered)" %
       (path, len(got) / 1048576.0))
    s.close()
    rss2 = rss_kib()
    note("%s: RSS %d -> %d -> %d KiB" % (path, rss0, rss1, rss2))
ok(p.alive(), "proxy alive")
done()
