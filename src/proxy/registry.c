/* SPDX-License-Identifier: MIT
 * The shared backend set: specs, validation, updates, picks, health.
 * Picks go through a pick index derived from the set (see "pick index"
 * below and registry.h) so that their cost does not grow with the set. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "json.h"
#include "lb.h"
#include "log.h"
#include "registry.h"
#include "util.h"

const double reg_lat_bounds[REG_LAT_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                0.5,   1,    2.5,   5,    10,  30};

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

static void ix_free(struct reg_index *ix);

void reg_deinit(struct registry *r)
{
    for (unsigned i = 0; i < r->n; i++) {
        atomic_store(&r->v[i]->removed, true);
        backend_unref(r->v[i]);
    }
    free(r->v);
    free(r->files); /* struct reg_files: no pointers inside */
    ix_free(r->ix);
    free(r->names);
    r->v = NULL;
    r->files = NULL;
    r->ix = NULL;
    r->names = NULL;
    r->n = r->cap = 0;
    pthread_mutex_destroy(&r->lock);
    pthread_mutex_destroy(&r->files_lock);
}

/* Workers to wake once the registry lock is released: a wake is a write(2)
 * to the worker's pipe, and every worker waits on that lock. kick_locked
 * collects them (each distinct one once), wakes_run calls them after the
 * unlock. The waiters themselves are not touched after the unlock: their
 * worker may take and finish them at once; the wake targets (event loops)
 * live as long as the workers. */
#define KICK_SCAN_MAX 256 /* waiters one kick looks at */
struct wakes {
    unsigned n;
    struct {
        void (*fn)(void *);
        void *arg;
    } v[KICK_SCAN_MAX];
};

static void wakes_run(const struct wakes *wk)
{
    for (unsigned i = 0; i < wk->n; i++)
        wk->v[i].fn(wk->v[i].arg);
}

static void kick_locked(struct registry *r, int64_t now, struct wakes *wk);
static const struct reg_index *ix_get(struct registry *r);
static struct model_stats *model_slot(struct registry *r, const char *model);

/* ---------------------------------------------------------------- specs */

static bool name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > REG_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.' || c == '/' || c == ':'))
            return false;
    }
    return true;
}

int reg_spec_check(const struct backend_spec *s, struct net_addr *addr, char *err)
{
    char a[NET_ADDRSTR_LEN + 8];
    if (!name_ok(s->name)) {
        snprintf(err, NET_ERR_LEN,
                 "invalid backend name: 1-253 characters of A-Z a-z 0-9 - _ . / :");
        return -EINVAL;
    }
    if (s->port < 1 || s->port > 65535) {
        snprintf(err, NET_ERR_LEN, "invalid port %d: must be 1-65535", s->port);
        return -EINVAL;
    }
    if (s->weight > REG_MAX_WEIGHT) {
        snprintf(err, NET_ERR_LEN, "invalid weight %u: must be 0-%d", s->weight, REG_MAX_WEIGHT);
        return -EINVAL;
    }
    if (strchr(s->host, ':') != NULL)
        snprintf(a, sizeof(a), "[%s]:%d", s->host, s->port);
    else
        snprintf(a, sizeof(a), "%s:%d", s->host, s->port);
    if (net_parse_addr(a, false, false, addr, err) != 0) {
        snprintf(err, NET_ERR_LEN, "invalid ip '%s': must be a numeric IPv4 or IPv6 address",
                 s->host);
        return -EINVAL;
    }
    if (s->nmodels > REG_MAX_MODELS || (s->nmodels > 0 && s->models == NULL)) {
        snprintf(err, NET_ERR_LEN, "at most %d models", REG_MAX_MODELS);
        return -EINVAL;
    }
    const char *m = s->models;
    for (unsigned i = 0; i < s->nmodels; i++, m = reg_model_next(m)) {
        if (m[0] == '\0' || strlen(m) > REG_MODEL_MAX) {
            snprintf(err, NET_ERR_LEN, "model names must be 1-%d bytes", REG_MODEL_MAX);
            return -EINVAL;
        }
    }
    return 0;
}

/* Bytes of the packed list <m> of <n> names, NULs included. */
static size_t models_len(const char *m, unsigned n)
{
    const char *p = m;
    for (unsigned i = 0; i < n; i++)
        p = reg_model_next(p);
    return (size_t)(p - m);
}

/* A copy of the packed list <m> of <n> names, or NULL when n == 0. */
static char *models_dup(const char *m, unsigned n)
{
    if (n == 0)
        return NULL;
    size_t len = models_len(m, n);
    char *d = xmalloc(len);
    memcpy(d, m, len);
    return d;
}

/* Packs <names>[0..n) into one block; NULL when n == 0. */
static char *models_pack(const char *const *names, unsigned n)
{
    if (n == 0)
        return NULL;
    size_t len = 0;
    for (unsigned i = 0; i < n; i++)
        len += strlen(names[i]) + 1;
    char *d = xmalloc(len), *p = d;
    for (unsigned i = 0; i < n; i++) {
        size_t l = strlen(names[i]) + 1;
        memcpy(p, names[i], l);
        p += l;
    }
    return d;
}

