/* SPDX-License-Identifier: MIT
 * Health (src/proxy/reg_health.c): passive ejection after eject_after
 * failures that never empties the pool, an unreachable backend ejected
 * on its next failure, active probe verdicts (back, ejected, doubling),
 * slow start's small share, and the speed EWMAs least ties with. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "reg_test.h"
#include "util.h"

static void test_ejection_never_empties(void)
{
    struct registry r;
    uint64_t rng = 13;
    reg_init(&r, 1, &lb_least);
    struct reg_settings st = default_settings();
    st.eject_after = 2;
    reg_configure(&r, &st);
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
    reg_configure(&r, &st);
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

static void test_slow_start(void)
{
    struct registry r;
    uint64_t rng = 19;
    reg_init(&r, 1, &lb_random);
    struct reg_settings st = default_settings();
    st.slow_start_ms = 10000;
    reg_configure(&r, &st);
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


/* A refused connect marks a backend unreachable: the next failure ejects
 * it, whatever eject_after says; a good probe brings it back. */
static void test_unreachable_and_probe(void)
{
    struct registry r;
    uint64_t rng = 29;
    reg_init(&r, 1, &lb_least);
    struct reg_settings st = default_settings();
    st.eject_after = 5;
    reg_configure(&r, &st);
    add(&r, "a", 1, 1, 0);
    add(&r, "b", 2, 1, 0);
    struct reg_req qa = {.pin = "a"};
    struct backend *a = pick(&r, &qa, &rng);
    reg_note_unreachable(&r, a);
    is_int(a->consecutive_failures, 4, "unreachable: one failure short of eject_after");
    struct reg_outcome bad = {.failed = true};
    reg_release(&r, a, &bad, 1000);
    is_int(atomic_load(&a->stats.ejections), 1, "the next failure ejects it");
    ok(a->down_until == 1000 + 30000, "for eject_base_ms (reg_configure)");
    struct reg_req q = {0};
    bool only_b = true;
    for (int i = 0; i < 10; i++) {
        struct backend *b = pick(&r, &q, &rng);
        only_b &= strcmp(b->spec.name, "b") == 0;
        done_with(&r, b);
    }
    ok(only_b, "the ejected backend gets no traffic");
    reg_probe_result(&r, a, true, 2000);
    ok(a->down_until == 0 && a->ramp_start == 2000, "a good probe ends the ejection");
    reg_probe_result(&r, a, false, 3000);
    ok(a->down_until == 3000 + 60000 && atomic_load(&a->stats.ejections) == 2,
       "a failed probe ejects at once, twice as long: no real answer came in between");
    reg_probe_result(&r, a, true, 4000);
    reg_probe_result(&r, a, false, 5000);
    ok(a->down_until == 5000 + 120000, "each repeated ejection lasts twice as long");
    struct reg_outcome good = {.counted = true};
    reg_probe_result(&r, a, true, 6000);
    backend_ref(a);
    atomic_fetch_add(&a->inflight, 1);
    reg_release(&r, a, &good, 6000);
    backend_unref(a);
    reg_probe_result(&r, a, false, 7000);
    ok(a->down_until == 7000 + 30000, "after a real answer, the next ejection is short again");
    backend_unref(a);

    st.eject_after = 0;
    reg_configure(&r, &st);
    struct backend *b = pick(&r, &(struct reg_req){.pin = "b"}, &rng);
    reg_note_unreachable(&r, b);
    is_int(b->consecutive_failures, 0, "eject_after 0: unreachable never ejects");
    reg_release(&r, b, &bad, 1000);
    is_int(atomic_load(&b->stats.ejections), 0, "nor does a failure");
    backend_unref(b);
    reg_deinit(&r);
}

/* Speed: EWMAs of time to first byte and between events from good
 * answers only. */
static void test_speed(void)
{
    struct registry r;
    uint64_t rng = 31;
    reg_init(&r, 1, &lb_least);
    add(&r, "a", 1, 1, 0);
    struct reg_req q = {0};
    struct backend *b = pick(&r, &q, &rng);
    struct reg_outcome o = {.ttft_us = 100000, .tbt_us = 20000, .events = 10, .counted = true};
    reg_release(&r, b, &o, 1000);
    ok(b->ewma_ttft_us == 100000 && b->ewma_tbt_us == 20000 && b->ewma_events == 10,
       "the first sample sets the averages");
    backend_ref(b);
    atomic_fetch_add(&b->inflight, 1);
    o.ttft_us = 200000;
    reg_release(&r, b, &o, 1000);
    ok(b->ewma_ttft_us == 120000, "the next moves them by a fifth (%.0f)", b->ewma_ttft_us);
    backend_ref(b);
    atomic_fetch_add(&b->inflight, 1);
    struct reg_outcome bad = {.ttft_us = 900000, .failed = true, .counted = true};
    reg_release(&r, b, &bad, 1000);
    ok(b->ewma_ttft_us == 120000 && b->samples == 2, "a failed request is not a sample");
    backend_unref(b);
    backend_unref(b);
    backend_unref(b);
    reg_deinit(&r);
}

int main(void)
{
    test_ejection_never_empties();
    test_slow_start();
    test_unreachable_and_probe();
    test_speed();
    buf_cache_drain();
    reg_thread_exit();
    return done_testing();
}
