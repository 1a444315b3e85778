/* SPDX-License-Identifier: MIT
 * The gateway queue: requests that found every eligible backend full wait
 * here, oldest first. A freed slot is handed to the oldest waiter that can
 * use it under the registry lock, so a newcomer cannot take it in between;
 * the waiter moves to its worker's ready list, and the worker is woken
 * after the unlock (struct wakes, registry_int.h). */
#include "buf.h"
#include "metrics.h"
#include "registry_int.h"
#include "util.h"

void reg_wakes_run(const struct wakes *wk)
{
    for (unsigned i = 0; i < wk->n; i++)
        wk->v[i].fn(wk->v[i].arg);
}

/* Adds a wake for <w>'s worker to <wk> unless it is there already. */
static void wakes_add(struct wakes *wk, const struct reg_waiter *w)
{
    for (unsigned i = 0; i < wk->n; i++)
        if (wk->v[i].fn == w->wake && wk->v[i].arg == w->wake_arg)
            return;
    BUG_ON(wk->n >= KICK_SCAN_MAX);
    wk->v[wk->n].fn = w->wake;
    wk->v[wk->n].arg = w->wake_arg;
    wk->n++;
}

void reg_kick_locked(struct registry *r, int64_t now, struct wakes *wk)
{
    struct list *e = r->waiters.next;
    for (unsigned scanned = 0; e != &r->waiters && scanned < KICK_SCAN_MAX; scanned++) {
        struct reg_waiter *w = list_entry(e, struct reg_waiter, link);
        e = e->next;
        struct backend *b = NULL;
        if (reg_pick_locked(r, &w->req, &r->rng, now, &b, NULL) != REG_PICKED)
            continue;
        list_del(&w->link);
        r->nwaiting--;
        w->assigned = b;
        w->state = REG_W_READY;
        atomic_fetch_add(&r->queue_wait_us, (uint64_t)(now - w->since_ms) * 1000);
        struct model_stats *ms = reg_model_slot(r, w->req.model);
        ms->queued++;
        ms->queue_wait_us += (uint64_t)(now - w->since_ms) * 1000;
        list_add_tail(w->ready_list, &w->link);
        wakes_add(wk, w);
    }
}

enum reg_pick_rc reg_enqueue_locked(struct registry *r, const struct reg_req *q,
                                    struct reg_waiter *w, int64_t now)
{
    if (w == NULL || r->nwaiting >= r->queue_max) {
        atomic_fetch_add(&r->queue_rejects, 1);
        return REG_QUEUE_FULL;
    }
    w->req = *q;
    w->state = REG_W_QUEUED;
    w->assigned = NULL;
    w->since_ms = now;
    list_add_tail(&r->waiters, &w->link);
    r->nwaiting++;
    atomic_fetch_add(&r->queued_total, 1);
    return REG_QUEUED;
}

struct backend *reg_cancel_wait(struct registry *r, struct reg_waiter *w)
{
    struct backend *b = NULL;
    pthread_mutex_lock(&r->lock);
    if (w->state == REG_W_QUEUED) {
        list_del(&w->link);
        r->nwaiting--;
    } else if (w->state == REG_W_READY) {
        list_del(&w->link);
        b = w->assigned;
    }
    w->state = REG_W_IDLE;
    w->assigned = NULL;
    pthread_mutex_unlock(&r->lock);
    return b;
}

void reg_note_queue_timeout(struct registry *r)
{
    atomic_fetch_add(&r->queue_timeouts, 1);
}

void reg_take_ready(struct registry *r, struct list *ready, struct list *out)
{
    pthread_mutex_lock(&r->lock);
    while (!list_empty(ready)) {
        struct list *e = ready->next;
        list_del(e);
        list_add_tail(out, e);
    }
    pthread_mutex_unlock(&r->lock);
}

void reg_kick(struct registry *r, int64_t now_ms)
{
    struct wakes wk = {0};
    pthread_mutex_lock(&r->lock);
    if (r->nwaiting > 0)
        reg_kick_locked(r, now_ms, &wk);
    pthread_mutex_unlock(&r->lock);
    reg_wakes_run(&wk);
}

unsigned reg_queue_length(struct registry *r)
{
    pthread_mutex_lock(&r->lock);
    unsigned n = r->nwaiting;
    pthread_mutex_unlock(&r->lock);
    return n;
}

void reg_queue_metrics(struct registry *r, struct buf *out)
{
    const struct metric_scalar q[] = {
        {{"llamalb_queue_length", "Requests waiting for a free backend.", METRIC_GAUGE},
         METRIC_INT, reg_queue_length(r), 0},
        {{"llamalb_queued_total", "Requests that had to wait for a free backend.",
          METRIC_COUNTER},
         METRIC_INT, atomic_load(&r->queued_total), 0},
        {{"llamalb_queue_wait_seconds_sum", "Time queued requests waited.", METRIC_COUNTER},
         METRIC_FIXED, 0, (double)atomic_load(&r->queue_wait_us) / 1e6},
        {{"llamalb_queue_rejected_total", "Requests refused: queue full.", METRIC_COUNTER},
         METRIC_INT, atomic_load(&r->queue_rejects), 0},
        {{"llamalb_queue_timeouts_total", "Requests that waited too long.", METRIC_COUNTER},
         METRIC_INT, atomic_load(&r->queue_timeouts), 0},
    };
    metric_scalars(out, q, ARRAY_SIZE(q));
}
