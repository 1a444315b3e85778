#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""llamalb against nginx and HAProxy (measurements 1-7 of README.md, "Benchmarks").

Run by bench/run.sh (which builds the binaries, compiles bench/sse_load.c and
raises the fd limit); usage: bench/bench.py BUILD_DIR OUT_BASENAME [--quick] [--only 1,3,...]

Pinning: every proxy on CPU 0; the backends (llamalb-sim), the load generators
(wrk, sse_load) and this script on CPU 1. "direct" is the load generator talking
to the sim itself, on the same CPU 1. Each measurement is repeated REPS times
(targets interleaved) and the median printed; every figure is also a ratio
against a baseline from the same run. Every process is stopped by its PID."""
import json
import multiprocessing
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import http.client
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else os.path.join(HERE, "..", "build-bench")
OUT = sys.argv[2] if len(sys.argv) > 2 else None
QUICK = "--quick" in sys.argv
# --only 1,3,6: run just those measurements (no summary table); for work on one figure.
ONLY = set(sys.argv[sys.argv.index("--only") + 1].split(",")) if "--only" in sys.argv else None
os.environ["LLAMALB_BUILD"] = BUILD
sys.path.insert(0, HERE)
import llm_sched  # noqa: E402  (its helpers: start, stop, free_port, wait_port)

REPS = 1 if QUICK else 3
# Measurement 1 separates the proxies by a few percent, less than this
# machine's drift between minutes: five interleaved repetitions instead of 3.
REPS_M1 = 1 if QUICK else 5
D_RPS = 1 if QUICK else 5        # seconds per wrk run (measurement 1)
D_SHORT = 1 if QUICK else 3      # seconds per run (2, 4, 6)
HOLD = 500 if QUICK else 5000    # streams held open (3)
SCHED_S = 5 if QUICK else 60     # llm_sched seconds per load (5)
PROXY_CPU, LOAD_CPU = "0", "1"
SIM = os.path.join(BUILD, "llamalb-sim")
LB = os.path.join(BUILD, "llamalb")
SSE = os.path.join(BUILD, "sse_load")
TICK = os.sysconf("SC_CLK_TCK")
PEERS = ["llamalb", "nginx", "haproxy"]

PROCS = []
TMP = tempfile.mkdtemp(prefix="llamalb-bench-")
LOG = []
RESULTS = {}


def say(s=""):
    print(s)
    sys.stdout.flush()
    LOG.append(s)


# ----------------------------------------------------------------- processes

def track(p):
    PROCS.append(p)
    return p


def stop(p):
    """Stops one process we started, by its PID."""
    if p in PROCS:
        PROCS.remove(p)
    llm_sched.stop(p)


def stop_all():
    for p in list(PROCS):
        stop(p)


def sim(port=0, model="m1", tokens=8, tps=0, extra=()):
    argv = ["taskset", "-c", LOAD_CPU, SIM, "--listen", "127.0.0.1:%d" % port, "--model-name", model,
            "--slots", "100000", "--ttft-ms", "0", "--tokens-per-sec", str(tps),
            "--completion-tokens", str(tokens), "--seed", "7", "--log-level", "error"] + list(extra)
    p, addr, _ = llm_sched.start(argv)
    track(p)
    return p, addr


def proc_cpu(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def proc_rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wait_ok(addr, path="/echo", timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        try:
            with urllib.request.urlopen("http://%s%s" % (addr, path), timeout=1) as r:
                if r.status == 200:
                    return True
        except Exception:
            time.sleep(0.02)
    raise RuntimeError("%s did not answer 200" % addr)


def start_llamalb(backends, extra=()):
    """backends: list of "name=addr[,opts]". Returns (proc, addr, admin)."""
    argv = ["taskset", "-c", PROXY_CPU, LB, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
            "--workers", "1", "--health-interval", "0", "--default-max-inflight", "0",
            "--access-log", "off", "--log-level", "warn", "--max-idle-per-backend", "256",
            "--drain-delay", "0"]
    for b in backends:
        argv += ["--backend", b]
    p, addr, admin = llm_sched.start(argv + list(extra), want_admin=True)
    track(p)
    return p, addr, admin


def start_nginx(upstreams, name="nginx"):
    port = llm_sched.free_port()
    d = os.path.join(TMP, name)
    os.makedirs(os.path.join(d, "logs"), exist_ok=True)
    servers = "\n".join("        server %s;" % a for a in upstreams)
    conf = """daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile 20000;
error_log %(d)s/logs/error.log crit;
pid %(d)s/nginx.pid;
events { worker_connections 16384; }
http {
    access_log off;
    client_body_temp_path %(d)s/body;
    proxy_temp_path %(d)s/proxy;
    fastcgi_temp_path %(d)s/fcgi;
    uwsgi_temp_path %(d)s/uwsgi;
    scgi_temp_path %(d)s/scgi;
    upstream u {
%(servers)s
        keepalive 256;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:%(port)d;
        keepalive_requests 1000000;
        client_body_buffer_size 128k;
        client_max_body_size 32m;
        location / {
            proxy_pass http://u;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 300s;
        }
    }
}
""" % {"d": d, "servers": servers, "port": port}
    with open(os.path.join(d, "nginx.conf"), "w") as f:
        f.write(conf)
    p = track(subprocess.Popen(["taskset", "-c", PROXY_CPU, "nginx", "-p", d, "-c",
                                os.path.join(d, "nginx.conf")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    addr = "127.0.0.1:%d" % port
    llm_sched.wait_port(port)
    return p, addr


def haproxy_cfg(port, upstreams, route=False):
    servers = "\n".join("    server s%d %s" % (i, a) for i, a in enumerate(upstreams))
    g = "    nbthread 1\n    maxconn 8000\n"
    if route:
        g += "    tune.bufsize 131072\n"
    fe = ""
    be = "backend be\n    balance roundrobin\n%s\n" % servers
    if route:
        # Routing by the body's "model": HAProxy 2.6 can read it with json_query
        # once the whole body is buffered (bufsize raised for 100 KiB bodies).
        fe = ("    option http-buffer-request\n"
              "    http-request set-var(txn.model) req.body,json_query('$.model')\n"
              "    use_backend bm1 if { var(txn.model) -m str m1 }\n")
        be = "".join("backend bm%d\n    server s%d %s\n" % (i + 1, i, a) for i, a in enumerate(upstreams))
    return """global
%s
defaults
    mode http
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    timeout http-request 10s
    timeout http-keep-alive 30s
    option http-no-delay
    http-reuse always
frontend fe
    bind 127.0.0.1:%d
