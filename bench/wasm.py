#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The native balancer against llamalb.wasm under WasmEdge, interpreted and
AOT-compiled (docs/wasm.md): same pinning (balancer on CPU 0, simulators,
wrk and this script on CPU 1), same backends, same run, targets interleaved.

    python3 bench/wasm.py BUILD_DIR [--quick]      (make wasm wasm-aot first)

Measures: small POST req/s and the balancer's CPU per request (wrk -t1 -c16);
time to the first SSE event through the balancer minus direct (one stream at
a time); the gap between SSE events at 20 events/s on 64 streams, through the
balancer minus direct (p99: Nagle's algorithm, if it delayed events, would
show here: WasmEdge has no TCP_NODELAY); RSS after the load; start-up to the
first 200. Loopback only; every process is stopped by its PID. Numbers are
printed, never asserted (a shared machine's noise is not a regression)."""
import json
import os
import select
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, ".."))
BUILD = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else os.path.join(ROOT, "build")
QUICK = "--quick" in sys.argv
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "wasm"))
import llm_sched  # noqa: E402
import wasmlib  # noqa: E402

PROXY_CPU, LOAD_CPU = "0", "1"
TICK = os.sysconf("SC_CLK_TCK")
SECS = 2 if QUICK else 5
PROCS = []


def track(p):
    PROCS.append(p)
    return p


def stop_all():
    while PROCS:
        p = PROCS.pop()
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait()


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


def sim(tokens, tps):
    p, addr, _ = llm_sched.start(["taskset", "-c", LOAD_CPU, os.path.join(BUILD, "llamalb-sim"),
                                  "--listen", "127.0.0.1:0", "--model-name", "m1", "--slots", "100000",
                                  "--completion-tokens", str(tokens), "--tokens-per-sec", str(tps),
                                  "--seed", "7", "--log-level", "error"])
    track(p)
    return addr


def lb_argv(kind):
    pre = {"native": [os.path.join(BUILD, "llamalb")],
           "interp": wasmlib.runner("interp"), "aot": wasmlib.runner("aot")}[kind]
    return ["taskset", "-c", PROXY_CPU] + pre + [
        "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--workers", "1",
        "--health-interval", "0", "--default-max-inflight", "0", "--access-log", "off",
        "--log-level", "warn", "--drain-delay", "0"]


def start_lb(kind, backend):
    p, addr, _ = llm_sched.start(lb_argv(kind) + ["--backend", "a=%s,models=m1" % backend],
                                 want_admin=True)
    track(p)
    return p, addr


def http_post(addr, body, stream=False):
    """One request on a new connection; returns (t_first_event_s, [event times])."""
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=30)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    data = json.dumps(body).encode()
    t0 = time.monotonic()
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\n"
              b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(data), data))
    times, buf = [], b""
    while True:
        c = s.recv(65536)
        if not c:
            break
        now = time.monotonic()
        buf += c
        while b"\n\ndata: " in buf or buf.count(b"data: ") > 0:
            i = buf.find(b"data: ")
            j = buf.find(b"\n\n", i)
            if i < 0 or j < 0:
                break
            times.append(now)
            buf = buf[j + 2:]
    s.close()
    return (times[0] - t0 if times else None), times


def m_rps(kind, backend, script):
    p, addr = start_lb(kind, backend)
    subprocess.run(["taskset", "-c", LOAD_CPU, "wrk", "-t1", "-c16", "-d1s", "-s", script,
                    "http://%s/v1/chat/completions" % addr], capture_output=True, timeout=60)
    c0 = proc_cpu(p.pid)
    out = subprocess.run(["taskset", "-c", LOAD_CPU, "wrk", "-t1", "-c16", "-d%ds" % SECS, "-s", script,
                          "http://%s/v1/chat/completions" % addr], capture_output=True, text=True,
                         timeout=SECS + 60).stdout
    cpu = proc_cpu(p.pid) - c0
    rps = float(out.split("Requests/sec:")[1].split()[0])
    n = int(out.split(" requests in")[0].split()[-1])
    errs = "Non-2xx" in out or "Socket errors" in out
    rss = proc_rss_kib(p.pid)
    p.kill()
    p.wait()
    return {"rps": rps, "cpu_us_per_req": cpu / max(1, n) * 1e6, "rss_kib": rss, "errors": errs}


