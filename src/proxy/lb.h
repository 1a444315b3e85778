/* SPDX-License-Identifier: MIT
 * Load-balancing policies behind one small hook table (haproxy's lb_ops,
 * h2o's balancer). The registry filters the backends that may take a
 * request (weight > 0, not removed, not already tried, under its cap, not
 * ejected) and hands the policy that candidate list under its lock; the
 * policy only chooses. Policies see live in-flight counts shared by all
 * workers. */
#ifndef LLAMALB_LB_H
#define LLAMALB_LB_H

#include <stdint.h>

struct backend;

struct lb_ops {
    const char *name;
    /* Chooses one of <cand>[0..<n>) (n >= 1). Runs under the registry lock,
     * so it may update per-backend policy state. <rng> is the calling
     * worker's PRNG state. */
    struct backend *(*pick)(struct backend *const *cand, unsigned n, uint64_t *rng);
};

/* The policy named <name> ("random", "wrr", "least", "p2c"), or NULL. */
const struct lb_ops *lb_find(const char *name);

extern const struct lb_ops lb_random, lb_wrr, lb_least, lb_p2c;

#endif
