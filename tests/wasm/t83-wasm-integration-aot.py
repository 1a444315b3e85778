#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Integration scenarios against `wasmedge build/llamalb.aot.wasm` AOT-compiled
(`wasmedge compile`: the "universal" module, native code in a custom section,
which WasmEdge 0.14 and runwasi's shim run natively) (wasmlib.SUBSET:
each tests/integration file run whole, its lb() starting the module)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wasmlib  # noqa: E402

sys.path.insert(0, wasmlib.INTEG)
from harness import deadline, done  # noqa: E402

deadline(280)
wasmlib.run_subset("aot")
done()
