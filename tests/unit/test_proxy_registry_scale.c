/* SPDX-License-Identifier: MIT
 * Registry properties at scale. The per-model counters, which every
 * request moves twice, take no lock once a name is known and must stay
 * bounded however many names clients send. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/proxy/lb.h"
#include "../../src/proxy/registry.h"
#include "../tap.h"
#include "buf.h"
#include "util.h"

#define NOW 1000 /* ms: the clock every call here runs at */

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
    test_model_counters();
    buf_cache_drain();
    reg_thread_exit();
    return done_testing();
}
