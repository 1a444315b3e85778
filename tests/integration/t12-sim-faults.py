#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Every llamalb-sim fault, per instance (--fault) and per request
# (X-Sim-Fault): refuse, hang, status, close-after, stall-after, garbage,
# slow-headers, reset, unhealthy-for.
import json
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (chat, connect, deadline, done, is_, like, note, ok, parse_response, raw,
                     request, sim, sse_events)

deadline(60)


def send_stream(addr, n, fault=None):
    b = json.dumps({"messages": [{"role": "user", "content": "hi"}], "stream": True,
                    "max_completion_tokens": n}).encode()
    s = connect(addr, timeout=5)
    h = ("X-Sim-Fault: %s\r\n" % fault).encode() if fault else b""
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\n%sContent-Length: %d\r\n\r\n%s"
              % (h, len(b), b))
    return s


def read_for(s, seconds):
    """Reads until EOF or <seconds>; returns (bytes, eof)."""
    out, end = b"", time.time() + seconds
    while time.time() < end:
        s.settimeout(max(0.01, end - time.time()))
        try:
            c = s.recv(65536)
        except socket.timeout:
            return out, False
        except ConnectionResetError:
            return out, "reset"
        if not c:
            return out, True
        out += c
    return out, False


# ---- refuse: the port is bound but nobody listens
s = sim("--fault", "refuse", name="refuse")
try:
    connect(s.addr, timeout=2).close()
    ok(False, "refuse: connection refused")
except ConnectionRefusedError:
    ok(True, "refuse: connection refused (listening line still printed)")
is_(s.stop(), 0, "refuse: SIGTERM exits 0")

# ---- hang: accept, read, never answer
s = sim("--fault", "hang", name="hang")
c = connect(s.addr)
c.sendall(b"GET /echo HTTP/1.1\r\nHost: t\r\n\r\n")
out, eof = read_for(c, 0.4)
is_((out, eof), (b"", False), "instance hang: no answer, connection open")
c.close()
s.stop()

s = sim("--ttft-ms", "0", name="faults")
A = s.addr
c = connect(A)
c.sendall(b"GET /echo HTTP/1.1\r\nHost: t\r\nX-Sim-Fault: hang\r\n\r\n")
out, eof = read_for(c, 0.3)
is_((out, eof), (b"", False), "X-Sim-Fault: hang")
c.close()
is_(request(A, "GET", "/echo").body, b"echo test", "other requests unaffected by a hung one")

# ---- status
r = request(A, "GET", "/echo", headers={"X-Sim-Fault": "status=503"})
is_((r.status, r.body, r.header("x-sim-id")), (503, b"503 Service Unavailable: simulated fault",
                                               "faults"), "X-Sim-Fault: status=503")
is_(r.header("content-type"), None, "fault errors are plain text without content-type")
r = chat(A, headers={"X-Sim-Fault": "status=500"})
is_((r.status, r.body), (500, b"500 Internal Server Error: Failed to get chat completions. "
                         b"Reason: simulated fault"), "status=500: the real server's text")
r = chat(A, stream=True, headers={"X-Sim-Fault": "status=503"})
is_(r.status, 503, "status fault on a stream: before the head")
r = request(A, "GET", "/echo", headers={"X-Sim-Fault": "bogus"})
is_((r.status, r.body), (400, b"400 Bad Request: X-Sim-Fault: unknown fault 'bogus'"),
    "bad X-Sim-Fault -> 400")
r = request(A, "GET", "/echo", headers={"X-Sim-Fault": "refuse"})
is_(r.status, 400, "refuse is instance-only")
p = sim("--fault", "status=500", name="s500")
r = request(p.addr, "GET", "/v1/models")
is_(r.status, 500, "--fault status=500 applies to every request")
is_(request(p.addr, "GET", "/sim/stats").status, 200, "/sim/stats is exempt from faults")
p.stop()

# ---- close-after / stall-after on streams
c = send_stream(A, 10, "close-after=3")
out, eof = read_for(c, 2)
c.close()
resp, _ = parse_response(out + b"0\r\n\r\n")  # the parser needs an end to look inside
is_(eof, True, "close-after=3: connection closed")
is_(out.count(b"data: "), 3, "close-after=3: exactly 3 events")
ok(not out.endswith(b"0\r\n\r\n") and b"[DONE]" not in out, "no [DONE], no last chunk")
c = send_stream(A, 10, "stall-after=2")
out, eof = read_for(c, 0.5)
is_((out.count(b"data: "), eof), (2, False), "stall-after=2: two events, then silence")
c.close()
time.sleep(0.05)
r = chat(A, stream=True, extra={"max_completion_tokens": 1})
is_(sse_events(r.body)[-1], "[DONE]", "the stalled stream's slot is freed when its client leaves")
c = connect(A)
c.sendall(b"GET /v1/chat/completions HTTP/1.1\r\nHost: t\r\nX-Sim-Fault: close-after=0\r\n\r\n")
out, eof = read_for(c, 1)
c.close()
ok(out.startswith(b"HTTP/1.1 400"), "close-after only affects generations")
b = json.dumps({"messages": [{"role": "user", "content": "x"}]}).encode()
out = raw(A, b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nX-Sim-Fault: close-after=0\r\n"
          b"Content-Length: %d\r\n\r\n%s" % (len(b), b), timeout=2)
is_(out, b"", "close-after=0 on a non-streaming generation: closed without an answer")

# ---- garbage, reset, slow headers
out = raw(A, b"GET /echo HTTP/1.1\r\nHost: t\r\nX-Sim-Fault: garbage\r\n\r\n", timeout=2)
ok(len(out) > 0 and not out.startswith(b"HTTP/"), "garbage instead of a status line")
c = connect(A)
c.sendall(b"GET /echo HTTP/1.1\r\nHost: t\r\nX-Sim-Fault: reset\r\n\r\n")
out, how = read_for(c, 2)
c.close()
is_((out, how), (b"HTTP/1.1 200 OK\r\n", "reset"), "reset: status line, then RST")
c = connect(A)
t0 = time.time()
c.sendall(b"GET /echo HTTP/1.1\r\nHost: t\r\nX-Sim-Fault: slow-headers=4\r\n\r\n")
first = c.recv(100)
out = first
while not out.endswith(b"echo test"):
    chunk = c.recv(100)
    if not chunk:
        break
    out += chunk
t = time.time() - t0
c.close()
is_(len(first), 1, "slow-headers: the head comes byte by byte")
resp, _ = parse_response(out)
is_(resp.body if resp else None, b"echo test", "slow-headers: the response is intact")
ok(t >= 0.25, "slow-headers=4 on a ~90-byte head takes > 0.25 s (%.3f)" % t)
r = chat(A, stream=True, extra={"max_completion_tokens": 2}, headers={"X-Sim-Fault": "slow-headers=1"})
is_(sse_events(r.body)[-1], "[DONE]", "slow-headers on a stream: the stream follows intact")
s.stop()

# ---- start unhealthy, recover
s = sim("--fault", "unhealthy-for=600ms", name="unhealthy")
r = request(s.addr, "GET", "/echo")
is_((r.status, r.body), (503, b"503 Service Unavailable: the simulated server is not ready"),
    "unhealthy at start: 503")
is_(chat(s.addr).status, 503, "unhealthy: chat too")
time.sleep(0.7)
is_(request(s.addr, "GET", "/echo").status, 200, "recovered after the period")
s.stop()
done()
