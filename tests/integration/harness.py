# SPDX-License-Identifier: MIT
"""Integration-test harness: TAP output, processes started and stopped by PID,
raw HTTP/1.1 over loopback.

Every program prints `listening on HOST:PORT` (and `admin listening on ...`)
before serving, so tests bind port 0 and read the port back: no port races.
Each test file is a script; it calls plan-less ok()/is_() and done() at the
end. Everything spawned is killed at exit (atexit + SIGALRM deadline)."""
import atexit
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time

BUILD = os.environ.get("LLAMALB_BUILD") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "build")
LB = os.path.join(BUILD, "llamalb")
SIM = os.path.join(BUILD, "llamalb-sim")
WATCHER = os.path.join(BUILD, "llamalb-watcher")

# ThreadSanitizer (make tsan) keeps shadow memory for every byte the
# program touches: RSS bounds in tests are multiplied by this.
RSS_SCALE = 4 if os.environ.get("TSAN_OPTIONS") else 1

_count = 0
_failed = 0
_procs = []


def ok(cond, name):
    global _count, _failed
    _count += 1
    print(("ok %d - %s" if cond else "not ok %d - %s") % (_count, name), flush=True)
    if not cond:
        _failed += 1
        import traceback
        fr = traceback.extract_stack()[-2]
        print("#   failed at %s:%d" % (os.path.basename(fr.filename), fr.lineno), flush=True)
    return bool(cond)


def is_(got, want, name):
    r = ok(got == want, name)
    if not r:
        note("  got:  %r" % (got,))
        note("  want: %r" % (want,))
    return r


def like(got, pattern, name):
    r = ok(got is not None and re.search(pattern, got) is not None, name)
    if not r:
        note("  got: %r, want match for %r" % (got, pattern))
    return r


def note(msg):
    for line in str(msg).splitlines() or [""]:
        print("# " + line, flush=True)


def done():
    stop_all()
    print("1..%d" % _count, flush=True)
    sys.exit(1 if _failed else 0)


def deadline(seconds):
    """Fails the whole test file if it runs longer than <seconds>."""
    def on_alarm(signum, frame):
        print("not ok - test file exceeded its %d s deadline" % seconds, flush=True)
        stop_all()
        os._exit(1)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)


class Proc:
    """A child process started by spawn(); .addr / .admin are "HOST:PORT"."""

    def __init__(self, popen, name):
        self.p = popen
        self.pid = popen.pid
        self.name = name
        self.addr = None
        self.admin = None
        self.lines = []

    @property
    def host(self):
        return self.addr.rsplit(":", 1)[0].strip("[]")

    @property
    def port(self):
        return int(self.addr.rsplit(":", 1)[1])

    def stop(self, sig=signal.SIGTERM, timeout=10):
        """Stops the process by PID; returns its exit status."""
        if self.p.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.p.wait()
        return self.p.returncode

    def alive(self):
        return self.p.poll() is None

    def stderr_text(self):
        try:
            with open(self.errfile) as f:
                return f.read()
        except OSError:
            return ""


def spawn(argv, name=None, want_admin=False, env=None, timeout=10, stdin=None):
    """Starts argv, waits for its `listening on` line(s), returns a Proc."""
    errdir = os.environ.get("TMPDIR", "/tmp")
    errfile = os.path.join(errdir, "llamalb-test-%d-%s.err" % (os.getpid(), len(_procs)))
    e = dict(os.environ)
    if env:
        e.update(env)
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=open(errfile, "w"),
                         stdin=stdin if stdin is not None else subprocess.DEVNULL, env=e)
    proc = Proc(p, name or os.path.basename(argv[0]))
    proc.errfile = errfile
    _procs.append(proc)
    end = time.time() + timeout
    buf = b""
    while time.time() < end:
        if proc.addr and (proc.admin or not want_admin):
            break
        r, _, _ = select.select([p.stdout], [], [], 0.1)
        if not r:
            if p.poll() is not None:
                break
            continue
        chunk = os.read(p.stdout.fileno(), 4096)
        if not chunk:
            break
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            line = line.decode(errors="replace")
            proc.lines.append(line)
            m = re.match(r"^admin listening on (\S+)$", line)
            if m:
                proc.admin = m.group(1)
                continue
            m = re.match(r"^listening on (\S+)$", line)
            if m:
                proc.addr = m.group(1)
    if not proc.addr:
        raise RuntimeError("%s did not report its address; stderr:\n%s" %
                           (argv, proc.stderr_text()))
    return proc


