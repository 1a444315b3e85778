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


void reg_configure(struct registry *r, const struct reg_settings *s)
{
    pthread_mutex_lock(&r->lock);
    r->eject_after = s->eject_after;
    r->eject_base_ms = s->eject_base_ms;
    r->eject_max_ms = s->eject_max_ms;
    r->default_cap = s->default_cap;
    r->queue_max = s->queue_max;
    r->slow_start_ms = s->slow_start_ms;
    r->reject_unknown_model = s->reject_unknown_model;
    pthread_mutex_unlock(&r->lock);
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

/* Files v index <i>, whose name is not in the table yet. */
static void names_put(struct registry *r, unsigned i)
{
    uint32_t h = r->v[i]->name_hash;
    unsigned c = h & r->names_mask;
    while (r->names[c].slot != 0)
        c = (c + 1) & r->names_mask;
    r->names[c] = (struct reg_name_cell){.hash = h, .slot = i + 1};
}

/* Makes the table anew from r->v: after a PUT, whose updates move most
 * backends to another index, or to grow it. Uses the hashes kept in the
 * backends, so no name is hashed again. Lock held. */
static void names_rebuild(struct registry *r)
{
    free(r->names);
    r->names_mask = reg_table_size(r->n) - 1;
    r->names = xcalloc(r->names_mask + 1, sizeof(*r->names));
    for (unsigned i = 0; i < r->n; i++)
        names_put(r, i);
}

/* Files the backend just pushed at index r->n - 1. Lock held. */
static void names_add(struct registry *r)
{
    if (r->names == NULL || 2 * r->n > r->names_mask + 1)
        names_rebuild(r); /* includes the new one */
    else
        names_put(r, r->n - 1);
}

/* Forgets v index <i> before the backends after it move down one place:
 * the cell is emptied by shifting back the entries probed past it (no
 * tombstones to grow the probes), then every later index is renumbered,
 * an O(table) pass over integers like the memmove of r->v it goes with.
 * Lock held. */
static void names_del(struct registry *r, unsigned i)
{
    const unsigned mask = r->names_mask;
    unsigned hole = names_cell(r, r->v[i]->spec.name, r->v[i]->name_hash);
    for (unsigned c = (hole + 1) & mask; r->names[c].slot != 0; c = (c + 1) & mask) {
        /* An entry may fill the hole only if the hole lies between its
         * home cell and where it sits: else a probe would miss it. */
        unsigned home = r->names[c].hash & mask;
        if (((c - home) & mask) >= ((c - hole) & mask)) {
            r->names[hole] = r->names[c];
            hole = c;
        }
    }
    r->names[hole] = (struct reg_name_cell){0};
    for (unsigned c = 0; c <= mask; c++)
        if (r->names[c].slot > i + 1)
            r->names[c].slot--;
}

/* ---------------------------------------------------------------- updates */

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

/* Updates slot <i> from <s>: in place if the address is the same. The
 * name is the same (that is how the slot was found) and is left alone:
 * workers read it without the lock. The old model list goes at once: only
 * holders of the lock read it, and the pick index that points into it is
 * rebuilt before its next use (the caller moves <version>). */
static void update_slot(struct registry *r, unsigned i, const struct backend_spec *s,
                        const struct net_addr *addr, enum reg_source src, int64_t now)
{
    struct backend *old = r->v[i];
    if (net_addr_equal(&old->addr, addr)) {
        struct backend_spec *o = &old->spec;
        if (o->weight == 0 && s->weight > 0)
            old->ramp_start = now; /* back from draining: ramp up again */
        memcpy(o->host, s->host, sizeof(o->host));
        o->port = s->port;
        o->weight = s->weight;
        o->max_inflight = s->max_inflight;
        o->max_inflight_set = s->max_inflight_set;
        free((void *)o->models);
        o->models = reg_models_dup(s->models, s->nmodels);
        o->nmodels = s->nmodels;
        old->source = src;
        old->cap = s->max_inflight_set ? s->max_inflight : r->default_cap;
        return;
    }
    r->v[i] = backend_new(r, s, addr, src, now);
    retire(old);
}

static void push(struct registry *r, struct backend *b)
{
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 16;
        r->v = xrealloc(r->v, r->cap * sizeof(*r->v));
    }
    r->v[r->n++] = b;
}

