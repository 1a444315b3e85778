/* SPDX-License-Identifier: MIT
 * Prometheus text exposition (format 0.0.4), written from tables: one
 * family header (HELP, TYPE), then its samples. Every label value is
 * escaped here, so a value from outside (a backend or model name) cannot
 * break a line or a quote. The process metrics (admin.c), the backend and
 * model metrics (reg_stats.c) and the queue metrics (reg_queue.c) all go
 * through this module.
 *
 * Naming: counters end in _total, histograms are written as
 * <name>_bucket{...,le="..."} (cumulative), <name>_sum and <name>_count.
 * A few counters named before this rule (llamalb_queue_wait_seconds_sum,
 * llamalb_model_*_seconds_sum, llamalb_model_ttft_seconds_count,
 * llamalb_backend_ttfb_seconds_sum) keep their names: dashboards use them.
 *
 * Values are written as unsigned integers (METRIC_INT), with six decimals
 * (METRIC_FIXED, "%.6f": seconds from microseconds) or with six
 * significant digits (METRIC_SHORT, "%.6g"). */
#ifndef LLAMALB_METRICS_H
#define LLAMALB_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct buf;

enum metric_type { METRIC_GAUGE, METRIC_COUNTER, METRIC_HISTOGRAM };
enum metric_fmt { METRIC_INT, METRIC_FIXED, METRIC_SHORT };

struct metric_family {
    const char *name;
    const char *help;
    enum metric_type type;
};

struct metric_label {
    const char *name;  /* a constant of ours: written as is */
    const char *value; /* escaped (metric_label_escape) */
};

/* Most labels one sample carries (a histogram bucket adds "le"). */
#define METRIC_MAX_LABELS 4

/* Room for an escaped label value from a source of at most <n> bytes. */
#define METRIC_LABEL_LEN(n) (2 * (n) + 1)

/* <s> as a Prometheus label value (between the quotes) in <out> (<cap>
 * bytes, at least 3): backslash, double quote and line feed become \\, \"
 * and \n; other control characters, for which the format has no escape
 * and which would split a line or fail a strict parser, become '?'. A
 * value that does not fit is cut before a character that would not fit
 * whole. Returns <out>. */
const char *metric_label_escape(char *out, size_t cap, const char *s);

/* "# HELP name help\n# TYPE name type\n". */
void metric_head(struct buf *out, const struct metric_family *f);

/* One sample: <name><suffix>{labels} value (no braces without labels).
 * <suffix> may be NULL. */
void metric_u64(struct buf *out, const char *name, const char *suffix,
                const struct metric_label *l, unsigned nl, uint64_t v);
void metric_f64(struct buf *out, const char *name, const char *suffix,
                const struct metric_label *l, unsigned nl, enum metric_fmt fmt, double v);

/* A family of one unlabelled sample, as a table row. */
struct metric_scalar {
    struct metric_family f;
    enum metric_fmt fmt;
    uint64_t u;  /* METRIC_INT */
    double d;    /* METRIC_FIXED, METRIC_SHORT */
};
/* Writes each of <v>[0..n): header and sample. */
void metric_scalars(struct buf *out, const struct metric_scalar *v, size_t n);

/* The samples of one histogram series: <count>[0..nb] per bucket (the last
 * one above every bound: +Inf), not cumulative; written as cumulative
 * <name>_bucket{l...,le="<bound %g>"} lines, then <name>_sum (<sum>,
 * METRIC_FIXED) and <name>_count. <nl> < METRIC_MAX_LABELS. */
void metric_histogram(struct buf *out, const char *name, const struct metric_label *l,
                      unsigned nl, const double *bounds, unsigned nb, const uint64_t *count,
                      double sum);

#endif