def stop_all():
    while _procs:
        _procs.pop().stop()


atexit.register(stop_all)


def sim(*args, name="sim", **kw):
    """Starts llamalb-sim on a free loopback port with --model-name <name>."""
    argv = [SIM, "--listen", "127.0.0.1:0", "--model-name", name] + list(args)
    return spawn(argv, name=name, **kw)


def lb(*args, **kw):
    """Starts llamalb on free loopback ports (public and admin). Active probes
    are off (they would show up in fake backends' counts); pass
    "--health-interval", "1s" to test them. LLAMALB_TEST_WORKERS (make tsan
    sets it) runs more than one worker thread; a test that needs one passes
    "--workers", "1" itself."""
    argv = [LB, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
            "--workers", os.environ.get("LLAMALB_TEST_WORKERS", "1"),
            "--health-interval", "0", "--drain-delay", "0"] + list(args)
    return spawn(argv, name="llamalb", want_admin=True, **kw)


def split_addr(addr):
    host, port = addr.rsplit(":", 1)
    return host.strip("[]"), int(port)


def connect(addr, timeout=5):
    s = socket.create_connection(split_addr(addr), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def raw(addr, data, timeout=5, read_until_close=True):
    """Sends raw bytes, returns everything read until close or <timeout>."""
    s = connect(addr, timeout)
    try:
        if data:
            s.sendall(data)
        out = b""
        end = time.time() + timeout
        while time.time() < end:
            s.settimeout(max(0.01, end - time.time()))
            try:
                c = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                break
            if not c:
                break
            out += c
            if not read_until_close and complete_response(out):
                break
        return out
    finally:
        s.close()


class Response:
    def __init__(self, status, reason, headers, body, raw_bytes, version="HTTP/1.1"):
        self.status = status
        self.reason = reason
        self.headers = headers      # list of (name, value)
        self.body = body
        self.raw = raw_bytes
        self.version = version

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def json(self):
        return json.loads(self.body)


def parse_response(data, head_request=False):
    """Parses one response from bytes; returns (Response, rest) or (None, data)."""
    i = data.find(b"\r\n\r\n")
    if i < 0:
        return None, data
    head = data[:i].decode("latin-1").split("\r\n")
    m = re.match(r"^(HTTP/1\.[01]) (\d{3}) ?(.*)$", head[0])
    if not m:
        return None, data
    headers = []
    for h in head[1:]:
        k, v = h.split(":", 1)
        headers.append((k, v.strip()))
    resp = Response(int(m.group(2)), m.group(3), headers, b"", data[:i + 4], m.group(1))
    rest = data[i + 4:]
    te = resp.header("transfer-encoding")
    cl = resp.header("content-length")
    if head_request or resp.status in (204, 304) or resp.status < 200:
        return resp, rest
    if te and "chunked" in te.lower():
        body = b""
        while True:
            j = rest.find(b"\r\n")
            if j < 0:
                return None, data
            size = int(rest[:j].split(b";")[0], 16)
            if len(rest) < j + 2 + size + 2:
                return None, data
            body += rest[j + 2:j + 2 + size]
            rest = rest[j + 2 + size + 2:]
            if size == 0:
                break
        resp.body = body
        return resp, rest
    if cl is not None:
        n = int(cl)
        if len(rest) < n:
            return None, data
        resp.body = rest[:n]
        return resp, rest[n:]
    resp.body = rest
    return resp, b""


def complete_response(data):
    r, _ = parse_response(data)
    return r is not None and (r.header("content-length") is not None or
                              "chunked" in (r.header("transfer-encoding") or ""))


def request(addr, method, path, body=None, headers=None, timeout=30, conn=None):
    """One HTTP/1.1 request; returns a Response (read to the end of the message)."""
    hdrs = {"Host": "test"}
    if headers:
        hdrs.update(headers)
    if body is not None and not isinstance(body, (bytes, bytearray)):
        body = json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    if body is not None:
        hdrs["Content-Length"] = str(len(body))
    req = "%s %s HTTP/1.1\r\n" % (method, path)
    req += "".join("%s: %s\r\n" % (k, v) for k, v in hdrs.items()) + "\r\n"
    data = req.encode() + (body or b"")
    s = conn or connect(addr, timeout)
    try:
        s.settimeout(timeout)
        s.sendall(data)
        buf = b""
        while True:
            r, rest = parse_response(buf, head_request=(method == "HEAD"))
            if r is not None and (r.header("content-length") is not None or
                                  "chunked" in (r.header("transfer-encoding") or "") or
                                  method == "HEAD" or r.status in (204, 304)):
                return r
            c = s.recv(65536)
            if not c:
                r, rest = parse_response(buf, head_request=(method == "HEAD"))
                if r is None:
                    raise ConnectionError("connection closed mid-response: %r" % buf[:200])
                return r
            buf += c
    finally:
        if conn is None:
            s.close()


def chat(addr, content="hi", model="llama-3-1b", stream=False, extra=None, headers=None,
         timeout=30):
    body = {"model": model, "messages": [{"role": "user", "content": content}]}
    if stream:
        body["stream"] = True
    if extra:
        body.update(extra)
    return request(addr, "POST", "/v1/chat/completions", body, headers=headers, timeout=timeout)


def sse_events(body):
    """Splits an SSE body into the payloads of its data: lines."""
    out = []
    for ev in body.decode().split("\n\n"):
        if ev.startswith("data: "):
            out.append(ev[6:])
    return out


def wait_for(pred, timeout=5, interval=0.02):
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    return pred()


# ---------------------------------------------------------------- fake backend

import threading


class FakeRequest:
    def __init__(self, method, target, version, headers, body, raw_bytes):
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers      # list of (name, value), as received
        self.body = body
        self.raw = raw_bytes

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]


