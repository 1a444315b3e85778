/* SPDX-License-Identifier: MIT
 * The answers of the watcher's own listener (see watcher.h): /healthz,
 * /readyz and the Prometheus text of /metrics, read from the reflectors'
 * counters, the drop bookkeeping and the push state. */
#include <inttypes.h>
#include <stddef.h>
#include <string.h>

#include <jansson.h>

#include "buf.h"
#include "k8s.h"
#include "push.h"
#include "util.h"
#include "watcher.h"

static void metric_drops(struct buf *b, const struct watcher *w)
{
    static const char *const reasons[] = {"name", "address", "port", "weight", "max_inflight",
                                          "models", "duplicate", "limit"};
    const char *name;
    json_t *d;
    size_t now[ARRAY_SIZE(reasons)] = {0};
    json_object_foreach(w->dropped, name, d) {
        const char *r = json_string_value(json_object_get(d, "reason"));
        for (size_t i = 0; i < ARRAY_SIZE(reasons); i++)
            if (r && strcmp(r, reasons[i]) == 0)
                now[i]++;
    }
    buf_append_str(b, "# HELP llamalb_watcher_dropped_total Backends left out because the "
                      "balancer would refuse them (counted when they start being left out).\n"
                      "# TYPE llamalb_watcher_dropped_total counter\n");
    for (size_t i = 0; i < ARRAY_SIZE(reasons); i++)
        buf_printf(b, "llamalb_watcher_dropped_total{reason=\"%s\"} %lld\n", reasons[i],
                   (long long)json_integer_value(json_object_get(w->drop_counts, reasons[i])));
    buf_append_str(b, "# HELP llamalb_watcher_dropped Backends left out right now.\n"
                      "# TYPE llamalb_watcher_dropped gauge\n");
    for (size_t i = 0; i < ARRAY_SIZE(reasons); i++)
        buf_printf(b, "llamalb_watcher_dropped{reason=\"%s\"} %zu\n", reasons[i], now[i]);
    buf_printf(b, "# HELP llamalb_watcher_services_computed_total Services whose backends were "
                  "computed (only changed Services are).\n"
                  "# TYPE llamalb_watcher_services_computed_total counter\n"
                  "llamalb_watcher_services_computed_total %" PRIu64 "\n", w->ms.recomputed);
}

static void metric_refl(struct buf *b, const struct watcher *w, const char *name,
                        const char *help, const char *type, size_t off, const char *label)
{
    buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
    for (size_t i = 0; i <= w->nrefl; i++) {
        const struct k8s_reflector *r = i < w->nrefl ? w->refl[i] : w->lbrefl;
        if (r == NULL)
            continue;
        uint64_t v = *(const uint64_t *)((const char *)&r->st + off);
        buf_printf(b, "%s{resource=\"%s\",path=\"%s\"%s} %" PRIu64 "\n", name, r->resource,
                   r->path, label ? label : "", v);
    }
}

int status_route(void *data, const char *path, struct buf *out, const char **ctype)
{
    struct watcher *w = data;
    if (strcmp(path, "/healthz") == 0) {
        buf_append_str(out, "ok\n");
        return 200;
    }
    if (strcmp(path, "/readyz") == 0) {
        buf_append_str(out, w->ready ? "ready\n" : "not synced yet\n");
        return w->ready ? 200 : 503;
    }
    if (strcmp(path, "/metrics") != 0) {
        buf_append_str(out, "not found\n");
        return 404;
    }
    *ctype = "text/plain; version=0.0.4; charset=utf-8";
    static const struct {
        const char *type;
        size_t off;
    } ev[] = {
        {"ADDED", offsetof(struct k8s_stats, added)},
        {"MODIFIED", offsetof(struct k8s_stats, modified)},
        {"DELETED", offsetof(struct k8s_stats, deleted)},
        {"BOOKMARK", offsetof(struct k8s_stats, bookmarks)},
        {"ERROR", offsetof(struct k8s_stats, errors)},
    };
    buf_append_str(out, "# HELP llamalb_watcher_events_total Watch events seen, by type.\n"
                        "# TYPE llamalb_watcher_events_total counter\n");
    for (size_t e = 0; e < ARRAY_SIZE(ev); e++)
        for (size_t i = 0; i <= w->nrefl; i++) {
            const struct k8s_reflector *r = i < w->nrefl ? w->refl[i] : w->lbrefl;
            if (r == NULL)
                continue;
            buf_printf(out,
                       "llamalb_watcher_events_total{resource=\"%s\",path=\"%s\",type=\"%s\"} "
                       "%" PRIu64 "\n",
                       r->resource, r->path, ev[e].type,
                       *(const uint64_t *)((const char *)&r->st + ev[e].off));
        }
    metric_refl(out, w, "llamalb_watcher_lists_total", "List requests started (pages excluded).",
                "counter", offsetof(struct k8s_stats, lists), NULL);
    metric_refl(out, w, "llamalb_watcher_relists_total",
                "Relists after the first list (410, malformed stream, full resync).", "counter",
                offsetof(struct k8s_stats, relists), NULL);
    metric_refl(out, w, "llamalb_watcher_watch_restarts_total",
                "Watch streams that ended and were reopened.", "counter",
                offsetof(struct k8s_stats, watch_restarts), NULL);
    metric_refl(out, w, "llamalb_watcher_watch_stalls_total",
                "Watch streams reopened because they went silent.", "counter",
                offsetof(struct k8s_stats, stalls), NULL);
    metric_refl(out, w, "llamalb_watcher_bad_lines_total",
                "Malformed or oversized watch lines dropped.", "counter",
                offsetof(struct k8s_stats, bad_lines), NULL);
    metric_refl(out, w, "llamalb_watcher_api_errors_total",
                "API requests that failed (transport or HTTP status).", "counter",
                offsetof(struct k8s_stats, http_errors), NULL);
    metric_refl(out, w, "llamalb_watcher_list_limit_hits_total",
                "Lists stopped at --max-list-items or --max-list-pages (the previous set kept).",
                "counter", offsetof(struct k8s_stats, limit_hits), NULL);
    metric_drops(out, w);
    buf_printf(out, "# HELP llamalb_watcher_synced 1 once every list has completed.\n"
                    "# TYPE llamalb_watcher_synced gauge\nllamalb_watcher_synced %d\n",
               w->ready ? 1 : 0);
    push_metrics(&w->push, out);
    role_metrics(&w->role, out);
    return 200;
}
