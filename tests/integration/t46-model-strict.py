#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Routing reads `model` as the backend will (docs/hardening.md, "Routing
fields in the body"): a duplicate top-level "model" (or "user" with
--affinity user, or "id" on /v1/chunks) is refused with 400, escaped names
are decoded before routing, a body that starts like a JSON object must be
one, and a name that cannot fit is refused rather than routed as "no
model". Each of these used to let a request be routed as one model (or
none) and served as another, past --unknown-model reject and per-model
caps. Bodies that are not JSON pass."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403

deadline(40)

a = FakeBackend(name="a")
b = FakeBackend(name="b")
p = lb("--backend", a.backend_arg(extra=",models=model-a"),
       "--backend", b.backend_arg(extra=",models=model-b"), "--unknown-model", "reject",
       "--affinity", "user")


def post(body, path="/v1/chat/completions", ctype="application/json"):
    return request(p.addr, "POST", path, body, headers={"Content-Type": ctype}, timeout=10)


def served_by(r):
    try:
        return r.json()["backend"]
    except Exception:  # noqa: BLE001
        return None


before = a.nrequests + b.nrequests
for name, body in [
        ("duplicate model", b'{"model":"model-a","model":"model-b","messages":[]}'),
        ("duplicate model, second escaped", b'{"model":"model-a","mod\\u0065l":"model-b"}'),
        ("duplicate model after a long prompt",
         b'{"model":"model-a","messages":[{"content":"' + b"x" * 200000 + b'"}],"model":"zzz"}'),
        ("duplicate user", b'{"model":"model-a","user":"u1","user":"u2"}'),
        ("two objects back to back", b'{"model":"model-a"} {"model":"model-b"}'),
        ("trailing garbage", b'{"model":"model-a"}x'),
        ("model over 127 bytes", b'{"model":"' + b"m" * 200 + b'"}')]:
    r = post(body)
    is_(r.status, 400, "%s: 400" % name)
    try:
        e = r.json()["error"]
        is_((e["type"], e["code"]), ("invalid_request_error", "invalid_request_body"),
            "%s: OpenAI error shape" % name)
    except Exception:  # noqa: BLE001
        ok(False, "%s: OpenAI error shape (%r)" % (name, r.body[:80]))
is_(a.nrequests + b.nrequests, before, "none of them reached a backend")

# escapes are decoded: "model-\u0062" is model-b, for routing as for the backend
r = post(b'{"model":"model-\\u0062","messages":[]}')
is_((r.status, served_by(r)), (200, "b"), "an escaped model name routes by its decoded value")
r = post(b'{"messages":[],"model":"model-a"}')
is_((r.status, served_by(r)), (200, "a"), "model after other members")
r = post(b'{"model":"nope\\u0021"}')
is_(r.status, 404, "an escaped unknown model is still unknown (--unknown-model reject)")
# nested "model" keys do not count as duplicates
r = post(b'{"model":"model-a","tools":[{"model":"x"}],"metadata":{"model":"y"}}')
is_((r.status, served_by(r)), (200, "a"), "nested model members are not duplicates")
# not JSON at all: passed through untouched (multipart uploads, form bodies)
r = post(b"--xyz\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nassistants\r\n--xyz--\r\n",
         path="/v1/files", ctype="multipart/form-data; boundary=xyz")
is_(r.status, 200, "a multipart body is not judged as JSON: served")
done()