%s    default_backend %s
%s""" % (g, port, fe, "bm2" if route else "be", be)


def start_haproxy(upstreams, route=False):
    port = llm_sched.free_port()
    cfg = os.path.join(TMP, "haproxy-%d.cfg" % port)
    with open(cfg, "w") as f:
        f.write(haproxy_cfg(port, upstreams, route))
    p = track(subprocess.Popen(["taskset", "-c", PROXY_CPU, "haproxy", "-db", "-f", cfg],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    llm_sched.wait_port(port)
    return p, "127.0.0.1:%d" % port


def start_proxy(kind, upstreams, route=False):
    """A proxy in front of upstreams (a list of sim addresses). -> (proc, addr)."""
    if kind == "llamalb":
        if route:
            bs = ["b%d=%s,models=m%d" % (i, a, i + 1) for i, a in enumerate(upstreams)]
        else:
            bs = ["b%d=%s" % (i, a) for i, a in enumerate(upstreams)]
        p, addr, _ = start_llamalb(bs)
    elif kind == "nginx":
        p, addr = start_nginx(upstreams)
    else:
        p, addr = start_haproxy(upstreams, route)
    wait_ok(addr)
    return p, addr


def start_targets(s):
    """The backend <s> reached directly, and each peer proxying to it: {name: (proc or None, addr)}."""
    targets = {"direct": (None, s)}
    for k in PEERS:
        targets[k] = start_proxy(k, [s])
    return targets


def stop_targets(targets):
    for p, _ in targets.values():
        if p:
            stop(p)


# ----------------------------------------------------------------- load generators

def lua_script(bodies, headers=None):
    path = os.path.join(TMP, "post-%d.lua" % len(LOG))
    with open(path, "w") as f:
        f.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n')
        for k, v in (headers or {}).items():
            f.write('wrk.headers["%s"] = "%s"\n' % (k, v))
        if len(bodies) == 1:
            f.write("wrk.body = [==[%s]==]\n" % bodies[0])
        else:
            f.write("local bodies = {%s}\n" % ", ".join("[==[%s]==]" % b for b in bodies))
            f.write("local reqs = {}\nlocal n = 0\n"
                    "init = function(args) for i, b in ipairs(bodies) do "
                    "reqs[i] = wrk.format(nil, nil, nil, b) end end\n"
                    "request = function() n = n + 1 return reqs[(n % #reqs) + 1] end\n")
    return path


def lat_ms(s):
    m = re.match(r"([\d.]+)(us|ms|s)", s)
    v = float(m.group(1))
    return v / 1000 if m.group(2) == "us" else v if m.group(2) == "ms" else v * 1000


def cpu_ticks():
    """{cpu index: (busy, total)} jiffies from /proc/stat."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            m = re.match(r"cpu(\d+) (.*)", line)
            if m:
                v = [int(x) for x in m.group(2).split()]
                out[int(m.group(1))] = (sum(v) - v[3] - v[4], sum(v))
    return out


def busy_pct(t0, t1, cpu):
    b = t1[cpu][0] - t0[cpu][0]
    t = t1[cpu][1] - t0[cpu][1]
    return 100.0 * b / t if t else 0.0


def wrk(addr, script, secs, conns=64, path="/v1/chat/completions", pid=None):
    """Runs wrk on LOAD_CPU; returns rps, requests, p50/p99 ms, errors, proxy CPU s,
    and how busy each CPU was (the load side's CPU at 100 % caps every target)."""
    c0 = proc_cpu(pid) if pid else 0
    k0 = cpu_ticks()
    out = subprocess.run(["taskset", "-c", LOAD_CPU, "wrk", "-t1", "-c%d" % conns, "-d%ds" % secs,
                          "--latency", "-s", script, "http://%s%s" % (addr, path)],
                         capture_output=True, text=True, timeout=secs + 30).stdout
    c1 = proc_cpu(pid) if pid else 0
    k1 = cpu_ticks()
    r = {"rps": float(re.search(r"Requests/sec:\s*([\d.]+)", out).group(1)),
         "requests": int(re.search(r"(\d+) requests in", out).group(1)),
         "p50_ms": lat_ms(re.search(r"\s50%\s+(\S+)", out).group(1)),
         "p99_ms": lat_ms(re.search(r"\s99%\s+(\S+)", out).group(1)),
         "errors": 0, "cpu_s": c1 - c0}
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        r["errors"] += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        r["errors"] += sum(int(x) for x in m.groups())
    r["cpu_us_per_req"] = r["cpu_s"] / max(1, r["requests"]) * 1e6
    r["proxy_cpu_busy"] = busy_pct(k0, k1, int(PROXY_CPU))
    r["load_cpu_busy"] = busy_pct(k0, k1, int(LOAD_CPU))
    return r


def sse(addr, mode, conns, secs, body, pid=None, interval=0):
    c0 = proc_cpu(pid) if pid else 0
    out = subprocess.run(["taskset", "-c", LOAD_CPU, SSE, "-a", addr, "-m", mode, "-c", str(conns),
                          "-d", str(secs), "-b", body, "-i", str(interval)], capture_output=True, text=True,
                         timeout=secs + 60).stdout
    c1 = proc_cpu(pid) if pid else 0
    r = json.loads(out.strip().splitlines()[-1])
    r["cpu_s_proxy"] = c1 - c0
    r["events_per_s"] = r["events"] / r["seconds"]
    r["cpu_us_per_event"] = r["cpu_s_proxy"] / max(1, r["events"]) * 1e6
    return r


def med(runs, key):
    return statistics.median(r[key] for r in runs)


