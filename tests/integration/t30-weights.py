#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Weight split: smooth WRR gives the exact a,a,b,a sequence for 3:1 over
400 requests; random is within ±3 % of 75/25 over 4000; least and p2c send
fewer requests to a slow (busy) backend; weight 0 drains: no new requests,
the in-flight one completes."""
import json
import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403

deadline(58)

a = FakeBackend(name="a")
b = FakeBackend(name="b")


def who(r):
    return json.loads(r.body)["backend"]


def run_seq(p, n):
    s = connect(p.addr)
    out = []
    for _ in range(n):
        out.append(who(request(p.addr, "POST", "/v1/chat/completions", b"{}", conn=s)))
    s.close()
    return out


# ---------------------------------------------------------------- wrr
p = lb("--backend", a.backend_arg(3), "--backend", b.backend_arg(1), "--policy", "wrr")
seq = run_seq(p, 400)
is_(seq.count("a"), 300, "wrr 3:1 over 400: a got 300")
is_(seq.count("b"), 100, "wrr 3:1 over 400: b got 100")
is_(seq, ["a", "a", "b", "a"] * 100, "wrr 3:1: smooth sequence a,a,b,a repeated")
p.stop()

# ---------------------------------------------------------------- random
p = lb("--backend", a.backend_arg(3), "--backend", b.backend_arg(1), "--policy", "random")
t0 = time.time()
seq = run_seq(p, 4000)
frac = seq.count("a") / 4000.0
ok(abs(frac - 0.75) <= 0.03, "random 3:1 over 4000: a got %.1f %% (75 ± 3)" % (frac * 100))
ok(seq[:20] != ["a", "a", "b", "a"] * 5, "random: not the wrr pattern")
note("4000 requests in %.1fs" % (time.time() - t0))
p.stop()


# ---------------------------------------------------------------- least, p2c
def slow_fn(conn, req):
    time.sleep(0.2)
    return respond_ok('{"backend":"slow"}')


slow = FakeBackend(serve_loop(slow_fn), name="slow")
fast = FakeBackend(name="fast")


def load(p, seconds=2.0, threads=4):
    counts = {"slow": 0, "fast": 0}
    lock = threading.Lock()
    end = time.time() + seconds

    def worker():
        s = connect(p.addr)
        while time.time() < end:
            r = request(p.addr, "POST", "/v1/chat/completions", b"{}", conn=s)
            with lock:
                counts[who(r)] += 1
        s.close()
    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return counts


for pol in ["least", "p2c"]:
    p = lb("--backend", slow.backend_arg(), "--backend", fast.backend_arg(), "--policy", pol,
           "--default-max-inflight", "0")
    c = load(p)
    ok(c["fast"] > 5 * max(1, c["slow"]),
       "%s: busy backend gets fewer requests (slow %d, fast %d)" % (pol, c["slow"], c["fast"]))
    p.stop()

# ---------------------------------------------------------------- weight 0
z = FakeBackend(name="z")
p = lb("--backend", z.backend_arg(0), "--backend", b.backend_arg(1), "--policy", "wrr")
seq = run_seq(p, 20)
is_(seq, ["b"] * 20, "weight 0 from the start: no requests")
st = {s["name"]: s["state"] for s in json.loads(admin_request(p, "GET", "/api/services").body)}
is_(st.get("z"), "draining", "weight 0 shown draining")
p.stop()


# drain a backend with a request in flight through the admin API
def gated(conn, req):
    if req.target == "/slow":
        time.sleep(1.0)
    return respond_ok('{"backend":"g"}')


g = FakeBackend(serve_loop(gated), name="g")
p = lb("--backend", g.backend_arg(1), "--backend", b.backend_arg(1), "--policy", "wrr",
       "--backend-allow", "127.0.0.0/8")
res = {}
th = threading.Thread(target=lambda: res.setdefault("r", request(p.addr, "POST", "/slow", b"{}")))
th.start()
time.sleep(0.3)
inflight_on_g = g.nrequests == 1
r = admin_request(p, "POST", "/api/register", {"name": "g", "weight": 0, "ip": "127.0.0.1", "port": g.port})
ok(r.status == 200, "weight set to 0 through /api/register")
n0 = g.nrequests
seq = run_seq(p, 10)
th.join(5)
ok(inflight_on_g, "slow request was in flight on g")
ok("r" in res and res["r"].status == 200 and who(res["r"]) == "g", "in-flight request on the drained backend completed 200")
is_(g.nrequests, n0, "no new request to the weight-0 backend")
is_(seq, ["b"] * 10, "all new requests to the other backend")
done()
