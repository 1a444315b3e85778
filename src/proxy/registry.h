/* SPDX-License-Identifier: MIT
 * The backend registry, shared by every worker: the set of backends, their
 * weights, caps and health, and one set of in-flight counts (design.md §3).
 *
 * Concurrency: one mutex guards the set and the policies' mutable state
 * (smooth-WRR current weights, health). A pick is a few hundred
 * nanoseconds of work under it, once per request, so a fancier scheme is
 * not worth its bugs at two to sixteen workers. In-flight counts and
 * statistics are atomics, readable without the lock.
 *
 * Lifetime: a backend is reference-counted. The registry holds one
 * reference while the backend is in the set; every request and every pooled
 * upstream connection holds one more. Removing a backend (unregister, a PUT
 * without it, weight change to another address) takes it out of the set and
 * marks it removed: in-flight requests finish, pooled connections are closed
 * by their worker, and the memory goes with the last reference. */
#ifndef LLAMALB_REGISTRY_H
#define LLAMALB_REGISTRY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "list.h"
#include "net.h"

#define REG_NAME_MAX 253
#define REG_MAX_MODELS 32
#define REG_MAX_WEIGHT 1000000
#define REG_MAX_BACKENDS 100000
#define REG_MAX_TRIES 4 /* backends one request may try */

enum reg_source {
    REG_SOURCE_STATIC = 0, /* --backend flags or the config file */
    REG_SOURCE_ADMIN,      /* POST /api/register or PUT /api/services */
};

/* What an operator or the watcher says a backend is. */
struct backend_spec {
    char name[REG_NAME_MAX + 1];
    char host[NET_ADDRSTR_LEN]; /* numeric IP as given */
    int port;
    unsigned weight;
    unsigned max_inflight;      /* 0 = no cap */
    unsigned nmodels;
    char models[REG_MAX_MODELS][128];
};

/* Idle upstream connections of one worker to one backend. Touched only by
 * that worker's thread. */
struct backend_pool {
    struct list idle; /* struct upconn, most recently used first */
    unsigned nidle;
};

/* Latency histogram bucket bounds (seconds) for /metrics. */
#define REG_LAT_BUCKETS 12
extern const double reg_lat_bounds[REG_LAT_BUCKETS];

struct backend_stats {
    atomic_uint_fast64_t requests;   /* responses relayed (any status) */
    atomic_uint_fast64_t status[6];  /* by class: [1]=1xx .. [5]=5xx, [0]=no response */
    atomic_uint_fast64_t failures;   /* connect errors, resets, timeouts, bad responses */
    atomic_uint_fast64_t retries;    /* requests moved to another backend after a failure here */
    atomic_uint_fast64_t bytes_out;  /* response bytes relayed to clients */
    atomic_uint_fast64_t lat_count[REG_LAT_BUCKETS + 1]; /* duration histogram, last = +Inf */
    atomic_uint_fast64_t lat_sum_us;
    atomic_uint_fast64_t ttfb_sum_us;
    atomic_uint_fast64_t ejections;
};

struct backend {
    struct backend_spec spec;  /* name, address text, weight, caps, models */
    struct net_addr addr;      /* parsed spec.host:spec.port */
    enum reg_source source;
    atomic_uint inflight;      /* requests leased to it, all workers */
    atomic_int refs;
    atomic_bool removed;       /* out of the set: drain and let go */
    struct backend_stats stats;
    /* guarded by the registry lock */
    int64_t wrr_current;       /* smooth WRR state */
    unsigned consecutive_failures;
    int64_t down_until;        /* ms (monotonic); ejected until then */
    int64_t down_for;          /* ms: the last ejection's length (doubles on repeats) */
    /* per worker, indexed by worker id */
    struct backend_pool *pools;
};

struct lb_ops;

struct registry {
    pthread_mutex_t lock;
    struct backend **v;        /* the current set, in insertion order */
    unsigned n, cap;
    unsigned nworkers;
    const struct lb_ops *policy;
    uint64_t generation;       /* last PUT /api/services generation */
    atomic_uint_fast64_t version; /* bumps on every change (workers prune pools) */
    /* passive health settings */
    unsigned eject_after;      /* consecutive failures; 0 = never eject */
    int64_t eject_base_ms, eject_max_ms;
};

void reg_init(struct registry *r, unsigned nworkers, const struct lb_ops *policy);
void reg_deinit(struct registry *r);

/* Validates a spec's fields and parses its address into <addr>. Returns 0
 * or -EINVAL with a message in <err> (NET_ERR_LEN bytes). */
int reg_spec_check(const struct backend_spec *s, struct net_addr *addr, char *err);

/* Parses "NAME=HOST:PORT[,weight=N][,models=A|B][,max-inflight=N]". */
int reg_spec_parse(const char *arg, struct backend_spec *s, char *err);

/* Adds or updates the backend named s->name. An unchanged address updates
 * the backend in place (its counters and pools survive); a new address
 * replaces it (the old one drains). Returns 0 (added), 1 (updated) or -errno. */
int reg_upsert(struct registry *r, const struct backend_spec *s, enum reg_source src, char *err);

/* Removes the backend named <name>. Returns 0 or -ENOENT. */
int reg_remove(struct registry *r, const char *name);

/* Replaces every backend of source <src> with <specs> atomically (one lock
 * hold). With <generation> non-zero, a generation older than the last one
 * seen is refused (-ESTALE). Returns the new count or -errno. */
int reg_replace(struct registry *r, enum reg_source src, const struct backend_spec *specs,
                unsigned n, uint64_t generation, char *err);

/* Picks a backend with the policy, skipping <tried> and anything not
 * eligible. Takes a reference and one in-flight slot for the caller.
 * Returns NULL when nothing is eligible. */
struct backend *reg_pick(struct registry *r, struct backend *const *tried, unsigned ntried,
                         uint64_t *rng, int64_t now_ms);

/* True if some backend other than <tried> could take a request now (used
 * to decide whether a retry is possible before giving up on a response). */
bool reg_has_alternative(struct registry *r, struct backend *const *tried, unsigned ntried,
                         int64_t now_ms);

/* Gives back the in-flight slot taken by reg_pick and records the outcome
 * for passive health: <failed> counts towards ejection, success resets it. */
void reg_release(struct registry *r, struct backend *b, bool failed, int64_t now_ms);

static inline void backend_ref(struct backend *b) { atomic_fetch_add(&b->refs, 1); }
void backend_unref(struct backend *b);

struct buf;
/* Appends the set as the JSON array GET /api/services answers. */
void reg_dump_json(struct registry *r, struct buf *out, int64_t now_ms);
/* Appends the per-backend Prometheus metrics. */
void reg_dump_metrics(struct registry *r, struct buf *out, int64_t now_ms);
unsigned reg_count(struct registry *r);

#endif
