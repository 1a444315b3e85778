/* SPDX-License-Identifier: MIT
 * The backend registry, shared by every worker: the set of backends, their
 * weights, caps and health, and one set of in-flight counts (the
 * architecture: docs/design.md). Its files, each with one job, are listed
 * in registry_int.h, their private header; this header is the contract.
 *
 * Concurrency: one mutex guards the set and the policies' mutable state
 * (smooth-WRR current weights, health), and only the registry's own files
 * take it. Code outside calls the functions below: it does not touch the
 * fields of struct registry (public only because struct server embeds
 * one) nor those of struct backend under "guarded by the registry lock";
 * settings go through reg_configure and reg_set_policy. A pick is a few hundred
 * nanoseconds of work under it, once per request, so a fancier scheme is
 * not worth its bugs at two to sixteen workers. In-flight counts and
 * statistics are atomics, readable without the lock; so are the per-model
 * request and in-flight counts, which every request moves twice. Nothing
 * under the lock makes a system call: waking a worker (a write to its
 * pipe) and logging happen after the unlock, and work a client can ask
 * for (GET /v1/models) copies what it needs under the lock and formats it
 * outside.
 *
 * Scale: a pick must not cost O(backends) when the set is large (the
 * admin API takes up to REG_MAX_BACKENDS). A pick index derived from the
 * set (running weight totals, backends by model) is rebuilt on the first
 * pick after a change of <version>, or right away by a PUT; with it and
 * the name table (backends by name, kept current by every change), a
 * pinned request looks at one backend and a routed one only at the
 * model's backends. Changes cost no more than their size: one backend by
 * name is a hash lookup, a PUT of m services against n backends is
 * O(n + m), and so is GET /v1/models. Up
 * to LB_SCAN_MAX backends in play, the policy sees every eligible one,
 * exactly as always; past it, random, p2c and least choose among a few
 * backends drawn in proportion to weight (O(log n) each), falling back to
 * the full scan when no draw is eligible (lb.c). wrr and session affinity
 * still scan every backend in play.
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
#include <string.h>

#include "list.h"
#include "net.h"

struct buf;

#define REG_NAME_MAX 253
#define REG_MAX_MODELS 32
#define REG_MAX_WEIGHT 1000000
#define REG_MAX_BACKENDS 100000
#define REG_MAX_TRIES 4 /* backends one request may try */

enum reg_source {
    REG_SOURCE_STATIC = 0, /* --backend flags or the config file */
    REG_SOURCE_ADMIN,      /* POST /api/register or PUT /api/services */
};

/* What an operator or the watcher says a backend is. Small, because a PUT
 * holds one per service (up to REG_MAX_BACKENDS of them): the model names
 * are one packed block, not REG_MAX_MODELS fixed slots.
 *
 * <models> holds <nmodels> names, each 1 to REG_MODEL_MAX bytes and
 * NUL-terminated, back to back (walk them with reg_model_next). A spec
 * made by reg_spec_parse or reg_spec_set_models owns that block
 * (reg_spec_free releases it); one may also point it at storage of its
 * own. The registry never takes a spec's block: a backend keeps a copy. */
struct backend_spec {
    char name[REG_NAME_MAX + 1];
    char host[NET_ADDRSTR_LEN]; /* numeric IP as given */
    int port;
    unsigned weight;
    unsigned max_inflight;      /* 0 = no cap; used only if max_inflight_set */
    bool max_inflight_set;      /* else the registry default applies */
    unsigned nmodels;
    const char *models;         /* packed names (above), NULL when nmodels == 0 */
};

#define REG_MODEL_MAX 127 /* bytes in one model name */

/* The name after <m> in a packed list. */
static inline const char *reg_model_next(const char *m) { return m + strlen(m) + 1; }

/* Idle upstream connections of one worker to one backend. Touched only by
 * that worker's thread. */
struct backend_pool {
    struct list idle; /* struct upconn, most recently used first */
    unsigned nidle;
};

/* Histogram bucket bounds (seconds) for /metrics and the status page:
 * latencies (durations, first byte, first token, queue wait) and the much
 * shorter times between tokens. Both have REG_LAT_BUCKETS bounds, so a
 * histogram is REG_LAT_BUCKETS + 1 counts, the last one +Inf. */
