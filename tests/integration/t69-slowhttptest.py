# SPDX-License-Identifier: MIT
"""S-01..S-03 with a real attack tool: slowhttptest (Debian) in slowloris
(-H), slow body (-B) and slow read (-X) modes against llamalb with
shortened limits (--header-timeout 2s, --body-timeout 2s, --body-deadline
4s, --send-timeout 3s), while a normal client sends chats. Functional checks
only: the attacker's connections are cut by those timeouts, and the normal
client gets every answer, with no error. The latency comparison with nginx
and HAProxy is a measurement: bench/slow_clients.py."""
import csv
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid

from harness import (chat, deadline, done, is_, lb, note, ok, request, sim)

deadline(240)
if shutil.which("slowhttptest") is None:
    note("skip: slowhttptest is not installed (apt-get install slowhttptest)")
    ok(True, "# SKIP slowhttptest missing")
    done()

s = sim("--slots", "4", name="m")
p = lb("--backend", "m=%s,max-inflight=0" % s.addr, "--header-timeout", "2s",
       "--body-timeout", "2s", "--body-deadline", "4s", "--send-timeout", "3s",
       "--keepalive-timeout", "5s", "--access-log", "off")
tmp = tempfile.mkdtemp(prefix="llamalb-t69-")


def active_conns():
    r = request(p.admin, "GET", "/metrics")
    for line in r.body.decode().splitlines():
        if line.startswith("llamalb_connections_active "):
            return int(float(line.split()[1]))
    return -1


class Normal(threading.Thread):
    """Chats one after another on fresh connections until stopped."""

    def __init__(self):
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.n = 0
        self.errors = []

    def run(self):
        while not self.stop.is_set():
            try:
                r = chat(p.addr, model="m", timeout=10)
                if r.status != 200:
                    self.errors.append(r.status)
            except Exception as e:  # noqa: BLE001
                self.errors.append(repr(e))
            self.n += 1
            self.stop.wait(0.05)


def attack(mode, args, conns, secs):
    """Runs slowhttptest for <secs>; returns its per-second CSV rows and
    llamalb's own count of open client connections, sampled meanwhile."""
    prefix = os.path.join(tmp, mode.strip("-"))
    argv = ["slowhttptest", mode, "-c", str(conns), "-r", "100", "-l", str(secs), "-p", "3", "-g",
            "-o", prefix] + args
    a = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen = []
    while a.poll() is None:
        seen.append(active_conns())
        time.sleep(0.25)
    with open(prefix + ".csv") as f:
        rows = [r for r in csv.DictReader(f)]
    return rows, seen


# slow read needs an answer larger than the socket buffers: a 16 MiB upload
boundary = uuid.uuid4().hex
body = (("--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.txt\"\r\n"
         "Content-Type: text/plain\r\n\r\n" % boundary).encode() + b"x" * (16 << 20) +
        ("\r\n--%s--\r\n" % boundary).encode())
up = request(p.addr, "POST", "/v1/files", body,
             headers={"Content-Type": "multipart/form-data; boundary=" + boundary})
is_(up.status, 200, "a 16 MiB file uploaded for the slow readers")
fid = up.json()["id"]
base = active_conns()
url = "http://%s" % p.addr
# 40 slow readers: each pins megabytes of socket buffers, and a TSan build
# copies them slowly enough to starve everyone when there are 100
MODES = [
    ("-H", "slowloris", 100, 10, ["-i", "1", "-u", url + "/v1/models"]),
    ("-B", "slow body", 100, 10, ["-i", "1", "-s", "65536", "-u", url + "/v1/chat/completions"]),
    ("-X", "slow read", 40, 15, ["-k", "1", "-n", "5", "-w", "512", "-y", "1024", "-z", "32",
                                 "-u", url + "/v1/files/%s/content" % fid]),
]
for mode, what, conns, secs, args in MODES:
    n = Normal()
    n.start()
    rows, seen = attack(mode, args, conns, secs)
    n.stop.set()
    n.join(15)
    peak = max(int(r["Connected"]) + int(r["Pending"]) for r in rows)
    note("%s: slowhttptest's last second %s; llamalb's open connections %s" %
         (what, rows[-1] if rows else None, seen))
    ok(peak >= conns // 2 and max(seen) >= base + conns // 2,
       "%s: the attack held its connections open (peak %d, llamalb saw %d)" %
       (what, peak, max(seen)))
    if mode != "-X":
        # the attacker saw its connections closed by the server, and gave up
        closed = int(rows[-1]["Closed"])
        ok(closed >= peak * 9 // 10,
           "%s: llamalb cut the attacker's connections (%d of %d closed)" % (what, closed, peak))
    else:
        # a slow reader cannot see the close behind what the kernel still
        # holds for it: llamalb's own count must fall while the attack runs
        low = min(seen[seen.index(max(seen)):])
        ok(low <= base + max(2, peak // 10),
           "%s: llamalb cut the attacker's connections before the attack ended (%d of %d left)"
           % (what, low - base, peak))
    ok(n.n > 20 and not n.errors, "%s: the normal client got %d answers, errors %s" %
       (what, n.n, n.errors[:5]))
end = time.time() + 10
while time.time() < end and active_conns() > base:
    time.sleep(0.2)
is_(active_conns(), base, "client connections back to the baseline")
shutil.rmtree(tmp, ignore_errors=True)
done()
