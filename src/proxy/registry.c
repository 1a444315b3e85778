/* SPDX-License-Identifier: MIT
 * The shared backend set and its updates: init and settings, the names
 * table, upsert, remove and replace (PUT /api/services), snapshots for the
 * prober, and the read views GET /api/services and GET /v1/models. The
 * rest of the registry (registry_int.h lists its files): specs in
 * reg_spec.c, picks in reg_pick.c, the queue in reg_queue.c, health in
 * reg_health.c, uploaded files in reg_files.c, statistics in reg_stats.c. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "json.h"
#include "lb.h"
#include "registry_int.h"
#include "util.h"

void reg_init(struct registry *r, unsigned nworkers, const struct lb_ops *policy)
{
    memset(r, 0, sizeof(*r));
    pthread_mutex_init(&r->lock, NULL);
    pthread_mutex_init(&r->files_lock, NULL);
    r->nworkers = nworkers;
    r->policy = policy;
    r->eject_after = 5;
    r->eject_base_ms = 30000;
    r->eject_max_ms = 300000;
    r->default_cap = 1;
    r->queue_max = 1024;
    list_init(&r->waiters);
    util_random_bytes(&r->rng, sizeof(r->rng));
    r->rng |= 1;
    r->ix = reg_ix_build(NULL, 0); /* the empty set's; every update installs its own */
}

void backend_unref(struct backend *b)
{
    if (b == NULL || atomic_fetch_sub(&b->refs, 1) != 1)
        return;
    free((void *)b->spec.models);
    free(b->probed);
    free(b->pools);
    free(b);
}

void reg_deinit(struct registry *r)
{
    for (unsigned i = 0; i < r->n; i++) {
        atomic_store(&r->v[i]->removed, true);
        backend_unref(r->v[i]);
    }
    free(r->v);
    free(r->files); /* struct reg_files: no pointers inside */
    reg_ix_free(r->ix);
    free(r->names);
    r->v = NULL;
    r->files = NULL;
    r->ix = NULL;
    r->names = NULL;
    r->n = r->cap = 0;
    pthread_mutex_destroy(&r->lock);
    pthread_mutex_destroy(&r->files_lock);
}


/* Serializes the updates (upsert, remove, replace, probed models): an
 * update builds the new set, names table and pick index holding it alone,
 * reading the current set (which only updates change) without r->lock,
 * then swaps them in under r->lock. Workers never take it. One for the
 * process (a process has one registry; unit tests make several, one at a
 * time). Lock order: update_lock, then r->lock. */
static pthread_mutex_t update_lock = PTHREAD_MUTEX_INITIALIZER;

/* Settings are written under both locks: updates read default_cap holding
 * update_lock only. */
void reg_configure(struct registry *r, const struct reg_settings *s)
{
    pthread_mutex_lock(&update_lock);
    pthread_mutex_lock(&r->lock);
    r->eject_after = s->eject_after;
    r->eject_base_ms = s->eject_base_ms;
    r->eject_max_ms = s->eject_max_ms;
    r->default_cap = s->default_cap;
    r->queue_max = s->queue_max;
    r->slow_start_ms = s->slow_start_ms;
    r->reject_unknown_model = s->reject_unknown_model;
    pthread_mutex_unlock(&r->lock);
    pthread_mutex_unlock(&update_lock);
}

void reg_set_policy(struct registry *r, const struct lb_ops *policy)
{
    pthread_mutex_lock(&r->lock);
    r->policy = policy;
    pthread_mutex_unlock(&r->lock);
}

/* ---------------------------------------------------------------- names */

/* Backends by name. Registering, updating and unregistering one backend
 * looks its name up, and so does a pinned pick; a PUT matches every name
 * of the set against its services. A scan or a pairwise match would make
 * those O(n) and O(n * m) string compares under the lock every worker
 * takes to pick, so the set keeps an open-addressed table of its names,
 * changed along with r->v by every update. Cells keep the name's hash so
 * that probes and deletions rarely touch a backend. The cell is struct
 * reg_name_cell (registry_int.h). */
uint64_t reg_str_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    return h;
}

