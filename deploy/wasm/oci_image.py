#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes llamalb.wasm as an OCI image layout archive, without Docker or a
registry (make wasm-image; docs/k3s.md, "The WASM balancer"):

    python3 deploy/wasm/oci_image.py build/llamalb.wasm build/llamalb-wasm.oci.tar [NAME:TAG]

The image is what runwasi's WasmEdge shim runs as a WASM pod: one layer
holding /llamalb.wasm, the config's platform wasi/wasm and Entrypoint
["/llamalb.wasm"] (the shim runs arg0 as a Wasm module when it is not an
ELF or a script), and the annotations that mark a Wasm image
(module.wasm.image/variant=compat-smart, read by WasmEdge-aware runtimes;
run.oci.handler=wasm). `k3s ctr images import --all-platforms FILE`
imports it (its platform is not the node's, hence --all-platforms); the
name comes from io.containerd.image.name. The archive is reproducible:
fixed timestamps, uid 0, sorted members."""
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile

MTIME = 0  # reproducible: the epoch, as SOURCE_DATE_EPOCH builds do


def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def tar_bytes(members):
    """A deterministic tar of [(name, bytes, mode)]."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data, mode in sorted(members):
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(data), mode, MTIME
            ti.uid = ti.gid = 0
            ti.uname = ti.gname = ""
            t.addfile(ti, io.BytesIO(data))
    return out.getvalue()


def build(wasm_path, name):
    wasm = open(wasm_path, "rb").read()
    layer_tar = tar_bytes([("llamalb.wasm", wasm, 0o755)])
    gz = io.BytesIO()
    with gzip.GzipFile(fileobj=gz, mode="wb", mtime=MTIME, compresslevel=9) as g:
        g.write(layer_tar)
    layer = gz.getvalue()
    annotations = {"module.wasm.image/variant": "compat-smart", "run.oci.handler": "wasm"}
    config = json.dumps({
        "architecture": "wasm",
        "os": "wasi",
        "created": "1970-01-01T00:00:00Z",
        "config": {
            "Entrypoint": ["/llamalb.wasm"],
            "Cmd": ["--listen=0.0.0.0:8080"],
            "ExposedPorts": {"8080/tcp": {}, "8081/tcp": {}},
            "Labels": dict(annotations, **{"org.opencontainers.image.title": "llamalb"}),
        },
        "rootfs": {"type": "layers", "diff_ids": [sha(layer_tar)]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "deploy/wasm/oci_image.py"}],
    }, sort_keys=True, separators=(",", ":")).encode()
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": sha(layer), "size": len(layer)}],
        "annotations": annotations,
    }, sort_keys=True, separators=(",", ":")).encode()
    ref = name.rsplit(":", 1)[1] if ":" in name.rsplit("/", 1)[-1] else "latest"
    full = name if "/" in name else "docker.io/library/" + name
    index = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": sha(manifest), "size": len(manifest),
                       "platform": {"architecture": "wasm", "os": "wasi"},
                       "annotations": {"io.containerd.image.name": full,
                                       "org.opencontainers.image.ref.name": ref}}],
    }, sort_keys=True, separators=(",", ":")).encode()
    blobs = [(b, 0o644) for b in (layer, config, manifest)]
    members = [("oci-layout", b'{"imageLayoutVersion":"1.0.0"}', 0o644), ("index.json", index, 0o644)]
    members += [("blobs/sha256/" + sha(b)[7:], b, m) for b, m in blobs]
    return tar_bytes(members)


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: oci_image.py LLAMALB.WASM OUT.tar [NAME:TAG]")
    name = sys.argv[3] if len(sys.argv) > 3 else "llamalb-wasm:latest"
    data = build(sys.argv[1], name)
    tmp = sys.argv[2] + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, sys.argv[2])
    print("%s: %s, %d bytes" % (sys.argv[2], name, len(data)))


if __name__ == "__main__":
    main()
