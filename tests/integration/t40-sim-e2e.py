#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""End to end with two llamalb-sim backends (the demo's shape): chat
completions and SSE streams through the balancer match what the simulator
sends directly, weights 3:1 are followed, a simulated 503 is retried on the
other backend, a simulated mid-stream stall is cut at --stream-idle-timeout."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403

deadline(40)
if not os.path.exists(SIM):
    print("1..0 # SKIP llamalb-sim not built")
    sys.exit(0)

low = sim("--seed", "1", "--tokens-per-sec", "2000", "--slots", "4", name="llama-3-1b-low")
high = sim("--seed", "2", "--tokens-per-sec", "2000", "--slots", "4", name="llama-3-3b-high")
p = lb("--backend", "low=%s,weight=3" % low.addr, "--backend", "high=%s,weight=1" % high.addr,
       "--policy", "wrr", "--stream-idle-timeout", "1s", "--default-max-inflight", "4")

r = chat(p.addr, "hello")
ok(r.status == 200, "chat through the balancer: 200")
j = r.json()
ok(j.get("object") == "chat.completion" and j["choices"][0]["message"]["content"],
   "chat.completion with content")
ok(r.header("x-sim-id") in ("llama-3-1b-low", "llama-3-3b-high"), "answered by a simulator (%s)" % r.header("x-sim-id"))

ids = []
s = connect(p.addr)
for _ in range(40):
    r = request(p.addr, "POST", "/v1/chat/completions",
                {"model": "llama-3-1b", "messages": [{"role": "user", "content": "x"}], "max_tokens": 2}, conn=s)
    ids.append(r.header("x-sim-id"))
s.close()
is_((ids.count("llama-3-1b-low"), ids.count("llama-3-3b-high")), (30, 10), "weights 3:1 over 40 chats")

# streaming: same framing as direct
body = {"model": "llama-3-1b", "messages": [{"role": "user", "content": "stream"}], "stream": True,
        "max_tokens": 8}
direct = request(low.addr, "POST", "/v1/chat/completions", body)
via = None
for _ in range(4):  # wrr: land on "low" to compare like with like
    v = request(p.addr, "POST", "/v1/chat/completions", body)
    if v.header("x-sim-id") == "llama-3-1b-low":
        via = v
        break
ok(via is not None and via.status == 200, "stream through the balancer: 200")
if via is not None:
    is_(via.header("content-type"), direct.header("content-type"), "same content type as direct")
    de, ve = sse_events(direct.body), sse_events(via.body)
    is_(len(ve), len(de), "same number of SSE events as direct (%d)" % len(de))
    is_(ve[-1] if ve else None, "[DONE]", "stream ends with [DONE]")
    shape = lambda e: sorted(json.loads(e).keys()) if e != "[DONE]" else e  # noqa: E731
    is_([shape(e) for e in ve], [shape(e) for e in de], "events have the same shape as direct")
    ok(via.raw.endswith(b"\r\n\r\n"), "head intact")

# simulated 503 on one backend: retried on the other
r = request(p.addr, "POST", "/v1/chat/completions",
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 2},
            headers={"X-Sim-Fault": "status=503"})
is_(r.status, 503, "X-Sim-Fault status=503 on both: 503 forwarded after one retry")
m = admin_request(p, "GET", "/metrics").body.decode()
tot = sum(float(x) for x in re.findall(r"^llamalb_backend_retries_total\{[^}]*\} (\S+)$", m, re.M))
is_(tot, 1.0, "exactly one retry counted")

# mid-stream stall cut by --stream-idle-timeout
s = connect(p.addr)
b = json.dumps(body).encode()
s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
          b"X-Sim-Fault: stall-after=2\r\nContent-Length: %d\r\n\r\n%s" % (len(b), b))
t0 = time.time()
out, closed = read_until_close(s, 5)
el = time.time() - t0
s.close()
ok(out.startswith(b"HTTP/1.1 200") and closed and el < 3.0, "stalled stream closed after the idle timeout (%.2fs)" % el)
ok(not out.endswith(b"0\r\n\r\n") and b"[DONE]" not in out, "stalled stream truncated, no [DONE]")
done()
