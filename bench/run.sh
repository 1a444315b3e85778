#!/bin/sh
# SPDX-License-Identifier: MIT
# `make bench`: llamalb against nginx and HAProxy (bench/bench.py has the details).
# Builds optimised binaries in build-bench/, compiles the streaming load
# generator, raises the fd limit, runs every measurement and writes
# bench/results/YYYY-MM-DDTHHMMSS.{txt,json}. Loopback only; proxies on CPU 0,
# backends and load generators on CPU 1; every process is stopped by its PID.
#
#   bench/run.sh [--quick] [--only 1,3,...]
#       --quick: 1 repetition, 1-second runs, 500 streams
#       --only:  just those measurements, no summary and no results file
set -eu
cd "$(dirname "$0")/.."
B=build-bench
for t in wrk nginx haproxy taskset python3 cc strip; do
    command -v $t >/dev/null 2>&1 || [ -x /usr/sbin/$t ] || { echo "bench: $t not installed (scripts/deps.sh bench)" >&2; exit 1; }
done
PATH=$PATH:/usr/sbin
echo "building optimised binaries in $B/ (make B=$B, -O2)"
make --no-print-directory B=$B $B/llamalb $B/llamalb-sim >/dev/null
cc -O2 -Wall -Wextra -o $B/sse_load bench/sse_load.c
# 5,000 held streams: ~10,000 descriptors in the proxy.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge 12000 ] || echo "bench: warning: ulimit -n is $(ulimit -n); 5,000 streams need ~12,000" >&2
mkdir -p bench/results
OUT=bench/results/$(date -u +%Y-%m-%dT%H%M%SZ)
exec python3 bench/bench.py "$B" "$OUT" "$@"