int reg_spec_set_models(struct backend_spec *s, const char *const *names, unsigned n, char *err)
{
    if (n > REG_MAX_MODELS) {
        snprintf(err, NET_ERR_LEN, "at most %d models", REG_MAX_MODELS);
        return -EINVAL;
    }
    for (unsigned i = 0; i < n; i++) {
        if (names[i][0] == '\0' || strlen(names[i]) > REG_MODEL_MAX) {
            snprintf(err, NET_ERR_LEN, "model names must be 1-%d bytes", REG_MODEL_MAX);
            return -EINVAL;
        }
    }
    reg_spec_free(s);
    s->models = models_pack(names, n);
    s->nmodels = n;
    return 0;
}

void reg_spec_free(struct backend_spec *s)
{
    free((void *)s->models);
    s->models = NULL;
    s->nmodels = 0;
}

void reg_specs_free(struct backend_spec *v, unsigned n)
{
    for (unsigned i = 0; v != NULL && i < n; i++)
        reg_spec_free(&v[i]);
    free(v);
}

int reg_spec_parse(const char *arg, struct backend_spec *s, char *err)
{
    memset(s, 0, sizeof(*s));
    s->weight = 1;
    const char *eq = strchr(arg, '=');
    if (eq == NULL || eq == arg || (size_t)(eq - arg) > REG_NAME_MAX) {
        snprintf(err, NET_ERR_LEN, "bad backend '%.64s': expected NAME=HOST:PORT[,weight=N]...", arg);
        return -EINVAL;
    }
    memcpy(s->name, arg, (size_t)(eq - arg));
    char tmp[1024];
    if (strlen(eq + 1) >= sizeof(tmp)) {
        snprintf(err, NET_ERR_LEN, "bad backend '%.64s': too long", s->name);
        return -EINVAL;
    }
    strcpy(tmp, eq + 1);
    char *save = NULL, *part = strtok_r(tmp, ",", &save);
    if (part == NULL) {
        snprintf(err, NET_ERR_LEN, "bad backend '%.64s': missing HOST:PORT", s->name);
        return -EINVAL;
    }
    struct net_addr a;
    const char *names[REG_MAX_MODELS];
    unsigned nnames = 0;
    if (net_parse_addr(part, false, false, &a, err) != 0)
        return -EINVAL;
    net_addr_host(&a, s->host, sizeof(s->host));
    s->port = net_addr_port(&a);
    while ((part = strtok_r(NULL, ",", &save)) != NULL) {
        char *v = strchr(part, '=');
        uint64_t n;
        if (v == NULL)
            goto bad;
        *v++ = '\0';
        if (strcmp(part, "weight") == 0) {
            if (util_parse_u64(v, strlen(v), 0, REG_MAX_WEIGHT, &n) != 0)
                goto bad;
            s->weight = (unsigned)n;
        } else if (strcmp(part, "max-inflight") == 0 || strcmp(part, "max_inflight") == 0) {
            if (util_parse_u64(v, strlen(v), 0, 1000000, &n) != 0)
                goto bad;
            s->max_inflight = (unsigned)n;
            s->max_inflight_set = true;
        } else if (strcmp(part, "models") == 0) {
            char *msave = NULL;
            for (char *m = strtok_r(v, "|", &msave); m != NULL; m = strtok_r(NULL, "|", &msave)) {
                if (nnames == REG_MAX_MODELS || strlen(m) > REG_MODEL_MAX)
                    goto bad;
                names[nnames++] = m;
            }
        } else {
            goto bad;
        }
    }
    if (reg_spec_set_models(s, names, nnames, err) != 0)
        return -EINVAL;
    if (reg_spec_check(s, &a, err) != 0) {
        reg_spec_free(s);
        return -EINVAL;
    }
    return 0;
bad:
    snprintf(err, NET_ERR_LEN,
             "bad backend '%.64s': options are weight=N, models=A|B, max-inflight=N", s->name);
    return -EINVAL;
}

/* ---------------------------------------------------------------- names */

/* Backends by name. Registering, updating and unregistering one backend
 * looks its name up, and so does a pinned pick; a PUT matches every name
 * of the set against its services. A scan or a pairwise match would make
 * those O(n) and O(n * m) string compares under the lock every worker
 * takes to pick, so the set keeps an open-addressed table of its names,
 * changed along with r->v by every update. Cells keep the name's hash so
 * that probes and deletions rarely touch a backend. */
struct reg_name_cell {
    uint32_t hash; /* low 32 bits of str_hash(name) */
    unsigned slot; /* v index + 1; 0 = empty */
};

static uint64_t str_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    return h;
}

/* A power of two at least twice <n>: open-addressed tables stay at most
 * half full, so probes stay short. */
static unsigned table_size(unsigned n)
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

/* The v index of the backend named <name>, or -1. Lock held. */
static int names_find(const struct registry *r, const char *name)
{
    if (r->names == NULL)
        return -1;
    unsigned slot = r->names[names_cell(r, name, (uint32_t)str_hash(name))].slot;
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
    r->names_mask = table_size(r->n) - 1;
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
    b->spec.models = models_dup(s->models, s->nmodels); /* its own copy */
    b->name_hash = (uint32_t)str_hash(s->name);
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
        o->models = models_dup(s->models, s->nmodels);
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
    int i = names_find(r, s->name), ret;
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
        kick_locked(r, now, &wk);
    pthread_mutex_unlock(&r->lock);
    wakes_run(&wk);
    return ret;
}

