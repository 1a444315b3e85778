/* SPDX-License-Identifier: MIT
 * The Prometheus writer (src/proxy/metrics.c): family headers, samples
 * with and without labels, the three value formats, label escaping (every
 * control character escaped or replaced, long values cut whole), and
 * histograms written as cumulative buckets ending at +Inf, with _sum and
 * _count. Outputs are compared byte for byte. */
#include <stdio.h>
#include <string.h>

#include "../../src/proxy/metrics.h"
#include "../tap.h"
#include "buf.h"
#include "util.h"

/* True if <b> holds exactly <want>; prints both otherwise. Empties <b>. */
static bool same(struct buf *b, const char *want)
{
    buf_append(b, "", 1);
    bool eq = strcmp(buf_data(b), want) == 0;
    if (!eq)
        note("  got:\n%s  want:\n%s", buf_data(b), want);
    buf_free(b);
    return eq;
}

static void test_heads(void)
{
    struct buf b = {0};
    static const struct metric_family g = {"x_up", "1 if up.", METRIC_GAUGE};
    static const struct metric_family c = {"x_requests_total", "Requests.", METRIC_COUNTER};
    static const struct metric_family h = {"x_seconds", "Durations.", METRIC_HISTOGRAM};
    metric_head(&b, &g);
    metric_head(&b, &c);
    metric_head(&b, &h);
    ok(same(&b, "# HELP x_up 1 if up.\n# TYPE x_up gauge\n"
                "# HELP x_requests_total Requests.\n# TYPE x_requests_total counter\n"
                "# HELP x_seconds Durations.\n# TYPE x_seconds histogram\n"),
       "family headers: HELP then TYPE, gauge / counter / histogram");
}

static void test_samples(void)
{
    struct buf b = {0};
    struct metric_label l[2] = {{"backend", "a"}, {"code", "2xx"}};
    metric_u64(&b, "x_total", NULL, NULL, 0, 18446744073709551615ULL);
    metric_u64(&b, "x_total", NULL, l, 2, 7);
    metric_f64(&b, "x_seconds", "_sum", l, 1, METRIC_FIXED, 0.0019714);
    metric_f64(&b, "x_model", NULL, l, 1, METRIC_SHORT, 5.8e-05);
    metric_f64(&b, "x_model", NULL, l, 1, METRIC_SHORT, 7);
    ok(same(&b, "x_total 18446744073709551615\n"
                "x_total{backend=\"a\",code=\"2xx\"} 7\n"
                "x_seconds_sum{backend=\"a\"} 0.001971\n"
                "x_model{backend=\"a\"} 5.8e-05\n"
                "x_model{backend=\"a\"} 7\n"),
       "samples: no braces without labels, labels in order, full u64, %%.6f, %%.6g");

    const struct metric_scalar v[] = {
        {{"x_up", "Up.", METRIC_GAUGE}, METRIC_INT, 1, 0},
        {{"x_wait_seconds_sum", "Waited.", METRIC_COUNTER}, METRIC_FIXED, 0, 1.5},
    };
    metric_scalars(&b, v, ARRAY_SIZE(v));
    ok(same(&b, "# HELP x_up Up.\n# TYPE x_up gauge\nx_up 1\n"
                "# HELP x_wait_seconds_sum Waited.\n# TYPE x_wait_seconds_sum counter\n"
                "x_wait_seconds_sum 1.500000\n"),
       "a table of scalars: header and one sample each");
}

static void test_escaping(void)
{
    char out[64];
    ok(strcmp(metric_label_escape(out, sizeof(out), "plain-name_1.2/x:y"), "plain-name_1.2/x:y") == 0,
       "a plain value is unchanged");
    ok(strcmp(metric_label_escape(out, sizeof(out), "a\"b\\c\nd"), "a\\\"b\\\\c\\nd") == 0,
       "quote, backslash and line feed are escaped");
    ok(strcmp(metric_label_escape(out, sizeof(out), "t\tr\re\x01x\x7f"), "t?r?e?x?") == 0,
       "other control characters and DEL become '?'");
    ok(strcmp(metric_label_escape(out, sizeof(out), "caf\xc3\xa9"), "caf\xc3\xa9") == 0,
       "UTF-8 passes through");
    char small[5];
    ok(strcmp(metric_label_escape(small, sizeof(small), "ab\"cd"), "ab\\\"") == 0,
       "a long value is cut, an escape kept whole");
    ok(strcmp(metric_label_escape(small, sizeof(small), "abc\"d"), "abc") == 0,
       "an escape that would not fit is left out, not halved");

    struct buf b = {0};
    struct metric_label l = {"model", "x\"}\n{y"};
    metric_u64(&b, "x_total", NULL, &l, 1, 1);
    ok(same(&b, "x_total{model=\"x\\\"}\\n{y\"} 1\n"),
       "samples escape label values: one line, quotes balanced");
}

static void test_histogram(void)
{
    struct buf b = {0};
    static const double bounds[3] = {0.005, 0.25, 10};
    const uint64_t count[4] = {2, 0, 3, 1}; /* per bucket, last = above 10 s */
    struct metric_label l = {"backend", "a"};
    metric_histogram(&b, "x_seconds", &l, 1, bounds, 3, count, 12.5);
    ok(same(&b, "x_seconds_bucket{backend=\"a\",le=\"0.005\"} 2\n"
                "x_seconds_bucket{backend=\"a\",le=\"0.25\"} 2\n"
                "x_seconds_bucket{backend=\"a\",le=\"10\"} 5\n"
                "x_seconds_bucket{backend=\"a\",le=\"+Inf\"} 6\n"
                "x_seconds_sum{backend=\"a\"} 12.500000\n"
                "x_seconds_count{backend=\"a\"} 6\n"),
       "histogram: cumulative buckets, +Inf = _count, _sum with six decimals");
    const uint64_t none[4] = {0};
    metric_histogram(&b, "x_seconds", NULL, 0, bounds, 3, none, 0);
    ok(same(&b, "x_seconds_bucket{le=\"0.005\"} 0\nx_seconds_bucket{le=\"0.25\"} 0\n"
                "x_seconds_bucket{le=\"10\"} 0\nx_seconds_bucket{le=\"+Inf\"} 0\n"
                "x_seconds_sum 0.000000\nx_seconds_count 0\n"),
       "an unlabelled empty histogram");
}

int main(void)
{
    test_heads();
    test_samples();
    test_escaping();
    test_histogram();
    buf_cache_drain();
    return done_testing();
}
