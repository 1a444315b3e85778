/* SPDX-License-Identifier: MIT
 * Registry properties at scale: the pick index follows every change of the
 * set (add, remove, weight, models, PUT); routes, pins and affinity keep
 * their meaning over hundreds of backends; and the per-model counters,
 * which no longer take the lock, stay bounded. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/proxy/lb.h"
#include "../../src/proxy/registry.h"
#include "../tap.h"
#include "buf.h"
#include "util.h"

#define NOW 1000 /* ms: the clock every pick here runs at */

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
    strcpy(s.models[0], "llama-3-8b");
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
    r.reject_unknown_model = true;
    struct backend *none = NULL;
    is_int(reg_pick(&r, &qm, &rng, NOW, NULL, &none, NULL), REG_NO_MODEL,
           "the model removed by an update is unknown again");
    r.reject_unknown_model = false;

    /* Probed model lists count like configured ones. */
    char probed[1][128] = {"qwen"};
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
            strcpy(s.models[0], "m");
            strcpy(s.models[1], "m"); /* listed twice: still one backend */
        } else if (i == 1) {
            s.weight = 0;
            s.nmodels = 1;
            strcpy(s.models[0], "drained-only");
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
    test_updates_reach_the_index();
    test_routes_on_large_sets();
    test_model_counters();
    buf_cache_drain();
    reg_thread_exit();
    return done_testing();
}
