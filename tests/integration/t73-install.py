#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# make install (mk/install.mk; README "Operating llamalb"): into a DESTDIR,
# the three programs, four man pages that `mandoc -T lint` finds clean and
# whose option lists match each program's --help, --version on all three,
# an example configuration `llamalb -t` accepts, and systemd units with the
# sandboxing directives that `systemd-analyze verify` accepts; then
# make uninstall takes it all away.
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import LB, SIM, WATCHER, deadline, done, is_, note, ok

deadline(120)
ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
dest = tempfile.mkdtemp(prefix="llamalb-t73-")
PREFIX = "/usr/local"
MAKE = ["make", "-s", "--no-print-directory", "-C", ROOT, "DESTDIR=" + dest, "PREFIX=" + PREFIX,
        "PROGRAMS=%s %s %s" % (LB, SIM, WATCHER)]
r = subprocess.run(MAKE + ["install"], capture_output=True, text=True, timeout=60)
if not ok(r.returncode == 0, "make install PREFIX=/usr/local DESTDIR=..."):
    note(r.stdout + r.stderr)
    done()
root = dest + PREFIX
files = sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)
is_(files, ["bin/llamalb", "bin/llamalb-sim", "bin/llamalb-watcher",
            "lib/systemd/system/llamalb-watcher.service", "lib/systemd/system/llamalb.service",
            "share/doc/llamalb/README.md", "share/doc/llamalb/llamalb.conf.example",
            "share/man/man1/llamalb-sim.1", "share/man/man5/llamalb.conf.5",
            "share/man/man8/llamalb-watcher.8", "share/man/man8/llamalb.8"], "the files installed")
ok(all(stat.S_IMODE(os.stat(os.path.join(root, "bin", p)).st_mode) == 0o755
       for p in ("llamalb", "llamalb-sim", "llamalb-watcher")), "programs mode 0755")
MAN = {"llamalb": "share/man/man8/llamalb.8", "llamalb-sim": "share/man/man1/llamalb-sim.1",
       "llamalb-watcher": "share/man/man8/llamalb-watcher.8"}
pages = list(MAN.values()) + ["share/man/man5/llamalb.conf.5"]

# ---- mandoc -T lint
mandoc = shutil.which("mandoc")
if not mandoc:
    ok(True, "# SKIP mandoc not installed (scripts/deps.sh kit): man pages not linted")
else:
    for p in pages:
        r = subprocess.run([mandoc, "-T", "lint", "-W", "warning", os.path.join(root, p)],
                           capture_output=True, text=True, timeout=20)
        is_((r.returncode, (r.stdout + r.stderr).strip()), (0, ""), "mandoc -T lint: %s clean" % p)

# ---- --help and --version against the man pages
version = None
for prog, path in ((LB, MAN["llamalb"]), (SIM, MAN["llamalb-sim"]), (WATCHER, MAN["llamalb-watcher"])):
    name = os.path.basename(prog)
    r = subprocess.run([prog, "--version"], capture_output=True, text=True, timeout=10)
    m = re.match(r"^(\S+) (\d+\.\d+\.\d+)\n$", r.stdout)
    ok(r.returncode == 0 and m and m.group(1) == name, "%s --version: %r" % (name, r.stdout))
    version = version or (m and m.group(2))
    is_(m and m.group(2), version, "%s: the same version as the others" % name)
    h = subprocess.run([prog, "--help"], capture_output=True, text=True, timeout=10)
    is_(h.returncode, 0, "%s --help exits 0" % name)
    help_flags = set(re.findall(r"(?m)(?:^\s+|, | / )(--?[a-z][-a-z0-9]*)", h.stdout))
    page = open(os.path.join(root, path)).read()
    man_flags = {"-" + f for f in re.findall(r"(?m)^\.It Fl (-?[a-z][-a-z0-9]*)", page)}
    man_flags |= {"-" + f for f in re.findall(r" , Fl (-?[a-z][-a-z0-9]*)", page)}
    ok(len(help_flags) > 10, "%s --help lists %d flags" % (name, len(help_flags)))
    is_(sorted(help_flags ^ man_flags), [], "%s: the man page documents exactly the flags of --help" % name)
    like_os = re.search(r"(?m)^\.Os llamalb (\S+)$", page)
    is_(like_os and like_os.group(1), version, "%s's man page names version %s" % (name, version))
