/* SPDX-License-Identifier: MIT
 * The status page's data (stats.h): one JSON document with the process,
 * the queue, every backend and every requested model, made from a copy of
 * the registry (reg_view.h) and the process counters. The page computes
 * rates and percentiles itself from successive polls, so everything here
 * is a gauge or a running total. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "follow.h"
#include "json.h"
#include "proxy.h"
#include "reg_view.h"
#include "stats.h"
#include "util.h"

static void jstr(struct buf *out, const char *s)
{
    json_append_str(out, s, strlen(s));
}

static void backend_json(struct buf *out, const struct reg_backend_view *b)
{
    buf_append_lit(out, "{\"name\":");
    jstr(out, b->name);
    buf_append_lit(out, ",\"address\":");
    char addr[NET_ADDRSTR_LEN + 16];
    snprintf(addr, sizeof(addr), strchr(b->host, ':') ? "[%s]:%d" : "%s:%d", b->host, b->port);
    jstr(out, addr);
    buf_printf(out,
               ",\"state\":\"%s\",\"source\":\"%s\",\"weight\":%u,\"inflight\":%u,\"cap\":%u,"
               "\"ejected_ms\":%lld,\"ttft_ms\":%.3f,\"tbt_ms\":%.3f,\"requests\":%llu,"
               "\"errors\":%llu,\"ejections\":%llu,\"retries\":%llu,\"events\":%llu,"
               "\"responses\":{\"1xx\":%llu,\"2xx\":%llu,\"3xx\":%llu,\"4xx\":%llu,\"5xx\":%llu},"
               "\"models\":[",
               b->state, b->source, b->weight, b->inflight, b->cap, (long long)b->ejected_ms,
               b->ttft_ms, b->tbt_ms, (unsigned long long)b->requests,
               (unsigned long long)b->errors, (unsigned long long)b->ejections,
               (unsigned long long)b->retries, (unsigned long long)b->events,
               (unsigned long long)b->status[1], (unsigned long long)b->status[2],
               (unsigned long long)b->status[3], (unsigned long long)b->status[4],
               (unsigned long long)b->status[5]);
    const char *m = b->models;
    for (unsigned i = 0; i < b->nmodels; i++, m = reg_model_next(m)) {
        if (i)
            buf_append_lit(out, ",");
        jstr(out, m);
    }
    buf_append_lit(out, "]}");
}

static void hist_json(struct buf *out, const uint64_t *h)
{
    buf_append_lit(out, "[");
    for (unsigned k = 0; k <= REG_LAT_BUCKETS; k++)
        buf_printf(out, "%s%llu", k ? "," : "", (unsigned long long)h[k]);
    buf_append_lit(out, "]");
}

static void model_json(struct buf *out, const struct reg_model_view *m)
{
    buf_append_lit(out, "{\"name\":");
    jstr(out, m->name);
    buf_printf(out,
               ",\"requests\":%llu,\"errors\":%llu,\"inflight\":%u,\"waiting\":%u,"
               "\"queued\":%llu,\"events\":%llu,\"ttft_count\":%llu,\"ttft_ms_sum\":%.3f,"
               "\"queue_wait_ms_sum\":%.3f,\"ttft_hist\":",
               (unsigned long long)m->requests, (unsigned long long)m->errors, m->inflight,
               m->waiting, (unsigned long long)m->queued, (unsigned long long)m->events,
               (unsigned long long)m->ttft_count, m->ttft_ms_sum, m->queue_wait_ms_sum);
    hist_json(out, m->ttft_hist);
    buf_append_lit(out, "}");
}

void stats_json(struct server *s, int64_t now_ms, struct buf *out)
{
    struct server_stats *st = &s->stats;
    struct reg_view v;
    reg_view(&s->reg, now_ms, &v);

    buf_append_lit(out, "{\"build\":{\"program\":\"llamalb\",\"version\":");
    jstr(out, LLAMALB_VERSION);
    buf_append_lit(out, ",\"policy\":");
    jstr(out, v.policy);
    buf_printf(out, ",\"workers\":%u,\"role\":", s->nworkers);
    follow_role_json(s, out);
    buf_append_lit(out, "},");
    buf_printf(out,
               "\"uptime_s\":%.1f,\"draining\":%s,\"slow_start_ms\":%lld,"
               "\"totals\":{\"requests\":%llu,\"connections_active\":%llu,"
               "\"connections_total\":%llu,\"no_backend\":%llu,\"aborted\":%llu,"
               "\"responses\":{\"1xx\":%llu,\"2xx\":%llu,\"3xx\":%llu,\"4xx\":%llu,\"5xx\":%llu}},",
               (double)(util_now_ms() - s->started_ms) / 1000.0,
               atomic_load(&s->draining) ? "true" : "false", (long long)v.slow_start_ms,
               (unsigned long long)atomic_load(&st->requests),
               (unsigned long long)atomic_load(&st->conns_active),
               (unsigned long long)atomic_load(&st->conns_accepted),
               (unsigned long long)atomic_load(&st->no_backend),
               (unsigned long long)atomic_load(&st->aborted_streams),
               (unsigned long long)atomic_load(&st->responses[1]),
               (unsigned long long)atomic_load(&st->responses[2]),
               (unsigned long long)atomic_load(&st->responses[3]),
               (unsigned long long)atomic_load(&st->responses[4]),
               (unsigned long long)atomic_load(&st->responses[5]));
    buf_printf(out,
               "\"queue\":{\"length\":%u,\"max\":%u,\"oldest_wait_ms\":%lld,\"queued\":%llu,"
               "\"rejected\":%llu,\"timeouts\":%llu,\"wait_ms_sum\":%.3f},",
               v.queue_length, v.queue_max, (long long)v.oldest_wait_ms,
               (unsigned long long)v.queued_total, (unsigned long long)v.queue_rejects,
               (unsigned long long)v.queue_timeouts, v.queue_wait_ms_sum);
    buf_append_lit(out, "\"ttft_bounds_ms\":[");
    for (unsigned k = 0; k < REG_LAT_BUCKETS; k++)
        buf_printf(out, "%s%g", k ? "," : "", reg_lat_bounds[k] * 1000.0);
    buf_printf(out, "],\"backends_total\":%u,\"backends\":[", v.nbackends_total);
    for (unsigned i = 0; i < v.nbackends; i++) {
        if (i)
            buf_append_lit(out, ",");
        backend_json(out, &v.backends[i]);
    }
    buf_append_lit(out, "],\"models\":[");
    for (unsigned i = 0; i < v.nmodels; i++) {
        if (i)
            buf_append_lit(out, ",");
        model_json(out, &v.models[i]);
    }
    buf_append_lit(out, "]}");
    reg_view_free(&v);
}

/* The page runs nothing but its own inline script and talks to nothing
 * but its own origin; it is never framed, cached or sent a referrer. */
#define PAGE_HEADERS                                                                          \
    "Content-Security-Policy: default-src 'none'; script-src 'unsafe-inline'; "               \
    "style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; "         \
    "form-action 'none'; frame-ancestors 'none'\r\n"                                          \
    "X-Content-Type-Options: nosniff\r\n"                                                     \
    "X-Frame-Options: DENY\r\n"                                                               \
    "Referrer-Policy: no-referrer\r\n"                                                        \
    "Cache-Control: no-store\r\n"

void stats_serve_page(struct conn *c)
{
    conn_respond(c, 200, "text/html; charset=utf-8", (const char *)status_html, status_html_len,
                 PAGE_HEADERS);
}

void stats_serve_json(struct conn *c)
{
    struct buf b = {0};
    stats_json(c->w->srv, ev_now(c->w->loop), &b);
    conn_respond(c, 200, "application/json", buf_data(&b), b.len,
                 "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n");
    buf_free(&b);
}
