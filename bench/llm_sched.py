#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""LLM scheduling benchmark (measurement 5 of README.md, "Benchmarks").

Four single-slot llamalb-sim backends with service times of about 150, 150,
100 and 75 ms; open-loop Poisson arrivals at a fraction of their total
capacity, the same seeded arrival times for every system; streamed chat
requests. For each system: p50/p99 of end-to-end latency and of time to
first token (first SSE data event), and errors. Systems: llamalb least,
llamalb random (capped and queued), demo-random (llamalb random with no
caps: the original demo's balancer, requests waiting in hidden backend
queues), HAProxy leastconn with
maxconn 1 per server and its queue, nginx least_conn and random (optional),
and an ideal central-queue dispatcher simulated on the same arrivals (every
request goes, in arrival order, to the free server that finishes it first),
the limit no real dispatcher beats.

Replica systems (README.md, "Replicas"): llamalb-least-2r / -3r run 2 or 3
replicas, one active and the others started with --follow; the -indep ones
run as many replicas that each schedule alone (no --follow, the setup before
replicas scheduled as one). Clients spread their requests round-robin over
the replicas. --hop N measures what the forwarding hop adds to a small
request: N requests on a keep-alive connection to the active directly and N
through a follower, interleaved, in the same run.

Usage: bench/llm_sched.py [--seconds S] [--loads 0.6,0.8] [--systems ...] [--hop N]
                          [--json OUT]
