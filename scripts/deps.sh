#!/bin/sh
# Installs the Debian packages a make target needs, only when missing.
# Usage: scripts/deps.sh build|fuzz|bench|kit
set -e
want=""
need() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed" || want="$want $1"; }
case "$1" in
build)  for p in gcc make libc6-dev python3 curl libcurl4-openssl-dev libjansson-dev libyaml-dev python3-yaml openssl; do need $p; done ;;
fuzz)   for p in clang-14 libclang-rt-14-dev; do need $p; done ;;
bench)  for p in nginx-light haproxy wrk; do need $p; done ;;
# make wasm: clang 14 for wasm32-wasi, Debian's wasi-libc, its compiler-rt, wasm-ld
wasm)   for p in clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32; do need $p; done ;;
# the operator's kit: the status page's browser test, man pages, units
kit)    for p in chromium mandoc systemd; do need $p; done
        command -v node >/dev/null && command -v npm >/dev/null || { need nodejs; need npm; } ;;
*) echo "usage: $0 build|fuzz|bench|kit" >&2; exit 2 ;;
esac
[ -z "$want" ] && exit 0
echo "installing Debian packages:$want"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $want >/dev/null
