#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Replicas that schedule as one (docs/replicas.md): 2 and 3 llamalb replicas
on loopback, one active, the others started with --follow. Every request is
answered once and reaches a backend once (the sims' request logs, by
X-Request-Id); streams pass through the hop; the hop header never reaches a
backend; two replicas following each other do not loop; PUT /api/role and its
generation rule; killing the active under load fails no request, the
followers serve locally, and they follow it again once it is back."""
import json
import os
import signal
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (FakeBackend, admin_request, chat, deadline, done, is_, lb, note, ok,  # noqa: E402
                     respond_ok, serve_loop, sim, sse_events, wait_for)

deadline(120)
tmp = tempfile.mkdtemp(prefix="t80-")
logs = [os.path.join(tmp, "sim%d.log" % i) for i in range(2)]
sims = [sim("--ttft-ms", "60", "--tokens-per-sec", "200", "--completion-tokens", "4",
            "--request-log", logs[i], "--id", "s%d" % i, name="llama-3-1b") for i in range(2)]
backs = []
for i, s in enumerate(sims):
    backs += ["--backend", "s%d=%s" % (i, s.addr)]
extra = ["--backend-allow", "127.0.0.0/8", "--connect-timeout", "1s"]


def rid_counts():
    counts = {}
    for f in logs:
        if not os.path.exists(f):
            continue
        for line in open(f):
            parts = line.split()
            if len(parts) >= 2 and parts[1] == "chat":
                counts[parts[0]] = counts.get(parts[0], 0) + 1
            elif len(parts) >= 2 and "chat" in parts[1]:
                counts[parts[0]] = counts.get(parts[0], 0) + 1
    return counts


def role(p):
    return admin_request(p, "GET", "/api/role").json()


def metric(p, name):
    body = admin_request(p, "GET", "/metrics").body.decode()
    for line in body.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def load(replicas, n, tag, results, conc=6):
    """n chat requests spread round-robin over replicas, conc at a time."""
    lock = threading.Lock()
    idx = [0]

    def worker():
        while True:
            with lock:
                i = idx[0]
                idx[0] += 1
            if i >= n:
                return
            rid = "%s-%d" % (tag, i)
            try:
                r = chat(replicas[i % len(replicas)].addr, headers={"X-Request-Id": rid},
                         timeout=20)
                st = r.status
            except Exception as e:  # noqa: BLE001
                st = "error: %s" % e
            with lock:
                results[rid] = st

    ts = [threading.Thread(target=worker) for _ in range(conc)]
    for t in ts:
        t.start()
    return ts


# ---------------------------------------------------------------- 3 replicas, static
a = lb(*backs, *extra)
b = lb(*backs, *extra, "--follow", a.addr)
c = lb(*backs, *extra, "--follow", a.addr)
is_(role(a)["role"], "active", "replica started without --follow is active")
rb = role(b)
is_((rb["role"], rb["follow"]), ("follower", a.addr), "--follow: GET /api/role says follower of A")

res = {}
for t in load([a, b, c], 60, "r3", res):
    t.join()
is_(sum(1 for v in res.values() if v == 200), 60, "3 replicas: 60 requests, all answered 200")
counts = rid_counts()
ok(all(counts.get("r3-%d" % i) == 1 for i in range(60)),
   "every request reached a backend exactly once (%d distinct ids logged)" %
   len([k for k in counts if k.startswith("r3-")]))
fw = metric(b, "llamalb_replica_forwarded_total") + metric(c, "llamalb_replica_forwarded_total")
is_(fw, 40.0, "the followers forwarded their 40 requests")
is_(metric(a, "llamalb_replica_hops_received_total"), 40.0, "the active received 40 hops")
is_(metric(b, "llamalb_replica_following"), 1.0, "/metrics: llamalb_replica_following 1")
ok('via=active' in b.stderr_text(), "follower's access log: via=active")
ok('via=hop' in a.stderr_text(), "active's access log: via=hop")

# A stream through the hop.
r = chat(b.addr, stream=True, headers={"X-Request-Id": "stream-1"})
ev = sse_events(r.body)
ok(r.status == 200 and len(ev) >= 2 and ev[-1] == "[DONE]",
   "an SSE stream through a follower arrives whole (%d events)" % len(ev))

# ---------------------------------------------------------------- the hop header
seen = []


def handler(fc, req):
    seen.append(req)
    return respond_ok()


fake = FakeBackend(serve_loop(handler))
a2 = lb("--backend", fake.backend_arg(name="f"), *extra)
b2 = lb("--backend", fake.backend_arg(name="f"), *extra, "--follow", a2.addr)
r = chat(b2.addr, headers={"X-Request-Id": "hop-1"})
is_(r.status, 200, "a request through a follower to a fake backend")
ok(len(seen) == 1 and seen[0].header("x-llamalb-hop") is None,
   "the hop header never reaches a backend")
ok(len(seen) == 1 and seen[0].header("x-request-id") == "hop-1",
   "the request id survives the hop")
ok(len(seen) == 1 and "127.0.0.1" in (seen[0].header("x-forwarded-for") or ""),
   "X-Forwarded-For carries the chain")

# Two replicas that each think the other is active: no loop.
p = admin_request(a2, "PUT", "/api/role", {"generation": 5, "follow": b2.addr})
is_(p.status, 200, "PUT /api/role: A2 follows B2 (B2 follows A2)")
seen.clear()
r = chat(b2.addr, headers={"X-Request-Id": "loop-1"})
is_((r.status, len(seen)), (200, 1), "followers of each other: answered once, no loop")
p = admin_request(a2, "PUT", "/api/role", {"generation": 4, "follow": None})
is_(p.status, 409, "PUT /api/role with an older generation: 409")
p = admin_request(a2, "PUT", "/api/role", {"generation": 6, "follow": "not-an-address"})
is_(p.status, 400, "PUT /api/role with a bad address: 400")
p = admin_request(a2, "PUT", "/api/role", {"generation": 6, "follow": None}, headers={})
is_(p.status, 200, "PUT /api/role null: active again")
is_(role(a2)["role"], "active", "GET /api/role says active")
p = admin_request(a2, "PUT", "/api/role", {"generation": 7, "follow": a2.addr})
is_(role(a2)["role"], "active", "told to follow its own listener: stays active")
a2.stop()
b2.stop()
fake.stop()

# ---------------------------------------------------------------- kill the active under load
port = a.port
res = {}
ts = load([b, c], 120, "k", res, conc=4)
time.sleep(0.6)
a.stop(signal.SIGKILL)
note("active killed with %d requests answered" % len(res))
for t in ts:
    t.join()
bad = {k: v for k, v in res.items() if v != 200}
is_(len(bad), 0, "active killed under load: every request to a follower answered 200 (%s)" %
    list(bad.items())[:3])
counts = rid_counts()
ok(all(counts.get("k-%d" % i, 0) >= 1 for i in range(120)), "every one reached a backend")
dup = [k for k in counts if k.startswith("k-") and counts[k] > 1]
note("sent twice (the active died holding them, reset before any answer byte): %d" % len(dup))
ok(len(dup) <= 8, "only requests the dead active held are replayed (%d)" % len(dup))
ok(metric(b, "llamalb_replica_fallbacks_total") + metric(c, "llamalb_replica_fallbacks_total") >= 1,
   "the followers fell back to serving locally")
is_(metric(b, "llamalb_replica_active_down"), 1.0, "llamalb_replica_active_down 1")
ok('via=local' in b.stderr_text(), "follower's access log: via=local")

# The active comes back on the same port: the followers follow it again.
a = lb(*backs, *extra, "--listen", "127.0.0.1:%d" % port)


def back():
    chat(b.addr)
    chat(c.addr)
    return role(b)["active_down"] is False and role(c)["active_down"] is False


ok(wait_for(back, timeout=15, interval=0.2), "followers return to the active once it answers")
h0 = metric(a, "llamalb_replica_hops_received_total")
chat(b.addr)
is_(metric(a, "llamalb_replica_hops_received_total"), h0 + 1, "... and forward to it again")
done()
