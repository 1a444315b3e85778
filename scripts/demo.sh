#!/usr/bin/env bash
# make demo: llamalb in front of two simulated llama-api-servers named like
# the original k3s demo (llama-3-1b-low weight 3, llama-3-3b-high weight 1),
# real traffic through it, and who served what. Stops everything it started.
set -euo pipefail
B=${1:-build}
cd "$(dirname "$0")/.."
pids=()
tmp=$(mktemp -d)
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT

start() { # name, outfile, argv...
    local out=$2; shift 2
    "$@" >"$out" 2>"$out.err" &
    pids+=($!)
    for _ in $(seq 100); do grep -q '^listening on' "$out" 2>/dev/null && return 0; sleep 0.05; done
    echo "failed to start: $*"; cat "$out.err"; exit 1
}
addr() { sed -n 's/^listening on //p' "$1"; }

start low "$tmp/low" "$B/llamalb-sim" --listen 127.0.0.1:0 --model-name llama-3-1b-low \
    --ttft-ms 60 --tokens-per-sec 80 --completion-tokens 12 --seed 1
start high "$tmp/high" "$B/llamalb-sim" --listen 127.0.0.1:0 --model-name llama-3-3b-high \
    --ttft-ms 120 --tokens-per-sec 40 --completion-tokens 12 --seed 2
start lb "$tmp/lb" "$B/llamalb" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
    --backend "llama-3-1b-low=$(addr "$tmp/low"),weight=3" \
    --backend "llama-3-3b-high=$(addr "$tmp/high"),weight=1" --access-log off
LB=$(addr "$tmp/lb")
ADMIN=$(sed -n 's/^admin listening on //p' "$tmp/lb")
echo "llamalb on $LB (admin $ADMIN); backends:"
curl -s "http://$ADMIN/api/services"; echo; echo

ask() { # prints the model that answered
    curl -s "http://$LB/v1/chat/completions" -H 'Content-Type: application/json' \
        -d "{\"model\":\"llama-3-1b\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello $1\"}]}" |
        sed -n 's/.*"model":"\([^"]*\)".*/\1/p'
}

echo "== 10 sequential chat requests"
for i in $(seq 10); do printf '  request %2d -> %s\n' "$i" "$(ask "$i")"; done | tee "$tmp/seq"
echo
echo "== 10 concurrent chat requests"
asks=()
for i in $(seq 10); do ask "c$i" >"$tmp/conc.$i" & asks+=($!); done
wait "${asks[@]}" # only the requests: a bare wait would wait for the servers too
for i in $(seq 10); do printf '  request %2d -> %s\n' "$i" "$(cat "$tmp/conc.$i")"; done | tee "$tmp/conc"
echo
echo "== one streamed answer, token by token"
printf '  '
curl -sN "http://$LB/v1/chat/completions" -H 'Content-Type: application/json' \
    -d '{"model":"llama-3-1b","stream":true,"messages":[{"role":"user","content":"Stream please"}]}' |
    while IFS= read -r line; do
        case "$line" in
        "data: [DONE]") printf '\n  [DONE]\n' ;;
        data:*) tok=$(printf '%s' "$line" | sed -n 's/.*"content":"\([^"]*\)".*/\1/p')
                who=$(printf '%s' "$line" | sed -n 's/.*"model":"\([^"]*\)".*/\1/p')
                printf '%s' "$tok"; echo "$who" >"$tmp/streamer" ;;
        esac
    done
echo "  (streamed by $(cat "$tmp/streamer"))"
echo
echo "== who served what"
for n in llama-3-1b-low llama-3-3b-high; do
    printf '  %-16s sequential %2d  concurrent %2d\n' "$n" "$(grep -c -- "-> $n" "$tmp/seq" || true)" \
        "$(grep -c -- "-> $n" "$tmp/conc" || true)"
done
echo
echo "== balancer metrics (excerpt)"
curl -s "http://$ADMIN/metrics" | grep -E '^llamalb_backend_requests_total\{.*2xx' | sed 's/^/  /'
rm -rf "$tmp"
