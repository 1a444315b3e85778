#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""API keys on the public port (--api-key-file; docs/hardening.md, "API
keys"): 401 in OpenAI's shape without a valid key, before the body is read;
a key's models; 429 with Retry-After and x-ratelimit-* headers past its
requests per minute, tokens per minute (counted from the answers' usage) or
requests at once; the key never forwarded, never logged, its name in the
access log and in metrics; the file re-read when it changes and on SIGHUP
(an invalid one refused with file:line, the keys in use kept); the official
OpenAI SDK sees AuthenticationError and RateLimitError."""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403

deadline(90)
CLIENTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "clients")
GOOD = "sk-good-0123456789abcdef"
MODELS = "sk-models-0123456789abcdef"
RPM = "sk-rpm-0123456789abcdef"
TPM = "sk-tpm-0123456789abcdef"
CONC = "sk-conc-0123456789abcdef"
SDK_LIM = "sk-sdk-limited-0123456789"

held = threading.Event()
release = threading.Event()


def handler(conn):
    while True:
        req = conn.recv_request(timeout=30)
        if req is None:
            return
        if req.header("x-hold"):
            held.set()
            release.wait(20)
        body = chat_completion(10, 20, seen_auth=req.header("authorization"))
        if not conn.send(respond_ok(body)):
            return


be = FakeBackend(handler, name="b1")
tmp = tempfile.mkdtemp(prefix="t49-")
keyfile = os.path.join(tmp, "keys")
logfile = os.path.join(tmp, "access.log")
conffile = os.path.join(tmp, "llamalb.conf")


def write_keys(text):
    path = keyfile + ".new"
    with open(path, "w") as f:
        f.write(text)
    os.rename(path, keyfile)  # as a Secret mount swaps its files


write_keys("# test keys\n"
           "%s name=team-a\n" % GOOD +
           "%s name=restricted models=model-a\n" % MODELS +
           "%s name=rpm3 rpm=3\n" % RPM +
           "%s name=tpm50 tpm=50\n" % TPM +
           "%s name=one-at-a-time concurrent=1\n" % CONC)
with open(conffile, "w") as f:
    f.write("api-key-file %s\n" % keyfile)
p = lb("-c", conffile, "--backend", be.backend_arg(), "--access-log", logfile,
       "--default-max-inflight", "0")


def chat(key=None, model="model-a", headers=None, timeout=10):
    h = dict(headers or {})
    if key is not None:
        h["Authorization"] = "Bearer " + key
    return request(p.addr, "POST", "/v1/chat/completions",
                   {"model": model, "messages": [{"role": "user", "content": "hi"}]},
                   headers=h, timeout=timeout)


def error_of(r):
    try:
        return r.json()["error"]
    except Exception:  # noqa: BLE001
        return {}


# --- 401 without a valid key, before the body is read
n0 = be.nrequests
r = chat(None)
is_((r.status, error_of(r).get("code"), error_of(r).get("type")),
    (401, "invalid_api_key", "invalid_request_error"), "no key: 401 invalid_api_key")
r = chat("sk-wrong-0123456789abcdef")
is_((r.status, error_of(r).get("code")), (401, "invalid_api_key"), "a wrong key: 401")
out = raw(p.addr, b"POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer nope\r\n"
          b"Content-Length: 100000\r\nExpect: 100-continue\r\n\r\n", timeout=3)
ok(out.startswith(b"HTTP/1.1 401") and b"100 Continue" not in out,
   "a bad key with a large body: 401 on the head, no 100 Continue")
is_(be.nrequests, n0, "none of them reached the backend")

# --- a valid key: served, not forwarded, named in the log
r = chat(GOOD)
is_(r.status, 200, "a valid key: 200")
is_(r.json().get("seen_auth"), None, "the client's key is not forwarded to the backend")
r = chat(GOOD.upper()[:3] + GOOD[3:])
is_(r.status, 401, "keys are compared exactly")

# --- models
is_(chat(MODELS, model="model-a").status, 200, "a restricted key on its model: 200")
r = chat(MODELS, model="model-b")
is_((r.status, error_of(r).get("code")), (404, "model_not_found"),
    "a restricted key on another model: 404 model_not_found")

# --- requests per minute
st = [chat(RPM) for _ in range(4)]
is_([x.status for x in st], [200, 200, 200, 429], "rpm=3: the fourth request in a minute gets 429")
r = st[3]
is_((error_of(r).get("code"), error_of(r).get("type")), ("rate_limit_exceeded", "requests"),
    "429 in OpenAI's shape")
ok(r.header("retry-after") is not None and int(r.header("retry-after")) >= 1,
   "with Retry-After (%s)" % r.header("retry-after"))
is_((r.header("x-ratelimit-limit-requests"), r.header("x-ratelimit-remaining-requests")),
    ("3", "0"), "and x-ratelimit-limit/remaining-requests")
is_(st[0].header("x-ratelimit-remaining-requests"), "2", "answers carry the remaining count too")

# --- tokens per minute, from the answers' usage (30 tokens each)
st = [chat(TPM).status for _ in range(3)]
is_(st, [200, 200, 429], "tpm=50 at 30 tokens an answer: the third request gets 429")

# --- requests at once
t = threading.Thread(target=lambda: chat(CONC, headers={"X-Hold": "1"}, timeout=25), daemon=True)
t.start()
ok(held.wait(10), "one request of the concurrent=1 key is in flight")
r = chat(CONC)
is_((r.status, error_of(r).get("code")), (429, "rate_limit_exceeded"),
    "a second one at the same time: 429")
release.set()
t.join(25)
is_(chat(CONC).status, 200, "once it is done, the next one passes")

# --- log and metrics: names, never the keys
wait_for(lambda: os.path.exists(logfile) and "key=rpm3" in open(logfile).read(), 3)
log = open(logfile).read()
ok("key=team-a" in log and "key=rpm3" in log, "the access log names the key")
ok(all(k not in log for k in (GOOD, MODELS, RPM, TPM, CONC)), "and never holds a key")
m = request(p.admin, "GET", "/metrics", timeout=5).body.decode()
like(m, r'llamalb_key_requests_total\{key="rpm3"\} 3', "metrics: requests by key name")
like(m, r'llamalb_key_refused_total\{key="rpm3"\} 1', "metrics: refusals by key name")
like(m, r'llamalb_key_completion_tokens_total\{key="tpm50"\} 40',
     "metrics: completion tokens from the answers' usage")
ok(all(k not in m for k in (GOOD, MODELS, RPM)), "metrics never hold a key")

# --- the file changes in place: re-read within a couple of seconds
NEW = "sk-rotated-0123456789abcdef"
write_keys("%s name=team-a\n%s name=rpm3 rpm=3\n" % (NEW, RPM))
ok(wait_for(lambda: chat(NEW).status == 200, 5), "a key added to the file works without a signal")
is_(chat(GOOD).status, 401, "a key removed from the file stops working")
is_(chat(RPM).status, 429, "limits count across the reload (rpm3 still at its limit)")

# --- an invalid file: refused with file:line, the keys in use kept
write_keys("%s name=team-a\nshort\n" % NEW)
os.kill(p.pid, signal.SIGHUP)
ok(wait_for(lambda: "%s:2:" % keyfile in p.stderr_text(), 5),
   "an invalid key file is refused with file:line")
is_(chat(NEW).status, 200, "and the keys in use are kept")

# --- the official SDK
write_keys("%s name=team-a\n%s name=sdk rpm=2\n" % (GOOD, SDK_LIM))
wait_for(lambda: chat(GOOD).status == 200, 5)
s = sim(name="llama-3-1b-low")
p2 = lb("--backend", "llama-3-1b-low=%s,models=llama-3-1b" % s.addr, "--api-key-file", keyfile)
node = shutil.which("node")
if node is None or not os.path.isdir(os.path.join(CLIENTS, "node_modules", "openai")):
    npm = shutil.which("npm")
    if npm:
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=CLIENTS, capture_output=True,
                       timeout=180)
r = subprocess.run([node or "node", os.path.join(CLIENTS, "openai_key.js"), "http://%s/v1" % p2.addr,
                    GOOD, "sk-nope-0123456789", SDK_LIM], capture_output=True, timeout=60)
ok(r.returncode == 0, "the SDK script ran")
if r.returncode != 0:
    note(r.stderr.decode(errors="replace")[-2000:])
out = json.loads(r.stdout or b"{}")
is_(out.get("chat", {}).get("content"), "w1 w2 w3 w4", "SDK with a key: chat")
is_(out.get("stream", {}).get("text"), "w1 w2 w3", "SDK with a key: stream")
is_((out.get("bad") or {}).get("cls"), "AuthenticationError", "SDK: a bad key is AuthenticationError")
is_((out.get("bad") or {}).get("code"), "invalid_api_key", "with code invalid_api_key")
lim = out.get("limited") or [{}, {}, {}]
is_([x.get("status") for x in lim], [200, 200, 429], "SDK: rpm=2, the third call gets 429")
is_(lim[2].get("cls"), "RateLimitError", "as RateLimitError")
is_((lim[2].get("remaining"), lim[2].get("code")), ("0", "rate_limit_exceeded"),
    "with the headers and code it reads")
shutil.rmtree(tmp, ignore_errors=True)
done()
