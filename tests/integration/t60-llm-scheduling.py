#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Scenario: four single-slot simulated backends (about 150, 150, 100 and
75 ms per request), Poisson arrivals at 80 % of their capacity, the same
arrivals replayed against llamalb least, the original demo's balancer
(weighted random, no caps: hidden backend queues) and HAProxy (leastconn,
maxconn 1, its queue) when installed. The full benchmark with its targets
is bench/llm_sched.py; this CI-sized run proves the behaviour: no failed
request, far better tail than the demo's policy, HAProxy-class tail."""
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))
from harness import deadline, done, note, ok  # noqa: E402
import llm_sched as L  # noqa: E402

deadline(240)
L.BUILD = os.environ.get("LLAMALB_BUILD") or L.BUILD
procs = []
tmp = tempfile.mkdtemp(prefix="t60-")
try:
    addrs = L.start_sims(procs)
    arr = L.arrivals_for(0.8, 12, 2026)
    res = {}
    systems = ["llamalb-least", "demo-random"]
    if shutil.which("haproxy"):
        systems.append("haproxy-leastconn")
    for s in systems:
        res[s] = L.measure(s, addrs, arr, tmp)
        r = res[s]
        note("%-18s errors %d  p50 %.0f ms  p99 %.0f ms  ttft p50 %.0f ms  p99 %.0f ms  split %s"
             % (s, r["errors"], r["p50"] * 1e3, r["p99"] * 1e3, r["ttft_p50"] * 1e3,
                r["ttft_p99"] * 1e3, r["split"]))
    least, demo = res["llamalb-least"], res["demo-random"]
    ok(least["errors"] == 0, "llamalb least: no failed request of %d" % least["n"])
    ok(least["p99"] * 2 < demo["p99"],
       "least's p99 is less than half the demo policy's (hidden backend queues)")
    ok(least["p50"] < demo["p50"], "least's p50 beats the demo policy's")
    ok(least["ttft_p99"] < demo["ttft_p99"], "least's time-to-first-token p99 beats the demo's")
    ok(least["split"][3] > least["split"][0],
       "the fastest backend serves more than a slow one (%s)" % least["split"])
    if "haproxy-leastconn" in res:
        hap = res["haproxy-leastconn"]
        # The benchmark's target is 1.02 on a quiet machine; CI shares its cores.
        ok(least["p99"] <= hap["p99"] * 1.15,
           "least's p99 is HAProxy-class (%.0f vs %.0f ms)" % (least["p99"] * 1e3,
                                                              hap["p99"] * 1e3))
    else:
        note("haproxy not installed: comparison skipped")
finally:
    for p in procs:
        L.stop(p)
    shutil.rmtree(tmp, ignore_errors=True)
done()
