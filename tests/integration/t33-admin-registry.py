#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The admin registry API as the original demo's watcher used it (requests
replayed unchanged: python-requests headers, no token on a loopback admin
listener), traffic following register / weight / unregister; PUT
/api/services replacing the set atomically with a generation (stale -> 409);
POST /api/drain."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403

deadline(40)

low = FakeBackend(name="low")
high = FakeBackend(name="high")
p = lb("--backend-allow", "127.0.0.0/8", "--policy", "wrr")

WATCHER_HEADERS = {"User-Agent": "python-requests/2.31.0", "Accept-Encoding": "gzip, deflate",
                   "Accept": "*/*", "Connection": "keep-alive"}


def watcher(method, path, body=None):
    """Exactly what the demo watcher sent: requests.post(url, json=...) etc."""
    h = dict(WATCHER_HEADERS)
    if body is not None:
        body = json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    return request(p.admin, method, path, body, headers=h)


def who(r):
    return json.loads(r.body)["backend"]


def traffic(n):
    s = connect(p.addr)
    out = [who(request(p.addr, "POST", "/v1/chat/completions",
                       {"model": "llama-3-1b", "messages": [{"role": "user", "content": "hi"}]},
                       conn=s)) for _ in range(n)]
    s.close()
    return out


r = request(p.addr, "POST", "/v1/chat/completions", {"model": "llama-3-1b"})
is_(r.status, 503, "no backends yet: 503")
is_(admin_request(p, "GET", "/readyz").status, 503, "/readyz 503 with no backends")

r = watcher("POST", "/api/register", {"name": "llama-low-cost-service", "weight": 3,
                                      "ip": "127.0.0.1", "port": low.port})
ok(r.status == 200 and r.body == b"Registered", "demo register: 200 Registered")
r = watcher("POST", "/api/register", {"name": "llama-high-quality-service", "weight": 1,
                                      "ip": "127.0.0.1", "port": high.port})
ok(r.status == 200 and r.body == b"Registered", "demo register second: 200 Registered")
r = watcher("GET", "/api/services")
ok(r.status == 200 and (r.header("content-type") or "").startswith("application/json"),
   "demo GET /api/services: 200 JSON")
svcs = r.json()
want = {"llama-low-cost-service": (3, "127.0.0.1", low.port),
        "llama-high-quality-service": (1, "127.0.0.1", high.port)}
got = {s["name"]: (s["weight"], s["ip"], s["port"]) for s in svcs}
is_(got, want, "demo GET /api/services: name, weight, ip, port")
is_(traffic(8), ["low", "low", "high", "low"] * 2, "traffic follows the registered weights 3:1")
is_(admin_request(p, "GET", "/readyz").status, 200, "/readyz 200 with backends")

r = watcher("POST", "/api/register", {"name": "llama-low-cost-service", "weight": 1,
                                      "ip": "127.0.0.1", "port": low.port})
ok(r.status == 200, "demo re-register with weight 1: 200")
seq = traffic(8)
is_(sorted(seq), ["high"] * 4 + ["low"] * 4, "traffic follows the new weight 1:1")

r = watcher("DELETE", "/api/unregister/llama-low-cost-service")
ok(r.status == 200 and r.body == b"Unregistered", "demo unregister: 200 Unregistered")
is_([s["name"] for s in watcher("GET", "/api/services").json()], ["llama-high-quality-service"],
    "unregistered service gone from /api/services")
n_low = low.nrequests
is_(traffic(5), ["high"] * 5, "traffic no longer reaches the unregistered backend")
is_(low.nrequests, n_low, "unregistered backend saw nothing more")
r = watcher("DELETE", "/api/unregister/llama-low-cost-service")
ok(r.status == 404 and r.body == b"Service not found", "unregister again: 404 Service not found")

# names up to 253 characters can be unregistered; a longer path never hits a prefix
long = "n" * 253
r = watcher("POST", "/api/register", {"name": long, "ip": "10.1.2.3", "port": 80})
is_(r.status, 200, "register a 253-character name")
r = watcher("DELETE", "/api/unregister/" + long)
ok(r.status == 200 and r.body == b"Unregistered", "unregister the 253-character name: 200")
pre = "p" * 150
watcher("POST", "/api/register", {"name": pre, "ip": "10.1.2.3", "port": 80})
r = watcher("DELETE", "/api/unregister/" + pre + "q" * 400)
ok(r.status in (404, 414), "unregister with an over-long name: 404/414 (%d)" % r.status)
ok(pre in [s["name"] for s in watcher("GET", "/api/services").json()],
   "... and the service named by its prefix is still there")
