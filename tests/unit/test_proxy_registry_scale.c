/* SPDX-License-Identifier: MIT
 * Registry picks on large sets (more than LB_SCAN_MAX backends in play),
 * where policies choose among backends drawn in proportion to weight:
 * only eligible backends come out (weight, ejection, caps, tries, models,
 * pins), the full-scan fallback finds the one free backend among full
 * ones, weights are followed, and every change to the set (add, remove,
 * weight, models, PUT) reaches the pick index. Also the per-model counters,
 * which no longer take the lock and must stay bounded. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/proxy/lb.h"
#include "../../src/proxy/registry.h"
#include "../tap.h"
#include "buf.h"
#include "util.h"

#define NOW 1000 /* ms: the clock every pick here runs at */

static const struct lb_ops *const sampled[] = {&lb_random, &lb_p2c, &lb_least};

static struct backend_spec spec(unsigned i, unsigned weight, unsigned cap)
{
    struct backend_spec s;
    memset(&s, 0, sizeof(s));
    snprintf(s.name, sizeof(s.name), "b%u", i);
    snprintf(s.host, sizeof(s.host), "10.0.%u.%u", i / 250, i % 250 + 1);
    s.port = 8000;
    s.weight = weight;
    s.max_inflight = cap;
    s.max_inflight_set = true;
    return s;
}

static void upsert(struct registry *r, const struct backend_spec *s)
{
    char err[NET_ERR_LEN];
    if (reg_upsert(r, s, REG_SOURCE_ADMIN, err) < 0)
        note("upsert %s: %s", s->name, err);
}

/* Backends b0..b<n-1>, weight 1, cap <cap> (0 = none). */
static void fill(struct registry *r, unsigned n, unsigned cap)
{
    for (unsigned i = 0; i < n; i++) {
        struct backend_spec s = spec(i, 1, cap);
        upsert(r, &s);
    }
}

static struct backend *pick(struct registry *r, const struct reg_req *q, uint64_t *rng)
{
    struct backend *b = NULL;
    return reg_pick(r, q, rng, NOW, NULL, &b, NULL) == REG_PICKED ? b : NULL;
}

static void done_with(struct registry *r, struct backend *b)
{
    struct reg_outcome o = {0};
    reg_release(r, b, &o, NOW);
    backend_unref(b);
}

/* b<i>'s number, from its name. */
static unsigned num(const struct backend *b) { return (unsigned)atoi(b->spec.name + 1); }

/* Marks a backend full without a request: the registry only compares
 * inflight with the cap. Undone by unfill() before the registry goes. */
static void make_full(struct backend *b) { atomic_store(&b->inflight, b->cap); }
static void unfill(struct registry *r)
{
    for (unsigned i = 0; i < r->n; i++)
        atomic_store(&r->v[i]->inflight, 0);
}

/* 400 backends, a fifth of them in each disqualifying state; every pick,
 * under every sampled policy, must be one of the rest. */
static void test_only_eligible(void)
{
    for (size_t p = 0; p < ARRAY_SIZE(sampled); p++) {
        struct registry r;
        uint64_t rng = 101 + p;
        reg_init(&r, 1, sampled[p]);
        for (unsigned i = 0; i < 400; i++) {
            struct backend_spec s = spec(i, i % 5 == 0 ? 0 : 1 + i % 3, 1);
            upsert(&r, &s);
        }
        struct backend *tried[REG_MAX_TRIES];
        unsigned ntried = 0;
        for (unsigned i = 0; i < 400; i++) {
            struct backend *b = r.v[i];
            if (i % 5 == 1)
                b->down_until = NOW + 30000; /* ejected */
            else if (i % 5 == 2)
                make_full(b);
            else if (i % 5 == 3 && ntried < REG_MAX_TRIES)
                tried[ntried++] = b;
        }
        struct reg_req q = {.tried = tried, .ntried = ntried};
        bool good = true;
        unsigned picked = 0;
        for (int k = 0; k < 2000; k++) {
            struct backend *b = pick(&r, &q, &rng);
            if (b == NULL)
                continue;
            picked++;
            unsigned i = num(b);
            for (unsigned t = 0; t < ntried; t++)
                good &= b != tried[t];
            good &= i % 5 != 0 && i % 5 != 1 && i % 5 != 2;
            done_with(&r, b);
        }
        is_int(picked, 2000, "%s: every pick on 400 backends succeeds", sampled[p]->name);
        ok(good, "%s: none drained, ejected, full or tried", sampled[p]->name);
        unfill(&r);
        reg_deinit(&r);
    }
}

