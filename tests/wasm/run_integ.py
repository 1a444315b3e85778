#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Runs one integration test file of tests/integration against the wasm
balancer: python3 tests/wasm/run_integ.py interp|aot tNN-name.py
Its lb() starts `wasmedge [--dir /:/] llamalb[.aot].wasm ...`; everything
else (simulators, fake backends, checks) is the file's own."""
import os
import runpy
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wasmlib  # noqa: E402

mode, name = sys.argv[1], sys.argv[2]
wasmlib.patch_harness(mode)
path = os.path.join(wasmlib.INTEG, name)
sys.argv = [path]
runpy.run_path(path, run_name="__main__")
