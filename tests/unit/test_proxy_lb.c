/* SPDX-License-Identifier: MIT
 * Policy and registry properties on synthetic backends: weights respected,
 * smooth WRR's exact interleave, least load first and fastest on ties,
 * never a tried backend, caps and the gateway queue's FIFO hand-off, model
 * routing, pinning, affinity, ejection that never empties the pool, slow
 * start, and reference counts that end at zero. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/proxy/lb.h"
#include "../../src/proxy/registry.h"
#include "../tap.h"
#include "buf.h"
#include "util.h"

static struct backend_spec spec(const char *name, int port, unsigned weight)
{
    struct backend_spec s;
    memset(&s, 0, sizeof(s));
    snprintf(s.name, sizeof(s.name), "%s", name);
    snprintf(s.host, sizeof(s.host), "10.0.0.%d", port % 250 + 1);
    s.port = port;
    s.weight = weight;
    return s;
}

static void add(struct registry *r, const char *name, int port, unsigned weight, unsigned cap)
{
    char err[NET_ERR_LEN];
    struct backend_spec s = spec(name, port, weight);
    s.max_inflight = cap;
    s.max_inflight_set = true;
    if (reg_upsert(r, &s, REG_SOURCE_ADMIN, err) < 0)
        note("upsert %s: %s", name, err);
}

static struct backend *pick(struct registry *r, const struct reg_req *q, uint64_t *rng)
{
    struct backend *b = NULL;
    if (reg_pick(r, q, rng, 1000, NULL, &b, NULL) != REG_PICKED)
        return NULL;
    return b;
}

static void done_with(struct registry *r, struct backend *b)
{
    struct reg_outcome o = {0};
    reg_release(r, b, &o, 1000);
    backend_unref(b);
}

static int idx(const char *name) { return name[0] - 'a'; }

static void test_wrr(void)
{
    struct registry r;
    uint64_t rng = 1;
    reg_init(&r, 1, &lb_wrr);
    add(&r, "a", 1, 3, 0);
    add(&r, "b", 2, 1, 0);
    struct reg_req q = {0};
    char seq[9] = {0};
    for (int i = 0; i < 8; i++) {
        struct backend *b = pick(&r, &q, &rng);
        seq[i] = b->spec.name[0];
        done_with(&r, b);
    }
    /* nginx's smooth WRR for 3:1: a a b a, repeating. */
    ok(strcmp(seq, "aabaaaba") == 0, "wrr 3:1 interleaves smoothly (got %s)", seq);
    int counts[2] = {0};
    for (int i = 0; i < 4000; i++) {
        struct backend *b = pick(&r, &q, &rng);
        counts[idx(b->spec.name)]++;
        done_with(&r, b);
    }
    is_int(counts[0], 3000, "wrr gives a exactly 3000 of 4000");
    is_int(counts[1], 1000, "wrr gives b exactly 1000 of 4000");
    reg_deinit(&r);
}

static void test_random_split(void)
{
    struct registry r;
    uint64_t rng = 42;
    reg_init(&r, 1, &lb_random);
    add(&r, "a", 1, 3, 0);
    add(&r, "b", 2, 1, 0);
    struct reg_req q = {0};
    int counts[2] = {0};
    for (int i = 0; i < 20000; i++) {
        struct backend *b = pick(&r, &q, &rng);
        counts[idx(b->spec.name)]++;
        done_with(&r, b);
    }
    double share = counts[0] / 20000.0;
    ok(share > 0.73 && share < 0.77, "random 3:1 gives a %.3f of picks (0.75 +- 0.02)", share);
    reg_deinit(&r);
}

static void test_least_and_tried(void)
{
    struct registry r;
    uint64_t rng = 7;
    reg_init(&r, 1, &lb_least);
    add(&r, "a", 1, 1, 0);
    add(&r, "b", 2, 1, 0);
    add(&r, "c", 3, 1, 0);
    struct reg_req q = {0};
    struct backend *held[3];
    for (int i = 0; i < 3; i++)
        held[i] = pick(&r, &q, &rng);
    ok(held[0] != held[1] && held[1] != held[2] && held[0] != held[2],
       "least spreads 3 concurrent requests over 3 backends");
    struct backend *n4 = pick(&r, &q, &rng);
    done_with(&r, held[1]);
    struct backend *n5 = pick(&r, &q, &rng);
    ok(n5 == held[1], "least picks the backend whose request just finished");
    done_with(&r, n4);
    done_with(&r, n5);
    done_with(&r, held[0]);
    done_with(&r, held[2]);

    /* never a tried backend */
    struct backend *a = pick(&r, &q, &rng);
    struct backend *tried[2] = {a, NULL};
    q.tried = tried;
    q.ntried = 1;
    bool never = true;
    for (int i = 0; i < 200; i++) {
        struct backend *b = pick(&r, &q, &rng);
        never &= b != a;
        done_with(&r, b);
    }
    ok(never, "a tried backend is never picked again for the same request");
    done_with(&r, a);
    reg_deinit(&r);
}

