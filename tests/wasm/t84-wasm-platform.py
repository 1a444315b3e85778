#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""What differs on WASI, under the real wasmedge (docs/wasm.md): one worker
(`--workers 4` is an error at start, not silently one); no signals, so
POST /api/drain drains: streams in flight finish with [DONE], new
connections are refused, the module exits 0; the admin token from the
environment (`wasmedge --env`) or from a file through the preopened
directory; the same config file and `-t` as the native program."""
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wasmlib  # noqa: E402

h = wasmlib.patch_harness("interp")
from harness import (chat, deadline, done, is_, lb, like, ok, request,  # noqa: E402
                     sim, sse_events, admin_request)

deadline(120)
prefix = wasmlib.runner("interp")
TOKEN = "wasm-test-token-0123456789"

# --workers: one worker and no threads
r = subprocess.run(prefix + ["--listen", "127.0.0.1:0", "--workers", "4"],
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
is_(r.returncode, 2, "--workers 4: exit 2 at start")
like(r.stderr.decode(), r"--workers 4: the WASI build runs one worker",
     "--workers 4: the error says why")

# the same config file, checked with -t, read through the preopened /
with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as f:
    f.write("listen 127.0.0.1:0\npolicy wrr\nbackend a=127.0.0.1:9,weight=3\n")
    conf = f.name
r = subprocess.run(prefix + ["-t", "-c", conf], stdout=subprocess.PIPE,
                   stderr=subprocess.PIPE, timeout=30)
is_(r.returncode, 0, "-t -c FILE: the config file is valid")
like(r.stdout.decode(), r"configuration ok \(1 backends, policy wrr, 1 workers\)",
     "-t reports one worker")
r = subprocess.run(prefix + ["--listen", "127.0.0.1:0", "--backend", "a=localhost:80"],
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
ok(r.returncode == 2 and "numeric" in r.stderr.decode(),
   "a host name is refused at start: no resolver in the module")
os.unlink(conf)

# the token from a file (preopened /), then from the environment
with tempfile.NamedTemporaryFile("w", delete=False) as f:
    f.write(TOKEN + "\n")
    tokfile = f.name
s1 = sim("--ttft-ms", "50", "--tokens-per-sec", "40", "--completion-tokens", "20", name="m1")
p = lb("--backend", "a=%s,models=m1" % s1.addr, "--admin-token-file", tokfile)
is_(admin_request(p, "GET", "/api/services").status, 401, "token from a file: no token, 401")
is_(admin_request(p, "GET", "/api/services", token=TOKEN).status, 200,
    "token from a file: the right one, 200")
p.stop()
os.unlink(tokfile)

p = lb("--backend", "a=%s,models=m1" % s1.addr, env={"LLAMALB_ADMIN_TOKEN": TOKEN})
# wasmedge passes no host environment: --env would; the harness' env reaches
# the wasmedge process only, so the module must not see it.
r = admin_request(p, "GET", "/api/services")
is_(r.status, 200, "the host environment does not reach the module (no --env): no token set")
p.stop()

envp = wasmlib.runner("interp")
envp.insert(1, "--env")
envp.insert(2, "LLAMALB_ADMIN_TOKEN=" + TOKEN)
p = h.spawn(envp + ["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
                    "--health-interval", "0", "--drain-delay", "0",
                    "--backend", "a=%s,models=m1" % s1.addr],
            name="llamalb.wasm", want_admin=True, timeout=30)
is_(admin_request(p, "GET", "/api/services").status, 401, "--env token: no token, 401")
is_(admin_request(p, "GET", "/api/services", token=TOKEN).status, 200, "--env token: 200")

# drain without signals: a stream in flight finishes, then the module exits 0
res = {}


def stream():
    res["r"] = chat(p.addr, model="m1", stream=True, timeout=30)


t = threading.Thread(target=stream)
t.start()
time.sleep(0.3)  # the stream has started (50 ms to the first token, 0.5 s in all)
d = admin_request(p, "POST", "/api/drain", token=TOKEN)
is_(d.status, 200, "POST /api/drain: 200")
t.join(20)
r = res.get("r")
ok(r is not None and r.status == 200, "the stream in flight during the drain: 200")
ev = sse_events(r.body) if r is not None else []
ok(len(ev) >= 20 and ev[-1] == "[DONE]", "the stream finished whole, [DONE] last (%d events)" % len(ev))
refused = False
try:
    request(p.addr, "GET", "/v1/models", timeout=3)
except Exception:  # refused, or reset before an answer
    refused = True
ok(refused, "after the drain, new connections are refused")
rc = None
try:
    rc = p.p.wait(15)
except subprocess.TimeoutExpired:
    pass
is_(rc, 0, "the module exits 0 once drained")
# the preStop hook's drain: GET on --drain-hook, no token (what the kubelet sends)
HOOK = "/hooks/drain-0f3a9c5e1d7b4a26"
p = h.spawn(envp + ["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
                    "--health-interval", "0", "--drain-delay", "0", "--drain-hook", HOOK,
                    "--backend", "a=%s,models=m1" % s1.addr],
            name="llamalb.wasm", want_admin=True, timeout=30)
d = request(p.admin, "GET", HOOK, timeout=10)
ok(d.status == 200 and d.body == b"draining\n", "GET --drain-hook without the token: draining")
rc = None
try:
    rc = p.p.wait(15)
except subprocess.TimeoutExpired:
    pass
is_(rc, 0, "the module exits 0 once drained by the hook")
done()
