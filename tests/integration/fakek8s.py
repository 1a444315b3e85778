# SPDX-License-Identifier: MIT
"""A fake Kubernetes API server for the watcher's tests, faithful to the parts
of the protocol the watcher (and kubectl) use: discovery, list with
limit/continue, watch with resourceVersion/timeoutSeconds/allowWatchBookmarks
over chunked HTTP/1.1, label selectors (=, ==, !=, in, notin, exists,
!exists, comma = AND), filtered-watch semantics (relabel out -> DELETED, in ->
ADDED), 410 Gone both as an HTTP status and as an in-stream ERROR event,
bearer-token and client-certificate auth (401 otherwise), plain HTTP or HTTPS.

Tests drive it in-process through its methods (the control API): apply(),
delete(), set_token(), expire(), endless(), stall(), drop(), inject(), down(),
up().
Run standalone (`python3 fakek8s.py [--tls DIR]`), the same methods are
reachable as POST /_fake/METHOD with a JSON object of keyword arguments.

Helpers at the bottom make a CA + server + client certificate with openssl,
write kubeconfig files, and build Service and EndpointSlice objects."""
import base64
import copy
import json
import os
import re
import socket
import socketserver
import ssl
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

RESOURCES = {
    # resource: (group/version prefix, kind, list kind, apiVersion)
    "services": ("/api/v1", "Service", "ServiceList", "v1"),
    "endpointslices": ("/apis/discovery.k8s.io/v1", "EndpointSlice", "EndpointSliceList",
                       "discovery.k8s.io/v1"),
}
VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
# Kinds only announced by discovery (so kubectl can map the deploy/ manifests,
# e.g. `kubectl apply --dry-run=client`); getting one answers 404.
DISCOVERY = {
    "v1": [("services", "Service", True), ("serviceaccounts", "ServiceAccount", True),
           ("secrets", "Secret", True), ("namespaces", "Namespace", False)],
    "discovery.k8s.io/v1": [("endpointslices", "EndpointSlice", True)],
    "apps/v1": [("deployments", "Deployment", True)],
    "rbac.authorization.k8s.io/v1": [("clusterroles", "ClusterRole", False),
                                     ("clusterrolebindings", "ClusterRoleBinding", False),
                                     ("roles", "Role", True), ("rolebindings", "RoleBinding", True)],
    "node.k8s.io/v1": [("runtimeclasses", "RuntimeClass", False)],
    "networking.k8s.io/v1": [("networkpolicies", "NetworkPolicy", True)],
    "policy/v1": [("poddisruptionbudgets", "PodDisruptionBudget", True)],
    "scheduling.k8s.io/v1": [("priorityclasses", "PriorityClass", False)],
    "monitoring.coreos.com/v1": [("podmonitors", "PodMonitor", True),
                                 ("servicemonitors", "ServiceMonitor", True)],
}


SHORT = {"services": ["svc"], "serviceaccounts": ["sa"], "deployments": ["deploy"],
         "namespaces": ["ns"], "networkpolicies": ["netpol"]}


def _resource_list(gv):
    return {"kind": "APIResourceList", "groupVersion": gv, "resources": [
        {"name": n, "singularName": k.lower(), "namespaced": ns, "kind": k, "verbs": VERBS,
         "shortNames": SHORT.get(n, [])} for n, k, ns in DISCOVERY[gv]]}


# ------------------------------------------------------------------ selectors

def parse_selector(s):
    """Parses a label selector into a list of (op, key, values). Raises
    ValueError on bad syntax, like the API server (which answers 400)."""
    reqs = []
    if not s:
        return reqs
    parts, depth, cur = [], 0, ""
    for ch in s:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    key_re = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
    for p in parts:
        p = p.strip()
        m = re.fullmatch(r"(%s)\s+(in|notin)\s+\(([^)]*)\)" % key_re, p)
        if m:
            vals = [v.strip() for v in m.group(3).split(",") if v.strip()]
            reqs.append((m.group(2), m.group(1), vals))
            continue
        m = re.fullmatch(r"(%s)\s*(==|!=|=)\s*([-A-Za-z0-9_.]*)" % key_re, p)
        if m:
            op = {"=": "eq", "==": "eq", "!=": "ne"}[m.group(2)]
            reqs.append((op, m.group(1), [m.group(3)]))
            continue
        m = re.fullmatch(r"!\s*(%s)" % key_re, p)
        if m:
            reqs.append(("notexists", m.group(1), []))
            continue
        m = re.fullmatch(key_re, p)
        if m:
            reqs.append(("exists", p, []))
            continue
        raise ValueError("unable to parse requirement: %r" % p)
    return reqs