/* Caps of 1 everywhere and all but one backend busy: draws almost never
 * land on the free one, so the pick must come from the full scan. */
static void test_fallback_finds_the_free_one(void)
{
    const struct lb_ops *all[] = {&lb_random, &lb_p2c, &lb_least, &lb_wrr};
    for (size_t p = 0; p < ARRAY_SIZE(all); p++) {
        struct registry r;
        uint64_t rng = 201 + p;
        reg_init(&r, 1, all[p]);
        fill(&r, 1000, 1);
        for (unsigned i = 0; i < 1000; i++)
            if (i != 777)
                make_full(r.v[i]);
        struct reg_req q = {0};
        bool found = true;
        for (int k = 0; k < 50; k++) {
            struct backend *b = pick(&r, &q, &rng);
            found &= b != NULL && num(b) == 777;
            if (b != NULL)
                done_with(&r, b);
        }
        ok(found, "%s: 999 of 1000 full, every pick finds b777", all[p]->name);
        ok(reg_has_alternative(&r, &q, NOW), "%s: and reg_has_alternative sees it",
           all[p]->name);
        make_full(r.v[777]);
        struct backend *none = NULL;
        is_int(reg_pick(&r, &q, &rng, NOW, NULL, &none, NULL), REG_QUEUE_FULL,
               "%s: all full and no waiter: refused, not picked", all[p]->name);
        ok(!reg_has_alternative(&r, &q, NOW), "%s: and no alternative", all[p]->name);
        unfill(&r);
        reg_deinit(&r);
    }

    /* The same behind a model route and a tried list. */
    struct registry r;
    uint64_t rng = 211;
    reg_init(&r, 1, &lb_least);
    for (unsigned i = 0; i < 600; i++) {
        struct backend_spec s = spec(i, 1, 1);
        if (i % 3 == 0) {
            s.nmodels = 1;
            s.models = "m";
        }
        upsert(&r, &s);
    }
    struct backend *tried[2] = {r.v[3], r.v[6]};
    for (unsigned i = 0; i < 600; i++)
        if (i != 3 && i != 6 && i != 444)
            make_full(r.v[i]);
    struct reg_req q = {.model = "m", .tried = tried, .ntried = 2};
    struct backend *b = pick(&r, &q, &rng);
    ok(b != NULL && num(b) == 444, "model route: the one free, untried server of m is found");
    if (b != NULL)
        done_with(&r, b);
    unfill(&r);
    reg_deinit(&r);
}

/* What a full scan gives, with every backend idle, for a backend of
 * weight class <c> (50 backends of weight c + 1, c = 0..3): random picks
 * in proportion to weight; p2c draws a in proportion to weight, then b from
 * the others, and the lower load per weight wins: the heavier, ties to a. */
static double full_scan_share(const struct lb_ops *p, unsigned c)
{
    const double total = 50 * (1 + 2 + 3 + 4);
    if (p == &lb_random)
        return 50 * (c + 1) / total;
    double share = 0;
    for (unsigned ca = 0; ca < 4; ca++)
        for (unsigned cb = 0; cb < 4; cb++) {
            double pa = 50 * (ca + 1) / total;
            double pb = (50 * (cb + 1) - (cb == ca ? ca + 1 : 0)) / (total - (ca + 1));
            share += (MAX(ca, cb) == c) * pa * pb;
        }
    return share;
}

/* random and p2c over 200 idle backends of weights 1 to 4 choose as a
 * full scan would: 40,000 picks, shares within 10 % of the exact ones. */
