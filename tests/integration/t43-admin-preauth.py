#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The admin port before authentication (docs/hardening.md, "The admin API
before authentication"): token, path, method, media type and length are
judged on the head, before any body byte is read or 100 Continue is sent;
admin connections have their own cap (--admin-max-conns) and never pause
the public listener; an admin body has a total deadline, not only an idle
one; running out of descriptors pauses the admin listener instead of
spinning; a token longer than 255 bytes is refused at start, never cut.

Regression for the audit: 20 unauthenticated PUT heads took the process
from 18 MB to 387 MB."""
import os
import resource
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *  # noqa: E402,F401,F403

deadline(55)
TOKEN = "s3cret-admin-token-0123456789"


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as fh:
        f = fh.read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def metric(p, name):
    r = admin_request(p, "GET", "/metrics", token=TOKEN, timeout=5)
    for line in r.body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


be = FakeBackend(name="b1")
p = lb("--backend", be.backend_arg(), "--admin-max-conns", "30", "--max-conns", "8",
       "--backend-allow", "127.0.0.0/8",
       "--body-timeout", "1s", "--body-deadline", "2s", env={"LLAMALB_ADMIN_TOKEN": TOKEN})

# --- 20 unauthenticated 16 MiB PUT heads, each promising the body with Expect
rss0 = rss_kb(p.pid)
head = (b"PUT /api/services HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
        b"Content-Length: 16000000\r\nExpect: 100-continue\r\n\r\n")
socks = []
for i in range(20):
    s = connect(p.admin)
    s.sendall(head + b"{" + b" " * 60000)
    socks.append(s)
answers = [read_until_close(s, 3) for s in socks]
ok(all(o.startswith(b"HTTP/1.1 401 ") for o, _ in answers),
   "each unauthenticated PUT head is answered 401 at once")
ok(all(b"100 Continue" not in o for o, _ in answers), "no 100 Continue before the token check")
ok(all(closed for _, closed in answers), "and its connection closed (the body is never read)")
grew = rss_kb(p.pid) - rss0
ok(grew < 8 * 1024 * RSS_SCALE, "RSS grew by %d KiB for 20 unauthenticated 16 MiB PUTs" % grew)
for s in socks:
    s.close()

# --- wrong path, method, media type or length: refused on the head, before the body
def head_only(method, path, extra=b"", length=50000, token=TOKEN):
    s = connect(p.admin)
    s.sendall(b"%s %s HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer %s\r\n%s"
              b"Content-Length: %d\r\n\r\n" % (method, path, token.encode(), extra, length))
    out, closed = read_until_close(s, 3)
    s.close()
    return out, closed


ctype = b"Content-Type: application/json\r\n"
for name, args, status in [
        ("unknown admin path", (b"POST", b"/api/nope", ctype), 404),
        ("GET-only route with a PUT", (b"PUT", b"/metrics", ctype), 405),
        ("register with DELETE", (b"DELETE", b"/api/register", ctype), 405),
        ("text/plain body", (b"POST", b"/api/register", b"Content-Type: text/plain\r\n"), 415),
        ("register body over 64 KiB", (b"POST", b"/api/register", ctype, 70000), 413),
        ("PUT over 16 MiB", (b"PUT", b"/api/services", ctype, 17 << 20), 413)]:
    out, closed = head_only(*args)
    ok(out.startswith(b"HTTP/1.1 %d " % status) and closed,
       "%s: %d on the head, connection closed (%r)" % (name, status, out[:30]))
time.sleep(1.1)  # past the failed-auth limiter's one-second window of the 20 above
out, closed = head_only(b"POST", b"/api/register", ctype, 10, token="wrong-token-wrong-token")
ok(out.startswith(b"HTTP/1.1 401 "), "bad token with a small body: 401 on the head")

# an authorized request with Expect still gets its 100 Continue and is served
s = connect(p.admin)
body = json.dumps({"name": "x1", "ip": "127.0.0.1", "port": be.port}).encode()
s.sendall(b"POST /api/register HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer %s\r\n%s"
          b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % (TOKEN.encode(), ctype, len(body)))
s.settimeout(3)
first = s.recv(100)
ok(first.startswith(b"HTTP/1.1 100 Continue"), "authorized + Expect: 100 Continue first")
s.sendall(body)
out, _ = read_until_close(s, 1)
ok(b"200 OK" in first + out, "then 200")
s.close()

# --- admin connections are counted apart: 20 idle admin conns leave --max-conns 8 alone
idle = [connect(p.admin) for _ in range(20)]
ok(wait_for(lambda: metric(p, "llamalb_admin_connections_active") >= 20, 3),
   "20 idle admin connections are open")
rs = [request(p.addr, "GET", "/v1/x", timeout=3).status for _ in range(3)]
is_(rs, [200] * 3, "the public port still serves (admin conns do not count against --max-conns)")
# the admin cap: 30 in all; the 31st waits in the backlog until one closes
more = [connect(p.admin) for _ in range(10)]   # 30 in all
time.sleep(0.2)
late = connect(p.admin)
late.sendall(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
late.settimeout(0.6)
try:
    got = late.recv(100)
except socket.timeout:
    got = b""
is_(got, b"", "over --admin-max-conns the next admin connection is not served")
for s in idle:
    s.close()
late.settimeout(3)
try:
    got = late.recv(100)
except socket.timeout:
    got = b""
ok(got.startswith(b"HTTP/1.1 200"), "it is served once others close (%r)" % got[:20])
late.close()
for s in more:
    s.close()

# --- an admin body trickled in under the idle timeout still meets the total deadline
s = connect(p.admin)
s.sendall(b"PUT /api/services HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer %s\r\n%s"
          b"Content-Length: 1000\r\n\r\n{" % (TOKEN.encode(), ctype))
t0 = time.time()
got = b""
s.settimeout(0.4)
while time.time() - t0 < 6 and not got:
    try:
        s.sendall(b" ")
        got = s.recv(200)
    except socket.timeout:
        pass
    except OSError:
        break
el = time.time() - t0
s.close()
ok(got.startswith(b"HTTP/1.1 408 "), "a byte every 0.4 s (idle limit 1 s): 408 (%r)" % got[:20])
ok(1.5 < el < 4, "at the 2 s body deadline (%.1f s)" % el)
p.stop()

# --- out of descriptors on the admin listener: paused, not spinning
def low_fds():
    resource.setrlimit(resource.RLIMIT_NOFILE, (40, 40))


argv = [LB, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--workers", "1",
        "--health-interval", "0", "--backend", be.backend_arg(), "--max-conns", "1000",
        "--admin-max-conns", "1000"]
errf = tempfile.NamedTemporaryFile(prefix="t43-", suffix=".err", delete=False)
q = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errf, preexec_fn=low_fds)
line = b""
while not line.startswith(b"admin listening on "):
    line = q.stdout.readline()
    if not line:
        break
admin = line.split()[-1].decode()
hogs = []
for _ in range(60):
    try:
        hogs.append(connect(admin, 1))
    except OSError:
        break
time.sleep(0.3)
c0 = cpu_s(q.pid)
time.sleep(1.0)
used = cpu_s(q.pid) - c0
ok(used < 0.3, "EMFILE on the admin listener: %.2f s CPU in 1 s (paused, not spinning)" % used)
for s in hogs:
    s.close()
ok(wait_for(lambda: request(admin, "GET", "/healthz", timeout=2).status == 200, 3),
   "admin listener serves again once descriptors are free")
q.terminate()
q.wait(5)
errf.close()
os.unlink(errf.name)

# --- a token over 255 bytes is refused, not truncated
with tempfile.NamedTemporaryFile("w", delete=False) as tf:
    tf.write("a" * 300 + "\n")
r = subprocess.run([LB, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
                    "--admin-token-file", tf.name, "--backend", be.backend_arg()],
                   capture_output=True, timeout=10)
os.unlink(tf.name)
ok(r.returncode != 0, "a 300-byte admin token file: refused at start")
like(r.stderr.decode(), "longer than 255", "saying the token is too long")
r = subprocess.run([LB, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
                    "--backend", be.backend_arg()], env=dict(os.environ, LLAMALB_ADMIN_TOKEN="b" * 256),
                   capture_output=True, timeout=10)
ok(r.returncode != 0, "a 256-byte LLAMALB_ADMIN_TOKEN: refused at start")
done()