static void test_least_speed_tiebreak(void)
{
    struct registry r;
    uint64_t rng = 9;
    reg_init(&r, 1, &lb_least);
    add(&r, "a", 1, 1, 1);
    add(&r, "b", 2, 1, 1);
    struct reg_req q = {0};
    /* Teach the registry that b is faster (75 ms) than a (150 ms). */
    for (int i = 0; i < 5; i++) {
        struct backend *x = pick(&r, &q, &rng), *y = pick(&r, &q, &rng);
        struct reg_outcome ox = {.ttft_us = x->spec.name[0] == 'a' ? 150000 : 75000, .events = 1};
        struct reg_outcome oy = {.ttft_us = y->spec.name[0] == 'a' ? 150000 : 75000, .events = 1};
        reg_release(&r, x, &ox, 1000);
        reg_release(&r, y, &oy, 1000);
        backend_unref(x);
        backend_unref(y);
    }
    int fast = 0;
    for (int i = 0; i < 50; i++) {
        struct backend *b = pick(&r, &q, &rng);
        fast += b->spec.name[0] == 'b';
        done_with(&r, b);
    }
    is_int(fast, 50, "with both idle, least sends every request to the faster backend");
    reg_deinit(&r);
}

static struct list ready_list;
static int wakes;
static void on_wake(void *arg)
{
    UNUSED(arg);
    wakes++;
}

static void test_queue(void)
{
    struct registry r;
    uint64_t rng = 3;
    reg_init(&r, 1, &lb_least);
    list_init(&ready_list);
    add(&r, "a", 1, 1, 1);
    struct reg_req q = {0};
    struct backend *first = NULL;
    enum reg_pick_rc rc = reg_pick(&r, &q, &rng, 1000, NULL, &first, NULL);
    is_int(rc, REG_PICKED, "first request gets the only slot");
    struct backend *none = NULL;
    rc = reg_pick(&r, &q, &rng, 1000, NULL, &none, NULL);
    is_int(rc, REG_QUEUE_FULL, "a full backend and no waiter: refused");
    struct reg_waiter w[3];
    memset(w, 0, sizeof(w));
    for (int i = 0; i < 3; i++) {
        w[i].ready_list = &ready_list;
        w[i].wake = on_wake;
        rc = reg_pick(&r, &q, &rng, 1000 + i, &w[i], &none, NULL);
        is_int(rc, REG_QUEUED, "request %d waits in the queue", i + 2);
    }
    is_int(r.nwaiting, 3, "three waiters");
    /* A newcomer cannot jump the queue: nothing is free. */
    struct reg_waiter late = {.ready_list = &ready_list, .wake = on_wake};
    r.queue_max = 3;
    rc = reg_pick(&r, &q, &rng, 1010, &late, &none, NULL);
    is_int(rc, REG_QUEUE_FULL, "queue at its bound refuses the next request");
    /* Cancel the middle one, then free the slot: the oldest gets it. */
    ok(reg_cancel_wait(&r, &w[1]) == NULL, "cancelling a queued waiter returns no slot");
    done_with(&r, first);
    is_int(wakes, 1, "freeing the slot wakes exactly one waiter");
    is_int(w[0].state, REG_W_READY, "the oldest waiter got the slot");
    is_int(w[2].state, REG_W_QUEUED, "the younger waiter still waits");
    ok(w[0].assigned != NULL && strcmp(w[0].assigned->spec.name, "a") == 0,
       "the hand-off carries the backend");
    struct list got;
    list_init(&got);
    reg_take_ready(&r, &ready_list, &got);
    ok(!list_empty(&got) && got.next == &w[0].link, "the worker takes its ready waiter");
    list_del(&w[0].link);
    struct backend *b0 = w[0].assigned;
    /* The slot is held by the hand-off: a cancel of a READY waiter returns it. */
    struct backend *back = reg_cancel_wait(&r, &w[2]);
    ok(back == NULL, "w2 was still queued: nothing to give back");
    done_with(&r, b0);
    is_int(r.nwaiting, 0, "queue empty");
    is_int(atomic_load(&b0->inflight), 0, "no slot leaked");
    reg_deinit(&r);
}