unsigned reg_table_size(unsigned n)
{
    unsigned size = 16;
    while (size < 2 * n)
        size *= 2;
    return size;
}

/* The cell holding <name> (hash <h>), or the empty cell where it would go.
 * Lock held; the table exists. */
static unsigned names_cell(const struct registry *r, const char *name, uint32_t h)
{
    unsigned c = h & r->names_mask;
    for (; r->names[c].slot != 0; c = (c + 1) & r->names_mask)
        if (r->names[c].hash == h && strcmp(r->v[r->names[c].slot - 1]->spec.name, name) == 0)
            break;
    return c;
}

int reg_names_find(const struct registry *r, const char *name)
{
    if (r->names == NULL)
        return -1;
    unsigned slot = r->names[names_cell(r, name, (uint32_t)reg_str_hash(name))].slot;
    return (int)slot - 1;
}

/* A names table for the set <v>[0..n), built aside (no lock) from the
 * hashes kept in the backends, so no name is hashed again. */
static struct reg_name_cell *names_build(struct backend *const *v, unsigned n, unsigned *mask)
{
    *mask = reg_table_size(n) - 1;
    struct reg_name_cell *t = xcalloc(*mask + 1, sizeof(*t));
    for (unsigned i = 0; i < n; i++) {
        unsigned c = v[i]->name_hash & *mask;
        while (t[c].slot != 0)
            c = (c + 1) & *mask;
        t[c] = (struct reg_name_cell){.hash = v[i]->name_hash, .slot = i + 1};
    }
    return t;
}

/* ---------------------------------------------------------------- updates */

/* Every update (upsert, remove, replace, probed models) works the same way,
 * so that the registry lock is held for pointer swaps only, whatever the
 * size of the set or of the update: under r->update_lock (updates one at a
 * time; only updates change the set, the specs and the probed lists, so an
 * update reads them without r->lock), it builds the new set array, names
 * table and pick index, the new backends and the new model lists aside;
 * then swap_in() takes r->lock, swaps them in, applies the in-place
 * changes (plain stores), moves <version> and kicks the queue; after the
 * unlock the old arrays, lists and index are freed and the backends that
 * left the set retired. */

/* A backend that stays, with new fields. */
struct inplace {
    struct backend *b;
    struct backend_spec spec; /* spec.models: the new owned block (the old one after the swap) */
    enum reg_source src;
    unsigned cap;
};

struct change {
    struct backend **v;       /* the new set (the old array after the swap); NULL: unchanged */
    unsigned n, vcap;
    struct reg_name_cell *names; /* its names table (likewise); NULL: unchanged */
    unsigned names_mask;
    struct reg_index *ix;     /* the new pick index (the old one after the swap) */
    struct inplace *upd;
    unsigned nupd;
    struct backend *probed_b; /* reg_set_probed_models: the backend, its new list */
    char *probed;             /* (the old list after the swap) */
    unsigned nprobed;
    uint64_t generation;      /* PUT: the generation to record, 0 = none */
    struct backend **gone;    /* left the set: retired after the unlock */
    unsigned ngone;
};

/* The models <b> will serve after the change: its new spec's, else the
 * probed ones. */
static void member_of(struct ix_member *m, const struct backend *b, const struct inplace *u,
                      const struct change *x)
{
    const struct backend_spec *s = u ? &u->spec : &b->spec;
    m->weight = s->weight;
    if (s->nmodels > 0) {
        m->nmodels = s->nmodels;
        m->models = s->models;
    } else if (x->probed_b == b) {
        m->nmodels = x->nprobed;
        m->models = x->probed;
    } else {
        m->nmodels = b->nprobed;
        m->models = b->probed;
    }
}

/* Builds x->ix for the set after the change. The in-place updates are
 * looked up by a mark in a scratch array (O(n + updates)). */
