#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Seeds for fuzz_world (the script format is in fuzz_world.c): whole
exchanges, streams cut by either side, pipelining, timeouts, garbage.
Writes tests/fuzz/corpus/world/seed-*."""
import os

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "corpus", "world")
CLIENT, BACKEND, CREAD, BREAD, WAIT, CSHUT, CCLOSE, CRESET, BCLOSE, BRESET, NEWC = range(11)


def send(op, data):
    out = b""
    while data:
        part, data = data[:255], data[255:]
        out += bytes([op, len(part)]) + part
    return out


def wait(ms):
    return bytes([WAIT, ms])


BODY = b'{"model":"m","messages":[{"role":"user","content":"hi"}]}'
REQ = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
       b"Content-Length: %d\r\n\r\n" % len(BODY)) + BODY
SREQ_BODY = b'{"model":"m","stream":true,"messages":[]}'
SREQ = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n"
        % len(SREQ_BODY)) + SREQ_BODY
OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}"
SSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"


def chunk(b):
    return b"%x\r\n" % len(b) + b + b"\r\n"


EV = chunk(b'data: {"x":1}\n\n')
seeds = {
    "whole": send(CLIENT, REQ) + wait(5) + bytes([BREAD]) + send(BACKEND, OK) + wait(5) + bytes([CREAD]),
    "keepalive-twice": (send(CLIENT, REQ) + wait(5) + bytes([BREAD]) + send(BACKEND, OK) + wait(5) +
                        bytes([CREAD]) + send(CLIENT, REQ) + wait(5) + bytes([BREAD]) +
                        send(BACKEND, OK) + wait(5) + bytes([CREAD])),
    "pipelined": send(CLIENT, REQ + REQ) + wait(5) + bytes([BREAD]) + send(BACKEND, OK) + wait(5) +
                 bytes([BREAD]) + send(BACKEND, OK) + wait(10) + bytes([CREAD]),
    "stream-whole": send(CLIENT, SREQ) + wait(5) + bytes([BREAD]) + send(BACKEND, SSE_HEAD + EV) +
                    wait(5) + bytes([CREAD]) + send(BACKEND, EV + chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n") +
                    wait(5) + bytes([CREAD]),
    "stream-backend-dies": send(CLIENT, SREQ) + wait(5) + bytes([BREAD]) +
                           send(BACKEND, SSE_HEAD + EV + EV) + wait(5) + bytes([BRESET]) + wait(5) +
                           bytes([CREAD]),
    "stream-client-leaves": send(CLIENT, SREQ) + wait(5) + bytes([BREAD]) + send(BACKEND, SSE_HEAD + EV) +
                            wait(5) + bytes([CCLOSE]) + wait(10) + send(BACKEND, EV),
    "stream-stalls": send(CLIENT, SREQ) + wait(5) + bytes([BREAD]) + send(BACKEND, SSE_HEAD + EV) +
                     wait(63) + wait(63) + bytes([CREAD]),
    "head-timeout": send(CLIENT, REQ[:30]) + wait(63) + wait(63) + bytes([CREAD]),
    "body-stalls": send(CLIENT, REQ[:-10]) + wait(63) + wait(40) + bytes([CREAD]),
    "garbage-answer": send(CLIENT, REQ) + wait(5) + bytes([BREAD]) +
                      send(BACKEND, b"SSH-2.0-x\r\n\r\n") + wait(5) + bytes([CREAD]),
    "response-timeout": send(CLIENT, REQ) + wait(5) + bytes([BREAD]) + wait(63) + wait(63) + bytes([CREAD]),
    "half-close": send(CLIENT, REQ) + bytes([CSHUT]) + wait(5) + bytes([BREAD]) + send(BACKEND, OK) +
                  wait(5) + bytes([CREAD]),
    "chunked-request": send(CLIENT, b"POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\n"
                                    b"Transfer-Encoding: chunked\r\n\r\n" + chunk(BODY) + b"0\r\n\r\n") +
                       wait(5) + bytes([BREAD]) + send(BACKEND, OK) + wait(5) + bytes([CREAD]),
    "two-clients": send(CLIENT, REQ) + bytes([NEWC]) + send(CLIENT, REQ) + wait(5) + bytes([BREAD]) +
                   send(BACKEND, OK) + wait(10) + bytes([BREAD]) + send(BACKEND, OK) + wait(5) +
                   bytes([CREAD]),
    "upstream-closes-early": send(CLIENT, REQ) + wait(5) + bytes([BREAD, BCLOSE]) + wait(10) + bytes([CREAD]),
    "models-local": send(CLIENT, b"GET /v1/models HTTP/1.1\r\nHost: a\r\n\r\n") + wait(5) + bytes([CREAD]),
}
os.makedirs(OUT, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(OUT, "seed-" + name), "wb") as f:
        f.write(data)
print("%d seeds in %s" % (len(seeds), OUT))
