#!/bin/sh
# Runs every unit test binary and every integration test under prove.
# Usage: tests/run.sh BUILD_DIR   (build or build-san)
# Integration tests find the programs through $LLAMALB_BUILD.
set -e
B=${1:-build}
cd "$(dirname "$0")/.."
export LLAMALB_BUILD="$PWD/$B"
unit=$(ls "$B"/tests/test_* 2>/dev/null || true)
replay=$(ls "$B"/tests/replay_*.sh 2>/dev/null || true)  # fuzz corpora, see Makefile
integ=$(ls tests/integration/t[0-9]*.py 2>/dev/null || true)
wasm=$(ls tests/wasm/t[0-9]*.py 2>/dev/null || true)  # under WasmEdge (docs/wasm.md)
exec prove --exec tests/exec.sh --timer $PROVE_FLAGS $unit $replay $integ $wasm
