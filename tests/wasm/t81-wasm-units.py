#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The unit tests of src/common built to wasm32-wasi (make wasm-tests: the
HTTP/1.1 parser, the JSON reader, the buffers, and the event loop on
poll_oneoff with WasmEdge's sockets), run under the real wasmedge. They are
AOT-compiled first (`wasmedge compile`, a few seconds each): interpreted,
the parser's tests alone take a minute. Each program's TAP is checked
whole: its plan met, no `not ok`, exit 0."""
import glob
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wasmlib  # noqa: E402

sys.path.insert(0, wasmlib.INTEG)
from harness import ok, note, done, deadline  # noqa: E402

deadline(240)
w = wasmlib.require()
tests = sorted(glob.glob(os.path.join(wasmlib.WASM_OUT, "wasm-tests", "test_*.wasm")))
if not tests:
    wasmlib.skip_all("no unit tests built to wasm (make wasm-tests)")
for t in tests:
    name = os.path.basename(t)[:-len(".wasm")]
    aot = t[:-len(".wasm")] + ".aot"
    if not os.path.exists(aot) or os.path.getmtime(aot) < os.path.getmtime(t):
        subprocess.run([w, "compile", t, aot], check=True, stdout=subprocess.DEVNULL,
                       timeout=120)
    r = subprocess.run([w, "--dir", "/:/", aot], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=120)
    out = r.stdout.decode(errors="replace")
    lines = out.splitlines()
    passed = sum(1 for ln in lines if ln.startswith("ok "))
    failed = [ln for ln in lines if ln.startswith("not ok")]
    plan = [int(m.group(1)) for m in (re.match(r"^1\.\.(\d+)", ln) for ln in lines) if m]
    good = r.returncode == 0 and not failed and plan and plan[-1] == passed
    if not good:
        note("\n".join(lines[-20:]))
    ok(good, "%s under wasmedge (AOT): %d/%s checks pass, exit %d"
       % (name, passed, plan[-1] if plan else "?", r.returncode))
done()
