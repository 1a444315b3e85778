/* SPDX-License-Identifier: MIT
 * The registry's state copied for the status page (reg_view.h). A registry
 * file: it takes the registry lock, for as long as a copy takes (no system
 * call, no formatting), and reads nothing it does not guard without it. */
#include <stdlib.h>
#include <string.h>

#include "lb.h"
#include "reg_view.h"
#include "registry_int.h"
#include "util.h"

static const char *view_state(const struct registry *r, const struct backend *b, int64_t now)
{
    if (b->spec.weight == 0)
        return "draining";
    if (b->down_until > now)
        return "ejected";
    if (r->slow_start_ms > 0 && now < b->ramp_start + r->slow_start_ms)
        return "slow_start";
    return "up";
}

static void copy_backend(const struct registry *r, const struct backend *b, int64_t now,
                         struct reg_backend_view *o)
{
    memcpy(o->name, b->spec.name, sizeof(o->name));
    memcpy(o->host, b->spec.host, sizeof(o->host));
    o->port = b->spec.port;
    o->state = view_state(r, b, now);
    o->source = b->source == REG_SOURCE_STATIC ? "static" : "admin";
    o->weight = b->spec.weight;
    o->cap = b->cap;
    o->inflight = atomic_load(&b->inflight);
    o->ejected_ms = b->down_until > now ? b->down_until - now : 0;
    o->ttft_ms = b->ewma_ttft_us / 1000.0;
    o->tbt_ms = b->ewma_tbt_us / 1000.0;
    o->requests = atomic_load(&b->stats.requests);
    o->errors = atomic_load(&b->stats.failures);
    o->ejections = atomic_load(&b->stats.ejections);
    o->retries = atomic_load(&b->stats.retries);
    o->events = atomic_load(&b->stats.events);
    for (unsigned k = 0; k < 6; k++)
        o->status[k] = atomic_load(&b->stats.status[k]);
    const char *list;
    o->nmodels = reg_served(b, &list);
    o->models = reg_models_dup(list, o->nmodels);
}

void reg_view(struct registry *r, int64_t now_ms, struct reg_view *v)
{
    memset(v, 0, sizeof(*v));
    /* Allocated before the lock, for the most the copy can hold. */
    v->backends = xcalloc(REG_VIEW_MAX_BACKENDS, sizeof(*v->backends));
    v->models = xcalloc(REG_MAX_MODEL_STATS, sizeof(*v->models));
    v->queued_total = atomic_load(&r->queued_total);
    v->queue_rejects = atomic_load(&r->queue_rejects);
    v->queue_timeouts = atomic_load(&r->queue_timeouts);
    v->queue_wait_ms_sum = (double)atomic_load(&r->queue_wait_us) / 1000.0;

    pthread_mutex_lock(&r->lock);
    v->slow_start_ms = r->slow_start_ms;
    v->policy = r->policy != NULL ? r->policy->name : "";
    v->nbackends_total = r->n;
    v->nbackends = MIN(r->n, (unsigned)REG_VIEW_MAX_BACKENDS);
    for (unsigned i = 0; i < v->nbackends; i++)
        copy_backend(r, r->v[i], now_ms, &v->backends[i]);
    v->queue_length = r->nwaiting;
    v->queue_max = r->queue_max;
    if (r->waiters.next != &r->waiters) {
        const struct reg_waiter *w = list_entry(r->waiters.next, struct reg_waiter, link);
        v->oldest_wait_ms = now_ms > w->since_ms ? now_ms - w->since_ms : 0;
    }
    unsigned nms = atomic_load_explicit(&r->nmodel_stats, memory_order_acquire);
    v->nmodels = nms;
    for (unsigned i = 0; i < nms; i++) {
        const struct model_stats *m = &r->models[i];
        struct reg_model_view *o = &v->models[i];
        memcpy(o->name, m->name, sizeof(o->name));
        o->requests = atomic_load(&m->requests);
        o->inflight = atomic_load(&m->inflight);
        o->errors = m->errors;
        o->events = m->events;
        o->queued = m->queued;
        o->ttft_count = 0;
        for (unsigned k = 0; k <= REG_LAT_BUCKETS; k++)
            o->ttft_count += m->ttft_hist[k];
        o->ttft_ms_sum = (double)m->ttft_us_sum / 1000.0;
        o->queue_wait_ms_sum = (double)m->queue_wait_us / 1000.0;
        memcpy(o->ttft_hist, m->ttft_hist, sizeof(o->ttft_hist));
    }
    /* Waiting now, by model: one walk of the queue. */
    for (struct list *e = r->waiters.next; e != &r->waiters; e = e->next) {
        const struct reg_waiter *w = list_entry(e, struct reg_waiter, link);
        char kb[MODEL_KEY_LEN];
        const char *key = reg_model_key(w->req.model, kb);
        for (unsigned i = 0; i < nms; i++)
            if (strcmp(v->models[i].name, key) == 0) {
                v->models[i].waiting++;
                break;
            }
    }
    pthread_mutex_unlock(&r->lock);
}

void reg_view_free(struct reg_view *v)
{
    for (unsigned i = 0; i < v->nbackends; i++)
        free(v->backends[i].models);
    free(v->backends);
    free(v->models);
    memset(v, 0, sizeof(*v));
}
