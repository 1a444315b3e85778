#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""/metrics in Prometheus text format (every line parsed: HELP and TYPE for
each family, samples `name{labels} value`, labels well quoted), per-backend
request counters matching the traffic, local error counters; /healthz and
/readyz (ready with backends; while draining the admin listener is closed
or answers 503, so a readiness probe fails)."""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403

deadline(30)

a = FakeBackend(name="a")
E503 = b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n"
b = FakeBackend(serve_loop(lambda c, r: E503 if r.target == "/fail" else respond_ok("{}")), name="b")
p = lb("--backend", a.backend_arg(), "--backend", b.backend_arg(), "--policy", "wrr")

for _ in range(6):
    request(p.addr, "POST", "/v1/chat/completions", b"{}")
for _ in range(3):
    raw(p.addr, b"GET / HTTP/1.1\r\nHost: a\r\nX: \x00\r\n\r\n", timeout=2)

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*",?)*\})? '
                    r'(-?[0-9.]+(?:[eE][-+]?[0-9]+)?|NaN|\+Inf|-Inf)( -?[0-9]+)?$')
r = admin_request(p, "GET", "/metrics")
is_(r.status, 200, "/metrics 200")
like(r.header("content-type"), r"^text/plain; version=0\.0\.4", "Prometheus text content type")
text = r.body.decode()
ok(text.endswith("\n"), "ends with a newline")
helps, types, samples, bad = {}, {}, [], []
for line in text.split("\n")[:-1]:
    if line.startswith("# HELP "):
        n = line.split(" ", 3)[2]
        helps[n] = True
    elif line.startswith("# TYPE "):
        _, _, n, t = line.split(" ", 3)
        if t not in ("counter", "gauge", "histogram", "summary", "untyped"):
            bad.append(line)
        types[n] = t
    elif line.startswith("#") or line == "":
        bad.append(line)
    else:
        m = SAMPLE.match(line)
        if not m:
            bad.append(line)
            continue
        labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        samples.append((m.group(1), labels, float(m.group(3))))
is_(bad, [], "every line is HELP, TYPE or a valid sample")
ok(len(samples) > 10, "%d samples" % len(samples))


def family(n):
    for suf in ("_bucket", "_sum", "_count"):
        if n.endswith(suf) and types.get(n[:-len(suf)]) in ("histogram", "summary"):
            return n[:-len(suf)]
    return n


missing = sorted({family(n) for n, _, _ in samples if family(n) not in types or family(n) not in helps})
is_(missing, [], "every family has HELP and TYPE")
dups = {}
for n, l, v in samples:
    k = (n, tuple(sorted(l.items())))
    dups[k] = dups.get(k, 0) + 1
is_([k for k, c in dups.items() if c > 1], [], "no duplicate series")
ok(all(v >= 0 for n, _, v in samples if types.get(family(n)) == "counter"), "counters non-negative")


def val(name, **labels):
    tot = None
    for n, l, v in samples:
        if n == name and all(l.get(k) == w for k, w in labels.items()):
            tot = (tot or 0) + v
    return tot


per = {bk: val("llamalb_backend_requests_total", backend=bk) for bk in ("a", "b")}
is_(per, {"a": 3.0, "b": 3.0}, "per-backend request counters: 3 and 3")
is_(val("llamalb_backend_requests_total", backend="a", code="2xx"), 3.0, "per-backend 2xx counter")
ok((val("llamalb_local_responses_total", status="400") or 0) >= 3, "local 400s counted")
ok((val("llamalb_requests_total") or 0) >= 6, "requests_total counts the requests")
conns, reuses = val("llamalb_upstream_connects_total"), val("llamalb_upstream_reuses_total")
ok(conns is not None and reuses is not None and conns + reuses == 6 and conns >= 2 and reuses >= 1,
   "every proxied request either opened or reused an upstream connection (%s opened, %s reused)"
   % (conns, reuses))
is_(val("llamalb_backend_up", backend="a"), 1.0, "backend a up")
ok(val("llamalb_up") == 1.0, "llamalb_up 1")
r = admin_request(p, "GET", "/metrics")
for _ in range(2):
    request(p.addr, "POST", "/v1/chat/completions", b"{}")
text2 = admin_request(p, "GET", "/metrics").body.decode()
m = re.search(r'^llamalb_backend_requests_total\{[^}]*backend="a"[^}]*code="2xx"[^}]*\} (\S+)$', text2, re.M) or \
    re.search(r'^llamalb_backend_requests_total\{[^}]*code="2xx"[^}]*backend="a"[^}]*\} (\S+)$', text2, re.M)
ok(m and float(m.group(1)) == 4.0, "counter moves with traffic (a: 4)")

r = admin_request(p, "GET", "/healthz")
ok(r.status == 200, "/healthz 200")
r = admin_request(p, "GET", "/readyz")
ok(r.status == 200, "/readyz 200 with backends")
r = admin_request(p, "HEAD", "/healthz")
ok(r.status == 200 and r.body == b"", "HEAD /healthz")
# while draining: a slow request keeps the process alive
def slow(conn):
    req = conn.recv_request()
    if req:
        time.sleep(1.5)
        conn.send(respond_ok("{}"))


sb = FakeBackend(slow, name="slow")
p2 = lb("--backend", sb.backend_arg(), "--drain-timeout", "5s")
import threading  # noqa: E402
res = {}
th = threading.Thread(target=lambda: res.setdefault("r", request(p2.addr, "POST", "/x", b"{}")))
th.start()
time.sleep(0.3)
os.kill(p2.pid, signal.SIGTERM)
time.sleep(0.2)
try:
    st = admin_request(p2, "GET", "/readyz", timeout=2).status
except OSError as e:
    st = "refused (%s)" % type(e).__name__
ok(st == 503 or str(st).startswith("refused"), "readiness fails while draining (%s)" % st)
th.join(5)
ok("r" in res and res["r"].status == 200, "in-flight request finished")
done()
