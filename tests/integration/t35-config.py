#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Configuration: -t -c checks a file (0 when good; non-zero with FILE:LINE
when bad), backends from the file serve, SIGHUP reload applies added and
removed backends and changed weights without dropping an in-flight request,
and a broken file on reload keeps the running configuration."""
import json
import re
import os
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403

deadline(40)
tmp = tempfile.mkdtemp()


def write(name, text):
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def check(path):
    return subprocess.run([LB, "-t", "-c", path], capture_output=True, timeout=5)


good = write("good.conf", "# comment\n\npolicy wrr\nbackend a=127.0.0.1:9001,weight=3\n"
             "  backend b=127.0.0.1:9002   \nheader-timeout 5s\nmax-body 8m\n")
r = check(good)
is_(r.returncode, 0, "-t -c good file: exit 0")
for name, text, line in [("unknown.conf", "policy wrr\nbogus-option 3\n", 2),
                         ("badval.conf", "\n\nheader-timeout soon\n", 3),
                         ("badpolicy.conf", "policy fastest\n", 1),
                         ("badbackend.conf", "backend a=127.0.0.1:9001\nbackend nohostport\n", 2),
                         ("dup.conf", "backend a=127.0.0.1:9001\nbackend a=127.0.0.1:9002\n", 2),
                         ("badport.conf", "backend a=127.0.0.1:70000\n", 1),
                         ("novalue.conf", "policy wrr\nlisten\n", 2)]:
    path = write(name, text)
    r = check(path)
    ok(r.returncode != 0, "-t -c %s: non-zero exit (%d)" % (name, r.returncode))
    like(r.stderr.decode(errors="replace"), re.escape("%s:%d" % (path, line)), "%s: message names %s:%d" %
         (name, name, line))
r = subprocess.run([LB, "-t", "-c", os.path.join(tmp, "missing.conf")], capture_output=True, timeout=5)
ok(r.returncode != 0 and b"missing.conf" in r.stderr, "-t -c missing file: non-zero, names the file")

# backends from a file serve; SIGHUP reload


def gated(conn, req):
    if req.target == "/slow":
        time.sleep(1.5)
    return respond_ok('{"backend":"%s"}' % conn.backend.name)


a = FakeBackend(serve_loop(gated), name="a")
b = FakeBackend(serve_loop(gated), name="b")
cf = write("run.conf", "policy wrr\nbackend a=%s\n" % a.addr)
p = lb("-c", cf)


def who(r):
    return json.loads(r.body)["backend"]


def seq(n):
    s = connect(p.addr)
    out = [who(request(p.addr, "POST", "/v1/chat/completions", b"{}", conn=s)) for _ in range(n)]
    s.close()
    return out


is_(seq(3), ["a"] * 3, "backend from the config file serves")

res = {}
th = threading.Thread(target=lambda: res.setdefault("r", request(p.addr, "POST", "/slow", b"{}")))
th.start()
time.sleep(0.3)
write("run.conf", "policy wrr\nbackend b=%s\n" % b.addr)
os.kill(p.pid, signal.SIGHUP)
time.sleep(0.3)
names = [s["name"] for s in json.loads(admin_request(p, "GET", "/api/services").body)]
is_(names, ["b"], "SIGHUP: a removed, b added")
is_(seq(4), ["b"] * 4, "after reload new requests go to b")
th.join(5)
ok("r" in res and res["r"].status == 200 and who(res["r"]) == "a",
   "slow request in flight on the removed backend completed 200")

write("run.conf", "policy wrr\nbackend a=%s,weight=3\nbackend b=%s,weight=1\n" % (a.addr, b.addr))
os.kill(p.pid, signal.SIGHUP)
time.sleep(0.3)
s8 = seq(8)
is_(sorted(s8), ["a"] * 6 + ["b"] * 2, "SIGHUP: weights 3:1 applied (%s)" % ",".join(s8))
write("run.conf", "policy wrr\nbackend a=%s,weight=1\nbackend b=%s,weight=3\n" % (a.addr, b.addr))
os.kill(p.pid, signal.SIGHUP)
time.sleep(0.3)
s8 = seq(8)
is_(sorted(s8), ["a"] * 2 + ["b"] * 6, "SIGHUP: weight change to 1:3 applied")

write("run.conf", "policy wrr\nbackend a=%s\nthis is broken\n" % a.addr)
os.kill(p.pid, signal.SIGHUP)
time.sleep(0.3)
ok(p.alive(), "broken file on reload: still running")
is_(sorted(s["name"] for s in json.loads(admin_request(p, "GET", "/api/services").body)), ["a", "b"],
    "broken file on reload: running configuration kept")
like(p.stderr_text(), r"reload failed", "broken reload logged")
done()
