/* SPDX-License-Identifier: MIT
 * The upstream side of the request path: per-worker, per-backend pools of
 * idle connections (h2o's socket pool), connecting, sending the rewritten
 * request, and reading the response head, which decides between a retry
 * elsewhere and the relay (relay.h). Failures are mapped to a retry or a
 * status in one place: a retry only while nothing reached the client, and
 * only as docs/hardening.md allows.
 *
 * A connection is leased to one request and leaves the lease exactly once:
 * back to the pool for keep-alive, or closed. Idle connections stay
 * registered with the loop, so a backend closing one is noticed at once. */
#ifndef LLAMALB_UPSTREAM_H
#define LLAMALB_UPSTREAM_H

#include <stdbool.h>

#include "buf.h"
#include "ev.h"
#include "http1.h"
#include "list.h"
#include "registry.h"

struct conn;
struct worker;

/* An upstream connection: leased to one conn, or idle in its backend's pool
 * for this worker. Holds a reference to its backend. */
struct upconn {
    struct list link;           /* pool idle list or worker graveyard */
    struct list wlink;          /* worker's list of all its idle upconns */
    struct worker *w;
    struct ev_io io;
    struct backend *be;
    struct conn *c;             /* owner while leased, NULL when idle */
    struct buf in;
    struct ev_timer timer;      /* connect, response and idle deadlines */
    bool connected, rd_ready, wr_ready, reused, closed, eof;
    bool rdhup;                 /* the backend closed its side: read until EOF */
    bool reset;                 /* a read failed (RST): not a clean end */
    bool got_bytes;             /* any response byte arrived on this lease */
    size_t sent;                /* request bytes written on this lease */
    unsigned uses;
};

/* The pool. */
struct upconn *up_lease(struct worker *w, struct backend *b, bool fresh_only, int *err);
void up_release(struct upconn *u, bool reuse);
void up_prune_removed(struct worker *w);
void up_close_idle_all(struct worker *w);
void up_free(struct upconn *u);

/* Rewrites the request head for the upstream (origin-form target, HTTP/1.1,
 * hop-by-hop and framing headers dropped, X-Forwarded-*, X-Request-Id).
 * Runs while the parsed head's slices are valid. */
void up_build_head(struct conn *c, const struct http1_msg *m);
/* Starts the request on the backend in c->x->be: lease or connect, send. */
void up_start(struct conn *c);
/* Arms the deadline of a leased connection <ms> from now: connect,
 * response head, or (relaying) the wait for the next body bytes; when it
 * passes the request fails over or the stream is cut. */
void up_arm(struct upconn *u, int64_t ms);
/* Gives the upstream side up: connection closed, backend slot released. */
void up_drop(struct conn *c, bool failed);

#endif
