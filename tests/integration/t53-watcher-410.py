#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""410 Gone, both forms (docs/watcher.md, "What the loop relies on in the
Kubernetes API"): an ERROR event with code 410 in a 200 watch stream, and a
410 HTTP status on a watch from a compacted resourceVersion; plus a continue
token expiring in the middle of a paged list. Each time the watcher relists
and swaps the complete set in at once: changes it missed while
desynchronised (a deletion, an addition) are repaired, and traffic through
the balancer never fails meanwhile."""
import threading
import time

from harness import chat, deadline, done, is_, lb, ok, sim
from fakek8s import FakeK8s, endpoint, endpoint_slice, service
from watchlib import kubeconfig, lb_url, metric, wait_backends, watcher, weights

deadline(60)
s1 = sim(name="pod-1")
fk = FakeK8s(bookmark_interval=0.5)
kc = kubeconfig(fk)
fk.apply("services", service("llama", weight=2))
fk.apply("endpointslices", endpoint_slice("llama", "llama-a", [endpoint("127.0.0.1", "pod-1")],
                                          s1.port))
for i in range(3):
    fk.apply("services", service("extra-%d" % i, weight=1))
b = lb("--backend-allow", "127.0.0.0/8")
w = watcher(kc, "--lb", lb_url(b), "--page-limit", "2", "--backend-allow", "127.0.0.0/8")
cur, _ = wait_backends(b, lambda s: len(s) == 1)
is_(weights(cur), {"default/llama/pod-1": 2}, "startup")
ok(fk.count(lambda m, p, q: "continue" in q) >= 1, "the initial list was paged (limit 2)")

# Traffic all along: no request may fail while the watcher relists.
stop = threading.Event()
stats = {"ok": 0, "bad": 0}


def traffic():
    while not stop.is_set():
        try:
            r = chat(b.addr, timeout=5)
            stats["ok" if r.status == 200 else "bad"] += 1
        except OSError:
            stats["bad"] += 1
        time.sleep(0.01)


t = threading.Thread(target=traffic)
t.start()


def missed_changes(tag):
    """Changes the watch never delivers: made while the stream is stalled."""
    fk.stall(True)
    time.sleep(0.2)
    fk.apply("services", service("new-" + tag, weight=3, cluster_ip="10.43.1.1"))
    fk.apply("endpointslices", endpoint_slice("new-" + tag, "new-" + tag + "-x",
                                              [endpoint("127.0.0.1", "p-" + tag)], s1.port))
    fk.apply("services", service("llama", weight=5))


# 1. In-stream ERROR 410 (HTTP 200), and the relist meets an expired continue token.
relists0 = metric(w, "llamalb_watcher_relists_total", "services")
missed_changes("a")
fk.expire_next_continue = True
fk.expire(mode="event", kill_open=True)
fk.stall(False)
t0 = time.time()
cur, dt = wait_backends(b, lambda s: weights(s) == {"default/llama/pod-1": 5,
                                                    "default/new-a/p-a": 3}, timeout=5)
ok(dt is not None, "ERROR 410 event: relisted, missed changes applied (%.0f ms)" %
   ((time.time() - t0) * 1000))
ok(metric(w, "llamalb_watcher_relists_total", "services") > relists0, "relist counted")
ok(metric(w, "llamalb_watcher_events_total", 'type="ERROR"') >= 1, "ERROR event counted")
ok("410" in w.stderr_text(), "410 logged")
ok(not fk.expire_next_continue, "a continue token expired during the relist (410 on a page)")
ok("continue token expired" in w.stderr_text(), "...and the watcher started that list again")

# 2. HTTP 410 on the watch: the stream drops, history is compacted meanwhile.
relists1 = metric(w, "llamalb_watcher_relists_total", "services")
missed_changes("b")
fk.delete("services", "default", "new-a")       # a deletion the watch never sees
fk.expire(mode="http", kill_open=False)
fk.drop()
fk.stall(False)
gone_before = fk.count(lambda m, p, q: "watch" in q)
cur, dt = wait_backends(b, lambda s: weights(s) == {"default/llama/pod-1": 5,
                                                    "default/new-b/p-b": 3}, timeout=8)
ok(dt is not None, "HTTP 410: relisted; the missed deletion is repaired")
ok(metric(w, "llamalb_watcher_relists_total", "services") > relists1, "relist counted")
ok("answered 410" in w.stderr_text(), "HTTP 410 on the watch logged")
ok(fk.count(lambda m, p, q: "watch" in q) > gone_before, "watching again after the relist")

# A change after recovery still arrives quickly.
fk.apply("services", service("new-b", weight=7, cluster_ip="10.43.1.1"))
cur, dt = wait_backends(b, lambda s: weights(s).get("default/new-b/p-b") == 7, timeout=3)
ok(dt is not None and dt < 1.0, "watch healthy again: change in %.0f ms" % ((dt or 9) * 1000))
stop.set()
t.join()
ok(stats["ok"] > 20 and stats["bad"] == 0, "traffic never failed (%d ok, %d failed)" %
   (stats["ok"], stats["bad"]))
ok(w.alive(), "watcher alive")
fk.close()
done()
