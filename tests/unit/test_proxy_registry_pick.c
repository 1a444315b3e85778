/* SPDX-License-Identifier: MIT
 * Picking (src/proxy/reg_pick.c) through reg_pick on small sets: the
 * policies see the right candidates (weights respected, smooth WRR's
 * exact interleave through the registry, least load first and fastest on
 * ties, never a tried backend), model routing and unknown models, pinning
 * to a backend (uploaded files), session affinity. Large sets and the
 * pick index are in test_proxy_registry_scale.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "reg_test.h"
#include "util.h"

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


int main(void)
{
    test_wrr();
    test_random_split();
    test_least_and_tried();
    test_least_speed_tiebreak();
    test_models_and_pin();
    test_affinity();
    buf_cache_drain();
    reg_thread_exit();
    return done_testing();
}
