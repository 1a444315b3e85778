# SPDX-License-Identifier: MIT
"""The soak (make soak): llamalb with 2 workers in front of 6 llamalb-sim
instances of mixed speeds and slots, a client mix and a chaos driver for
SOAK_SECONDS, then proofs from the simulators' request logs (--request-log,
docs/sim.md) and the clients' own records:

  1. every request that got a complete answer reached a backend exactly
     once, and no request reached a backend twice except a documented retry
     before any byte (docs/hardening.md, "Retries"): a request that carried
     a retried fault (X-Sim-Fault status=503), or one in flight while a
     simulator was killed or a backend left the set;
  2. every stream is whole (the terminating chunk and [DONE]) or visibly
     cut (the connection closed without the terminating chunk), never
     silently short;
  3. open fds, pooled upstream connections and the gateway queue return to
     their start levels once the load stops, RSS to its warmed-up level
     (a text chart of the samples is printed);
  4. llamalb never crashed and exits 0 on SIGTERM.

Environment: SOAK_SECONDS (default 600), LLAMALB_BUILD (the build to
soak: build-soak, or build-soak-san for the ASan run), SOAK_SEED, SOAK_DIR
(the request logs and the samples are kept there), SOAK_RSS_CHECK=0 (the
ASan run: its quarantine holds freed memory, so RSS says nothing there). Output is TAP, like the
integration tests; processes are started and stopped by PID (harness.py)."""
import json
import os
import random
import signal
import socket
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from harness import (LB, SIM, admin_request, connect, done, is_, note, ok,  # noqa: E402
                     parse_response, refused_addr, spawn)

SECONDS = float(os.environ.get("SOAK_SECONDS", "600"))
SEED = int(os.environ.get("SOAK_SEED", str(int(time.time()))))
DIR = os.environ.get("SOAK_DIR") or tempfile.mkdtemp(prefix="llamalb-soak-")
os.makedirs(DIR, exist_ok=True)
MODEL = "soak-model"
KEEPALIVE_S = 2
UPSTREAM_IDLE_S = 2
rnd = random.Random(SEED)
note("soak: %.0f s, seed %d, logs in %s" % (SECONDS, SEED, DIR))

# ------------------------------------------------------------------ backends

# (slots, ttft ms, tokens per second): two fast single-slot servers, two
# slow ones, two with several slots.
SIM_SHAPES = [(1, 5, 2000), (1, 10, 1000), (1, 40, 200), (2, 20, 400), (4, 10, 800), (2, 60, 150)]
STATIC = [0, 1, 2]       # from the config file (SIGHUP reloads change them)
ADMIN = [3, 4, 5]        # from PUT /api/services and /api/register


class Sim:
    def __init__(self, i):
        self.i = i
        self.slots, self.ttft, self.tps = SIM_SHAPES[i]
        self.log = os.path.join(DIR, "sim%d.log" % i)
        self.port = 0
        self.proc = None
        self.start()

    def argv(self):
        return [SIM, "--listen", "127.0.0.1:%d" % self.port, "--model-name", MODEL,
                "--id", "s%d" % self.i, "--slots", str(self.slots), "--ttft-ms", str(self.ttft),
                "--tokens-per-sec", str(self.tps), "--jitter", "20",
                "--seed", str(SEED + self.i), "--request-log", self.log]

    def start(self):
        for _ in range(50):
            try:
                self.proc = spawn(self.argv(), name="sim%d" % self.i)
                break
            except RuntimeError:  # the port is not free yet (restart)
                time.sleep(0.1)
        else:
            raise RuntimeError("sim%d would not restart on port %d" % (self.i, self.port))
        self.port = int(self.proc.addr.rsplit(":", 1)[1])

    def spec(self, weight=1):
        return {"name": "s%d" % self.i, "ip": "127.0.0.1", "port": self.port,
                "weight": weight, "max_inflight": self.slots}


sims = [Sim(i) for i in range(6)]
conf = os.path.join(DIR, "llamalb.conf")


def write_conf(weights):
    with open(conf + ".tmp", "w") as f:
        for i in STATIC:
            s = sims[i]
            f.write("backend s%d=127.0.0.1:%d,weight=%d,max-inflight=%d\n" %
                    (i, s.port, weights[i], s.slots))
    os.rename(conf + ".tmp", conf)


