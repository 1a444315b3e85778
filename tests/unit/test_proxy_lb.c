/* SPDX-License-Identifier: MIT
 * The policies of src/proxy/lb.c on synthetic candidate arrays, without a
 * registry: what each chooses given effective weights, live in-flight
 * counts and measured speeds. least: fewest in flight per unit of weight,
 * ties to the fastest, then to the larger weight, then spread; p2c: the
 * less loaded of two weighted draws; wrr: nginx's smooth interleave and
 * exact proportions; random: weighted shares; pick_drawn on large-set
 * samples; lb_find. The registry's side of picking (candidates, draws,
 * routing) is tested in test_proxy_registry_pick.c and _scale.c. */
#include <stdio.h>
#include <string.h>

#include "../../src/proxy/lb.h"
#include "../../src/proxy/registry.h"
#include "../tap.h"
#include "util.h"

#define NB 4
static struct backend be[NB];
static struct backend *cand[NB];

/* Resets be[0..n) to idle, unmeasured, effective weights <w> (x 1000, as
 * the registry sets them), and cand[] to point at them. */
static void setup(unsigned n, const unsigned *w)
{
    memset(be, 0, sizeof(be));
    for (unsigned i = 0; i < n; i++) {
        snprintf(be[i].spec.name, sizeof(be[i].spec.name), "%c", 'a' + i);
        be[i].spec.weight = w[i];
        be[i].eff_weight = (uint64_t)w[i] * 1000;
        cand[i] = &be[i];
    }
}

static void load(unsigned i, unsigned inflight) { atomic_store(&be[i].inflight, inflight); }

static void measured(unsigned i, double ttft_us, double tbt_us, double events)
{
    be[i].ewma_ttft_us = ttft_us;
    be[i].ewma_tbt_us = tbt_us;
    be[i].ewma_events = events;
    be[i].samples = 5;
}

static int idx(const struct backend *b) { return (int)(b - be); }

static void test_find(void)
{
    ok(lb_find("random") == &lb_random && lb_find("wrr") == &lb_wrr &&
           lb_find("least") == &lb_least && lb_find("p2c") == &lb_p2c,
       "lb_find knows the four policies");
    ok(lb_find("roundrobin") == NULL && lb_find("") == NULL, "and nothing else");
    ok(lb_random.draws == 1 && lb_p2c.draws == 2 && lb_least.draws == 8 && lb_wrr.draws == 0 &&
           lb_wrr.pick_drawn == NULL,
       "draws: random 1, p2c 2, least 8, wrr none (it scans)");
    ok(lb_least.draws <= LB_MAX_DRAWS && lb_p2c.draws <= LB_MAX_DRAWS, "within LB_MAX_DRAWS");
}

static void test_least(void)
{
    uint64_t rng = 1;
    static const unsigned w1[] = {1, 1, 1};
    setup(3, w1);
    load(0, 3);
    load(1, 1);
    load(2, 2);
    bool fewest = true;
    for (int i = 0; i < 50; i++)
        fewest &= lb_least.pick(cand, 3, &rng) == &be[1];
    ok(fewest, "least: the fewest in flight");

    static const unsigned w2[] = {4, 1};
    setup(2, w2);
    load(0, 3); /* 4 / 4000 */
    load(1, 1); /* 2 / 1000 */
    ok(lb_least.pick(cand, 2, &rng) == &be[0], "least: in flight per unit of weight");

    setup(3, w1);
    measured(0, 150000, 0, 1);
    measured(1, 75000, 0, 1);
    measured(2, 100000, 0, 1);
    bool fastest = true;
    for (int i = 0; i < 50; i++)
        fastest &= lb_least.pick(cand, 3, &rng) == &be[1];
    ok(fastest, "least: equal load goes to the fastest measured");
    measured(1, 50000, 20000, 10); /* 50 ms + 10 x 20 ms: slower than 100 ms */
    ok(lb_least.pick(cand, 3, &rng) == &be[2],
       "least: speed is time to first byte plus events x time between them");
    be[0].samples = 0;
    ok(lb_least.pick(cand, 3, &rng) == &be[0], "least: an unmeasured backend is tried first");
    load(0, 1);
    ok(lb_least.pick(cand, 3, &rng) == &be[2], "least: load before speed");

    static const unsigned w3[] = {2, 1};
    setup(2, w3);
    load(0, 1); /* 2 / 2000 = 1 / 1000: same load per weight */
    ok(lb_least.pick(cand, 2, &rng) == &be[0], "least: then the larger weight");

    setup(3, w1);
    int seen[3] = {0};
    for (int i = 0; i < 300; i++)
        seen[idx(lb_least.pick(cand, 3, &rng))]++;
    ok(seen[0] > 50 && seen[1] > 50 && seen[2] > 50,
       "least: full ties spread (%d %d %d of 300)", seen[0], seen[1], seen[2]);
    ok(lb_least.pick_drawn == lb_least.pick, "least: the same choice among drawn backends");
}

