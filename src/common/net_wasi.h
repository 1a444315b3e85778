/* SPDX-License-Identifier: MIT
 * What Debian's wasi-libc leaves out of <sys/socket.h> and the balancer
 * uses, provided by net_wasi.c.h on WasmEdge's sock_* imports
 * (docs/wasm.md). Included by net.h in the wasm32-wasi build only. */
#ifndef LLAMALB_NET_WASI_H
#define LLAMALB_NET_WASI_H

#include <sys/socket.h>

/* wasi-libc defines SOL_SOCKET and SO_TYPE only; these carry Linux's
 * numbers, which setsockopt() below maps to WasmEdge's. */
#ifndef SO_REUSEADDR
#define SO_REUSEADDR 2
#endif
#ifndef SO_SNDBUF
#define SO_SNDBUF 7
#endif
#ifndef SO_RCVBUF
#define SO_RCVBUF 8
#endif
#ifndef SO_KEEPALIVE
#define SO_KEEPALIVE 9
#endif
#ifndef SO_LINGER
#define SO_LINGER 13
#endif

/* SOL_SOCKET options: SO_REUSEADDR, SO_LINGER, SO_SNDBUF, SO_RCVBUF and
 * SO_KEEPALIVE are passed on; others fail with ENOPROTOOPT (WasmEdge has
 * only the SOL_SOCKET level: no TCP_NODELAY). */
int setsockopt(int fd, int level, int name, const void *value, socklen_t len);

#endif