def selector_matches(reqs, labels):
    labels = labels or {}
    for op, k, vals in reqs:
        has = k in labels
        v = labels.get(k)
        if op == "eq" and not (has and v == vals[0]):
            return False
        if op == "ne" and has and v == vals[0]:
            return False
        if op == "in" and not (has and v in vals):
            return False
        if op == "notin" and has and v in vals:
            return False
        if op == "exists" and not has:
            return False
        if op == "notexists" and has:
            return False
    return True


def status(code, reason, message, extra_md=None):
    return {"kind": "Status", "apiVersion": "v1", "metadata": extra_md or {},
            "status": "Failure", "message": message, "reason": reason, "code": code}


# ------------------------------------------------------------------ the server

class _Watch:
    def __init__(self, resource, ns, reqs, idx):
        self.resource = resource
        self.ns = ns
        self.reqs = reqs
        self.idx = idx          # next history index to look at
        self.raw = []           # injected bytes to send as they are
        self.kill = None        # "drop" | "410"
        self.sock = None


class FakeK8s:
    def __init__(self, tls_dir=None, token="t0k3n", bookmark_interval=1.0, port=0,
                 host="127.0.0.1"):
        self.lock = threading.Condition()
        self.objs = {r: {} for r in RESOURCES}
        self.history = []       # (rv, resource, old, new)
        self.rv = 1000
        self.compacted = 0      # watches and continue tokens older than this: 410
        self.gone_mode = "event"
        self.expire_next_continue = False  # the next continue token gets 410 once
        self.endless_lists = set()  # resources whose lists never end (always a continue)
        self.tokens = {token} if token else set()
        self.bookmark_interval = bookmark_interval
        self.stalled = False
        self.watches = []
        self.conns = set()
        self.requests = []      # (method, path, query dict)
        self.tls_dir = tls_dir
        self.host = host
        self.port = port
        self.server = None
        self.up()

    # ---------------------------------------------------------------- control

    @property
    def url(self):
        return "%s://%s:%d" % ("https" if self.tls_dir else "http", self.host, self.port)

    def up(self):
        """(Re)starts listening on the same port."""
        fake = self

        class Handler(_Handler):
            pass
        Handler.fake = fake

        class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
            allow_reuse_address = True
            daemon_threads = True

            def get_request(self):
                s, a = self.socket.accept()
                if fake.tls_dir:
                    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                    ctx.load_cert_chain(os.path.join(fake.tls_dir, "server.crt"),
                                        os.path.join(fake.tls_dir, "server.key"))
                    ctx.load_verify_locations(os.path.join(fake.tls_dir, "ca.crt"))
                    ctx.verify_mode = ssl.CERT_OPTIONAL
                    s.settimeout(5)
                    s = ctx.wrap_socket(s, server_side=True)
                    s.settimeout(None)
                return s, a

            def handle_error(self, request, client_address):
                pass

        self.server = Server((self.host, self.port), Handler)
        self.port = self.server.server_address[1]
        t = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                             daemon=True)
        t.start()

    def down(self):
        """Stops listening and cuts every open connection."""
        if self.server is None:
            return
        self.server.shutdown()
        self.server.server_close()
        self.server = None
        with self.lock:
            for w in self.watches:
                w.kill = "drop"
            conns = list(self.conns)
            self.lock.notify_all()
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self.down()

    def set_token(self, token):
        with self.lock:
            self.tokens = {token}

    def apply(self, resource, obj):
        """Creates or replaces an object; returns the stored copy."""
        obj = copy.deepcopy(obj)
        md = obj.setdefault("metadata", {})
        md.setdefault("namespace", "default")
        key = (md["namespace"], md["name"])
        with self.lock:
            old = self.objs[resource].get(key)
            self.rv += 1
            md["resourceVersion"] = str(self.rv)
            if old:
                md["uid"] = old["metadata"]["uid"]
                md["creationTimestamp"] = old["metadata"]["creationTimestamp"]
            else:
                md.setdefault("uid", str(uuid.uuid4()))
                md["creationTimestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            obj["kind"], obj["apiVersion"] = RESOURCES[resource][1], RESOURCES[resource][3]
            self.objs[resource][key] = obj
            self.history.append((self.rv, resource, old, obj))
            self.lock.notify_all()
        return obj

    def get(self, resource, ns, name):
        with self.lock:
            return copy.deepcopy(self.objs[resource].get((ns, name)))

    def patch(self, resource, ns, name, fn):
        """Applies fn(obj) to a copy of the object and stores the result."""
        o = self.get(resource, ns, name)
        fn(o)
        return self.apply(resource, o)

    def delete(self, resource, ns, name):
        with self.lock:
            old = self.objs[resource].pop((ns, name), None)
            if old is None:
                return False
            self.rv += 1
            gone = copy.deepcopy(old)
            gone["metadata"]["resourceVersion"] = str(self.rv)
            self.history.append((self.rv, resource, old, None))
            self.lock.notify_all()
        return True

    def expire(self, mode="event", kill_open=True):
        """Compacts history: every resourceVersion older than the current one
        becomes too old.
        Open watches get an ERROR 410 event and end (kill_open); later watches
        from an old version get 410 as an ERROR event (mode "event") or as the
        HTTP status (mode "http"); continue tokens expire too."""
        with self.lock:
            self.compacted = self.rv
            self.gone_mode = mode
            if kill_open:
                for w in self.watches:
                    w.kill = "410"
            self.lock.notify_all()

    def endless(self, resource, on=True):
        """Lists of <resource> never end: every page, even past the last
        object, carries a continue token (a broken or hostile server)."""
        with self.lock:
            if on:
                self.endless_lists.add(resource)
            else:
                self.endless_lists.discard(resource)

    def stall(self, on=True):
        """Open watches (and new ones) send nothing, not even bookmarks."""
        with self.lock:
            self.stalled = on
            self.lock.notify_all()

    def drop(self):
        """Cuts every open watch connection (no terminating chunk)."""
        with self.lock:
            for w in self.watches:
                w.kill = "drop"
            self.lock.notify_all()

    def inject(self, data, resource=None):
        """Writes raw bytes (e.g. a malformed or oversized line) into every
        open watch stream (of <resource> if given). Returns the count."""
        if isinstance(data, str):
            data = data.encode()
        n = 0
        with self.lock:
            for w in self.watches:
                if resource is None or w.resource == resource:
                    w.raw.append(data)
                    n += 1
            self.lock.notify_all()
        return n

    def open_watches(self, resource=None):
        with self.lock:
            return sum(1 for w in self.watches if resource is None or w.resource == resource)

    def count(self, pred):
        with self.lock:
            return sum(1 for r in self.requests if pred(*r))

    def lists(self, resource):
        return self.count(lambda m, p, q: p.endswith("/" + resource) and "watch" not in q)

    def watch_count(self, resource):
        return self.count(lambda m, p, q: p.endswith("/" + resource) and "watch" in q)

    # ---------------------------------------------------------------- serving

    def _filter(self, resource, ns, reqs):
        out = []
        for (ons, name), o in sorted(self.objs[resource].items()):
            if ns and ons != ns:
                continue
            if selector_matches(reqs, o["metadata"].get("labels")):
                out.append(o)
        return out

    def _event_for(self, w, entry):
        rv, resource, old, new = entry
        if resource != w.resource:
            return None
        probe = new or old
        if w.ns and probe["metadata"]["namespace"] != w.ns:
            return None
        om = old is not None and selector_matches(w.reqs, old["metadata"].get("labels"))
        nm = new is not None and selector_matches(w.reqs, new["metadata"].get("labels"))
        if new is None:
            if not om:
                return None
            o = copy.deepcopy(old)
            o["metadata"]["resourceVersion"] = str(rv)
            return {"type": "DELETED", "object": o}
        if old is None:
            return {"type": "ADDED", "object": new} if nm else None
        if om and nm:
            return {"type": "MODIFIED", "object": new}
        if om and not nm:
            # Leaving the selector: DELETED with the previous content at the event's version.
            o = copy.deepcopy(old)
            o["metadata"]["resourceVersion"] = str(rv)
            return {"type": "DELETED", "object": o}
        if nm:
            return {"type": "ADDED", "object": new}
        return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake = None

    def log_message(self, *a):
        pass

    def setup(self):
        super().setup()
        with self.fake.lock:
            self.fake.conns.add(self.connection)

    def finish(self):
        try:
            super().finish()
        except OSError:
            pass
        with self.fake.lock:
            self.fake.conns.discard(self.connection)

    def _send(self, code, obj, ctype="application/json"):
        body = json.dumps(obj).encode() if not isinstance(obj, bytes) else obj
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _authorized(self):
        h = self.headers.get("Authorization", "")
        with self.fake.lock:
            if h.startswith("Bearer ") and h[7:].strip() in self.fake.tokens:
                return True
        if isinstance(self.connection, ssl.SSLSocket):
            try:
                if self.connection.getpeercert():
                    return True
            except (ValueError, OSError):
                pass
        return False

    def do_POST(self):
        f = self.fake
        u = urlsplit(self.path)
        if not u.path.startswith("/_fake/"):
            return self._send(405, status(405, "MethodNotAllowed", "read-only fake"))
        n = int(self.headers.get("Content-Length", "0"))
        args = json.loads(self.rfile.read(n) or b"{}")
        fn = getattr(f, u.path[7:], None)
        if fn is None or u.path[7:].startswith("_"):
            return self._send(404, {"error": "no such control"})
        if "data" in args and isinstance(args["data"], str) and args.get("b64"):
            args["data"] = base64.b64decode(args.pop("data"))
            args.pop("b64", None)
        res = fn(**args)
        return self._send(200, {"result": res if isinstance(res, (int, bool, dict, type(None)))
                                else str(res)})

    def do_GET(self):
        f = self.fake
        u = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(u.query, keep_blank_values=True).items()}
        path = u.path.rstrip("/") or "/"
        with f.lock:
            f.requests.append(("GET", path, q))
        if path == "/version":
            return self._send(200, {"major": "1", "minor": "30", "gitVersion": "v1.30.0-fake",
                                    "platform": "linux/amd64"})
        if not self._authorized():
            return self._send(401, status(401, "Unauthorized", "Unauthorized"))
        if path == "/api":
            return self._send(200, {"kind": "APIVersions", "versions": ["v1"],
                                    "serverAddressByClientCIDRs": [
                                        {"clientCIDR": "0.0.0.0/0",
                                         "serverAddress": "%s:%d" % (f.host, f.port)}]})
        if path == "/apis":
            groups = []
            for gvs in DISCOVERY:
                if "/" in gvs:
                    gv = {"groupVersion": gvs, "version": gvs.split("/")[1]}
                    groups.append({"name": gvs.split("/")[0], "versions": [gv],
                                   "preferredVersion": gv})
            return self._send(200, {"kind": "APIGroupList", "apiVersion": "v1",
                                    "groups": groups})
        if path == "/api/v1":
            return self._send(200, _resource_list("v1"))
        if path.startswith("/apis/") and path[6:] in DISCOVERY:
            return self._send(200, _resource_list(path[6:]))
        for res, (prefix, kind, list_kind, api_version) in RESOURCES.items():
            m = re.fullmatch(re.escape(prefix) + r"(?:/namespaces/([^/]+))?/" + res +
                             r"(?:/([^/]+))?", path)
            if m:
                return self._resource(res, m.group(1), m.group(2), q)
        return self._send(404, status(404, "NotFound", "the server could not find the "
                                                       "requested resource"))

    def _resource(self, res, ns, name, q):
        f = self.fake
        prefix, kind, list_kind, api_version = RESOURCES[res]
        if name:
            o = f.get(res, ns, name)
            if o is None:
                return self._send(404, status(404, "NotFound", '%s "%s" not found' % (res, name)))
            return self._send(200, o)
        try:
            reqs = parse_selector(q.get("labelSelector", ""))
        except ValueError as e:
            return self._send(400, status(400, "BadRequest", str(e)))
        if q.get("watch") in ("true", "1"):
            return self._watch(res, ns, reqs, q)
        limit = int(q.get("limit", "0") or 0)
        with f.lock:
            items = f._filter(res, ns, reqs)
            rv = str(f.rv)
            start = 0
            if q.get("continue"):
                try:
                    tok = json.loads(base64.b64decode(q["continue"]))
                except ValueError:
                    return self._send(400, status(400, "BadRequest", "invalid continue token"))
                if tok["rv"] < f.compacted or f.expire_next_continue:
                    f.expire_next_continue = False
                    return self._send(410, status(
                        410, "Expired", "The provided continue parameter is too old to display "
                        "a consistent list result. You can start a new list without the continue "
                        "parameter.", {"continue": q["continue"]}))
                rv = str(tok["rv"])
                start = tok["start"]
            md = {"resourceVersion": rv}
            page = items[start:]
            endless = res in f.endless_lists
            if (limit and len(page) > limit) or endless:
                step = limit or max(len(page), 1)
                page = page[:step]
                md["continue"] = base64.b64encode(json.dumps(
                    {"rv": int(rv), "start": start + step}).encode()).decode()
                md["remainingItemCount"] = max(len(items) - start - step, 0)
            body = {"kind": list_kind, "apiVersion": api_version, "metadata": md,
                    "items": [{k: v for k, v in o.items() if k not in ("kind", "apiVersion")}
                              for o in page]}
        return self._send(200, body)

    def _chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _watch(self, res, ns, reqs, q):
        f = self.fake
        rv = q.get("resourceVersion", "")
        timeout = float(q.get("timeoutSeconds", "1800") or 1800)
        bookmarks = q.get("allowWatchBookmarks") in ("true", "1")
        with f.lock:
            gone = rv not in ("", "0") and int(rv) < f.compacted
            mode = f.gone_mode
            initial = []
            if rv in ("", "0"):
                initial = [{"type": "ADDED", "object": o} for o in f._filter(res, ns, reqs)]
                idx = len(f.history)
            else:
                idx = next((i for i, e in enumerate(f.history) if e[0] > int(rv)),
                           len(f.history))
        expired = status(410, "Expired", "too old resource version: %s (%d)" % (rv, f.compacted))
        if gone and mode == "http":
            return self._send(410, expired)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.close_connection = True
        w = _Watch(res, ns, reqs, idx)
        w.sock = self.connection
        end = time.time() + timeout
        next_bm = time.time() + f.bookmark_interval
        try:
            if gone:
                self._chunk(json.dumps({"type": "ERROR", "object": expired}).encode() + b"\n")
                self._chunk(b"")
                return
            for ev in initial:
                self._chunk(json.dumps(ev).encode() + b"\n")
            with f.lock:
                f.watches.append(w)
            while True:
                out = []
                with f.lock:
                    if w.kill is None and (f.stalled or (w.idx >= len(f.history) and not w.raw)):
                        f.lock.wait(0.05)
                    if w.kill == "drop":
                        break
                    if w.kill == "410":
                        out.append(json.dumps({"type": "ERROR", "object": expired}).encode() +
                                   b"\n")
                    elif not f.stalled:
                        while w.idx < len(f.history):
                            ev = f._event_for(w, f.history[w.idx])
                            w.idx += 1
                            if ev:
                                out.append(json.dumps(ev).encode() + b"\n")
                        out.extend(w.raw)
                        w.raw = []
                        now = time.time()
                        if bookmarks and now >= next_bm:
                            next_bm = now + f.bookmark_interval
                            out.append(json.dumps({"type": "BOOKMARK", "object": {
                                "kind": RESOURCES[res][1], "apiVersion": RESOURCES[res][3],
                                "metadata": {"resourceVersion": str(f.rv)}}}).encode() + b"\n")
                    stalled = f.stalled
                for data in out:
                    # Big injected blobs go out in pieces, as a real stream would.
                    for i in range(0, len(data), 65536):
                        self._chunk(data[i:i + 65536])
                if w.kill == "410":
                    self._chunk(b"")
                    break
                if not stalled and time.time() >= end:
                    self._chunk(b"")
                    break
        except OSError:
            pass
        finally:
            with f.lock:
                if w in f.watches:
                    f.watches.remove(w)
            if w.kill == "drop":
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


