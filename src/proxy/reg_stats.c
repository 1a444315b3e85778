/* SPDX-License-Identifier: MIT
 * Statistics: per requested model (a bounded table, lock-free lookups)
 * and per backend (atomics every response moves), and the Prometheus
 * families the registry writes for them, through metrics.h. */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "metrics.h"
#include "registry_int.h"
#include "util.h"

const double reg_lat_bounds[REG_LAT_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                0.5,   1,    2.5,   5,    10,  30};
/* Between tokens: 1 ms (a fast GPU) to 1 s (a CPU under load). */
const double reg_tbt_bounds[REG_LAT_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.02, 0.035,
                                                0.05,  0.075,  0.1,   0.25, 0.5,  1};

unsigned reg_bucket(const double *bounds, int64_t us)
{
    double s = (double)us / 1e6;
    unsigned k = 0;
    while (k < REG_LAT_BUCKETS && s > bounds[k])
        k++;
    return k;
}

/* The name <model>'s stats are kept under, in <out> (MODEL_KEY_LEN bytes)
 * or a constant: "(none)" for no model. Control characters other than the
 * line feed (which the metrics escape) become '?', as they would in the
 * metrics' labels anyway (metric_label_escape), so that names that would print
 * alike share one slot instead of making two samples of one series; a
 * longer name is cut to fit a slot, at a character boundary, so that it
 * finds the slot it made. */
const char *reg_model_key(const char *model, char *out)
{
    if (model == NULL || model[0] == '\0')
        return "(none)";
    size_t o = 0;
    for (; model[o] != '\0' && o + 1 < MODEL_KEY_LEN; o++) {
        unsigned char c = (unsigned char)model[o];
        out[o] = (c < 0x20 && c != '\n') || c == 0x7f ? '?' : (char)c;
    }
    while (o > 0 && ((unsigned char)model[o] & 0xc0) == 0x80)
        o--; /* cut inside a UTF-8 sequence: drop the whole of it */
    out[o] = '\0';
    return out;
}

/* The published stats slot <key> counts under, or NULL when it needs a new
 * one. Needs no lock: slots are only appended, each filled in before
 * nmodel_stats publishes it. Once the table has no room for another name,
 * unseen names count under "(other)". */
static struct model_stats *model_find(struct registry *r, const char *key)
{
    unsigned n = atomic_load_explicit(&r->nmodel_stats, memory_order_acquire);
    for (unsigned i = 0; i < n; i++)
        if (strcmp(r->models[i].name, key) == 0)
            return &r->models[i];
    if (n >= REG_MAX_MODEL_STATS - 1)
        for (unsigned i = 0; i < n; i++)
            if (strcmp(r->models[i].name, "(other)") == 0)
                return &r->models[i];
    return NULL;
}

/* The last slot is kept for "(other)", so the table never
 * overflows however many names clients send. */
struct model_stats *reg_model_slot(struct registry *r, const char *model)
{
    char kbuf[MODEL_KEY_LEN];
    const char *key = reg_model_key(model, kbuf);
    struct model_stats *m = model_find(r, key);
    if (m != NULL)
        return m;
    unsigned n = atomic_load_explicit(&r->nmodel_stats, memory_order_relaxed);
    BUG_ON(n >= REG_MAX_MODEL_STATS); /* model_find returns "(other)" by then */
    if (n == REG_MAX_MODEL_STATS - 1)
        key = "(other)";
    m = &r->models[n];
    memset(m, 0, sizeof(*m));
    atomic_init(&m->requests, 0);
    atomic_init(&m->inflight, 0);
    snprintf(m->name, sizeof(m->name), "%s", key);
    atomic_store_explicit(&r->nmodel_stats, n + 1, memory_order_release);
    return m;
}

void reg_model_inflight(struct registry *r, const char *model, int delta)
{
    /* Every request comes here twice: the lock is only for a new name. */
    char kbuf[MODEL_KEY_LEN];
    struct model_stats *m = model_find(r, reg_model_key(model, kbuf));
    if (m == NULL) {
        pthread_mutex_lock(&r->lock);
        m = reg_model_slot(r, model);
        pthread_mutex_unlock(&r->lock);
    }
    if (delta > 0) {
        atomic_fetch_add_explicit(&m->requests, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&m->inflight, 1, memory_order_relaxed);
        return;
    }
    /* Never below zero, as before: a stray -1 must not wrap the gauge. */
    unsigned v = atomic_load_explicit(&m->inflight, memory_order_relaxed);
    while (v > 0 && !atomic_compare_exchange_weak_explicit(&m->inflight, &v, v - 1,
                                                           memory_order_relaxed,
                                                           memory_order_relaxed))
        ;
}


