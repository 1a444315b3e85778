#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The module's imports (docs/wasm.md): every one must be a function of
WasmEdge 0.14's wasi_snapshot_preview1, standard WASI preview 1 or its
sock_* extension. An `env.*` import (an unresolved symbol wasm-ld let
through) or another module would fail at instantiation in runwasi's shim.
Read from the binary's import section here, with no tool needed; only
`make wasm` is (no WasmEdge: this test never skips for want of it)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wasmlib  # noqa: E402

sys.path.insert(0, wasmlib.INTEG)
from harness import ok, is_, note, done  # noqa: E402

# WASI preview 1 (witx, wasi_snapshot_preview1), as WasmEdge 0.14 serves it.
WASI_P1 = {
    "args_get", "args_sizes_get", "environ_get", "environ_sizes_get", "clock_res_get",
    "clock_time_get", "fd_advise", "fd_allocate", "fd_close", "fd_datasync",
    "fd_fdstat_get", "fd_fdstat_set_flags", "fd_fdstat_set_rights", "fd_filestat_get",
    "fd_filestat_set_size", "fd_filestat_set_times", "fd_pread", "fd_prestat_get",
    "fd_prestat_dir_name", "fd_pwrite", "fd_read", "fd_readdir", "fd_renumber", "fd_seek",
    "fd_sync", "fd_tell", "fd_write", "path_create_directory", "path_filestat_get",
    "path_filestat_set_times", "path_link", "path_open", "path_readlink",
    "path_remove_directory", "path_rename", "path_symlink", "path_unlink_file", "poll_oneoff",
    "proc_exit", "proc_raise", "sched_yield", "random_get", "sock_accept", "sock_recv",
    "sock_send", "sock_shutdown",
}
# WasmEdge's socket extension of the same module.
WASMEDGE_SOCK = {
    "sock_open", "sock_bind", "sock_listen", "sock_connect", "sock_recv_from", "sock_send_to",
    "sock_getsockopt", "sock_setsockopt", "sock_getlocaladdr", "sock_getpeeraddr",
    "sock_getaddrinfo",
}
# Present in the extension but never wanted: a blocking resolver on the only thread.
UNWANTED = {"sock_getaddrinfo"}


def leb(b, i):
    n = shift = 0
    while True:
        c = b[i]
        i += 1
        n |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            return n, i


def name(b, i):
    n, i = leb(b, i)
    return b[i:i + n].decode(), i + n


def imports(path):
    """[(module, field, kind)] of a wasm binary's import section."""
    b = open(path, "rb").read()
    if b[:8] != b"\0asm\x01\0\0\0":
        raise ValueError("%s: not a wasm module" % path)
    out, i = [], 8
    while i < len(b):
        sid = b[i]
        size, j = leb(b, i + 1)
        if sid == 2:
            count, k = leb(b, j)
            for _ in range(count):
                mod, k = name(b, k)
                field, k = name(b, k)
                kind = b[k]
                k += 1
                if kind == 0:       # func: type index
                    _, k = leb(b, k)
                elif kind == 1:     # table: reftype, limits
                    k += 1
                    flags, k = leb(b, k)
                    _, k = leb(b, k)
                    if flags & 1:
                        _, k = leb(b, k)
                elif kind == 2:     # memory: limits
                    flags, k = leb(b, k)
                    _, k = leb(b, k)
                    if flags & 1:
                        _, k = leb(b, k)
                else:               # global: valtype, mutability
                    k += 2
                out.append((mod, field, kind))
        i = j + size
    return out


wasmlib.suite_build_only()
if not os.path.exists(wasmlib.WASM):
    wasmlib.skip_all("build/llamalb.wasm not built (make wasm)")
imps = imports(wasmlib.WASM)
note("%s: %d bytes, %d imports" % (os.path.relpath(wasmlib.WASM, wasmlib.ROOT),
                                    os.path.getsize(wasmlib.WASM), len(imps)))
ok(len(imps) > 0, "the module has an import section")
foreign = ["%s.%s" % (m, f) for m, f, _ in imps if m != "wasi_snapshot_preview1"]
is_(foreign, [], "every import is from wasi_snapshot_preview1 (no env.* leftovers)")
unknown = [f for m, f, _ in imps if m == "wasi_snapshot_preview1" and f not in WASI_P1 | WASMEDGE_SOCK]
is_(unknown, [], "every wasi_snapshot_preview1 import is WASI preview 1 or WasmEdge's sock_*")
is_([f for m, f, k in imps if k != 0], [], "only functions are imported (memory is the module's)")
is_(sorted(f for _, f, _ in imps if f in UNWANTED), [], "no sock_getaddrinfo (no resolver on the request path)")
need = {"poll_oneoff", "sock_open", "sock_bind", "sock_listen", "sock_accept", "sock_connect",
        "sock_send", "sock_getsockopt"}
is_(sorted(need - {f for _, f, _ in imps}), [],
    "it uses poll_oneoff and the socket calls its backends are built on")
ok(os.path.getsize(wasmlib.WASM) < 512 * 1024, "the module stays small (< 512 KiB)")
done()
