# SPDX-License-Identifier: MIT
"""Helpers shared by the t5N-watcher-* tests: a fake API server, kubeconfig
files, llamalb-watcher processes, and polling a balancer's backend set."""
import atexit
import os
import shutil
import tempfile
import time

from harness import WATCHER, admin_request, request, spawn  # noqa: F401
from fakek8s import FakeK8s, write_kubeconfig  # noqa: F401

TMP = tempfile.mkdtemp(prefix="llamalb-watch-")
atexit.register(shutil.rmtree, TMP, True)


def path(name):
    return os.path.join(TMP, name)


def kubeconfig(fake, name="kubeconfig", token="t0k3n", **kw):
    return write_kubeconfig(path(name), fake.url, token=token, **kw)


def watcher(kc, *args, env=None, log="debug"):
    """Starts llamalb-watcher on a free port with kubeconfig <kc> (None: none,
    e.g. in-cluster via env)."""
    argv = [WATCHER, "--listen", "127.0.0.1:0", "--log-level", log]
    if kc:
        argv += ["--kubeconfig", kc]
    return spawn(argv + list(args), name="watcher", env=env)


def lb_url(b):
    return "http://" + b.admin


def backends(b, token=None):
    """The balancer's non-static backends: {name: entry}."""
    r = admin_request(b, "GET", "/api/services", token=token)
    if r.status != 200:
        return None
    return {s["name"]: s for s in r.json() if s.get("source") != "static"}


def wait_backends(b, pred, timeout=5, token=None):
    """Polls until pred(backends) is true; returns (backends, seconds waited)."""
    t0 = time.time()
    end = t0 + timeout
    while True:
        try:
            cur = backends(b, token)
        except OSError:
            cur = None
        if cur is not None and pred(cur):
            return cur, time.time() - t0
        if time.time() >= end:
            return cur, None
        time.sleep(0.01)


def weights(cur):
    return {k: v["weight"] for k, v in (cur or {}).items()}


def metric(proc, name, contains=""):
    """Sum of the samples of metric <name> whose label text contains <contains>."""
    r = request(proc.addr, "GET", "/metrics", timeout=5)
    total = 0.0
    for line in r.body.decode().splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            if contains in line:
                total += float(line.rsplit(" ", 1)[1])
    return total


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0
