#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Model routing (README.md, "What it does": "Model routing";
docs/protocols.md): models from registration, config and GET /v1/models
probes; requests routed by the body's top-level "model" (however large the
body), aliases, unknown models to any backend or 404 model_not_found; GET
/v1/models answered by llamalb with every healthy model once; probes never
sent to a busy single-slot backend."""
import json
import time

from harness import chat, deadline, done, is_, lb, note, ok, request, sim, wait_for
from llm import Background, error_code, metric, metrics, register, served_by, services, sim_stats

deadline(120)
a1 = sim(name="llama-3-1b-low", env=None)
a2 = sim("--id", "low-2", name="llama-3-1b-low")
b = sim(name="llama-3-3b-high")

# -- probed models, aggregated and deduplicated
p = lb("--backend", "low1=%s" % a1.addr, "--backend", "low2=%s" % a2.addr,
       "--backend", "high=%s" % b.addr, "--health-interval", "200ms",
       "--model-alias", "small=llama-3-1b-low", "--default-max-inflight", "4")
ok(wait_for(lambda: all(s["models"] for s in services(p).values()), timeout=5),
   "every backend's models were probed from its /v1/models")
r = request(p.addr, "GET", "/v1/models")
is_(r.status, 200, "GET /v1/models on the public port")
lst = r.json()
ids = [m["id"] for m in lst["data"]]
is_(lst["object"], "list", "OpenAI list format")
is_(sorted(ids), ["llama-3-1b-low", "llama-3-3b-high"], "each model once (two replicas of one)")
ok(all(m["object"] == "model" and "created" in m and "owned_by" in m for m in lst["data"]),
   "each entry is a model object")

# -- routing by model
who = [served_by(chat(p.addr, model="llama-3-3b-high")) for _ in range(10)]
is_(set(who), {"llama-3-3b-high"}, "requests for llama-3-3b-high all go to its server")
who = [served_by(chat(p.addr, model="llama-3-1b-low")) for _ in range(20)]
is_(set(who), {"llama-3-1b-low", "low-2"}, "requests for llama-3-1b-low spread over its two replicas")
who = [served_by(chat(p.addr, model="small")) for _ in range(6)]
ok(set(who) <= {"llama-3-1b-low", "low-2"}, "an alias routes to the served name (%s)" % set(who))
big = {"messages": [{"role": "user", "content": "x" * 200000}], "model": "llama-3-3b-high"}
r = request(p.addr, "POST", "/v1/chat/completions", json.dumps(big).encode(),
            headers={"Content-Type": "application/json"})
is_(served_by(r), "llama-3-3b-high", "the model is found after 200 KB of prompt")
rs = [chat(p.addr, model="gpt-4o") for _ in range(5)]
ok(all(r.status == 200 for r in rs),
   "an unknown model is served by some backend by default (%s)" % set(map(served_by, rs)))
m = metrics(p)
is_(metric(m, "llamalb_model_requests_total", model="llama-3-3b-high"), 11.0,
    "per-model request count")
p.stop()

# -- unknown model refused when configured; registration carries models
p = lb("--unknown-model", "reject", "--backend-allow", "127.0.0.0/8")
r = register(p, "reg-high", b, models=["llama-3-3b-high"])
is_(r.status, 200, "register with a models list")
is_(services(p)["reg-high"]["models"], ["llama-3-3b-high"], "the models are listed")
r = chat(p.addr, model="llama-3-3b-high")
is_(served_by(r), "llama-3-3b-high", "routed by the registered model")
r = chat(p.addr, model="nope")
is_(r.status, 404, "an unknown model gets 404 when --unknown-model reject")
is_(error_code(r), "model_not_found", "code model_not_found")
ok("nope" in r.json()["error"]["message"], "the message names the model")
p.stop()

# -- probes never pile onto a busy single-slot backend
# The sim must not block /sim/stats itself (a real server would answer
# nothing while it generates); llamalb decides from its own in-flight count.
blocking = sim("--ttft-ms", "1500", "--completion-tokens", "1", "--no-block-during-generation",
               name="busy")
p = lb("--backend", "busy=%s" % blocking.addr, "--health-interval", "100ms",
       "--probe-timeout", "300ms")
wait_for(lambda: sim_stats(blocking)["routes"]["models"] >= 1, timeout=3)
long = Background(p.addr)
time.sleep(0.2)
probes_before = sim_stats(blocking)["routes"]["models"]
time.sleep(1.0)
probes_during = sim_stats(blocking)["routes"]["models"] - probes_before
is_(probes_during, 0, "no probe is sent while the backend generates")
is_(long.wait().status, 200, "the generation completes")
is_(services(p)["busy"]["state"], "up", "the busy backend was never marked down")
note("probes before the request: %d" % probes_before)
done()
