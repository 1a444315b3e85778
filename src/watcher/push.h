/* SPDX-License-Identifier: MIT
 * Telling the balancers: the desired backend set goes to every replica's
 * admin API, as one PUT /api/services {"generation","services"} (the normal
 * call) or as POST /api/register + DELETE /api/unregister diffs (--push
 * register, which the original demo's balancer understands). Bursts are
 * coalesced; a failed push is retried with backoff; a periodic check (GET
 * /api/services) repairs a balancer that restarted or drifted. */
#ifndef LLAMALB_WATCH_PUSH_H
#define LLAMALB_WATCH_PUSH_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "buf.h"
#include "xfer.h"

enum push_mode {
    PUSH_PUT = 0,   /* PUT /api/services with the whole set */
    PUSH_REGISTER,  /* register/unregister diffs, four fields only */
};

enum push_phase {
    PUSH_IDLE = 0,
    PUSH_CHECK,     /* GET /api/services to compare (resync) */
    PUSH_SEND,      /* PUT in flight */
    PUSH_REG_GET,   /* register mode: reading the balancer's set */
    PUSH_REG_OPS,   /* register mode: one op of .ops in flight */
};

/* One balancer replica. Owned by struct push. */
struct push_target {
    char *url;              /* admin base URL, no trailing slash */
    enum push_phase phase;
    struct xfer *x;         /* request in flight, or NULL */
    uint64_t done_ver;      /* desired version this balancer is known to hold */
    uint64_t cur_ver;       /* version being sent */
    bool check;             /* a resync check is due */
    int64_t retry_at;       /* loop clock ms */
    int64_t backoff_ms;     /* current retry delay, 0 = none */
    json_t *ops;            /* register mode: ops of the current round */
    size_t op_i;            /* next op */
    size_t op_failed;       /* register mode: calls of this round the balancer refused */
    json_t *sent;           /* PUT mode: the set in flight (to name a refused entry) */
    json_t *refused;        /* PUT mode: name -> entry this balancer refused (400) */
    uint64_t ok, failed;    /* pushes (PUT or register rounds) */
    uint64_t call_failures; /* register mode: single calls refused */
    uint64_t checks_ok, repairs; /* resync checks found equal / different */
    double last_sync;       /* unix time of the last confirmed sync, 0 = never */
};

/* All the balancers. Embedded in main's state; push_init() and push_deinit(). */
struct push {
    enum push_mode mode;
    char *token;            /* admin bearer token, or NULL */
    json_t *desired;        /* the set to push; NULL until the first full list */
    uint64_t ver;           /* bumped when a new set becomes due */
    uint64_t generation;    /* last generation sent */
    int64_t debounce_ms;    /* coalescing window (50) */
    int64_t debounce_at;    /* loop clock ms, 0 = nothing pending */
    struct push_target **t;
    size_t n;
};

/* <token> is copied (NULL: no Authorization header). */
void push_init(struct push *p, enum push_mode mode, const char *token);
/* Cancels every request in flight and frees the targets and the set. */
void push_deinit(struct push *p);

/* Makes the target list equal to <urls> (array of strings, borrowed): new
 * balancers are filled at once, vanished ones forgotten. */
void push_set_targets(struct push *p, json_t *urls);

/* A new desired set (the reference is stolen). Ignored if equal to the
 * current one; otherwise sent within the debounce window. */
void push_set_desired(struct push *p, json_t *desired, int64_t now_ms);

/* Schedules a GET /api/services check of every balancer (periodic resync). */
void push_resync(struct push *p);
/* Schedules a full push to every balancer (full reconciliation); entries a
 * balancer refused are tried again. */
void push_repush(struct push *p, int64_t now_ms);

/* Starts what is due. Returns the loop-clock time of the next thing to do. */
int64_t push_tick(struct push *p, int64_t now_ms);

/* Appends the per-balancer Prometheus lines to <out>. */
void push_metrics(const struct push *p, struct buf *out);

#endif