#define REG_LAT_BUCKETS 12
extern const double reg_lat_bounds[REG_LAT_BUCKETS];
extern const double reg_tbt_bounds[REG_LAT_BUCKETS];
/* The bucket <us> microseconds fall in: the first bound >= it, or
 * REG_LAT_BUCKETS (+Inf). */
unsigned reg_bucket(const double *bounds, int64_t us);

struct backend_stats {
    atomic_uint_fast64_t requests;   /* responses relayed (any status) */
    atomic_uint_fast64_t status[6];  /* by class: [1]=1xx .. [5]=5xx, [0]=no response */
    atomic_uint_fast64_t failures;   /* connect errors, resets, timeouts, bad responses */
    atomic_uint_fast64_t retries;    /* requests moved to another backend after a failure here */
    atomic_uint_fast64_t bytes_out;  /* response bytes relayed to clients */
    atomic_uint_fast64_t lat_count[REG_LAT_BUCKETS + 1]; /* duration histogram, last = +Inf */
    atomic_uint_fast64_t lat_sum_us;
    atomic_uint_fast64_t ttfb_count[REG_LAT_BUCKETS + 1]; /* first response byte */
    atomic_uint_fast64_t ttfb_sum_us;
    atomic_uint_fast64_t ttft_count[REG_LAT_BUCKETS + 1]; /* first body byte (token) */
    atomic_uint_fast64_t ttft_sum_us;
    atomic_uint_fast64_t tbt_count[REG_LAT_BUCKETS + 1];  /* by reg_tbt_bounds: a */
    atomic_uint_fast64_t tbt_sum_us;                      /* stream's mean gap */
    atomic_uint_fast64_t ejections;
    atomic_uint_fast64_t events;     /* SSE events relayed (tokens, roughly) */
};

struct backend {
    struct backend_spec spec;  /* name, address text, weight, caps; its own copy of the
                                  models (guarded by the registry lock); the name never
                                  changes and is read without the lock */
    uint32_t name_hash;        /* of spec.name, which never changes for a backend */
    struct net_addr addr;      /* parsed spec.host:spec.port */
    enum reg_source source;
    atomic_uint inflight;      /* requests leased to it, all workers */
    atomic_int refs;
    atomic_bool removed;       /* out of the set: drain and let go */
    struct backend_stats stats;
    /* guarded by the registry lock */
    unsigned cap;              /* effective max in-flight (0 = none) */
    char *probed;              /* packed like spec.models, owned: from GET /v1/models */
    unsigned nprobed;          /* ... used when the spec lists none */
    uint64_t eff_weight;       /* weight x 1000, scaled down during slow start; set per pick */
    int64_t ramp_start;        /* ms: slow start begins (added, or back from ejection) */
    double ewma_ttft_us;       /* live speed measured here: time to first byte */
    double ewma_tbt_us;        /* time between streamed events */
    double ewma_events;        /* events per streamed response (1 for plain ones) */
    unsigned samples;
    int64_t wrr_current;       /* smooth WRR state */
    unsigned consecutive_failures;
    int64_t down_until;        /* ms (monotonic); ejected until then */
    int64_t down_for;          /* ms: the last ejection's length (doubles on repeats) */
    /* per worker, indexed by worker id */
    struct backend_pool *pools;
    /* active probing: touched only by the probing worker's thread */
    int64_t next_probe_ms;
    bool probing;
};

struct lb_ops;

/* What a request needs from a backend. Pointers stay valid while the
 * request waits (they point into its connection). */
struct reg_req {
    const char *model;                /* requested model (aliases applied), NULL = any */
    const char *pin;                  /* backend name that must serve it (uploaded file), or NULL */
    uint64_t affinity;                /* session key hash, 0 = none */
    struct backend *const *tried;     /* backends already tried for this request */
    unsigned ntried;
};

enum reg_pick_rc {
    REG_PICKED = 0,
    REG_QUEUED,      /* every eligible backend is full: the waiter is queued */
    REG_QUEUE_FULL,  /* ... and the queue is full too */
    REG_NONE,        /* no backend could ever take it (none, all drained or tried) */
    REG_NO_MODEL,    /* no backend serves the model, and unknown models are refused */
};

enum reg_waiter_state { REG_W_IDLE = 0, REG_W_QUEUED, REG_W_READY };

