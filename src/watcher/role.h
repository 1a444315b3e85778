/* SPDX-License-Identifier: MIT
 * Replicas that schedule as one (docs/replicas.md): with --lb-service and
 * --follow-port PORT, the watcher chooses the active balancer replica among
 * the Service's endpoints and tells every replica its role with
 * PUT /api/role {"generation":N,"follow":"IP:PORT"|null}.
 *
 * The rule (the same in every watcher, with no state shared): the active
 * stays active while its endpoint is ready and not terminating; when it is
 * not, the ready replica with the lowest address (in sorted text order, as
 * model_lb_urls sorts) becomes active. An EndpointSlice carries no pod age,
 * so "oldest" is what this watcher has seen longest. With no ready replica
 * every one is told to be active (null): nothing forwards to a replica
 * Kubernetes does not route to. */
#ifndef LLAMALB_WATCH_ROLE_H
#define LLAMALB_WATCH_ROLE_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "buf.h"

struct role_target;

struct role {
    int public_port;        /* the balancers' public port; 0 = roles off */
    int admin_port;
    char *token;            /* admin bearer token, or NULL */
    char active[64];        /* the active's IP, "" = none */
    uint64_t generation;    /* last generation sent */
    uint64_t ver;           /* bumped when some replica's role changes */
    struct role_target **t;
    size_t n;
    uint64_t pushes_ok, pushes_failed, changes;
};

void role_init(struct role *r, int public_port, int admin_port, const char *token);
void role_deinit(struct role *r);
/* The --lb-service slices changed (borrowed): choose again, new targets. */
void role_update(struct role *r, json_t *slices, const char *ns, const char *name);
/* Sends what is due; returns the loop-clock time of the next thing to do. */
int64_t role_tick(struct role *r, int64_t now_ms);
/* Sends every replica its role again (the periodic resync). */
void role_resync(struct role *r);
void role_metrics(const struct role *r, struct buf *out);

#endif
