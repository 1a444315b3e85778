/* SPDX-License-Identifier: MIT
 * Load-balancing policies behind one small hook table (haproxy's lb_ops,
 * h2o's balancer). The registry filters the backends that may take a
 * request (weight > 0, not removed, not already tried, under its cap, not
 * ejected) and hands the policy that candidate list under its lock; the
 * policy only chooses. Policies see live in-flight counts shared by all
 * workers.
 *
 * Large sets: past LB_SCAN_MAX backends in play, a policy that can work
 * from a sample (draws > 0) is not shown every candidate. The registry
 * draws backends at random in proportion to weight, keeps the eligible
 * ones, and calls pick_drawn on up to <draws> of them; only if no draw was
 * eligible does it fall back to the full candidate list and pick(). */
#ifndef LLAMALB_LB_H
#define LLAMALB_LB_H

#include <stdint.h>

struct backend;

/* Backends in play (the whole set, or those serving the requested model)
 * up to which every pick sees the exact candidate list. */
#define LB_SCAN_MAX 64
/* Most eligible backends a policy may ask to be drawn. */
#define LB_MAX_DRAWS 16

struct lb_ops {
    const char *name;
    /* Chooses one of <cand>[0..<n>) (n >= 1). Runs under the registry lock,
     * so it may update per-backend policy state. <rng> is the calling
     * worker's PRNG state. */
    struct backend *(*pick)(struct backend *const *cand, unsigned n, uint64_t *rng);
    /* Distinct eligible backends to draw on large sets (<= LB_MAX_DRAWS);
     * 0 = the policy needs every candidate, at O(n) per pick (wrr). */
    unsigned draws;
    /* Chooses one of <drawn>[0..<n>) (1 <= n <= draws), backends drawn in
     * this order at random in proportion to their effective weight.
     * Same locking as pick. */
    struct backend *(*pick_drawn)(struct backend *const *drawn, unsigned n, uint64_t *rng);
};

/* The policy named <name> ("random", "wrr", "least", "p2c"), or NULL. */
const struct lb_ops *lb_find(const char *name);

extern const struct lb_ops lb_random, lb_wrr, lb_least, lb_p2c;

#endif
