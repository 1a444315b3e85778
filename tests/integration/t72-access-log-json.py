#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# --access-log-format json (README "Access log"): one JSON object per line
# with the text line's fields, strings escaped; the same requests give the
# same values in both formats; a bad value is refused by -t.
import json
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import LB, chat, deadline, done, is_, lb, ok, request, sim, wait_for

deadline(60)
tmp = tempfile.mkdtemp(prefix="llamalb-t72-")
s = sim(name="m1")
TEXT_RE = re.compile(r'^(\S+) (\S+) "(\S+) (\S+) (HTTP/1\.\d)" (\d+) (\d+) backend=(\S+) tries=(\d+) '
                     r'ttfb_ms=(\S+) duration_ms=(\S+) rid=(\S+) key=(\S+)( admin)?$')


def run(fmt):
    path = os.path.join(tmp, "access-%s.log" % fmt)
    p = lb("--backend", "a=%s" % s.addr, "--access-log", path, "--access-log-format", fmt)
    chat(p.addr, model="m1", headers={"X-Request-Id": "rid-0001-abcd"})
    chat(p.addr, model="m1", stream=True)
    request(p.addr, "GET", '/v1/models?q="x"')
    request(p.addr, "GET", "/api/services")  # the public port: 404
    request(p.admin, "GET", "/healthz")
    lines = wait_for(lambda: [l for l in open(path).read().splitlines() if l] if os.path.exists(path)
                     else [], timeout=5)
    lines = wait_for(lambda: len(open(path).read().splitlines()) >= 5 and
                     open(path).read().splitlines(), timeout=5) or lines
    p.stop()
    return lines


text = run("text")
js = run("json")
is_((len(text), len(js)), (5, 5), "five requests, five lines in each format")
parsed = []
for l in js:
    try:
        parsed.append(json.loads(l))
    except ValueError:
        parsed.append(None)
ok(all(isinstance(x, dict) for x in parsed), "every json line is one JSON object")
KEYS = ["time", "peer", "method", "path", "protocol", "status", "bytes", "backend", "tries",
        "ttfb_ms", "duration_ms", "rid", "key", "admin"]
ok(all(x and list(x) == KEYS for x in parsed), "the fields, in the text line's order: " + " ".join(KEYS))
for t, j in zip(text, parsed):
    m = TEXT_RE.match(t)
    if not ok(m and j, "text line parsed: %s" % t[:80]):
        continue
    g = m.groups()
    is_((j["method"], j["path"], j["protocol"], j["status"], j["backend"], j["tries"], j["rid"] if
         j["rid"].startswith("rid-") else "-", j["key"], j["admin"]),
        (g[2], g[3], g[4], int(g[5]), g[7], int(g[8]), g[11] if g[11].startswith("rid-") else "-",
         g[12], g[13] is not None),
        "same values: %s %s" % (g[2], g[3]))
    is_(j["bytes"], int(g[6]), "... same byte count (%s)" % g[6])
    ok(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", j["time"]) and
       isinstance(j["ttfb_ms"], (int, float)) and isinstance(j["duration_ms"], (int, float)),
       "... time in UTC, timings as numbers")
is_(parsed[0]["rid"], "rid-0001-abcd", "the client's X-Request-Id")
is_(parsed[2]["path"], '/v1/models?q="x"', "quotes in the target escaped, read back intact")
r = subprocess.run([LB, "-t", "--access-log-format", "yaml"], capture_output=True, text=True, timeout=10)
ok(r.returncode == 2 and "access-log-format" in r.stderr, "-t refuses --access-log-format yaml")
done()
