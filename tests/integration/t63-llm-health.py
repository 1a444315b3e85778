#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Health, slow start and draining (README.md, "What it does": "Health"):
consecutive 5xx eject a backend; active probes keep an unhealthy starter
out and bring it back when it answers; a new backend's share ramps up over
--slow-start; weight 0 and removal stop new requests while an in-flight
stream on the backend finishes."""
import time

from harness import chat, deadline, done, is_, lb, note, ok, sim, sse_events, wait_for
from llm import Background, register, served_by, services

deadline(150)

# -- passive: five 500s in a row eject; traffic goes elsewhere; never all ejected
bad = sim("--fault", "status=500", name="bad")
good = sim(name="good")
p = lb("--backend", "bad=%s" % bad.addr, "--backend", "good=%s" % good.addr, "--policy", "wrr",
       "--retry-on-status", "off", "--eject-after", "5", "--eject-time", "30s")
codes = [chat(p.addr).status for _ in range(10)]
note("statuses while bad fails: %s" % codes)
is_(services(p)["bad"]["state"], "down", "five consecutive 500s eject the backend")
who = set(served_by(chat(p.addr)) for _ in range(10))
is_(who, {"good"}, "an ejected backend gets no traffic")
p.stop()

# -- active: an unhealthy starter is kept out until its probes pass
starter = sim("--fault", "unhealthy-for=2s", name="starter")
other = sim(name="other")
t0 = time.time()
p = lb("--backend", "starter=%s" % starter.addr, "--backend", "other=%s" % other.addr,
       "--health-interval", "200ms")
ok(wait_for(lambda: services(p)["starter"]["state"] == "down", timeout=3),
   "a backend answering its probe with 503 is ejected")
who = set(served_by(chat(p.addr)) for _ in range(6))
is_(who, {"other"}, "no traffic goes to it while it is down")
ok(wait_for(lambda: services(p)["starter"]["state"] == "up", timeout=6),
   "it comes back once its probes pass (after %.1f s)" % (time.time() - t0))
ok(time.time() - t0 >= 1.8, "not before it recovered")
is_(chat(p.addr, model="starter").status, 200, "and serves again")
p.stop()

# -- slow start: a new backend's share grows over --slow-start
old = sim(name="old")
new = sim(name="new")
p = lb("--backend", "old=%s" % old.addr, "--policy", "random", "--default-max-inflight", "0",
       "--slow-start", "4s", "--backend-allow", "127.0.0.0/8")
time.sleep(4.2)  # "old" is past its own ramp
is_(register(p, "new", new).status, 200, "a new backend joins through the admin API")
early = [served_by(chat(p.addr)) for _ in range(120)]
time.sleep(max(0.0, 4.5 - 0))
late = [served_by(chat(p.addr)) for _ in range(120)]
e, l2 = early.count("new") / 120.0, late.count("new") / 120.0
note("share of the new backend: %.2f right after joining, %.2f after the ramp" % (e, l2))
ok(e < 0.35, "right after joining it gets a small share (%.2f)" % e)
ok(l2 > 0.35, "after --slow-start it gets its full share (%.2f)" % l2)
p.stop()

# -- draining: weight 0 stops new requests; the in-flight stream finishes
streamer = sim("--ttft-ms", "50", "--tokens-per-sec", "20", "--completion-tokens", "20",
               name="streamer")
rest = sim(name="rest")
p = lb("--backend-allow", "127.0.0.0/8", "--policy", "wrr")
register(p, "streamer", streamer, weight=1000)
register(p, "rest", rest, weight=1)
s = Background(p.addr, stream=True, timeout=30)
ok(wait_for(lambda: services(p)["streamer"]["inflight"] == 1, timeout=3),
   "a stream runs on the backend")
is_(register(p, "streamer", streamer, weight=0).status, 200, "its weight is set to 0")
is_(services(p)["streamer"]["state"], "draining", "it is draining")
who = set(served_by(chat(p.addr)) for _ in range(5))
is_(who, {"rest"}, "new requests go elsewhere")
r = s.wait()
ev = sse_events(r.body)
ok(r.status == 200 and ev[-1] == "[DONE]" and len(ev) == 21,
   "the stream that was running completes whole (%d events)" % len(ev))
register(p, "streamer", streamer, weight=1000)
s = Background(p.addr, stream=True, timeout=30)
ok(wait_for(lambda: services(p)["streamer"]["inflight"] == 1, timeout=3), "another stream starts")
from harness import admin_request  # noqa: E402
is_(admin_request(p, "DELETE", "/api/unregister/streamer").status, 200, "unregistered mid-stream")
r = s.wait()
ok(r.status == 200 and sse_events(r.body)[-1] == "[DONE]",
   "the stream on a removed backend still completes")
done()
