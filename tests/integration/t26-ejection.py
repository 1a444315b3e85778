#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Passive ejection F-11: a backend failing --eject-after times in a row
is taken out for --eject-time (shown down, counted in /metrics), then gets
traffic again; a second ejection lasts twice as long; when every backend
fails, none is ejected for good: requests still reach them (panic mode)."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403

deadline(40)

E500 = b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\nfail"
sick = FakeBackend(serve_loop(lambda c, r: E500), name="sick")
good = FakeBackend(name="good")
p = lb("--backend", sick.backend_arg(), "--backend", good.backend_arg(), "--policy", "wrr",
       "--eject-after", "3", "--eject-time", "2s")


def state(name):
    for s in json.loads(admin_request(p, "GET", "/api/services").body):
        if s["name"] == name:
            return s["state"]


sts = [request(p.addr, "POST", "/v1/chat/completions", b"{}").status for _ in range(12)]
is_(sick.nrequests, 3, "F-11 the failing backend got exactly --eject-after (3) requests")
is_(sts.count(500), 3, "its 500s were forwarded (not retried)")
is_(state("sick"), "down", "F-11 ejected backend shown down")
m = admin_request(p, "GET", "/metrics").body.decode()
like(m, r'llamalb_backend_ejections_total\{backend="sick"\} 1\b', "F-11 ejection counted in /metrics")
t_eject = time.time()
# during the ejection nothing goes there
for _ in range(6):
    request(p.addr, "POST", "/v1/chat/completions", b"{}")
is_(sick.nrequests, 3, "F-11 no request to the ejected backend while ejected")
# after --eject-time it is tried again
time.sleep(max(0, 2.3 - (time.time() - t_eject)))
is_(state("sick"), "up", "F-11 back after --eject-time")
for _ in range(4):
    request(p.addr, "POST", "/v1/chat/completions", b"{}")
ok(sick.nrequests > 3, "F-11 probed again by traffic after the ejection (%d)" % sick.nrequests)
n_before = sick.nrequests
for _ in range(8):
    request(p.addr, "POST", "/v1/chat/completions", b"{}")
is_(state("sick"), "down", "F-11 ejected again after 3 more failures")
t2 = time.time()
time.sleep(2.4)
is_(state("sick"), "down", "F-11 second ejection is longer (backing off, 4s)")
p.stop()

# never all ejected
s1 = FakeBackend(serve_loop(lambda c, r: E500), name="s1")
s2 = FakeBackend(serve_loop(lambda c, r: E500), name="s2")
p = lb("--backend", s1.backend_arg(), "--backend", s2.backend_arg(), "--policy", "wrr",
       "--eject-after", "2", "--eject-time", "30s")
sts = [request(p.addr, "POST", "/v1/chat/completions", b"{}").status for _ in range(20)]
is_(sts, [500] * 20, "all failing: every request still reaches a backend (no 503)")
is_(s1.nrequests + s2.nrequests, 20, "all failing: 20 requests reached the backends")
ok(s1.nrequests >= 5 and s2.nrequests >= 5, "all failing: both still used (%d/%d)" %
   (s1.nrequests, s2.nrequests))
done()