/* A request waiting for a slot, embedded in its connection. When a slot
 * frees, the registry picks for the oldest waiter that can use it, under
 * its lock, so the slot cannot be taken by a newcomer in between; the
 * waiter then moves to its worker's ready list and the worker is woken. */
struct reg_waiter {
    struct list link;           /* registry queue, then the worker's ready list */
    struct reg_req req;
    struct list *ready_list;    /* owner worker's ready list (registry lock guards it) */
    void (*wake)(void *);       /* wakes the owner worker */
    void *wake_arg;
    enum reg_waiter_state state;
    struct backend *assigned;   /* READY: the backend picked (in-flight slot held) */
    int64_t since_ms;
};

struct reg_outcome {
    bool failed;                /* counts towards ejection */
    int64_t ttft_us;            /* 0 = no response */
    int64_t tbt_us;             /* mean gap between events, 0 = not a stream */
    unsigned events;            /* body reads (timing) */
    unsigned sse_events;        /* SSE events relayed (tokens streamed) */
    uint64_t prompt_tokens;     /* the answer's usage (or the event count), per model */
    uint64_t completion_tokens;
    const char *model;          /* requested model for per-model metrics, NULL = none */
    bool counted;               /* a finished request (not a give-back of an unused slot) */
};

/* Per-model counters (requested model names). Bounded: past
 * REG_MAX_MODEL_STATS - 1 names, the rest count under "(other)". A slot's
 * name is written before the slot is published (nmodel_stats, release) and
 * never changes, so a lookup needs no lock; the counters every request
 * moves are atomics, the rest are guarded by the registry lock. */
#define REG_MAX_MODEL_STATS 128
struct model_stats {
    char name[128];
    atomic_uint_fast64_t requests;   /* lock-free */
    atomic_uint inflight;            /* lock-free */
    uint64_t errors, events, queued; /* registry lock */
    uint64_t prompt_tokens, completion_tokens;
    uint64_t ttft_us_sum, tbt_us_sum, queue_wait_us; /* each histogram's _sum */
    uint64_t ttft_hist[REG_LAT_BUCKETS + 1];  /* by reg_lat_bounds, last = +Inf; the
                                                 buckets add up to the count */
    uint64_t tbt_hist[REG_LAT_BUCKETS + 1];   /* by reg_tbt_bounds */
    uint64_t queue_wait_hist[REG_LAT_BUCKETS + 1]; /* by reg_lat_bounds */
};

struct reg_index;
struct reg_name_cell;
struct reg_files;

struct registry {
    pthread_mutex_t lock;
    struct backend **v;        /* the current set, in insertion order */
    unsigned n, cap;
    unsigned nworkers;
    const struct lb_ops *policy;
    uint64_t generation;       /* last PUT /api/services generation */
    atomic_uint_fast64_t version; /* bumps on every change (workers prune pools,
                                     the pick index is rebuilt) */
    /* passive health settings */
    unsigned eject_after;      /* consecutive failures; 0 = never eject */
    int64_t eject_base_ms, eject_max_ms;
    unsigned default_cap;      /* max in-flight when a backend does not say (1) */
    int64_t slow_start_ms;     /* weight ramp after joining or recovering; 0 = off */
    bool reject_unknown_model; /* else unknown models go to any backend */
    /* the gateway queue */
    struct list waiters;       /* struct reg_waiter, oldest first */
    unsigned nwaiting, queue_max;
    uint64_t rng;
    atomic_uint_fast64_t queued_total, queue_timeouts, queue_rejects;
    atomic_uint_fast64_t queue_wait_us;
    uint64_t queue_wait_hist[REG_LAT_BUCKETS + 1]; /* by reg_lat_bounds; registry lock */
    struct model_stats models[REG_MAX_MODEL_STATS];
    atomic_uint nmodel_stats;  /* slots published (written under the lock) */
    struct reg_index *ix;      /* pick index (reg_pick.c), rebuilt when <version> moves */
    struct reg_name_cell *names; /* backends by name (registry.c), always current */
    unsigned names_mask;       /* table size - 1 (a power of two), 0 = no table yet */
    /* Uploaded files: id -> backend name (bounded, oldest forgotten first).
     * Its own lock: a /v1/files request has nothing to do with the set. */
    pthread_mutex_t files_lock;
    struct reg_files *files;   /* reg_files.c; allocated on the first upload */
};