static void change_index(struct registry *r, struct change *x)
{
    struct backend *const *v = x->v ? x->v : r->v;
    unsigned n = x->v ? x->n : r->n;
    struct ix_member *m = xmalloc((n ? n : 1) * sizeof(*m));
    const struct inplace **by = NULL;
    if (x->nupd > 0) {
        /* v index of each updated backend: the names table of the new set */
        by = xcalloc(n ? n : 1, sizeof(*by));
        const struct reg_name_cell *t = x->names ? x->names : r->names;
        unsigned mask = x->names ? x->names_mask : r->names_mask;
        for (unsigned k = 0; k < x->nupd; k++) {
            const struct backend *b = x->upd[k].b;
            for (unsigned c = b->name_hash & mask; t[c].slot != 0; c = (c + 1) & mask)
                if (v[t[c].slot - 1] == b) {
                    by[t[c].slot - 1] = &x->upd[k];
                    break;
                }
        }
    }
    for (unsigned i = 0; i < n; i++)
        member_of(&m[i], v[i], by ? by[i] : NULL, x);
    x->ix = reg_ix_build(m, n);
    free(by);
    free(m);
}

static struct backend *backend_new(struct registry *r, const struct backend_spec *s,
                                   const struct net_addr *addr, enum reg_source src, int64_t now)
{
    struct backend *b = xcalloc(1, sizeof(*b));
    b->spec = *s;
    b->spec.models = reg_models_dup(s->models, s->nmodels); /* its own copy */
    b->name_hash = (uint32_t)reg_str_hash(s->name);
    b->addr = *addr;
    b->source = src;
    b->cap = s->max_inflight_set ? s->max_inflight : r->default_cap;
    b->ramp_start = now;
    atomic_init(&b->refs, 1);
    b->pools = xcalloc(r->nworkers, sizeof(*b->pools));
    for (unsigned i = 0; i < r->nworkers; i++)
        list_init(&b->pools[i].idle);
    return b;
}

static void retire(struct backend *b)
{
    atomic_store(&b->removed, true);
    backend_unref(b);
}

/* Prepares the update of <old> (in the set) from <s>: an in-place change
 * when the address is the same (appended to x->upd, which has room), else
 * a new backend that takes its place (returned; <old> goes to x->gone,
 * which has room). The name is the same (that is how <old> was found) and
 * is never rewritten: workers read names without the lock. */
static struct backend *prepare_update(struct registry *r, struct change *x, struct backend *old,
                                      const struct backend_spec *s, const struct net_addr *addr,
                                      enum reg_source src, int64_t now)
{
    if (net_addr_equal(&old->addr, addr)) {
        struct inplace *u = &x->upd[x->nupd++];
        u->b = old;
        u->spec = old->spec;
        memcpy(u->spec.host, s->host, sizeof(u->spec.host));
        u->spec.port = s->port;
        u->spec.weight = s->weight;
        u->spec.max_inflight = s->max_inflight;
        u->spec.max_inflight_set = s->max_inflight_set;
        u->spec.models = reg_models_dup(s->models, s->nmodels);
        u->spec.nmodels = s->nmodels;
        u->src = src;
        u->cap = s->max_inflight_set ? s->max_inflight : r->default_cap;
        return old;
    }
    x->gone[x->ngone++] = old;
    return backend_new(r, s, addr, src, now);
}

/* Swaps the prepared change in under r->lock (pointer swaps and plain
 * stores only), kicks the queue, unlocks. update_lock held. Afterwards <x>
 * holds what the set let go of: change_free() it. */
