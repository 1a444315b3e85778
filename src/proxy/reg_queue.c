/* SPDX-License-Identifier: MIT
 * The gateway queue: requests that found every eligible backend full wait
 * here, oldest first. A freed slot is handed to the oldest waiter that can
 * use it under the registry lock, so a newcomer cannot take it in between;
 * the waiter moves to its worker's ready list, and the worker is woken
 * after the unlock (struct wakes, registry_int.h). */
#include <string.h>

#include "buf.h"
#include "metrics.h"
#include "registry_int.h"
#include "util.h"

void reg_wakes_run(const struct wakes *wk)
{
    for (unsigned i = 0; i < wk->n; i++)
        wk->v[i].fn(wk->v[i].arg);
}

/* True if <w>'s worker is in <wk> or there is room to add it. */
static bool wakes_room(const struct wakes *wk, const struct reg_waiter *w)
{
    for (unsigned i = 0; i < wk->n; i++)
        if (wk->v[i].fn == w->wake && wk->v[i].arg == w->wake_arg)
            return true;
    return wk->n < KICK_WAKES_MAX;
}

/* Adds a wake for <w>'s worker to <wk> unless it is there already; there
 * is room (wakes_room). */
static void wakes_add(struct wakes *wk, const struct reg_waiter *w)
{
    for (unsigned i = 0; i < wk->n; i++)
        if (wk->v[i].fn == w->wake && wk->v[i].arg == w->wake_arg)
            return;
    BUG_ON(wk->n >= KICK_WAKES_MAX);
    wk->v[wk->n].fn = w->wake;
    wk->v[wk->n].arg = w->wake_arg;
    wk->n++;
}

static bool str_eq(const char *a, const char *b)
{
    return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* Request shapes (model, pin) that found every eligible backend full in
 * this kick. Capacity only shrinks during a kick, so a later waiter of
 * the same shape (that has tried nothing yet) would be full too. */
#define KICK_MEMO 32
struct kick_memo {
    unsigned n;
    struct {
        const char *model, *pin;
    } v[KICK_MEMO];
};

static bool memo_full(const struct kick_memo *m, const struct reg_req *q)
{
    if (q->ntried != 0)
        return false;
    for (unsigned i = 0; i < m->n; i++)
        if (str_eq(m->v[i].model, q->model) && str_eq(m->v[i].pin, q->pin))
            return true;
    return false;
}

static void memo_add(struct kick_memo *m, const struct reg_req *q)
{
    if (q->ntried == 0 && m->n < KICK_MEMO) {
        m->v[m->n].model = q->model;
        m->v[m->n].pin = q->pin;
        m->n++;
    }
}

bool reg_kick_locked(struct registry *r, int64_t now, struct wakes *wk)
{
    struct kick_memo memo = {0};
    struct list *e = r->waiters.next;
    while (e != &r->waiters) {
        struct reg_waiter *w = list_entry(e, struct reg_waiter, link);
        if (memo_full(&memo, &w->req)) {
            e = e->next;
            continue;
        }
        if (!wakes_room(wk, w))
            return true; /* the caller wakes those it has and kicks again: every
                            round moves KICK_WAKES_MAX workers' waiters at least */
        struct backend *b = NULL;
        enum reg_pick_rc rc = reg_pick_locked(r, &w->req, &r->rng, now, &b, NULL);
        e = e->next;
        if (rc == REG_QUEUED) {
            memo_add(&memo, &w->req);
            continue;
        }
        wakes_add(wk, w);
        list_del(&w->link);
        r->nwaiting--;
        w->assigned = b; /* NULL: refused (REG_NONE, REG_NO_MODEL); its worker picks
                            again and answers what a new request gets */
        w->state = REG_W_READY;
        if (rc == REG_PICKED) {
            int64_t waited_us = (now - w->since_ms) * 1000;
            unsigned k = reg_bucket(reg_lat_bounds, waited_us);
            atomic_fetch_add(&r->queue_wait_us, (uint64_t)waited_us);
            r->queue_wait_hist[k]++;
            struct model_stats *ms = reg_model_slot(r, w->req.model);
            ms->queued++;
            ms->queue_wait_us += (uint64_t)waited_us;
            ms->queue_wait_hist[k]++;
        }
        list_add_tail(w->ready_list, &w->link);
    }
    return false;
}

void reg_kick_unlock(struct registry *r, int64_t now)
{
    struct wakes wk;
    bool more;
    do {
        wk.n = 0;
        more = r->nwaiting > 0 && reg_kick_locked(r, now, &wk);
        pthread_mutex_unlock(&r->lock);
        reg_wakes_run(&wk);
        if (more)
            reg_lock_for_pick(r);
    } while (more);
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
    reg_lock_for_pick(r);
    reg_kick_unlock(r, now_ms);
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
    static const struct metric_family wait = {
        "llamalb_queue_wait_seconds", "Time queued requests waited for a backend.",
        METRIC_HISTOGRAM};
    uint64_t hist[REG_LAT_BUCKETS + 1];
    pthread_mutex_lock(&r->lock);
    memcpy(hist, r->queue_wait_hist, sizeof(hist));
    pthread_mutex_unlock(&r->lock);
    const struct metric_scalar q[] = {
        {{"llamalb_queue_length", "Requests waiting for a free backend.", METRIC_GAUGE},
         METRIC_INT, reg_queue_length(r), 0},
        {{"llamalb_queued_total", "Requests that had to wait for a free backend.",
          METRIC_COUNTER},
         METRIC_INT, atomic_load(&r->queued_total), 0},
        {{"llamalb_queue_rejected_total", "Requests refused: queue full.", METRIC_COUNTER},
         METRIC_INT, atomic_load(&r->queue_rejects), 0},
        {{"llamalb_queue_timeouts_total", "Requests that waited too long.", METRIC_COUNTER},
         METRIC_INT, atomic_load(&r->queue_timeouts), 0},
    };
    metric_scalars(out, q, ARRAY_SIZE(q));
    metric_head(out, &wait);
    metric_histogram(out, wait.name, NULL, 0, reg_lat_bounds, REG_LAT_BUCKETS, hist,
                     (double)atomic_load(&r->queue_wait_us) / 1e6);
}
