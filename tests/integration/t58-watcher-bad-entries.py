#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""One bad entry must not freeze every update. The balancer refuses a whole
PUT /api/services for one invalid service, so the watcher applies the
balancer's rules itself: endpoints with an overlong ns/svc/pod name, a name
with characters the balancer refuses, a loopback, IPv4-mapped loopback,
link-local (169.254/16, fe80::/10) or multicast address are left out, each
logged once (not at every resync) and counted in
llamalb_watcher_dropped_total{reason}, while the good endpoints beside them
reach a real llamalb and later deletions still apply. An entry only the
balancer can refuse (the balancer's own listener) is set aside after its 400
and the rest is sent. In --push register mode a refused register does not
stop the round: the unregisters after it are still sent."""
import re
import time

from harness import admin_request, deadline, done, is_, lb, ok
from fakek8s import FakeK8s, endpoint, endpoint_slice, service
from watchlib import kubeconfig, lb_url, metric, wait_backends, watcher, weights

deadline(90)
fk = FakeK8s()
kc = kubeconfig(fk)
LONG_POD = "p" * 250  # a valid pod name; default/bad/ + it is over 253 characters
fk.apply("services", service("good", weight=2))
fk.apply("services", service("bad", weight=1))
fk.apply("endpointslices", endpoint_slice("good", "good-a", [
    endpoint("10.1.0.1", "pod-a"), endpoint("10.1.0.2", "pod-b")], 8080))
BAD = {"lo": "127.0.0.1", "mapped": "::ffff:127.0.0.1", "meta": "169.254.169.254",
       "ll6": "fe80::1", "mcast": "224.0.0.1", "zero": "0.0.0.0"}
fk.apply("endpointslices", endpoint_slice("bad", "bad-a", [endpoint("10.2.0.1", "fine")] +
                                          [endpoint(ip, pod) for pod, ip in BAD.items()] +
                                          [endpoint("10.2.0.2", LONG_POD),
                                           endpoint("10.2.0.3", "bad name")], 8080))

# 1. PUT mode against a balancer that refuses loopback and friends.
b = lb()
w = watcher(kc, "--lb", lb_url(b), "--resync", "300ms")
want = {"default/good/pod-a": 2, "default/good/pod-b": 2, "default/bad/fine": 1}
cur, dt = wait_backends(b, lambda s: weights(s) == want, timeout=5)
ok(dt is not None, "the good endpoints reach the balancer beside the bad ones (%s)" % weights(cur))
is_(metric(w, "llamalb_watcher_dropped_total", 'reason="address"'), float(len(BAD)),
    "loopback, mapped, link-local, multicast, unspecified: counted as address drops")
is_(metric(w, "llamalb_watcher_dropped_total", 'reason="name"'), 2.0,
    "overlong and badly formed names: counted as name drops")
is_(metric(w, "llamalb_watcher_dropped", 'reason="address"'), float(len(BAD)),
    "gauge of entries left out right now")
is_(metric(w, "llamalb_watcher_pushes_total", 'result="failed"'), 0.0,
    "no push was refused")
time.sleep(1.2)  # several resyncs and recomputes
err = w.stderr_text()
is_(err.count("backend default/bad/lo left out"), 1, "a dropped entry is logged once, "
    "not at every resync")
ok("::ffff:127.0.0.1: loopback" in err, "the mapped address is judged by its IPv4 address")
ok(re.search(r"backend default/bad/p{200,} left out \(name\)", err), "the overlong name is "
   "logged")
is_(metric(w, "llamalb_watcher_dropped_total", 'reason="address"'), float(len(BAD)),
    "... and counted once")
fk.delete("endpointslices", "default", "good-a")
cur, dt = wait_backends(b, lambda s: weights(s) == {"default/bad/fine": 1}, timeout=3)
ok(dt is not None and dt < 1.0, "a later deletion still applies (%s)" % weights(cur))
fk.apply("endpointslices", endpoint_slice("bad", "bad-a", [endpoint("10.2.0.1", "fine"),
                                                           endpoint("10.2.0.4", "lo")], 8080))
cur, dt = wait_backends(b, lambda s: weights(s) == {"default/bad/fine": 1, "default/bad/lo": 1})
ok(dt is not None, "a dropped entry that becomes valid joins")
is_(metric(w, "llamalb_watcher_dropped", ""), 0.0, "nothing left out any more")
w.stop()

# 2. An entry only the balancer can refuse: its own listener (loopback is
# allowed on both sides). The 400 names services[N]; that entry is set
# aside for this balancer and the others go through.
fk.apply("endpointslices", endpoint_slice("good", "good-a", [
    endpoint("10.1.0.1", "pod-a"), endpoint("10.1.0.2", "pod-b")], 8080))
b2 = lb("--backend-allow", "127.0.0.0/8")
fk.apply("services", service("aaa", weight=1))
fk.apply("endpointslices", endpoint_slice("aaa", "aaa-a", [endpoint("127.0.0.1", "loop")],
                                          b2.port))
w = watcher(kc, "--lb", lb_url(b2), "--backend-allow", "127.0.0.0/8", "--resync", "300ms")
want = {"default/good/pod-a": 2, "default/good/pod-b": 2, "default/bad/fine": 1,
        "default/bad/lo": 1}
cur, dt = wait_backends(b2, lambda s: weights(s) == want, timeout=5)
ok(dt is not None, "balancer refuses one entry: the rest is applied (%s)" % weights(cur))
is_(metric(w, "llamalb_watcher_refused_backends"), 1.0, "one entry held back from it")
ok("refused backend default/aaa/loop" in w.stderr_text(), "the refusal is logged")
fk.delete("endpointslices", "default", "good-a")
del want["default/good/pod-a"], want["default/good/pod-b"]
cur, dt = wait_backends(b2, lambda s: weights(s) == want, timeout=3)
ok(dt is not None and dt < 1.0, "a later deletion still applies")
time.sleep(1)
is_(metric(w, "llamalb_watcher_repairs_total"), 0.0,
    "resync compares with what it may hold: no endless repair")
w.stop()

# 3. --push register: the first register is refused (own listener again),
# the other registers and the unregister of a stale entry still go.
fk.apply("endpointslices", endpoint_slice("good", "good-a", [
    endpoint("10.1.0.1", "pod-a"), endpoint("10.1.0.2", "pod-b")], 8080))
b3 = lb("--backend-allow", "127.0.0.0/8")
fk.apply("endpointslices", endpoint_slice("aaa", "aaa-a", [endpoint("127.0.0.1", "loop")],
                                          b3.port))
r = admin_request(b3, "POST", "/api/register",
                  {"name": "stale", "weight": 1, "ip": "10.9.9.9", "port": 80})
is_(r.status, 200, "a stale entry on the register-mode balancer")
w = watcher(kc, "--push", "register", "--lb", lb_url(b3), "--backend-allow", "127.0.0.0/8",
            "--resync", "300ms")
want = {"default/good/pod-a": 2, "default/good/pod-b": 2, "default/bad/fine": 1,
        "default/bad/lo": 1}
cur, dt = wait_backends(b3, lambda s: weights(s) == want, timeout=5)
ok(dt is not None, "register mode: refused register first, the rest registered and the stale "
   "entry unregistered (%s)" % weights(cur))
ok(metric(w, "llamalb_watcher_admin_call_failures_total") >= 1, "the refused call is counted")
n1 = metric(w, "llamalb_watcher_admin_call_failures_total")
time.sleep(1)
n2 = metric(w, "llamalb_watcher_admin_call_failures_total")
ok(n2 > n1 and n2 - n1 <= 6, "retried at each resync, not in a hot loop (%d in 1 s)" % (n2 - n1))
fk.delete("endpointslices", "default", "good-a")
del want["default/good/pod-a"], want["default/good/pod-b"]
cur, dt = wait_backends(b3, lambda s: weights(s) == want, timeout=3)
ok(dt is not None and dt < 1.0, "register mode: a deletion is unregistered although a register "
   "keeps failing")
w.stop()
done()
