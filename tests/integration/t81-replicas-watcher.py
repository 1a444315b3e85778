#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Replicas that schedule as one, the cluster form (docs/replicas.md): the
watcher, given --lb-service and --follow-port, chooses the active replica
among the Service's ready endpoints (the lowest address, kept while ready)
and tells every replica its role with PUT /api/role. Three replicas on
127.0.0.2-4 against the fake Kubernetes API: every request answered once;
the active leaving (terminating) moves the role to the next replica."""
import os
import socket
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import LB, admin_request, chat, deadline, done, is_, ok, sim, spawn, wait_for  # noqa: E402
from fakek8s import FakeK8s, endpoint, endpoint_slice, service  # noqa: E402
from watchlib import kubeconfig, metric, watcher  # noqa: E402

deadline(90)
tmp = tempfile.mkdtemp(prefix="t81-")
logs = [os.path.join(tmp, "sim%d.log" % i) for i in range(2)]
sims = [sim("--ttft-ms", "40", "--request-log", logs[i], name="llama-3-1b") for i in range(2)]
backs = []
for i, s in enumerate(sims):
    backs += ["--backend", "s%d=%s" % (i, s.addr)]


def free_port(host):
    s = socket.socket()
    s.bind((host, 0))
    p = s.getsockname()[1]
    s.close()
    return p


ap, pp = free_port("127.0.0.2"), free_port("127.0.0.2")
ips = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
reps = [spawn([LB, "--listen", "%s:%d" % (ip, pp), "--admin-listen", "%s:%d" % (ip, ap),
               "--workers", "1", "--health-interval", "0", "--drain-delay", "0",
               "--backend-allow", "127.0.0.0/8"] + backs, name="llamalb", want_admin=True)
        for ip in ips]

fk = FakeK8s(bookmark_interval=0.5)
kc = kubeconfig(fk)
fk.apply("services", service("llamalb", selector_label=False, cluster_ip="10.43.0.100"))
fk.apply("endpointslices", endpoint_slice("llamalb", "llamalb-x", [
    endpoint(ip, "llamalb-%d" % i) for i, ip in enumerate(ips)], pp))
w = watcher(kc, "--mode", "service", "--label-selector", "app=nothing-here",
            "--lb-service", "default/llamalb:%d" % ap, "--follow-port", str(pp))


def role(p):
    r = admin_request(p, "GET", "/api/role")
    return r.json() if r.status == 200 else {}


active = "127.0.0.2:%d" % pp
ok(wait_for(lambda: all(role(p).get("follow") == active for p in reps[1:]) and
            role(reps[0]).get("role") == "active", timeout=10),
   "the watcher made 127.0.0.2 active and the others its followers")
is_(metric(w, "llamalb_watcher_replica_active", 'address="127.0.0.2"'), 1.0,
    "watcher /metrics: llamalb_watcher_replica_active")

res = {}


def client(k):
    for i in range(k, 30, 3):
        rid = "w-%d" % i
        try:
            res[rid] = chat(reps[i % 3].addr, headers={"X-Request-Id": rid}, timeout=20).status
        except Exception as e:  # noqa: BLE001
            res[rid] = str(e)


ts = [threading.Thread(target=client, args=(k,)) for k in range(3)]
for t in ts:
    t.start()
for t in ts:
    t.join()
is_(sum(1 for v in res.values() if v == 200), 30, "30 requests over 3 replicas: all 200")
counts = {}
for f in logs:
    for line in open(f) if os.path.exists(f) else []:
        rid = line.split()[0]
        counts[rid] = counts.get(rid, 0) + 1
ok(all(counts.get("w-%d" % i) == 1 for i in range(30)), "each reached a backend once")
hops = admin_request(reps[0], "GET", "/api/role").json()["hops_received"]
is_(hops, 20, "the active received the followers' 20 requests")

# The active's pod terminates: the next lowest ready replica takes over.
fk.apply("endpointslices", endpoint_slice("llamalb", "llamalb-x", [
    endpoint(ips[0], "llamalb-0", ready=False, serving=True, terminating=True),
    endpoint(ips[1], "llamalb-1"), endpoint(ips[2], "llamalb-2")], pp))
active = "127.0.0.3:%d" % pp
ok(wait_for(lambda: role(reps[1]).get("role") == "active" and
            role(reps[2]).get("follow") == active, timeout=10),
   "the active terminating: 127.0.0.3 becomes active, 127.0.0.4 follows it")
r = chat(reps[2].addr)
is_(r.status, 200, "a request through the new follower")
done()
