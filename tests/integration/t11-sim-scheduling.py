#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# llamalb-sim's generation model: time to first token and token rate,
# --slots with a FIFO wait, the real server's "nothing else is answered while
# a non-streaming generation runs" (docs/sim.md, "Scheduling: slots, queueing,
# blocking") and its off switch, waiting streams that get their headers at
# once, seeded determinism.
import json
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import chat, connect, deadline, done, is_, note, ok, request, sim, sse_events

deadline(90)


def timed(fn, *a, **kw):
    t = time.time()
    r = fn(*a, **kw)
    return r, time.time() - t


def background(fn, *a, **kw):
    box = {}
    def run():
        t = time.time()
        box["r"] = fn(*a, **kw)
        box["t"] = time.time() - t
    th = threading.Thread(target=run)
    th.start()
    box["thread"] = th
    return box


def stream_timeline(addr, n, extra=None, headers=None):
    """Sends a streaming chat; returns (time of head, [time of each event]) from send."""
    body = {"messages": [{"role": "user", "content": "hi"}], "stream": True,
            "max_completion_tokens": n}
    if extra:
        body.update(extra)
    b = json.dumps(body).encode()
    s = connect(addr, timeout=10)
    t0 = time.time()
    h = "".join("%s: %s\r\n" % kv for kv in (headers or {}).items())
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\n%sContent-Length: %d\r\n\r\n%s"
              % (h.encode(), len(b), b))
    buf, head_t, evs = b"", None, []
    while True:
        c = s.recv(65536)
        if not c:
            break
        now = time.time() - t0
        buf += c
        if head_t is None and b"\r\n\r\n" in buf:
            head_t = now
        evs += [now] * (buf.count(b"data: ") - len(evs))
        if buf.endswith(b"0\r\n\r\n"):
            break
    s.close()
    return head_t, evs, buf


# ---- ttft and tokens/s
s = sim("--ttft-ms", "200", "--tokens-per-sec", "20", name="rate")
head_t, evs, _ = stream_timeline(s.addr, 5)
note("head %.3f events %s" % (head_t, ["%.3f" % e for e in evs]))
ok(head_t < 0.15, "stream head at once")
is_(len(evs), 6, "5 tokens + [DONE]")
ok(0.18 <= evs[0] <= 0.40, "first token after ~200 ms (ttft)")
ok(0.18 <= evs[4] - evs[0] <= 0.45,
   "4 more tokens at 20/s take ~200 ms")
r, t = timed(chat, s.addr, extra={"max_completion_tokens": 5})
ok(0.38 <= t <= 0.8, "non-streaming: ttft + 4 intervals (~400 ms), got %.3f" % t)
s.stop()

# ---- blocking: with one slot a non-streaming generation freezes the server
s = sim("--ttft-ms", "600", name="block")
bg = background(chat, s.addr, extra={"max_completion_tokens": 1})
time.sleep(0.1)
r, t = timed(request, s.addr, "GET", "/echo")
bg["thread"].join()
is_(r.body, b"echo test", "echo answered after the generation")
ok(t >= 0.35, "/echo waited for the running generation (%.3f s)" % t)
bg = background(chat, s.addr, extra={"max_completion_tokens": 1})
time.sleep(0.1)
r, t = timed(request, s.addr, "GET", "/v1/models")
bg["thread"].join()
ok(t >= 0.35, "/v1/models waited too (%.3f s)" % t)
s.stop()

s = sim("--ttft-ms", "600", "--no-block-during-generation", name="noblock")
bg = background(chat, s.addr, extra={"max_completion_tokens": 1})
time.sleep(0.1)
r, t = timed(request, s.addr, "GET", "/echo")
ok(t < 0.3, "--no-block-during-generation: /echo at once (%.3f s)" % t)
st = request(s.addr, "GET", "/sim/stats").json()
is_((st["active"], st["frozen"]), (1, False), "stats: one active, not frozen")
# a second non-streaming request queues behind the first (one slot)
bg2 = background(chat, s.addr, extra={"max_completion_tokens": 1})
time.sleep(0.05)
st = request(s.addr, "GET", "/sim/stats").json()
is_((st["active"], st["queued"]), (1, 1), "stats: second request queued")
bg["thread"].join()
bg2["thread"].join()
ok(bg2["t"] >= 0.9, "queued request waited for the slot (%.3f s)" % bg2["t"])
s.stop()

# ---- slots: two run together, the third waits
s = sim("--ttft-ms", "300", "--slots", "2", name="slots")
t0 = time.time()
boxes = [background(chat, s.addr, extra={"max_completion_tokens": 1}) for _ in range(3)]
for b in boxes:
    b["thread"].join()
ts = sorted(b["t"] for b in boxes)
note("slot times %s" % ["%.3f" % x for x in ts])
ok(ts[1] < 0.5, "two generations in parallel with --slots 2")
ok(ts[2] >= 0.55, "the third waited for a slot")
ok(all(b["r"].status == 200 for b in boxes), "all answered")
s.stop()

# ---- streams: a second stream gets its head at once and waits for the slot
s = sim("--ttft-ms", "300", "--tokens-per-sec", "0", name="streams")
box = {}
def first():
    box["a"] = stream_timeline(s.addr, 2)
th = threading.Thread(target=first)
th.start()
time.sleep(0.05)
head_t, evs, _ = stream_timeline(s.addr, 2)
th.join()
ok(head_t < 0.25, "waiting stream: 200 + SSE head at once (%.3f s)" % head_t)
ok(evs[0] >= 0.5, "its first event only after the first stream ended (%.3f s)" % evs[0])
s.stop()
# during a stream other requests are served (tokens are computed one by one)
s = sim("--ttft-ms", "700", "--tokens-per-sec", "0", name="streams2")
box = {}
th = threading.Thread(target=first)
th.start()
time.sleep(0.05)
r, t = timed(request, s.addr, "GET", "/echo")
th.join()
ok(t < 0.3, "/echo is served while a stream runs (%.3f s)" % t)
s.stop()

# ---- a client that goes away frees its slot
s = sim("--ttft-ms", "0", "--tokens-per-sec", "5", name="drop")
c = connect(s.addr)
b = json.dumps({"messages": [{"role": "user", "content": "x"}], "stream": True,
                "max_completion_tokens": 100}).encode()
c.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s" % (len(b), b))
c.recv(4096)
c.close()
time.sleep(0.1)
r, t = timed(chat, s.addr, stream=True, extra={"max_completion_tokens": 1})
ok(t < 0.3, "slot released when the streaming client disconnected (%.3f s)" % t)
s.stop()

# ---- seeded determinism: same seed, same ids and the same jittered timings
def ids(seed):
    p = sim("--seed", str(seed), name="seed%d" % seed)
    out = [chat(p.addr, extra={"max_completion_tokens": 1}).json()["id"] for _ in range(3)]
    out.append(request(p.addr, "POST", "/v1/completions", {"prompt": "x"}).json()["id"])
    p.stop()
    return out
a, b, c = ids(7), ids(7), ids(8)
is_(a, b, "same --seed: same ids")
ok(a != c, "different seed: different ids")
p = sim("--seed", "3", "--ttft-ms", "100", "--jitter", "50", name="jit")
tt = [timed(chat, p.addr, extra={"max_completion_tokens": 1})[1] for _ in range(6)]
note("jittered %s" % ["%.3f" % x for x in tt])
ok(all(0.04 <= x <= 0.3 for x in tt), "jitter stays within +-50%")
ok(max(tt) - min(tt) > 0.01, "jitter varies the delay")
p.stop()
done()
