#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Connection limits (S-06): with --max-conns 10, connections beyond it are
not served while the existing ones are, the proxy does not spin (CPU time
from /proc/PID/stat stays low), and service resumes when connections close.
Then the EMFILE path: the fd limit lowered under the proxy (prlimit) below
--max-conns; accept() failing must not spin either."""
import os
import resource
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403

deadline(45)
HZ = os.sysconf("SC_CLK_TCK")


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / HZ


be = FakeBackend(name="b1")


def fill_and_check(p, nheld, nextra, label):
    held = []
    for _ in range(nheld):
        s = connect(p.addr)
        r = request(p.addr, "GET", "/v1/x", conn=s)
        if r.status != 200:
            break
        held.append(s)
    extra = []
    for _ in range(nextra):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect(split_addr(p.addr))
        except (BlockingIOError, OSError):
            pass
        extra.append(s)
    time.sleep(0.3)
    for s in extra:
        try:
            s.send(b"GET /v1/x HTTP/1.1\r\nHost: a\r\n\r\n")
        except OSError:
            pass
    c0 = cpu_s(p.pid)
    time.sleep(2.0)
    used = cpu_s(p.pid) - c0
    served = 0
    for s in extra:
        try:
            d = s.recv(65536)
            if d.startswith(b"HTTP/1.1 200"):
                served += 1
        except OSError:
            pass
    return held, extra, served, used


p = lb("--backend", be.backend_arg(), "--max-conns", "10")
held, extra, served, used = fill_and_check(p, 10, 40, "max-conns")
is_(len(held), 10, "10 connections up to --max-conns served")
is_(served, 0, "connections beyond --max-conns not served")
ok(used < 0.2, "no spinning at the limit: %.2fs CPU in 2 s" % used)
rs = [request(p.addr, "GET", "/v1/x", conn=s).status for s in held[:3]]
is_(rs, [200] * 3, "existing connections still served at the limit")
for s in held[:5]:
    s.close()
got = 0
end = time.time() + 3
pending = list(extra)
while time.time() < end and got < 5:
    for s in list(pending):
        try:
            d = s.recv(65536)
            if d.startswith(b"HTTP/1.1 200"):
                got += 1
                pending.remove(s)
                s.close()
        except BlockingIOError:
            pass
        except OSError:
            pending.remove(s)
    time.sleep(0.05)
ok(got >= 5, "after 5 connections closed, waiting ones are served (%d)" % got)
for s in held + extra:
    s.close()
time.sleep(0.3)
r = request(p.addr, "GET", "/v1/x", timeout=5)
is_(r.status, 200, "service normal afterwards")
p.stop()

# EMFILE: fd limit below what the proxy thinks it may use
# one worker: the fd budget below counts one worker's listener, loop and
# upstream pool (make tsan runs the suite with more)
p = lb("--backend", be.backend_arg(), "--max-conns", "1000", "--workers", "1")
nfd = len(os.listdir("/proc/%d/fd" % p.pid))
lim = nfd + 12
try:
    resource.prlimit(p.pid, resource.RLIMIT_NOFILE, (lim, lim))
    have_prlimit = True
except (OSError, AttributeError) as e:
    have_prlimit = False
    note("prlimit failed: %s" % e)
ok(have_prlimit, "fd limit of the proxy lowered to %d (it uses %d)" % (lim, nfd))
if have_prlimit:
    held, extra, served, used = fill_and_check(p, 8, 40, "emfile")
    ok(len(held) >= 5, "connections under the fd limit served (%d)" % len(held))
    ok(used < 0.3, "EMFILE: no spinning (%.2fs CPU in 2 s)" % used)
    ok(p.alive(), "EMFILE: proxy alive")
    rs = [request(p.addr, "GET", "/v1/x", conn=s).status for s in held[:3]]
    is_(rs, [200] * 3, "EMFILE: existing connections still served")
    for s in held + extra:
        s.close()
    time.sleep(1.5)
    r = request(p.addr, "GET", "/v1/x", timeout=5)
    is_(r.status, 200, "EMFILE: service resumes once fds are free")
done()
