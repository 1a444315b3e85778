#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# The status page on the admin listener (README "Operating llamalb"): GET /
# serves one self-contained page, GET /api/stats its data behind the admin
# token; then Debian's chromium, headless, driven by puppeteer-core
# (tests/clients/status_page.js), signs in, sees the backends of a running
# llamalb with two sims, sees one ejected, and saves a screenshot
# ($STATUS_SHOT, else in $TMPDIR; `make status-screenshot` writes the README's).
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import chat, deadline, done, is_, lb, like, note, ok, request, sim

deadline(150)
HERE = os.path.dirname(os.path.abspath(__file__))
CLIENTS = os.path.join(HERE, "..", "clients")
TOKEN = "status-page-test-token-0123456789"
tmp = tempfile.mkdtemp(prefix="llamalb-t70-")
tokfile = os.path.join(tmp, "token")
with open(tokfile, "w") as f:
    f.write(TOKEN + "\n")

s1 = sim("--ttft-ms", "30", "--tokens-per-sec", "200", "--slots", "2", name="m1")
s2 = sim("--ttft-ms", "60", "--tokens-per-sec", "100", name="m2")
p = lb("--admin-token-file", tokfile, "--policy", "least", "--eject-time", "300s",
       "--backend", "a=%s,models=m1,max-inflight=2" % s1.addr,
       "--backend", "b=%s,models=m2" % s2.addr)
AUTH = {"Authorization": "Bearer " + TOKEN}

for i in range(6):
    chat(p.addr, model="m1", stream=(i % 2 == 0), extra={"max_tokens": 4})
    chat(p.addr, model="m2", extra={"max_tokens": 2})

# ---- the page itself
r = request(p.admin, "GET", "/")
is_(r.status, 200, "GET / on the admin listener: 200 without a token (the page holds no data)")
like(r.header("content-type"), r"^text/html", "... text/html")
csp = r.header("content-security-policy") or ""
like(csp, r"default-src 'none'", "... a Content-Security-Policy that allows nothing by default")
like(csp, r"connect-src 'self'", "... and connections only to its own origin")
is_(r.header("x-frame-options"), "DENY", "... never framed")
ok(len(r.body) < 48 * 1024, "... self-contained and small: %d bytes" % len(r.body))
page = r.body.decode()
is_(re.findall(r"""(?:src|href)\s*=\s*["'](?!data:|#)[^"']+""", page), [],
    "no src= or href= to anything but data: (no CDN, no outside file)")
is_(re.findall(r"https?://", page), [], "no http(s):// URL in the page")
ok("localStorage" not in page and "document.cookie" not in page,
   "the page keeps nothing in localStorage or cookies")

# ---- the stats endpoint: same auth as /metrics
is_(request(p.admin, "GET", "/api/stats").status, 401, "GET /api/stats without the token: 401")
is_(request(p.admin, "GET", "/api/stats", headers={"Authorization": "Bearer wrong-token-000000"}).status,
    401, "... with a wrong one: 401")
is_(request(p.admin, "POST", "/api/stats", body={}, headers=AUTH).status, 405, "... POST: 405")
r = request(p.admin, "GET", "/api/stats", headers=AUTH)
is_(r.status, 200, "GET /api/stats with the token: 200")
st = json.loads(r.body)
is_((st["build"]["program"], st["build"]["policy"], st["build"]["workers"]),
    ("llamalb", "least", int(os.environ.get("LLAMALB_TEST_WORKERS", "1"))),
    "build: program, policy, workers")
ok(re.match(r"^\d+\.\d+\.\d+", st["build"]["version"]), "build: version")
be = {b["name"]: b for b in st["backends"]}
is_(sorted(be), ["a", "b"], "both backends")
a = be.get("a", {})
is_((a.get("state"), a.get("weight"), a.get("cap"), a.get("models")), ("up", 1, 2, ["m1"]),
    "a: state, weight, cap, models")
