#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The watch stream misbehaving (docs/watcher.md, "The watch loop", steps 6 and
7): a stalled stream (no bytes, not even bookmarks) is detected and
reopened; a cut connection is re-watched from the last resourceVersion; the
API server going down keeps the last known set in force and the watcher
catches up when it returns; a malformed line and a 10 MiB line are dropped
and answered by a relist, with no crash and bounded memory."""
import time

from harness import deadline, done, is_, lb, note, ok
from fakek8s import FakeK8s, service
from watchlib import kubeconfig, lb_url, metric, rss_kb, wait_backends, watcher, weights

deadline(60)
fk = FakeK8s(bookmark_interval=0.3)
kc = kubeconfig(fk)
fk.apply("services", service("a", weight=1, cluster_ip="10.43.0.1"))
fk.apply("services", service("b", weight=2, cluster_ip="10.43.0.2"))
b = lb()
w = watcher(kc, "--mode", "service", "--lb", lb_url(b), "--stall-timeout", "1s",
            "--backoff-max", "2s")
want = {"default/a": 1, "default/b": 2}
cur, _ = wait_backends(b, lambda s: weights(s) == want)
is_(weights(cur), want, "startup")


def bump(name, weight, timeout=3):
    fk.apply("services", service(name, weight=weight, cluster_ip="10.43.0.1"))
    cur, dt = wait_backends(b, lambda s: weights(s).get("default/" + name) == weight, timeout)
    return dt


# Stalled stream.
fk.stall(True)
time.sleep(2.6)
ok(metric(w, "llamalb_watcher_watch_stalls_total", "services") >= 1,
   "silent stream detected (stall limit 1 s)")
ok("stalled" in w.stderr_text(), "stall logged")
is_(weights(wait_backends(b, lambda s: True)[0]), want, "set kept while stalled")
fk.stall(False)
dt = bump("a", 3, timeout=4)
ok(dt is not None, "after the stall, changes flow again (%.0f ms)" % ((dt or 0) * 1000))
want["default/a"] = 3

# Cut connection: re-watch from the last version, no relist.
relists = metric(w, "llamalb_watcher_relists_total", "services")
watches = fk.watch_count("services")
fk.drop()
dt = bump("a", 4, timeout=4)
ok(dt is not None, "cut stream: re-watched, change arrived (%.0f ms)" % ((dt or 0) * 1000))
want["default/a"] = 4
ok(fk.watch_count("services") > watches, "a new watch was opened")
is_(metric(w, "llamalb_watcher_relists_total", "services"), relists, "no relist for a cut stream")
last = [q for m, p, q in fk.requests if "watch" in q and p.endswith("/services")][-1]
ok(last.get("resourceVersion") not in (None, "", "0"), "re-watch from a resourceVersion (%s)" %
   last.get("resourceVersion"))

# API server down.
fk.down()
time.sleep(3)
fk.apply("services", service("c", weight=5, cluster_ip="10.43.0.3"))  # happens while down
ok(w.alive(), "watcher alive while the API server is down")
is_(weights(wait_backends(b, lambda s: True)[0]), want, "last known set kept (never emptied)")
ok(metric(w, "llamalb_watcher_api_errors_total", "services") >= 1, "failures counted")
ok("Couldn't connect" in w.stderr_text() or "connect" in w.stderr_text().lower(),
   "connection failures logged")
fk.up()
cur, dt = wait_backends(b, lambda s: weights(s).get("default/c") == 5, timeout=8)
ok(dt is not None, "API server back: the change made meanwhile arrives (%.1f s)" % (dt or 0))
want["default/c"] = 5

# Malformed lines: a truncated event, then plain garbage.
for i, junk in enumerate([b'{"type":"MODIFIED","object":{"metadata":\n', b"hello world\n"]):
    bad = metric(w, "llamalb_watcher_bad_lines_total", "services")
    rel = metric(w, "llamalb_watcher_relists_total", "services")
    end = time.time() + 5
    while fk.open_watches("services") == 0 and time.time() < end:
        time.sleep(0.05)
    started = fk.watch_count("services")
    fk.inject(junk, resource="services")
    end = time.time() + 5
    while metric(w, "llamalb_watcher_relists_total", "services") <= rel and time.time() < end:
        time.sleep(0.05)
    # The relist ends in a new watch; inject the next line only into that one
    # (the old stream may still be registered while it closes: a line written
    # there would be lost, which made this test flaky under ASan).
    end = time.time() + 5
    while fk.watch_count("services") <= started and time.time() < end:
        time.sleep(0.05)
    ok(metric(w, "llamalb_watcher_bad_lines_total", "services") > bad, "malformed line %d seen" % i)
    ok(metric(w, "llamalb_watcher_relists_total", "services") > rel, "...and answered by a relist")
    ok(w.alive(), "...no crash")
is_(weights(wait_backends(b, lambda s: weights(s) == want, timeout=3)[0]), want,
    "set intact after the malformed lines")

# A 10 MiB line: dropped at the 1 MiB limit, relist, memory bounded.
rss0 = rss_kb(w.pid)
rel = metric(w, "llamalb_watcher_relists_total", "services")
end = time.time() + 5
while fk.open_watches("services") == 0 and time.time() < end:
    time.sleep(0.05)
huge = (b'{"type":"MODIFIED","object":{"metadata":{"name":"a","namespace":"default",'
        b'"annotations":{"x":"' + b"x" * (10 << 20) + b'"}}}}\n')
fk.inject(huge, resource="services")
end = time.time() + 10
while metric(w, "llamalb_watcher_relists_total", "services") <= rel and time.time() < end:
    time.sleep(0.05)
rss1 = rss_kb(w.pid)
note("watcher RSS before %d KiB, after the 10 MiB line %d KiB" % (rss0, rss1))
ok(metric(w, "llamalb_watcher_relists_total", "services") > rel, "10 MiB line: relist")
ok("longer than 1048576" in w.stderr_text(), "oversized line logged")
ok(rss1 - rss0 < 4096, "memory bounded (grew %d KiB < 4 MiB)" % (rss1 - rss0))
ok(w.alive(), "no crash")
dt = bump("b", 9, timeout=4)
ok(dt is not None and dt < 1.0, "healthy afterwards: change in %.0f ms" % ((dt or 9) * 1000))
want["default/b"] = 9
is_(weights(wait_backends(b, lambda s: True)[0]), want, "final set")
fk.close()
done()
