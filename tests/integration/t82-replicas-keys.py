#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""API keys with replicas (README.md, "Replicas" and "API keys"): a
follower checks the key (401 at once for a bad one) but forwards the
request to the active replica with its Authorization header, and the
active checks and counts it: a key's limits count every request once,
across the replicas that follow one active. When the active is down and
the follower serves the request itself, the follower counts the key and
strips it; no backend ever sees a client's key."""
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (FakeBackend, admin_request, chat_completion, deadline, done, is_, lb,  # noqa: E402
                     ok, request, respond_ok)

deadline(60)
GOOD = "sk-replica-team-0123456789"
LIMITED = "sk-replica-rpm-0123456789a"


def handler(conn):
    while True:
        req = conn.recv_request(timeout=30)
        if req is None:
            return
        body = chat_completion(3, 5, seen_auth=req.header("authorization"))
        if not conn.send(respond_ok(body)):
            return


be = FakeBackend(handler, name="b1")
tmp = tempfile.mkdtemp(prefix="t82-")
keyfile = os.path.join(tmp, "keys")
with open(keyfile, "w") as f:
    f.write("%s name=team\n%s name=rpm4 rpm=4\n" % (GOOD, LIMITED))
common = ["--backend", be.backend_arg(), "--api-key-file", keyfile,
          "--backend-allow", "127.0.0.0/8", "--connect-timeout", "1s"]
a = lb(*common)
b = lb(*common, "--follow", a.addr)


def chat(p, key):
    h = {"Authorization": "Bearer " + key} if key else {}
    return request(p.addr, "POST", "/v1/chat/completions",
                   {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
                   headers=h, timeout=10)


def key_metric(p, name, key):
    body = admin_request(p, "GET", "/metrics").body.decode()
    want = '%s{key="%s"} ' % (name, key)
    for line in body.splitlines():
        if line.startswith(want):
            return float(line.split()[-1])
    return 0.0


def role(p):
    return admin_request(p, "GET", "/api/role").json()


is_(role(b)["role"], "follower", "B follows A")

# --- through the follower: forwarded with the key, checked and counted by the active
r = chat(b, GOOD)
is_(r.status, 200, "a valid key through the follower: 200")
is_(r.json().get("seen_auth"), None, "the backend never sees the key")
is_(key_metric(a, "llamalb_key_requests_total", "team"), 1.0,
    "the active counted the key (it got the Authorization header)")
is_(key_metric(b, "llamalb_key_requests_total", "team"), 0.0,
    "the follower did not count it: limits count once")
is_(key_metric(a, "llamalb_key_completion_tokens_total", "team"), 5.0,
    "the active counted the answer's usage")
ok(role(b)["forwarded"] >= 1, "the request went through the active (forwarded %d)"
   % role(b)["forwarded"])

r = chat(b, None)
is_(r.status, 401, "no key at the follower: 401 at once")
r = chat(b, "sk-wrong-key-0123456789")
is_(r.status, 401, "a wrong key at the follower: 401")
is_(role(b)["forwarded"], 1, "... neither was forwarded")

# --- one limit across the replicas: rpm=4, requests spread over A and B
st = [chat(p, LIMITED).status for p in (a, b, a, b)]
is_(st, [200] * 4, "4 requests with an rpm=4 key, alternating A and B: all 200")
r = chat(b, LIMITED)
is_(r.status, 429, "the 5th, through the follower: 429 (the active counted all four)")
ok(r.header("retry-after") is not None, "... with Retry-After")
is_(key_metric(a, "llamalb_key_requests_total", "rpm4"), 4.0, "the active counted 4 for rpm4")

# --- the active goes away: the follower serves locally, counts and strips the key
a.stop()
r = chat(b, GOOD)
is_(r.status, 200, "active down: the follower serves the request itself")
is_(r.json().get("seen_auth"), None, "... and the backend still never sees the key")
is_(key_metric(b, "llamalb_key_requests_total", "team"), 1.0,
    "... and the follower counts the key it served")
ok(role(b)["fallbacks"] + role(b)["local_while_down"] >= 1, "... as a fallback")
r = chat(b, None)
is_(r.status, 401, "... a request without a key is still refused")
b.stop()
done()