is_((a.get("requests"), a.get("errors"), a.get("ejections")), (6, 0, 0), "a: requests, errors, ejections")
ok(a.get("ttft_ms", 0) >= 20, "a: measured TTFT (%.1f ms)" % a.get("ttft_ms", 0))
ok(a.get("tbt_ms", 0) > 0, "a: measured time between tokens (%.2f ms)" % a.get("tbt_ms", 0))
mo = {m["name"]: m for m in st["models"]}
is_((mo.get("m1", {}).get("requests"), mo.get("m2", {}).get("requests")), (6, 6), "per-model requests")
is_(sum(mo["m1"]["ttft_hist"]), mo["m1"]["ttft_count"], "per-model TTFT histogram counts every TTFT")
is_(len(mo["m1"]["ttft_hist"]), len(st["ttft_bounds_ms"]) + 1, "... one bucket per bound, and +Inf")
for k in ("length", "max", "oldest_wait_ms", "queued", "rejected", "timeouts"):
    ok(k in st["queue"], "queue: %s" % k)
ok(st["totals"]["requests"] >= 12, "totals: requests (admin ones included)")
r = request(p.addr, "GET", "/")
ok(b"llamalb status" not in r.body, "the public listener does not serve the page (it proxies GET /)")

# ---- in a real browser
node = shutil.which("node")
chromium = os.environ.get("CHROMIUM") or shutil.which("chromium")
have_pptr = os.path.isdir(os.path.join(CLIENTS, "node_modules", "puppeteer-core"))
if node and chromium and not have_pptr and shutil.which("npm"):
    note("installing the test clients (npm ci)")
    c = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=CLIENTS, capture_output=True,
                       timeout=180)
    have_pptr = c.returncode == 0
if not (node and chromium and have_pptr):
    ok(True, "# SKIP the browser checks: need node, chromium (scripts/deps.sh kit) and "
       "puppeteer-core (npm ci in tests/clients)")
    done()

shot = os.environ.get("STATUS_SHOT") or os.path.join(tmp, "status.png")
stop = threading.Event()


def traffic(limit):
    """Streams to m1 until <stop> or <limit> requests (charts get points)."""
    for i in range(limit):
        if stop.is_set():
            return
        try:
            chat(p.addr, model="m1", stream=True, extra={"max_tokens": 3 + i % 5}, timeout=10)
        except Exception:
            pass
        time.sleep(0.04 + 0.08 * (1 + math.sin(i / 15.0)))  # a load that rises and falls


env = dict(os.environ, CHROMIUM=chromium)
env.setdefault("SHOT_WAIT_MS", "4000")
b = subprocess.Popen([node, os.path.join(CLIENTS, "status_page.js"), "http://" + p.admin, TOKEN, shot],
                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
t = None
seen_done = False
end = time.time() + 100
for line in b.stdout:
    if time.time() > end:
        break
    try:
        m = json.loads(line)
    except ValueError:
        note("browser: " + line.decode(errors="replace").rstrip())
        continue
    if "ok" in m:
        ok(m["ok"], "browser: " + m["name"])
    elif "note" in m:
        note("browser: " + m["note"])
    elif m.get("ask") == "eject":
        # b's sim goes away; the next request for m2 finds its port closed
        # and a refused connect ejects at once.
        s2.stop()
        r = chat(p.addr, model="m2", extra={"max_tokens": 2})
        note("request to the stopped backend: %d" % r.status)
        b.stdin.write(b"ok\n")
        b.stdin.flush()
    elif m.get("ask") == "traffic":
        t = [threading.Thread(target=traffic, args=(int(os.environ.get("SHOT_REQUESTS", "40")),))
             for _ in range(3)]  # three clients, a's cap is two: some wait in the queue
        for x in t:
            x.start()
        b.stdin.write(b"ok\n")
        b.stdin.flush()
    elif m.get("done"):
        seen_done = True
try:
    rc = b.wait(timeout=15)
except subprocess.TimeoutExpired:
    b.kill()
    rc = b.wait()
stop.set()
for x in t or []:
    x.join(15)
err = b.stderr.read().decode(errors="replace")
ok(rc == 0 and seen_done, "the browser script finished")
if rc != 0 and err:
    note(err[-3000:])
st = json.loads(request(p.admin, "GET", "/api/stats", headers=AUTH).body)
be = {x["name"]: x for x in st["backends"]}
is_((be["b"]["state"], be["b"]["ejections"]), ("ejected", 1), "the stats agree: b ejected once")
ok(os.path.getsize(shot) > 10000 if os.path.exists(shot) else False, "screenshot at " + shot)
done()
