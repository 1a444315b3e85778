#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Admin API security (docs/hardening.md A-01..A-07): bearer token from a
file or the environment, never argv; 401/401/2xx; /api/* on the public port
404; GET on mutating endpoints 405 with no effect; Origin 403; non-JSON 415;
registration validation (metadata, loopback, own listeners, port, weight)
400 with the exact message; 64 KiB body cap 413; malformed JSON 400;
register twice 200; unknown unregister 404; non-loopback admin without a
token refuses to start."""
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403

deadline(40)

TOKEN = "s3cret-token-0123456789abcdef"
tf = tempfile.NamedTemporaryFile("w", delete=False, suffix=".token")
tf.write(TOKEN + "\n")
tf.close()
atexit.register(lambda: os.unlink(tf.name))

be = FakeBackend(name="b1")
p = lb("--backend", be.backend_arg(), "--admin-token-file", tf.name)


def adm(method, path, body=None, token=TOKEN, headers=None):
    h = {"Content-Type": "application/json"} if body is not None else {}
    h.update(headers or {})
    return admin_request(p, method, path, body, token=token, headers=h)


def names():
    return sorted(s["name"] for s in json.loads(adm("GET", "/api/services").body))


#
is_(adm("GET", "/api/services", token=None).status, 401, "A-01 no token: 401")
is_(adm("GET", "/api/services", token="wrong-token-0123456789abcdef").status, 401, "A-01 wrong token: 401")
is_(adm("GET", "/api/services", token=TOKEN[:-1]).status, 401, "A-01 token prefix: 401")
is_(adm("GET", "/api/services", headers={"Authorization": "Basic " + TOKEN}).status, 401,
    "A-01 token with the wrong scheme: 401")
r = adm("GET", "/api/services")
ok(r.status == 200 and isinstance(r.json(), list), "A-01 right token: 200, JSON array")
is_(adm("POST", "/api/register", {"name": "x", "ip": "10.1.2.3", "port": 80}, token=None).status, 401,
    "A-01 mutation without token: 401")
is_(names(), ["b1"], "A-01 the unauthorized mutation had no effect")
ok(adm("GET", "/metrics", token=None).status == 401, "A-01 /metrics needs the token too")
is_(adm("GET", "/healthz", token=None).status, 200, "/healthz open without token")

#
r = request(p.addr, "POST", "/api/register", {"name": "evil", "ip": "10.9.9.9", "port": 80},
            headers={"Authorization": "Bearer " + TOKEN})
is_(r.status, 404, "A-02 /api/register on the public port: 404")
for path in ["/api/services", "/api/unregister/b1", "/api/drain", "/api"]:
    is_(request(p.addr, "GET", path).status, 404, "A-02 public %s: 404" % path)
is_(names(), ["b1"], "A-02 nothing registered through the public port")
is_(be.nrequests, 0, "A-02 /api/* never forwarded to a backend")

#
r = adm("GET", "/api/register")
ok(r.status == 405 and r.header("allow"), "A-03 GET /api/register: 405 with Allow")
is_(adm("GET", "/api/unregister/b1").status, 405, "A-03 GET /api/unregister/b1: 405")
is_(adm("GET", "/api/drain").status, 405, "A-03 GET /api/drain: 405")
is_(names(), ["b1"], "A-03 no effect")
is_(adm("GET", "/readyz").status, 200, "A-03 GET /api/drain did not drain")

#
reg = {"name": "n1", "ip": "10.1.2.3", "port": 8080}
is_(adm("POST", "/api/register", reg, headers={"Origin": "http://evil"}).status, 403, "A-04 Origin: 403")
is_(adm("DELETE", "/api/unregister/b1", headers={"Origin": "null"}).status, 403, "A-04 Origin on DELETE: 403")
is_(adm("POST", "/api/register", json.dumps(reg).encode(), headers={"Content-Type": "text/plain"}).status,
    415, "A-04 text/plain: 415")
is_(adm("POST", "/api/register", json.dumps(reg).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"}).status, 415, "A-04 form: 415")
is_(names(), ["b1"], "A-04 no effect")
is_(adm("POST", "/api/register", reg, headers={"Content-Type": "application/json; charset=utf-8"}).status,
    200, "A-04 application/json; charset=utf-8 accepted")
is_(adm("DELETE", "/api/unregister/n1").status, 200, "A-04 cleanup")


#
def bad(body, msg, name):
    r = adm("POST", "/api/register", body)
    is_(r.status, 400, "A-05 %s: 400" % name)
    try:
        got = r.json()["error"]["message"]
    except Exception:  # noqa: BLE001
        got = r.body.decode(errors="replace")
    if msg is not None:
        is_(got, msg, "A-05 %s: message" % name)
    else:
        ok(len(got) > 0, "A-05 %s: message %r" % (name, got))


bad({"name": "m", "ip": "169.254.169.254", "port": 80}, "link-local and metadata addresses are not allowed",
    "metadata 169.254.169.254")
bad({"name": "m", "ip": "127.0.0.1", "port": 80},
    "loopback addresses are not allowed (see --backend-allow)", "loopback 127.0.0.1")
bad({"name": "m", "ip": "127.0.0.1", "port": int(p.admin.rsplit(":", 1)[1])},
    "the balancer's own listeners are not allowed", "own admin port")
bad({"name": "m", "ip": "0.0.0.0", "port": 80}, None, "unspecified 0.0.0.0")
# IPv6 spellings of the same places (audit: ::ffff:127.0.0.1 got through)
for ip6, what in [("::ffff:127.0.0.1", "loopback"), ("::ffff:169.254.169.254", "link-local"),
                  ("::127.0.0.1", "loopback"), ("64:ff9b::a9fe:a9fe", "link-local"),
                  ("::1", "loopback"), ("fe80::1", "link-local"), ("fd00:ec2::254", "metadata"),
                  ("fec0::1", "link-local"), ("::ffff:0.0.0.0", "unspecified")]:
    bad({"name": "m", "ip": ip6, "port": 80}, None, "%s (%s)" % (ip6, what))
bad({"name": "m", "ip": "file://x", "port": 80}, None, "file://x")
bad({"name": "m", "ip": "http://169.254.169.254", "port": 80}, None, "http://169.254.169.254")
bad({"name": "m", "ip": "10.1.2.3", "port": 0}, '"port" must be an integer from 1 to 65535', "port 0")
bad({"name": "m", "ip": "10.1.2.3", "port": 70000}, '"port" must be an integer from 1 to 65535', "port 70000")
bad({"name": "m", "ip": "10.1.2.3", "port": "80"}, '"port" must be an integer from 1 to 65535', "port as string")
bad({"name": "m", "ip": "10.1.2.3", "port": 80, "weight": -1},
    '"weight" must be an integer from 0 to 1000000', "weight -1")
bad({"name": "", "ip": "10.1.2.3", "port": 80}, None, "empty name")
bad({"ip": "10.1.2.3", "port": 80}, None, "no name")
is_(names(), ["b1"], "A-05 nothing registered")

#
r = adm("POST", "/api/register", b'{"name":"big","ip":"10.1.2.3","port":80,"pad":"' + b"x" * 70000 + b'"}')
is_(r.status, 413, "A-06 body over 64 KiB: 413")
for body in [b'{"name":"m",', b"not json", b'{"name":"m","ip":"10.1.2.3","port":80}x', b"[1,2"]:
    is_(adm("POST", "/api/register", body).status, 400, "A-06 malformed JSON %r: 400" % body[:20])
is_(names(), ["b1"], "A-06 no effect")

#
reg = {"name": "twice", "ip": "10.1.2.3", "port": 8080, "weight": 2}
r1 = adm("POST", "/api/register", reg)
reg["weight"] = 5
r2 = adm("POST", "/api/register", reg)
ok(r1.status == 200 and r2.status == 200, "A-07 register twice: 200 both")
svc = [s for s in json.loads(adm("GET", "/api/services").body) if s["name"] == "twice"]
ok(len(svc) == 1 and svc[0]["weight"] == 5, "A-07 second register updated, no duplicate")
r = adm("DELETE", "/api/unregister/nope")
ok(r.status == 404 and r.body == b"Service not found", "A-07 unregister unknown: 404 Service not found")
with open("/proc/%d/cmdline" % p.pid, "rb") as f:
    cmd = f.read()
ok(TOKEN.encode() not in cmd, "A-07 token not in /proc/PID/cmdline")
p.stop()

# token by environment
p = lb("--backend", be.backend_arg(), env={"LLAMALB_ADMIN_TOKEN": TOKEN})
is_(adm("GET", "/api/services", token=None).status, 401, "env token: no token 401")
is_(adm("GET", "/api/services").status, 200, "env token: right token 200")
with open("/proc/%d/cmdline" % p.pid, "rb") as f:
    ok(TOKEN.encode() not in f.read(), "env token not in /proc/PID/cmdline")
p.stop()

# fail closed
r = subprocess.run([LB, "--listen", "127.0.0.1:0", "--admin-listen", "0.0.0.0:0", "--workers", "1",
                    "--backend", be.backend_arg()], capture_output=True, timeout=5,
                   env={k: v for k, v in os.environ.items() if k != "LLAMALB_ADMIN_TOKEN"})
ok(r.returncode != 0, "A-07 non-loopback admin without token: refuses to start (exit %d)" % r.returncode)
like(r.stderr.decode(), r"token", "A-07 ... and says a token is required")
ok(b"admin listening" not in r.stdout, "A-07 ... and never listened")
short = tempfile.NamedTemporaryFile("w", delete=False)
short.write("short\n")
short.close()
r = subprocess.run([LB, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--workers", "1",
                    "--admin-token-file", short.name], capture_output=True, timeout=5)
os.unlink(short.name)
ok(r.returncode != 0, "token shorter than 16 characters refused (exit %d)" % r.returncode)

# own listeners refused even when loopback is allowed
p = lb("--backend", be.backend_arg(), "--backend-allow", "127.0.0.0/8", "--admin-token-file", tf.name)
for what, addr in [("admin", p.admin), ("public", p.addr)]:
    r = adm("POST", "/api/register", {"name": "loop-" + what, "ip": "127.0.0.1",
                                      "port": int(addr.rsplit(":", 1)[1])})
    is_((r.status, r.json()["error"]["message"] if r.status == 400 else r.body),
        (400, "the balancer's own listeners are not allowed"),
        "A-05 own %s listener refused despite --backend-allow" % what)
r = adm("POST", "/api/register", {"name": "okloop", "ip": "127.0.0.1", "port": be.port})
is_(r.status, 200, "--backend-allow 127.0.0.0/8: loopback backend accepted")
done()
