#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Per-backend caps and the gateway queue (README.md, "What it does": "One
generation at a time"; docs/protocols.md): a single-slot backend never gets
a second request (no hidden backend queue); waiting happens in llamalb's
queue, bounded in length (503 queue_full with Retry-After) and in time (503
queue_timeout); a client that disconnects while queued leaves at once and
the backend never sees its request; a freed slot goes to the waiting
request at once; least sends ties to the faster backend, measured live."""
import time

from harness import connect, deadline, done, is_, lb, like, note, ok, sim
from llm import Background, error_code, metric, metrics, served_by, sim_stats, wait_metric

deadline(120)
BODY = b'{"model":"m","messages":[{"role":"user","content":"hi"}]}'

# -- 1. cap 1: three concurrent requests, the backend sees one at a time
s = sim("--ttft-ms", "400", "--completion-tokens", "2", "--tokens-per-sec", "100", name="one")
p = lb("--backend", "one=%s" % s.addr)
reqs = [Background(p.addr) for _ in range(3)]
qlen = wait_metric(p, "llamalb_queue_length", lambda v: v >= 2, timeout=3)
st = sim_stats(s)
is_(qlen, 2.0, "two requests wait in llamalb's queue")
ok(st["in_flight"] <= 1 and st["queued"] == 0,
   "the single-slot backend holds one request and has no hidden queue (%s)" % st)
res = [r.wait() for r in reqs]
ok(all(getattr(r, "status", 0) == 200 for r in res), "all three complete with 200")
times = sorted(r.elapsed for r in reqs)
ok(times[2] >= 3 * 0.4, "they were served one after another (%.2f s for the last)" % times[2])
m = metrics(p)
is_(metric(m, "llamalb_queued_total"), 2.0, "two requests were queued")
ok(metric(m, "llamalb_queue_wait_seconds_sum") >= 0.4 * 3 * 0.9,
   "queue wait time is accounted (%.2f s)" % metric(m, "llamalb_queue_wait_seconds_sum"))
is_(metric(m, "llamalb_model_queued_total", model="llama-3-1b"), 2.0, "per-model queued count")
p.stop()

# -- 2. the queue's length bound: 503 queue_full with Retry-After
p = lb("--backend", "one=%s" % s.addr, "--queue-max", "1")
a = Background(p.addr)
wait_metric(p, "llamalb_backend_inflight", lambda v: v >= 1, backend="one")
b = Background(p.addr)
wait_metric(p, "llamalb_queue_length", lambda v: v >= 1)
c = Background(p.addr).wait()
is_(getattr(c, "status", None), 503, "a request beyond the queue bound gets 503")
is_(error_code(c), "queue_full", "with the OpenAI-style error code queue_full")
ok(c.header("retry-after") is not None, "and a Retry-After header")
like(c.header("content-type"), r"application/json", "as JSON")
ok(a.wait().status == 200 and b.wait().status == 200, "the running and the queued one complete")
p.stop()

# -- 3. the queue's time bound: 503 queue_timeout
slow = sim("--ttft-ms", "2500", "--completion-tokens", "1", name="slow")
p = lb("--backend", "slow=%s" % slow.addr, "--queue-timeout", "500ms")
a = Background(p.addr)
wait_metric(p, "llamalb_backend_inflight", lambda v: v >= 1, backend="slow")
b = Background(p.addr)
r = b.wait()
is_(getattr(r, "status", None), 503, "a request waiting longer than --queue-timeout gets 503")
is_(error_code(r), "queue_timeout", "with code queue_timeout")
ok(0.4 <= b.elapsed <= 1.5, "after about the queue timeout (%.2f s)" % b.elapsed)
is_(metric(metrics(p), "llamalb_queue_timeouts_total"), 1.0, "counted as a queue timeout")
a.wait()
p.stop()

# -- 4. a client that disconnects while queued leaves the queue at once
before = sim_stats(slow)["routes"]["chat"]
p = lb("--backend", "slow=%s" % slow.addr)
a = Background(p.addr)
wait_metric(p, "llamalb_backend_inflight", lambda v: v >= 1, backend="slow")
c2 = connect(p.addr)
c2.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
           b"Content-Length: %d\r\n\r\n" % len(BODY) + BODY)
is_(wait_metric(p, "llamalb_queue_length", lambda v: v >= 1), 1.0, "the second request is queued")
t0 = time.time()
c2.close()
ql = wait_metric(p, "llamalb_queue_length", lambda v: v == 0, timeout=2)
is_(ql, 0.0, "closing the client empties the queue (%.0f ms)" % ((time.time() - t0) * 1000))
a.wait()
time.sleep(0.2)
is_(sim_stats(slow)["routes"]["chat"] - before, 1, "the backend never saw the abandoned request")
p.stop()

# -- 5. a freed slot goes to the waiting request at once, on whichever backend frees
fast = sim("--ttft-ms", "100", "--completion-tokens", "1", name="fast")
p = lb("--backend", "slow=%s" % slow.addr, "--backend", "fast=%s" % fast.addr)
a = Background(p.addr)
b = Background(p.addr)
wait_metric(p, "llamalb_backend_inflight", lambda v: v >= 1, backend="slow")
c = Background(p.addr)
r = c.wait()
is_(served_by(r), "fast", "the queued request went to the backend that freed first")
ok(c.elapsed < 0.8, "without waiting for the slow one (%.2f s)" % c.elapsed)
a.wait(), b.wait()
p.stop()

# -- 6. least breaks ties by live speed: idle backends, the faster one wins
f2 = sim("--ttft-ms", "30", "--completion-tokens", "1", name="quick")
s2 = sim("--ttft-ms", "250", "--completion-tokens", "1", name="sluggish")
p = lb("--backend", "quick=%s" % f2.addr, "--backend", "sluggish=%s" % s2.addr)
for _ in range(4):  # let it measure both
    Background(p.addr).wait()
    [x.wait() for x in (Background(p.addr), Background(p.addr))]
who = [served_by(Background(p.addr).wait()) for _ in range(10)]
note("sequential requests went to %s" % who)
is_(who.count("quick"), 10, "with both idle, every request goes to the faster backend")
done()