write_conf({i: 1 for i in STATIC})
lb = spawn([LB, "-c", conf, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
            "--workers", "2", "--health-interval", "1s", "--drain-delay", "0",
            "--backend-allow", "127.0.0.0/8", "--keepalive-timeout", "%ds" % KEEPALIVE_S,
            "--upstream-idle-timeout", "%ds" % UPSTREAM_IDLE_S, "--stream-idle-timeout", "3s",
            "--send-timeout", "5s", "--slow-client-budget", "3s", "--queue-timeout", "15s",
            "--response-timeout", "20s", "--eject-time", "1s", "--eject-max-time", "4s",
            "--access-log", "off", "--log-level", "warn"],
           name="llamalb", want_admin=True)
generation = [1]


def put_services(include):
    generation[0] += 1
    body = {"generation": generation[0], "services": [sims[i].spec() for i in include]}
    return admin_request(lb, "PUT", "/api/services", body).status


is_(put_services(ADMIN), 200, "the admin-made backends pushed with PUT /api/services")

# ------------------------------------------------------------------ samples


def lb_socket_inodes():
    out = set()
    try:
        for fd in os.listdir("/proc/%d/fd" % lb.pid):
            try:
                t = os.readlink("/proc/%d/fd/%s" % (lb.pid, fd))
            except OSError:
                continue
            if t.startswith("socket:["):
                out.add(t[8:-1])
    except OSError:
        pass
    return out