int reg_upsert(struct registry *r, const struct backend_spec *s, enum reg_source src, char *err)
{
    struct net_addr addr;
    struct wakes wk = {0};
    if (reg_spec_check(s, &addr, err) != 0)
        return -EINVAL;
    int64_t now = util_now_ms();
    pthread_mutex_lock(&r->lock);
    int i = reg_names_find(r, s->name), ret;
    if (i >= 0) {
        update_slot(r, (unsigned)i, s, &addr, src, now); /* same name: the table holds */
        ret = 1;
    } else if (r->n >= REG_MAX_BACKENDS) {
        snprintf(err, NET_ERR_LEN, "too many backends: at most %d", REG_MAX_BACKENDS);
        pthread_mutex_unlock(&r->lock);
        return -ENOSPC; /* nothing changed */
    } else {
        push(r, backend_new(r, s, &addr, src, now));
        names_add(r);
        ret = 0;
    }
    atomic_fetch_add(&r->version, 1);
    if (r->nwaiting > 0)
        reg_kick_locked(r, now, &wk);
    pthread_mutex_unlock(&r->lock);
    reg_wakes_run(&wk);
    return ret;
}

int reg_remove(struct registry *r, const char *name)
{
    pthread_mutex_lock(&r->lock);
    int i = reg_names_find(r, name);
    if (i < 0) {
        pthread_mutex_unlock(&r->lock);
        return -ENOENT;
    }
    struct backend *b = r->v[i];
    names_del(r, (unsigned)i);
    memmove(&r->v[i], &r->v[i + 1], (r->n - (unsigned)i - 1) * sizeof(*r->v));
    r->n--;
    atomic_fetch_add(&r->version, 1);
    pthread_mutex_unlock(&r->lock);
    retire(b);
    return 0;
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
    /* Everything that needs no lock is done first: validation, and the
     * table of service names that the set is matched against. Errors come
     * in service order, as a pairwise check would find them. Too many
     * services are refused before anything is allocated for them. */
    if (n > REG_MAX_BACKENDS) {
        snprintf(err, NET_ERR_LEN, "too many backends: %u services, at most %d", n,
                 REG_MAX_BACKENDS);
        return -ENOSPC;
    }
    struct wakes wk = {0};
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
    pthread_mutex_lock(&r->lock);
    if (generation != 0 && generation < r->generation) {
        snprintf(err, NET_ERR_LEN, "stale generation %llu: already at %llu",
                 (unsigned long long)generation, (unsigned long long)r->generation);
        pthread_mutex_unlock(&r->lock);
        free(t.cells);
        free(addrs);
        return -ESTALE;
    }
    /* The backends of other sources that no spec names stay: with them
     * the set must still fit. Counted only when it might not (a scan with
     * a lookup per backend, under the lock). */
    unsigned others = 0;
    for (unsigned i = 0; i < r->n; i++)
        others += r->v[i]->source != src;
    if ((uint64_t)others + n > REG_MAX_BACKENDS) {
        others = 0;
        for (unsigned i = 0; i < r->n; i++)
            others += r->v[i]->source != src &&
                      spec_find(&t, specs, r->v[i]->spec.name, r->v[i]->name_hash) < 0;
        if ((uint64_t)others + n > REG_MAX_BACKENDS) {
            pthread_mutex_unlock(&r->lock);
            snprintf(err, NET_ERR_LEN,
                     "too many backends: %u services and %u other backends, at most %d", n,
                     others, REG_MAX_BACKENDS);
            free(t.cells);
            free(addrs);
            return -ENOSPC;
        }
    }
    if (generation != 0)
        r->generation = generation;
    /* Keep backends of other sources; for this source, update those named
     * in <specs>, retire the rest, then add the new ones. A name in <specs>
     * updates the backend of that name whatever its source, as it always
     * has; names are unique in the set, so each spec matches at most one. */
    unsigned w = 0;
    bool *used = xcalloc(n ? n : 1, sizeof(*used));
    for (unsigned i = 0; i < r->n; i++) {
        struct backend *b = r->v[i];
        int k = spec_find(&t, specs, b->spec.name, b->name_hash);
        if (k >= 0) {
            used[k] = true;
            r->v[w] = b;
            update_slot(r, w, &specs[k], &addrs[k], src, now);
            w++;
        } else if (b->source != src) {
            r->v[w++] = b;
        } else {
            retire(b);
        }
    }
    r->n = w;
    for (unsigned j = 0; j < n; j++)
        if (!used[j])
            push(r, backend_new(r, &specs[j], &addrs[j], src, now));
    names_rebuild(r);
    atomic_fetch_add(&r->version, 1);
    /* The watcher sends a PUT for every cluster change: build the pick
     * index now, in the admin request, rather than in the next worker's
     * pick. Single updates leave it to the next pick instead, so that a
     * burst of them pays for one rebuild. */
    reg_ix_get(r);
    if (r->nwaiting > 0)
        reg_kick_locked(r, now, &wk);
    unsigned total = r->n;
    pthread_mutex_unlock(&r->lock);
    reg_wakes_run(&wk);
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

