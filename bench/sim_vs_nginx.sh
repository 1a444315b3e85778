#!/bin/sh
# SPDX-License-Identifier: MIT
# Checks that llamalb-sim is never what a benchmark measures: its direct
# keep-alive throughput on one core must be at least twice what nginx reaches
# proxying to it on one core, measured in the same run (docs/sim.md).
#
#   bench/sim_vs_nginx.sh [BUILD_DIR]     (default: build)
#   env: DURATION (s, default 10), CONNS (default 64), PATHS ("/v1/models")
#
# Pinning (2 cores): the sim on CPU 1 and nginx on CPU 0, one core each. wrk
# needs a core too, so it shares with the process that is not under test:
#   direct:  sim on CPU 1, wrk on CPU 0
#   proxied: sim on CPU 1, nginx on CPU 0, wrk on CPU 1 (beside the sim)
# With 3 or more CPUs wrk gets CPU 2 in both runs.
# Loopback only; everything started here is stopped by PID.
set -eu
B=${1:-build}
cd "$(dirname "$0")/.."
SIM="$PWD/$B/llamalb-sim"
DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
URLPATH=${URLPATH:-/v1/models}
[ -x "$SIM" ] || { echo "no $SIM: build it first" >&2; exit 1; }
command -v wrk >/dev/null || { echo "wrk not installed" >&2; exit 1; }
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || { echo "nginx not installed" >&2; exit 1; }
NCPU=$(nproc)
if [ "$NCPU" -ge 3 ]; then WRK_CPU=2; WRK_CPU_P=2; else WRK_CPU=0; WRK_CPU_P=1; fi

TMP=$(mktemp -d)
SIM_PID=""
NGX_PID=""
cleanup() {
    [ -n "$NGX_PID" ] && kill "$NGX_PID" 2>/dev/null && wait "$NGX_PID" 2>/dev/null || true
    [ -n "$SIM_PID" ] && kill "$SIM_PID" 2>/dev/null && wait "$SIM_PID" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

# The simulator with zero latency, on CPU 1.
taskset -c 1 "$SIM" --listen 127.0.0.1:0 --model-name bench --ttft-ms 0 --tokens-per-sec 0 \
    >"$TMP/sim.out" 2>"$TMP/sim.err" &
SIM_PID=$!
i=0
while ! grep -q '^listening on ' "$TMP/sim.out" 2>/dev/null; do
    i=$((i + 1)); [ $i -gt 100 ] && { echo "sim did not start" >&2; exit 1; }
    sleep 0.05
done
SIM_ADDR=$(sed -n 's/^listening on //p' "$TMP/sim.out")

# nginx: one worker, no master, upstream keep-alive, on CPU 0.
NGX_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$TMP/logs"
cat >"$TMP/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
error_log $TMP/logs/error.log warn;
pid $TMP/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $TMP/body;
    proxy_temp_path $TMP/proxy;
    fastcgi_temp_path $TMP/fcgi;
    uwsgi_temp_path $TMP/uwsgi;
    scgi_temp_path $TMP/scgi;
    upstream sim { server $SIM_ADDR; keepalive 128; }
    server {
        listen 127.0.0.1:$NGX_PORT;
        keepalive_requests 1000000;
        location / {
            proxy_pass http://sim;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }
    }
}
EOF
taskset -c 0 "$NGINX" -p "$TMP" -c "$TMP/nginx.conf" 2>"$TMP/nginx.err" &
NGX_PID=$!
i=0
while ! curl -sf "http://127.0.0.1:$NGX_PORT$URLPATH" >/dev/null 2>&1; do
    i=$((i + 1)); [ $i -gt 100 ] && { echo "nginx did not start" >&2; cat "$TMP/nginx.err" >&2; exit 1; }
    sleep 0.05
done

rate() { # wrk output -> requests/s
    sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p'
}
echo "sim $SIM_ADDR (CPU 1), nginx 127.0.0.1:$NGX_PORT (CPU 0); wrk -t1 -c$CONNS -d${DURATION}s GET $URLPATH"
taskset -c $WRK_CPU wrk -t1 -c"$CONNS" -d1s "http://$SIM_ADDR$URLPATH" >/dev/null # warm-up
DIRECT=$(taskset -c $WRK_CPU wrk -t1 -c"$CONNS" -d"${DURATION}s" "http://$SIM_ADDR$URLPATH" | rate)
taskset -c $WRK_CPU_P wrk -t1 -c"$CONNS" -d1s "http://127.0.0.1:$NGX_PORT$URLPATH" >/dev/null
PROXIED=$(taskset -c $WRK_CPU_P wrk -t1 -c"$CONNS" -d"${DURATION}s" "http://127.0.0.1:$NGX_PORT$URLPATH" | rate)
RATIO=$(python3 -c "print('%.2f' % ($DIRECT / $PROXIED))")
echo "direct to sim:   $DIRECT req/s"
echo "through nginx:   $PROXIED req/s"
echo "ratio:           $RATIO (must be >= 2)"
python3 -c "import sys; sys.exit(0 if $DIRECT >= 2 * $PROXIED else 1)"
