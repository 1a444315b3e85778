#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Request body memory (docs/hardening.md, "Request bodies"): a body buffer
grows with the bytes that arrive, never with what Content-Length declares;
the bodies buffered by the whole process stay under --max-body-memory (503
overloaded past it, 413 for a body that could never fit); --max-body 0
means no per-request limit, for Content-Length and chunked bodies alike.

Regression for the audit's crash: "Content-Length: 999999999999" and one
byte aborted the process when --max-body was 0 or large."""
import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403

deadline(50)


def metric(p, name):
    r = request(p.admin, "GET", "/metrics", timeout=5)
    for line in r.body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


be = FakeBackend(name="b1")

# --- the crash: a huge declared length and one byte, with no per-request limit
p = lb("--backend", be.backend_arg(), "--max-body", "0", "--body-timeout", "2s")
out = raw(p.addr, b"POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\n"
          b"Content-Type: application/json\r\nContent-Length: 999999999999\r\n\r\n{", timeout=3)
ok(out.startswith(b"HTTP/1.1 413 "), "Content-Length 999999999999 + 1 byte: 413 (%r)" % out[:30])
ok(p.alive(), "--max-body 0: the process survives it")
rss0 = rss_kb(p.pid)
socks = []
for i in range(20):
    s = connect(p.addr)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\n"
              b"Content-Type: application/json\r\nContent-Length: 200000000\r\n\r\n{")
    socks.append(s)
ok(wait_for(lambda: metric(p, "llamalb_connections_active") == 20, 3),
   "20 connections with a 200 MB Content-Length and one byte are held")
mem = metric(p, "llamalb_body_memory_bytes")
ok(mem is not None and 0 < mem <= 20 * 64 * 1024,
   "the 20 bodies reserve what arrived, not what was declared (%s bytes)" % mem)
ok(rss_kb(p.pid) - rss0 < 16 * 1024, "RSS grew by %d KiB" % (rss_kb(p.pid) - rss0))
is_(request(p.addr, "GET", "/v1/x", timeout=5).status, 200, "other requests are served meanwhile")
for s in socks:
    s.close()
ok(wait_for(lambda: metric(p, "llamalb_body_memory_bytes") == 0, 3),
   "closing them gives the body memory back")

# --max-body 0 is "no per-request limit" for chunked bodies too (was 413)
body = b'{"model":"m","pad":"' + b"x" * 300000 + b'"}'
chunked = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 65536]), body[i:i + 65536])
                   for i in range(0, len(body), 65536)) + b"0\r\n\r\n"
out = raw(p.addr, b"POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
          b"Content-Type: application/json\r\nConnection: close\r\n\r\n" + chunked, timeout=5)
r, _ = parse_response(out)
is_(r and r.status, 200, "--max-body 0: a 300 KB chunked body passes")
is_(len(be.requests[-1].body), len(body), "the backend got the whole de-chunked body")
p.stop()

# --- the process-wide budget
held = threading.Event()
release = threading.Event()


def slow_handler(conn):
    while True:
        req = conn.recv_request(timeout=30)
        if req is None:
            return
        if req.header("x-hold"):
            held.set()
            release.wait(20)
        if not conn.send(respond_ok('{"backend":"b2"}')):
            return


be2 = FakeBackend(slow_handler, name="b2")
p = lb("--backend", be2.backend_arg(extra=",max-inflight=0"), "--max-body-memory", "1m")

# A 700 KB body held while its request is in flight ...
big = b'{"model":"m","pad":"' + b"y" * 700000 + b'"}'
ta = threading.Thread(target=lambda: request(p.addr, "POST", "/v1/chat/completions", big,
                                            headers={"X-Hold": "1",
                                                     "Content-Type": "application/json"},
                                            timeout=25), daemon=True)
ta.start()
ok(held.wait(10), "a 700 KB request is in flight")
ok(metric(p, "llamalb_body_memory_bytes") >= 700000, "its body counts against the budget")
# ... leaves no room for a 500 KB one: 503 overloaded with Retry-After, not an abort
mid = b'{"model":"m","pad":"' + b"z" * 500000 + b'"}'
r = request(p.addr, "POST", "/v1/chat/completions", mid,
            headers={"Content-Type": "application/json"}, timeout=10)
is_(r.status, 503, "a body that does not fit the budget now: 503")
is_(r.json()["error"]["code"], "overloaded", "error code overloaded")
ok(r.header("retry-after") is not None, "with Retry-After")
is_(metric(p, "llamalb_body_memory_refused_total"), 1.0, "counted in body_memory_refused_total")
small = request(p.addr, "POST", "/v1/chat/completions", {"model": "m"}, timeout=10)
is_(small.status, 200, "small requests still pass")
release.set()
ta.join(25)
r = request(p.addr, "POST", "/v1/chat/completions", mid,
            headers={"Content-Type": "application/json"}, timeout=10)
is_(r.status, 200, "once the big request is done, the 500 KB one passes")
ok(wait_for(lambda: metric(p, "llamalb_body_memory_bytes") == 0, 3), "body memory back to 0")

# A declared length over the whole budget can never be buffered: 413 before the body
c0 = be2.nrequests
out = raw(p.addr, b"POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nContent-Length: 2000000\r\n"
          b"Expect: 100-continue\r\n\r\n", timeout=3)
ok(out.startswith(b"HTTP/1.1 413 "), "Content-Length over --max-body-memory: 413 (%r)" % out[:40])
ok(b"100 Continue" not in out, "and no 100 Continue first")
is_(be2.nrequests, c0, "the backend saw nothing")
ok(p.alive(), "the balancer is alive")
done()
