#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""llamalb-watcher in endpoints mode (the default): one backend per ready pod
address of a Service's EndpointSlices, named namespace/service/pod, with
real llamalb-sim processes as the pods and traffic through a real llamalb.
Endpoints become ready, not ready, terminating (drain at weight 0: a stream
in flight finishes, no new requests go there) and gone; several slices per
Service; the slice port chosen by the Service port's name."""
import threading
import time

from harness import chat, deadline, done, is_, lb, note, ok, sim
from fakek8s import FakeK8s, endpoint, endpoint_slice, service
from watchlib import kubeconfig, lb_url, wait_backends, watcher, weights

deadline(60)
s1 = sim("--tokens-per-sec", "20", name="pod-1")
s2 = sim("--tokens-per-sec", "200", name="pod-2")
fk = FakeK8s()
kc = kubeconfig(fk)
fk.apply("services", service("llama", weight=2))


def slices(ep1=None, ep2=None):
    """Two slices of Service llama, one per pod (each pod on its own port)."""
    for name, ep, s in (("llama-a", ep1, s1), ("llama-b", ep2, s2)):
        if ep is False:
            fk.delete("endpointslices", "default", name)
        elif ep is not None:
            fk.apply("endpointslices", endpoint_slice("llama", name, [ep], s.port))


slices(endpoint("127.0.0.1", "pod-1"), endpoint("127.0.0.1", "pod-2"))
b = lb("--backend-allow", "127.0.0.0/8")
# The pods are on loopback: the watcher is told what the balancer allows.
w = watcher(kc, "--lb", lb_url(b), "--backend-allow", "127.0.0.0/8")
latencies = []


def expect(what, pred, timeout=3):
    cur, dt = wait_backends(b, pred, timeout)
    ok(dt is not None and dt < 1.0, "%s within 1 s (%s)" %
       (what, "%.0f ms" % (dt * 1000) if dt is not None else "never"))
    if dt is not None:
        latencies.append(dt)
    return cur


cur = expect("startup: both pods", lambda s: len(s) == 2)
is_(weights(cur), {"default/llama/pod-1": 2, "default/llama/pod-2": 2},
    "one backend per pod, named namespace/service/pod, the Service's weight")
is_(sorted(v["port"] for v in cur.values()), sorted([s1.port, s2.port]), "ports from the slices")
seen = {chat(b.addr).header("x-sim-id") for _ in range(12)}
is_(seen, {"pod-1", "pod-2"}, "traffic reaches both pods")

slices(ep2=endpoint("127.0.0.1", "pod-2", ready=False, serving=False))
expect("pod-2 not ready: removed", lambda s: list(s) == ["default/llama/pod-1"])
slices(ep2=endpoint("127.0.0.1", "pod-2"))
expect("pod-2 ready again: back", lambda s: len(s) == 2)

fk.apply("services", service("llama", weight=4))
expect("weight change applies to every pod", lambda s: set(weights(s).values()) == {4})

# Drain: a long stream runs on pod-1 when it starts terminating.
result = {}


def long_stream():
    r = chat(b.addr, stream=True, model="x", extra={"max_tokens": 40}, timeout=20)
    result["status"], result["id"], result["body"] = r.status, r.header("x-sim-id"), r.body


# Pin the stream to pod-1 by making it the only backend for a moment.
slices(ep2=endpoint("127.0.0.1", "pod-2", ready=False, serving=False))
expect("only pod-1", lambda s: list(s) == ["default/llama/pod-1"])
t = threading.Thread(target=long_stream)
t.start()
time.sleep(0.3)
slices(ep1=endpoint("127.0.0.1", "pod-1", ready=False, serving=True, terminating=True),
       ep2=endpoint("127.0.0.1", "pod-2"))
cur = expect("pod-1 terminating: weight 0 (drain), pod-2 back",
             lambda s: weights(s) == {"default/llama/pod-1": 0, "default/llama/pod-2": 4})
is_(cur["default/llama/pod-1"].get("state"), "draining", "balancer shows pod-1 draining")
seen = [chat(b.addr).header("x-sim-id") for _ in range(8)]
is_(set(seen), {"pod-2"}, "no new requests to the draining pod")
t.join(20)
is_((result.get("status"), result.get("id")), (200, "pod-1"), "the stream on pod-1 completed")
ok(result.get("body", b"").rstrip().endswith(b"data: [DONE]"), "stream ended with [DONE]")
slices(ep1=False)
expect("terminated pod gone", lambda s: list(s) == ["default/llama/pod-2"])

# Named ports: the slice port is the one named like the Service port.
fk.apply("services", service("named", weight=1, annotations={"llamaedge/port": "api"},
                             ports=[{"name": "metrics", "port": 9100},
                                    {"name": "api", "port": 80}]))
sl = endpoint_slice("named", "named-x", [endpoint("127.0.0.7", "named-pod")], 1)
sl["ports"] = [{"name": "metrics", "port": 19100}, {"name": "api", "port": s2.port}]
fk.apply("endpointslices", sl)
cur = expect("named port", lambda s: "default/named/named-pod" in s)
is_(cur["default/named/named-pod"]["port"], s2.port, "slice port matched by name")
fk.delete("services", "default", "named")
expect("Service deleted: its pods leave", lambda s: "default/named/named-pod" not in s)

note("change-to-balancer latency: %s" % ", ".join("%.0f ms" % (x * 1000) for x in latencies))
ok(max(latencies) < 1.0, "max latency %.0f ms < 1 s" % (max(latencies) * 1000))
fk.close()
done()