Prints a table; ratios are against HAProxy and against one llamalb replica
in the same run."""
import argparse
import asyncio
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.environ.get("LLAMALB_BUILD") or os.path.join(HERE, "..", "build")

# (name, ttft ms, tokens/s, tokens): service time = ttft + tokens / rate.
BACKENDS = [("s150a", 30, 100, 12), ("s150b", 30, 100, 12),
            ("s100", 20, 150, 12), ("s75", 15, 200, 12)]


def service_s(b):
    return b[1] / 1000.0 + b[3] / b[2]


CAPACITY = sum(1.0 / service_s(b) for b in BACKENDS)  # requests per second


def start(argv, want_admin=False):
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    addr = admin = None
    end = time.time() + 10
    while time.time() < end and (addr is None or (want_admin and admin is None)):
        line = p.stdout.readline()
        if not line:
            break
        if line.startswith("admin listening on "):
            admin = line.split()[-1]
        elif line.startswith("listening on "):
            addr = line.split()[-1]
    if addr is None:
        p.kill()
        raise RuntimeError("no listening line from %s" % argv[0])
    return p, addr, admin


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout=10):
    import socket
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


# ----------------------------------------------------------------- client

BODY = json.dumps({"model": "llama-3-1b", "stream": True,
                   "messages": [{"role": "user", "content": "Hello there"}]}).encode()


async def one_request(host, port, t_sched, t0, out):
    """Sends one streamed chat request at t0 + t_sched; records latencies."""
    delay = t0 + t_sched - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)
    start_t = time.monotonic()
    try:
        r, w = await asyncio.open_connection(host, port)
        w.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: bench\r\n"
                b"Content-Type: application/json\r\nContent-Length: %d\r\n"
                b"Connection: close\r\n\r\n" % len(BODY) + BODY)
        await w.drain()
        buf = b""
        ttft = None
        status = None
        while True:
            chunk = await asyncio.wait_for(r.read(65536), 60)
            if not chunk:
                break
            buf += chunk
            if status is None and b"\r\n" in buf:
                status = int(buf.split(b" ", 2)[1])
            if ttft is None and b"data: {" in buf:
                ttft = time.monotonic() - start_t
            if b"data: [DONE]" in buf:
                break
        w.close()
        ok = status == 200 and b"data: [DONE]" in buf
        out.append((ok, time.monotonic() - start_t, ttft if ttft is not None else 0.0))
    except Exception:
        out.append((False, time.monotonic() - start_t, 0.0))


async def run_load(targets, arrivals):
    """<targets>: "HOST:PORT" strings, taken round-robin by arrival."""
    out = []
    t0 = time.monotonic() + 0.2
    hp = [(a.rsplit(":", 1)[0], int(a.rsplit(":", 1)[1])) for a in targets]
    await asyncio.gather(*(one_request(*hp[i % len(hp)], t, t0, out)
                           for i, t in enumerate(arrivals)))
    return out


def arrivals_for(load, seconds, seed):
    rng = random.Random(seed)
    rate = load * CAPACITY
    t, out = 0.0, []
    while True:
        t += rng.expovariate(rate)
        if t >= seconds:
            return out
        out.append(t)


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = min(len(xs) - 1, max(0, int(round(p / 100.0 * len(xs) + 0.5)) - 1))
    return xs[k]


def summarize(results):
    oks = [r for r in results if r[0]]
    lat = [r[1] for r in oks]
    tt = [r[2] for r in oks]
    return {"n": len(results), "errors": len(results) - len(oks),
            "p50": pct(lat, 50), "p99": pct(lat, 99), "ttft_p50": pct(tt, 50),
            "ttft_p99": pct(tt, 99)}


def ideal(arrivals):
    """Central FIFO queue; each request goes to the free server that would
    finish it first (service times as configured). Latency excludes network."""
    free_at = [0.0] * len(BACKENDS)
    lat = []
    tt = []
    for a in arrivals:
        best = None
        for i, b in enumerate(BACKENDS):
            start_t = max(a, free_at[i])
            fin = start_t + service_s(b)
            if best is None or fin < best[0]:
                best = (fin, i, start_t)
        fin, i, start_t = best
        free_at[i] = fin
        lat.append(fin - a)
        tt.append(start_t - a + BACKENDS[i][1] / 1000.0)
    return {"n": len(arrivals), "errors": 0, "p50": pct(lat, 50), "p99": pct(lat, 99),
            "ttft_p50": pct(tt, 50), "ttft_p99": pct(tt, 99)}


# ----------------------------------------------------------------- systems

def start_sims(procs):
    addrs = []
    for name, ttft, tps, n in BACKENDS:
        p, a, _ = start([os.path.join(BUILD, "llamalb-sim"), "--listen", "127.0.0.1:0",
                         "--model-name", name, "--ttft-ms", str(ttft), "--tokens-per-sec",
                         str(tps), "--completion-tokens", str(n), "--seed", "7",
                         "--log-level", "error"])
        procs.append(p)
        addrs.append(a)
    return addrs


def llamalb_argv(*extra):
    """One worker, no access log, no probes, no drain delay: what every
    llamalb of this benchmark shares."""
    return [os.path.join(BUILD, "llamalb"), "--listen", "127.0.0.1:0", "--admin-listen",
            "127.0.0.1:0", "--workers", "1", "--access-log", "off", "--health-interval", "0",
            "--log-level", "warn", "--drain-delay", "0"] + list(extra)


def start_llamalb(policy, addrs, procs, cap=1, follow=None):
    argv = llamalb_argv("--policy", policy, "--queue-timeout", "60s")
    for (name, _, _, _), a in zip(BACKENDS, addrs):
        argv += ["--backend", "%s=%s,weight=1,max-inflight=%d" % (name, a, cap)]
    if follow:
        argv += ["--follow", follow]
    p, a, _ = start(argv, want_admin=True)
    procs.append(p)
    return a


def start_replicas(n, follow, addrs, procs):
    """n llamalb-least replicas: the first active, the others following it
    (<follow>) or each scheduling alone."""
    first = start_llamalb("least", addrs, procs)
    return [first] + [start_llamalb("least", addrs, procs, follow=first if follow else None)
                      for _ in range(n - 1)]


def start_haproxy(addrs, procs, tmp):
    port = free_port()
    cfg = os.path.join(tmp, "haproxy.cfg")
    servers = "\n".join("    server %s %s maxconn 1" % (b[0], a) for b, a in zip(BACKENDS, addrs))
    with open(cfg, "w") as f:
        f.write("""global
    nbthread 1
defaults
    mode http
    timeout connect 5s
    timeout client 120s
    timeout server 120s
    timeout queue 60s
    option http-no-delay
