#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A rollout refuses nothing (--drain-delay; docs/k3s.md, "Rollouts"): on
SIGTERM /readyz fails at once while the public listener keeps accepting
for the delay, as kube-proxy and ServiceLB take a while to stop sending new
connections; a client hammering the port with new connections sees no
refused connection and no failed request while it is still being sent
there; a long stream in flight finishes whole; then the drain closes the
listener and the process exits 0. POST /api/drain behaves the same."""
import os
import signal
import socket
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403

deadline(60)


def run(trigger_name, trigger):
    s = sim(name="m", *["--tokens-per-sec", "20"])
    p = lb("--backend", "m=%s" % s.addr, "--default-max-inflight", "0", "--drain-delay", "1500ms",
           "--drain-timeout", "20s")
    stats = {"ok": 0, "refused": 0, "failed": 0}
    stop = threading.Event()
    not_ready_at = []

    def hammer():
        # A new connection per request, as clients behind a Service open them.
        # Like kube-proxy, it stops sending here a little after the pod turned
        # not ready (the endpoint controller's propagation), well within the delay.
        for _ in range(5000):  # bounded; it stops long before
            if stop.is_set():
                return
            if not_ready_at and time.time() - not_ready_at[0] > 0.4:
                return
            try:
                r = request(p.addr, "GET", "/echo", timeout=5)
                stats["ok" if r.status == 200 else "failed"] += 1
            except ConnectionRefusedError:
                stats["refused"] += 1
            except OSError:
                stats["failed"] += 1

    def ready():
        try:
            return request(p.admin, "GET", "/readyz", timeout=2).status
        except OSError:
            return None

    is_(ready(), 200, "%s: ready before" % trigger_name)
    stream_out = {}

    def long_stream():
        c = connect(p.addr, timeout=20)
        body = b'{"model":"m","stream":true,"max_completion_tokens":40,"messages":[]}'
        c.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nContent-Type: "
                  b"application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        data, _ = read_until_close(c, timeout=15)
        stream_out["data"] = data
        c.close()

    ts = threading.Thread(target=long_stream, daemon=True)
    ts.start()
    time.sleep(0.3)  # the stream is under way (40 tokens at 20/s: 2 s)
    threads = [threading.Thread(target=hammer, daemon=True) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    t0 = time.time()
    trigger(p)
    ok(wait_for(lambda: ready() == 503, 1), "%s: /readyz fails at once" % trigger_name)
    not_ready_at.append(time.time())
    for t in threads:
        t.join(10)
    stop.set()
    note("%s: %d requests through the shutdown, %d refused, %d failed" %
         (trigger_name, stats["ok"], stats["refused"], stats["failed"]))
    ok(stats["ok"] > 0, "%s: requests were served after the signal" % trigger_name)
    is_((stats["refused"], stats["failed"]), (0, 0),
        "%s: no refused connection, no failed request" % trigger_name)
    ok(request(p.addr, "GET", "/echo", timeout=3).status == 200 and time.time() - t0 < 1.5,
       "%s: still accepting within the delay" % trigger_name)
    ts.join(15)
    data = stream_out.get("data", b"")
    ok(data.rstrip().endswith(b"0") or b"data: [DONE]" in data,
       "%s: the stream in flight finished whole" % trigger_name)
    rc = None
    end = time.time() + 10
    while time.time() < end and rc is None:
        rc = p.p.poll()
        time.sleep(0.05)
    if trigger_name == "POST /api/drain":
        ok(rc is None or rc == 0, "%s: the process drains (exit %s)" % (trigger_name, rc))
        p.stop()
    else:
        is_(rc, 0, "%s: then it exits 0" % trigger_name)
    try:
        socket.create_connection(split_addr(p.addr), timeout=1).close()
        refused_after = False
    except OSError:
        refused_after = True
    ok(refused_after, "%s: after the delay and the drain the listener is closed" % trigger_name)
    s.stop()


run("SIGTERM", lambda p: os.kill(p.pid, signal.SIGTERM))
run("POST /api/drain", lambda p: request(p.admin, "POST", "/api/drain", timeout=3))
done()