def sample():
    """(rss KiB, open fds, upstream connections to the sims, queue length)."""
    rss = 0
    with open("/proc/%d/status" % lb.pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    fds = len(os.listdir("/proc/%d/fd" % lb.pid))
    inodes = lb_socket_inodes()
    ports = {s.port for s in sims}
    up = 0
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            p = line.split()
            rport = int(p[2].split(":")[1], 16)
            if p[3] == "01" and rport in ports and p[9] in inodes:
                up += 1
    queue = -1
    try:
        r = admin_request(lb, "GET", "/metrics", timeout=5)
        for line in r.body.decode().splitlines():
            if line.startswith("llamalb_queue_length "):
                queue = int(float(line.split()[1]))
    except Exception:  # noqa: BLE001
        pass
    return rss, fds, up, queue


samples = []           # (t, rss, fds, up, queue)
stop_all = threading.Event()
t_start = time.time()


def sampler():
    while not stop_all.is_set():
        try:
            samples.append((time.time() - t_start,) + sample())
        except (OSError, ValueError):
            pass
        stop_all.wait(1.0)


base = sample()
note("start: RSS %d KiB, %d fds, %d upstream connections, queue %d" % base)

# ------------------------------------------------------------------ clients

records = {}           # rid -> dict
rec_lock = threading.Lock()
seq = [0]
events = []            # (t, what): kills, removals, reloads (dup justification)


def new_rid(kind):
    with rec_lock:
        seq[0] += 1
        rid = "soak-%d-%d" % (SEED % 100000, seq[0])
        records[rid] = {"kind": kind, "t0": time.time(), "t1": None, "fault": None,
                        "status": None, "outcome": None}
    return rid


def chat_bytes(rid, stream=False, tokens=None, content="hi", close=False, fault=None):
    body = {"model": MODEL, "messages": [{"role": "user", "content": content}]}
    if stream:
        body["stream"] = True
    if tokens:
        body["max_tokens"] = tokens
    b = json.dumps(body).encode()
    h = ("POST /v1/chat/completions HTTP/1.1\r\nHost: soak\r\nContent-Type: application/json\r\n"
         "X-Request-Id: %s\r\nContent-Length: %d\r\n" % (rid, len(b)))
    if close:
        h += "Connection: close\r\n"
    if fault:
        h += "X-Sim-Fault: %s\r\n" % fault
        records[rid]["fault"] = fault
    return h.encode() + b"\r\n" + b


def classify(rid, buf, closed):
    """Records what the client got for one response read from <buf>."""
    r = records[rid]
    r["t1"] = time.time()
    resp, rest = parse_response(buf)
    if resp is None:
        i = buf.find(b"\r\n\r\n")
        if i < 0:
            r["outcome"] = "noresp" if not buf else "badhead"
            return None, b""
        # a head, then a body that ended early: must be a visible cut
        head = buf[:i].decode("latin-1")
        r["status"] = int(head.split(" ")[1])
        chunked = "chunked" in head.lower()
        r["outcome"] = "cut" if closed else "short-open"
        if chunked and b"\r\n0\r\n\r\n" in buf[i:]:
            r["outcome"] = "bad-terminated"
        return None, b""
    r["status"] = resp.status
    r["bytes"] = len(resp.body)
    if resp.status == 200 and r["kind"] in STREAM_KINDS:
        r["outcome"] = "whole" if b"data: [DONE]" in resp.body else "silently-short"
    else:
        r["outcome"] = "complete"
    return resp, rest


STREAM_KINDS = ("stream", "stream_fault")


def read_responses(s, rids, timeout=30):
    """Reads len(rids) responses from <s> in order; records each."""
    buf = b""
    end = time.time() + timeout
    i = 0
    closed = False
    while i < len(rids) and time.time() < end:
        resp, rest = parse_response(buf)
        complete = resp is not None and (resp.header("content-length") is not None or
                                         "chunked" in (resp.header("transfer-encoding") or ""))
        if complete:
            classify(rids[i], buf, False)
            buf = rest
            i += 1
            continue
        try:
            s.settimeout(max(0.05, end - time.time()))
            c = s.recv(65536)
        except socket.timeout:
            break
        except OSError:
            c = b""
        if not c:
            closed = True
            break
        buf += c
    for rid in rids[i:]:
        classify(rid, buf, closed)
        buf = b""
    return closed


def one_request(kind, payload_fn, close=False):
    rid = new_rid(kind)
    data = payload_fn(rid)
    try:
        s = connect(lb.addr, 10)
    except OSError:
        records[rid]["outcome"] = "connect-failed"
        return
    try:
        s.sendall(data)
        read_responses(s, [rid])
    except OSError:
        records[rid]["t1"] = time.time()
        records[rid]["outcome"] = records[rid]["outcome"] or "noresp"
    finally:
        s.close()


def c_small_keepalive():
    try:
        s = connect(lb.addr, 10)
    except OSError:
        return
    try:
        for _ in range(rnd.randint(2, 6)):
            rid = new_rid("small")
            s.sendall(chat_bytes(rid, tokens=rnd.randint(4, 24)))
            if read_responses(s, [rid]):
                break
            if records[rid]["outcome"] != "complete":
                break
            time.sleep(rnd.random() * 0.2)
    except OSError:
        pass
    finally:
        s.close()


def c_small_close():
    one_request("small", lambda rid: chat_bytes(rid, tokens=8, close=True))


def c_stream():
    one_request("stream", lambda rid: chat_bytes(rid, stream=True, tokens=rnd.randint(50, 300)))


def c_big_body():
    content = "x" * (1 << 20)
    one_request("big", lambda rid: chat_bytes(rid, tokens=4, content=content))


def c_pipelined():
    try:
        s = connect(lb.addr, 10)
    except OSError:
        return
    rids = [new_rid("pipelined") for _ in range(3)]
    try:
        s.sendall(b"".join(chat_bytes(r, tokens=6) for r in rids))
        read_responses(s, rids)
    except OSError:
        pass
    finally:
        s.close()


def c_stop_reading():
    """A stream the client stops reading, then gives up on."""
    rid = new_rid("stopped")
    try:
        s = connect(lb.addr, 10)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(chat_bytes(rid, stream=True, tokens=3000))
        time.sleep(rnd.uniform(1, 5))
        s.close()
    except OSError:
        pass
    records[rid]["t1"] = time.time()
    records[rid]["outcome"] = "abandoned"


def c_disconnect():
    """A stream the client leaves after its first bytes."""
    rid = new_rid("left")
    try:
        s = connect(lb.addr, 10)
        s.sendall(chat_bytes(rid, stream=True, tokens=400))
        s.settimeout(10)
        s.recv(4096)
        s.close()
    except OSError:
        pass
    records[rid]["t1"] = time.time()
    records[rid]["outcome"] = "abandoned"


def c_fault():
    f = rnd.choice(["status=503", "status=500", "close-after=3", "stall-after=2", "status=429"])
    stream = f.startswith(("close", "stall"))
    one_request("stream_fault" if stream else "fault",
                lambda rid: chat_bytes(rid, stream=stream, tokens=20, fault=f))


MIX = [(c_small_keepalive, 30), (c_small_close, 10), (c_stream, 20), (c_big_body, 4),
       (c_pipelined, 10), (c_stop_reading, 3), (c_disconnect, 8), (c_fault, 10)]
MIX_FNS = [f for f, w in MIX for _ in range(w)]


def client_loop():
    while not stop_all.is_set() and not stop_clients.is_set():
        rnd.choice(MIX_FNS)()


# ------------------------------------------------------------------ chaos

faults = {"kill": 0, "restart": 0, "put": 0, "register": 0, "unregister": 0, "sighup": 0,
          "drain": 0, "undrain": 0}
static_w = {i: 1 for i in STATIC}


def chaos_loop():
    ghost = refused_addr()
    drained = None
    while not stop_all.is_set() and not stop_clients.is_set():
        stop_clients.wait(rnd.uniform(0.5, 2.0))
        if stop_clients.is_set():
            break
        act = rnd.choice(["kill", "put", "churn", "sighup", "drain"])
        try:
            if act == "kill":
                s = rnd.choice(sims)
                events.append((time.time(), "kill s%d" % s.i))
                s.proc.stop(signal.SIGKILL, timeout=5)
                faults["kill"] += 1
                stop_clients.wait(rnd.uniform(0.5, 2.0))
                s.start()
                faults["restart"] += 1
                events.append((time.time(), "restart s%d" % s.i))
            elif act == "put":
                keep = [i for i in ADMIN if rnd.random() < 0.75] or [ADMIN[0]]
                events.append((time.time(), "put %s" % keep))
                put_services(keep)
                faults["put"] += 1
            elif act == "churn":
                body = {"name": "ghost", "ip": "127.0.0.1", "port": int(ghost.rsplit(":", 1)[1]),
                        "weight": 1}
                admin_request(lb, "POST", "/api/register", body)
                faults["register"] += 1
                stop_clients.wait(rnd.uniform(0.2, 1.0))
                events.append((time.time(), "unregister ghost"))
                admin_request(lb, "DELETE", "/api/unregister/ghost")
                faults["unregister"] += 1
            elif act == "sighup":
                i = rnd.choice(STATIC)
                static_w[i] = rnd.choice([1, 2, 3])
                write_conf(static_w)
                events.append((time.time(), "sighup"))
                os.kill(lb.pid, signal.SIGHUP)
                faults["sighup"] += 1
            elif act == "drain":
                if drained is None:
                    drained = rnd.choice(ADMIN)
                    admin_request(lb, "POST", "/api/register", sims[drained].spec(weight=0))
                    faults["drain"] += 1
                else:
                    admin_request(lb, "POST", "/api/register", sims[drained].spec(weight=1))
                    drained = None
                    faults["undrain"] += 1
                events.append((time.time(), "drain"))
        except Exception as e:  # noqa: BLE001
            note("chaos %s: %r" % (act, e))
    put_services(ADMIN)
    write_conf({i: 1 for i in STATIC})
    os.kill(lb.pid, signal.SIGHUP)


# ------------------------------------------------------------------ run

stop_clients = threading.Event()
threads = [threading.Thread(target=sampler, daemon=True)]
threads += [threading.Thread(target=client_loop, daemon=True) for _ in range(8)]
chaos = threading.Thread(target=chaos_loop, daemon=True)
for t in threads:
    t.start()
warm_rss = None
chaos.start()
end = t_start + SECONDS
while time.time() < end and lb.alive():
    time.sleep(0.5)
    if warm_rss is None and time.time() - t_start > min(30, SECONDS / 6) and samples:
        warm_rss = samples[-1][1]
stop_clients.set()
for t in threads[1:]:
    t.join(60)
chaos.join(60)
ok(lb.alive(), "llamalb ran through the soak")

# quiet: keep-alive and pooled connections time out, then the levels
time.sleep(KEEPALIVE_S + UPSTREAM_IDLE_S + 3)
stop_all.set()
threads[0].join(5)  # the sampler's own admin connection is closed now
# Health probes (every second, to each sim) open a socket for a moment, and
# one caught in flight made a single look read one fd too many. A leaked fd
# stays open in every look, so the level is the lowest of a few looks.
final = sample()
for _ in range(5):
    if final[1] <= base[1]:
        break
    time.sleep(0.2)
    final = min(final, sample(), key=lambda x: x[1])
samples.append((time.time() - t_start,) + final)
note("end: RSS %d KiB, %d fds, %d upstream connections, queue %d" % final)

# ------------------------------------------------------------------ proofs

seen = {}
for i in range(6):
    try:
        with open(sims[i].log) as f:
            for line in f:
                rid = line.split(" ", 1)[0]
                if rid.startswith("soak-"):
                    seen[rid] = seen.get(rid, 0) + 1
    except OSError:
        pass

outcomes = {}
for r in records.values():
    outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
note("requests: %d; outcomes: %s" % (len(records), json.dumps(outcomes, sort_keys=True)))
note("faults injected: %s, plus %d per-request sim faults" %
     (json.dumps(faults, sort_keys=True), sum(1 for r in records.values() if r["fault"])))


def justified(rid, r):
    """A second upstream attempt docs/hardening.md allows."""
    if r["fault"] in ("status=503", "status=429"):
        return True  # answered 503/429 before any byte: retried elsewhere
    t1 = r["t1"] or time.time()
    # in flight while a backend was killed: its connection closed before a
    # complete response head, so the request went to another backend
    return any(r["t0"] - 0.5 <= t <= t1 + 0.5 for t, what in events if what.startswith("kill"))


answered = [rid for rid, r in records.items()
            if r["outcome"] in ("complete", "whole") and r["status"] == 200]
lost = [rid for rid in answered if seen.get(rid, 0) == 0]
dups = [rid for rid, r in records.items() if seen.get(rid, 0) > 1]
bad_dups = [rid for rid in dups if not justified(rid, records[rid]) or seen[rid] > 4]
twice_answered = [rid for rid in answered if seen.get(rid, 0) > 1 and rid in bad_dups]
is_(len(lost), 0, "every 200 answer was served by a backend (lost: %s)" % lost[:5])
is_(len(bad_dups), 0, "no request reached a backend twice but for a documented retry "
    "(%d retried, unexplained: %s)" % (len(dups), [(d, seen[d], records[d]) for d in bad_dups[:3]]))
is_(len(twice_answered), 0, "every complete answer was served exactly once upstream")
short = [rid for rid, r in records.items()
         if r["outcome"] in ("silently-short", "bad-terminated", "short-open")]
is_(len(short), 0, "every stream whole or visibly cut, none silently short (%s)" %
    [(s, records[s]) for s in short[:3]])
noresp = [rid for rid, r in records.items() if r["outcome"] in ("noresp", "badhead")]
ok(len(noresp) <= len(records) // 500,
   "requests without any answer: %d (connections cut by a killed backend mid-head)" % len(noresp))
whole = outcomes.get("whole", 0)
ok(whole > 0 and len(answered) > 0, "%d answers, %d whole streams" % (len(answered), whole))

# levels
rss0, fds0, up0, q0 = base
rss1, fds1, up1, q1 = final
ok(fds1 <= fds0, "open fds back to the start level (%d -> %d)" % (fds0, fds1))
is_(up1, 0, "no upstream connection left once idle (%d)" % up1)
is_(q1, 0, "the gateway queue empty")
warm = warm_rss or rss0
if os.environ.get("SOAK_RSS_CHECK", "1") == "1":
    ok(rss1 <= warm * 1.25 + 8192,
       "RSS back to its warmed-up level: start %d KiB, warm %d KiB, end %d KiB" % (rss0, warm, rss1))
else:  # ASan keeps freed memory in its quarantine: the plain soak checks RSS
    note("RSS not compared (SOAK_RSS_CHECK=0): start %d KiB, warm %d KiB, end %d KiB" %
         (rss0, warm, rss1))


def chart():
    if not samples:
        return
    n = min(24, len(samples))
    step = max(1, len(samples) // n)
    pts = samples[::step]
    if pts[-1] is not samples[-1]:
        pts.append(samples[-1])
    hi = max(p[1] for p in pts) or 1
    note("   t(s)   RSS KiB  fds  up  queue")
    for t, rss, fds, up, q in pts:
        note("%7.1f %9d %4d %3d %5d  %s" % (t, rss, fds, up, q, "#" * int(40 * rss / hi)))


chart()
with open(os.path.join(DIR, "samples.json"), "w") as f:
    json.dump({"samples": samples, "records": len(records), "outcomes": outcomes,
               "faults": faults, "lost": len(lost), "dups": len(dups),
               "bad_dups": len(bad_dups)}, f)
code = lb.stop(signal.SIGTERM, timeout=30)
is_(code, 0, "llamalb exits 0 on SIGTERM after the soak")
done()
