#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The fake API server (fakek8s.py) behaves like a real one for kubectl:
discovery, HTTPS with a CA from the kubeconfig, bearer tokens, label
selectors of every form, pagination (--chunk-size uses limit/continue),
EndpointSlices, and `kubectl get -w` following a change. If kubectl is
missing the file is skipped."""
import json
import os
import shutil
import subprocess
import time

from harness import deadline, done, is_, note, ok
from fakek8s import FakeK8s, b64file, endpoint, endpoint_slice, make_pki, service
from watchlib import kubeconfig, path

deadline(60)
KUBECTL = shutil.which("kubectl")
if not KUBECTL:
    print("1..0 # SKIP kubectl not installed")
    raise SystemExit(0)

pki = make_pki(path("pki"))
fk = FakeK8s(tls_dir=pki)
kc = kubeconfig(fk, ca_data=b64file(os.path.join(pki, "ca.crt")))
fk.apply("services", service("llama-3-1b-low", weight=3, labels={"tier": "low"}))
fk.apply("services", service("llama-3-3b-high", weight=1, labels={"tier": "high"}))
fk.apply("services", service("unlabelled", selector_label=False))
fk.apply("services", service("llama-prod", ns="prod", weight=2, labels={"tier": "low"}))
fk.apply("endpointslices", endpoint_slice("llama-3-1b-low", "llama-3-1b-low-abcde",
                                          [endpoint("10.42.0.15", "low-1")], 8080))


def kubectl(*args, timeout=20):
    r = subprocess.run([KUBECTL, "--kubeconfig", kc] + list(args), capture_output=True,
                       text=True, timeout=timeout)
    if r.returncode != 0:
        note("kubectl %s: %s" % (" ".join(args), r.stderr.strip()[:500]))
    return r


r = kubectl("get", "services", "-A", "-l", "llamaedge/target=true", "-o", "json")
is_(r.returncode, 0, "kubectl get services -A -l llamaedge/target=true -o json")
items = json.loads(r.stdout or "{}").get("items", [])
is_(sorted(i["metadata"]["name"] for i in items),
    ["llama-3-1b-low", "llama-3-3b-high", "llama-prod"], "the three labelled Services, all namespaces")
ok(all(i.get("kind") == "Service" for i in items), "items carry kind Service")
is_(items[0]["metadata"]["annotations"].get("llamaedge/weight"), "3", "weight annotation as a string")

r = kubectl("get", "endpointslices", "-o", "json")
is_(r.returncode, 0, "kubectl get endpointslices -o json")
sl = json.loads(r.stdout or "{}").get("items", [])
is_([s["metadata"]["labels"]["kubernetes.io/service-name"] for s in sl], ["llama-3-1b-low"],
    "slice joined to its Service by kubernetes.io/service-name")

r = kubectl("get", "endpointslices.discovery.k8s.io", "-A", "-o", "name")
is_(r.stdout.split(), ["endpointslice.discovery.k8s.io/llama-3-1b-low-abcde"],
    "full resource name with group resolves through /apis discovery")


def names(*sel):
    r = kubectl("get", "svc", "-A", "-o", "name", *sel)
    return sorted(x.split("/", 1)[1] for x in r.stdout.split())


is_(names("-l", "tier==low"), ["llama-3-1b-low", "llama-prod"], "selector ==")
is_(names("-l", "tier!=low"), ["llama-3-3b-high", "unlabelled"], "selector != (absent key matches)")
is_(names("-l", "tier in (high,mid)"), ["llama-3-3b-high"], "selector in")
is_(names("-l", "tier notin (high)"), ["llama-3-1b-low", "llama-prod", "unlabelled"],
    "selector notin")
is_(names("-l", "tier"), ["llama-3-1b-low", "llama-3-3b-high", "llama-prod"], "selector exists")
is_(names("-l", "!tier"), ["unlabelled"], "selector !exists")
is_(names("-l", "llamaedge/target=true,tier=low"), ["llama-3-1b-low", "llama-prod"],
    "comma is AND")
is_(kubectl("get", "svc", "-n", "prod", "-o", "name").stdout.split(), ["service/llama-prod"],
    "namespaced list")

before = fk.lists("services")
r = kubectl("get", "svc", "-A", "--chunk-size=1", "-o", "name")
is_(len(r.stdout.split()), 4, "kubectl --chunk-size=1 pages through all four")
ok(fk.count(lambda m, p, q: "continue" in q) >= 3, "pages were fetched with continue tokens")
ok(fk.lists("services") - before >= 4, "one request per page")

r = kubectl("get", "svc", "llama-3-1b-low", "-o", "jsonpath={.spec.clusterIP}")
is_(r.stdout, "10.43.0.10", "get one Service by name")

# kubectl get -w: list, then watch from the list's resourceVersion.
p = subprocess.Popen([KUBECTL, "--kubeconfig", kc, "get", "svc", "-l", "llamaedge/target=true",
                      "-w", "-o", "json", "--output-watch-events"], stdout=subprocess.PIPE,
                     stderr=subprocess.DEVNULL)
try:
    end = time.time() + 10
    while fk.open_watches("services") == 0 and time.time() < end:
        time.sleep(0.05)
    ok(fk.open_watches("services") == 1, "kubectl opened a watch")
    wq = [q for m, pth, q in fk.requests if "watch" in q][-1]
    ok(wq.get("resourceVersion", "") not in ("", "0"), "kubectl watches from the list's version")
    fk.apply("services", service("llama-new", weight=7))
    fk.patch("services", "default", "llama-3-3b-high",
             lambda o: o["metadata"]["labels"].pop("llamaedge/target"))
    text, events = "", []
    end = time.time() + 10
    os.set_blocking(p.stdout.fileno(), False)
    dec = json.JSONDecoder()
    while time.time() < end and len(events) < 4:
        try:
            chunk = os.read(p.stdout.fileno(), 65536)
        except BlockingIOError:
            chunk = b""
        if chunk:
            text += chunk.decode()
        else:
            time.sleep(0.05)
        while True:
            text = text.lstrip()
            try:
                obj, n = dec.raw_decode(text)
            except ValueError:
                break
            events.append("%s %s" % (obj.get("type"), obj["object"]["metadata"]["name"]))
            text = text[n:]
    note("kubectl -w --output-watch-events printed: %r" % events)
    ok("ADDED llama-new" in events, "kubectl -w sees the new Service (ADDED)")
    ok("DELETED llama-3-3b-high" in events, "relabel out of the selector shows as DELETED")
finally:
    p.terminate()
    p.wait(5)
fk.close()
done()