frontend fe
    bind 127.0.0.1:%d
    default_backend be
backend be
    balance leastconn
%s
""" % (port, servers))
    p = subprocess.Popen(["haproxy", "-db", "-f", cfg], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    procs.append(p)
    if not wait_port(port):
        raise RuntimeError("haproxy did not start")
    return "127.0.0.1:%d" % port


def start_nginx(method, addrs, procs, tmp):
    port = free_port()
    d = os.path.join(tmp, "nginx-" + method.replace(" ", "_"))
    os.makedirs(os.path.join(d, "logs"), exist_ok=True)
    servers = "\n".join("        server %s;" % a for a in addrs)
    with open(os.path.join(d, "nginx.conf"), "w") as f:
        f.write("""daemon off; master_process off; worker_processes 1;
error_log stderr crit; pid %s/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    upstream u {
        %s;
%s
        keepalive 64;
    }
    server {
        listen 127.0.0.1:%d;
        location / {
            proxy_pass http://u;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 120s;
        }
    }
}
""" % (d, method, servers, port))
    p = subprocess.Popen(["nginx", "-p", d, "-c", os.path.join(d, "nginx.conf")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs.append(p)
    if not wait_port(port):
        raise RuntimeError("nginx did not start")
    return "127.0.0.1:%d" % port


def served(addrs):
    """Requests each sim has served so far (GET /sim/stats)."""
    import urllib.request
    out = []
    for a in addrs:
        with urllib.request.urlopen("http://%s/sim/stats" % a, timeout=5) as r:
            out.append(json.loads(r.read()).get("requests", 0))
    return out


def measure(system, addrs, arrivals, tmp):
    procs = []
    try:
        targets = None
        replicas = re.fullmatch(r"llamalb-least-([23])r(-indep)?", system)
        if system == "llamalb-least":
            a = start_llamalb("least", addrs, procs)
        elif replicas:
            # llamalb-least-2r, -3r (one active, followers), -2r-indep, -3r-indep
            targets = start_replicas(int(replicas.group(1)), replicas.group(2) is None, addrs,
                                     procs)
        elif system == "llamalb-random":
            a = start_llamalb("random", addrs, procs)
        elif system == "demo-random":
            # The original demo's balancer: weighted random, no cap, no queue of
            # its own: requests wait in the backends' hidden queues.
            a = start_llamalb("random", addrs, procs, cap=0)
        elif system == "haproxy-leastconn":
            a = start_haproxy(addrs, procs, tmp)
        elif system == "nginx-least_conn":
            a = start_nginx("least_conn", addrs, procs, tmp)
        elif system == "nginx-random":
            a = start_nginx("random", addrs, procs, tmp)
        else:
            raise ValueError(system)
        targets = targets or [a]
        # Warm up: a few requests so llamalb has measured every backend once
        # (on every replica).
        asyncio.run(run_load(targets, [i * 0.2 for i in range(8 * len(targets))]))
        before = served(addrs)
        res = summarize(asyncio.run(run_load(targets, arrivals)))
        res["split"] = [b - a for a, b in zip(before, served(addrs))]
        return res
    finally:
        for p in procs:
            stop(p)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--loads", default="0.6,0.8")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--systems", default="llamalb-least,llamalb-random,demo-random,"
                                         "haproxy-leastconn,nginx-least_conn,nginx-random")
    ap.add_argument("--hop", type=int, default=0,
                    help="also measure the forwarding hop with N requests each way")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    systems = args.systems.split(",")
    procs = []
    tmp = tempfile.mkdtemp(prefix="llm-sched-")
    table = {}
    try:
        addrs = start_sims(procs)
        print("capacity %.1f req/s over 4 single-slot backends (service %s ms)" %
              (CAPACITY, "/".join("%d" % round(service_s(b) * 1000) for b in BACKENDS)))
        for load in [float(x) for x in args.loads.split(",")]:
            arr = arrivals_for(load, args.seconds, args.seed)
            table[load] = {"ideal": ideal(arr)}
            for s in systems:
                if s.startswith("haproxy") and shutil.which("haproxy") is None:
                    continue
                if s.startswith("nginx") and shutil.which("nginx") is None:
                    continue
                table[load][s] = measure(s, addrs, arr, tmp)
            print_table(load, len(arr), table[load])
        if args.hop:
            table["hop"] = hop_cost(args.hop, procs)
    finally:
        for p in procs:
            stop(p)
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({str(k): v for k, v in table.items()}, f, indent=1)


def hop_cost(n, procs):
    """What the forwarding hop adds: a small non-streamed chat request to an
    instant sim, on one keep-alive connection to the active and one to a
    follower of it, alternating, n each. Prints p50/p90/p99 of both and the
    difference; the client's own cost is the same on both sides."""
    import http.client
    sim, sa, _ = start([os.path.join(BUILD, "llamalb-sim"), "--listen", "127.0.0.1:0",
                        "--model-name", "m", "--slots", "4", "--completion-tokens", "4",
                        "--log-level", "error"])
    procs.append(sim)
    argv = llamalb_argv("--backend", "s=%s" % sa)
    act, aa, _ = start(argv, want_admin=True)
    procs.append(act)
    fol, fa, _ = start(argv + ["--follow", aa], want_admin=True)
    procs.append(fol)
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    conns = {k: http.client.HTTPConnection(*(a.rsplit(":", 1))) for k, a in
             (("direct", aa), ("follower", fa))}
    lat = {"direct": [], "follower": []}
    for i in range(n + 50):
        for k in (("direct", "follower") if i % 2 else ("follower", "direct")):
            t = time.perf_counter()
            conns[k].request("POST", "/v1/chat/completions", body,
                             {"Content-Type": "application/json"})
            r = conns[k].getresponse()
            r.read()
            if r.status != 200:
                raise RuntimeError("hop: %s answered %d" % (k, r.status))
            if i >= 50:  # the first 50 warm the pools
                lat[k].append(time.perf_counter() - t)
    res = {k: {"p50": pct(v, 50), "p90": pct(v, 90), "p99": pct(v, 99)} for k, v in lat.items()}
    print("\nforwarding hop: %d small requests each way, keep-alive, interleaved" % n)
    print("%-10s %9s %9s %9s" % ("path", "p50 ms", "p90 ms", "p99 ms"))
    for k in ("direct", "follower"):
        print("%-10s %9.3f %9.3f %9.3f" % (k, res[k]["p50"] * 1000, res[k]["p90"] * 1000,
                                           res[k]["p99"] * 1000))
    res["added_p50_ms"] = (res["follower"]["p50"] - res["direct"]["p50"]) * 1000
    print("hop adds %.3f ms at p50 (target < 0.2 ms)" % res["added_p50_ms"])
    for p in (fol, act, sim):
        stop(p)
    return res


def print_table(load, n, rows):
    base = rows.get("haproxy-leastconn")
    one = rows.get("llamalb-least")
    print("\nload %.0f%% (%d requests, same arrivals for every system)" % (load * 100, n))
    print("%-24s %6s %8s %8s %9s %9s %8s %8s %8s %8s  %s" % (
        "system", "errors", "p50 ms", "p99 ms", "ttft p50", "ttft p99", "p50/HAP", "p99/HAP",
        "p50/1r", "p99/1r", "served by " + "/".join(b[0] for b in BACKENDS)))
    for name, r in rows.items():
        rp50 = r["p50"] / base["p50"] if base else float("nan")
        rp99 = r["p99"] / base["p99"] if base else float("nan")
        op50 = r["p50"] / one["p50"] if one else float("nan")
        op99 = r["p99"] / one["p99"] if one else float("nan")
        print("%-24s %6d %8.1f %8.1f %9.1f %9.1f %8.2f %8.2f %8.2f %8.2f  %s" % (
            name, r["errors"], r["p50"] * 1000, r["p99"] * 1000, r["ttft_p50"] * 1000,
            r["ttft_p99"] * 1000, rp50, rp99, op50, op99,
            "/".join(str(x) for x in r.get("split", []))))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
