#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Slow-client attacks with slowhttptest against llamalb, nginx and HAProxy
(README.md, "Reliability"): slowloris (-H), slow body (-B) and slow read
(-X), each with its default limits (llamalb's documented defaults, the
settings bench.py gives nginx and HAProxy, which keep their own timeouts at
their defaults). For each proxy and mode: the p99 latency of a normal client
sending small chats one after another, quiet and then under the attack, its
errors, and how many of the attacker's connections the proxy cut during the
attack (its own view: the attacker's open connections to the proxy's port,
read from /proc/net/tcp, at the end of the attack; the kernel may still be
draining what a proxy closed for a slow reader).

usage: bench/slow_clients.py BUILD_DIR [OUT_BASENAME] [--quick]
  --quick: 20 s attacks (default 75 s: longer than nginx's 60 s timeouts)
The normal client and the attacker run on CPU 1, the proxy on CPU 0, as in
bench.py; run it on a quiet machine."""
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
import http.client
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench  # noqa: E402  (argv[1] is BUILD_DIR for it too)

QUICK = "--quick" in sys.argv
OUT = sys.argv[2] if len(sys.argv) > 2 and not sys.argv[2].startswith("--") else None
ATTACK_S = 20 if QUICK else 75
QUIET_S = 5 if QUICK else 15
CONNS = 500
# Slow readers each pin up to tcp_wmem's 4 MiB of kernel send buffer: 500 of
# them push the kernel's TCP memory past its pressure mark and slow every
# socket on the machine, whatever the proxy does; 100 stay under it.
CONNS_READ = 100
say = bench.say


def normal_client(addr, secs, out):
    """Small chats on fresh connections for <secs>: (latencies ms, errors)."""
    host, port = addr.rsplit(":", 1)
    body = json.dumps({"model": "m1", "messages": [{"role": "user", "content": "hi"}]})
    lat, errs = [], []
    end = time.time() + secs
    while time.time() < end:
        t0 = time.time()
        try:
            c = http.client.HTTPConnection(host, int(port), timeout=10)
            c.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
            r = c.getresponse()
            r.read()
            c.close()
            if r.status != 200:
                errs.append(r.status)
            else:
                lat.append((time.time() - t0) * 1000)
        except Exception as e:  # noqa: BLE001
            errs.append(type(e).__name__)
        time.sleep(0.02)
    out.extend([lat, errs])


def p99(v):
    if len(v) < 2:
        return float("nan")
    return statistics.quantiles(v, n=100)[98]


def open_to(port):
    """Established connections to local port <port> (the proxy's side)."""
    n = 0
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            p = line.split()
            if p[3] == "01" and int(p[1].split(":")[1], 16) == port:
                n += 1
    return n


def upload(sim_addr):
    """A 16 MiB file on the simulator (slow read needs an answer larger than
    the socket buffers); uploaded to it directly, the same for every proxy."""
    boundary = uuid.uuid4().hex
    body = (("--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.txt\"\r\n"
             "Content-Type: text/plain\r\n\r\n" % boundary).encode() + b"x" * (16 << 20) +
            ("\r\n--%s--\r\n" % boundary).encode())
    host, port = sim_addr.rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=30)
    c.request("POST", "/v1/files", body,
              {"Content-Type": "multipart/form-data; boundary=" + boundary})
    r = c.getresponse()
    return json.loads(r.read())["id"]


def attack(addr, mode, fid):
    url = "http://%s" % addr
    args = {"-H": ["-u", url + "/v1/models"],
            "-B": ["-u", url + "/v1/chat/completions", "-s", "65536"],
            "-X": ["-u", url + "/v1/files/%s/content" % fid, "-k", "1", "-n", "5",
                   "-w", "512", "-y", "1024", "-z", "32"]}[mode]
    conns = CONNS_READ if mode == "-X" else CONNS
    argv = ["taskset", "-c", bench.LOAD_CPU, "slowhttptest", mode, "-c", str(conns), "-r", "200",
            "-l", str(ATTACK_S), "-i", "10", "-p", "5"] + args
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run_one(kind, sim_addr, fid, mode):
    p, addr = bench.start_proxy(kind, [sim_addr])
    port = int(addr.rsplit(":", 1)[1])
    quiet = []
    normal_client(addr, QUIET_S, quiet)
    a = attack(addr, mode, fid)
    loaded = []
    t = threading.Thread(target=normal_client, args=(addr, ATTACK_S - 2, loaded))
    time.sleep(2)  # the attack's connections are open
    peak = open_to(port)
    t.start()
    t.join()
    left = open_to(port)  # what the proxy still holds as the attack ends
    a.wait(ATTACK_S + 60)
    bench.stop(p)
    row = {"proxy": kind, "mode": mode, "quiet_p99_ms": p99(quiet[0]), "quiet_n": len(quiet[0]),
           "attack_p99_ms": p99(loaded[0]), "attack_n": len(loaded[0]),
           "errors": len(quiet[1]) + len(loaded[1]), "error_kinds": sorted(set(map(str, loaded[1]))),
           "attack_open_peak": peak, "attack_open_end": left}
    row["ratio"] = row["attack_p99_ms"] / row["quiet_p99_ms"] if row["quiet_p99_ms"] else None
    return row


def main():
    if subprocess.run(["sh", "-c", "command -v slowhttptest"], capture_output=True).returncode:
        sys.exit("slowhttptest is not installed (apt-get install slowhttptest)")
    sp, sim_addr = bench.sim(tokens=8)
    fid = upload(sim_addr)
    rows = []
    names = {"-H": "slowloris", "-B": "slow body", "-X": "slow read"}
    try:
        for mode in ("-H", "-B", "-X"):
            for kind in bench.PEERS:
                r = run_one(kind, sim_addr, fid, mode)
                rows.append(r)
                say("%-9s %-8s quiet p99 %6.1f ms  attacked p99 %6.1f ms  x%.2f  errors %d %s  "
                    "attack conns open: %d at 2 s, %d at the end" %
                    (names[mode], kind, r["quiet_p99_ms"], r["attack_p99_ms"], r["ratio"] or 0,
                     r["errors"], r["error_kinds"], r["attack_open_peak"], r["attack_open_end"]))
    finally:
        bench.stop_all()
        shutil.rmtree(bench.TMP, ignore_errors=True)
    say("")
    say("| attack (%d s; %d conns, slow read %d) | proxy | quiet p99 | p99 under attack | ratio | "
        "errors | attacker's conns open at 2 s / at the end |" % (ATTACK_S, CONNS, CONNS_READ))
    say("|---|---|---|---|---|---|---|")
    for r in rows:
        say("| %s | %s | %.1f ms | %.1f ms | %.2f | %d | %d / %d |" %
            (names[r["mode"]], r["proxy"], r["quiet_p99_ms"], r["attack_p99_ms"], r["ratio"] or 0,
             r["errors"], r["attack_open_peak"], r["attack_open_end"]))
    if OUT:
        with open(OUT + ".json", "w") as f:
            json.dump({"quick": QUICK, "attack_s": ATTACK_S, "conns": CONNS, "rows": rows}, f,
                      indent=1)
        with open(OUT + ".txt", "w") as f:
            f.write("\n".join(bench.LOG) + "\n")


if __name__ == "__main__":
    main()