class FakeConn:
    """One connection accepted by a FakeBackend. Every byte received is kept
    in .raw; .requests holds the requests parsed with recv_request()."""

    def __init__(self, sock, backend, index):
        self.sock = sock
        self.backend = backend
        self.index = index
        self.raw = b""
        self.buf = b""
        self.eof = False
        self.eof_time = None
        self.requests = []
        self.accepted = time.time()
        self.error = None

    def _fill(self, timeout):
        """Reads once; returns False on EOF/error/timeout."""
        if self.eof:
            return False
        self.sock.settimeout(max(0.001, timeout))
        try:
            c = self.sock.recv(65536)
        except socket.timeout:
            return False
        except OSError:
            c = b""
        if not c:
            self.eof = True
            self.eof_time = time.time()
            return False
        self.raw += c
        self.buf += c
        with self.backend.lock:
            self.backend.raw_total += len(c)
        return True

    def recv_request(self, timeout=10):
        """Reads one request (CL or chunked body); None on EOF or timeout."""
        end = time.time() + timeout
        while b"\r\n\r\n" not in self.buf:
            if time.time() >= end or not self._fill(end - time.time()):
                if b"\r\n\r\n" not in self.buf:
                    return None
        i = self.buf.index(b"\r\n\r\n")
        lines = self.buf[:i].decode("latin-1").split("\r\n")
        method, target, version = (lines[0].split(" ") + ["", "", ""])[:3]
        headers = []
        for h in lines[1:]:
            k, _, v = h.partition(":")
            headers.append((k, v.strip()))
        rest = self.buf[i + 4:]
        req = FakeRequest(method, target, version, headers, b"", self.buf[:i + 4])
        te = req.header("transfer-encoding")
        if te and "chunked" in te.lower():
            body = b""
            while True:
                j = rest.find(b"\r\n")
                if j < 0:
                    if time.time() >= end or not self._fill(end - time.time()):
                        return None
                    rest = self.buf[i + 4:]
                    body = b""
                    continue
                size = int(rest[:j].split(b";")[0], 16)
                if len(rest) < j + 4 + size:
                    if time.time() >= end or not self._fill(end - time.time()):
                        return None
                    rest = self.buf[i + 4:]
                    body = b""
                    continue
                body += rest[j + 2:j + 2 + size]
                rest = rest[j + 4 + size:]
                if size == 0:
                    break
            req.body = body
        else:
            n = int(req.header("content-length", "0"))
            while len(rest) < n:
                if time.time() >= end or not self._fill(end - time.time()):
                    return None
                rest = self.buf[i + 4:]
            req.body = rest[:n]
            rest = rest[n:]
        req.raw = self.buf[:len(self.buf) - len(rest)]
        self.buf = rest
        self.requests.append(req)
        with self.backend.lock:
            self.backend.requests.append(req)
        return req

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def wait_eof(self, timeout=5):
        """Reads (and records) until the peer closes; True if it did."""
        end = time.time() + timeout
        while not self.eof and time.time() < end:
            self._fill(end - time.time())
        return self.eof

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def reset(self):
        """Closes with RST (SO_LINGER 0)."""
        import struct
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close()


