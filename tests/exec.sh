#!/bin/sh
# prove's --exec hook: Python tests run under python3, binaries directly,
# each bounded in time so one hung test cannot hang CI.
case "$1" in
*.py) exec timeout -k 5 ${TEST_TIMEOUT:-300} python3 "$@" ;;
*)    exec timeout -k 5 ${TEST_TIMEOUT:-300} "$@" ;;
esac