void reg_model_outcome_locked(struct registry *r, const struct reg_outcome *o)
{
    struct model_stats *m = reg_model_slot(r, o->model);
    m->errors += o->failed;
    m->events += o->sse_events;
    m->prompt_tokens += o->prompt_tokens;
    m->completion_tokens += o->completion_tokens;
    if (o->ttft_us > 0) {
        m->ttft_us_sum += (uint64_t)o->ttft_us;
        m->ttft_hist[reg_bucket(reg_lat_bounds, o->ttft_us)]++;
    }
    if (o->tbt_us > 0) {
        m->tbt_us_sum += (uint64_t)o->tbt_us;
        m->tbt_hist[reg_bucket(reg_tbt_bounds, o->tbt_us)]++;
    }
}

void reg_record_response(struct registry *r, struct backend *b, const struct reg_response *x)
{
    UNUSED(r); /* atomics only: no lock */
    struct backend_stats *st = &b->stats;
    atomic_fetch_add(&st->requests, 1);
    atomic_fetch_add(&st->status[x->status / 100], 1);
    atomic_fetch_add(&st->bytes_out, x->bytes);
    atomic_fetch_add(&st->lat_sum_us, (uint64_t)x->dur_us);
    atomic_fetch_add(&st->lat_count[reg_bucket(reg_lat_bounds, x->dur_us)], 1);
    atomic_fetch_add(&st->ttfb_sum_us, (uint64_t)x->ttfb_us);
    atomic_fetch_add(&st->ttfb_count[reg_bucket(reg_lat_bounds, x->ttfb_us)], 1);
    if (x->ttft_us > 0) {
        atomic_fetch_add(&st->ttft_sum_us, (uint64_t)x->ttft_us);
        atomic_fetch_add(&st->ttft_count[reg_bucket(reg_lat_bounds, x->ttft_us)], 1);
    }
    if (x->tbt_us > 0) {
        atomic_fetch_add(&st->tbt_sum_us, (uint64_t)x->tbt_us);
        atomic_fetch_add(&st->tbt_count[reg_bucket(reg_tbt_bounds, x->tbt_us)], 1);
    }
    if (x->sse_events > 0)
        atomic_fetch_add(&st->events, x->sse_events);
}

/* ---------------------------------------------------------------- metrics */

/* A family of one sample per backend: an integer from <u>, a number of
 * seconds from <d> (METRIC_FIXED), or else the atomic counter at offset
 * <stat> of struct backend_stats. Written under the registry lock. */
struct backend_family {
    struct metric_family f;
    uint64_t (*u)(const struct backend *b, int64_t now);
    double (*d)(const struct backend *b);
    size_t stat;
};

static uint64_t be_up(const struct backend *b, int64_t now)
{
    return strcmp(reg_state_name(b, now), "up") == 0;
}
static uint64_t be_weight(const struct backend *b, int64_t now)
{
    UNUSED(now);
    return b->spec.weight;
}
static uint64_t be_inflight(const struct backend *b, int64_t now)
{
    UNUSED(now);
    return atomic_load(&b->inflight);
}
static double be_ttft(const struct backend *b) { return b->ewma_ttft_us / 1e6; }
static double be_tbt(const struct backend *b) { return b->ewma_tbt_us / 1e6; }

#define STAT(field) offsetof(struct backend_stats, field)

static const struct backend_family be_gauges[] = {
    {{"llamalb_backend_up", "1 if the backend takes new requests.", METRIC_GAUGE}, be_up, NULL, 0},
    {{"llamalb_backend_weight", "Configured weight.", METRIC_GAUGE}, be_weight, NULL, 0},
    {{"llamalb_backend_inflight", "Requests in flight.", METRIC_GAUGE}, be_inflight, NULL, 0},
};
static const struct backend_family be_counters[] = {
    {{"llamalb_backend_errors_total", "Connect failures, resets, timeouts and invalid responses.",
      METRIC_COUNTER}, NULL, NULL, STAT(failures)},
    {{"llamalb_backend_retries_total", "Requests moved elsewhere after a failure here.",
      METRIC_COUNTER}, NULL, NULL, STAT(retries)},
    {{"llamalb_backend_ejections_total", "Passive and active health ejections.", METRIC_COUNTER},
     NULL, NULL, STAT(ejections)},
    {{"llamalb_backend_response_bytes_total", "Response bytes relayed.", METRIC_COUNTER}, NULL,
     NULL, STAT(bytes_out)},
    {{"llamalb_backend_events_total", "Streamed events relayed (about one per token).",
      METRIC_COUNTER}, NULL, NULL, STAT(events)},
};
/* The live speeds the `least` policy weighs backends by. */
static const struct backend_family be_ewma[] = {
    {{"llamalb_backend_ttft_ewma_seconds",
      "Time to first token (first body bytes), moving average used by the policy.",
      METRIC_GAUGE}, NULL, be_ttft, 0},
    {{"llamalb_backend_tbt_ewma_seconds",
      "Time between tokens of streams, moving average used by the policy.", METRIC_GAUGE},
     NULL, be_tbt, 0},
};