static void swap_in(struct registry *r, struct change *x, int64_t now)
{
    reg_size_hint(x->v ? x->n : r->n); /* before the swap: reg_lock_for_pick */
    reg_lock_for_pick(r);
    if (x->v) {
        struct backend **v = r->v;
        unsigned on = r->n, ocap = r->cap;
        r->v = x->v;
        r->n = x->n;
        r->cap = x->vcap;
        x->v = v;
        x->n = on;
        x->vcap = ocap;
    }
    if (x->names) {
        struct reg_name_cell *t = r->names;
        unsigned mask = r->names_mask;
        r->names = x->names;
        r->names_mask = x->names_mask;
        x->names = t;
        x->names_mask = mask;
    }
    struct reg_index *ix = r->ix;
    r->ix = x->ix;
    x->ix = ix;
    for (unsigned k = 0; k < x->nupd; k++) {
        struct inplace *u = &x->upd[k];
        struct backend_spec *o = &u->b->spec;
        if (o->weight == 0 && u->spec.weight > 0)
            u->b->ramp_start = now; /* back from draining: ramp up again */
        const char *models = o->models;
        memcpy(o->host, u->spec.host, sizeof(o->host));
        o->port = u->spec.port;
        o->weight = u->spec.weight;
        o->max_inflight = u->spec.max_inflight;
        o->max_inflight_set = u->spec.max_inflight_set;
        o->models = u->spec.models;
        o->nmodels = u->spec.nmodels;
        u->spec.models = models; /* freed after the unlock */
        u->b->source = u->src;
        /* read without the lock by the request path (up_start): atomic */
        __atomic_store_n(&u->b->cap, u->cap, __ATOMIC_RELAXED);
    }
    if (x->probed_b != NULL) {
        char *old = x->probed_b->probed;
        x->probed_b->probed = x->probed;
        x->probed_b->nprobed = x->nprobed;
        x->probed = old;
    }
    if (x->generation != 0)
        r->generation = x->generation;
    atomic_fetch_add(&r->version, 1);
    reg_kick_unlock(r, now);
}

/* Frees what swap_in gave back (or a change never swapped in) and retires
 * the backends that left the set. No lock. */
static void change_free(struct change *x)
{
    free(x->v);
    free(x->names);
    reg_ix_free(x->ix);
    for (unsigned k = 0; k < x->nupd; k++)
        free((void *)x->upd[k].spec.models);
    free(x->upd);
    free(x->probed);
    for (unsigned k = 0; k < x->ngone; k++)
        retire(x->gone[k]);
    free(x->gone);
}

/* A copy of the set's array with room for <extra> more. update_lock held. */
static struct backend **set_copy(const struct registry *r, unsigned extra, unsigned *vcap)
{
    *vcap = r->n + extra ? r->n + extra : 1;
    struct backend **v = xmalloc(*vcap * sizeof(*v));
    if (r->n)
        memcpy(v, r->v, r->n * sizeof(*v));
    return v;
}

int reg_upsert(struct registry *r, const struct backend_spec *s, enum reg_source src, char *err)
{
    struct net_addr addr;
    struct change x = {0};
    struct backend *one[1];
    struct inplace u[1];
    if (reg_spec_check(s, &addr, err) != 0)
        return -EINVAL;
    int64_t now = util_now_ms();
    pthread_mutex_lock(&update_lock);
    int i = reg_names_find(r, s->name), ret;
    if (i >= 0) {
        x.upd = u;
        x.gone = one;
        struct backend *b = prepare_update(r, &x, r->v[i], s, &addr, src, now);
        if (b != r->v[i]) { /* a new address: a new backend in the same place */
            x.v = set_copy(r, 0, &x.vcap);
            x.n = r->n;
            x.v[i] = b; /* same name, same index: the names table holds */
        }
        ret = 1;
    } else if (r->n >= REG_MAX_BACKENDS) {
        snprintf(err, NET_ERR_LEN, "too many backends: at most %d", REG_MAX_BACKENDS);
        pthread_mutex_unlock(&update_lock);
        return -ENOSPC; /* nothing changed */
    } else {
        x.v = set_copy(r, 1, &x.vcap);
        x.n = r->n + 1;
        x.v[r->n] = backend_new(r, s, &addr, src, now);
        x.names = names_build(x.v, x.n, &x.names_mask);
        ret = 0;
    }
    change_index(r, &x);
    swap_in(r, &x, now);
    pthread_mutex_unlock(&update_lock);
    /* x.upd and x.gone point at the stack: free their contents only */
    for (unsigned k = 0; k < x.nupd; k++)
        free((void *)x.upd[k].spec.models);
    for (unsigned k = 0; k < x.ngone; k++)
        retire(x.gone[k]);
    x.upd = NULL;
    x.nupd = 0;
    x.gone = NULL;
    x.ngone = 0;
    change_free(&x);
    return ret;
}