def respond_ok(body=b'{"ok":true}', ctype="application/json", extra=""):
    if isinstance(body, str):
        body = body.encode()
    return ("HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n" %
            (ctype, len(body), extra)).encode() + body


def chat_completion(prompt_tokens, completion_tokens, **extra):
    """A non-streaming chat.completion answer with its usage, as a backend
    sends it; <extra> adds top-level members (a fake backend's report of
    what it saw, say)."""
    return json.dumps(dict({"id": "x", "object": "chat.completion", "model": "m",
                            "choices": [{"index": 0, "message": {"role": "assistant",
                                                                 "content": "hi"}}],
                            "usage": {"prompt_tokens": prompt_tokens,
                                      "completion_tokens": completion_tokens,
                                      "total_tokens": prompt_tokens + completion_tokens}},
                           **extra))


def serve_loop(fn):
    """Makes a per-connection handler from fn(conn, req) -> bytes | None
    (None: close the connection). Requests are answered in order until EOF."""
    def handler(conn):
        while True:
            req = conn.recv_request(timeout=30)
            if req is None:
                return
            out = fn(conn, req)
            if out is None:
                return
            if out and not conn.send(out):
                return
    return handler


class FakeBackend:
    """A scripted upstream on 127.0.0.1:0. handler(conn) runs in a thread per
    accepted connection (default: answer every request 200 with the backend's
    name). .conns lists every accepted FakeConn, .requests every parsed
    request, .raw_total counts received bytes. Closed at exit."""

    def __init__(self, handler=None, name="fake", backlog=128, accept=True):
        self.name = name
        self.lock = threading.Lock()
        self.conns = []
        self.requests = []
        self.raw_total = 0
        self.handler = handler or serve_loop(
            lambda c, r: respond_ok('{"backend":"%s"}' % self.name))
        self.ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(backlog)
        self.port = self.ls.getsockname()[1]
        self.addr = "127.0.0.1:%d" % self.port
        self.stopped = False
        _backends.append(self)
        if accept:
            self.thread = threading.Thread(target=self._accept_loop, daemon=True)
            self.thread.start()

    def _accept_loop(self):
        while not self.stopped:
            try:
                s, _ = self.ls.accept()
            except OSError:
                return
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                fc = FakeConn(s, self, len(self.conns))
                self.conns.append(fc)
            t = threading.Thread(target=self._run, args=(fc,), daemon=True)
            t.start()

    def _run(self, fc):
        try:
            self.handler(fc)
        except Exception as e:  # noqa: BLE001 (recorded for the test to see)
            fc.error = e
        finally:
            fc.close()

    @property
    def nconns(self):
        with self.lock:
            return len(self.conns)

    @property
    def nrequests(self):
        with self.lock:
            return len(self.requests)

    def backend_arg(self, weight=None, name=None, extra=""):
        s = "%s=%s" % (name or self.name, self.addr)
        if weight is not None:
            s += ",weight=%d" % weight
        return s + extra

    def stop(self):
        self.stopped = True
        try:
            self.ls.close()
        except OSError:
            pass
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            c.close()


_backends = []


def _stop_backends():
    while _backends:
        _backends.pop().stop()


atexit.register(_stop_backends)


def refused_addr():
    """A loopback address nothing listens on (bound, never listened)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    addr = "127.0.0.1:%d" % s.getsockname()[1]
    _held.append(s)   # keep the port reserved so nobody else takes it
    return addr


_held = []


def read_until_close(s, timeout=5):
    """Reads until EOF/RST/timeout; returns (bytes, closed: bool)."""
    out = b""
    end = time.time() + timeout
    while time.time() < end:
        s.settimeout(max(0.01, end - time.time()))
        try:
            c = s.recv(65536)
        except socket.timeout:
            return out, False
        except OSError:
            return out, True
        if not c:
            return out, True
        out += c
    return out, False


def admin_request(p, method, path, body=None, token=None, headers=None, timeout=10):
    """A request to the admin listener of Proc p (bearer token if given)."""
    h = dict(headers or {})
    if token is not None:
        h.setdefault("Authorization", "Bearer " + token)
    return request(p.admin, method, path, body, headers=h, timeout=timeout)
