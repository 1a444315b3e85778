/* SPDX-License-Identifier: MIT
 * Picking: which backend takes a request. The pick index (running weight
 * totals, backends by model) keeps a pick's cost independent of the set's
 * size; the scope (pinned backend, a model's backends, or all), the
 * candidates (weight, tries, caps, ejection), weighted draws on large
 * sets and session affinity are decided here; the policy (lb.c) only
 * chooses among what it is shown. A pick that finds every eligible
 * backend full hands its waiter to the queue (reg_queue.c). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "lb.h"
#include "registry_int.h"
#include "util.h"

/* ---------------------------------------------------------------- pick index */

/* What a pick needs so as not to scan the whole set: running weight totals
 * (a draw in proportion to weight is a binary search) and backends by
 * model (a routed request); a pinned request uses the name table, which
 * every change keeps current (registry.c). Every list is in set
 * order, so a scan of a model's list meets its backends in the order a
 * scan of the whole set would, and small-set picks stay exactly what they
 * were. The index depends only on weights and model lists, which only
 * updates change: each update builds the index of its new set aside,
 * without the lock, and swaps it in with the set (registry.c); what
 * changes between updates (health, caps, load, slow start) is read live
 * at every pick. r->ix is guarded by the registry lock. */
struct ix_model {
    const char *name;      /* into a backend's spec or probed list (freed after the swap
                              that retires this index) */
    unsigned first, n;     /* its slice of members[] and member_cum[] */
    unsigned last;         /* while building: v index + 1 of the last backend counted */
};

struct reg_index {
    uint64_t *cum;         /* cum[i] = weight of v[0] + ... + v[i] */
    struct ix_model *models; /* every distinct served model, by first appearance */
    unsigned nmodels;
    unsigned *by_model;    /* open addressing on the model name: models index + 1 */
    unsigned model_mask;
    unsigned *members;     /* each model's backends (v indices), in set order */
    uint64_t *member_cum;  /* running weight totals within each model's slice */
};

void reg_ix_free(struct reg_index *ix)
{
    if (ix == NULL)
        return;
    free(ix->cum);
    free(ix->models);
    free(ix->by_model);
    free(ix->members);
    free(ix->member_cum);
    free(ix);
}

/* The model table's cell for <name>: holding its models index + 1, or the
 * empty cell (0) where it would go. */
static unsigned *model_cell(const struct reg_index *ix, const char *name)
{
    for (unsigned h = (unsigned)reg_str_hash(name) & ix->model_mask;; h = (h + 1) & ix->model_mask)
        if (ix->by_model[h] == 0 || strcmp(ix->models[ix->by_model[h] - 1].name, name) == 0)
            return &ix->by_model[h];
}

struct reg_index *reg_ix_build(const struct ix_member *v, unsigned n)
{
    struct reg_index *ix = xcalloc(1, sizeof(*ix));
    ix->cum = xmalloc((n ? n : 1) * sizeof(*ix->cum));
    uint64_t total = 0;
    unsigned entries = 0;
    for (unsigned i = 0; i < n; i++) {
        total += v[i].weight;
        ix->cum[i] = total;
        entries += v[i].nmodels;
    }