watcher("DELETE", "/api/unregister/" + pre)

# PUT /api/services with generation
third = FakeBackend(name="third")
svc = lambda name, port, w=1: {"name": name, "weight": w, "ip": "127.0.0.1", "port": port}  # noqa: E731
r = watcher("PUT", "/api/services", {"generation": 5, "services": [svc("a", low.port), svc("c", third.port)]})
is_(r.status, 200, "PUT /api/services generation 5: 200")
is_(sorted(s["name"] for s in watcher("GET", "/api/services").json()), ["a", "c"],
    "PUT replaced the whole set")
is_(sorted(set(traffic(6))), ["low", "third"], "traffic follows the replaced set")
r = watcher("PUT", "/api/services", {"generation": 4, "services": [svc("z", high.port)]})
is_(r.status, 409, "stale generation 4: 409")
is_(sorted(s["name"] for s in watcher("GET", "/api/services").json()), ["a", "c"], "stale PUT had no effect")
r = watcher("PUT", "/api/services", {"generation": 6, "services": [svc("a", low.port), svc("bad", 80) | {"ip": "169.254.169.254"}]})
is_(r.status, 400, "PUT with one invalid service: 400")
is_(sorted(s["name"] for s in watcher("GET", "/api/services").json()), ["a", "c"],
    "invalid PUT changed nothing (atomic)")
r = watcher("PUT", "/api/services", {"generation": 7, "services": []})
is_(r.status, 200, "PUT with an empty set: 200")
is_(watcher("GET", "/api/services").json(), [], "empty set")
is_(request(p.addr, "POST", "/v1/chat/completions", {"model": "m"}).status, 503, "no backends: 503")
watcher("PUT", "/api/services", {"generation": 8, "services": [svc("h", high.port)]})

# A large PUT, then one that reweights half, drops a quarter, moves some and adds
# new ones: GET /api/services shows exactly the set the rules give, in order
# (survivors where they were, new names last), and /v1/models each model once.
def big(i, w=1, port=8000):
    return {"name": "svc-%d" % i, "ip": "127.1.%d.%d" % (i // 250, i % 250 + 1), "port": port,
            "weight": w, "models": ["model-%d" % (i % 50), "shared"]}


first = [big(i) for i in range(3000)]
r = watcher("PUT", "/api/services", {"generation": 9, "services": first})
is_(r.status, 200, "PUT of 3,000 services: 200")
view = lambda s: (s["name"], s["weight"], s["ip"], s["port"])  # noqa: E731
is_([view(s) for s in watcher("GET", "/api/services").json()], [view(s) for s in first],
    "GET /api/services: the 3,000, in order")
second = [big(i, 5 if i % 2 else 1, 9000 if i % 10 == 2 else 8000) for i in range(3000) if i % 4 != 3]
second += [big(3000 + i, 2) for i in range(750)]
r = watcher("PUT", "/api/services", {"generation": 10, "services": second})
is_(r.status, 200, "PUT reweighting half, dropping a quarter, adding 750: 200")
is_([view(s) for s in watcher("GET", "/api/services").json()], [view(s) for s in second],
    "GET /api/services: exactly the new set, survivors first, in order")
r = request(p.addr, "GET", "/v1/models")
is_([m["id"] for m in r.json()["data"]], list(dict.fromkeys(m for s in second for m in s["models"])),
    "/v1/models: each model once, by first appearance")
r = watcher("PUT", "/api/services", {"generation": 11, "services": second + [big(5)]})
ok(r.status == 400 and r.json()["error"]["message"] == "duplicate backend name 'svc-5'",
   "a duplicate name: 400 with its name")
watcher("PUT", "/api/services", {"generation": 12, "services": [svc("h", high.port)]})

# POST /api/drain
idle = connect(p.addr)
r = request(p.admin, "POST", "/api/drain", b"{}", headers={"Content-Type": "application/json"})
is_(r.status, 200, "POST /api/drain: 200")
t0 = time.time()
rc = None
while time.time() - t0 < 5:
    rc = p.p.poll()
    if rc is not None:
        break
    time.sleep(0.05)
is_(rc, 0, "drained with nothing in flight: exit 0 (%.2fs)" % (time.time() - t0))
out, closed = read_until_close(idle, 2)
ok(closed and out == b"", "idle client connection closed without a response")
idle.close()
done()