static void backend_families(struct registry *r, struct buf *out, const struct backend_family *f,
                             size_t n, int64_t now)
{
    for (size_t k = 0; k < n; k++) {
        metric_head(out, &f[k].f);
        for (unsigned i = 0; i < r->n; i++) {
            const struct backend *b = r->v[i];
            struct metric_label l = {"backend", b->spec.name};
            if (f[k].d != NULL) {
                metric_f64(out, f[k].f.name, NULL, &l, 1, METRIC_FIXED, f[k].d(b));
            } else {
                const atomic_uint_fast64_t *v =
                    (const atomic_uint_fast64_t *)((const char *)&b->stats + f[k].stat);
                metric_u64(out, f[k].f.name, NULL, &l, 1,
                           f[k].u != NULL ? f[k].u(b, now) : atomic_load(v));
            }
        }
    }
}

static void backend_requests(struct registry *r, struct buf *out)
{
    static const char *const classes[] = {"none", "1xx", "2xx", "3xx", "4xx", "5xx"};
    static const struct metric_family f = {"llamalb_backend_requests_total",
                                           "Responses relayed, by status class.", METRIC_COUNTER};
    metric_head(out, &f);
    for (unsigned i = 0; i < r->n; i++)
        for (unsigned c = 1; c < 6; c++) {
            struct metric_label l[2] = {{"backend", r->v[i]->spec.name}, {"code", classes[c]}};
            metric_u64(out, f.name, NULL, l, 2, atomic_load(&r->v[i]->stats.status[c]));
        }
}

/* The histograms of struct backend_stats, each a count array and a sum
 * of microseconds at these offsets. */
static void backend_histograms(struct registry *r, struct buf *out)
{
    static const struct {
        struct metric_family f;
        const double *bounds;
        size_t count, sum;
    } h[] = {
        {{"llamalb_backend_request_duration_seconds",
          "Request duration, first request byte to last response byte.", METRIC_HISTOGRAM},
         reg_lat_bounds, STAT(lat_count), STAT(lat_sum_us)},
        {{"llamalb_backend_ttfb_seconds", "Time to the first response byte.",
          METRIC_HISTOGRAM}, reg_lat_bounds, STAT(ttfb_count), STAT(ttfb_sum_us)},
        {{"llamalb_backend_ttft_seconds",
          "Time to first token: request sent to the first body bytes.", METRIC_HISTOGRAM},
         reg_lat_bounds, STAT(ttft_count), STAT(ttft_sum_us)},
        {{"llamalb_backend_tbt_seconds",
          "Time between tokens: a stream's mean gap between body reads.", METRIC_HISTOGRAM},
         reg_tbt_bounds, STAT(tbt_count), STAT(tbt_sum_us)},
    };
    for (size_t k = 0; k < ARRAY_SIZE(h); k++) {
        metric_head(out, &h[k].f);
        for (unsigned i = 0; i < r->n; i++) {
            const char *st = (const char *)&r->v[i]->stats;
            const atomic_uint_fast64_t *c = (const atomic_uint_fast64_t *)(st + h[k].count);
            uint64_t count[REG_LAT_BUCKETS + 1];
            for (unsigned j = 0; j <= REG_LAT_BUCKETS; j++)
                count[j] = atomic_load(&c[j]);
            uint64_t sum = atomic_load((const atomic_uint_fast64_t *)(st + h[k].sum));
            struct metric_label l = {"backend", r->v[i]->spec.name};
            metric_histogram(out, h[k].f.name, &l, 1, h[k].bounds, REG_LAT_BUCKETS, count,
                             (double)sum / 1e6);
        }
    }
}

/* Requests waiting now for model slot <m>. Lock held. */
static double mo_waiting(struct registry *r, const struct model_stats *m)
{
    unsigned waiting = 0;
    for (struct list *e = r->waiters.next; e != &r->waiters; e = e->next) {
        const struct reg_waiter *w = list_entry(e, struct reg_waiter, link);
        char kb[MODEL_KEY_LEN];
        waiting += strcmp(reg_model_key(w->req.model, kb), m->name) == 0;
    }
    return waiting;
}

