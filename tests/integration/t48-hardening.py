#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The build honours CPPFLAGS and, where dpkg-buildflags exists, links
Debian's hardening into the programs: fortified libc calls
(_FORTIFY_SOURCE), the stack protector, full RELRO and immediate binding.
Read from the binaries themselves (readelf, nm), as hardening-check does.
Sanitizer builds are not hardened (the sanitizers replace those checks)."""
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import BUILD, deadline, done, note, ok  # noqa: E402

deadline(60)
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")

# CPPFLAGS reaches every compile (it was dropped before).
r = subprocess.run(["make", "-n", "-B", "CPPFLAGS=-DLLAMALB_CPPFLAGS_PROBE=1",
                    "build/obj/src/common/util.o"], cwd=ROOT, capture_output=True, text=True,
                   timeout=30)
ok(r.returncode == 0 and "-DLLAMALB_CPPFLAGS_PROBE=1" in r.stdout,
   "CPPFLAGS from the command line reaches the compiler")


def tool(*argv):
    return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout


for prog in ("llamalb", "llamalb-sim", "llamalb-watcher"):
    path = os.path.join(BUILD, prog)
    syms = tool("nm", "-D", path)
    if "__asan" in syms or "__tsan" in syms:
        note("%s is a sanitizer build: hardening not expected, checks skipped" % prog)
        continue
    if not shutil.which("dpkg-buildflags"):
        note("dpkg-buildflags not installed: hardening checks skipped")
        break
    dyn = tool("readelf", "-d", path)
    seg = tool("readelf", "-lW", path)
    ok("GNU_RELRO" in seg and "BIND_NOW" in dyn, "%s: full RELRO (relro + bind now)" % prog)
    ok("__stack_chk_fail" in syms, "%s: stack protector" % prog)
    ok(any(s.endswith("_chk") or "_chk@" in s for s in syms.split()),
       "%s: fortified libc calls (_FORTIFY_SOURCE)" % prog)
    ok("DYN" in tool("readelf", "-h", path), "%s: position independent" % prog)
done()
