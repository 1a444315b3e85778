/* SPDX-License-Identifier: MIT
 * Helpers shared by the registry's unit tests (test_proxy_registry*.c):
 * synthetic specs, adding a backend, one pick and its release. */
#ifndef LLAMALB_TEST_REG_H
#define LLAMALB_TEST_REG_H

#include <stdio.h>
#include <string.h>

#include "../../src/proxy/lb.h"
#include "../../src/proxy/registry.h"
#include "../tap.h"

static inline struct backend_spec spec(const char *name, int port, unsigned weight)
{
    struct backend_spec s;
    memset(&s, 0, sizeof(s));
    snprintf(s.name, sizeof(s.name), "%s", name);
    snprintf(s.host, sizeof(s.host), "10.0.0.%d", port % 250 + 1);
    s.port = port;
    s.weight = weight;
    return s;
}

/* Adds <name> with weight <weight> and in-flight cap <cap> (0 = none). */
static inline void add(struct registry *r, const char *name, int port, unsigned weight,
                       unsigned cap)
{
    char err[NET_ERR_LEN];
    struct backend_spec s = spec(name, port, weight);
    s.max_inflight = cap;
    s.max_inflight_set = true;
    if (reg_upsert(r, &s, REG_SOURCE_ADMIN, err) < 0)
        note("upsert %s: %s", name, err);
}

/* A pick at time 1000 ms without a waiter, or NULL. */
static inline struct backend *pick(struct registry *r, const struct reg_req *q, uint64_t *rng)
{
    struct backend *b = NULL;
    if (reg_pick(r, q, rng, 1000, NULL, &b, NULL) != REG_PICKED)
        return NULL;
    return b;
}

/* Gives back an unused slot and the reference. */
static inline void done_with(struct registry *r, struct backend *b)
{
    struct reg_outcome o = {0};
    reg_release(r, b, &o, 1000);
    backend_unref(b);
}

/* The settings reg_init starts with, to change one field of. */
static inline struct reg_settings default_settings(void)
{
    return (struct reg_settings){.eject_after = 5, .eject_base_ms = 30000,
                                 .eject_max_ms = 300000, .default_cap = 1,
                                 .queue_max = 1024};
}

#endif