    /* Models: count each model's backends (a backend listing a model twice
     * counts once), lay the slices out, then fill them in set order. */
    ix->model_mask = reg_table_size(entries) - 1;
    ix->by_model = xcalloc(ix->model_mask + 1, sizeof(*ix->by_model));
    ix->models = xmalloc((entries ? entries : 1) * sizeof(*ix->models));
    for (unsigned i = 0; i < n; i++) {
        const char *list = v[i].models;
        for (unsigned k = 0; k < v[i].nmodels; k++, list = reg_model_next(list)) {
            unsigned *cell = model_cell(ix, list);
            if (*cell == 0) {
                ix->models[ix->nmodels] = (struct ix_model){.name = list};
                *cell = ++ix->nmodels;
            }
            struct ix_model *m = &ix->models[*cell - 1];
            if (m->last != i + 1) {
                m->last = i + 1;
                m->n++;
            }
        }
    }
    unsigned at = 0;
    for (unsigned m = 0; m < ix->nmodels; m++) {
        ix->models[m].first = at;
        at += ix->models[m].n;
        ix->models[m].n = 0;
        ix->models[m].last = 0;
    }
    ix->members = xmalloc((at ? at : 1) * sizeof(*ix->members));
    ix->member_cum = xmalloc((at ? at : 1) * sizeof(*ix->member_cum));
    for (unsigned i = 0; i < n; i++) {
        const char *list = v[i].models;
        for (unsigned k = 0; k < v[i].nmodels; k++, list = reg_model_next(list)) {
            struct ix_model *m = &ix->models[*model_cell(ix, list) - 1];
            if (m->last == i + 1)
                continue;
            m->last = i + 1;
            unsigned j = m->first + m->n++;
            ix->members[j] = i;
            ix->member_cum[j] = (m->n > 1 ? ix->member_cum[j - 1] : 0) + v[i].weight;
        }
    }
    return ix;
}

/* The index for the set as it is now. Lock held. */
const struct reg_index *reg_ix_get(struct registry *r)
{
    BUG_ON(r->ix == NULL); /* reg_init installs the empty set's, every update its own */
    return r->ix;
}

/* ---------------------------------------------------------------- picking */

/* Candidate scratch space per thread, grown as the set grows. */
static _Thread_local struct backend **cand;
static _Thread_local unsigned cand_cap;

static bool was_tried(const struct backend *b, struct backend *const *tried, unsigned ntried)
{
    for (unsigned i = 0; i < ntried; i++)
        if (tried[i] == b)
            return true;
    return false;
}

/* Any thread that picks or kicks gets the scratch space: workers, and the
 * threads that update the set (the admin's, and the signal thread on a
 * SIGHUP reload), which kick the queue. A thread-exit destructor frees
 * it for all of them; workers also call reg_thread_exit. */
static pthread_key_t cand_key;
static pthread_once_t cand_once = PTHREAD_ONCE_INIT;

static void cand_free(void *p)
{
    free(p);
}

static void cand_key_init(void)
{
    pthread_key_create(&cand_key, cand_free);
}

void reg_cand_reserve(unsigned n)
{
    if (cand_cap < n) {
        cand_cap = n < 64 ? 64 : n;
        cand = xrealloc(cand, cand_cap * sizeof(*cand));
        pthread_once(&cand_once, cand_key_init);
        pthread_setspecific(cand_key, cand);
    }
}

/* The largest set any update has swapped in (all registries of the
 * process): published before the swap that reaches it, and the registry
 * lock orders that store before the set a picker sees. */
static atomic_uint size_max;

void reg_size_hint(unsigned n)
{
    unsigned cur = atomic_load_explicit(&size_max, memory_order_relaxed);
    while (n > cur && !atomic_compare_exchange_weak(&size_max, &cur, n)) {
    }
}

void reg_lock_for_pick(struct registry *r)
{
    reg_cand_reserve(atomic_load_explicit(&size_max, memory_order_relaxed));
    pthread_mutex_lock(&r->lock);
}

void reg_thread_exit(void)
{
    if (cand != NULL)
        pthread_setspecific(cand_key, NULL);
    free(cand);
    cand = NULL;
    cand_cap = 0;
}

/* The backends a request may go to before health, caps and tries are
 * looked at: the pinned one, those serving its model, or the whole set.
 * Indices into r->v in set order, with running weight totals for draws. */
struct scope {
    const unsigned *idx;   /* NULL: r->v[0..n) itself */
    const uint64_t *cum;   /* cum[k]: weights of the first k + 1 */
    unsigned n;
    unsigned one;          /* a pinned backend's index (idx points here) */
    uint64_t one_cum;
};

static struct backend *scope_at(const struct registry *r, const struct scope *s, unsigned k)
{
    return r->v[s->idx ? s->idx[k] : k];
}

/* Fills <s> for request <q>: the pinned backend if it is in the set with
 * a weight; else, if some backend with a weight serves the model, those
 * serving it; else every backend, or -1 when unknown models are refused.
 * Lock held; <s> is valid until the lock is released. */