#define REG_MAX_FILES 65536
#define REG_FILE_ID_MAX 63     /* longer ids are not remembered */

void reg_init(struct registry *r, unsigned nworkers, const struct lb_ops *policy);

/* Passive health, caps and queue settings (the defaults reg_init sets are
 * in brackets). */
struct reg_settings {
    unsigned eject_after;      /* consecutive failures that eject; 0 = never (5) */
    int64_t eject_base_ms;     /* first ejection's length (30000) */
    int64_t eject_max_ms;      /* ejections double up to this (300000) */
    unsigned default_cap;      /* max in-flight when a backend does not say (1) */
    unsigned queue_max;        /* requests the gateway queue holds (1024) */
    int64_t slow_start_ms;     /* weight ramp after joining or recovering; 0 = off (0) */
    bool reject_unknown_model; /* else unknown models go to any backend (false) */
};
/* Applies <s>. default_cap applies to backends added or updated later. */
void reg_configure(struct registry *r, const struct reg_settings *s);
/* Switches the policy (SIGHUP reload): the next pick uses it. */
void reg_set_policy(struct registry *r, const struct lb_ops *policy);
void reg_deinit(struct registry *r);
/* Frees the calling thread's pick scratch space (at thread exit). */
void reg_thread_exit(void);

/* Validates a spec's fields and parses its address into <addr>. Returns 0
 * or -EINVAL with a message in <err> (NET_ERR_LEN bytes). */
int reg_spec_check(const struct backend_spec *s, struct net_addr *addr, char *err);

/* Parses "NAME=HOST:PORT[,weight=N][,models=A|B][,max-inflight=N]". On
 * success the spec owns its models: release them with reg_spec_free. */
int reg_spec_parse(const char *arg, struct backend_spec *s, char *err);

/* Gives <s> the <n> model names <names> as an owned packed block (after
 * releasing one it owned). Returns 0, or -EINVAL with a message in <err>
 * when n > REG_MAX_MODELS or a name is empty or over REG_MODEL_MAX bytes. */
int reg_spec_set_models(struct backend_spec *s, const char *const *names, unsigned n, char *err);

/* Releases the model block a spec owns (reg_spec_parse,
 * reg_spec_set_models) and empties its list. */
void reg_spec_free(struct backend_spec *s);
/* ... of each of <v>[0..n), then <v> itself (a malloc'ed array). */
void reg_specs_free(struct backend_spec *v, unsigned n);

/* Adds or updates the backend named s->name. An unchanged address updates
 * the backend in place (its counters and pools survive); a new address
 * replaces it (the old one drains). Returns 0 (added), 1 (updated) or
 * -errno: -ENOSPC when a new name would take the set past REG_MAX_BACKENDS. */
int reg_upsert(struct registry *r, const struct backend_spec *s, enum reg_source src, char *err);

/* Removes the backend named <name>. Returns 0 or -ENOENT. */
int reg_remove(struct registry *r, const char *name);

/* Replaces every backend of source <src> with <specs> atomically (one lock
 * hold). With <generation> non-zero, a generation older than the last one
 * seen is refused (-ESTALE). A set that would hold more than
 * REG_MAX_BACKENDS backends (the specs and those of other sources they do
 * not name) is refused whole (-ENOSPC). Returns the new count or -errno. */
int reg_replace(struct registry *r, enum reg_source src, const struct backend_spec *specs,
                unsigned n, uint64_t generation, char *err);

/* Picks a backend for <q> with the policy. On REG_PICKED, <*out> holds a
 * reference and one in-flight slot for the caller. When every eligible
 * backend is full and <w> is given, queues <w> (REG_QUEUED): later
 * <w>->wake runs with the waiter moved to its ready list, holding the pick
 * in <w>->assigned. <why> (may be NULL) gets a short reason for debug logs. */
enum reg_pick_rc reg_pick(struct registry *r, const struct reg_req *q, uint64_t *rng,
                          int64_t now_ms, struct reg_waiter *w, struct backend **out,
                          const char **why);

/* Takes <w> out of the queue or the ready list. Returns the backend it was
 * assigned meanwhile (the caller now owns that slot) or NULL. */
struct backend *reg_cancel_wait(struct registry *r, struct reg_waiter *w);
/* Counts a waiter given up on after waiting too long
 * (llamalb_queue_timeouts_total): after reg_cancel_wait returned NULL. */
