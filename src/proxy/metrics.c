/* SPDX-License-Identifier: MIT
 * Prometheus text exposition from tables (metrics.h). */
#include <stdio.h>

#include "buf.h"
#include "metrics.h"
#include "util.h"

/* Escaped label values are written through a buffer of this size: room
 * for any name the balancer labels with (backend names, REG_NAME_MAX =
 * 253 bytes, and model keys, 127) with every byte escaped. */
#define LABEL_BUF METRIC_LABEL_LEN(511)

static const char *const type_names[] = {"gauge", "counter", "histogram"};

const char *metric_label_escape(char *out, size_t cap, const char *s)
{
    size_t o = 0;
    for (; *s != '\0' && o + 2 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '\\' || c == '"' || c == '\n') {
            out[o++] = '\\';
            out[o++] = c == '\n' ? 'n' : (char)c;
        } else {
            out[o++] = c < 0x20 || c == 0x7f ? '?' : (char)c;
        }
    }
    out[o] = '\0';
    return out;
}

void metric_head(struct buf *out, const struct metric_family *f)
{
    buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name,
               type_names[f->type]);
}

/* <name><suffix>{labels} and the space before the value. */
static void sample_start(struct buf *out, const char *name, const char *suffix,
                         const struct metric_label *l, unsigned nl)
{
    char v[LABEL_BUF];
    buf_append_str(out, name);
    if (suffix != NULL)
        buf_append_str(out, suffix);
    for (unsigned i = 0; i < nl; i++) {
        buf_append_str(out, i ? "," : "{");
        buf_printf(out, "%s=\"%s\"", l[i].name, metric_label_escape(v, sizeof(v), l[i].value));
    }
    buf_append_str(out, nl ? "} " : " ");
}

void metric_u64(struct buf *out, const char *name, const char *suffix,
                const struct metric_label *l, unsigned nl, uint64_t v)
{
    sample_start(out, name, suffix, l, nl);
    buf_printf(out, "%llu\n", (unsigned long long)v);
}

void metric_f64(struct buf *out, const char *name, const char *suffix,
                const struct metric_label *l, unsigned nl, enum metric_fmt fmt, double v)
{
    sample_start(out, name, suffix, l, nl);
    if (fmt == METRIC_INT)
        buf_printf(out, "%llu\n", (unsigned long long)v);
    else
        buf_printf(out, fmt == METRIC_FIXED ? "%.6f\n" : "%.6g\n", v);
}

void metric_scalars(struct buf *out, const struct metric_scalar *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        metric_head(out, &v[i].f);
        if (v[i].fmt == METRIC_INT)
            metric_u64(out, v[i].f.name, NULL, NULL, 0, v[i].u);
        else
            metric_f64(out, v[i].f.name, NULL, NULL, 0, v[i].fmt, v[i].d);
    }
}

void metric_histogram(struct buf *out, const char *name, const struct metric_label *l,
                      unsigned nl, const double *bounds, unsigned nb, const uint64_t *count,
                      double sum)
{
    struct metric_label bl[METRIC_MAX_LABELS];
    char le[32];
    BUG_ON(nl >= METRIC_MAX_LABELS);
    for (unsigned i = 0; i < nl; i++)
        bl[i] = l[i];
    bl[nl].name = "le";
    bl[nl].value = le;
    uint64_t cum = 0;
    for (unsigned k = 0; k <= nb; k++) {
        cum += count[k];
        if (k < nb)
            snprintf(le, sizeof(le), "%g", bounds[k]);
        else
            snprintf(le, sizeof(le), "+Inf");
        metric_u64(out, name, "_bucket", bl, nl + 1, cum);
    }
    metric_f64(out, name, "_sum", l, nl, METRIC_FIXED, sum);
    metric_u64(out, name, "_count", l, nl, cum);
}