# ------------------------------------------------------------------ helpers

def make_pki(d):
    """A CA, a server certificate for 127.0.0.1/localhost and a client
    certificate (CN=watcher), all PEM, in directory <d>."""
    def run(*a):
        subprocess.run(a, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.makedirs(d, exist_ok=True)
    p = lambda n: os.path.join(d, n)  # noqa: E731
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", "/CN=fake-k8s-ca", "-keyout", p("ca.key"), "-out", p("ca.crt"))
    with open(p("san.ext"), "w") as fh:
        fh.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for who, subj, ext in (("server", "/CN=127.0.0.1", True), ("client", "/CN=watcher", False)):
        run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", subj,
            "-keyout", p(who + ".key"), "-out", p(who + ".csr"))
        args = ["openssl", "x509", "-req", "-in", p(who + ".csr"), "-CA", p("ca.crt"),
                "-CAkey", p("ca.key"), "-CAcreateserial", "-days", "2", "-out", p(who + ".crt")]
        if ext:
            args += ["-extfile", p("san.ext")]
        run(*args)
    return d


def b64file(path):
    with open(path, "rb") as fh:
        return base64.b64encode(fh.read()).decode()


def write_kubeconfig(path, server, token=None, ca_file=None, ca_data=None, insecure=False,
                     cert_file=None, key_file=None, cert_data=None, key_data=None,
                     context="fake", namespace="default", extra_contexts=()):
    """Writes a kubeconfig shaped like the ones kubectl writes (block YAML)."""
    lines = ["apiVersion: v1", "kind: Config", "preferences: {}",
             "current-context: %s" % context, "clusters:", "- cluster:"]
    if ca_data:
        lines.append("    certificate-authority-data: %s" % ca_data)
    if ca_file:
        lines.append("    certificate-authority: %s" % ca_file)
    if insecure:
        lines.append("    insecure-skip-tls-verify: true")
    lines += ["    server: %s" % server, "  name: fake-cluster", "contexts:"]
    for name in (context,) + tuple(extra_contexts):
        lines += ["- context:", "    cluster: fake-cluster", "    namespace: %s" % namespace,
                  "    user: %s-user" % name, "  name: %s" % name]
    lines.append("users:")
    for name in (context,) + tuple(extra_contexts):
        lines += ["- name: %s-user" % name, "  user:"]
        if token:
            lines.append("    token: %s" % (token if name == context else "wrong-" + token))
        if cert_file:
            lines.append("    client-certificate: %s" % cert_file)
        if key_file:
            lines.append("    client-key: %s" % key_file)
        if cert_data:
            lines.append("    client-certificate-data: %s" % cert_data)
        if key_data:
            lines.append("    client-key-data: %s" % key_data)
        if not (token or cert_file or cert_data):
            lines.append("    {}")
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return path


