#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The admin API's bounds on the registry (docs/hardening.md, "The registry
and the admin API's bodies"): PUT /api/services with more than
REG_MAX_BACKENDS (100,000) services is refused with 413 in OpenAI's error
shape before anything is allocated per service; a body with more JSON
values than any accepted body has is refused before it is tokenized; a PUT
of exactly 100,000 services is taken and costs memory in proportion to what
the backends hold (RSS measured from /proc, noted); a registration into the
full set is refused (413) while an update is not."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403

deadline(120)
MAX = 100000
SAN = "san" in os.environ.get("LLAMALB_BUILD", "")

p = lb()
JSON = {"Content-Type": "application/json"}


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def services(n, prefix="svc"):
    return [{"name": "%s%d" % (prefix, i), "ip": "10.%d.%d.%d" % (i // 62500, i // 250 % 250,
                                                                 i % 250 + 1),
             "port": 8000} for i in range(n)]


def put(body, timeout=60):
    if not isinstance(body, bytes):
        body = json.dumps(body, separators=(",", ":")).encode()
    return admin_request(p, "PUT", "/api/services", body, headers=JSON, timeout=timeout), len(body)


def err_code(r):
    try:
        e = r.json()["error"]
        return e["code"] if isinstance(e.get("message"), str) and "type" in e else None
    except (ValueError, KeyError, TypeError):
        return None


rss0 = rss_kb(p.pid)

# -- more services than the set may hold
r, size = put({"generation": 1, "services": services(MAX + 1)})
is_(r.status, 413, "PUT of 100,001 services: 413 (%d-byte body)" % size)
is_(err_code(r), "too_many_backends", "in OpenAI's error shape, code too_many_backends")
rss1 = rss_kb(p.pid)
note("RSS before %d KiB, after the refused 100,001-service PUT %d KiB (+%d KiB, body %d KiB)"
     % (rss0, rss1, rss1 - rss0, size // 1024))
is_(len(admin_request(p, "GET", "/api/services").json()), 0, "the set is unchanged (empty)")

# -- more JSON values than any accepted body: refused before tokenizing
tiny = b'{"services":[' + b",".join([b"0"] * 4600000) + b"]}"
r, size = put(tiny)
is_(r.status, 413, "a body of 4.6M one-byte values: 413 (%d-byte body)" % size)
is_(err_code(r), "too_many_values", "code too_many_values")
rss2 = rss_kb(p.pid)
note("RSS after the refused 4.6M-value body: %d KiB (+%d KiB since the start)"
     % (rss2, rss2 - rss0))
# The old code allocated body/2 tokens (110 MB) and a 4 KiB spec per value.
ok(rss2 - rss0 < 64 * 1024 * (4 if SAN else 1),
   "refused bodies leave RSS near where it was (+%d KiB)" % (rss2 - rss0))

# -- exactly the limit: taken
body = json.dumps({"generation": 2, "services": services(MAX)}, separators=(",", ":")).encode()
r, size = put(body)
is_(r.status, 200, "PUT of 100,000 services: 200")
rss3 = rss_kb(p.pid)
grow = rss3 - rss2
note("RSS after the 100,000-service PUT: %d KiB (+%d KiB for a %d KiB body: %.1fx)"
     % (rss3, grow, size // 1024, grow * 1024.0 / size))
# Was 868 MB for this PUT (specs and backends each carried 4 KiB of model
# slots); now about 1 KB per backend plus the transient token array.
ok(grow < 256 * 1024 * (3 if SAN else 1), "RSS grew by %d MiB, not hundreds" % (grow // 1024))

# -- the full set refuses a new name, takes an update
reg = {"name": "one-more", "ip": "10.200.0.1", "port": 8000}
r = admin_request(p, "POST", "/api/register", json.dumps(reg).encode(), headers=JSON)
is_(r.status, 413, "register into a full set: 413")
is_(err_code(r), "too_many_backends", "code too_many_backends")
reg = {"name": "svc7", "ip": "10.0.0.8", "port": 8000, "weight": 5, "models": ["m-a", "m-b"]}
r = admin_request(p, "POST", "/api/register", json.dumps(reg).encode(), headers=JSON)
is_(r.status, 200, "updating a backend of the full set: 200")
got = [s for s in admin_request(p, "GET", "/api/services", timeout=60).json()
       if s["name"] == "svc7"]
ok(len(got) == 1 and got[0]["weight"] == 5 and got[0]["models"] == ["m-a", "m-b"],
   "the update shows, models and all")

# -- a smaller PUT frees the room again
r, _ = put({"generation": 3, "services": services(10)})
is_(r.status, 200, "PUT of 10 services: 200")
reg = {"name": "one-more", "ip": "10.200.0.1", "port": 8000}
r = admin_request(p, "POST", "/api/register", json.dumps(reg).encode(), headers=JSON)
is_(r.status, 200, "then a registration fits")
ok(p.alive(), "llamalb still runs")
done()