static int scope_of(struct registry *r, const struct reg_req *q, struct scope *s)
{
    const struct reg_index *ix = reg_ix_get(r);
    if (q->pin != NULL) {
        int i = reg_names_find(r, q->pin);
        if (i >= 0 && r->v[i]->spec.weight > 0) {
            s->one = (unsigned)i;
            s->one_cum = r->v[i]->spec.weight;
            s->idx = &s->one;
            s->cum = &s->one_cum;
            s->n = 1;
            return 0;
        }
    }
    if (q->model != NULL && q->model[0] != '\0') {
        unsigned cell = ix->nmodels ? *model_cell(ix, q->model) : 0;
        if (cell != 0) {
            const struct ix_model *m = &ix->models[cell - 1];
            /* Served only by drained backends counts as not served. */
            if (ix->member_cum[m->first + m->n - 1] > 0) {
                s->idx = &ix->members[m->first];
                s->cum = &ix->member_cum[m->first];
                s->n = m->n;
                return 0;
            }
        }
        if (r->reject_unknown_model)
            return -1;
    }
    s->idx = NULL;
    s->cum = ix->cum;
    s->n = r->n;
    return 0;
}

static bool at_cap(const struct backend *b)
{
    return b->cap != 0 && atomic_load_explicit(&b->inflight, memory_order_relaxed) >= b->cap;
}

/* Which backends of <s> may take request <q>: weight > 0, not tried. Counts
 * in <*full> those that qualify but are at their cap. Ejected backends
 * count only when no other qualifies: ejection never empties the pool.
 * Caller holds the lock. Returns the count; the list is in cand[]. */
static unsigned candidates(struct registry *r, const struct reg_req *q, const struct scope *s,
                           int64_t now, unsigned *full)
{
    BUG_ON(cand_cap < s->n && s->n > 0); /* reg_lock_for_pick reserved it */
    unsigned n = 0, ejected = 0;
    *full = 0;
    for (int pass = 0; pass < 2 && n == 0; pass++) {
        for (unsigned k = 0; k < s->n; k++) {
            struct backend *b = scope_at(r, s, k);
            if (b->spec.weight == 0 || was_tried(b, q->tried, q->ntried))
                continue;
            bool down = b->down_until > now;
            if (pass == 0 && down) {
                ejected++;
                continue;
            }
            if (pass == 1 && !down)
                continue;
            if (at_cap(b)) {
                (*full)++;
                continue;
            }
            b->eff_weight = reg_effective_weight(r, b, now);
            cand[n++] = b;
        }
        if (ejected == 0 || *full > 0)
            break;
    }
    return n;
}

/* Draws a large-set pick makes before it gives up and scans: on average
 * enough for LB_MAX_DRAWS eligible backends when half of the set is
 * eligible, and for least's 8 when a quarter is. */
#define REG_DRAW_TRIES (2 * LB_MAX_DRAWS)

/* Draws up to <want> distinct backends of <s> that candidates() would list
 * in its first pass (weight > 0, not tried, not ejected, under their cap),
 * each in proportion to its effective weight: a draw lands on a backend in
 * proportion to its configured weight, and one in slow start is kept with
 * probability effective / configured. So the first draw is distributed
 * exactly like a weighted-random pick from the full candidate list, and
 * each next one like a pick from the rest. Gives up after REG_DRAW_TRIES
 * draws. Lock held. Returns how many it found, in <out>. */
static unsigned draw(struct registry *r, const struct reg_req *q, const struct scope *s,
                     int64_t now, unsigned want, uint64_t *rng, struct backend **out)
{
    uint64_t total = s->n ? s->cum[s->n - 1] : 0;
    unsigned got = 0;
    for (unsigned t = 0; t < REG_DRAW_TRIES && got < want && total > 0; t++) {
        uint64_t x = util_rand64(rng) % total;
        unsigned lo = 0, hi = s->n - 1; /* the first k with cum[k] > x */
        while (lo < hi) {
            unsigned mid = lo + (hi - lo) / 2;
            if (s->cum[mid] > x)
                hi = mid;
            else
                lo = mid + 1;
        }
        struct backend *b = scope_at(r, s, lo);
        if (b->spec.weight == 0 || b->down_until > now || at_cap(b) ||
            was_tried(b, q->tried, q->ntried) || was_tried(b, out, got))
            continue;
        uint64_t ew = reg_effective_weight(r, b, now), w = (uint64_t)b->spec.weight * 1000;
        if (ew < w && util_rand64(rng) % w >= ew)
            continue;
        b->eff_weight = ew;
        out[got++] = b;
    }
    return got;
}