def m_ttfe(addr, n=30):
    v = []
    for _ in range(n):
        t, _ = http_post(addr, {"model": "m1", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
        v.append(t * 1000)
    return statistics.median(v)


def m_gaps(addr, streams=64):
    """64 streams at once; the gaps between consecutive events of each, in ms."""
    host, port = addr.rsplit(":", 1)
    body = json.dumps({"model": "m1", "stream": True, "messages": [{"role": "user", "content": "hi"}]}).encode()
    socks = {}
    for _ in range(streams):
        s = socket.create_connection((host, int(port)), timeout=30)
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\n"
                  b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        socks[s] = (b"", [])
    gaps = []
    end = time.monotonic() + 60
    while socks and time.monotonic() < end:
        r, _, _ = select.select(list(socks), [], [], 1)
        now = time.monotonic()
        for s in r:
            buf, times = socks[s]
            c = s.recv(65536)
            if not c:
                gaps += [(b - a) * 1000 for a, b in zip(times[1:], times[2:])]  # from the 2nd token
                s.close()
                del socks[s]
                continue
            buf += c
            while True:
                i = buf.find(b"data: ")
                j = buf.find(b"\n\n", i)
                if i < 0 or j < 0:
                    break
                times.append(now)
                buf = buf[j + 2:]
            socks[s] = (buf, times)
    gaps.sort()
    return {"p50": gaps[len(gaps) // 2], "p99": gaps[int(len(gaps) * 0.99)], "n": len(gaps)}


def m_startup(kind, backend):
    """Spawn to the first 200 on GET /v1/models (answered by the balancer)."""
    port = llm_sched.free_port()
    argv = lb_argv(kind)
    argv[argv.index("127.0.0.1:0")] = "127.0.0.1:%d" % port
    t0 = time.monotonic()
    p = track(subprocess.Popen(argv + ["--backend", "a=%s,models=m1" % backend],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    while time.monotonic() - t0 < 20:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=1)
            s.sendall(b"GET /v1/models HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
            if s.recv(64).startswith(b"HTTP/1.1 200"):
                s.close()
                break
            s.close()
        except OSError:
            time.sleep(0.002)
    ms = (time.monotonic() - t0) * 1000
    p.kill()
    p.wait()
    return ms


def main():
    wasmlib.require()
    wasmlib.aot_module(wasmlib.find_wasmedge())
    kinds = ["native", "interp", "aot"]
    small = sim(8, 0)
    script = os.path.join(tempfile.mkdtemp(prefix="llamalb-wasm-bench-"), "post.lua")
    with open(script, "w") as f:
        f.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                'wrk.body = [[{"model":"m1","messages":[{"role":"user","content":"hi"}]}]]\n')
    res = {k: {} for k in kinds}
    for k in kinds:
        res[k].update(m_rps(k, small, script))
        res[k]["startup_ms"] = statistics.median(m_startup(k, small) for _ in range(3))
    direct_ttfe = m_ttfe(small)
    stream20 = sim(20 if QUICK else 40, 20)
    direct_gaps = m_gaps(stream20)
    for k in kinds:
        p, addr = start_lb(k, small)
        res[k]["ttfe_added_ms"] = m_ttfe(addr) - direct_ttfe
        p.kill()
        p.wait()
        p, addr = start_lb(k, stream20)
        g = m_gaps(addr)
        res[k]["gap_p50_ms"], res[k]["gap_p99_ms"] = g["p50"], g["p99"]
        res[k]["gap_p99_added_ms"] = g["p99"] - direct_gaps["p99"]
        res[k]["rss_after_streams_kib"] = proc_rss_kib(p.pid)
        p.kill()
        p.wait()
    n = res["native"]
    print("direct: first event %.2f ms; 20 events/s x 64 streams: gap p50 %.1f ms p99 %.1f ms"
          % (direct_ttfe, direct_gaps["p50"], direct_gaps["p99"]))
    print("%-7s %9s %6s %12s %7s %12s %12s %9s %10s" % ("", "req/s", "x nat", "CPU us/req", "x nat",
                                                       "1st event +", "gap p99 +", "RSS KiB", "start ms"))
    for k in kinds:
        r = res[k]
        print("%-7s %9.0f %6.2f %12.1f %7.2f %10.2f ms %10.2f ms %9d %10.1f" % (
            k, r["rps"], r["rps"] / n["rps"], r["cpu_us_per_req"], r["cpu_us_per_req"] / n["cpu_us_per_req"],
            r["ttfe_added_ms"], r["gap_p99_added_ms"], r["rss_after_streams_kib"], r["startup_ms"]))
    print(json.dumps(res))


if __name__ == "__main__":
    try:
        main()
    finally:
        stop_all()
