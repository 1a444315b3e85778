#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The watcher against hostile cluster objects and a hostile API server.

Who gets the admin token: with --lb-service, only EndpointSlices the
EndpointSlice controller made for the balancer's own Service (managed-by
label, ownerReferences) are balancers. Hand-made slices carrying the
Service's name label, slices of another manager and slices owned by another
Service point at listeners the test controls: none of them receives a
request, let alone the token, while the real balancer is fed.

Bounded lists: an API server whose list never ends (a continue token on every
page) or that holds more objects than --max-list-items stops the list, which
is logged and counted (llamalb_watcher_list_limit_hits_total); /healthz keeps
answering and nothing truncated is pushed: the set in force stays. A watch
that would grow the set past the bound relists and keeps the set too.

Proportional recompute: a change to one Service's slice computes that
Service only (llamalb_watcher_services_computed_total)."""
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from harness import LB, deadline, done, is_, lb, ok, request, spawn
from fakek8s import FakeK8s, endpoint, endpoint_slice, service
from watchlib import kubeconfig, lb_url, metric, path, wait_backends, watcher, weights

deadline(90)
fk = FakeK8s(bookmark_interval=0.5)
kc = kubeconfig(fk)
fk.apply("services", service("llama", weight=3, cluster_ip="10.43.0.1"))
TOKEN = "s3cret-admin-token-0123"
with open(path("admin-token"), "w") as fh:
    fh.write(TOKEN + "\n")

# ---------------------------------------------------------------- the token
s = socket.socket()
s.bind(("127.0.0.2", 0))
port = s.getsockname()[1]
s.close()
real = spawn([LB, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.2:%d" % port,
              "--workers", "1", "--health-interval", "0", "--admin-token-file",
              path("admin-token")], name="llamalb", want_admin=True)


class Rogue(BaseHTTPRequestHandler):
    """A listener a tenant controls: records whatever reaches it."""
    seen = []

    def log_message(self, *a):
        pass

    def handle_one_request(self):
        try:
            super().handle_one_request()
        except OSError:
            pass

    def _any(self):
        Rogue.seen.append((self.server.server_address[0], self.command, self.path,
                           self.headers.get("Authorization")))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"[]")

    do_GET = do_PUT = do_POST = do_DELETE = _any


rogues = []
for ip in ("127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"):
    srv = ThreadingHTTPServer((ip, port), Rogue)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()
    rogues.append(srv)

fk.apply("services", service("llamalb", selector_label=False, cluster_ip="10.43.0.100"))
fk.apply("endpointslices", endpoint_slice("llamalb", "llamalb-abcde",
                                          [endpoint("127.0.0.2", "llamalb-0")], 8080))
# A tenant's hand-made slice: the Service's name label, no manager, no owner.
fk.apply("endpointslices", endpoint_slice("llamalb", "llamalb-handmade",
                                          [endpoint("127.0.0.3", "evil-0")], 8080,
                                          manager=None, owner=False))
# Another manager's slice (mirroring, a custom controller), same label.
fk.apply("endpointslices", endpoint_slice("llamalb", "llamalb-mirror",
                                          [endpoint("127.0.0.4", "evil-1")], 8080,
                                          manager="endpointslicemirroring-controller.k8s.io"))
# Controller-managed labels, but owned by another Service.
fk.apply("endpointslices", endpoint_slice("llamalb", "llamalb-owned",
                                          [endpoint("127.0.0.5", "evil-2")], 8080,
                                          owner="tenant-svc"))
# The right slice in another namespace.
fk.apply("endpointslices", endpoint_slice("llamalb", "llamalb-ns",
                                          [endpoint("127.0.0.6", "evil-3")], 8080,
                                          ns="tenant"))
w = watcher(kc, "--mode", "service", "--lb-service", "default/llamalb:%d" % port,
            "--admin-token-file", path("admin-token"), "--resync", "300ms")
cur, dt = wait_backends(real, lambda x: weights(x) == {"default/llama": 3}, token=TOKEN)
ok(dt is not None, "the controller-managed slice's balancer is fed")
time.sleep(1.0)  # resyncs: every balancer found would have been asked by now
is_(Rogue.seen, [], "hand-made, foreign-managed, foreign-owned and other-namespace slices "
    "receive no request and no token")
is_(metric(w, "llamalb_watcher_balancers"), 1.0, "one balancer")
# The tenant names yet another owner: the ownerReferences check still refuses it.
fk.apply("endpointslices", endpoint_slice("llamalb", "llamalb-owned",
                                          [endpoint("127.0.0.5", "evil-2")], 8080,
                                          owner="llamalb-other"))
time.sleep(0.6)
is_(Rogue.seen, [], "still none after the edit")
w.stop()
for srv in rogues:
    srv.shutdown()
    srv.server_close()
fk.close()

# ---------------------------------------------------------------- endless list
fk = FakeK8s(bookmark_interval=0.5)
kc = kubeconfig(fk, name="kc2")
for i in range(4):
    fk.apply("services", service("svc-%d" % i, weight=1, cluster_ip="10.43.1.%d" % (i + 1)))
fk.endless("services")
b = lb()
w = watcher(kc, "--mode", "service", "--lb", lb_url(b), "--page-limit", "1",
            "--max-list-pages", "20", "--backoff-min", "200ms", "--backoff-max", "400ms")
end = time.time() + 5
while metric(w, "llamalb_watcher_list_limit_hits_total") < 2 and time.time() < end:
    time.sleep(0.05)
ok(metric(w, "llamalb_watcher_list_limit_hits_total") >= 2,
   "an endless continue chain stops at --max-list-pages, counted")
is_(request(w.addr, "GET", "/healthz", timeout=5).status, 200, "/healthz answers meanwhile")
is_(request(w.addr, "GET", "/readyz", timeout=5).status, 503, "not ready: no list completed")
hits = metric(w, "llamalb_watcher_list_limit_hits_total")
lists = fk.lists("services")
ok(lists <= 20 * (hits + 1), "pages bounded: %d list requests for %d stops" % (lists, hits))
ok("list stopped: still not complete after 20 pages" in w.stderr_text(), "logged")
is_(weights(wait_backends(b, lambda x: False, timeout=0.3)[0]), {},
    "nothing pushed from an incomplete list")
fk.endless("services", on=False)
cur, dt = wait_backends(b, lambda x: len(x) == 4, timeout=5)
ok(dt is not None, "the server heals: the full set arrives")
w.stop()

# ---------------------------------------------------------------- too many items
b = lb()
w = watcher(kc, "--mode", "service", "--lb", lb_url(b), "--page-limit", "2",
            "--max-list-items", "3", "--backoff-min", "200ms", "--backoff-max", "400ms")
end = time.time() + 5
while metric(w, "llamalb_watcher_list_limit_hits_total") < 1 and time.time() < end:
    time.sleep(0.05)
ok(metric(w, "llamalb_watcher_list_limit_hits_total") >= 1, "4 Services, --max-list-items 3: "
   "the list stops")
is_(weights(wait_backends(b, lambda x: False, timeout=0.5)[0]), {},
    "no truncated set of 2 or 3 is pushed")
ok("more than 3 objects" in w.stderr_text(), "logged")
fk.delete("services", "default", "svc-3")
want = {"default/svc-%d" % i: 1 for i in range(3)}
cur, dt = wait_backends(b, lambda x: weights(x) == want, timeout=5)
ok(dt is not None, "back under the bound: the set arrives")
hits = metric(w, "llamalb_watcher_list_limit_hits_total")
fk.apply("services", service("svc-9", weight=1, cluster_ip="10.43.1.9"))
end = time.time() + 3
while metric(w, "llamalb_watcher_list_limit_hits_total") <= hits and time.time() < end:
    time.sleep(0.05)
ok(metric(w, "llamalb_watcher_list_limit_hits_total") > hits,
   "a watch event past the bound: relist, stopped again")
time.sleep(0.5)
is_(weights(wait_backends(b, lambda x: False, timeout=0.1)[0]), want,
    "the set in force stays (nothing truncated, nothing past the bound)")
w.stop()
fk.close()

# ---------------------------------------------------------------- proportional recompute
fk = FakeK8s(bookmark_interval=0.5)
kc = kubeconfig(fk, name="kc3")
for i in range(5):
    fk.apply("services", service("m-%d" % i, weight=1))
    fk.apply("endpointslices", endpoint_slice("m-%d" % i, "m-%d-a" % i,
                                              [endpoint("10.44.%d.1" % i, "p-%d" % i)], 8080))
b = lb()
w = watcher(kc, "--lb", lb_url(b))
cur, dt = wait_backends(b, lambda x: len(x) == 5, timeout=5)
ok(dt is not None, "five Services, one pod each")
c0 = metric(w, "llamalb_watcher_services_computed_total")
fk.apply("endpointslices", endpoint_slice("m-2", "m-2-a", [endpoint("10.44.2.1", "p-2"),
                                                          endpoint("10.44.2.2", "q-2")], 8080))
cur, dt = wait_backends(b, lambda x: len(x) == 6, timeout=3)
ok(dt is not None, "one slice changed: applied")
is_(metric(w, "llamalb_watcher_services_computed_total") - c0, 1.0,
    "one slice changed: one Service computed, not five")
c0 = metric(w, "llamalb_watcher_services_computed_total")
fk.apply("services", service("m-4", weight=7))
cur, dt = wait_backends(b, lambda x: x.get("default/m-4/p-4", {}).get("weight") == 7, timeout=3)
ok(dt is not None, "one Service changed: applied")
is_(metric(w, "llamalb_watcher_services_computed_total") - c0, 1.0,
    "one Service changed: one computed")
w.stop()
done()
