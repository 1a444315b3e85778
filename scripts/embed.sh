#!/bin/sh
# Writes a C file holding FILE as the byte array NAME and its length
# NAME_len (the status page compiled into llamalb: mk/status.mk).
# Usage: scripts/embed.sh NAME FILE > OUT.c     (POSIX sh and od only)
set -e
[ $# -eq 2 ] && [ -s "$2" ] || { echo "usage: $0 NAME FILE" >&2; exit 2; }
printf '/* Generated from %s by scripts/embed.sh: do not edit. */\n' "$2"
printf '#include <stddef.h>\n\n'
printf 'extern const unsigned char %s[];\nextern const size_t %s_len;\n\n' "$1" "$1"
printf 'const unsigned char %s[] = {\n' "$1"
od -An -v -tx1 "$2" | sed 's/ *\([0-9a-f][0-9a-f]\)/0x\1,/g'
printf '};\nconst size_t %s_len = sizeof(%s);\n' "$1" "$1"
