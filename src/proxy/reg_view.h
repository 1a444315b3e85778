/* SPDX-License-Identifier: MIT
 * A consistent copy of the registry's state for the status page
 * (GET /api/stats, stats.c): what each backend is doing now, the queue,
 * the per-model counters. reg_view() copies under the registry lock what
 * only the lock guards (state, caps, live speed, models) and reads the
 * atomics beside it; the caller formats the copy outside the lock. */
#ifndef LLAMALB_REG_VIEW_H
#define LLAMALB_REG_VIEW_H

#include <stdint.h>

#include "registry.h"

/* Backends copied at most: a status page of 100,000 rows helps nobody;
 * the total is reported beside them. */
#define REG_VIEW_MAX_BACKENDS 1000

struct reg_backend_view {
    char name[REG_NAME_MAX + 1];
    char host[NET_ADDRSTR_LEN];
    int port;
    const char *state;     /* "up", "ejected", "draining", "slow_start" */
    const char *source;    /* "static" or "admin" */
    unsigned weight, cap, inflight;
    int64_t ejected_ms;    /* ms left in an ejection, 0 when not ejected */
    double ttft_ms, tbt_ms; /* live EWMAs (0 before the first sample) */
    uint64_t requests, errors, ejections, retries, events;
    uint64_t status[6];    /* responses by class, [0] = none */
    char *models;          /* packed names (reg_model_next), owned; NULL when none */
    unsigned nmodels;
};

struct reg_model_view {
    char name[128];
    uint64_t requests, errors, events, queued, ttft_count;
    unsigned inflight, waiting;
    double ttft_ms_sum, queue_wait_ms_sum;
    uint64_t ttft_hist[REG_LAT_BUCKETS + 1]; /* bounds: reg_lat_bounds, last = +Inf */
};

struct reg_view {
    unsigned nbackends, nbackends_total;
    struct reg_backend_view *backends; /* malloc'ed */
    unsigned nmodels;
    struct reg_model_view *models;     /* malloc'ed */
    unsigned queue_length, queue_max;
    int64_t oldest_wait_ms;            /* of the oldest waiter, 0 when none */
    uint64_t queued_total, queue_rejects, queue_timeouts;
    double queue_wait_ms_sum;
    int64_t slow_start_ms;
    const char *policy;                /* the policy picks use now */
};

/* Fills <v> (the caller frees it with reg_view_free). */
void reg_view(struct registry *r, int64_t now_ms, struct reg_view *v);
void reg_view_free(struct reg_view *v);

#endif