static void test_p2c(void)
{
    uint64_t rng = 2;
    static const unsigned w[] = {1, 1};
    setup(2, w);
    load(0, 5);
    bool less = true;
    for (int i = 0; i < 100; i++)
        less &= lb_p2c.pick(cand, 2, &rng) == &be[1];
    ok(less, "p2c: of two, always the less loaded");
    ok(lb_p2c.pick(cand, 1, &rng) == &be[0], "p2c: one candidate is chosen as is");

    static const unsigned w4[] = {1, 1, 1, 1};
    setup(4, w4);
    load(0, 9);
    int busy = 0;
    for (int i = 0; i < 1000; i++)
        busy += lb_p2c.pick(cand, 4, &rng) == &be[0];
    is_int(busy, 0, "p2c: the busiest of four never wins a comparison");
    setup(4, w4);
    load(3, 1);
    load(2, 1);
    load(1, 1);
    int idle = 0;
    for (int i = 0; i < 3000; i++)
        idle += lb_p2c.pick(cand, 4, &rng) == &be[0];
    /* a wins when it is one of the two drawn: 1 - (3/4 x 2/3) = 1/2. */
    ok(idle > 1350 && idle < 1650, "p2c: the only idle one wins when drawn (%d of 3000)", idle);

    setup(2, w);
    load(0, 2);
    ok(lb_p2c.pick_drawn(cand, 2, &rng) == &be[1], "p2c drawn: the less loaded of the first two");
    ok(lb_p2c.pick_drawn(cand, 1, &rng) == &be[0], "p2c drawn: a single draw");
    load(0, 0);
    ok(lb_p2c.pick_drawn(cand, 2, &rng) == &be[0], "p2c drawn: a tie keeps the first draw");
}

static void test_wrr(void)
{
    uint64_t rng = 3;
    static const unsigned w[] = {3, 1};
    setup(2, w);
    char seq[9] = {0};
    for (int i = 0; i < 8; i++)
        seq[i] = lb_wrr.pick(cand, 2, &rng)->spec.name[0];
    ok(strcmp(seq, "aabaaaba") == 0, "wrr 3:1 interleaves smoothly (got %s)", seq);

    static const unsigned w3[] = {5, 3, 1};
    setup(3, w3);
    int n[3] = {0};
    for (int i = 0; i < 900; i++)
        n[idx(lb_wrr.pick(cand, 3, &rng))]++;
    ok(n[0] == 500 && n[1] == 300 && n[2] == 100, "wrr 5:3:1 exactly (%d %d %d of 900)", n[0],
       n[1], n[2]);
    setup(3, w3);
    int run = 0, longest = 0;
    for (int i = 0; i < 9; i++) {
        run = lb_wrr.pick(cand, 3, &rng) == &be[0] ? run + 1 : 0;
        longest = run > longest ? run : longest;
    }
    ok(longest <= 2, "wrr spreads the heaviest backend (longest run %d)", longest);
    be[1].eff_weight = 9000; /* slow start ended: the ratio follows at once */
    int b9 = 0;
    for (int i = 0; i < 1500; i++)
        b9 += lb_wrr.pick(cand, 3, &rng) == &be[1];
    ok(b9 >= 895 && b9 <= 905, "wrr follows effective weights (%d of 1500, 900 expected)", b9);
}

static void test_random(void)
{
    uint64_t rng = 4;
    static const unsigned w[] = {3, 1};
    setup(2, w);
    int a = 0;
    for (int i = 0; i < 20000; i++)
        a += lb_random.pick(cand, 2, &rng) == &be[0];
    double share = a / 20000.0;
    ok(share > 0.73 && share < 0.77, "random 3:1 gives a %.3f (0.75 +- 0.02)", share);
    static const unsigned w3[] = {1, 1, 1};
    setup(3, w3);
    be[2].eff_weight = 1; /* a weight of 0 enters as 1 (registry): almost never */
    int c = 0;
    for (int i = 0; i < 20000; i++)
        c += lb_random.pick(cand, 3, &rng) == &be[2];
    ok(c < 10, "random follows effective weights (%d of 20000 to a near-zero one)", c);
    ok(lb_random.pick_drawn(cand, 3, &rng) == &be[0] &&
           lb_random.pick_drawn(cand + 1, 2, &rng) == &be[1],
       "random drawn: the first draw (already weighted)");
}

int main(void)
{
    test_find();
    test_least();
    test_p2c();
    test_wrr();
    test_random();
    return done_testing();
}
