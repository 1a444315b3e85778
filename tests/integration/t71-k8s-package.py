#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The Kubernetes package (deploy/kustomize, deploy/grafana; README
"Operating llamalb"): `kubectl kustomize` renders the base, the model
bundles and every overlay, `kubectl apply --dry-run=client` accepts each
rendering (against the fake API server, tests/integration/fakek8s.py), and
what a cluster admin's review asks for is in them: probes, disruption
budget, anti-affinity, locked-down pods, network policies, RBAC reduced to
the watcher's calls. Then every series the Grafana dashboard queries is
checked against what a running llamalb exports after some traffic."""
import json
import os
import re
import shutil
import subprocess

try:
    import yaml
except ImportError:  # python3-yaml (scripts/deps.sh build installs it)
    print("1..0 # SKIP python3-yaml not installed")
    raise SystemExit(0)

import fakek8s
from harness import chat, deadline, done, is_, lb, note, ok, request, sim
from watchlib import kubeconfig, path

deadline(120)
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
KZ = os.path.join(ROOT, "deploy", "kustomize")
KUBECTL = shutil.which("kubectl")
DIRS = ["base", "models/sim", "models/wasmedge", "overlays/sim", "overlays/wasmedge",
        "overlays/production", "overlays/monitoring"]

rendered = {}
if not KUBECTL:
    ok(True, "# SKIP kubectl not installed: the overlays are not rendered")
else:
    # kubectl sends its token over TLS only: the fake with its own CA.
    pki = fakek8s.make_pki(path("pki"))
    fk = fakek8s.FakeK8s(tls_dir=pki, bookmark_interval=0.5)
    kc = kubeconfig(fk, name="kc-t71", ca_data=fakek8s.b64file(os.path.join(pki, "ca.crt")))
    for d in DIRS:
        r = subprocess.run([KUBECTL, "kustomize", os.path.join(KZ, d)], capture_output=True,
                           text=True, timeout=60)
        if not ok(r.returncode == 0, "kubectl kustomize deploy/kustomize/%s" % d):
            note(r.stderr)
            continue
        docs = [x for x in yaml.safe_load_all(r.stdout) if x]
        rendered[d] = docs
        f = path("render-%s.yaml" % d.replace("/", "-"))
        with open(f, "w") as fh:
            fh.write(r.stdout)
        a = subprocess.run([KUBECTL, "--kubeconfig", kc, "apply", "--dry-run=client",
                            "--validate=false", "-f", f], capture_output=True, text=True, timeout=60)
        is_((a.returncode, a.stdout.count("(dry run)")), (0, len(docs)),
            "kubectl apply --dry-run=client accepts %s: %d objects" % (d, len(docs)))
        if a.returncode:
            note(a.stderr)
    fk.close()


def objs(d, kind):
    return [x for x in rendered.get(d, []) if x["kind"] == kind]


def one(d, kind, name):
    return next((x for x in objs(d, kind) if x["metadata"]["name"] == name), None)


def pod(dep):
    return dep["spec"]["template"]["spec"]


PROM = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}
WATCHER_PODS = {"podSelector": {"matchLabels": {"app": "llamalb-watcher"}}}

for d in ("overlays/sim", "overlays/wasmedge", "overlays/production"):
    if d not in rendered:
        continue
    lbd, wd = one(d, "Deployment", "llamalb"), one(d, "Deployment", "llamalb-watcher")
    for dep in (lbd, wd):
        ps, c = pod(dep), pod(dep)["containers"][0]
        name = "%s: %s" % (d, dep["metadata"]["name"])
        sc, csc = ps.get("securityContext", {}), c.get("securityContext", {})
        ok(sc.get("runAsNonRoot") is True and sc.get("seccompProfile") == {"type": "RuntimeDefault"},
           name + ": non-root, seccomp RuntimeDefault")
        ok(csc.get("readOnlyRootFilesystem") is True and csc.get("allowPrivilegeEscalation") is False
           and csc.get("capabilities") == {"drop": ["ALL"]},
           name + ": read-only root, no privilege escalation, every capability dropped")
        ok(all(p in c for p in ("startupProbe", "readinessProbe", "livenessProbe")),
           name + ": startup, readiness and liveness probes")
        res = c.get("resources", {})
        ok(res.get("requests", {}).get("memory") and res.get("limits", {}).get("memory"),
           name + ": memory requests and limits")
    is_(pod(lbd).get("automountServiceAccountToken"), False,
        "%s: no service-account token in llamalb's pods (it calls no API)" % d)
    aff = pod(lbd).get("affinity", {}).get("podAntiAffinity", {})
    ok(aff, "%s: pod anti-affinity between llamalb replicas" % d)
    pdb = objs(d, "PodDisruptionBudget")
    ok(len(pdb) == 1 and pdb[0]["spec"]["selector"]["matchLabels"] ==
       lbd["spec"]["selector"]["matchLabels"], "%s: a PodDisruptionBudget for llamalb" % d)
    # Network policies: who reaches which port of which pods.
    reach = {}
    for np in objs(d, "NetworkPolicy"):
        if "Ingress" not in np["spec"].get("policyTypes", ["Ingress"]):
            continue
        app = np["spec"]["podSelector"]["matchLabels"]["app"]
        for rule in np["spec"].get("ingress", []):
            for p in rule.get("ports", []):
                reach.setdefault((app, p["port"]), []).extend(rule.get("from", ["anyone"]))
    is_(sorted(map(json.dumps, reach.get(("llamalb", 8081), []))),
        sorted(map(json.dumps, [WATCHER_PODS, PROM])),
        "%s: only the watcher (API) and Prometheus (/metrics) reach llamalb's admin port" % d)
    is_(reach.get(("llamalb", 8080)), ["anyone"], "%s: the public port is open" % d)
    is_(reach.get(("llamalb-watcher", 8090)), [PROM],
        "%s: only Prometheus reaches the watcher's metrics" % d)
    # RBAC: what the watcher calls, nothing more, bound to its account.
    roles = objs(d, "ClusterRole") + objs(d, "Role")
    is_(sorted((g, r, tuple(rule["verbs"])) for x in roles for rule in x["rules"]
               for g in rule["apiGroups"] for r in rule["resources"]),
        [("", "services", ("list", "watch")), ("discovery.k8s.io", "endpointslices", ("list", "watch"))],
        "%s: RBAC is list/watch on Services and EndpointSlices, nothing else" % d)
    sa = objs(d, "ServiceAccount")[0]["metadata"]
    rb = objs(d, "ClusterRoleBinding")[0]
    is_((rb["subjects"][0]["name"], rb["subjects"][0]["namespace"], pod(wd)["serviceAccountName"]),
        (sa["name"], sa["namespace"], sa["name"]), "%s: the binding names the watcher's account" % d)
    svc = one(d, "Service", "llamalb")
    lbsvc = [a for a in pod(wd)["containers"][0]["args"] if a.startswith("--lb-service=")]
    is_(lbsvc, ["--lb-service=%s/llamalb" % svc["metadata"]["namespace"]],
        "%s: the watcher follows the llamalb Service of its namespace" % d)

d = "overlays/production"
if d in rendered:
    ns = one(d, "Namespace", "llamalb")
    is_(ns and ns["metadata"]["labels"].get("pod-security.kubernetes.io/enforce"), "restricted",
        "production: the namespace enforces Pod Security 'restricted'")
    ok(all(x["metadata"].get("namespace") == "llamalb" for x in rendered[d]
           if x["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding", "PriorityClass")),
       "production: every namespaced object in namespace llamalb")
    lbd = one(d, "Deployment", "llamalb")
    is_(lbd["spec"]["replicas"], 3, "production: three replicas")
    ok(pod(lbd)["affinity"]["podAntiAffinity"].get("requiredDuringSchedulingIgnoredDuringExecution"),
       "production: replicas on distinct nodes (required anti-affinity)")
    ok(all(pod(x).get("priorityClassName") == "llamalb" for x in objs(d, "Deployment")),
       "production: a priority class")
    ok(len([x for x in objs(d, "NetworkPolicy") if "Egress" in x["spec"]["policyTypes"]]) == 2,
       "production: egress policies for both programs")
d = "overlays/monitoring"
if d in rendered:
    pm = {x["metadata"]["name"]: x for x in objs(d, "PodMonitor")}
    lbd = one(d, "Deployment", "llamalb")
    ports = {p["name"] for p in pod(lbd)["containers"][0]["ports"]}
    e = pm.get("llamalb", {}).get("spec", {}).get("podMetricsEndpoints", [{}])[0]
    ok(e.get("port") in ports and e.get("path") == "/metrics" and
       e.get("authorization", {}).get("credentials", {}).get("name") == "llamalb-admin-token",
       "monitoring: a PodMonitor scrapes llamalb's admin port with the admin token")
    ok("llamalb-watcher" in pm, "monitoring: and one for the watcher")

# ---- the Grafana dashboard queries only series llamalb exports
with open(os.path.join(ROOT, "deploy", "grafana", "llamalb.json")) as fh:
    dash = json.load(fh)
exprs = []


def walk(panels):
    for p in panels:
        exprs.extend(t["expr"] for t in p.get("targets", []))
        walk(p.get("panels", []))


walk(dash["panels"])
exprs += [v.get("query", "") for v in dash["templating"]["list"] if v["type"] == "query"]
wanted = set()
for e in exprs:
    wanted.update(re.findall(r"\bllamalb_[a-z0-9_]+", e))
ok(len(exprs) >= 20 and len(wanted) >= 30, "the dashboard queries %d expressions over %d series"
   % (len(exprs), len(wanted)))
for topic, pat in (("traffic", "llamalb_requests_total"), ("errors", "llamalb_local_responses_total"),
                   ("TTFT", "llamalb_model_ttft_seconds_bucket"),
                   ("tokens", "llamalb_model_completion_tokens_total"), ("queue", "llamalb_queue_length"),
                   ("per backend", "llamalb_backend_inflight"), ("per model", "llamalb_model_requests_total")):
    ok(pat in wanted, "the dashboard shows %s (%s)" % (topic, pat))

s1 = sim("--ttft-ms", "5", "--tokens-per-sec", "500", name="m1")
p = lb("--backend", "a=%s,models=m1" % s1.addr, "--queue-timeout", "1s", "--slow-start", "1s")
for i in range(4):
    chat(p.addr, model="m1", stream=bool(i % 2), extra={"max_tokens": 3})
chat(p.addr, model="m1", extra={"max_tokens": 3}, headers={"X-Sim-Fault": "status=500"})
request(p.addr, "GET", "/v1/models")
r = request(p.admin, "GET", "/metrics")
is_(r.status, 200, "GET /metrics after some traffic")
exported = set()
for line in r.body.decode().splitlines():
    m = re.match(r"^# TYPE (\S+) (\S+)", line)
    if m:
        name, typ = m.groups()
        exported.add(name)
        if typ == "histogram":
            exported.update(name + x for x in ("_bucket", "_sum", "_count"))
    elif line and not line.startswith("#"):
        exported.add(re.split(r"[{ ]", line, 1)[0])
missing = sorted(wanted - exported)
is_(missing, [], "every series the dashboard queries is one llamalb exports")
ok(dash["uid"] and dash["title"] and all(p.get("gridPos") for p in dash["panels"]),
   "the dashboard has a uid, a title and laid-out panels")
done()