static void test_weights_followed(void)
{
    const struct lb_ops *pol[] = {&lb_random, &lb_p2c};
    for (size_t p = 0; p < ARRAY_SIZE(pol); p++) {
        struct registry r;
        uint64_t rng = 301 + p;
        reg_init(&r, 1, pol[p]);
        for (unsigned i = 0; i < 200; i++) {
            struct backend_spec s = spec(i, 1 + i % 4, 0);
            upsert(&r, &s);
        }
        unsigned by_class[4] = {0};
        struct reg_req q = {0};
        for (int k = 0; k < 40000; k++) {
            struct backend *b = pick(&r, &q, &rng);
            by_class[num(b) % 4]++;
            done_with(&r, b);
        }
        bool close = true;
        for (unsigned c = 0; c < 4; c++) {
            double share = by_class[c] / 40000.0, want = full_scan_share(pol[p], c);
            close &= share > want * 0.9 && share < want * 1.1;
            note("%s: weight %u class got %.3f (full scan: %.3f)", pol[p]->name, c + 1, share,
                 want);
        }
        ok(close, "%s: picks over 200 backends of weights 1-4 match a full scan's (+-10%%)",
           pol[p]->name);
        reg_deinit(&r);
    }

    /* least with requests held: the sample keeps every backend near the
     * least load instead of piling onto a few. */
    struct registry r;
    uint64_t rng = 311;
    reg_init(&r, 1, &lb_least);
    fill(&r, 200, 0);
    struct reg_req q = {0};
    static struct backend *held[1000];
    for (int k = 0; k < 1000; k++)
        held[k] = pick(&r, &q, &rng);
    unsigned most = 0;
    for (unsigned i = 0; i < 200; i++)
        most = MAX(most, atomic_load(&r.v[i]->inflight));
    ok(most <= 8, "least: 1000 held requests on 200 backends, at most %u on one (mean 5)", most);
    for (int k = 0; k < 1000; k++)
        done_with(&r, held[k]);
    reg_deinit(&r);

    /* Slow start thins a new backend's draws as it does its share. */
    reg_init(&r, 1, &lb_random);
    struct reg_settings st = {.eject_after = 5, .eject_base_ms = 30000, .eject_max_ms = 300000,
                              .default_cap = 1, .queue_max = 1024, .slow_start_ms = 10000};
    reg_configure(&r, &st);
    fill(&r, 200, 0);
    int64_t now = util_now_ms();
    for (unsigned i = 0; i < 100; i++)
        r.v[i]->ramp_start = now - 60000; /* b0..b99 joined long ago */
    unsigned fresh = 0;
    for (int k = 0; k < 20000; k++) {
        struct backend *b = NULL;
        reg_pick(&r, &q, &rng, now, NULL, &b, NULL);
        fresh += num(b) >= 100;
        done_with(&r, b);
    }
    /* 100 at 10 % of their weight beside 100 at 100 %: 10 / 110. */
    double share = fresh / 20000.0;
    ok(share > 0.06 && share < 0.13, "random: 100 backends in slow start get %.3f (want 0.09)",
       share);
    reg_deinit(&r);
}

/* wrr is not sampled: its exact interleave survives on large sets. */
static void test_wrr_stays_exact(void)
{
    struct registry r;
    uint64_t rng = 401;
    reg_init(&r, 1, &lb_wrr);
    for (unsigned i = 0; i < 100; i++) {
        struct backend_spec s = spec(i, i % 2 ? 1 : 3, 0);
        upsert(&r, &s);
    }
    unsigned count[100] = {0};
    struct reg_req q = {0};
    for (int k = 0; k < 2000; k++) { /* ten rounds of the total weight, 200 */
        struct backend *b = pick(&r, &q, &rng);
        count[num(b)]++;
        done_with(&r, b);
    }
    bool exact = true;
    for (unsigned i = 0; i < 100; i++)
        exact &= count[i] == (i % 2 ? 10u : 30u);
    ok(exact, "wrr over 100 backends gives each exactly its weight's share");
    reg_deinit(&r);
}

/* Every kind of change must reach the index: it is only rebuilt when the
 * registry's version moves. */
