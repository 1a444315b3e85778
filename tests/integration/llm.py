# SPDX-License-Identifier: MIT
"""Helpers shared by the LLM-aware balancing tests (t6x): metrics, the
registry listing, sim statistics, and requests run in threads."""
import json
import re
import threading
import time
import urllib.request

from harness import admin_request, chat, request


def metrics(p):
    """Parses the balancer's /metrics into {'name{labels}': float}."""
    r = request(p.admin, "GET", "/metrics")
    out = {}
    for line in r.body.decode().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        k, v = line.rsplit(" ", 1)
        out[k] = float(v)
    return out


def services(p):
    r = request(p.admin, "GET", "/api/services")
    return {s["name"]: s for s in json.loads(r.body)}


def sim_stats(s):
    with urllib.request.urlopen("http://%s/sim/stats" % s.addr, timeout=5) as r:
        return json.loads(r.read())


def register(p, name, sim, weight=1, **extra):
    body = {"name": name, "weight": weight, "ip": sim.host, "port": sim.port}
    body.update(extra)
    return admin_request(p, "POST", "/api/register", body)


class Background:
    """Runs chat() in a thread; .result is the Response or the exception."""

    def __init__(self, addr, **kw):
        self.result = None
        self.t0 = time.time()
        self.t1 = None
        self.t = threading.Thread(target=self._run, args=(addr, kw), daemon=True)
        self.t.start()

    def _run(self, addr, kw):
        try:
            self.result = chat(addr, **kw)
        except Exception as e:  # noqa: BLE001 - the test inspects it
            self.result = e
        self.t1 = time.time()

    def wait(self, timeout=30):
        self.t.join(timeout)
        return self.result

    @property
    def elapsed(self):
        return (self.t1 or time.time()) - self.t0


def served_by(resp):
    """The sim that answered (its X-Sim-Id header)."""
    if resp is None or isinstance(resp, Exception):
        return None
    return resp.header("x-sim-id")


def error_code(resp):
    try:
        return resp.json()["error"]["code"]
    except Exception:  # noqa: BLE001
        return None


def metric(m, name, **labels):
    key = name + ("{" + ",".join('%s="%s"' % kv for kv in labels.items()) + "}" if labels else "")
    return m.get(key, 0.0)


def wait_metric(p, name, pred, timeout=5, **labels):
    end = time.time() + timeout
    while time.time() < end:
        v = metric(metrics(p), name, **labels)
        if pred(v):
            return v
        time.sleep(0.02)
    return metric(metrics(p), name, **labels)


__all__ = ["metrics", "services", "sim_stats", "register", "Background", "served_by",
           "error_code", "metric", "wait_metric", "re"]