/* Rendezvous hashing: the candidate with the highest hash of (key, name)
 * keeps a session while it is eligible; candidates() already left out
 * backends at their cap, which bounds the load a hot session can pile on. */
static struct backend *pick_affinity(struct backend *const *c, unsigned n, uint64_t key)
{
    struct backend *best = NULL;
    uint64_t best_h = 0;
    for (unsigned i = 0; i < n; i++) {
        uint64_t h = key ^ 0x9E3779B97F4A7C15ULL;
        for (const char *p = c[i]->spec.name; *p; p++)
            h = (h ^ (unsigned char)*p) * 0x100000001B3ULL;
        h ^= h >> 33;
        h *= 0xff51afd7ed558ccdULL;
        h ^= h >> 33;
        if (best == NULL || h > best_h) {
            best = c[i];
            best_h = h;
        }
    }
    return best;
}

/* Picks for <q>; caller holds the lock. On a large scope the policy
 * chooses among a few drawn backends (lb.h); when none of the draws is
 * eligible, or the policy or session affinity needs every candidate, it
 * chooses from the full candidate list, so a request is queued or refused
 * only when no backend can take it. */
enum reg_pick_rc reg_pick_locked(struct registry *r, const struct reg_req *q, uint64_t *rng,
                                 int64_t now, struct backend **out, const char **why)
{
    struct scope s;
    if (scope_of(r, q, &s) != 0)
        return REG_NO_MODEL;
    const struct lb_ops *p = r->policy;
    struct backend *b = NULL;
    if (q->affinity == 0 && p->draws > 0 && s.n > LB_SCAN_MAX) {
        struct backend *drawn[LB_MAX_DRAWS];
        unsigned nd = draw(r, q, &s, now, MIN(p->draws, LB_MAX_DRAWS), rng, drawn);
        if (nd > 0)
            b = p->pick_drawn(drawn, nd, rng);
    }
    if (b == NULL) {
        unsigned full = 0, n = candidates(r, q, &s, now, &full);
        if (n == 0)
            return full > 0 ? REG_QUEUED : REG_NONE;
        b = q->affinity != 0 ? pick_affinity(cand, n, q->affinity) : p->pick(cand, n, rng);
    }
    if (why)
        *why = q->affinity != 0 ? "session affinity"
               : q->pin         ? "file pinned"
               : q->model       ? "model route + policy"
                                : "policy";
    atomic_fetch_add(&b->inflight, 1);
    backend_ref(b);
    *out = b;
    return REG_PICKED;
}

enum reg_pick_rc reg_pick(struct registry *r, const struct reg_req *q, uint64_t *rng,
                          int64_t now_ms, struct reg_waiter *w, struct backend **out,
                          const char **why)
{
    reg_lock_for_pick(r);
    enum reg_pick_rc rc = reg_pick_locked(r, q, rng, now_ms, out, why);
    if (rc == REG_QUEUED)
        rc = reg_enqueue_locked(r, q, w, now_ms);
    pthread_mutex_unlock(&r->lock);
    return rc;
}

bool reg_has_alternative(struct registry *r, const struct reg_req *q, int64_t now_ms)
{
    struct scope s;
    struct backend *one;
    unsigned full = 0;
    bool any = false;
    reg_lock_for_pick(r);
    if (scope_of(r, q, &s) == 0)
        any = (s.n > LB_SCAN_MAX && draw(r, q, &s, now_ms, 1, &r->rng, &one) > 0) ||
              candidates(r, q, &s, now_ms, &full) > 0;
    pthread_mutex_unlock(&r->lock);
    return any;
}

