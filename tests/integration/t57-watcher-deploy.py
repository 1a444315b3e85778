#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""deploy/kustomize/ (the base's and the model servers' manifests) checked without a cluster: every manifest goes through
`kubectl apply --dry-run=client` against the fake API server, the
cross-references are checked (selectors, ports, probes, RBAC, Secret, the
demo's Service shape), llamalb's arguments pass `llamalb -t`, and then the
manifests are "run": the Services of models-sim.yaml go into the fake with
one EndpointSlice per pod, the pods are llamalb-sim processes started with
the manifest's arguments, and llamalb and llamalb-watcher run with theirs
(addresses and file paths adapted). The demo's requests then flow: 10
sequential and 10 concurrent chat completions, split by weight."""
import collections
import os
import shutil
import socket
import subprocess
import threading

try:
    import yaml
except ImportError:  # python3-yaml (scripts/deps.sh build installs it)
    print("1..0 # SKIP python3-yaml not installed")
    raise SystemExit(0)

from harness import LB, SIM, chat, deadline, done, is_, note, ok, spawn
from fakek8s import FakeK8s, b64file, endpoint, endpoint_slice, make_pki
from watchlib import kubeconfig, path, wait_backends, watcher, weights

deadline(60)
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
K8S = os.path.join(ROOT, "deploy", "kustomize")
# Where each manifest lives in the kustomize tree (t71 renders the overlays).
FILES = {"llamalb.yaml": "base/llamalb.yaml", "watcher.yaml": "base/watcher.yaml",
         "models-sim.yaml": "models/sim/models-sim.yaml",
         "models-wasmedge.yaml": "models/wasmedge/models-wasmedge.yaml"}


def load(name):
    with open(os.path.join(K8S, FILES[name])) as fh:
        return [d for d in yaml.safe_load_all(fh) if d]


docs = {f: load(f) for f in ("llamalb.yaml", "watcher.yaml", "models-sim.yaml",
                             "models-wasmedge.yaml")}


def find(f, kind, name):
    return next(d for d in docs[f] if d["kind"] == kind and d["metadata"]["name"] == name)


def container(dep):
    return dep["spec"]["template"]["spec"]["containers"][0]


# kubectl maps and accepts every object (discovery from the fake; no openapi).
pki = make_pki(path("pki"))
fk = FakeK8s(tls_dir=pki, bookmark_interval=0.5)
kc = kubeconfig(fk, ca_data=b64file(os.path.join(pki, "ca.crt")))
KUBECTL = shutil.which("kubectl")
for f, ds in docs.items():
    if not KUBECTL:
        note("kubectl not installed: dry-run of %s skipped" % f)
        continue
    r = subprocess.run([KUBECTL, "--kubeconfig", kc, "apply", "--dry-run=client",
                        "--validate=false", "-f", os.path.join(K8S, FILES[f])],
                       capture_output=True, text=True, timeout=30)
    is_((r.returncode, r.stdout.count("created (dry run)")), (0, len(ds)),
        "kubectl apply --dry-run=client -f deploy/kustomize/%s: %d objects" % (FILES[f], len(ds)))
    if r.returncode:
        note(r.stderr)

# Cross-references.
for f, ds in docs.items():
    for d in ds:
        if d["kind"] == "Deployment":
            sel = d["spec"]["selector"]["matchLabels"]
            lab = d["spec"]["template"]["metadata"]["labels"]
            ok(all(lab.get(k) == v for k, v in sel.items()),
               "%s: Deployment %s selector matches its pods" % (f, d["metadata"]["name"]))
            c = container(d)
            names = {p["name"] for p in c.get("ports", [])}
            for pr in ("readinessProbe", "livenessProbe"):
                if pr in c:
                    ok(c[pr]["httpGet"]["port"] in names, "%s: %s %s on a named port" %
                       (f, d["metadata"]["name"], pr))
        if d["kind"] == "Service":
            deps = [x for x in ds if x["kind"] == "Deployment"]
            ok(any(all(x["spec"]["template"]["metadata"]["labels"].get(k) == v
                       for k, v in d["spec"]["selector"].items()) for x in deps),
               "%s: Service %s selects a Deployment's pods" % (f, d["metadata"]["name"]))
lbd, lbs = find("llamalb.yaml", "Deployment", "llamalb"), find("llamalb.yaml", "Service", "llamalb")
is_(lbd["spec"]["replicas"], 2, "llamalb: two replicas")
is_([p["port"] for p in lbs["spec"]["ports"]], [8080], "llamalb Service: only the public port")
c = container(lbd)
is_((c["readinessProbe"]["httpGet"]["path"], c["livenessProbe"]["httpGet"]["path"]),
    ("/readyz", "/healthz"), "readiness /readyz, liveness /healthz")
ok("/api/drain" in " ".join(c["lifecycle"]["preStop"]["exec"]["command"]), "preStop drains")
ok(lbd["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"] == "llamalb-admin-token",
   "admin token from a Secret, mounted as a file")
wd = find("watcher.yaml", "Deployment", "llamalb-watcher")
wargs = container(wd)["args"]
ok("--mode=endpoints" in wargs and "--lb-service=default/llamalb" in wargs,
   "watcher: --mode endpoints --lb-service default/llamalb")
public_port = next(a.split(":")[-1] for a in container(lbd)["args"] if a.startswith("--listen="))
ok("--follow-port=%s" % public_port in wargs,
   "watcher: --follow-port is the balancers' public port (%s): replicas schedule as one" % public_port)
role = find("watcher.yaml", "ClusterRole", "llamalb-watcher")
is_(sorted((r["apiGroups"][0], r["resources"][0], tuple(r["verbs"])) for r in role["rules"]),
    [("", "services", ("list", "watch")),
     ("discovery.k8s.io", "endpointslices", ("list", "watch"))],
    "ClusterRole: list/watch on services and endpointslices only (what the watcher calls)")
rb = find("watcher.yaml", "ClusterRoleBinding", "llamalb-watcher")
is_((rb["subjects"][0]["name"], wd["spec"]["template"]["spec"]["serviceAccountName"]),
    ("llamalb-watcher", "llamalb-watcher"), "binding and Deployment use the ServiceAccount")
for f in ("models-sim.yaml", "models-wasmedge.yaml"):
    svcs = {d["metadata"]["name"]: d for d in docs[f] if d["kind"] == "Service"}
    is_({n: (s["metadata"]["labels"]["llamaedge/target"],
             s["metadata"]["annotations"]["llamaedge/weight"]) for n, s in svcs.items()},
        {"llama-3-1b-low": ("true", "3"), "llama-3-3b-high": ("true", "1")},
        "%s: the demo's Services, labelled, weights 3 and 1" % f)
wl = find("models-wasmedge.yaml", "Deployment", "llama-3-1b-low")["spec"]["template"]["spec"]
ok(wl["runtimeClassName"] == "wasmedge" and
   wl["containers"][0]["env"][0]["value"].startswith("default:GGML:CPU:/models/"),
   "wasmedge: runtimeClassName and WASMEDGE_WASINN_PRELOAD")

# llamalb accepts its manifest arguments.
tok = path("token")
TOKEN = "8f3a" * 16  # llamalb wants at least 16 characters
with open(tok, "w") as fh:
    fh.write(TOKEN + "\n")
largs = [a.replace("/etc/llamalb/admin/token", tok).replace("$(POD_IP)", "127.0.0.1")
         for a in c["args"]]
ok("--admin-listen=$(POD_IP):8081" in c["args"] and
   any(e["name"] == "POD_IP" and e["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
       for e in c["env"]), "llamalb: the admin API listens on the pod IP only")
np = find("llamalb.yaml", "NetworkPolicy", "llamalb-admin")
admin_rules = [r for r in np["spec"]["ingress"] if any(p["port"] == 8081 for p in r["ports"])]
prom = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}
ok(sorted((r["from"] for r in admin_rules), key=len) ==
   [[{"podSelector": {"matchLabels": {"app": "llamalb-watcher"}}}], [prom]] and
   wd["spec"]["template"]["metadata"]["labels"]["app"] == "llamalb-watcher",
   "NetworkPolicy: only the watcher's pods (and Prometheus, for /metrics) reach the admin port")
r = subprocess.run([LB, "-t"] + largs, capture_output=True, text=True, timeout=10)
is_(r.returncode, 0, "llamalb -t accepts the manifest's arguments")

# Run it: pods are sims with the manifest's arguments.
fk.close()
fk = FakeK8s(bookmark_interval=0.5)
kc = kubeconfig(fk, name="kc-plain")
pods = []
for d in docs["models-sim.yaml"]:
    if d["kind"] == "Deployment":
        args = [a for a in container(d)["args"] if not a.startswith("--listen")]
        for i in range(d["spec"]["replicas"]):
            pods.append((d["metadata"]["name"], "%s-%d" % (d["metadata"]["name"], i),
                         spawn([SIM, "--listen", "127.0.0.1:0"] + args, name="pod")))
    else:
        fk.apply("services", d)
for svc, pod, p in pods:
    fk.apply("endpointslices", endpoint_slice(svc, pod, [endpoint("127.0.0.1", pod)], p.port,
                                              port_name="http"))
s = socket.socket()
s.bind(("127.0.0.2", 0))
aport = s.getsockname()[1]
s.close()
largs = [a for a in largs if not a.startswith(("--listen", "--admin-listen", "--workers"))]
b = spawn([LB, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.2:%d" % aport,
           "--workers", "1", "--health-interval", "0", "--backend-allow", "127.0.0.0/8"] + largs,
          name="llamalb", want_admin=True)
fk.apply("services", lbs)
fk.apply("endpointslices", endpoint_slice("llamalb", "llamalb-abc", [
    endpoint("127.0.0.2", "llamalb-0", ready=False)], 8080, port_name="http"))
wargs = [a.replace("/etc/llamalb/admin/token", tok) for a in wargs
         if not a.startswith(("--listen", "--lb-service"))]
w = watcher(kc, *(wargs + ["--lb-service", "default/llamalb:%d" % aport,
                          "--backend-allow", "127.0.0.0/8"]))
cur, dt = wait_backends(b, lambda s: len(s) == 3, token=TOKEN, timeout=5)
is_(weights(cur), {"default/llama-3-1b-low/llama-3-1b-low-0": 3,
                   "default/llama-3-1b-low/llama-3-1b-low-1": 3,
                   "default/llama-3-3b-high/llama-3-3b-high-0": 1},
    "one backend per pod, Service weights 3 and 1")
ok(all(v["max_inflight"] == 1 and v["models"] == [k.split("/")[1]] for k, v in cur.items()),
   "models and max-inflight annotations carried")

served = collections.Counter()
for i in range(10):
    r = chat(b.addr, content="", model="llama-3-1b", timeout=30)
    served[(r.status, r.json().get("model") if r.status == 200 else None)] += 1
note("10 sequential requests (model llama-3-1b): %r" % dict(served))
is_(sum(n for (st, _), n in served.items() if st == 200), 10, "10 sequential: all 200")
conc = collections.Counter()
lock = threading.Lock()


def one():
    r = chat(b.addr, content="Short answer: Tell me a fun fact", model="llama-3-1b", timeout=60)
    with lock:
        conc[(r.status, r.json().get("model") if r.status == 200 else None)] += 1


ts = [threading.Thread(target=one) for _ in range(10)]
[t.start() for t in ts]
[t.join(60) for t in ts]
note("10 concurrent requests: %r" % dict(conc))
is_(sum(n for (st, _), n in conc.items() if st == 200), 10, "10 concurrent: all 200")
ok(sum(n for (st, m), n in list(served.items()) + list(conc.items())
       if m == "llama-3-1b-low") > 10, "the low-cost Service takes most requests")

# kubectl annotate svc llama-3-3b-high llamaedge/weight=6 --overwrite
fk.patch("services", "default", "llama-3-3b-high",
         lambda o: o["metadata"]["annotations"].update({"llamaedge/weight": "6"}))
cur, dt = wait_backends(b, lambda s: weights(s).get("default/llama-3-3b-high/llama-3-3b-high-0")
                        == 6, token=TOKEN)
ok(dt is not None and dt < 1.0, "annotate weight=6: applied in %.0f ms" % ((dt or 9) * 1000))
fk.close()
done()