void reg_note_queue_timeout(struct registry *r);

/* Moves a worker's ready waiters onto <out> (its own list). */
void reg_take_ready(struct registry *r, struct list *ready, struct list *out);

/* Re-examines the queue (after a change that may have freed capacity). */
void reg_kick(struct registry *r, int64_t now_ms);

/* True if some backend other than <q>->tried could take the request now
 * (whether a retry is possible before giving up on a response). */
bool reg_has_alternative(struct registry *r, const struct reg_req *q, int64_t now_ms);

/* Gives back the in-flight slot taken by reg_pick, records the outcome for
 * passive health and live speed, and hands the slot to a waiter if any. */
void reg_release(struct registry *r, struct backend *b, const struct reg_outcome *o,
                 int64_t now_ms);

/* Marks <b> unreachable (connect refused or timed out): the next failure
 * counted by reg_release ejects it, rather than after eject_after of
 * them. The caller counts the failure itself (stats.failures). */
void reg_note_unreachable(struct registry *r, struct backend *b);

/* A response relayed from <b> to a client, for its statistics. */
struct reg_response {
    int status;             /* the status relayed, 100-599 */
    uint64_t bytes;         /* response bytes relayed to the client */
    int64_t dur_us;         /* first request byte to the backend's last response byte */
    int64_t ttfb_us;        /* to the first response byte */
    int64_t ttft_us;        /* request sent to the first body byte; 0 = none */
    int64_t tbt_us;         /* a stream's mean gap between body reads; 0 = not one */
    unsigned sse_events;    /* SSE events relayed */
};
/* Counts <x> in <b>'s statistics: requests, status class, bytes,
 * histograms of duration, time to first byte, first token and between
 * tokens, events. Atomics only
 * (no lock); call it once per relayed response, before reg_release. */
void reg_record_response(struct registry *r, struct backend *b, const struct reg_response *x);

/* True if <b> serves <model> (its registered, configured or probed list). */
bool reg_serves(const struct backend *b, const char *model);

/* Replaces the probed model list of <b> with <names>[0..n) (at most
 * REG_MAX_MODELS are kept; empty names and names over REG_MODEL_MAX bytes
 * are skipped). */
void reg_set_probed_models(struct registry *r, struct backend *b, const char *const *names,
                           unsigned n);

/* Records an active probe's verdict: <alive> clears an ejection (and
 * starts slow start); a dead verdict ejects at once. */
void reg_probe_result(struct registry *r, struct backend *b, bool alive, int64_t now_ms);

/* References to every backend in the set, for the prober. Returns the
 * count; the caller unrefs each and frees the array. */
unsigned reg_snapshot(struct registry *r, struct backend ***out);

/* Remembers that uploaded file <id> lives on backend <name>; looks it up.
 * O(1) each; the REG_MAX_FILES most recent uploads are remembered, and an
 * id uploaded again follows its latest copy. */
void reg_file_put(struct registry *r, const char *id, const char *name);
bool reg_file_get(struct registry *r, const char *id, char *name, size_t len);

/* Appends the deduplicated model list of every healthy backend in OpenAI's
 * list format (GET /v1/models on the public port). Only a copy of the
 * names is made under the registry lock; the rest runs outside it. */
void reg_models_json(struct registry *r, struct buf *out, int64_t now_ms);

static inline void backend_ref(struct backend *b) { atomic_fetch_add(&b->refs, 1); }
void backend_unref(struct backend *b);

/* Appends the set as the JSON array GET /api/services answers. */
void reg_dump_json(struct registry *r, struct buf *out, int64_t now_ms);
/* Counts a request for <model> entering (+1) or leaving (-1) flight. Takes
 * the registry lock only the first time a model name is seen. */
void reg_model_inflight(struct registry *r, const char *model, int delta);
/* Appends every Prometheus family the registry keeps: the gateway queue
 * (llamalb_queue_*), then the per-backend and per-model ones. */
void reg_write_metrics(struct registry *r, struct buf *out, int64_t now_ms);
/* Appends the per-backend and per-model families only (what
 * reg_write_metrics writes after the queue's). */
void reg_dump_metrics(struct registry *r, struct buf *out, int64_t now_ms);
unsigned reg_count(struct registry *r);
/* Requests waiting in the gateway queue now. */
unsigned reg_queue_length(struct registry *r);

#endif
