#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""deploy/k8s/llamalb-wasm.yaml (docs/k3s.md, "The WASM balancer"): the
RuntimeClass wasmedge and a Deployment that selects it; the image `make
wasm-image` names; one worker; the token from the same Secret as the native
balancer; probes on the admin port; a preStop httpGet on /api/drain; the
same Service as the native base; and the module itself accepts the
manifest's arguments (`llamalb.wasm -t` under wasmedge)."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wasmlib  # noqa: E402

sys.path.insert(0, wasmlib.INTEG)
from harness import ok, is_, like, done  # noqa: E402

try:
    import yaml
except ImportError:
    print("1..0 # SKIP python3-yaml not installed")
    raise SystemExit(0)

wasmlib.suite_build_only()
docs = list(yaml.safe_load_all(open(os.path.join(wasmlib.ROOT, "deploy", "k8s", "llamalb-wasm.yaml"))))
by = {d["kind"]: d for d in docs}
is_(sorted(by), ["Deployment", "RuntimeClass", "Service"], "a RuntimeClass, a Deployment, a Service")
rc = by["RuntimeClass"]
ok(rc["metadata"]["name"] == "wasmedge" and rc["handler"] == "wasmedge",
   "RuntimeClass wasmedge, handler wasmedge (the runtime k3s registers)")
pod = by["Deployment"]["spec"]["template"]["spec"]
is_(pod.get("runtimeClassName"), "wasmedge", "the pods run under it")
c = pod["containers"][0]
mk = open(os.path.join(wasmlib.ROOT, "mk", "wasm.mk")).read()
ok("llamalb-wasm:$(VERSION)" in mk and c["image"].endswith("/llamalb-wasm:0.1.0"),
   "the image is the one make wasm-image names")
args = c["args"]
ok("--workers=1" in args, "one worker")
env = {e["name"]: e for e in c["env"]}
ok(env.get("LLAMALB_ADMIN_TOKEN", {}).get("valueFrom", {}).get("secretKeyRef", {}).get("name")
   == "llamalb-admin-token", "the token from the native balancer's Secret, as an environment variable")
hook = c.get("lifecycle", {}).get("preStop", {}).get("httpGet", {})
hook_arg = [a.split("=", 1)[1] for a in args if a.startswith("--drain-hook=")]
ok(hook_arg and hook.get("path") == hook_arg[0] and hook.get("port") == "admin",
   "preStop: httpGet on the --drain-hook path, admin port (the drain without token or POST)")
ok("exec" not in c.get("lifecycle", {}).get("preStop", {}), "no exec hook (WASM containers run none)")
ports = {p["name"]: p["containerPort"] for p in c["ports"]}
is_(ports, {"http": 8080, "admin": 8081}, "named ports http and admin")
ok(all(c[p]["httpGet"]["port"] == "admin" for p in ("readinessProbe", "livenessProbe", "startupProbe")),
   "probes on the admin port")
base = [d for d in yaml.safe_load_all(open(os.path.join(wasmlib.ROOT, "deploy", "kustomize", "base",
                                                        "llamalb.yaml"))) if d and d["kind"] == "Service"]
ok(base and base[0]["spec"] == by["Service"]["spec"], "the same Service as the native balancer")
sel = by["Deployment"]["spec"]["selector"]["matchLabels"]
ok(all(by["Deployment"]["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in sel.items())
   and by["Service"]["spec"]["selector"] == sel, "selectors match the pod labels")

# The module accepts the manifest's arguments.
w = wasmlib.find_wasmedge()
if w is None or not os.path.exists(wasmlib.WASM):
    # The checks above ran; only the module's own -t check needs the runtime.
    why = "WasmEdge or build/llamalb.wasm missing: the -t check cannot run"
    ok(os.environ.get("CI") != "true", "%s (CI=true: the wasm tests must run)" % why
       if os.environ.get("CI") == "true" else "# SKIP " + why)
    sys.stderr.write("SKIP: %s\n" % why)
    done()
    sys.exit(0)
argv = [a.replace("$(POD_IP)", "10.42.0.9") for a in args]
run = wasmlib.runner("interp")
r = subprocess.run(run + ["-t"] + argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
ok(r.returncode == 2 and "token" in r.stderr.decode(),
   "without the Secret's token the pod-IP admin listener is refused at start")
run[1:1] = ["--env", "LLAMALB_ADMIN_TOKEN=" + "k" * 32]
r = subprocess.run(run + ["-t"] + argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
is_(r.returncode, 0, "llamalb.wasm -t with the manifest's arguments and the token: valid")
like(r.stdout.decode(), r"1 workers", "one worker")
done()