def service(name, ns="default", weight=None, labels=None, annotations=None, ports=None,
            cluster_ip="10.43.0.10", selector_label=True):
    """A Service like the demo's: labelled llamaedge/target=true, weight annotation."""
    lab = {"llamaedge/target": "true"} if selector_label else {}
    lab.update(labels or {})
    ann = dict(annotations or {})
    if weight is not None:
        ann["llamaedge/weight"] = str(weight)
    return {"metadata": {"name": name, "namespace": ns, "labels": lab, "annotations": ann},
            "spec": {"ports": ports or [{"protocol": "TCP", "port": 8080, "targetPort": 8080}],
                     "selector": {"app": name}, "clusterIP": cluster_ip,
                     "clusterIPs": [cluster_ip], "type": "ClusterIP"}}


def endpoint(ip, pod, ready=True, serving=None, terminating=None):
    cond = {"ready": ready}
    cond["serving"] = ready if serving is None else serving
    if terminating is not None:
        cond["terminating"] = terminating
    return {"addresses": [ip], "conditions": cond, "nodeName": "node-1",
            "targetRef": {"kind": "Pod", "namespace": "default", "name": pod}}


def endpoint_slice(svc, name, endpoints, port, ns="default", port_name="",
                   manager="endpointslice-controller.k8s.io", owner=True, address_type="IPv4"):
    """An EndpointSlice of Service <svc> as the controller writes it (labels
    and an ownerReference to the Service). manager=None leaves the managed-by
    label out, owner=False the ownerReference (a hand-made slice), owner="x"
    names another Service as the owner."""
    labels = {"kubernetes.io/service-name": svc}
    if manager:
        labels["endpointslice.kubernetes.io/managed-by"] = manager
    md = {"name": name, "namespace": ns, "generateName": svc + "-", "labels": labels}
    if owner:
        md["ownerReferences"] = [{"apiVersion": "v1", "kind": "Service",
                                  "name": svc if owner is True else owner,
                                  "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, ns + "/" + svc)),
                                  "controller": True, "blockOwnerDeletion": True}]
    return {"metadata": md, "addressType": address_type, "endpoints": endpoints,
            "ports": [{"name": port_name, "protocol": "TCP", "port": port}]}


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--tls", help="directory for a generated CA + certificates (HTTPS)")
    ap.add_argument("--token", default="t0k3n")
    a = ap.parse_args()
    if a.tls:
        make_pki(a.tls)
    fk = FakeK8s(tls_dir=a.tls, token=a.token, port=a.port)
    print("listening on %s:%d" % (fk.host, fk.port), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        sys.exit(0)