int reg_remove(struct registry *r, const char *name)
{
    struct change x = {0};
    struct backend *one[1];
    pthread_mutex_lock(&update_lock);
    int i = reg_names_find(r, name);
    if (i < 0) {
        pthread_mutex_unlock(&update_lock);
        return -ENOENT;
    }
    x.v = set_copy(r, 0, &x.vcap);
    memmove(&x.v[i], &x.v[i + 1], (r->n - (unsigned)i - 1) * sizeof(*x.v));
    x.n = r->n - 1;
    x.names = names_build(x.v, x.n, &x.names_mask);
    one[0] = r->v[i];
    change_index(r, &x);
    /* The queue is kicked: a waiter that only this backend could serve
     * gets the answer a new request would get, now. */
    swap_in(r, &x, util_now_ms());
    pthread_mutex_unlock(&update_lock);
    retire(one[0]);
    change_free(&x);
    return 0;
}

void reg_set_probed_models(struct registry *r, struct backend *b, const char *const *names,
                           unsigned n)
{
    const char *keep[REG_MAX_MODELS];
    unsigned nkeep = 0;
    for (unsigned i = 0; i < n && nkeep < REG_MAX_MODELS; i++)
        if (names[i][0] != '\0' && strlen(names[i]) <= REG_MODEL_MAX)
            keep[nkeep++] = names[i];
    struct change x = {0};
    x.probed = reg_models_pack(keep, nkeep);
    x.nprobed = nkeep;
    x.probed_b = b;
    pthread_mutex_lock(&update_lock);
    /* Every probe reports the same list, as a rule: nothing to change. */
    if (nkeep == b->nprobed && reg_models_len(x.probed, nkeep) == reg_models_len(b->probed, nkeep) &&
        (nkeep == 0 || memcmp(x.probed, b->probed, reg_models_len(b->probed, nkeep)) == 0)) {
        pthread_mutex_unlock(&update_lock);
        free(x.probed);
        return;
    }
    change_index(r, &x); /* whether or not b is still in the set */
    swap_in(r, &x, util_now_ms());
    pthread_mutex_unlock(&update_lock);
    change_free(&x);
}

/* The services of a PUT by name, built before the lock is taken: an
 * open-addressed table of spec index + 1 over <specs>. */
struct spec_names {
    struct reg_name_cell *cells; /* slot = spec index + 1 */
    unsigned mask;
};

/* The index of the spec named <name> (hash <h>) in <t>, or -1. */
static int spec_find(const struct spec_names *t, const struct backend_spec *specs,
                     const char *name, uint32_t h)
{
    for (unsigned c = h & t->mask; t->cells[c].slot != 0; c = (c + 1) & t->mask)
        if (t->cells[c].hash == h && strcmp(specs[t->cells[c].slot - 1].name, name) == 0)
            return (int)t->cells[c].slot - 1;
    return -1;
}

