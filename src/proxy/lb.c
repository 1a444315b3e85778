/* SPDX-License-Identifier: MIT
 * The four policies. All respect weights; "least" and "p2c" also respect
 * live load, which matters for LLM servers that do one generation at a time
 * (a llama-api-server answers nothing else while it generates without
 * streaming): weight alone piles requests onto busy backends.
 *
 *   random  weighted random: the original demo's balancer, kept for parity
 *   wrr     smooth weighted round robin (nginx's): deterministic, evenly
 *           interleaved (weights 3:1 give a a b a, a a b a, ...)
 *   least   lowest in-flight per unit of weight; ties go to the backend
 *           measured fastest here (EWMA of time to first byte plus time
 *           between streamed events times events per response: the expected
 *           service time), then to the larger weight, then at random
 *   p2c     power of two choices: two weighted-random candidates, the less
 *           loaded wins; near-least quality at O(1) per pick
 *
 * Past LB_SCAN_MAX backends in play (the whole set, or those serving the
 * requested model) the registry does not build the candidate list: that
 * scan was most of a pick's cost with 10,000 backends. It draws eligible
 * backends at random in proportion to weight, O(log n) each (reg_pick.c,
 * draw()), and the policy chooses among the drawn ones:
 *
 *   random  the first one drawn: distributed exactly as a full scan's pick
 *   p2c     the less loaded of the first two drawn: also a full scan's
 *           choice in distribution
 *   least   the least loaded of 8 drawn, with the same tie-breaks: the
 *           best of a sample rather than of the set, which keeps every
 *           backend close to the least load (power of d choices) and sends
 *           work to the fastest of the idle ones drawn; 8 draws cost about
 *           1 us at 10,000 backends, 16 twice that for a better sample
 *   wrr     not sampled: its interleave moves every candidate's state on
 *           every pick, so it stays O(n) on large sets
 *
 * When no draw is eligible (nearly every backend full, ejected or tried)
 * the registry falls back to the full list and pick(), so sampling never
 * queues or refuses a request that some backend could take. */
#include <stdatomic.h>
#include <string.h>

#include "lb.h"
#include "registry.h"
#include "util.h"

static struct backend *pick_weighted_random(struct backend *const *cand, unsigned n,
                                            uint64_t *rng)
{
    uint64_t total = 0;
    for (unsigned i = 0; i < n; i++)
        total += cand[i]->eff_weight;
    uint64_t r = util_rand64(rng) % total;
    for (unsigned i = 0; i < n; i++) {
        if (r < cand[i]->eff_weight)
            return cand[i];
        r -= cand[i]->eff_weight;
    }
    return cand[n - 1];
}

static struct backend *pick_wrr(struct backend *const *cand, unsigned n, uint64_t *rng)
{
    int64_t total = 0;
    struct backend *best = NULL;
    UNUSED(rng);
    for (unsigned i = 0; i < n; i++) {
        struct backend *b = cand[i];
        b->wrr_current += (int64_t)b->eff_weight;
        total += (int64_t)b->eff_weight;
        if (best == NULL || b->wrr_current > best->wrr_current)
            best = b;
    }
    best->wrr_current -= total;
    return best;
}

/* Compares load a/wa with b/wb without division: <0 if a is less loaded. */
static int cmp_load(unsigned a, uint64_t wa, unsigned b, uint64_t wb)
{
    /* eff_weight <= 1e9 (30 bits) and loads stay far below 2^32: no overflow. */
    uint64_t l = (uint64_t)a * wb, r = (uint64_t)b * wa;
    return l < r ? -1 : l > r ? 1 : 0;
}

/* Expected service time in µs from live measurements; 0 while unmeasured,
 * so a new backend gets tried early and measured. */
static double speed_score(const struct backend *b)
{
    return b->samples ? b->ewma_ttft_us + b->ewma_tbt_us * b->ewma_events : 0.0;
}

static struct backend *pick_least(struct backend *const *cand, unsigned n, uint64_t *rng)
{
    /* Among equally loaded backends, a rotating start spreads picks instead
     * of always favouring the first in the list. */
    unsigned start = (unsigned)(util_rand64(rng) % n);
    struct backend *best = NULL;
    unsigned best_load = 0;
    for (unsigned k = 0; k < n; k++) {
        struct backend *b = cand[(start + k) % n];
        unsigned load = atomic_load_explicit(&b->inflight, memory_order_relaxed) + 1;
        if (best == NULL) {
            best = b;
            best_load = load;
            continue;
        }
        int c = cmp_load(load, b->eff_weight, best_load, best->eff_weight);
        if (c == 0) {
            double sb = speed_score(b), sbest = speed_score(best);
            c = sb < sbest ? -1 : sb > sbest ? 1 : 0;
        }
        if (c < 0 || (c == 0 && b->eff_weight > best->eff_weight)) {
            best = b;
            best_load = load;
        }
    }
    return best;
}

/* <b> if it is strictly less loaded per unit of weight than <a>, else <a>. */
static struct backend *less_loaded(struct backend *a, struct backend *b)
{
    unsigned la = atomic_load_explicit(&a->inflight, memory_order_relaxed) + 1;
    unsigned lb = atomic_load_explicit(&b->inflight, memory_order_relaxed) + 1;
    return cmp_load(lb, b->eff_weight, la, a->eff_weight) < 0 ? b : a;
}

static struct backend *pick_p2c(struct backend *const *cand, unsigned n, uint64_t *rng)
{
    if (n == 1)
        return cand[0];
    struct backend *a = pick_weighted_random(cand, n, rng);
    /* The second choice comes from the others, weighted the same way, so
     * the load comparison always happens. */
    uint64_t total = 0;
    for (unsigned i = 0; i < n; i++)
        if (cand[i] != a)
            total += cand[i]->eff_weight;
    uint64_t r = util_rand64(rng) % total;
    struct backend *b = NULL;
    for (unsigned i = 0; i < n && b == NULL; i++) {
        if (cand[i] == a)
            continue;
        if (r < cand[i]->eff_weight)
            b = cand[i];
        else
            r -= cand[i]->eff_weight;
    }
    /* r < total finds one; the check keeps the compiler from assuming a
     * NULL b (and warning about the atomic read at its small offset). */
    return b != NULL ? less_loaded(a, b) : a;
}

/* Drawn in proportion to weight already: the first draw is the weighted
 * random pick. */
static struct backend *pick_first_drawn(struct backend *const *drawn, unsigned n,
                                        uint64_t *rng)
{
    UNUSED(n);
    UNUSED(rng);
    return drawn[0];
}

/* The first two draws are the two weighted-random choices. */
static struct backend *pick_p2c_drawn(struct backend *const *drawn, unsigned n, uint64_t *rng)
{
    UNUSED(rng);
    return n == 1 ? drawn[0] : less_loaded(drawn[0], drawn[1]);
}

const struct lb_ops lb_random = {"random", pick_weighted_random, 1, pick_first_drawn};
const struct lb_ops lb_wrr = {"wrr", pick_wrr, 0, NULL};
const struct lb_ops lb_least = {"least", pick_least, 8, pick_least};
const struct lb_ops lb_p2c = {"p2c", pick_p2c, 2, pick_p2c_drawn};

static const struct lb_ops *const policies[] = {&lb_random, &lb_wrr, &lb_least, &lb_p2c};

const struct lb_ops *lb_find(const char *name)
{
    for (size_t i = 0; i < ARRAY_SIZE(policies); i++)
        if (strcmp(policies[i]->name, name) == 0)
            return policies[i];
    return NULL;
}