int reg_remove(struct registry *r, const char *name)
{
    pthread_mutex_lock(&r->lock);
    int i = names_find(r, name);
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
    struct spec_names t = {.mask = table_size(n) - 1};
    t.cells = xcalloc(t.mask + 1, sizeof(*t.cells));
    for (unsigned i = 0; i < n; i++) {
        if (reg_spec_check(&specs[i], &addrs[i], err) != 0)
            goto invalid;
        uint32_t h = (uint32_t)str_hash(specs[i].name);
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
    ix_get(r);
    if (r->nwaiting > 0)
        kick_locked(r, now, &wk);
    unsigned total = r->n;
    pthread_mutex_unlock(&r->lock);
    wakes_run(&wk);
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

unsigned reg_queue_length(struct registry *r)
{
    pthread_mutex_lock(&r->lock);
    unsigned n = r->nwaiting;
    pthread_mutex_unlock(&r->lock);
    return n;
}

/* ---------------------------------------------------------------- pick index */

/* What a pick needs so as not to scan the whole set: running weight totals
 * (a draw in proportion to weight is a binary search) and backends by
 * model (a routed request); a pinned request uses the name table, which
 * every change keeps current (see "names" above). Every list is in set
 * order, so a scan of a model's list meets its backends in the order a
 * scan of the whole set would, and small-set picks stay exactly what they
 * were. The index depends only on weights and model lists; it is rebuilt
 * on the first pick after <version> moves (a PUT rebuilds it at once),
 * and what changes between two versions (health, caps, load, slow start)
 * is read live at every pick. Guarded by the registry lock. */
struct ix_model {
    const char *name;      /* into a backend's spec or probed list (valid for this version) */
    unsigned first, n;     /* its slice of members[] and member_cum[] */
    unsigned last;         /* while building: v index + 1 of the last backend counted */
};

struct reg_index {
    uint64_t built;        /* r->version + 1 it was built for; 0 = never */
    uint64_t *cum;         /* cum[i] = weight of v[0] + ... + v[i] */
    struct ix_model *models; /* every distinct served model, by first appearance */
    unsigned nmodels;
    unsigned *by_model;    /* open addressing on the model name: models index + 1 */
    unsigned model_mask;
    unsigned *members;     /* each model's backends (v indices), in set order */
    uint64_t *member_cum;  /* running weight totals within each model's slice */
};

static void ix_free(struct reg_index *ix)
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

/* The models <b> serves as reg_serves() sees them: its own list, or the
 * probed one when it has none. Returns the count, the packed list in
 * <*list>. Lock held. */
static unsigned served(const struct backend *b, const char **list)
{
    *list = b->spec.nmodels ? b->spec.models : b->probed;
    return b->spec.nmodels ? b->spec.nmodels : b->nprobed;
}

/* The model table's cell for <name>: holding its models index + 1, or the
 * empty cell (0) where it would go. */
static unsigned *model_cell(const struct reg_index *ix, const char *name)
{
    for (unsigned h = (unsigned)str_hash(name) & ix->model_mask;; h = (h + 1) & ix->model_mask)
        if (ix->by_model[h] == 0 || strcmp(ix->models[ix->by_model[h] - 1].name, name) == 0)
            return &ix->by_model[h];
}

static struct reg_index *ix_build(const struct registry *r)
{
    struct reg_index *ix = xcalloc(1, sizeof(*ix));
    ix->cum = xmalloc((r->n ? r->n : 1) * sizeof(*ix->cum));
    uint64_t total = 0;
    unsigned entries = 0;
    for (unsigned i = 0; i < r->n; i++) {
        const struct backend *b = r->v[i];
        const char *list;
        total += b->spec.weight;
        ix->cum[i] = total;
        entries += served(b, &list);
    }

    /* Models: count each model's backends (a backend listing a model twice
     * counts once), lay the slices out, then fill them in set order. */
    ix->model_mask = table_size(entries) - 1;
    ix->by_model = xcalloc(ix->model_mask + 1, sizeof(*ix->by_model));
    ix->models = xmalloc((entries ? entries : 1) * sizeof(*ix->models));
    for (unsigned i = 0; i < r->n; i++) {
        const char *list;
        unsigned nm = served(r->v[i], &list);
        for (unsigned k = 0; k < nm; k++, list = reg_model_next(list)) {
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
    for (unsigned i = 0; i < r->n; i++) {
        const char *list;
        unsigned nm = served(r->v[i], &list);
        for (unsigned k = 0; k < nm; k++, list = reg_model_next(list)) {
            struct ix_model *m = &ix->models[*model_cell(ix, list) - 1];
            if (m->last == i + 1)
                continue;
            m->last = i + 1;
            unsigned j = m->first + m->n++;
            ix->members[j] = i;
            ix->member_cum[j] = (m->n > 1 ? ix->member_cum[j - 1] : 0) + r->v[i]->spec.weight;
        }
    }
    ix->built = atomic_load(&r->version) + 1;
    return ix;
}

/* The index for the set as it is now. Lock held. */
static const struct reg_index *ix_get(struct registry *r)
{
    if (r->ix == NULL || r->ix->built != atomic_load(&r->version) + 1) {
        ix_free(r->ix);
        r->ix = ix_build(r);
    }
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

void reg_thread_exit(void)
{
    free(cand);
    cand = NULL;
    cand_cap = 0;
}

bool reg_serves(const struct backend *b, const char *model)
{
    const char *m;
    unsigned n = served(b, &m);
    for (unsigned i = 0; i < n; i++, m = reg_model_next(m))
        if (strcmp(m, model) == 0)
            return true;
    return false;
}

/* Slow start: a backend that just joined or came back from ejection gets
 * a share of its weight growing linearly from 10 % to 100 %. */
static uint64_t effective_weight(const struct registry *r, const struct backend *b, int64_t now)
{
    uint64_t w = (uint64_t)b->spec.weight * 1000;
    if (r->slow_start_ms > 0 && now < b->ramp_start + r->slow_start_ms) {
        int64_t t = now > b->ramp_start ? now - b->ramp_start : 0;
        uint64_t permille = 100 + (uint64_t)(900 * t / r->slow_start_ms);
        w = w * permille / 1000;
    }
    return w ? w : 1;
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
    const struct reg_index *ix = ix_get(r);
    if (q->pin != NULL) {
        int i = names_find(r, q->pin);
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
    if (cand_cap < s->n) {
        cand_cap = s->n < 64 ? 64 : s->n;
        cand = xrealloc(cand, cand_cap * sizeof(*cand));
    }
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
            b->eff_weight = effective_weight(r, b, now);
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
        uint64_t ew = effective_weight(r, b, now), w = (uint64_t)b->spec.weight * 1000;
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
static enum reg_pick_rc pick_locked(struct registry *r, const struct reg_req *q, uint64_t *rng,
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

/* Hands freed capacity to the oldest waiters that can use it. Lock held;
 * the workers to wake are added to <wk>, for the caller to wake after the
 * unlock (wakes_run). */
static void kick_locked(struct registry *r, int64_t now, struct wakes *wk)
{
    struct list *e = r->waiters.next;
    for (unsigned scanned = 0; e != &r->waiters && scanned < KICK_SCAN_MAX; scanned++) {
        struct reg_waiter *w = list_entry(e, struct reg_waiter, link);
        e = e->next;
        struct backend *b = NULL;
        if (pick_locked(r, &w->req, &r->rng, now, &b, NULL) != REG_PICKED)
            continue;
        list_del(&w->link);
        r->nwaiting--;
        w->assigned = b;
        w->state = REG_W_READY;
        atomic_fetch_add(&r->queue_wait_us, (uint64_t)(now - w->since_ms) * 1000);
        struct model_stats *ms = model_slot(r, w->req.model);
        ms->queued++;
        ms->queue_wait_us += (uint64_t)(now - w->since_ms) * 1000;
        list_add_tail(w->ready_list, &w->link);
        wakes_add(wk, w);
    }
}

enum reg_pick_rc reg_pick(struct registry *r, const struct reg_req *q, uint64_t *rng,
                          int64_t now_ms, struct reg_waiter *w, struct backend **out,
                          const char **why)
{
    pthread_mutex_lock(&r->lock);
    enum reg_pick_rc rc = pick_locked(r, q, rng, now_ms, out, why);
    if (rc == REG_QUEUED) {
        if (w == NULL || r->nwaiting >= r->queue_max) {
            rc = REG_QUEUE_FULL;
            atomic_fetch_add(&r->queue_rejects, 1);
        } else {
            w->req = *q;
            w->state = REG_W_QUEUED;
            w->assigned = NULL;
            w->since_ms = now_ms;
            list_add_tail(&r->waiters, &w->link);
            r->nwaiting++;
            atomic_fetch_add(&r->queued_total, 1);
        }
    }
    pthread_mutex_unlock(&r->lock);
    return rc;
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
        kick_locked(r, now_ms, &wk);
    pthread_mutex_unlock(&r->lock);
    wakes_run(&wk);
}

bool reg_has_alternative(struct registry *r, const struct reg_req *q, int64_t now_ms)
{
    struct scope s;
    struct backend *one;
    unsigned full = 0;
    bool any = false;
    pthread_mutex_lock(&r->lock);
    if (scope_of(r, q, &s) == 0)
        any = (s.n > LB_SCAN_MAX && draw(r, q, &s, now_ms, 1, &r->rng, &one) > 0) ||
              candidates(r, q, &s, now_ms, &full) > 0;
    pthread_mutex_unlock(&r->lock);
    return any;
}

#define MODEL_KEY_LEN sizeof(((struct model_stats *)0)->name)

/* The name <model>'s stats are kept under, in <out> (MODEL_KEY_LEN bytes)
 * or a constant: "(none)" for no model. Control characters other than the
 * line feed (which the metrics escape) become '?', as they would in the
 * metrics' labels anyway (see label()), so that names that would print
 * alike share one slot instead of making two samples of one series; a
 * longer name is cut to fit a slot, at a character boundary, so that it
 * finds the slot it made. */
static const char *model_key(const char *model, char *out)
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

/* The stats slot of <model>, appended if new; caller holds the lock (the
 * only writer). The last slot is kept for "(other)", so the table never
 * overflows however many names clients send. */
static struct model_stats *model_slot(struct registry *r, const char *model)
{
    char kbuf[MODEL_KEY_LEN];
    const char *key = model_key(model, kbuf);
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
    struct model_stats *m = model_find(r, model_key(model, kbuf));
    if (m == NULL) {
        pthread_mutex_lock(&r->lock);
        m = model_slot(r, model);
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

static void ewma(double *v, double sample, unsigned samples)
{
    *v = samples == 0 ? sample : *v * 0.8 + sample * 0.2;
}

void reg_release(struct registry *r, struct backend *b, const struct reg_outcome *o,
                 int64_t now_ms)
{
    /* The slot is given back under the lock, right before the queue is
     * kicked: a newcomer on another thread cannot take it in between and
     * jump ahead of the waiters. */
    struct wakes wk = {0};
    bool ejected = false; /* logged after the unlock */
    int64_t ejected_for = 0;
    pthread_mutex_lock(&r->lock);
    atomic_fetch_sub(&b->inflight, 1);
    if (o->counted) {
        struct model_stats *m = model_slot(r, o->model);
        m->errors += o->failed;
        m->events += o->sse_events;
        if (o->ttft_us > 0) {
            m->ttft_us_sum += (uint64_t)o->ttft_us;
            m->ttft_count++;
        }
    }
    if (o->ttft_us > 0 && !o->failed) {
        ewma(&b->ewma_ttft_us, (double)o->ttft_us, b->samples);
        ewma(&b->ewma_tbt_us, (double)o->tbt_us, b->samples);
        ewma(&b->ewma_events, o->events ? (double)o->events : 1.0, b->samples);
        b->samples++;
    }
    if (!o->failed) {
        /* Only a real answer proves health: a client that left, a slot
         * given back unused or a stale-connection retry says nothing. */
        if (o->counted) {
            b->consecutive_failures = 0;
            if (b->down_until <= now_ms)
                b->down_for = 0;
        }
    } else if (r->eject_after != 0 && ++b->consecutive_failures >= r->eject_after &&
               b->down_until <= now_ms) {
        b->down_for = b->down_for ? MIN(b->down_for * 2, r->eject_max_ms) : r->eject_base_ms;
        b->down_until = now_ms + b->down_for;
        b->ramp_start = b->down_until;
        b->consecutive_failures = 0;
        atomic_fetch_add(&b->stats.ejections, 1);
        ejected = true;
        ejected_for = b->down_for;
    }
    if (r->nwaiting > 0)
        kick_locked(r, now_ms, &wk);
    pthread_mutex_unlock(&r->lock);
    wakes_run(&wk);
    /* The caller's reference keeps b (and its name, which never changes). */
    if (ejected)
        log_warn("backend %s ejected for %lld ms after repeated failures", b->spec.name,
                 (long long)ejected_for);
}

void reg_set_probed_models(struct registry *r, struct backend *b, const char *const *names,
                           unsigned n)
{
    /* The new list is packed before the lock and the old one freed after. */
    const char *keep[REG_MAX_MODELS];
    unsigned nkeep = 0;
    for (unsigned i = 0; i < n && nkeep < REG_MAX_MODELS; i++)
        if (names[i][0] != '\0' && strlen(names[i]) <= REG_MODEL_MAX)
            keep[nkeep++] = names[i];
    char *list = models_pack(keep, nkeep), *old;
    struct wakes wk = {0};
    int64_t now = util_now_ms();
    pthread_mutex_lock(&r->lock);
    old = b->probed;
    b->probed = list;
    b->nprobed = nkeep;
    atomic_fetch_add(&r->version, 1); /* the pick index points into the old list */
    if (r->nwaiting > 0)
        kick_locked(r, now, &wk);
    pthread_mutex_unlock(&r->lock);
    wakes_run(&wk);
    free(old);
}

void reg_probe_result(struct registry *r, struct backend *b, bool alive, int64_t now_ms)
{
    struct wakes wk = {0};
    bool back = false, ejected = false; /* what to log, after the unlock */
    int64_t ejected_for = 0;
    pthread_mutex_lock(&r->lock);
    if (alive) {
        b->consecutive_failures = 0;
        if (b->down_until > now_ms) {
            back = true;
            b->down_until = 0;
            b->ramp_start = now_ms;
        }
        if (r->nwaiting > 0)
            kick_locked(r, now_ms, &wk);
    } else if (b->down_until <= now_ms && r->eject_after != 0) {
        b->down_for = b->down_for ? MIN(b->down_for * 2, r->eject_max_ms) : r->eject_base_ms;
        b->down_until = now_ms + b->down_for;
        b->ramp_start = b->down_until;
        b->consecutive_failures = 0;
        atomic_fetch_add(&b->stats.ejections, 1);
        ejected = true;
        ejected_for = b->down_for;
    }
    pthread_mutex_unlock(&r->lock);
    wakes_run(&wk);
    /* The prober's reference keeps b (and its name, which never changes). */
    if (back)
        log_info("backend %s answers probes again: back in rotation", b->spec.name);
    if (ejected)
        log_warn("backend %s failed its health probe: ejected for %lld ms", b->spec.name,
                 (long long)ejected_for);
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

/* ---------------------------------------------------------------- files */

/* Uploaded files: which backend holds each id, so that later requests for
 * it go there. Every /v1/files/{id} request looks an id up, so this is a
 * ring of the REG_MAX_FILES latest uploads (the oldest overwritten first)
 * with an open-addressed index on the id, twice the ring's size so probes
 * stay short: put and get are O(1), where a scan of the ring was up to
 * 65,536 string compares. An id uploaded again moves to the newest entry
 * (its older one is emptied), so a lookup finds the latest copy and an
 * entry is forgotten REG_MAX_FILES uploads after it was made, as before. */
#define FILES_INDEX (2 * REG_MAX_FILES)

struct reg_file {
    uint32_t hash;                  /* low 32 bits of str_hash(id) */
    char id[REG_FILE_ID_MAX + 1];   /* "" = empty */
    char backend[REG_NAME_MAX + 1];
};

struct reg_files {
    struct reg_file ring[REG_MAX_FILES];
    unsigned head;                  /* the next entry to (over)write */
    uint32_t index[FILES_INDEX];    /* ring index + 1; 0 = empty cell */
};

/* The index cell holding <id> (hash <h>), or the empty one where it would
 * go. files_lock held. */
static unsigned files_cell(const struct reg_files *f, const char *id, uint32_t h)
{
    unsigned c = h & (FILES_INDEX - 1);
    for (; f->index[c] != 0; c = (c + 1) & (FILES_INDEX - 1)) {
        const struct reg_file *e = &f->ring[f->index[c] - 1];
        if (e->hash == h && strcmp(e->id, id) == 0)
            break;
    }
    return c;
}

/* Empties index cell <hole>, shifting back the entries probed past it (as
 * names_del does: no tombstones). files_lock held. */
static void files_unindex(struct reg_files *f, unsigned hole)
{
    const unsigned mask = FILES_INDEX - 1;
    for (unsigned c = (hole + 1) & mask; f->index[c] != 0; c = (c + 1) & mask) {
        unsigned home = f->ring[f->index[c] - 1].hash & mask;
        if (((c - home) & mask) >= ((c - hole) & mask)) {
            f->index[hole] = f->index[c];
            hole = c;
        }
    }
    f->index[hole] = 0;
}

void reg_file_put(struct registry *r, const char *id, const char *name)
{
    size_t len = strlen(id);
    if (len == 0 || len > REG_FILE_ID_MAX)
        return; /* could never be looked up */
    uint32_t h = (uint32_t)str_hash(id);
    /* The table (21 MB, untouched pages cost nothing) is made on the first
     * upload, outside the lock. */
    pthread_mutex_lock(&r->files_lock);
    struct reg_files *f = r->files, *made = NULL;
    pthread_mutex_unlock(&r->files_lock);
    if (f == NULL)
        made = xcalloc(1, sizeof(*made));
    pthread_mutex_lock(&r->files_lock);
    if (r->files == NULL) {
        r->files = made;
        made = NULL;
    }
    f = r->files;
    unsigned c = files_cell(f, id, h);
    if (f->index[c] != 0) { /* uploaded again: forget the older entry */
        f->ring[f->index[c] - 1].id[0] = '\0';
        files_unindex(f, c);
    }
    struct reg_file *e = &f->ring[f->head];
    if (e->id[0] != '\0') /* the oldest entry goes */
        files_unindex(f, files_cell(f, e->id, e->hash));
    e->hash = h;
    memcpy(e->id, id, len + 1);
    snprintf(e->backend, sizeof(e->backend), "%s", name);
    f->index[files_cell(f, id, h)] = f->head + 1;
    f->head = (f->head + 1) % REG_MAX_FILES;
    pthread_mutex_unlock(&r->files_lock);
    free(made);
}

bool reg_file_get(struct registry *r, const char *id, char *name, size_t len)
{
    bool found = false;
    if (strlen(id) > REG_FILE_ID_MAX)
        return false;
    uint32_t h = (uint32_t)str_hash(id);
    pthread_mutex_lock(&r->files_lock);
    if (r->files != NULL) {
        unsigned slot = r->files->index[files_cell(r->files, id, h)];
        if (slot != 0) {
            snprintf(name, len, "%s", r->files->ring[slot - 1].backend);
            found = true;
        }
    }
    pthread_mutex_unlock(&r->files_lock);
    return found;
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
            unsigned nm = served(r->v[i], &list);
            if (healthy(r->v[i], now))
                need += models_len(list, nm);
        }
        if (need <= s->cap) {
            s->len = 0;
            s->count = 0;
            for (unsigned i = 0; i < r->n; i++) {
                const char *list;
                unsigned nm = served(r->v[i], &list);
                if (!healthy(r->v[i], now) || nm == 0)
                    continue;
                size_t l = models_len(list, nm);
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
    const unsigned mask = table_size(s.count) - 1;
    const char **seen = xcalloc(mask + 1, sizeof(*seen));
    long long created = (long long)util_wall_s();
    buf_append_str(out, "{\"object\":\"list\",\"data\":[");
    unsigned emitted = 0;
    const char *id = s.data;
    for (unsigned k = 0; k < s.count; k++, id = reg_model_next(id)) {
        unsigned c = (unsigned)str_hash(id) & mask;
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

static const char *state_name(const struct backend *b, int64_t now)
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
        unsigned nm = served(b, &id);
        for (unsigned m = 0; m < nm; m++, id = reg_model_next(id)) {
            if (m)
                buf_append_str(out, ",");
            json_append_str(out, id, strlen(id));
        }
        buf_printf(out,
                   "],\"max_inflight\":%u,\"source\":\"%s\",\"state\":\"%s\",\"inflight\":%u,"
                   "\"ewma_ttft_ms\":%.1f,\"ewma_tbt_ms\":%.2f}",
                   b->cap, b->source == REG_SOURCE_STATIC ? "static" : "admin",
                   state_name(b, now_ms), atomic_load(&b->inflight), b->ewma_ttft_us / 1000.0,
                   b->ewma_tbt_us / 1000.0);
    }
    buf_append_str(out, "]");
    pthread_mutex_unlock(&r->lock);
}

/* Room for any label value written here: a backend name (the longest
 * name) with every byte escaped. */
#define LABEL_MAX (2 * REG_NAME_MAX + 1)

/* <s> as a Prometheus label value (between the quotes), in <out>: the
 * exposition format escapes backslash, double quote and line feed as \\,
 * \" and \n, and has no escape for other control characters, which would
 * split a sample's line or fail a strict parser: they become '?'. Every
 * label value from outside (backend and model names) goes through here.
 * Returns <out>. */
static const char *label(char *out, const char *s)
{
    size_t o = 0;
    for (; *s != '\0' && o + 2 < LABEL_MAX; s++) {
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

void reg_dump_metrics(struct registry *r, struct buf *out, int64_t now_ms)
{
    char lb[LABEL_MAX];
    static const char *const classes[] = {"none", "1xx", "2xx", "3xx", "4xx", "5xx"};
    pthread_mutex_lock(&r->lock);
    buf_append_str(out, "# HELP llamalb_backend_up 1 if the backend takes new requests.\n"
                        "# TYPE llamalb_backend_up gauge\n");
    for (unsigned i = 0; i < r->n; i++)
        buf_printf(out, "llamalb_backend_up{backend=\"%s\"} %d\n",
                   label(lb, r->v[i]->spec.name),
                   strcmp(state_name(r->v[i], now_ms), "up") == 0);
    buf_append_str(out, "# HELP llamalb_backend_weight Configured weight.\n"
                        "# TYPE llamalb_backend_weight gauge\n");
    for (unsigned i = 0; i < r->n; i++)
        buf_printf(out, "llamalb_backend_weight{backend=\"%s\"} %u\n",
                   label(lb, r->v[i]->spec.name),
                   r->v[i]->spec.weight);
    buf_append_str(out, "# HELP llamalb_backend_inflight Requests in flight.\n"
                        "# TYPE llamalb_backend_inflight gauge\n");
    for (unsigned i = 0; i < r->n; i++)
        buf_printf(out, "llamalb_backend_inflight{backend=\"%s\"} %u\n",
                   label(lb, r->v[i]->spec.name),
                   atomic_load(&r->v[i]->inflight));
    buf_append_str(out, "# HELP llamalb_backend_requests_total Responses relayed, by status class.\n"
                        "# TYPE llamalb_backend_requests_total counter\n");
    for (unsigned i = 0; i < r->n; i++)
        for (unsigned c = 1; c < 6; c++)
            buf_printf(out, "llamalb_backend_requests_total{backend=\"%s\",code=\"%s\"} %llu\n",
                       label(lb, r->v[i]->spec.name), classes[c],
                       (unsigned long long)atomic_load(&r->v[i]->stats.status[c]));
    /* Plain per-backend counters, one table instead of one loop each. */
    static const struct {
        const char *name, *help;
        size_t off; /* of an atomic counter in struct backend_stats */
    } counters[] = {
        {"llamalb_backend_errors_total",
         "Connect failures, resets, timeouts and invalid responses.",
         offsetof(struct backend_stats, failures)},
        {"llamalb_backend_retries_total", "Requests moved elsewhere after a failure here.",
         offsetof(struct backend_stats, retries)},
        {"llamalb_backend_ejections_total", "Passive and active health ejections.",
         offsetof(struct backend_stats, ejections)},
        {"llamalb_backend_response_bytes_total", "Response bytes relayed.",
         offsetof(struct backend_stats, bytes_out)},
        {"llamalb_backend_events_total", "Streamed events relayed (about one per token).",
         offsetof(struct backend_stats, events)},
    };
    for (size_t k = 0; k < ARRAY_SIZE(counters); k++) {
        buf_printf(out, "# HELP %s %s\n# TYPE %s counter\n", counters[k].name, counters[k].help,
                   counters[k].name);
        for (unsigned i = 0; i < r->n; i++) {
            atomic_uint_fast64_t *v =
                (atomic_uint_fast64_t *)((char *)&r->v[i]->stats + counters[k].off);
            buf_printf(out, "%s{backend=\"%s\"} %llu\n", counters[k].name,
                       label(lb, r->v[i]->spec.name),
                       (unsigned long long)atomic_load(v));
        }
    }
    buf_append_str(out, "# HELP llamalb_backend_request_duration_seconds Request duration, "
                        "first request byte to last response byte.\n"
                        "# TYPE llamalb_backend_request_duration_seconds histogram\n");
    for (unsigned i = 0; i < r->n; i++) {
        const struct backend *b = r->v[i];
        uint64_t cum = 0;
        for (unsigned k = 0; k <= REG_LAT_BUCKETS; k++) {
            cum += atomic_load(&b->stats.lat_count[k]);
            if (k < REG_LAT_BUCKETS)
                buf_printf(out, "llamalb_backend_request_duration_seconds_bucket{backend=\"%s\","
                                "le=\"%g\"} %llu\n",
                           label(lb, b->spec.name), reg_lat_bounds[k], (unsigned long long)cum);
            else
                buf_printf(out, "llamalb_backend_request_duration_seconds_bucket{backend=\"%s\","
                                "le=\"+Inf\"} %llu\n",
                           label(lb, b->spec.name), (unsigned long long)cum);
        }
        buf_printf(out, "llamalb_backend_request_duration_seconds_sum{backend=\"%s\"} %.6f\n",
                   label(lb, b->spec.name), (double)atomic_load(&b->stats.lat_sum_us) / 1e6);
        buf_printf(out, "llamalb_backend_request_duration_seconds_count{backend=\"%s\"} %llu\n",
                   label(lb, b->spec.name), (unsigned long long)cum);
    }
    buf_append_str(out, "# HELP llamalb_backend_ttft_seconds Time to first token (first body "
                        "bytes) measured here, EWMA.\n# TYPE llamalb_backend_ttft_seconds gauge\n");
    for (unsigned i = 0; i < r->n; i++)
        buf_printf(out, "llamalb_backend_ttft_seconds{backend=\"%s\"} %.6f\n",
                   label(lb, r->v[i]->spec.name),
                   r->v[i]->ewma_ttft_us / 1e6);
    /* Per requested model. Names come from clients: escape for the label. */
    static const struct {
        const char *name, *help, *type;
    } mm[] = {
        {"llamalb_model_requests_total", "Requests by requested model.", "counter"},
        {"llamalb_model_errors_total", "Failed requests by requested model.", "counter"},
        {"llamalb_model_inflight", "Requests in flight by requested model.", "gauge"},
        {"llamalb_model_queued_total", "Requests that waited for a backend.", "counter"},
        {"llamalb_model_queue_wait_seconds_sum", "Time spent waiting for a backend.", "counter"},
        {"llamalb_model_queue_length", "Requests waiting now.", "gauge"},
        {"llamalb_model_ttft_seconds_sum", "Sum of times to first token.", "counter"},
        {"llamalb_model_ttft_seconds_count", "Responses with a first token.", "counter"},
        {"llamalb_model_events_total", "Streamed events (about one per token).", "counter"},
    };
    for (unsigned k = 0; k < ARRAY_SIZE(mm); k++) {
        buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", mm[k].name, mm[k].help, mm[k].name,
                   mm[k].type);
        unsigned nms = atomic_load_explicit(&r->nmodel_stats, memory_order_acquire);
        for (unsigned i = 0; i < nms; i++) {
            struct model_stats *m = &r->models[i];
            unsigned waiting = 0;
            if (k == 5) {
                for (struct list *e = r->waiters.next; e != &r->waiters; e = e->next) {
                    const struct reg_waiter *w = list_entry(e, struct reg_waiter, link);
                    char kb[MODEL_KEY_LEN];
                    waiting += strcmp(model_key(w->req.model, kb), m->name) == 0;
                }
            }
            double v = k == 0   ? (double)atomic_load(&m->requests)
                       : k == 1 ? (double)m->errors
                       : k == 2 ? (double)atomic_load(&m->inflight)
                       : k == 3 ? (double)m->queued
                       : k == 4 ? (double)m->queue_wait_us / 1e6
                       : k == 5 ? (double)waiting
                       : k == 6 ? (double)m->ttft_us_sum / 1e6
                       : k == 7 ? (double)m->ttft_count
                                : (double)m->events;
            buf_printf(out, "%s{model=\"%s\"} %.6g\n", mm[k].name, label(lb, m->name), v);
        }
    }
    buf_append_str(out, "# HELP llamalb_backend_ttfb_seconds_sum Sum of times to the first "
                        "response byte.\n# TYPE llamalb_backend_ttfb_seconds_sum counter\n");
    for (unsigned i = 0; i < r->n; i++)
        buf_printf(out, "llamalb_backend_ttfb_seconds_sum{backend=\"%s\"} %.6f\n",
                   label(lb, r->v[i]->spec.name),
                   (double)atomic_load(&r->v[i]->stats.ttfb_sum_us) / 1e6);
    pthread_mutex_unlock(&r->lock);
}