int reg_replace(struct registry *r, enum reg_source src, const struct backend_spec *specs,
                unsigned n, uint64_t generation, char *err)
{
    /* Validation and the table of service names that the set is matched
     * against need nothing of the set. Errors come in service order, as a
     * pairwise check would find them. Too many services are refused before
     * anything is allocated for them. */
    if (n > REG_MAX_BACKENDS) {
        snprintf(err, NET_ERR_LEN, "too many backends: %u services, at most %d", n,
                 REG_MAX_BACKENDS);
        return -ENOSPC;
    }
    int64_t now = util_now_ms();
    struct net_addr *addrs = xcalloc(n ? n : 1, sizeof(*addrs));
    struct spec_names t = {.mask = reg_table_size(n) - 1};
    t.cells = xcalloc(t.mask + 1, sizeof(*t.cells));
    for (unsigned i = 0; i < n; i++) {
        if (reg_spec_check(&specs[i], &addrs[i], err) != 0)
            goto invalid;
        uint32_t h = (uint32_t)reg_str_hash(specs[i].name);
        if (spec_find(&t, specs, specs[i].name, h) >= 0) {
            snprintf(err, NET_ERR_LEN, "duplicate backend name '%.64s'", specs[i].name);
            goto invalid;
        }
        unsigned c = h & t.mask;
        while (t.cells[c].slot != 0)
            c = (c + 1) & t.mask;
        t.cells[c] = (struct reg_name_cell){.hash = h, .slot = i + 1};
    }
    pthread_mutex_lock(&update_lock);
    if (generation != 0 && generation < r->generation) {
        snprintf(err, NET_ERR_LEN, "stale generation %llu: already at %llu",
                 (unsigned long long)generation, (unsigned long long)r->generation);
        pthread_mutex_unlock(&update_lock);
        free(t.cells);
        free(addrs);
        return -ESTALE;
    }
    /* The backends of other sources that no spec names stay: with them
     * the set must still fit. */
    unsigned others = 0;
    for (unsigned i = 0; i < r->n; i++)
        others += r->v[i]->source != src &&
                  spec_find(&t, specs, r->v[i]->spec.name, r->v[i]->name_hash) < 0;
    if ((uint64_t)others + n > REG_MAX_BACKENDS) {
        pthread_mutex_unlock(&update_lock);
        snprintf(err, NET_ERR_LEN,
                 "too many backends: %u services and %u other backends, at most %d", n, others,
                 REG_MAX_BACKENDS);
        free(t.cells);
        free(addrs);
        return -ENOSPC;
    }
    /* Keep backends of other sources; for this source, update those named
     * in <specs>, retire the rest, then add the new ones. A name in <specs>
     * updates the backend of that name whatever its source, as it always
     * has; names are unique in the set, so each spec matches at most one. */
    struct change x = {.generation = generation};
    x.vcap = others + n ? others + n : 1;
    x.v = xmalloc(x.vcap * sizeof(*x.v));
    x.upd = xmalloc((n ? n : 1) * sizeof(*x.upd));
    x.gone = xmalloc((r->n ? r->n : 1) * sizeof(*x.gone));
    bool *used = xcalloc(n ? n : 1, sizeof(*used));
    for (unsigned i = 0; i < r->n; i++) {
        struct backend *b = r->v[i];
        int k = spec_find(&t, specs, b->spec.name, b->name_hash);
        if (k >= 0) {
            used[k] = true;
            x.v[x.n++] = prepare_update(r, &x, b, &specs[k], &addrs[k], src, now);
        } else if (b->source != src) {
            x.v[x.n++] = b;
        } else {
            x.gone[x.ngone++] = b;
        }
    }
    for (unsigned j = 0; j < n; j++)
        if (!used[j])
            x.v[x.n++] = backend_new(r, &specs[j], &addrs[j], src, now);
    x.names = names_build(x.v, x.n, &x.names_mask);
    change_index(r, &x);
    unsigned total = x.n;
    swap_in(r, &x, now);
    pthread_mutex_unlock(&update_lock);
    change_free(&x);
    free(used);
    free(t.cells);
    free(addrs);
    return (int)total;
invalid:
    free(t.cells);
    free(addrs);
    return -EINVAL;
}

unsigned reg_count(struct registry *r)
{
    pthread_mutex_lock(&r->lock);
    unsigned n = r->n;
    pthread_mutex_unlock(&r->lock);
    return n;
}

unsigned reg_snapshot(struct registry *r, struct backend ***out)
{
    pthread_mutex_lock(&r->lock);
    unsigned n = r->n;
    struct backend **v = xmalloc((n ? n : 1) * sizeof(*v));
    for (unsigned i = 0; i < n; i++) {
        v[i] = r->v[i];
        backend_ref(v[i]);
    }
    pthread_mutex_unlock(&r->lock);
    *out = v;
    return n;
}


/* ---------------------------------------------------------------- models */

/* The names GET /v1/models lists, copied under the lock: <count> names of
 * the healthy backends in set order, each NUL-terminated, back to back. */
struct names_snap {
    char *data;
    size_t len, cap;
    unsigned count;
};

static bool healthy(const struct backend *b, int64_t now)
{
    return b->spec.weight > 0 && b->down_until <= now;
}

/* Copies the served names of the healthy backends into <s>. The buffer is
 * grown outside the lock: when it is too small, the lock is let go, the
 * buffer grown to what was needed (and a margin), and the copy retried. */
