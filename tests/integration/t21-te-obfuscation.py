#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Generated Transfer-Encoding obfuscations (defparam/smuggler shapes, 13
bytes x 10 placements = 130 cases), each sent with Content-Length: 5 and a
smuggled request behind a zero chunk (the CL.TE desync). Every case must be
either rejected (400/501, closed, upstream saw nothing) or forwarded as one
unambiguous request: Content-Length 5, body "0\r\n\r\n", no TE header line
and no control bytes in the head the backend receives."""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403

deadline(50)

be = FakeBackend(name="b1")
p = lb("--backend", be.backend_arg(), "--header-timeout", "2s", "--body-timeout", "2s")

BYTES = [0x01, 0x04, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x1f, 0x20, 0x7f, 0xa0, 0xff]
SHAPES = [
    b"Transfer-Encoding:%cchunked",
    b"Transfer-Encoding%c: chunked",
    b"%cTransfer-Encoding: chunked",
    b"X: X%cTransfer-Encoding: chunked",
    b"Transfer-Encoding: chunked%c",
    b"Transfer-Encoding: %cchunked",
    b"Transfer%cEncoding: chunked",
    b"Transfer-Encoding: chu%cnked",
    b"Transfer-Encoding:\r\n%cchunked",
    b"Transfer-Encoding\r\n%c: chunked",
]
SMUGGLED = b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
BAD_HEAD = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")

rejected = accepted = 0
for shape in SHAPES:
    for b in BYTES:
        hdr = shape.replace(b"%c", bytes([b]))
        name = "TE obfuscation %r" % hdr
        data = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nConnection: close\r\n" + hdr +
                b"\r\nContent-Length: 5\r\n\r\n" + SMUGGLED)
        n0 = len(be.requests)
        c0 = be.nconns
        s = connect(p.addr)
        s.sendall(data)
        out, closed = read_until_close(s, 3)
        s.close()
        r, _ = parse_response(out)
        if r is None:
            ok(False, name + ": got a response (got %r)" % out[:80])
            continue
        if r.status in (400, 501):
            rejected += 1
            ok(closed and be.nconns == c0 and len(be.requests) == n0,
               name + ": rejected %d, closed, upstream saw nothing" % r.status)
            continue
        accepted += 1
        time.sleep(0.05)
        new = be.requests[n0:]
        good = (r.status == 200 and len(new) == 1 and new[0].body == b"0\r\n\r\n" and
                new[0].header_all("content-length") == ["5"] and
                not any("transfer" in k.lower() for k, _ in new[0].headers) and
                not BAD_HEAD.search(new[0].raw[:-4].replace(b"\r\n", b"")))
        if not ok(good, name + ": forwarded as one unambiguous CL request"):
            note("  status %d, backend saw %r" % (r.status, [q.raw for q in new]))
note("%d rejected, %d forwarded" % (rejected, accepted))
ok(not any(q.target == "/smuggled" for q in be.requests), "no smuggled request ever reached the backend")
done()
