#!/bin/sh
# Installs the Debian packages a make target needs, only when missing.
# Usage: scripts/deps.sh build|test|fuzz|bench
set -e
want=""
need() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed" || want="$want $1"; }
case "$1" in
build)  for p in gcc make libc6-dev python3 curl libcurl4-openssl-dev libjansson-dev libyaml-dev python3-yaml openssl; do need $p; done ;;
fuzz)   for p in clang-14 libclang-rt-14-dev; do need $p; done ;;
bench)  for p in nginx-light haproxy wrk; do need $p; done ;;
*) echo "usage: $0 build|fuzz|bench" >&2; exit 2 ;;
esac
[ -z "$want" ] && exit 0
echo "installing Debian packages:$want"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $want >/dev/null
