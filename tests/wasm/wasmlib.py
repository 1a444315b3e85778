# SPDX-License-Identifier: MIT
"""The WasmEdge side of the wasm tests (docs/wasm.md): where the runtime and
the module are, the AOT-compiled module, and a harness whose lb() starts
`wasmedge build/llamalb.wasm ...` instead of the native binary.

WasmEdge is found through $WASMEDGE, PATH, or build/tools/wasmedge/bin
(`.ci/run` installs it there). Without it a test prints a visible SKIP
line and passes, except under CI=true, where a missing runtime fails."""
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
INTEG = os.path.join(ROOT, "tests", "integration")
WASM_OUT = os.environ.get("WASM_OUT") or os.path.join(ROOT, "build")
WASM = os.path.join(WASM_OUT, "llamalb.wasm")
AOT = os.path.join(WASM_OUT, "llamalb.aot.wasm")


def find_wasmedge():
    w = os.environ.get("WASMEDGE")
    if w:
        return w if os.access(w, os.X_OK) else None
    w = shutil.which("wasmedge")
    if w:
        return w
    w = os.path.join(ROOT, "build", "tools", "wasmedge", "bin", "wasmedge")
    return w if os.access(w, os.X_OK) else None


def skip_all(why):
    """No runtime or no module: SKIP (TAP skip_all), or fail under CI."""
    if os.environ.get("CI") == "true":
        print("not ok 1 - %s (CI=true: the wasm tests must run)" % why)
        print("1..1")
        sys.exit(1)
    print("1..0 # SKIP %s" % why)
    sys.stderr.write("SKIP: %s\n" % why)
    sys.exit(0)


def suite_build_only():
    """The wasm stage runs with `make test`; the sanitizer suites (make
    check: build-san, make tsan) skip it rather than run it again."""
    b = os.path.basename(os.path.normpath(os.environ.get("LLAMALB_BUILD", "build")))
    if b.startswith("build-san") or "tsan" in b:
        print("1..0 # SKIP the wasm tests run with make test, not with %s" %
              os.path.basename(os.path.normpath(b)))
        sys.exit(0)


def require(module=WASM):
    suite_build_only()
    w = find_wasmedge()
    if w is None:
        skip_all("WasmEdge not found ($WASMEDGE, PATH, build/tools/wasmedge)")
    if not os.path.exists(module):
        skip_all("%s not built (make wasm)" % os.path.relpath(module, ROOT))
    return w


def aot_module(wasmedge):
    """build/llamalb.aot.wasm, compiled when older than the module."""
    if not os.path.exists(AOT) or os.path.getmtime(AOT) < os.path.getmtime(WASM):
        tmp = AOT + ".tmp"
        subprocess.run([wasmedge, "compile", WASM, tmp], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=300)
        os.replace(tmp, AOT)
    return AOT


def runner(mode):
    """The argv prefix that runs the balancer module in <mode>."""
    w = require()
    module = aot_module(w) if mode == "aot" else WASM
    # "/" preopened as runwasi's shim does: config and token files by path.
    return [w, "--dir", "/:/", module]


def patch_harness(mode):
    """Makes harness.lb() start the wasm balancer. Returns the harness."""
    sys.path.insert(0, INTEG)
    import harness
    prefix = runner(mode)
    native_lb = harness.lb

    def lb(*args, **kw):
        saved = harness.LB
        harness.LB = None
        try:
            orig_spawn = harness.spawn

            def spawn(argv, **skw):
                skw.setdefault("timeout", 30)
                skw.setdefault("name", "llamalb.wasm")
                return orig_spawn(prefix + argv[1:], **skw)
            harness.spawn = spawn
            try:
                return native_lb(*args, **kw)
            finally:
                harness.spawn = orig_spawn
        finally:
            harness.LB = saved
    harness.lb = lb
    harness.WASM_MODE = mode
    return harness


# The integration scenarios the wasm balancer must pass as the native one
# does (issue #10's list), each file run whole against it.
SUBSET = [
    ("t30-weights.py", "the 3:1 weighted split"),
    ("t27-streaming.py", "SSE passed through event by event, [DONE]"),
    ("t33-admin-registry.py", "the admin API: register, unregister, PUT /api/services"),
    ("t62-llm-models.py", "model routing and /v1/models"),
    ("t61-llm-queue.py", "the queue in front of single-slot backends"),
    ("t24-upstream-faults.py", "502/504 on refused and silent backends"),
    ("t48-hardening.py", "the hardening cases (refused, nothing upstream)"),
    ("t28-keepalive.py", "keep-alive, pipelining, Expect: 100-continue"),
    ("t22-limits.py", "limits: 413/414/431, large bodies"),
    ("t42-body-memory.py", "request bodies within the memory budget"),
    ("t38-backpressure.py", "a client that stops reading: memory flat"),
    ("t44-slow-reader.py", "slow readers and the slow-client budget"),
]


def run_subset(mode):
    """Runs SUBSET against the wasm balancer in <mode> (interp|aot); one TAP
    line per file, its failing lines as diagnostics."""
    import re
    import time
    require()
    if mode == "aot":
        aot_module(find_wasmedge())
    sys.path.insert(0, INTEG)
    from harness import ok, note
    here = os.path.join(HERE, "run_integ.py")
    for name, what in SUBSET:
        t0 = time.time()
        try:
            r = subprocess.run([sys.executable, here, mode, name], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=150)
            out, rc = r.stdout.decode(errors="replace"), r.returncode
        except subprocess.TimeoutExpired as e:
            out, rc = (e.stdout or b"").decode(errors="replace") + "\n(timed out)", -1
        lines = out.splitlines()
        passed = sum(1 for ln in lines if ln.startswith("ok "))
        failed = [ln for ln in lines if ln.startswith("not ok")]
        plan = [int(m.group(1)) for m in (re.match(r"^1\.\.(\d+)$", ln) for ln in lines) if m]
        good = rc == 0 and not failed and bool(plan) and plan[-1] == passed
        if not good:
            note("\n".join(failed or lines[-15:]))
        ok(good, "%s [%s] %s: %d checks, %.1f s" % (name, mode, what, passed, time.time() - t0))
