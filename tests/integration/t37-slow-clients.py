#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Slow clients S-01, S-02, S-04, S-05: slowloris connections answered 408
and closed at the absolute --header-timeout while the service stays
available; headers trickled under any idle limit still hit the deadline; a
stalled body gets 408 at --body-timeout and never reaches the backend; an
idle keep-alive connection closes at --keepalive-timeout and the fd count
returns to its baseline. Also a short slowhttptest -H run when installed."""
import os
import shutil
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403

deadline(58)

be = FakeBackend(name="b1")
p = lb("--backend", be.backend_arg(), "--header-timeout", "2s", "--body-timeout", "1s",
       "--keepalive-timeout", "1s")


def nfds():
    return len(os.listdir("/proc/%d/fd" % p.pid))


request(p.addr, "GET", "/v1/x")   # warm up: worker threads, wake pipes, one pooled upstream
time.sleep(0.2)
base = nfds() - sum(1 for c in be.conns if not c.eof)

# S-01: 30 slowloris connections, each a partial head
conns = []
for i in range(30):
    s = connect(p.addr)
    s.sendall(b"GET /v1/x HTTP/1.1\r\nHost: a\r\nX-%d: " % i)
    conns.append(s)
t0 = time.time()
probe_ok = []
while time.time() - t0 < 1.2:
    probe_ok.append(request(p.addr, "GET", "/v1/x", timeout=2).status == 200)
    time.sleep(0.2)
ok(all(probe_ok), "S-01 service available during slowloris (%d probes)" % len(probe_ok))
res = []
for s in conns:
    out, closed = read_until_close(s, 3.5)
    res.append((out, closed, time.time() - t0))
    s.close()
ok(all(o.startswith(b"HTTP/1.1 408 ") for o, _, _ in res), "S-01 every slowloris connection got 408")
ok(all(c for _, c, _ in res), "S-01 every slowloris connection closed")
ok(max(t for _, _, t in res) < 2.8, "S-01 all closed by the 2 s header deadline (last %.2fs)" %
   max(t for _, _, t in res))
ok(all(r.target == "/v1/x" and r.header("x-0") is None for r in be.requests),
   "S-01 no partial request reached the backend")

# a connection that sends nothing at all
s = connect(p.addr)
t0 = time.time()
out, closed = read_until_close(s, 4)
el = time.time() - t0
ok(closed and el < 2.8, "silent new connection closed by the header deadline (%.2fs, %r)" % (el, out[:20]))
s.close()

# S-04: one byte every 0.3 s (never idle for long) still hits the absolute deadline
s = connect(p.addr)
t0 = time.time()
req = b"GET /v1/x HTTP/1.1\r\nHost: a\r\nX-Long: " + b"a" * 100
got = b""
s.settimeout(0.3)
for ch in req:
    try:
        s.sendall(bytes([ch]))
    except OSError:
        break
    try:
        d = s.recv(65536)
        if not d:
            break
        got += d
        if b"\r\n\r\n" in got:
            break
    except socket.timeout:
        pass
    if time.time() - t0 > 4:
        break
el = time.time() - t0
ok(got.startswith(b"HTTP/1.1 408 ") and 1.8 < el < 2.8,
   "S-04 trickled head: 408 at the absolute 2 s deadline (%.2fs)" % el)
rest, closed = read_until_close(s, 1)
ok(closed, "S-04 closed after the 408")
s.close()

# S-02: body stalls
raw0 = be.raw_total
s = connect(p.addr)
s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n0123456789")
t0 = time.time()
out, closed = read_until_close(s, 3)
el = time.time() - t0
s.close()
ok(out.startswith(b"HTTP/1.1 408 ") and closed and 0.9 < el < 1.7,
   "S-02 stalled body: 408 and close at --body-timeout 1s (%.2fs)" % el)
is_(be.raw_total, raw0, "S-02 nothing of the incomplete request reached the backend")

# slow but steady body (every 0.5 s, under the 1 s idle limit) is fine
s = connect(p.addr, timeout=10)
s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n")
for ch in b"hello":
    time.sleep(0.45)
    try:
        s.sendall(bytes([ch]))
    except OSError:
        break
buf = b""
s.settimeout(3)
while b"\r\n\r\n" not in buf:
    d = s.recv(65536)
    if not d:
        break
    buf += d
ok(buf.startswith(b"HTTP/1.1 200"), "S-02 body trickled under the idle limit: 200")
s.close()

# S-05: idle keep-alive
s = connect(p.addr)
r = request(p.addr, "GET", "/v1/x", conn=s)
t0 = time.time()
out, closed = read_until_close(s, 3)
el = time.time() - t0
ok(r.status == 200 and closed and out == b"" and 0.8 < el < 1.6,
   "S-05 idle keep-alive closed silently at --keepalive-timeout 1s (%.2fs)" % el)
s.close()
time.sleep(0.2)
pooled = sum(1 for c in be.conns if not c.eof)
if nfds() > base + pooled:
    fdd = "/proc/%d/fd" % p.pid
    note("fds: %s" % sorted(os.readlink(os.path.join(fdd, x)) for x in os.listdir(fdd)))
ok(nfds() <= base + pooled, "S-05 fd count back to baseline (%d <= %d + %d pooled upstream)" %
   (nfds(), base, pooled))

# slowhttptest -H (small) when installed
if shutil.which("slowhttptest"):
    d = tempfile.mkdtemp()
    pre = os.path.join(d, "s")
    t0 = time.time()
    r = subprocess.run(["slowhttptest", "-H", "-c", "60", "-i", "1", "-r", "60", "-l", "8", "-p", "2",
                        "-u", "http://%s/v1/x" % p.addr, "-g", "-o", pre],
                       capture_output=True, timeout=30)
    outp = (r.stdout + r.stderr).decode(errors="replace")
    csv = open(pre + ".csv").read().strip().split("\n") if os.path.exists(pre + ".csv") else []
    ok(csv and len(csv) > 2, "slowhttptest ran (%d CSV rows, %.1fs)" % (len(csv), time.time() - t0))
    m = re.search(r"Test ended on (\d+)", outp)
    ok("No open connections left" in outp and m and int(m.group(1)) <= 4,
       "slowhttptest -H: 'No open connections left', ended at second %s of 8" % (m and m.group(1)))
    shutil.rmtree(d, ignore_errors=True)
done()
