#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Scenario: four single-slot simulated backends (about 150, 150, 100 and
75 ms per request), Poisson arrivals at 80 % of their capacity, replayed
against llamalb least. This CI-sized run checks behaviour only: no request
fails, every backend takes a share, and the fastest backend takes more than
a slow one. How its latency compares with the original demo's balancer and
with HAProxy is a measurement, not a test (a busy machine would fail it):
`python3 bench/llm_sched.py` prints those ratios, and `make bench` runs it."""
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))
from harness import deadline, done, note, ok  # noqa: E402
import llm_sched as L  # noqa: E402

deadline(120)
L.BUILD = os.environ.get("LLAMALB_BUILD") or L.BUILD
procs = []
tmp = tempfile.mkdtemp(prefix="t60-")
try:
    addrs = L.start_sims(procs)
    arr = L.arrivals_for(0.8, 12, 2026)
    least = L.measure("llamalb-least", addrs, arr, tmp)
    note("llamalb-least  errors %d  p50 %.0f ms  p99 %.0f ms  split %s"
         % (least["errors"], least["p50"] * 1e3, least["p99"] * 1e3, least["split"]))
    ok(least["n"] > 0 and least["errors"] == 0,
       "llamalb least: no failed request of %d" % least["n"])
    ok(all(n > 0 for n in least["split"]), "every backend takes a share (%s)" % least["split"])
    ok(least["split"][3] > least["split"][0],
       "the fastest backend serves more than a slow one (%s)" % least["split"])
finally:
    for p in procs:
        L.stop(p)
    shutil.rmtree(tmp, ignore_errors=True)
done()
