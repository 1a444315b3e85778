#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""make wasm-image's OCI image layout archive (deploy/wasm/oci_image.py),
checked by its own reading (Debian's skopeo and umoci are not needed): the
layout file, the index naming the image for `k3s ctr images import` with
platform wasi/wasm, every blob present under its sha256 with its size, the
config (Entrypoint /llamalb.wasm, the layer's diff_id), one gzip layer whose
only file is the very module, the Wasm annotations, and a second build
byte-identical to the first (reproducible)."""
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wasmlib  # noqa: E402

sys.path.insert(0, wasmlib.INTEG)
from harness import ok, is_, done  # noqa: E402

wasmlib.suite_build_only()
if not os.path.exists(wasmlib.WASM):
    wasmlib.skip_all("build/llamalb.wasm not built (make wasm)")
tool = os.path.join(wasmlib.ROOT, "deploy", "wasm", "oci_image.py")
d = tempfile.mkdtemp(prefix="llamalb-oci-")
a, b = os.path.join(d, "a.tar"), os.path.join(d, "b.tar")
for out in (a, b):
    subprocess.run([sys.executable, tool, wasmlib.WASM, out, "llamalb-wasm:9.9.9"], check=True,
                   stdout=subprocess.DEVNULL, timeout=60)
blob = open(a, "rb").read()
ok(blob == open(b, "rb").read(), "two builds are byte-identical")

files = {}
with tarfile.open(a) as t:
    for m in t.getmembers():
        files[m.name] = t.extractfile(m).read()
is_(json.loads(files.get("oci-layout", b"{}")), {"imageLayoutVersion": "1.0.0"}, "oci-layout")


def get(desc):
    algo, hexd = desc["digest"].split(":")
    data = files.get("blobs/%s/%s" % (algo, hexd))
    good = data is not None and algo == "sha256" and hashlib.sha256(data).hexdigest() == hexd \
        and len(data) == desc["size"]
    return data, good


index = json.loads(files["index.json"])
is_(index.get("mediaType"), "application/vnd.oci.image.index.v1+json", "index.json is an OCI index")
is_(len(index["manifests"]), 1, "one manifest")
md = index["manifests"][0]
is_(md.get("platform"), {"architecture": "wasm", "os": "wasi"}, "its platform is wasi/wasm")
is_(md["annotations"].get("io.containerd.image.name"), "docker.io/library/llamalb-wasm:9.9.9",
    "named for containerd's import")
mbytes, good = get(md)
ok(good, "the manifest blob matches its digest and size")
man = json.loads(mbytes)
is_(man["mediaType"], "application/vnd.oci.image.manifest.v1+json", "an OCI image manifest")
is_(man.get("annotations", {}).get("module.wasm.image/variant"), "compat-smart",
    "annotated as a Wasm image")
cbytes, good = get(man["config"])
ok(good, "the config blob matches its digest and size")
cfg = json.loads(cbytes)
ok(cfg["architecture"] == "wasm" and cfg["os"] == "wasi", "config: wasm / wasi")
is_(cfg["config"]["Entrypoint"], ["/llamalb.wasm"], "config: the module is the entrypoint")
is_(len(man["layers"]), 1, "one layer")
lbytes, good = get(man["layers"][0])
ok(good, "the layer blob matches its digest and size")
is_(man["layers"][0]["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip", "a gzip tar layer")
raw = gzip.decompress(lbytes)
is_(cfg["rootfs"]["diff_ids"], ["sha256:" + hashlib.sha256(raw).hexdigest()],
    "config: diff_id is the uncompressed layer's digest")
with tarfile.open(fileobj=io.BytesIO(raw)) as t:
    names = t.getnames()
    m = t.getmember("llamalb.wasm") if "llamalb.wasm" in names else None
    data = t.extractfile(m).read() if m else b""
is_(names, ["llamalb.wasm"], "the layer holds the module only")
ok(data == open(wasmlib.WASM, "rb").read() and m.mode & 0o111, "the very module, executable")
is_(sorted(files), sorted(["oci-layout", "index.json"] + ["blobs/sha256/" + x["digest"][7:]
                           for x in [md, man["config"]] + man["layers"]]),
    "nothing else in the archive")
shutil.rmtree(d, ignore_errors=True)
done()