static void test_models_and_pin(void)
{
    struct registry r;
    uint64_t rng = 5;
    char err[NET_ERR_LEN];
    reg_init(&r, 1, &lb_least);
    struct backend_spec s1 = spec("small", 1, 1), s2 = spec("big", 2, 1);
    s1.nmodels = 1;
    s1.models = "llama-3-1b"; /* packed lists: names back to back */
    s2.nmodels = 2;
    s2.models = "llama-3-3b\0embed";
    s1.max_inflight_set = s2.max_inflight_set = true;
    reg_upsert(&r, &s1, REG_SOURCE_ADMIN, err);
    reg_upsert(&r, &s2, REG_SOURCE_ADMIN, err);
    struct reg_req q = {.model = "llama-3-3b"};
    bool all_big = true;
    for (int i = 0; i < 50; i++) {
        struct backend *b = pick(&r, &q, &rng);
        all_big &= strcmp(b->spec.name, "big") == 0;
        done_with(&r, b);
    }
    ok(all_big, "a model served by one backend always goes there");
    q.model = "unknown";
    struct backend *b = pick(&r, &q, &rng);
    ok(b != NULL, "unknown model goes to any backend by default");
    done_with(&r, b);
    r.reject_unknown_model = true;
    struct backend *none = NULL;
    is_int(reg_pick(&r, &q, &rng, 1000, NULL, &none, NULL), REG_NO_MODEL,
           "unknown model refused when configured");
    q.model = NULL;
    q.pin = "small";
    bool all_small = true;
    for (int i = 0; i < 20; i++) {
        b = pick(&r, &q, &rng);
        all_small &= strcmp(b->spec.name, "small") == 0;
        done_with(&r, b);
    }
    ok(all_small, "a pinned request (uploaded file) always goes to its backend");
    struct buf out = {0};
    reg_models_json(&r, &out, 1000);
    buf_append(&out, "", 1);
    ok(strstr(buf_data(&out), "\"llama-3-1b\"") && strstr(buf_data(&out), "\"llama-3-3b\"") &&
           strstr(buf_data(&out), "\"embed\""),
       "the model list has every model");
    buf_free(&out);
    reg_deinit(&r);
}

static void test_affinity(void)
{
    struct registry r;
    uint64_t rng = 11;
    reg_init(&r, 1, &lb_random);
    add(&r, "a", 1, 1, 0);
    add(&r, "b", 2, 1, 0);
    add(&r, "c", 3, 1, 0);
    struct reg_req q = {.affinity = 0x1234567};
    struct backend *first = pick(&r, &q, &rng);
    bool same = true;
    for (int i = 0; i < 30; i++) {
        struct backend *b = pick(&r, &q, &rng);
        same &= b == first;
        done_with(&r, b);
    }
    ok(same, "a session key keeps choosing the same backend");
    const char *keep = first->spec.name;
    char keep_name[REG_NAME_MAX + 1];
    snprintf(keep_name, sizeof(keep_name), "%s", keep);
    done_with(&r, first);
    int moved = 0;
    for (uint64_t k = 1; k <= 300; k++) {
        q.affinity = k * 0x9E3779B97F4A7C15ULL;
        struct backend *before = pick(&r, &q, &rng);
        char bn[REG_NAME_MAX + 1];
        snprintf(bn, sizeof(bn), "%s", before->spec.name);
        done_with(&r, before);
        if (strcmp(bn, "c") == 0)
            moved++;
    }
    ok(moved > 50 && moved < 150, "sessions spread over backends (%d of 300 on c)", moved);
    reg_deinit(&r);
}

static void test_ejection_never_empties(void)
{
    struct registry r;
    uint64_t rng = 13;
    reg_init(&r, 1, &lb_least);
    r.eject_after = 2;
    add(&r, "a", 1, 1, 0);
    add(&r, "b", 2, 1, 0);
    struct reg_req q = {0};
    struct reg_outcome bad = {.failed = true};
    for (int i = 0; i < 4; i++) {
        struct backend *b = pick(&r, &q, &rng);
        reg_release(&r, b, &bad, 1000);
        backend_unref(b);
    }
    int picked = 0;
    for (int i = 0; i < 10; i++) {
        struct backend *b = pick(&r, &q, &rng);
        picked += b != NULL;
        if (b)
            done_with(&r, b);
    }
    is_int(picked, 10, "with every backend ejected, all are used (panic mode)");
    reg_deinit(&r);

    reg_init(&r, 1, &lb_least);
    r.eject_after = 2;
    add(&r, "a", 1, 1, 0);
    add(&r, "b", 2, 1, 0);
    struct backend *a = NULL;
    for (int i = 0; i < 2; i++) {
        struct reg_req qa = {.pin = "a"};
        a = pick(&r, &qa, &rng);
        reg_release(&r, a, &bad, 1000);
        backend_unref(a);
    }
    bool only_b = true;
    for (int i = 0; i < 20; i++) {
        struct backend *b = pick(&r, &q, &rng);
        only_b &= strcmp(b->spec.name, "b") == 0;
        done_with(&r, b);
    }
    ok(only_b, "an ejected backend gets no traffic while another is up");
    reg_deinit(&r);
}

