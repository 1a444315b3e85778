/* SPDX-License-Identifier: MIT
 * Statistics (src/proxy/reg_stats.c): reg_record_response counts a relayed
 * response in its backend's counters and duration histogram (bucket
 * edges included), and the per-backend and per-model families written
 * from them: exact lines for a known history. */
#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "reg_test.h"
#include "util.h"

/* The metrics text of <r> (NUL-terminated in <out>). */
static const char *metrics(struct registry *r, struct buf *out)
{
    buf_release(out);
    reg_write_metrics(r, out, 1000);
    buf_append(out, "", 1);
    return buf_data(out);
}

static bool has(const char *text, const char *line)
{
    bool found = strstr(text, line) != NULL;
    if (!found)
        note("  missing: %s", line);
    return found;
}

static void test_record_response(void)
{
    struct registry r;
    uint64_t rng = 41;
    reg_init(&r, 1, &lb_random);
    add(&r, "a", 1, 1, 0);
    struct reg_req q = {.model = "m\"1"};
    struct backend *b = pick(&r, &q, &rng);
    /* 5 ms exactly is in the first bucket (le is inclusive); 5.001 ms
     * in the second; 31 s above every bound. */
    const struct reg_response x[] = {
        {.status = 200, .bytes = 100, .dur_us = 5000, .ttfb_us = 1000, .ttft_us = 1200,
         .sse_events = 0},
        {.status = 201, .bytes = 50, .dur_us = 5001, .ttfb_us = 2000, .ttft_us = 30000,
         .tbt_us = 2500, .sse_events = 7},
        {.status = 503, .bytes = 0, .dur_us = 31000000, .ttfb_us = 500, .sse_events = 0},
        {.status = 404, .bytes = 9, .dur_us = 200000, .ttfb_us = 0, .sse_events = 3},
    };
    for (size_t i = 0; i < ARRAY_SIZE(x); i++)
        reg_record_response(&r, b, &x[i]);
    is_int(atomic_load(&b->stats.requests), 4, "four responses");
    is_int(atomic_load(&b->stats.status[2]), 2, "two 2xx");
    is_int(atomic_load(&b->stats.status[4]), 1, "one 4xx");
    is_int(atomic_load(&b->stats.status[5]), 1, "one 5xx");
    is_int(atomic_load(&b->stats.bytes_out), 159, "bytes summed");
    is_int(atomic_load(&b->stats.events), 10, "events summed");
    is_int(atomic_load(&b->stats.lat_count[0]), 1, "5 ms in the 5 ms bucket");
    is_int(atomic_load(&b->stats.lat_count[1]), 1, "5.001 ms in the next");
    is_int(atomic_load(&b->stats.lat_count[5]), 1, "200 ms in the 250 ms bucket");
    is_int(atomic_load(&b->stats.lat_count[REG_LAT_BUCKETS]), 1, "31 s above every bound");

    struct reg_outcome o = {.failed = true, .ttft_us = 1500, .tbt_us = 40000, .sse_events = 7,
                            .prompt_tokens = 11, .completion_tokens = 6, .model = "m\"1",
                            .counted = true};
    reg_model_inflight(&r, q.model, +1);
    reg_release(&r, b, &o, 1000);
    reg_model_inflight(&r, q.model, -1);
    backend_unref(b);

    struct buf out = {0};
    const char *m = metrics(&r, &out);
    ok(has(m, "llamalb_backend_requests_total{backend=\"a\",code=\"1xx\"} 0\n"
              "llamalb_backend_requests_total{backend=\"a\",code=\"2xx\"} 2\n"
              "llamalb_backend_requests_total{backend=\"a\",code=\"3xx\"} 0\n"
              "llamalb_backend_requests_total{backend=\"a\",code=\"4xx\"} 1\n"
              "llamalb_backend_requests_total{backend=\"a\",code=\"5xx\"} 1\n"),
       "requests by status class");
    ok(has(m, "llamalb_backend_response_bytes_total{backend=\"a\"} 159\n") &&
           has(m, "llamalb_backend_events_total{backend=\"a\"} 10\n"),
       "bytes and events");
    ok(has(m, "# TYPE llamalb_backend_request_duration_seconds histogram\n"
              "llamalb_backend_request_duration_seconds_bucket{backend=\"a\",le=\"0.005\"} 1\n"
              "llamalb_backend_request_duration_seconds_bucket{backend=\"a\",le=\"0.01\"} 2\n"
              "llamalb_backend_request_duration_seconds_bucket{backend=\"a\",le=\"0.025\"} 2\n"
              "llamalb_backend_request_duration_seconds_bucket{backend=\"a\",le=\"0.05\"} 2\n"
              "llamalb_backend_request_duration_seconds_bucket{backend=\"a\",le=\"0.1\"} 2\n"
              "llamalb_backend_request_duration_seconds_bucket{backend=\"a\",le=\"0.25\"} 3\n"),
       "cumulative duration buckets");
    ok(has(m, "llamalb_backend_request_duration_seconds_bucket{backend=\"a\",le=\"30\"} 3\n"
              "llamalb_backend_request_duration_seconds_bucket{backend=\"a\",le=\"+Inf\"} 4\n"
              "llamalb_backend_request_duration_seconds_sum{backend=\"a\"} 31.210001\n"
              "llamalb_backend_request_duration_seconds_count{backend=\"a\"} 4\n"),
       "+Inf, sum and count");
    ok(has(m, "llamalb_backend_ttfb_seconds_bucket{backend=\"a\",le=\"+Inf\"} 4\n"
              "llamalb_backend_ttfb_seconds_sum{backend=\"a\"} 0.003500\n"
              "llamalb_backend_ttfb_seconds_count{backend=\"a\"} 4\n"),
       "time to first byte: a histogram of every response");
    ok(has(m, "llamalb_backend_ttft_seconds_bucket{backend=\"a\",le=\"0.005\"} 1\n") &&
           has(m, "llamalb_backend_ttft_seconds_bucket{backend=\"a\",le=\"0.025\"} 1\n"
                  "llamalb_backend_ttft_seconds_bucket{backend=\"a\",le=\"0.05\"} 2\n") &&
           has(m, "llamalb_backend_ttft_seconds_sum{backend=\"a\"} 0.031200\n"
                  "llamalb_backend_ttft_seconds_count{backend=\"a\"} 2\n"),
       "time to first token: only the responses that had one");
    ok(has(m, "llamalb_backend_tbt_seconds_bucket{backend=\"a\",le=\"0.001\"} 0\n"
              "llamalb_backend_tbt_seconds_bucket{backend=\"a\",le=\"0.0025\"} 1\n") &&
           has(m, "llamalb_backend_tbt_seconds_sum{backend=\"a\"} 0.002500\n"
                  "llamalb_backend_tbt_seconds_count{backend=\"a\"} 1\n"),
       "time between tokens: streams only, in their own (shorter) buckets");
    ok(has(m, "llamalb_model_requests_total{model=\"m\\\"1\"} 1\n") &&
           has(m, "llamalb_model_errors_total{model=\"m\\\"1\"} 1\n") &&
           has(m, "llamalb_model_inflight{model=\"m\\\"1\"} 0\n") &&
           has(m, "llamalb_model_ttft_seconds_bucket{model=\"m\\\"1\",le=\"0.005\"} 1\n") &&
           has(m, "llamalb_model_ttft_seconds_sum{model=\"m\\\"1\"} 0.001500\n") &&
           has(m, "llamalb_model_ttft_seconds_count{model=\"m\\\"1\"} 1\n") &&
           has(m, "llamalb_model_tbt_seconds_bucket{model=\"m\\\"1\",le=\"0.035\"} 0\n"
                  "llamalb_model_tbt_seconds_bucket{model=\"m\\\"1\",le=\"0.05\"} 1\n") &&
           has(m, "llamalb_model_prompt_tokens_total{model=\"m\\\"1\"} 11\n") &&
           has(m, "llamalb_model_completion_tokens_total{model=\"m\\\"1\"} 6\n") &&
           has(m, "llamalb_model_events_total{model=\"m\\\"1\"} 7\n"),
       "the model's counters, its name escaped");
    ok(has(m, "llamalb_backend_errors_total{backend=\"a\"} 0\n"),
       "a response is not a connection failure");
    buf_free(&out);
    reg_deinit(&r);
}

