#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The watcher's side of the admin API: two balancer replicas kept identical
(bearer token from --admin-token-file), a restarted balancer refilled by the
periodic resync, a balancer edited behind the watcher's back repaired,
--lb-service discovering the replicas from the balancer's own EndpointSlices,
and --push register (POST /api/register + DELETE /api/unregister diffs)
against llamalb and against a stand-in for the original demo's balancer that
only knows name/weight/ip/port."""
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from harness import LB, admin_request, deadline, done, is_, lb, ok, spawn
from fakek8s import FakeK8s, endpoint, endpoint_slice, service
from watchlib import kubeconfig, lb_url, metric, path, wait_backends, watcher, weights

deadline(60)
fk = FakeK8s(bookmark_interval=0.5)
kc = kubeconfig(fk)
fk.apply("services", service("llama-3-1b-low", weight=3, cluster_ip="10.43.0.1"))
fk.apply("services", service("llama-3-3b-high", weight=1, cluster_ip="10.43.0.2"))
want = {"default/llama-3-1b-low": 3, "default/llama-3-3b-high": 1}
TOKEN = "s3cret-admin-token"
with open(path("admin-token"), "w") as fh:
    fh.write(TOKEN + "\n")


def lb_at(admin, *args):
    return spawn([LB, "--listen", "127.0.0.1:0", "--admin-listen", admin, "--workers", "1",
                  "--health-interval", "0"] + list(args), name="llamalb", want_admin=True)


# Two replicas, a token, a short resync.
b1 = lb("--admin-token-file", path("admin-token"))
b2 = lb("--admin-token-file", path("admin-token"))
w = watcher(kc, "--mode", "service", "--lb", lb_url(b1), "--lb", lb_url(b2),
            "--admin-token-file", path("admin-token"), "--resync", "1s")
c1, _ = wait_backends(b1, lambda s: weights(s) == want, token=TOKEN)
c2, _ = wait_backends(b2, lambda s: weights(s) == want, token=TOKEN)
is_(weights(c1), want, "replica 1 filled (bearer token accepted)")
ok(c1 == c2 or weights(c1) == weights(c2), "replica 2 identical")
is_(admin_request(b1, "GET", "/api/services").status, 401, "the balancer does want the token")
fk.apply("services", service("llama-3-1b-low", weight=8, cluster_ip="10.43.0.1"))
want["default/llama-3-1b-low"] = 8
_, d1 = wait_backends(b1, lambda s: weights(s) == want, token=TOKEN)
_, d2 = wait_backends(b2, lambda s: weights(s) == want, token=TOKEN)
ok(d1 is not None and d2 is not None and max(d1, d2) < 1.0,
   "a change reaches both replicas within 1 s (%.0f / %.0f ms)" % ((d1 or 9) * 1000,
                                                                    (d2 or 9) * 1000))
strip = lambda s: {k: (v["weight"], v["ip"], v["port"], v["models"], v["max_inflight"])  # noqa
                   for k, v in s.items()}
c1, c2 = wait_backends(b1, lambda s: True, token=TOKEN)[0], wait_backends(b2, lambda s: True,
                                                                          token=TOKEN)[0]
is_(strip(c1), strip(c2), "both replicas hold exactly the same set")

# Someone edits replica 2 behind the watcher's back: the resync repairs it.
r = admin_request(b2, "DELETE", "/api/unregister/default/llama-3-3b-high", token=TOKEN)
is_(r.status, 200, "backend removed by hand from replica 2")
cur, dt = wait_backends(b2, lambda s: weights(s) == want, timeout=4, token=TOKEN)
ok(dt is not None, "resync (1 s) repaired replica 2 in %.1f s" % (dt or 0))
ok(metric(w, "llamalb_watcher_repairs_total") >= 1, "repair counted")

# Replica 1 restarts (same admin address, empty registry): refilled by resync.
addr = b1.admin
b1.stop()
time.sleep(1.5)
ok(any(l.startswith("balancer http://%s" % addr) and "retrying" in l for l in
       w.stderr_text().split(" warn ")), "the resync noticed the balancer down")
b1 = lb_at(addr, "--admin-token-file", path("admin-token"))
cur, dt = wait_backends(b1, lambda s: weights(s) == want, timeout=5, token=TOKEN)
ok(dt is not None, "restarted replica refilled within one resync (%.1f s)" % (dt or 0))
w.stop()

# --lb-service: the replicas are the ready addresses of Service default/llamalb.
s = socket.socket()
s.bind(("127.0.0.2", 0))
port = s.getsockname()[1]
s.close()
r1, r2 = lb_at("127.0.0.2:%d" % port), lb_at("127.0.0.3:%d" % port)
fk.apply("services", service("llamalb", selector_label=False, cluster_ip="10.43.0.100"))
# An empty balancer is not ready (/readyz wants backends): it must be fed anyway.
fk.apply("endpointslices", endpoint_slice("llamalb", "llamalb-x", [
    endpoint("127.0.0.2", "llamalb-a"), endpoint("127.0.0.3", "llamalb-b", ready=False)], 8080))
w = watcher(kc, "--mode", "service", "--lb-service", "default/llamalb:%d" % port)
_, d1 = wait_backends(r1, lambda s: weights(s) == want)
_, d2 = wait_backends(r2, lambda s: weights(s) == want)
ok(d1 is not None and d2 is not None, "--lb-service: both replicas found and filled")
is_(metric(w, "llamalb_watcher_balancers"), 2.0, "two balancers")
fk.apply("endpointslices", endpoint_slice("llamalb", "llamalb-x", [
    endpoint("127.0.0.2", "llamalb-a"), endpoint("127.0.0.3", "llamalb-b", ready=False, serving=True, terminating=True)], 8080))
end = time.time() + 3
while metric(w, "llamalb_watcher_balancers") != 1.0 and time.time() < end:
    time.sleep(0.05)
is_(metric(w, "llamalb_watcher_balancers"), 1.0, "a terminating replica is no longer fed")
fk.apply("services", service("llama-3-3b-high", weight=2, cluster_ip="10.43.0.2"))
want["default/llama-3-3b-high"] = 2
_, d1 = wait_backends(r1, lambda s: weights(s) == want)
ok(d1 is not None and d1 < 1.0, "the ready replica gets changes")
w.stop()

# --push register against llamalb.
b3 = lb()
admin_request(b3, "POST", "/api/register",
              {"name": "stale", "weight": 1, "ip": "10.43.9.9", "port": 80})
w = watcher(kc, "--mode", "service", "--push", "register", "--lb", lb_url(b3), "--resync", "1s")
cur, dt = wait_backends(b3, lambda s: weights(s) == want)
ok(dt is not None, "register mode: set registered, the stale entry unregistered")
fk.apply("services", service("llama-3-3b-high", weight=4, cluster_ip="10.43.0.2"))
want["default/llama-3-3b-high"] = 4
cur, dt = wait_backends(b3, lambda s: weights(s) == want)
ok(dt is not None and dt < 1.0, "register mode: weight change in %.0f ms" % ((dt or 9) * 1000))
fk.delete("services", "default", "llama-3-3b-high")
del want["default/llama-3-3b-high"]
cur, dt = wait_backends(b3, lambda s: weights(s) == want)
ok(dt is not None and dt < 1.0, "register mode: deletion unregistered in %.0f ms" % ((dt or 9) * 1000))
w.stop()


# --push register against the original demo's balancer API (four fields only).
class DemoLB(BaseHTTPRequestHandler):
    store, bodies = {}, []

    def log_message(self, *a):
        pass

    def reply(self, code, body, ctype="text/plain"):
        body = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        n = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(n))
        DemoLB.bodies.append(body)
        if self.path != "/api/register" or set(body) != {"name", "weight", "ip", "port"}:
            return self.reply(400, "Bad request")
        DemoLB.store[body["name"]] = body
        self.reply(200, "Registered")

    def do_DELETE(self):
        name = self.path[len("/api/unregister/"):]
        if DemoLB.store.pop(name, None) is None:
            return self.reply(404, "Service not found")
        self.reply(200, "Unregistered")

    def do_GET(self):
        self.reply(200, json.dumps(list(DemoLB.store.values())), "application/json")


demo = ThreadingHTTPServer(("127.0.0.1", 0), DemoLB)
threading.Thread(target=demo.serve_forever, daemon=True).start()
w = watcher(kc, "--mode", "service", "--push", "register",
            "--lb", "http://127.0.0.1:%d" % demo.server_address[1])
end = time.time() + 5
while {k: v["weight"] for k, v in DemoLB.store.items()} != want and time.time() < end:
    time.sleep(0.05)
is_({k: v["weight"] for k, v in DemoLB.store.items()}, want, "demo balancer filled")
ok(DemoLB.bodies and all(set(b) == {"name", "weight", "ip", "port"} for b in DemoLB.bodies),
   "only name, weight, ip, port were sent")
is_(metric(w, "llamalb_watcher_pushes_total", 'result="failed"'), 0.0, "no failures")
w.stop()
demo.shutdown()
fk.close()
done()