static double mo_requests(struct registry *r, const struct model_stats *m)
{
    UNUSED(r);
    return (double)atomic_load(&m->requests);
}
static double mo_errors(struct registry *r, const struct model_stats *m)
{
    UNUSED(r);
    return (double)m->errors;
}
static double mo_inflight(struct registry *r, const struct model_stats *m)
{
    UNUSED(r);
    return (double)atomic_load(&m->inflight);
}
static double mo_queued(struct registry *r, const struct model_stats *m)
{
    UNUSED(r);
    return (double)m->queued;
}
static double mo_prompt_tokens(struct registry *r, const struct model_stats *m)
{
    UNUSED(r);
    return (double)m->prompt_tokens;
}
static double mo_completion_tokens(struct registry *r, const struct model_stats *m)
{
    UNUSED(r);
    return (double)m->completion_tokens;
}
static double mo_events(struct registry *r, const struct model_stats *m)
{
    UNUSED(r);
    return (double)m->events;
}

/* Per requested model, "%.6g" values. Names come from clients: the
 * metrics module escapes them. Lock held. */
static void model_families(struct registry *r, struct buf *out)
{
    static const struct {
        struct metric_family f;
        double (*get)(struct registry *r, const struct model_stats *m);
    } mm[] = {
        {{"llamalb_model_requests_total", "Requests by requested model.", METRIC_COUNTER},
         mo_requests},
        {{"llamalb_model_errors_total", "Failed requests by requested model.", METRIC_COUNTER},
         mo_errors},
        {{"llamalb_model_inflight", "Requests in flight by requested model.", METRIC_GAUGE},
         mo_inflight},
        {{"llamalb_model_queued_total", "Requests that waited for a backend.", METRIC_COUNTER},
         mo_queued},
        {{"llamalb_model_queue_length", "Requests waiting now.", METRIC_GAUGE}, mo_waiting},
        {{"llamalb_model_events_total", "Streamed events (about one per token).",
          METRIC_COUNTER}, mo_events},
        {{"llamalb_model_prompt_tokens_total",
          "Prompt tokens of answers (their usage; 0 where none came).", METRIC_COUNTER},
         mo_prompt_tokens},
        {{"llamalb_model_completion_tokens_total",
          "Completion tokens of answers (their usage, else the stream's events).",
          METRIC_COUNTER}, mo_completion_tokens},
    };
    for (size_t k = 0; k < ARRAY_SIZE(mm); k++) {
        metric_head(out, &mm[k].f);
        unsigned nms = atomic_load_explicit(&r->nmodel_stats, memory_order_acquire);
        for (unsigned i = 0; i < nms; i++) {
            const struct model_stats *m = &r->models[i];
            struct metric_label l = {"model", m->name};
            metric_f64(out, mm[k].f.name, NULL, &l, 1, METRIC_SHORT, mm[k].get(r, m));
        }
    }
    static const struct {
        struct metric_family f;
        const double *bounds;
        size_t hist, sum;
    } mh[] = {
        {{"llamalb_model_queue_wait_seconds", "Time requests waited for a backend.",
          METRIC_HISTOGRAM}, reg_lat_bounds, offsetof(struct model_stats, queue_wait_hist),
         offsetof(struct model_stats, queue_wait_us)},
        {{"llamalb_model_ttft_seconds", "Time to first token: request sent to the first body "
          "bytes.", METRIC_HISTOGRAM}, reg_lat_bounds, offsetof(struct model_stats, ttft_hist),
         offsetof(struct model_stats, ttft_us_sum)},
        {{"llamalb_model_tbt_seconds", "Time between tokens: a stream's mean gap between "
          "body reads.", METRIC_HISTOGRAM}, reg_tbt_bounds,
         offsetof(struct model_stats, tbt_hist), offsetof(struct model_stats, tbt_us_sum)},
    };
    for (size_t k = 0; k < ARRAY_SIZE(mh); k++) {
        metric_head(out, &mh[k].f);
        unsigned nms = atomic_load_explicit(&r->nmodel_stats, memory_order_acquire);
        for (unsigned i = 0; i < nms; i++) {
            const char *m = (const char *)&r->models[i];
            struct metric_label l = {"model", r->models[i].name};
            metric_histogram(out, mh[k].f.name, &l, 1, mh[k].bounds, REG_LAT_BUCKETS,
                             (const uint64_t *)(m + mh[k].hist),
                             (double)*(const uint64_t *)(m + mh[k].sum) / 1e6);
        }
    }
}

void reg_dump_metrics(struct registry *r, struct buf *out, int64_t now_ms)
{
    pthread_mutex_lock(&r->lock);
    backend_families(r, out, be_gauges, ARRAY_SIZE(be_gauges), now_ms);
    backend_requests(r, out);
    backend_families(r, out, be_counters, ARRAY_SIZE(be_counters), now_ms);
    backend_histograms(r, out);
    backend_families(r, out, be_ewma, ARRAY_SIZE(be_ewma), now_ms);
    model_families(r, out);
    pthread_mutex_unlock(&r->lock);
}

void reg_write_metrics(struct registry *r, struct buf *out, int64_t now_ms)
{
    reg_queue_metrics(r, out);
    reg_dump_metrics(r, out, now_ms);
}
