#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""How the watcher finds and authenticates to the API server, over HTTPS
with a generated CA: in-cluster config (service-account token, ca.crt and
namespace files, KUBERNETES_SERVICE_HOST/PORT) with a 401 answered by
re-reading a rotated token file; kubeconfig with a client certificate
(-data), a CA file, insecure-skip-tls-verify, --context, $KUBECONFIG; and an
untrusted certificate refused without pushing anything."""
import os
import shutil
import time

from harness import deadline, done, is_, lb, ok
from fakek8s import FakeK8s, b64file, make_pki, service, write_kubeconfig
from watchlib import lb_url, metric, path, wait_backends, watcher, weights

deadline(60)
pki = make_pki(path("pki"))
fk = FakeK8s(tls_dir=pki, token="token-1", bookmark_interval=0.5)
fk.apply("services", service("a", weight=2, cluster_ip="10.43.0.1"))


def fresh(name, *args, kc=None, env=None, expect=None, timeout=5):
    """A new balancer fed by a new watcher; returns (balancer, watcher, backends)."""
    b = lb()
    w = watcher(kc, "--mode", "service", "--lb", lb_url(b), "--backoff-max", "1s", *args, env=env)
    cur, dt = wait_backends(b, lambda s: weights(s) == (expect or {"default/a": 2}),
                            timeout=timeout)
    return b, w, cur, dt


# In-cluster: HTTPS, CA from the service-account dir, token file.
sa = path("sa")
os.makedirs(sa)
shutil.copy(os.path.join(pki, "ca.crt"), os.path.join(sa, "ca.crt"))
with open(os.path.join(sa, "token"), "w") as fh:
    fh.write("token-1\n")
with open(os.path.join(sa, "namespace"), "w") as fh:
    fh.write("default\n")
env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(fk.port),
       "KUBECONFIG": ""}
b, w, cur, dt = fresh("incluster", "--sa-dir", sa, env=env)
ok(dt is not None, "in-cluster config: HTTPS verified with ca.crt, token file")
first = [r for r in fk.requests if r[1] == "/api/v1/services"]
ok(len(first) >= 2, "listed and watching")

# Token rotation: the server now wants token-2; open streams are cut.
fk.set_token("token-2")
fk.drop()
time.sleep(1.5)
ok(metric(w, "llamalb_watcher_api_errors_total") >= 1, "401 counted")
ok("HTTP 401" in w.stderr_text(), "401 logged")
is_(weights(wait_backends(b, lambda s: True)[0]), {"default/a": 2}, "set kept during 401s")
with open(os.path.join(sa, "token"), "w") as fh:
    fh.write("token-2\n")
fk.apply("services", service("a", weight=6, cluster_ip="10.43.0.1"))
cur, dt = wait_backends(b, lambda s: weights(s) == {"default/a": 6}, timeout=5)
ok(dt is not None, "token file rewritten: re-read after a 401, change arrives (%.1f s)" % (dt or 0))
ok("bearer token reloaded" in w.stderr_text(), "reload logged")
w.stop()
fk.apply("services", service("a", weight=2, cluster_ip="10.43.0.1"))

# kubeconfig: client certificate and key as -data, CA as a file, no token.
kc = write_kubeconfig(path("kc-cert"), fk.url, ca_file=os.path.join(pki, "ca.crt"),
                      cert_data=b64file(os.path.join(pki, "client.crt")),
                      key_data=b64file(os.path.join(pki, "client.key")))
b, w, cur, dt = fresh("cert", kc=kc)
ok(dt is not None, "kubeconfig: client-certificate-data + client-key-data, certificate-authority")
w.stop()

# kubeconfig: client certificate files, CA data.
kc = write_kubeconfig(path("kc-certfile"), fk.url, ca_data=b64file(os.path.join(pki, "ca.crt")),
                      cert_file=os.path.join(pki, "client.crt"),
                      key_file=os.path.join(pki, "client.key"))
b, w, cur, dt = fresh("certfile", kc=kc)
ok(dt is not None, "kubeconfig: client-certificate/client-key files, certificate-authority-data")
w.stop()

# insecure-skip-tls-verify with a token.
kc = write_kubeconfig(path("kc-insecure"), fk.url, token="token-2", insecure=True)
b, w, cur, dt = fresh("insecure", kc=kc)
ok(dt is not None, "kubeconfig: insecure-skip-tls-verify + token")
w.stop()

# No CA at all: the self-signed server is refused, nothing is pushed.
kc = write_kubeconfig(path("kc-noca"), fk.url, token="token-2")
b, w, cur, dt = fresh("noca", kc=kc, timeout=2)
ok(dt is None and not cur, "untrusted server certificate: refused, balancer left alone")
ok("certificate" in w.stderr_text().lower() or "SSL" in w.stderr_text(), "TLS failure logged")
ok(w.alive(), "watcher keeps retrying")
w.stop()

# --context picks the user; the current context's user has a wrong token.
kc = write_kubeconfig(path("kc-ctx"), fk.url, token="token-2", insecure=True,
                      context="good", extra_contexts=("bad",))
with open(kc) as fh:
    text = fh.read().replace("current-context: good", "current-context: bad")
with open(kc, "w") as fh:
    fh.write(text)
b, w, cur, dt = fresh("ctx-bad", kc=kc, timeout=2)
ok(dt is None and "HTTP 401" in w.stderr_text(), "current-context with a wrong token: 401")
w.stop()
b, w, cur, dt = fresh("ctx-good", "--context", "good", kc=kc)
ok(dt is not None, "--context good: works")
w.stop()

# $KUBECONFIG when no --kubeconfig is given (and not in a cluster).
b, w, cur, dt = fresh("env", env={"KUBECONFIG": path("kc-insecure"),
                                  "KUBERNETES_SERVICE_HOST": ""})
ok(dt is not None, "$KUBECONFIG is used")
ok("kc-insecure" in w.stderr_text(), "...and named in the log")
w.stop()
fk.close()
done()