/* Every family once, in the order /metrics has always had. */
static void test_family_order(void)
{
    static const char *const order[] = {
        "llamalb_queue_length", "llamalb_queued_total", "llamalb_queue_rejected_total",
        "llamalb_queue_timeouts_total", "llamalb_queue_wait_seconds", "llamalb_backend_up",
        "llamalb_backend_weight", "llamalb_backend_inflight", "llamalb_backend_requests_total",
        "llamalb_backend_errors_total", "llamalb_backend_retries_total",
        "llamalb_backend_ejections_total", "llamalb_backend_response_bytes_total",
        "llamalb_backend_events_total", "llamalb_backend_request_duration_seconds",
        "llamalb_backend_ttfb_seconds", "llamalb_backend_ttft_seconds",
        "llamalb_backend_tbt_seconds", "llamalb_backend_ttft_ewma_seconds",
        "llamalb_backend_tbt_ewma_seconds", "llamalb_model_requests_total",
        "llamalb_model_errors_total", "llamalb_model_inflight", "llamalb_model_queued_total",
        "llamalb_model_queue_length", "llamalb_model_events_total",
        "llamalb_model_prompt_tokens_total", "llamalb_model_completion_tokens_total",
        "llamalb_model_queue_wait_seconds", "llamalb_model_ttft_seconds",
        "llamalb_model_tbt_seconds",
    };
    struct registry r;
    reg_init(&r, 1, &lb_random);
    add(&r, "a", 1, 1, 0);
    struct buf out = {0};
    const char *m = metrics(&r, &out);
    bool in_order = true;
    unsigned families = 0;
    for (const char *p = m; (p = strstr(p, "# TYPE ")) != NULL; p++, families++) {
        size_t n = strcspn(p + 7, " ");
        in_order &= families < ARRAY_SIZE(order) && strlen(order[families]) == n &&
                    strncmp(p + 7, order[families], n) == 0;
    }
    ok(in_order && families == ARRAY_SIZE(order), "%u families, in the usual order", families);
    buf_free(&out);
    reg_deinit(&r);
}

int main(void)
{
    test_record_response();
    test_family_order();
    buf_cache_drain();
    reg_thread_exit();
    return done_testing();
}