static void test_updates_reach_the_index(void)
{
    struct registry r;
    uint64_t rng = 501;
    char err[NET_ERR_LEN];
    reg_init(&r, 1, &lb_random);
    fill(&r, 100, 0);
    struct reg_req q = {0};
    struct backend *b = pick(&r, &q, &rng); /* builds the index */
    done_with(&r, b);

    /* Added with a huge weight: it must now take most picks. */
    struct backend_spec big = spec(100, 100000, 0);
    upsert(&r, &big);
    unsigned hits = 0;
    for (int k = 0; k < 1000; k++) {
        b = pick(&r, &q, &rng);
        hits += num(b) == 100;
        done_with(&r, b);
    }
    ok(hits > 950, "an added heavy backend takes its share at once (%u of 1000)", hits);

    /* Its weight to 0 (drain): never picked. */
    big.weight = 0;
    upsert(&r, &big);
    hits = 0;
    for (int k = 0; k < 1000; k++) {
        b = pick(&r, &q, &rng);
        hits += num(b) == 100;
        done_with(&r, b);
    }
    is_int(hits, 0, "a weight changed to 0 takes no new request");

    /* Back to a huge weight, then removed while a request holds it. */
    big.weight = 100000;
    upsert(&r, &big);
    struct backend *held = pick(&r, &q, &rng);
    ok(held != NULL && num(held) == 100, "the weight change back is seen");
    ok(reg_remove(&r, "b100") == 0, "remove b100 with a request in flight");
    hits = 0;
    for (int k = 0; k < 1000; k++) {
        b = pick(&r, &q, &rng);
        hits += b == held;
        done_with(&r, b);
    }
    is_int(hits, 0, "a removed backend takes no new request");
    done_with(&r, held);

    /* Models: a route appears with an update, and goes with the next one. */
    struct backend_spec s = spec(42, 1, 0);
    s.nmodels = 1;
    s.models = "llama-3-8b";
    upsert(&r, &s);
    struct reg_req qm = {.model = "llama-3-8b"};
    bool routed = true;
    for (int k = 0; k < 50; k++) {
        b = pick(&r, &qm, &rng);
        routed &= num(b) == 42;
        done_with(&r, b);
    }
    ok(routed, "a model added by an update routes to its server");
    s.nmodels = 0;
    upsert(&r, &s);
    struct reg_settings st = {.eject_after = 5, .eject_base_ms = 30000, .eject_max_ms = 300000,
                              .default_cap = 1, .queue_max = 1024, .reject_unknown_model = true};
    reg_configure(&r, &st);
    struct backend *none = NULL;
    is_int(reg_pick(&r, &qm, &rng, NOW, NULL, &none, NULL), REG_NO_MODEL,
           "the model removed by an update is unknown again");
    st.reject_unknown_model = false;
    reg_configure(&r, &st);

    /* Probed model lists count like configured ones. */
    const char *probed[1] = {"qwen"};
    reg_set_probed_models(&r, r.v[7], probed, 1);
    struct reg_req qp = {.model = "qwen"};
    b = pick(&r, &qp, &rng);
    ok(b != NULL && num(b) == 7, "a probed model routes to the backend that reported it");
    done_with(&r, b);

    /* A pin to a backend added after the index was built. */
    struct backend_spec late = spec(500, 1, 0);
    upsert(&r, &late);
    struct reg_req qpin = {.pin = "b500"};
    b = pick(&r, &qpin, &rng);
    ok(b != NULL && num(b) == 500, "a pin finds a backend added after the last pick");
    done_with(&r, b);

    /* A PUT replaces the set: only the new names come out. */
    struct backend_spec set[80];
    for (unsigned i = 0; i < 80; i++)
        set[i] = spec(1000 + i, 1, 0);
    is_int(reg_replace(&r, REG_SOURCE_ADMIN, set, 80, 0, err), 80, "PUT of 80 new backends");
    bool only_new = true;
    for (int k = 0; k < 500; k++) {
        b = pick(&r, &q, &rng);
        only_new &= num(b) >= 1000;
        done_with(&r, b);
    }
    ok(only_new, "after the PUT only its backends are picked");
    reg_deinit(&r);
}

