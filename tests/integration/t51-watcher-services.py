#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""llamalb-watcher in service mode against the fake API server and a real
llamalb: the startup list, ADDED, MODIFIED (weight change), relabel out of
and back into the selector, DELETED, annotations (models, max-inflight, port,
a bad weight), headless Services skipped, --namespace, /healthz, /readyz,
/metrics. Every change must reach the balancer within one second of the API
event; the measured latencies are printed."""
from harness import deadline, done, is_, lb, note, ok, request
from fakek8s import FakeK8s, service
from watchlib import kubeconfig, lb_url, metric, wait_backends, watcher, weights

deadline(60)
fk = FakeK8s()
kc = kubeconfig(fk)
fk.apply("services", service("llama-3-1b-low", weight=3, cluster_ip="10.43.14.226"))
fk.apply("services", service("llama-3-3b-high", weight=1, cluster_ip="10.43.14.227"))
fk.apply("services", service("not-ours", selector_label=False, cluster_ip="10.43.14.228"))
fk.apply("services", service("headless", weight=1, cluster_ip="None"))
fk.apply("services", service("prod-svc", ns="prod", weight=4, cluster_ip="10.43.20.1"))

b = lb()
w = watcher(kc, "--mode", "service", "--lb", lb_url(b))
latencies = []


def change(what, pred, fn):
    """Applies fn() to the fake and waits for pred(backends) on the balancer."""
    fn()
    cur, dt = wait_backends(b, pred, timeout=3)
    ok(dt is not None and dt < 1.0, "%s reaches the balancer within 1 s (%s)" %
       (what, "%.0f ms" % (dt * 1000) if dt is not None else "never"))
    if dt is not None:
        latencies.append(dt)
    return cur


cur, dt = wait_backends(b, lambda s: len(s) == 3)
is_(weights(cur), {"default/llama-3-1b-low": 3, "default/llama-3-3b-high": 1, "prod/prod-svc": 4},
    "startup list: labelled Services of all namespaces, weights from the annotation")
is_(cur.get("default/llama-3-1b-low", {}).get("ip"), "10.43.14.226", "service mode: the ClusterIP")
is_(cur.get("default/llama-3-1b-low", {}).get("port"), 8080, "the Service port")
ok("headless" in w.stderr_text() and "default/headless" not in cur,
   "headless Service skipped with a log line")

change("ADDED", lambda s: "default/llama-new" in s,
       lambda: fk.apply("services", service("llama-new", weight=2, cluster_ip="10.43.14.230")))
cur = change("MODIFIED weight 3 -> 5", lambda s: weights(s).get("default/llama-3-1b-low") == 5,
             lambda: fk.apply("services", service("llama-3-1b-low", weight=5,
                                                  cluster_ip="10.43.14.226")))
change("relabel out of the selector", lambda s: "default/llama-new" not in s,
       lambda: fk.patch("services", "default", "llama-new",
                        lambda o: o["metadata"]["labels"].update({"llamaedge/target": "false"})))
change("relabel back in", lambda s: "default/llama-new" in s,
       lambda: fk.patch("services", "default", "llama-new",
                        lambda o: o["metadata"]["labels"].update({"llamaedge/target": "true"})))
change("DELETED", lambda s: "default/llama-new" not in s,
       lambda: fk.delete("services", "default", "llama-new"))
change("label added to a Service that had none", lambda s: "default/not-ours" in s,
       lambda: fk.patch("services", "default", "not-ours",
                        lambda o: o["metadata"]["labels"].update({"llamaedge/target": "true"})))
cur = change("annotations models + max-inflight",
             lambda s: s.get("default/llama-3-3b-high", {}).get("max_inflight") == 2,
             lambda: fk.apply("services", service(
                 "llama-3-3b-high", weight=1, cluster_ip="10.43.14.227",
                 annotations={"llamaedge/models": "llama-3-3b,llama-3b",
                              "llamaedge/max-inflight": "2"})))
is_(cur.get("default/llama-3-3b-high", {}).get("models"), ["llama-3-3b", "llama-3b"],
    "models annotation, comma-separated")
cur = change("bad weight annotation -> 1", lambda s: weights(s).get("default/llama-3-1b-low") == 1,
             lambda: fk.apply("services", service("llama-3-1b-low", weight="heavy",
                                                  cluster_ip="10.43.14.226")))
ok('bad weight annotation "heavy"' in w.stderr_text(), "bad weight is logged")
cur = change("port annotation picks a named port",
             lambda s: s.get("default/llama-3-1b-low", {}).get("port") == 9000,
             lambda: fk.apply("services", service(
                 "llama-3-1b-low", weight=3, cluster_ip="10.43.14.226",
                 annotations={"llamaedge/port": "api"},
                 ports=[{"name": "metrics", "port": 9100}, {"name": "api", "port": 9000}])))

note("change-to-balancer latency: %s" % ", ".join("%.0f ms" % (x * 1000) for x in latencies))
ok(latencies and max(latencies) < 1.0, "max latency %.0f ms < 1 s" % (max(latencies) * 1000))

# --namespace: a second watcher and balancer see prod only.
b2 = lb()
w2 = watcher(kc, "--mode", "service", "--namespace", "prod", "--lb", lb_url(b2))
cur, _ = wait_backends(b2, lambda s: len(s) > 0)
is_(weights(cur), {"prod/prod-svc": 4}, "--namespace prod: only prod's Services")
ok(fk.count(lambda m, p, q: p == "/api/v1/namespaces/prod/services") > 0,
   "namespaced URLs are used")

# The watcher's own listener.
is_(request(w.addr, "GET", "/healthz").status, 200, "/healthz 200")
is_(request(w.addr, "GET", "/readyz").status, 200, "/readyz 200 once listed")
is_(request(w.addr, "GET", "/nope").status, 404, "unknown path 404")
ok(metric(w, "llamalb_watcher_events_total", 'type="ADDED"') >= 2, "ADDED events counted")
ok(metric(w, "llamalb_watcher_events_total", 'type="MODIFIED"') >= 4, "MODIFIED events counted")
ok(metric(w, "llamalb_watcher_events_total", 'type="DELETED"') >= 2, "DELETED events counted")
is_(metric(w, "llamalb_watcher_backends_desired"), 4.0, "backends desired")
ok(metric(w, "llamalb_watcher_pushes_total", 'result="ok"') >= 8, "pushes counted")
is_(metric(w, "llamalb_watcher_pushes_total", 'result="failed"'), 0.0, "no failed push")
ok(metric(w, "llamalb_watcher_last_sync_timestamp_seconds") > 1.6e9, "last sync time is a unix time")
wq = [q for m, p, q in fk.requests if "watch" in q and p == "/api/v1/services"][0]
is_((wq.get("allowWatchBookmarks"), wq.get("timeoutSeconds"), wq.get("labelSelector")),
    ("true", "290", "llamaedge/target=true"), "watch query: bookmarks, timeoutSeconds=290, selector")
lq = [q for m, p, q in fk.requests if "watch" not in q and p == "/api/v1/services"][0]
is_(lq.get("limit"), "500", "list with limit=500")
is_(w.stop(), 0, "SIGTERM: clean exit")
fk.close()
done()