static void names_snapshot(struct registry *r, struct names_snap *s, int64_t now)
{
    for (;;) {
        size_t need = 0;
        pthread_mutex_lock(&r->lock);
        for (unsigned i = 0; i < r->n; i++) {
            const char *list;
            unsigned nm = reg_served(r->v[i], &list);
            if (healthy(r->v[i], now))
                need += reg_models_len(list, nm);
        }
        if (need <= s->cap) {
            s->len = 0;
            s->count = 0;
            for (unsigned i = 0; i < r->n; i++) {
                const char *list;
                unsigned nm = reg_served(r->v[i], &list);
                if (!healthy(r->v[i], now) || nm == 0)
                    continue;
                size_t l = reg_models_len(list, nm);
                memcpy(s->data + s->len, list, l);
                s->len += l;
                s->count += nm;
            }
            pthread_mutex_unlock(&r->lock);
            return;
        }
        pthread_mutex_unlock(&r->lock);
        s->cap = need + need / 4 + 64;
        free(s->data);
        s->data = xmalloc(s->cap);
    }
}

void reg_models_json(struct registry *r, struct buf *out, int64_t now_ms)
{
    struct names_snap s = {0};
    names_snapshot(r, &s, now_ms);
    /* Each model once, in order of first appearance among the healthy
     * backends. A set of the ids emitted so far keeps that O(models
     * listed) rather than a comparison with every earlier backend's list. */
    const unsigned mask = reg_table_size(s.count) - 1;
    const char **seen = xcalloc(mask + 1, sizeof(*seen));
    long long created = (long long)util_wall_s();
    buf_append_str(out, "{\"object\":\"list\",\"data\":[");
    unsigned emitted = 0;
    const char *id = s.data;
    for (unsigned k = 0; k < s.count; k++, id = reg_model_next(id)) {
        unsigned c = (unsigned)reg_str_hash(id) & mask;
        while (seen[c] != NULL && strcmp(seen[c], id) != 0)
            c = (c + 1) & mask;
        if (seen[c] != NULL)
            continue;
        seen[c] = id;
        buf_append_str(out, emitted++ ? ",{\"id\":" : "{\"id\":");
        json_append_str(out, id, strlen(id));
        buf_printf(out, ",\"object\":\"model\",\"created\":%lld,\"owned_by\":\"llamalb\"}",
                   created);
    }
    buf_append_str(out, "]}");
    free(seen);
    free(s.data);
}

/* ---------------------------------------------------------------- output */

const char *reg_state_name(const struct backend *b, int64_t now)
{
    if (b->spec.weight == 0)
        return "draining";
    return b->down_until > now ? "down" : "up";
}

void reg_dump_json(struct registry *r, struct buf *out, int64_t now_ms)
{
    pthread_mutex_lock(&r->lock);
    buf_append_str(out, "[");
    for (unsigned i = 0; i < r->n; i++) {
        const struct backend *b = r->v[i];
        buf_append_str(out, i ? ",{\"name\":" : "{\"name\":");
        json_append_str(out, b->spec.name, strlen(b->spec.name));
        buf_printf(out, ",\"weight\":%u,\"ip\":", b->spec.weight);
        json_append_str(out, b->spec.host, strlen(b->spec.host));
        buf_printf(out, ",\"port\":%d,\"models\":[", b->spec.port);
        const char *id;
        unsigned nm = reg_served(b, &id);
        for (unsigned m = 0; m < nm; m++, id = reg_model_next(id)) {
            if (m)
                buf_append_str(out, ",");
            json_append_str(out, id, strlen(id));
        }
        buf_printf(out,
                   "],\"max_inflight\":%u,\"source\":\"%s\",\"state\":\"%s\",\"inflight\":%u,"
                   "\"ewma_ttft_ms\":%.1f,\"ewma_tbt_ms\":%.2f}",
                   b->cap, b->source == REG_SOURCE_STATIC ? "static" : "admin",
                   reg_state_name(b, now_ms), atomic_load(&b->inflight), b->ewma_ttft_us / 1000.0,
                   b->ewma_tbt_us / 1000.0);
    }
    buf_append_str(out, "]");
    pthread_mutex_unlock(&r->lock);
}

