#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Metrics you can graph (README.md, "Metrics"): after real traffic (plain
answers, streams with and without usage, queued requests, API keys, a
follower replica), `promtool check metrics` (Debian's prometheus package)
finds nothing to say about /metrics of the active and of the follower;
every _sum has its _count; the time-to-first-token and time-between-tokens
histograms count what was served, per backend and per model; prompt and
completion tokens per model and per key come from the answers' usage, and
from the stream's events where no usage comes."""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (admin_request, chat, deadline, done, is_, lb, note, ok, sim,  # noqa: E402
                     sse_events, wait_for)

deadline(90)
KEY = "sk-metrics-0123456789abcd"
tmp = tempfile.mkdtemp(prefix="t74-")
keyfile = os.path.join(tmp, "keys")
with open(keyfile, "w") as f:
    f.write("%s name=team-m\n" % KEY)
AUTH = {"Authorization": "Bearer " + KEY}

# m1 ends its streams with usage; m2 never sends usage in a stream.
s1 = sim("--model-name", "m1", "--ttft-ms", "40", "--tokens-per-sec", "200",
         "--completion-tokens", "5", "--include-usage", name="m1")
s2 = sim("--model-name", "m2", "--ttft-ms", "10", "--tokens-per-sec", "400",
         "--completion-tokens", "7", name="m2")
common = ["--backend", "a=%s,models=m1" % s1.addr, "--backend", "b=%s,models=m2" % s2.addr,
          "--api-key-file", keyfile, "--backend-allow", "127.0.0.0/8"]
p = lb(*common)
f = lb(*common, "--follow", p.addr)

usage = {"m1": [0, 0], "m2": [0, 0]}
lock = threading.Lock()


def one(model, stream, via=p):
    r = chat(via.addr, model=model, stream=stream, headers=AUTH,
             extra={"stream_options": {"include_usage": True}} if stream else None)
    assert r.status == 200, (r.status, r.body[:200])
    if stream:
        ev = [e for e in sse_events(r.body) if e != "[DONE]"]
        u = [json.loads(e).get("usage") for e in ev]
        u = [x for x in u if x]
        pt, ct = (u[-1]["prompt_tokens"], u[-1]["completion_tokens"]) if u else (0, len(ev))
    else:
        u = r.json()["usage"]
        pt, ct = u["prompt_tokens"], u["completion_tokens"]
    with lock:
        usage[model][0] += pt
        usage[model][1] += ct
    return r


for i in range(3):
    one("m1", False)
    one("m1", True)
    one("m2", True)
one("m2", False)
one("m1", False, via=f)  # through the follower: counted by the active
# three at once on the single-slot m1: two wait in the queue
ts = [threading.Thread(target=one, args=("m1", False)) for _ in range(3)]
for t in ts:
    t.start()
for t in ts:
    t.join(20)

text = admin_request(p, "GET", "/metrics").body.decode()
ftext = admin_request(f, "GET", "/metrics").body.decode()
with open(os.path.join(tmp, "active.prom"), "w") as fh:
    fh.write(text)


