#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Integration scenarios against `wasmedge build/llamalb.wasm` interpreted,
as runwasi's shim runs a module without an AOT section (wasmlib.SUBSET:
each tests/integration file run whole, its lb() starting the module)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wasmlib  # noqa: E402

sys.path.insert(0, wasmlib.INTEG)
from harness import deadline, done  # noqa: E402

deadline(280)
wasmlib.run_subset("interp")
done()