static void test_drain_and_remove(void)
{
    struct registry r;
    uint64_t rng = 17;
    char err[NET_ERR_LEN];
    reg_init(&r, 1, &lb_wrr);
    add(&r, "a", 1, 1, 0);
    add(&r, "b", 2, 1, 0);
    struct reg_req q = {0};
    struct backend *held = pick(&r, &q, &rng);
    char name[REG_NAME_MAX + 1];
    snprintf(name, sizeof(name), "%s", held->spec.name);
    ok(reg_remove(&r, name) == 0, "remove a backend with a request in flight");
    ok(atomic_load(&held->removed), "it is marked removed");
    for (int i = 0; i < 10; i++) {
        struct backend *b = pick(&r, &q, &rng);
        ok(b != held, "removed backend gets no new request (%d)", i);
        done_with(&r, b);
    }
    done_with(&r, held); /* frees it: ASan would report a use after free or leak */
    struct backend_spec s = spec("a", 1, 0);
    reg_upsert(&r, &s, REG_SOURCE_ADMIN, err);
    s = spec("b", 2, 0);
    reg_upsert(&r, &s, REG_SOURCE_ADMIN, err);
    ok(pick(&r, &q, &rng) == NULL, "weight 0 everywhere: nothing eligible (drained)");
    ok(reg_remove(&r, "nope") != 0, "removing an unknown name fails");
    struct backend_spec set[2] = {spec("x", 5, 1), spec("y", 6, 2)};
    is_int(reg_replace(&r, REG_SOURCE_ADMIN, set, 2, 5, err), 2, "PUT replaces the set");
    is_int(reg_replace(&r, REG_SOURCE_ADMIN, set, 2, 4, err), -ESTALE, "older generation refused");
    reg_deinit(&r);
}

static void test_slow_start(void)
{
    struct registry r;
    uint64_t rng = 19;
    reg_init(&r, 1, &lb_random);
    r.slow_start_ms = 10000;
    add(&r, "a", 1, 1, 0);
    add(&r, "b", 2, 1, 0);
    /* a has been up for long; b just joined. */
    r.v[0]->ramp_start -= 60000;
    struct reg_req q = {0};
    int nb = 0;
    for (int i = 0; i < 4000; i++) {
        struct backend *b = NULL;
        reg_pick(&r, &q, &rng, util_now_ms(), NULL, &b, NULL);
        nb += strcmp(b->spec.name, "b") == 0;
        done_with(&r, b);
    }
    ok(nb > 200 && nb < 700, "a backend in slow start gets a small share (%d of 4000)", nb);
    reg_deinit(&r);
}

static void test_spec_parse(void)
{
    struct backend_spec s;
    char err[NET_ERR_LEN];
    ok(reg_spec_parse("low=127.0.0.1:8080,weight=3,models=a|b,max-inflight=2", &s, err) == 0,
       "full --backend syntax parses");
    ok(s.weight == 3 && s.nmodels == 2 && s.max_inflight == 2 && s.max_inflight_set &&
           s.port == 8080 && strcmp(reg_model_next(s.models), "b") == 0,
       "fields are taken");
    reg_spec_free(&s);
    ok(reg_spec_parse("x=[::1]:9000", &s, err) == 0 && strcmp(s.host, "::1") == 0, "IPv6 backend");
    reg_spec_free(&s);
    ok(reg_spec_parse("x=host.example:80", &s, err) != 0, "names are not resolved: refused");
    ok(reg_spec_parse("x=1.2.3.4:0", &s, err) != 0, "port 0 refused");
    ok(reg_spec_parse("x=1.2.3.4:80,weight=-1", &s, err) != 0, "negative weight refused");
    ok(reg_spec_parse("x=1.2.3.4:80,bogus=1", &s, err) != 0, "unknown option refused");
    ok(reg_spec_parse("bad name=1.2.3.4:80", &s, err) != 0, "bad name refused");
}

int main(void)
{
    test_spec_parse();
    test_wrr();
    test_random_split();
    test_least_and_tried();
    test_least_speed_tiebreak();
    test_queue();
    test_models_and_pin();
    test_affinity();
    test_ejection_never_empties();
    test_drain_and_remove();
    test_slow_start();
    buf_cache_drain();
    reg_thread_exit();
    return done_testing();
}