/* Routing, pins and affinity keep their meaning on large sets. */
static void test_routes_on_large_sets(void)
{
    struct registry r;
    uint64_t rng = 601;
    reg_init(&r, 1, &lb_least);
    for (unsigned i = 0; i < 300; i++) {
        struct backend_spec s = spec(i, 1, 0);
        if (i % 3 == 0) {
            s.nmodels = 2;
            s.models = "m\0m"; /* listed twice: still one backend */
        } else if (i == 1) {
            s.weight = 0;
            s.nmodels = 1;
            s.models = "drained-only";
        }
        upsert(&r, &s);
    }
    struct reg_req q = {.model = "m"};
    bool only_m = true;
    for (int k = 0; k < 1000; k++) {
        struct backend *b = pick(&r, &q, &rng);
        only_m &= num(b) % 3 == 0;
        done_with(&r, b);
    }
    ok(only_m, "a routed request goes only to the model's 100 servers");
    q.model = "drained-only";
    unsigned other = 0;
    for (int k = 0; k < 200; k++) {
        struct backend *b = pick(&r, &q, &rng);
        other += num(b) != 1;
        done_with(&r, b);
    }
    is_int(other, 200, "a model served only by drained backends is unknown: any backend");

    struct reg_req qp = {.pin = "b250", .model = "m"};
    struct backend *b = pick(&r, &qp, &rng);
    ok(b != NULL && num(b) == 250, "a pin wins over the model route, as on small sets");
    done_with(&r, b);
    r.v[250]->down_until = NOW + 1000;
    b = pick(&r, &qp, &rng);
    ok(b != NULL && num(b) == 250, "a pinned backend that is ejected still takes its files");
    done_with(&r, b);
    r.v[250]->down_until = 0;

    struct reg_req qa = {.affinity = 0xfeedULL};
    struct backend *first = pick(&r, &qa, &rng);
    bool same = true;
    for (int k = 0; k < 20; k++) {
        b = pick(&r, &qa, &rng);
        same &= b == first;
        done_with(&r, b);
    }
    ok(same, "a session key keeps its backend among 300");
    done_with(&r, first);

    /* Everything ejected: panic mode uses them all, via the full scan. */
    for (unsigned i = 0; i < 300; i++)
        r.v[i]->down_until = NOW + 1000;
    struct reg_req qany = {0};
    b = pick(&r, &qany, &rng);
    ok(b != NULL, "with all 300 ejected, a request is still served");
    if (b != NULL)
        done_with(&r, b);
    reg_deinit(&r);
}

/* The per-model counters take no lock once a name is known, and more
 * names than slots end under "(other)" instead of past the table. */
static void test_model_counters(void)
{
    struct registry r;
    reg_init(&r, 1, &lb_least);
    char name[32];
    for (int i = 0; i < 300; i++) {
        snprintf(name, sizeof(name), "model-%d", i);
        reg_model_inflight(&r, name, +1);
    }
    is_int(atomic_load(&r.nmodel_stats), REG_MAX_MODEL_STATS, "300 names fill the 128 slots");
    struct model_stats *other = &r.models[REG_MAX_MODEL_STATS - 1];
    ok(strcmp(other->name, "(other)") == 0, "the last slot is (other)");
    is_int(atomic_load(&other->inflight), 300 - (REG_MAX_MODEL_STATS - 1),
           "names past the table count under (other)");
    reg_model_inflight(&r, "model-0", -1);
    reg_model_inflight(&r, "model-0", -1);
    is_int(atomic_load(&r.models[0].inflight), 0, "the in-flight gauge never goes below zero");
    is_int(atomic_load(&r.models[0].requests), 1, "requests counted once");
    reg_model_inflight(&r, NULL, +1);
    struct buf out = {0};
    reg_dump_metrics(&r, &out, NOW);
    buf_append(&out, "", 1);
    ok(strstr(buf_data(&out), "llamalb_model_inflight{model=\"(other)\"} 174") != NULL,
       "metrics show (other)'s gauge");
    buf_free(&out);
    reg_deinit(&r);
}

int main(void)
{
    test_only_eligible();
    test_fallback_finds_the_free_one();
    test_weights_followed();
    test_wrr_stays_exact();
    test_updates_reach_the_index();
    test_routes_on_large_sets();
    test_model_counters();
    buf_cache_drain();
    reg_thread_exit();
    return done_testing();
}
