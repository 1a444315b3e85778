/* SPDX-License-Identifier: MIT
 * The watcher's own tiny HTTP listener for /healthz, /readyz and /metrics.
 * Its sockets are polled by the same curl_multi_poll() as the transfers
 * (as extra wait fds), so the watcher stays one thread. One request per
 * connection, answered and closed; at most SERVE_MAX_CONNS at a time. */
#ifndef LLAMALB_WATCH_SERVE_H
#define LLAMALB_WATCH_SERVE_H

#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>

#include "buf.h"

#define SERVE_MAX_CONNS 32
#define SERVE_MAX_HEAD 4096 /* bytes of request head; more is refused */

/* Fills <out> with the answer to GET <path>: returns the HTTP status and
 * sets <*ctype>. */
typedef int serve_route_cb(void *data, const char *path, struct buf *out, const char **ctype);

struct serve_conn {
    int fd;                 /* -1 = free slot */
    struct buf in, out;     /* request head read so far; answer not yet sent */
    int64_t deadline;       /* loop clock ms: closed if not done by then */
};

/* Embedded in main's state. */
struct serve {
    int lfd;                /* listening socket, -1 when not listening */
    struct serve_conn c[SERVE_MAX_CONNS];
    serve_route_cb *route;
    void *data;
};

/* Listens on <addr> ("HOST:PORT", port 0 = any) and writes the bound address
 * into <bound>. Returns 0 or -errno with a message in <err>. */
int serve_listen(struct serve *s, const char *addr, serve_route_cb *route, void *data,
                 char *bound, size_t boundlen, char *err, size_t errlen);
/* The fds to poll, written to <fds> (room for 1 + SERVE_MAX_CONNS). */
unsigned serve_fds(struct serve *s, struct curl_waitfd *fds);
/* Handles what curl_multi_poll() reported for the <n> fds from serve_fds(). */
void serve_handle(struct serve *s, struct curl_waitfd *fds, unsigned n, int64_t now_ms);
/* Closes the listener and every connection. */
void serve_close(struct serve *s);

#endif
