#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A full reload (SIGHUP; docs/hardening.md, "Reload"): a model alias, a
timeout, the API keys, the admin token and the access log's destination
change without a restart, with requests in flight unharmed; logrotate's
move-then-SIGHUP writes to the new file; an invalid configuration is refused
with file:line and the running one kept; an option that needs a restart is
named in the log."""
import os
import signal
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403

deadline(60)
tmp = tempfile.mkdtemp(prefix="t67-")
conf = os.path.join(tmp, "llamalb.conf")
keys1, keys2 = os.path.join(tmp, "keys1"), os.path.join(tmp, "keys2")
token = os.path.join(tmp, "token")
alog = os.path.join(tmp, "access.log")
K1, K2 = "sk-first-0123456789abcdef", "sk-second-0123456789abcdef"
T1, T2 = "token-one-0123456789abcdef", "token-two-0123456789abcdef"
for path, text in ((keys1, K1 + " name=one\n"), (keys2, K2 + " name=two\n"), (token, T1 + "\n")):
    with open(path, "w") as f:
        f.write(text)


def handler(name):
    def h(conn, req):
        if req.header("x-slow"):
            time.sleep(1.0)
        return respond_ok('{"backend":"%s"}' % name)
    return serve_loop(h)


a = FakeBackend(handler("a"), name="a")
b = FakeBackend(handler("b"), name="b")


def write_conf(alias_to, resp_timeout, keyfile, listen="127.0.0.1:0", extra=""):
    with open(conf, "w") as f:
        f.write("listen %s\nmodel-alias small=%s\nresponse-timeout %s\napi-key-file %s\n"
                "admin-token-file %s\naccess-log %s\nbackend a=%s,models=m-a\n"
                "backend b=%s,models=m-b\n%s" % (listen, alias_to, resp_timeout, keyfile, token,
                                                 alog, a.addr, b.addr, extra))


write_conf("m-a", "5s", keys1)
p = spawn([LB, "-c", conf, "--admin-listen", "127.0.0.1:0", "--workers", "1",
           "--health-interval", "0", "--drain-delay", "0", "--default-max-inflight", "0"],
          name="llamalb", want_admin=True)


def chat(key, model="small", slow=False):
    h = {"Authorization": "Bearer " + key}
    if slow:
        h["X-Slow"] = "1"
    return request(p.addr, "POST", "/v1/chat/completions", {"model": model, "messages": []},
                   headers=h, timeout=10)


def served(r):
    try:
        return r.json()["backend"]
    except Exception:  # noqa: BLE001
        return r.status


def reloaded(n):
    return wait_for(lambda: p.stderr_text().count("info reloaded:") >= n, 5)


is_(served(chat(K1)), "a", "before: alias small -> m-a (backend a)")
is_(chat(K1, slow=True).status, 200, "before: a 1 s answer is within --response-timeout 5s")
is_(chat(K2).status, 401, "before: the second key is not known")
is_(request(p.admin, "GET", "/metrics", headers={"Authorization": "Bearer " + T1}).status, 200,
    "before: the first admin token works")

# a slow request in flight across the reload
inflight = {}
t = threading.Thread(target=lambda: inflight.setdefault("r", chat(K1, model="m-a", slow=True)),
                     daemon=True)
t.start()
time.sleep(0.2)
write_conf("m-b", "300ms", keys2, extra="max-conns 77\n")
with open(token, "w") as f:
    f.write(T2 + "\n")
os.rename(alog, alog + ".1")  # logrotate moves the file, then signals
os.kill(p.pid, signal.SIGHUP)
ok(reloaded(1), "SIGHUP: reloaded")
t.join(10)
is_(inflight.get("r") and inflight["r"].status, 200, "a request in flight across the reload finished")
is_(served(chat(K2)), "b", "after: alias small -> m-b (backend b)")
is_(chat(K2, model="m-a", slow=True).status, 504, "after: --response-timeout 300ms cuts a 1 s answer")
is_(chat(K1).status, 401, "after: the first key is gone")
is_(request(p.admin, "GET", "/metrics", headers={"Authorization": "Bearer " + T1}).status, 401,
    "after: the old admin token is refused")
is_(request(p.admin, "GET", "/metrics", headers={"Authorization": "Bearer " + T2}).status, 200,
    "after: the new admin token works")
ok(wait_for(lambda: os.path.exists(alog) and "key=two" in open(alog).read(), 3),
   "the access log was reopened: new lines go to the new file")
like(p.stderr_text(), r"--max-conns changed \(0 -> 77\): needs a restart",
     "an option that needs a restart is named")

# an invalid configuration: refused with file:line, the running one kept
write_conf("m-a", "not-a-duration", keys1)
os.kill(p.pid, signal.SIGHUP)
ok(wait_for(lambda: "%s:3:" % conf in p.stderr_text(), 5),
   "an invalid file is refused with file:line")
is_(served(chat(K2)), "b", "and the running configuration is kept (alias, keys)")
p.stop()
done()