def body_of(size, model="m1", stream=False):
    """A chat request of about `size` bytes with "model" last (the worst case for a scan)."""
    head = '{"messages":[{"role":"user","content":"'
    tail = '"}],%s"model":"%s"}' % ('"stream":true,' if stream else "", model)
    pad = max(5, size - len(head) - len(tail))
    return head + ("Hello " * (pad // 6 + 1))[:pad] + tail


SMALL = '{"model":"m1","messages":[{"role":"user","content":"Hello"}]}'
STREAM = '{"model":"m1","stream":true,"messages":[{"role":"user","content":"Hello"}]}'
LONG = '{"model":"m1","stream":true,"max_completion_tokens":100000,"messages":[{"role":"user","content":"Hello"}]}'
PROBE = '{"model":"m1","stream":true,"max_completion_tokens":1,"messages":[{"role":"user","content":"Hello"}]}'


def fmt(v, nd=1):
    if v is None:
        return "-"
    if isinstance(v, float) and (v != v):
        return "-"
    if abs(v) >= 1000:
        return "{:,.0f}".format(v).replace(",", " ")
    return ("%." + str(nd) + "f") % v


def table(title, header, rows):
    say("")
    say(title)
    w = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda r: "  ".join(str(x).rjust(w[i]) if i else str(x).ljust(w[i]) for i, x in enumerate(r))
    say(line(header))
    for r in rows:
        say(line(r))


# ----------------------------------------------------------------- measurements

def m1_small():
    """1. Small non-streaming chat completion, wrk -t1 -c64."""
    _, s = sim(tokens=8)
    script = lua_script([SMALL])
    targets = start_targets(s)
    runs = {k: [] for k in targets}
    for k, (p, a) in targets.items():
        wrk(a, script, 1)  # warm-up
    for _ in range(REPS_M1):
        for k, (p, a) in targets.items():
            runs[k].append(wrk(a, script, D_RPS, pid=p.pid if p else None))
    res = {k: {x: med(v, x) for x in ("rps", "cpu_us_per_req", "p50_ms", "p99_ms", "errors", "proxy_cpu_busy",
                                       "load_cpu_busy")}
           for k, v in runs.items()}
    d = res["direct"]["rps"]
    rows = []
    for k, r in res.items():
        # What one proxy core could carry at this CPU cost per request.
        r["per_core_rps"] = 1e6 / r["cpu_us_per_req"] if k != "direct" and r["cpu_us_per_req"] else 0
        rows.append([k, fmt(r["rps"]), "%.2f" % (r["rps"] / d),
                     fmt(r["cpu_us_per_req"]) if k != "direct" else "-",
                     fmt(r["per_core_rps"]) if k != "direct" else "-",
                     "%.0f" % r["proxy_cpu_busy"] if k != "direct" else "-", "%.0f" % r["load_cpu_busy"],
                     "%.3f" % r["p50_ms"], "%.3f" % r["p99_ms"], "%d" % r["errors"]])
    table("1. small POST /v1/chat/completions (8 tokens), wrk -t1 -c64 -d%ds, median of %d" % (D_RPS, REPS_M1),
          ["target", "req/s", "x direct", "proxy CPU us/req", "req/s per proxy core", "CPU %s %%" % PROXY_CPU,
           "CPU %s %%" % LOAD_CPU, "p50 ms", "p99 ms", "errors"], rows)
    stop_targets(targets)
    RESULTS["1_small"] = {"runs": runs, "median": res}
    return res


def m8_keys():
    """8. What checking API keys costs: llamalb without keys against llamalb with a
    1,000-key file whose key for this load has request and token limits (so every
    request is looked up, compared, admitted, counted and answered with
    x-ratelimit-* headers), in the same interleaved rounds as measurement 1."""
    _, s = sim(tokens=8)
    keyfile = os.path.join(TMP, "keys")
    with open(keyfile, "w") as f:
        for i in range(999):
            f.write("sk-bench-%04d-%s name=k%d rpm=100000000\n" % (i, "x" * 24, i))
        f.write("sk-bench-load-0123456789abcdef name=load rpm=100000000 tpm=1000000000\n")
    plain = start_llamalb(["m1=%s" % s])
    keyed = start_llamalb(["m1=%s" % s], ["--api-key-file", keyfile])
    scripts = {"no keys": (plain, lua_script([SMALL])),
               "API keys": (keyed, lua_script([SMALL], {"Authorization":
                                                       "Bearer sk-bench-load-0123456789abcdef"}))}
    runs = {k: [] for k in scripts}
    for k, ((p, a, _), sc) in scripts.items():
        wrk(a, sc, 1)
    for _ in range(REPS_M1):
        for k, ((p, a, _), sc) in scripts.items():
            runs[k].append(wrk(a, sc, D_RPS, pid=p.pid))
    res = {k: {x: med(v, x) for x in ("rps", "cpu_us_per_req", "p99_ms", "errors")}
           for k, v in runs.items()}
    base = res["no keys"]["cpu_us_per_req"]
    rows = [[k, fmt(r["rps"]), fmt(r["cpu_us_per_req"]), "%.3f" % (r["cpu_us_per_req"] / base),
             "%.3f" % r["p99_ms"], "%d" % r["errors"]] for k, r in res.items()]
    table("8. API key checking (1,000 keys, limits on), wrk -t1 -c64 -d%ds, median of %d; target: "
          "CPU per request <= 1.02x without keys" % (D_RPS, REPS_M1),
          ["llamalb", "req/s", "proxy CPU us/req", "x no keys", "p99 ms", "errors"], rows)
    for (p, _, _) in (plain, keyed):
        stop(p)
    RESULTS["8_keys"] = {"runs": runs, "median": res}
    return res


def sse_bg(addr, conns, secs, body):
    """A background sse_load (loop mode) on LOAD_CPU; returns the Popen."""
    return track(subprocess.Popen(["taskset", "-c", LOAD_CPU, SSE, "-a", addr, "-m", "loop", "-c", str(conns),
                                   "-d", str(secs), "-b", body], stdout=subprocess.PIPE, text=True))


def sse_bg_done(g):
    out = g.communicate(timeout=120)[0]
    PROCS.remove(g)
    return json.loads(out.strip().splitlines()[-1])


def m2_stream():
    """2. Streams of 50 SSE events."""
    out = {}
    # a) light load: one stream at a time, back to back (paced probes would measure this
    #    VM's ~300 us wake-up of an idle core instead of the proxies), 50 events at once;
    # c) saturated: 256 streams back to back, events written as fast as the sim can.
    _, s = sim(tokens=50)
    targets = start_targets(s)
    runs = {k: [] for k in targets}
    sat = {k: [] for k in targets}
    for _ in range(REPS):
        for k, (p, a) in targets.items():
            runs[k].append(sse(a, "loop", 1, D_SHORT, STREAM, p.pid if p else None))
            sat[k].append(sse(a, "loop", 256, D_SHORT, STREAM, p.pid if p else None))
    out["light"] = {k: {"ttfb_p50_us": med(v, "ttfb_p50_us"), "ttfb_p99_us": med(v, "ttfb_p99_us")}
                    for k, v in runs.items()}
    out["light_runs"] = runs
    out["sat"] = {k: {"events_per_s": med(v, "events_per_s"), "cpu_us_per_event": med(v, "cpu_us_per_event"),
                      "gen_cpu_s": med(v, "cpu_s")} for k, v in sat.items()}
    out["sat_runs"] = sat
    stop_targets(targets)
    # b) 256 concurrent long streams at 50 events/s each (events arrive one at a time,
    # jitter spreads them): proxy CPU per event over D_SHORT s; then, with the same
    # background, a probe opening 1-token streams back to back: their time to first byte.
    _, s = sim(tokens=50, tps=50, extra=("--jitter", "50"))
    targets = start_targets(s)
    cpu = {k: [] for k in PEERS}
    probe = {k: [] for k in targets}
    for _ in range(REPS):
        for k, (p, a) in targets.items():
            if p:
                c0 = proc_cpu(p.pid)
                r = sse_bg_done(sse_bg(a, 256, D_SHORT, LONG))
                c1 = proc_cpu(p.pid)
                r["cpu_us_per_event"] = (c1 - c0) / max(1, r["events"]) * 1e6
                r["events_per_s"] = r["events"] / r["seconds"]
                cpu[k].append(r)
            g = sse_bg(a, 256, D_SHORT + 1.5, LONG)
            time.sleep(1.0)
            probe[k].append(sse(a, "loop", 1, D_SHORT, PROBE))
            sse_bg_done(g)
    out["c256"] = {k: {"ttfb_p50_us": med(probe[k], "ttfb_p50_us"), "ttfb_p99_us": med(probe[k], "ttfb_p99_us")}
                   for k in targets}
    for k in PEERS:
        out["c256"][k]["cpu_us_per_event"] = med(cpu[k], "cpu_us_per_event")
        out["c256"][k]["events_per_s"] = med(cpu[k], "events_per_s")
    out["c256_runs"] = {"cpu": cpu, "probe": probe}
    stop_targets(targets)
    L, C, S = out["light"], out["c256"], out["sat"]
    rows = []
    for k in ["direct"] + PEERS:
        rows.append([k, "%.0f" % L[k]["ttfb_p50_us"],
                     "+%.0f" % (L[k]["ttfb_p50_us"] - L["direct"]["ttfb_p50_us"]) if k != "direct" else "-",
                     "%.0f" % L[k]["ttfb_p99_us"],
                     "%.0f" % C[k]["ttfb_p50_us"],
                     "+%.0f" % (C[k]["ttfb_p50_us"] - C["direct"]["ttfb_p50_us"]) if k != "direct" else "-",
                     "%.0f" % C[k]["ttfb_p99_us"],
                     "%.1f" % C[k]["cpu_us_per_event"] if k != "direct" else "-",
                     fmt(S[k]["events_per_s"]), "%.2f" % (S[k]["events_per_s"] / S["direct"]["events_per_s"]),
                     "%.2f" % S[k]["cpu_us_per_event"] if k != "direct" else "-"])
    table("2. streams of 50 SSE events (median of %d). TTFB (us, p50 and p99) of streams opened one at a "
          "time back to back, alone and beside 256 live streams of 50 ev/s; proxy CPU per event arriving alone (those 256 "
          "streams); saturated: 256 streams back to back, events written at once" % REPS,
          ["target", "ttfb 1", "added", "p99", "ttfb +256", "added", "p99", "CPU us/ev", "sat ev/s", "x direct",
           "sat CPU us/ev"], rows)
    RESULTS["2_stream"] = out
    return out


def m3_memory():
    """3. RSS per held slow stream and per idle keep-alive connection."""
    _, s_slow = sim(tokens=100, tps=1)
    _, s_fast = sim(tokens=8)
    res = {k: {"stream": [], "idle": []} for k in PEERS}
    for _ in range(REPS):
        for k in PEERS:
            for what, s, mode, body in (("stream", s_slow, "hold", STREAM), ("idle", s_fast, "idle", SMALL)):
                p, a = start_proxy(k, [s])
                # a few requests first so every proxy has its steady-state pools
                sse(a, "loop", 4, 0.3, SMALL)
                time.sleep(0.2)
                r0 = proc_rss_kib(p.pid)
                g = subprocess.Popen(["taskset", "-c", LOAD_CPU, SSE, "-a", a, "-m", mode, "-c", str(HOLD),
                                      "-d", "120", "-b", body], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
                track(g)
                line = g.stdout.readline()
                held = int(line.split()[1]) if line.startswith("held") else 0
                time.sleep(1.0)
                r1 = proc_rss_kib(p.pid)
                g.stdin.close()
                g.wait(30)
                PROCS.remove(g)
                stop(p)
                res[k][what].append({"held": held, "rss0_kib": r0, "rss1_kib": r1,
                                     "kib_per_conn": (r1 - r0) / max(1, held)})
    med_ = {k: {w: statistics.median(x["kib_per_conn"] for x in res[k][w]) for w in ("stream", "idle")}
            for k in PEERS}
    held = {k: min(x["held"] for w in ("stream", "idle") for x in res[k][w]) for k in PEERS}
    rows = [[k, "%d" % held[k], "%.2f" % med_[k]["stream"], "%.2f" % med_[k]["idle"],
             "%d" % statistics.median(x["rss0_kib"] for x in res[k]["stream"])] for k in PEERS]
    table("3. memory: RSS delta per connection, %d held (median of %d; KiB)" % (HOLD, REPS),
          ["proxy", "held", "KiB/slow stream", "KiB/idle keep-alive", "RSS before KiB"], rows)
    RESULTS["3_memory"] = {"runs": res, "median": med_, "held": held}
    return med_, held


def m4_route():
    """4. Routing by model: 1 KiB and 100 KiB bodies, two backends serving m1 and m2."""
    # Both backends are the same sim (it answers any model), so the backend side is
    # exactly measurement 1's and the difference is the proxy's: body size + routing.
    _, s1 = sim(model="m1", tokens=8)
    out = {}
    targets = {"direct": (None, s1)}
    targets["llamalb"] = start_proxy("llamalb", [s1, s1], route=True)
    targets["haproxy"] = start_proxy("haproxy", [s1, s1], route=True)
    targets["nginx"] = start_proxy("nginx", [s1])
    # The baseline of the 1 KiB target: each proxy set up as in measurement 1
    # (one backend, no routing) with measurement 1's small body, in the same
    # interleaved rounds, so machine drift between measurements cancels out.
    small = lua_script([SMALL])
    plain = {k: start_proxy(k, [s1]) for k in PEERS}
    for size in (1024, 100 * 1024):
        script = lua_script([body_of(size, "m1"), body_of(size, "m2")])
        jobs = [(k, p, a, script) for k, (p, a) in targets.items()]
        if size == 1024:
            jobs += [(k + "_small", p, a, small) for k, (p, a) in plain.items()]
        runs = {j[0]: [] for j in jobs}
        for k, p, a, sc in jobs:
            wrk(a, sc, 1)
        for _ in range(REPS):
            for k, p, a, sc in jobs:
                runs[k].append(wrk(a, sc, D_SHORT, pid=p.pid if p else None))
        out[size] = {k: {x: med(v, x) for x in ("rps", "cpu_us_per_req", "p99_ms", "errors")}
                     for k, v in runs.items()}
        out["%d_runs" % size] = runs
    stop_targets(plain)
    stop_targets(targets)
    rows = []
    for size in (1024, 100 * 1024):
        d = out[size]["direct"]["rps"]
        for k in ("direct", "llamalb", "haproxy", "nginx"):
            r = out[size][k]
            rows.append(["%d KiB" % (size // 1024), k + (" (no routing)" if k == "nginx" else
                                                         " (json_query)" if k == "haproxy" else ""),
                         fmt(r["rps"]), "%.2f" % (r["rps"] / d),
                         "%.2f" % (r["rps"] / out[1024][k + "_small"]["rps"]) if k in PEERS else "-",
                         fmt(r["cpu_us_per_req"]) if k != "direct" else "-", "%.3f" % r["p99_ms"],
                         "%d" % r["errors"]])
    table("4. routing by \"model\" (last key of the body; requests alternate m1/m2) to two backends "
          "(llamalb models=m1 / models=m2; HAProxy json_query + use_backend; both backends are the one sim "
          "of measurement 1), wrk -c64 -d%ds, median of %d"
          % (D_SHORT, REPS),
          ["body", "target", "req/s", "x direct", "x small body", "CPU us/req", "p99 ms", "errors"], rows)
    say("   x small body: req/s over the same proxy set up as in measurement 1 (one backend, no routing, "
        "measurement 1's body), run in the same interleaved rounds: small body %s" %
        ", ".join("%s %s req/s" % (k, fmt(out[1024][k + "_small"]["rps"])) for k in PEERS))
    RESULTS["4_route"] = {str(k): v for k, v in out.items()}
    return out


def _sched_one(system, load, q):
    os.sched_setaffinity(0, set(range(os.cpu_count())))
    try:
        procs = []
        addrs = llm_sched.start_sims(procs)
        arr = llm_sched.arrivals_for(load, SCHED_S, 2026)
        tmp = tempfile.mkdtemp(prefix="sched-")
        try:
            q.put((system, llm_sched.measure(system, addrs, arr, tmp)))
        finally:
            for p in procs:
                llm_sched.stop(p)
            shutil.rmtree(tmp, ignore_errors=True)
    except Exception as e:  # reported as a row of errors
        q.put((system, {"n": 0, "errors": -1, "p50": float("nan"), "p99": float("nan"),
                        "ttft_p50": float("nan"), "ttft_p99": float("nan"), "exc": str(e)}))


def m5_sched():
    """5. bench/llm_sched.py's measurement, every system at once (each with its own 4 sims)."""
    systems = ["llamalb-least", "demo-random", "haproxy-leastconn", "nginx-least_conn", "nginx-random"]
    say("")
    say("5. LLM scheduling (bench/llm_sched.py: 4 single-slot sims of 150/150/100/75 ms, Poisson "
        "arrivals, %d s per load; the five systems run side by side, each with its own sims, "
        "unpinned)" % SCHED_S)
    out = {}
    for load in (0.6, 0.8):
        arr = llm_sched.arrivals_for(load, SCHED_S, 2026)
        q = multiprocessing.Queue()
        ps = [multiprocessing.Process(target=_sched_one, args=(s, load, q)) for s in systems]
        for p in ps:
            p.start()
        got = dict(q.get(timeout=SCHED_S * 3 + 120) for _ in ps)
        for p in ps:
            p.join(30)
        rows = {"ideal": llm_sched.ideal(arr)}
        for s in systems:
            rows[s] = got[s]
        saved = sys.stdout
        import io
        buf = io.StringIO()
        sys.stdout = buf
        try:
            llm_sched.print_table(load, len(arr), rows)
        finally:
            sys.stdout = saved
        for line in buf.getvalue().rstrip("\n").split("\n"):
            say(line)
        out[load] = rows
    RESULTS["5_sched"] = {str(k): v for k, v in out.items()}
    return out


def admin_req(admin, method, path, body, conn=None):
    h = conn or http.client.HTTPConnection(*admin.rsplit(":", 1), timeout=30)
    data = json.dumps(body).encode()
    h.request(method, path, body=data, headers={"Content-Type": "application/json"})
    r = h.getresponse()
    r.read()
    return r.status, h


def metric_sum(admin, name):
    """Sum of one metric family's samples from llamalb's /metrics."""
    with urllib.request.urlopen("http://%s/metrics" % admin, timeout=10) as r:
        text = r.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + " ") or line.startswith(name + "{"))


def m6_registry():
    """6. Pick cost with 10,000 backends; 100 full-state updates/s while serving."""
    _, s = sim(tokens=8)
    ip, port = s.rsplit(":", 1)
    script = lua_script([SMALL])
    out = {}
    res = {}
    for n in (2, 10000):
        p, a, admin = start_llamalb([], ["--backend-allow", "127.0.0.0/8"])
        h = None
        t0 = time.time()
        for i in range(n):
            st, h = admin_req(admin, "POST", "/api/register",
                              {"name": "b%d" % i, "weight": 1, "ip": ip, "port": int(port)}, h)
            assert st == 200, st
        reg_s = time.time() - t0
        wait_ok(a)
        wrk(a, script, 1)
        c0 = metric_sum(admin, "llamalb_upstream_connects_total")
        runs = [wrk(a, script, D_SHORT, pid=p.pid) for _ in range(REPS)]
        # Pools are per backend: spread over 10,000 backends, most requests
        # find no idle connection to their backend and open one.
        conns = metric_sum(admin, "llamalb_upstream_connects_total") - c0
        res[n] = {"rps": med(runs, "rps"), "cpu_us_per_req": med(runs, "cpu_us_per_req"),
                  "p99_ms": med(runs, "p99_ms"), "errors": sum(r["errors"] for r in runs),
                  "register_s": reg_s, "rss_kib": proc_rss_kib(p.pid),
                  "connects_per_req": conns / max(1, sum(r["requests"] for r in runs))}
        stop(p)
    out["pick"] = res
    # Updates: 100 PUT /api/services per second, each a full state of 100 services
    # whose weights change, while wrk runs.
    N_UP = 100
    upd = []
    for rep in range(REPS):
        for with_updates in (False, True):
            p, a, admin = start_llamalb([], ["--backend-allow", "127.0.0.0/8"])
            gen = [1]

            def state(g):
                return {"generation": g, "services": [
                    {"name": "b%d" % i, "weight": 1 + (i + g) % 4, "ip": ip, "port": int(port)}
                    for i in range(N_UP)]}
            st, h = admin_req(admin, "PUT", "/api/services", state(1))
            assert st == 200, st
            wait_ok(a)
            stats = {"ok": 0, "fail": 0, "lat": []}
            stop_ev = threading.Event()

            def updater():
                hh = None
                nxt = time.monotonic()
                while not stop_ev.is_set():
                    gen[0] += 1
                    t = time.monotonic()
                    try:
                        code, hh = admin_req(admin, "PUT", "/api/services", state(gen[0]), hh)
                        stats["ok" if code == 200 else "fail"] += 1
                    except Exception:
                        stats["fail"] += 1
                        hh = None
                    stats["lat"].append(time.monotonic() - t)
                    nxt += 1.0 / 100
                    time.sleep(max(0, nxt - time.monotonic()))
            th = threading.Thread(target=updater) if with_updates else None
            if th:
                th.start()
            r = wrk(a, script, D_SHORT, pid=p.pid)
            stop_ev.set()
            if th:
                th.join()
            r["updates"] = stats["ok"]
            r["update_failures"] = stats["fail"]
            r["update_p99_ms"] = (sorted(stats["lat"])[int(len(stats["lat"]) * 0.99)] * 1000
                                  if stats["lat"] else 0)
            r["with_updates"] = with_updates
            upd.append(r)
            stop(p)
    # How large a full state one PUT may carry (admin bodies are capped at 64 KiB).
    p, a, admin = start_llamalb([], ["--backend-allow", "127.0.0.0/8"])
    put_max = {}
    for n in (500, 1000, 2000, 10000):
        try:
            st, _ = admin_req(admin, "PUT", "/api/services", {"generation": n, "services": [
                {"name": "b%d" % i, "weight": 1, "ip": ip, "port": int(port)} for i in range(n)]})
        except Exception as e:
            st = str(e)[:40]
        put_max[n] = st
    stop(p)
    out["put_status_by_size"] = put_max
    base = [r for r in upd if not r["with_updates"]]
    withu = [r for r in upd if r["with_updates"]]
    out["updates"] = {"runs": upd, "base_rps": med(base, "rps"), "upd_rps": med(withu, "rps"),
                      "updates_per_s": statistics.median(r["updates"] / D_SHORT for r in withu),
                      "update_failures": sum(r["update_failures"] for r in withu),
                      "request_errors": sum(r["errors"] for r in withu),
                      "update_p99_ms": med(withu, "update_p99_ms")}
    u = out["updates"]
    rows = [["2 backends", fmt(res[2]["rps"]), "1.00", fmt(res[2]["cpu_us_per_req"]), "%.3f" % res[2]["p99_ms"],
             "%d" % res[2]["errors"], "%.3f" % res[2]["connects_per_req"], "%.1f s" % res[2]["register_s"],
             "%d" % res[2]["rss_kib"]],
            ["10 000 backends", fmt(res[10000]["rps"]), "%.2f" % (res[10000]["rps"] / res[2]["rps"]),
             fmt(res[10000]["cpu_us_per_req"]), "%.3f" % res[10000]["p99_ms"], "%d" % res[10000]["errors"],
             "%.3f" % res[10000]["connects_per_req"], "%.1f s" % res[10000]["register_s"],
             "%d" % res[10000]["rss_kib"]]]
    table("6. registry scale (llamalb, policy least, all backends -> one sim; wrk -c64 -d%ds, median of %d)"
          % (D_SHORT, REPS),
          ["registry", "req/s", "x 2 backends", "CPU us/req", "p99 ms", "errors", "new upstream conn/req",
           "register (POST each)", "RSS KiB"], rows)
    say("   full-state PUT /api/services of %d services at %.0f/s while serving: %s req/s = %.2f x without "
        "updates; %d failed requests, %d failed updates, update p99 %.1f ms"
        % (N_UP, u["updates_per_s"], fmt(u["upd_rps"]), u["upd_rps"] / u["base_rps"], u["request_errors"],
           u["update_failures"], u["update_p99_ms"]))
    say("   one PUT /api/services carrying N services (64 KiB admin body cap): %s"
        % ", ".join("%d -> %s" % (n, st) for n, st in put_max.items()))
    RESULTS["6_registry"] = out
    return out


def m7_footprint():
    """7. Stripped binary size, idle RSS, start to `listening on` and to the first 200."""
    _, s = sim(tokens=8)
    stripped = os.path.join(TMP, "llamalb.stripped")
    shutil.copy(LB, stripped)
    subprocess.run(["strip", stripped], check=True)
    size = {"llamalb": os.path.getsize(stripped),
            "nginx": os.path.getsize(shutil.which("nginx") or "/usr/sbin/nginx"),
            "haproxy": os.path.getsize(shutil.which("haproxy") or "/usr/sbin/haproxy")}
    res = {k: [] for k in PEERS}
    import socket
    for _ in range(REPS):
        for k in PEERS:
            port = llm_sched.free_port()
            t0 = time.monotonic()
            t_listen = None
            if k == "llamalb":
                p = track(subprocess.Popen(["taskset", "-c", PROXY_CPU, LB, "--listen", "127.0.0.1:%d" % port,
                                            "--admin-listen", "off", "--workers", "1",
                                            "--health-interval", "0", "--default-max-inflight", "0",
                                            "--access-log", "off", "--backend", "b0=" + s],
                                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True))
                while True:
                    line = p.stdout.readline()
                    if not line or line.startswith("listening on"):
                        break
                t_listen = time.monotonic() - t0
            elif k == "nginx":
                # re-use the config writer with a fixed port: write then start
                p, a = None, None
            if k != "llamalb":
                t0 = time.monotonic()
                if k == "nginx":
                    p, a = _nginx_at(port, [s])
                else:
                    p, a = _haproxy_at(port, [s])
            addr = ("127.0.0.1", port)
            while True:
                try:
                    c = socket.create_connection(addr, timeout=1)
                    c.sendall(b"GET /echo HTTP/1.1\r\nHost: b\r\n\r\n")
                    data = c.recv(100)
                    c.close()
                    if data.startswith(b"HTTP/1.1 200"):
                        break
                except OSError:
                    time.sleep(0.0005)
            t_first = time.monotonic() - t0
            time.sleep(0.2)
            res[k].append({"listen_ms": t_listen * 1000 if t_listen else None, "first200_ms": t_first * 1000,
                           "rss_kib": proc_rss_kib(p.pid)})
            stop(p)
    med_ = {k: {"listen_ms": statistics.median(r["listen_ms"] for r in res[k]) if k == "llamalb" else None,
                "first200_ms": statistics.median(r["first200_ms"] for r in res[k]),
                "rss_kib": statistics.median(r["rss_kib"] for r in res[k]),
                "size": size[k]} for k in PEERS}
    rows = [[k, "%d" % (med_[k]["size"] // 1024), "%.2f" % (med_[k]["size"] / size["llamalb"]),
             "%d" % med_[k]["rss_kib"], fmt(med_[k]["listen_ms"]), "%.1f" % med_[k]["first200_ms"]] for k in PEERS]
    table("7. footprint (median of %d; nginx and HAProxy binaries as Debian ships them, stripped)" % REPS,
          ["proxy", "stripped KiB", "x llamalb", "idle RSS KiB", "start->listening ms", "start->first 200 ms"],
          rows)
    RESULTS["7_footprint"] = {"runs": res, "median": med_}
    return med_


def _nginx_at(port, ups):
    # start_nginx picks its own port: patch free_port for this call.
    orig = llm_sched.free_port
    llm_sched.free_port = lambda: port
    try:
        return start_nginx(ups, name="nginx-%d" % port)
    finally:
        llm_sched.free_port = orig


def _haproxy_at(port, ups):
    orig = llm_sched.free_port
    llm_sched.free_port = lambda: port
    try:
        return start_haproxy(ups)
    finally:
        llm_sched.free_port = orig


# ----------------------------------------------------------------- summary

def machine():
    def sh(*a):
        try:
            r = subprocess.run(a, capture_output=True, text=True, timeout=10)
            return (r.stdout + r.stderr).strip().splitlines()[0]
        except Exception:
            return "?"
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = 0
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) // 1024
    return {"cpu": cpu, "cores": os.cpu_count(), "mem_mib": mem, "kernel": os.uname().release,
            "nginx": sh("nginx", "-v"), "haproxy": sh("haproxy", "-v"), "wrk": sh("wrk", "-v"),
            "llamalb": sh(LB, "--version"), "cc": sh("cc", "--version"),
            "commit": sh("git", "-C", os.path.join(HERE, ".."), "rev-parse", "--short", "HEAD"),
            "loadavg_at_start": open("/proc/loadavg").read().split()[:3]}


def summary(m1, m2, m3, m4, m5, m6, m7):
    rows = []

    def best(vals, lower):
        return min(vals) if lower else max(vals)

    def row(name, vals, lower, unit_fmt, target, goal_ratio, direct=None):
        peer = best([vals["nginx"], vals["haproxy"]], lower)
        ratio = vals["llamalb"] / peer if peer else float("nan")
        ok = ratio <= goal_ratio if lower else ratio >= goal_ratio
        rows.append([name, unit_fmt(vals["llamalb"]), unit_fmt(vals["nginx"]), unit_fmt(vals["haproxy"]),
                     unit_fmt(direct) if direct is not None else "-", "%.2f" % ratio, target,
                     "yes" if ok else "NO"])

    F = lambda v: fmt(v)
    F2 = lambda v: "%.2f" % v
    F3 = lambda v: "%.3f" % v
    # wrk and the backend share CPU 1; when it is saturated behind llamalb
    # while llamalb's own CPU is not, the load side caps the rate, not the proxy.
    capped = m1["llamalb"]["load_cpu_busy"] >= 97 and m1["llamalb"]["proxy_cpu_busy"] < 97
    row("1 small POST req/s", {k: m1[k]["rps"] for k in PEERS}, False, F,
        ">= 1.10" + (" (capped by CPU 1)" if capped else ""), 1.10, m1["direct"]["rps"])
    row("1 proxy CPU us/req", {k: m1[k]["cpu_us_per_req"] for k in PEERS}, True, F, "<= 0.90", 0.90)
    row("1 req/s per proxy core (1e6/CPU us)", {k: m1[k]["per_core_rps"] for k in PEERS}, False, F, "(info)", 0)
    row("1 p50 latency ms", {k: m1[k]["p50_ms"] for k in PEERS}, True, F3, "(info)", 99, m1["direct"]["p50_ms"])
    row("1 p99 latency ms", {k: m1[k]["p99_ms"] for k in PEERS}, True, F3, "<= 1.00", 1.0, m1["direct"]["p99_ms"])
    L, C, S = m2["light"], m2["c256"], m2["sat"]
    row("2 added TTFB, 1 stream (us)", {k: L[k]["ttfb_p50_us"] - L["direct"]["ttfb_p50_us"] for k in PEERS},
        True, F, "<= 1.00", 1.0)
    row("2 added TTFB, 256 streams (us)", {k: C[k]["ttfb_p50_us"] - C["direct"]["ttfb_p50_us"] for k in PEERS},
        True, F, "<= 1.00", 1.0)
    row("2 CPU us per SSE event (alone)", {k: C[k]["cpu_us_per_event"] for k in PEERS}, True, F2, "<= 1.00", 1.0)
    row("2 saturated events/s", {k: S[k]["events_per_s"] for k in PEERS}, False, F, "(info)", 0,
        S["direct"]["events_per_s"])
    med3, held = m3
    row("3 KiB per slow stream (%d held)" % min(held.values()), {k: med3[k]["stream"] for k in PEERS}, True, F2,
        "< HAProxy", 1e9)
    rows[-1][-1] = "yes" if med3["llamalb"]["stream"] < med3["haproxy"]["stream"] else "NO"
    row("3 KiB per idle keep-alive conn", {k: med3[k]["idle"] for k in PEERS}, True, F2, "< HAProxy", 1e9)
    rows[-1][-1] = "yes" if med3["llamalb"]["idle"] < med3["haproxy"]["idle"] else "NO"
    r1 = m4[1024]["llamalb"]["rps"] / m4[1024]["llamalb_small"]["rps"]
    rows.append(["4 model routing 1 KiB, x small body", F2(r1),
                 F2(m4[1024]["nginx"]["rps"] / m4[1024]["nginx_small"]["rps"]) + "*",
                 F2(m4[1024]["haproxy"]["rps"] / m4[1024]["haproxy_small"]["rps"]), "-", "-", ">= 0.90 (own)",
                 "yes" if r1 >= 0.9 else "NO"])
    rows.append(["4 model routing 100 KiB req/s", F(m4[102400]["llamalb"]["rps"]),
                 F(m4[102400]["nginx"]["rps"]) + "*", F(m4[102400]["haproxy"]["rps"]),
                 F(m4[102400]["direct"]["rps"]),
                 "%.2f" % (m4[102400]["llamalb"]["rps"] / m4[102400]["haproxy"]["rps"]), "(info)", "-"])
    s8 = m5[0.8]
    s6 = m5[0.6]
    hap8, hap6 = s8["haproxy-leastconn"], s6["haproxy-leastconn"]
    rp99 = s8["llamalb-least"]["p99"] / hap8["p99"]
    rp50 = s6["llamalb-least"]["p50"] / hap6["p50"]
    rows.append(["5 p99 e2e @80% (ms)", "%.0f" % (s8["llamalb-least"]["p99"] * 1000),
                 "%.0f" % (s8["nginx-least_conn"]["p99"] * 1000), "%.0f" % (hap8["p99"] * 1000),
                 "ideal %.0f" % (s8["ideal"]["p99"] * 1000), "%.2f" % rp99, "<= 1.02 x HAP",
                 "yes" if rp99 <= 1.02 else "NO"])
    rows.append(["5 p50 e2e @60% (ms)", "%.0f" % (s6["llamalb-least"]["p50"] * 1000),
                 "%.0f" % (s6["nginx-least_conn"]["p50"] * 1000), "%.0f" % (hap6["p50"] * 1000),
                 "ideal %.0f" % (s6["ideal"]["p50"] * 1000), "%.2f" % rp50, "<= 0.85 x HAP",
                 "yes" if rp50 <= 0.85 else "NO"])
    errs = sum(s8["llamalb-least"]["errors"] for _ in [0]) + s6["llamalb-least"]["errors"]
    rows.append(["5 llamalb errors", "%d" % errs, "-", "-", "-", "-", "0", "yes" if errs == 0 else "NO"])
    pk = m6["pick"]
    rows.append(["6 10 000 backends, x 2 backends", "%.2f" % (pk[10000]["rps"] / pk[2]["rps"]), "-", "-", "-",
                 "-", "(info)", "-"])
    u = m6["updates"]
    rows.append(["6 %.0f PUT/s while serving" % u["updates_per_s"], "%.2f x" % (u["upd_rps"] / u["base_rps"]),
                 "-", "-", "-", "-", "0 failed", "yes" if u["request_errors"] + u["update_failures"] == 0 else "NO"])
    row("7 stripped binary KiB", {k: m7[k]["size"] / 1024 for k in PEERS}, True, F, "(info)", 1e9)
    row("7 idle RSS KiB", {k: m7[k]["rss_kib"] for k in PEERS}, True, F, "(info)", 1e9)
    row("7 start -> first 200 ms", {k: m7[k]["first200_ms"] for k in PEERS}, True, F2, "(info)", 1e9)
    for r in rows:
        if r[6] == "(info)":
            r[7] = "-"
    table("Summary (medians; ratio = llamalb / the better of nginx and HAProxy; * nginx cannot route by body, "
          "it only proxies)", ["measurement", "llamalb", "nginx", "haproxy", "direct", "ratio", "target", "met"],
          rows)
    say("Measurement 1 req/s: CPU %s (wrk and the backend) was %.0f %% busy behind llamalb, %.0f %% behind nginx "
        "and %.0f %% behind HAProxy; the proxies' own CPU %s was %.0f / %.0f / %.0f %% busy. A saturated CPU %s "
        "caps every proxy's rate alike, and then CPU per request (and the req/s one proxy core could carry) is "
        "the figure that separates them."
        % (LOAD_CPU, m1["llamalb"]["load_cpu_busy"], m1["nginx"]["load_cpu_busy"], m1["haproxy"]["load_cpu_busy"],
           PROXY_CPU, m1["llamalb"]["proxy_cpu_busy"], m1["nginx"]["proxy_cpu_busy"],
           m1["haproxy"]["proxy_cpu_busy"], LOAD_CPU))
    RESULTS["summary"] = {"header": ["measurement", "llamalb", "nginx", "haproxy", "direct", "ratio", "target",
                                     "met"], "rows": rows}
    return rows


def main():
    os.sched_setaffinity(0, {int(LOAD_CPU)})
    for prog in (SIM, LB, SSE):
        if not os.access(prog, os.X_OK):
            sys.exit("missing %s (run bench/run.sh)" % prog)
    mach = machine()
    t_start = time.time()
    say("llamalb benchmark %s%s" % (time.strftime("%Y-%m-%d %H:%M:%S"), " (quick)" if QUICK else ""))
    say("machine: %s, %d cores, %d MiB, kernel %s" % (mach["cpu"], mach["cores"], mach["mem_mib"], mach["kernel"]))
    say("versions: %s | %s | %s | %s | commit %s" % (mach["llamalb"], mach["nginx"], mach["haproxy"], mach["wrk"],
                                                     mach["commit"]))
    say("pinning: proxies (llamalb, nginx, haproxy) on CPU %s; llamalb-sim backends, wrk, sse_load and this "
        "script on CPU %s; load average at start %s" % (PROXY_CPU, LOAD_CPU, " ".join(mach["loadavg_at_start"])))
    say("configs: llamalb --workers 1 --health-interval 0 --default-max-inflight 0 --access-log off "
        "--max-idle-per-backend 256; nginx worker_processes 1, master_process off, upstream keepalive 256, "
        "proxy_http_version 1.1, Connection \"\", proxy_buffering off, client_body_buffer_size 128k, "
        "access_log off; haproxy nbthread 1, http-reuse always, option http-no-delay, timeouts set "
        "(no logs); backends llamalb-sim --slots 100000 --ttft-ms 0")
    try:
        if ONLY:
            steps = {"1": m1_small, "2": m2_stream, "3": m3_memory, "4": m4_route,
                     "5": m5_sched, "6": m6_registry, "7": m7_footprint, "8": m8_keys}
            for k in sorted(ONLY):
                steps[k]()
            return
        m1 = m1_small()
        m2 = m2_stream()
        m3 = m3_memory()
        m4 = m4_route()
        m6 = m6_registry()
        m7 = m7_footprint()
        m8_keys()
        stop_all()
        m5 = m5_sched()
        summary(m1, m2, m3, m4, m5, m6, m7)
    finally:
        stop_all()
        shutil.rmtree(TMP, ignore_errors=True)
    say("")
    say("total %.0f s" % (time.time() - t_start))
    if OUT:
        with open(OUT + ".txt", "w") as f:
            f.write("\n".join(LOG) + "\n")
        with open(OUT + ".json", "w") as f:
            json.dump({"machine": mach, "quick": QUICK, "reps": REPS, "results": RESULTS}, f, indent=1,
                      default=str)
        say("written %s.txt and %s.json" % (OUT, OUT))


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(1))
    main()