def val(name, **labels):
    want = name + ("{" + ",".join('%s="%s"' % kv for kv in labels.items()) + "}"
                   if labels else "")
    for line in text.splitlines():
        if line.startswith(want + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


# ---- promtool
promtool = shutil.which("promtool")
if promtool is None:
    if os.environ.get("CI"):
        ok(False, "promtool is installed (CI: Debian's prometheus package)")
    else:
        ok(True, "# SKIP promtool checks: install Debian's prometheus package "
           "(scripts/deps.sh kit)")
else:
    for who, body in (("active", text), ("follower", ftext)):
        c = subprocess.run([promtool, "check", "metrics"], input=body.encode(),
                           capture_output=True, timeout=30)
        out = (c.stdout + c.stderr).decode().strip()
        is_((c.returncode, out), (0, ""), "promtool check metrics: nothing to say (%s)" % who)

# ---- the exposition's shape, whatever promtool's version checks
types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
samples = re.findall(r"^([a-z_:]+)(?:\{[^}]*\})? ", text, re.M)
orphans = sorted({s for s in samples if re.search(r"_(sum|count|bucket)$", s)
                  and types.get(re.sub(r"_(sum|count|bucket)$", "", s)) != "histogram"})
is_(orphans, [], "every _sum, _count and _bucket belongs to a histogram")
hists = [n for n, t in types.items() if t == "histogram"]
missing = [n for n in hists if (n + "_sum") not in samples or (n + "_count") not in samples]
is_(missing, [], "every histogram has its _sum and _count (%d histograms)" % len(hists))
bad_inf = []
for m in re.finditer(r'^(\S+)_bucket\{(.*?),?le="\+Inf"\} (\S+)$', text, re.M):
    labels = "{" + m.group(2) + "}" if m.group(2) else ""
    cnt = re.search(r"^%s_count%s (\S+)$" % (re.escape(m.group(1)), re.escape(labels)), text, re.M)
    if cnt is None or cnt.group(1) != m.group(3):
        bad_inf.append(m.group(1) + labels)
is_(bad_inf, [], "every +Inf bucket equals its _count")
counters = [n for n, t in types.items() if t == "counter" and not n.endswith("_total")]
is_(counters, [], "every counter's name ends in _total")

# ---- what the histograms counted
n_m1 = 3 + 3 + 1 + 3  # plain, streams, through the follower, the queued three
is_(val("llamalb_model_ttft_seconds_count", model="m1"), float(n_m1),
    "model m1: one time to first token per answer (%d)" % n_m1)
is_(val("llamalb_backend_ttft_seconds_count", backend="a"), float(n_m1),
    "backend a: the same, per backend")
ok((val("llamalb_model_ttft_seconds_sum", model="m1") or 0) / n_m1 >= 0.035,
   "model m1: TTFT sum at least the sim's 40 ms each")
ok(val("llamalb_model_ttft_seconds_bucket", model="m1", le="0.025") == 0,
   "model m1: no TTFT under 25 ms (the sim waits 40)")
is_(val("llamalb_model_tbt_seconds_count", model="m2"), 3.0,
    "model m2: time between tokens for its 3 streams only")
ok(0 < (val("llamalb_backend_tbt_seconds_sum", backend="b") or 0) / 3 <= 0.05,
   "backend b: mean gap at 400 tokens/s is small (%.4f s)"
   % ((val("llamalb_backend_tbt_seconds_sum", backend="b") or 0) / 3))
is_(val("llamalb_queue_wait_seconds_count"), 2.0, "queue wait: the two that waited")
ok((val("llamalb_queue_wait_seconds_sum") or 0) >= 0.04,
   "... and how long (%.3f s)" % (val("llamalb_queue_wait_seconds_sum") or 0))
is_(val("llamalb_model_queue_wait_seconds_count", model="m1"), 2.0, "... for model m1")

# ---- tokens from usage, and from events where no usage came
is_((val("llamalb_model_prompt_tokens_total", model="m1"),
     val("llamalb_model_completion_tokens_total", model="m1")),
    (float(usage["m1"][0]), float(usage["m1"][1])),
    "model m1: prompt and completion tokens as the answers' usage said %s" % usage["m1"])
is_(val("llamalb_model_completion_tokens_total", model="m2"), float(usage["m2"][1]),
    "model m2: completion tokens, from usage (plain) and events (streams) %s" % usage["m2"])
is_(val("llamalb_key_completion_tokens_total", key="team-m"),
    float(usage["m1"][1] + usage["m2"][1]), "key team-m: every completion token")


# ---- the upstream pool: every request is over, its connection pooled and idle
def idle_and_opened():
    t = admin_request(p, "GET", "/metrics").body.decode()
    got = {}
    for line in t.splitlines():
        for name in ("llamalb_upstream_idle_connections", "llamalb_upstream_connects_total"):
            if line.startswith(name + " "):
                got[name] = float(line.split()[1])
    return got


pool = wait_for(lambda: (lambda g: g if g.get("llamalb_upstream_idle_connections", 0) >= 2
                         else None)(idle_and_opened()), timeout=5)
ok(pool is not None and
   2 <= pool["llamalb_upstream_idle_connections"] <= pool["llamalb_upstream_connects_total"],
   "idle upstream connections: at least one per backend, at most as many as were opened (%s)"
   % pool)
note("TTFT m1 sum %.3f s, TBT b sum %.4f s" % (val("llamalb_model_ttft_seconds_sum", model="m1"),
                                              val("llamalb_backend_tbt_seconds_sum", backend="b")))
f.stop()
p.stop()
done()