h = subprocess.run([LB, "--help"], capture_output=True, text=True, timeout=10).stdout
keys = set(re.findall(r"(?m)^\s+--([a-z][-a-z0-9]*)", h)) - {"help"}
conf = open(os.path.join(root, "share/man/man5/llamalb.conf.5")).read()
is_(sorted(keys ^ set(re.findall(r"(?m)^\.It Cm ([a-z][-a-z0-9]*)", conf))), [],
    "llamalb.conf(5) documents every option llamalb's --help lists")

# ---- the example configuration
ex = os.path.join(root, "share/doc/llamalb/llamalb.conf.example")
r = subprocess.run([LB, "-t", "-c", ex], capture_output=True, text=True, timeout=10)
is_(r.returncode, 0, "llamalb -t -c llamalb.conf.example: valid")

# ---- systemd units
unitdir = os.path.join(root, "lib/systemd/system")
units = {u: open(os.path.join(unitdir, u)).read() for u in ("llamalb.service", "llamalb-watcher.service")}
for u, text in units.items():
    is_(re.findall(r"@[A-Z]+@", text), [], "%s: every @VAR@ substituted" % u)
    for d in ("DynamicUser=yes", "ProtectSystem=strict", "NoNewPrivileges=yes", "ProtectHome=yes",
              "PrivateTmp=yes", "PrivateDevices=yes", "CapabilityBoundingSet=\n",
              "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX", "SystemCallFilter=@system-service",
              "MemoryDenyWriteExecute=yes", "ProtectKernelTunables=yes", "RestrictNamespaces=yes"):
        ok(d in text, "%s: %s" % (u, d.strip()))
    ok("ExecStart=%s/bin/%s" % (PREFIX, u.split(".")[0]) in text, "%s: ExecStart in PREFIX/bin" % u)
lbu = units["llamalb.service"]
ok("ExecStartPre=%s/bin/llamalb -t -c /etc/llamalb/llamalb.conf" % PREFIX in lbu,
   "llamalb.service: llamalb -t checks the configuration before the start")
ok("ExecReload=/bin/kill -HUP $MAINPID" in lbu, "llamalb.service: reload sends SIGHUP")
sa = shutil.which("systemd-analyze")
if not sa:
    ok(True, "# SKIP systemd-analyze not installed: units not verified")
else:
    # The units as installed, pointed at the DESTDIR's programs (verify checks
    # that ExecStart's binary exists) and man pages (Documentation=man:...).
    vdir = os.path.join(dest, "verify")
    os.makedirs(vdir)
    for u, text in units.items():
        with open(os.path.join(vdir, u), "w") as fh:
            fh.write(text.replace(PREFIX + "/bin/", root + "/bin/"))
    env = dict(os.environ, MANPATH=os.path.join(root, "share/man"), SYSTEMD_LOG_LEVEL="notice")
    r = subprocess.run([sa, "verify"] + [os.path.join(vdir, u) for u in units], capture_output=True,
                       text=True, timeout=60, env=env)
    out = (r.stdout + r.stderr).strip()
    if r.returncode != 0 and re.search(r"(?i)(failed to (connect|initialize|create|set up|load)|"
                                       r"system has not been booted|no such file or directory.*/run)", out):
        ok(True, "# SKIP systemd-analyze verify cannot run here: " + out.splitlines()[0][:120])
    else:
        is_((r.returncode, out), (0, ""), "systemd-analyze verify accepts both units")

# ---- uninstall
r = subprocess.run(MAKE + ["uninstall"], capture_output=True, text=True, timeout=60)
left = [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs]
ok(r.returncode == 0 and left == [], "make uninstall removes every file it installed")
shutil.rmtree(dest, ignore_errors=True)
done()
