#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Session affinity and uploaded files (README.md, "What it does": "Files stay
put"; docs/protocols.md): requests with the same session key (a header, or
the body's "user") stay on one backend while it is free, and go elsewhere
when it is busy; files live on the replica that stored them, so
/v1/files/{id}, its content and /v1/chunks follow the upload."""
import json
import uuid

from harness import chat, deadline, done, is_, lb, note, ok, request, sim
from llm import Background, served_by, wait_metric

deadline(90)
# One token by default (fast requests); a request asking for 200 tokens takes
# 2 s at 100 tokens/s, long enough to observe its backend busy.
sims = [sim("--id", "s%d" % i, "--ttft-ms", "20", "--completion-tokens", "1",
            "--tokens-per-sec", "100", name="m") for i in range(3)]
args = []
for i, s in enumerate(sims):
    args += ["--backend", "s%d=%s" % (i, s.addr)]

# -- header affinity
p = lb("--affinity", "X-Session-Id", *args)
for sess in ("alice", "bob", "carol", "dave"):
    who = [served_by(chat(p.addr, headers={"X-Session-Id": sess})) for _ in range(8)]
    is_(len(set(who)), 1, "session %s stays on one backend (%s)" % (sess, who[0]))
spread = set(served_by(chat(p.addr, headers={"X-Session-Id": "sess-%d" % i})) for i in range(30))
ok(len(spread) >= 2, "different sessions spread over backends (%s)" % sorted(spread))
home = served_by(chat(p.addr, headers={"X-Session-Id": "alice"}))
slow = Background(p.addr, headers={"X-Session-Id": "alice"},
                  extra={"max_completion_tokens": 200})
busy = wait_metric(p, "llamalb_backend_inflight", lambda v: v >= 1, backend=home)
ok(busy >= 1, "the session's backend is busy with a long request")
other = served_by(chat(p.addr, headers={"X-Session-Id": "alice"}))
ok(other != home, "while its backend is busy, the session is served elsewhere (%s)" % other)
slow.wait()
p.stop()

# -- the body's user field as the key
p = lb("--affinity", "user", *args)
who = [served_by(chat(p.addr, extra={"user": "user-42"})) for _ in range(8)]
is_(len(set(who)), 1, "the same user stays on one backend")
p.stop()

# -- files stay on the replica that stored them
p = lb(*args, "--policy", "wrr")
boundary = uuid.uuid4().hex
body = ("--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"notes.txt\"\r\n"
        "Content-Type: text/plain\r\n\r\nsome text to chunk\r\n--%s--\r\n" % (boundary, boundary))
up = request(p.addr, "POST", "/v1/files", body.encode(),
             headers={"Content-Type": "multipart/form-data; boundary=" + boundary})
is_(up.status, 200, "upload through the balancer")
fid = up.json()["id"]
owner = served_by(up)
note("file %s stored on %s" % (fid, owner))
for path in ("/v1/files/%s" % fid, "/v1/files/%s/content" % fid, "/v1/files/download/%s" % fid):
    rs = [request(p.addr, "GET", path) for _ in range(4)]
    ok(all(r.status == 200 for r in rs) and set(map(served_by, rs)) == {owner},
       "GET %s goes to the owner every time" % path.replace(fid, "{id}"))
rs = [request(p.addr, "POST", "/v1/chunks",
              json.dumps({"id": fid, "filename": "notes.txt", "chunk_capacity": 100}).encode(),
              headers={"Content-Type": "application/json"}) for _ in range(4)]
ok(all(r.status == 200 for r in rs) and set(map(served_by, rs)) == {owner},
   "POST /v1/chunks naming the file goes to the owner")
d = request(p.addr, "DELETE", "/v1/files/%s" % fid)
ok(d.status == 200 and served_by(d) == owner and d.json().get("deleted") is True,
   "DELETE goes to the owner")
done()
