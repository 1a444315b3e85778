/* SPDX-License-Identifier: MIT
 * The balancer's process-wide state (struct server) and its worker threads
 * (struct worker). One event loop per worker; each worker has its own
 * public listening socket (SO_REUSEPORT: the kernel spreads connections),
 * its own upstream pools, and touches only its own connections. What
 * workers share is the registry (backends, in-flight counts, health) and the
 * counters below, all atomics or behind the registry's own lock.
 *
 * The request path is split by stage, one file each (docs/design.md):
 *   conn.c      the client side: accept, read, head, body, timers, output
 *   route.c     routing: what the request asks for, pick or queue
 *   upstream.c  the upstream side: pool, connect, send, response head
 *   relay.c     the response: framing, SSE counting, flush, finish
 *   admin.c     the admin API, answered locally
 *   worker.c    the loop around them: accept, access log, drain */
#ifndef LLAMALB_SERVER_H
#define LLAMALB_SERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "config.h"
#include "ev.h"
#include "list.h"
#include "net.h"
#include "keys.h"
#include "registry.h"
#include "runtime.h"

struct conn;
struct exchange;

/* Process-wide counters for /metrics (per-backend ones live in the registry). */
struct server_stats {
    atomic_uint_fast64_t conns_accepted;
    atomic_uint_fast64_t conns_active;
    atomic_uint_fast64_t requests;          /* requests whose head was accepted */
    atomic_uint_fast64_t responses[6];      /* by class, including our own errors */
    atomic_uint_fast64_t local_errors[600]; /* responses the balancer made itself, by status */
    atomic_uint_fast64_t no_backend;        /* 503: nothing eligible */
    atomic_uint_fast64_t aborted_streams;   /* client left, or upstream died mid-response */
    atomic_uint_fast64_t up_connects;       /* upstream connections opened */
    atomic_uint_fast64_t up_reuses;         /* requests sent on a pooled connection */
    atomic_uint_fast64_t admin_changes;
    atomic_uint_fast64_t admin_auth_failures;
    atomic_uint_fast64_t admin_conns_active; /* apart from conns_active (--admin-max-conns) */
    atomic_uint_fast64_t body_mem;          /* bytes reserved for request bodies, all workers */
    atomic_uint_fast64_t body_mem_refused;  /* 503: --max-body-memory reached */
    atomic_uint_fast64_t slow_client_cuts;  /* responses cut: --slow-client-budget spent */
    atomic_uint_fast64_t up_idle;           /* pooled upstream connections now, all workers
                                               (each pool's own count is its worker's) */
};

/* What identifies a watched file's content (runtime_poll). */
struct file_stamp {
    uint64_t ino, size;
    int64_t mtime_ns;
};

struct server {
    struct cfg cfg;             /* the boot settings (listeners, workers); what can
                                   change live is in <rt> (runtime.h) */
    struct runtime *rt;         /* the current live settings, under rt_lock */
    pthread_mutex_t rt_lock;
    struct key_usage_table key_use; /* what each API key name used (keys.h) */
    struct file_stamp key_stamp;    /* the API key file when last loaded */
    int64_t token_read_ms;          /* the admin token file was last read */
    atomic_bool access_on;          /* the access log is not "off" */
    struct registry reg;
    struct worker *workers;
    unsigned nworkers;
    struct net_addr listen_addr;   /* resolved (port 0 replaced) */
    struct net_addr admin_addr;
    bool admin_enabled;
    unsigned max_conns;
    atomic_bool stopping;       /* shutdown asked: /readyz fails, accepting goes on for
                                   --drain-delay, then draining starts */
    atomic_int_fast64_t drain_at; /* ms, monotonic: when the delayed drain starts */
    atomic_bool draining;       /* not accepting any more: finish, exit */
    atomic_int_fast64_t drain_deadline; /* ms, monotonic */
    int access_fd;              /* dedicated; reopened in place by a reload */
    struct server_stats stats;
    int64_t started_ms;
    struct follow *follow;      /* the replica role (follow.h) */
};

struct worker {
    unsigned id;
    struct server *srv;
    struct runtime *rt;         /* the live settings this worker runs with (runtime.h) */
    struct ev_timer poll_timer; /* worker 0: watches the key and token files */
    struct ev_timer delay_timer; /* worker 0: starts the drain after --drain-delay */
    struct ev_loop *loop;
    pthread_t thread;
    int lfd;                    /* public listener, -1 once closed */
    struct ev_io lio;
    int afd;                    /* admin listener (worker 0 only), else -1 */
    struct ev_io aio;
    struct ev_timer accept_timer; /* resumes accepting after EMFILE or at max_conns */
    bool accept_paused;
    struct ev_timer admin_accept_timer; /* the same for the admin listener */
    bool admin_accept_paused;
    struct list conns;          /* live client connections */
    struct list graveyard_c;    /* closed conns, freed before sleep */
    struct list graveyard_u;    /* closed upconns, freed before sleep */
    struct list idle_up;        /* every idle upconn of this worker, any backend */
    unsigned nconns;
    uint64_t rng;               /* PRNG state for policies and request ids */
    uint_fast64_t reg_version;  /* registry version the pools were last pruned at */
    struct buf alog;            /* access log lines, one write per loop iteration */
    bool draining;              /* this worker has started draining */
    struct ev_timer drain_timer;
    struct list ready;          /* queued requests handed a backend (registry lock) */
    struct exchange *xcache[64]; /* released exchanges, reused by the next requests */
    unsigned nxcache;
};

/* worker.c */
int worker_init(struct worker *w, struct server *s, unsigned id, int lfd, int afd);
void *worker_main(void *arg);
void worker_free(struct worker *w);
/* Appends the access-log line of the request on <c> (written before sleep). */
void worker_log_access(struct conn *c, const char *backend);
/* A connection closed: resume a listener paused at its connection cap. */
void worker_conn_closed(struct worker *w, bool admin);

/* Shuts down (SIGTERM, SIGINT, POST /api/drain): /readyz fails at once;
 * with <delay>, the listeners keep accepting for --drain-delay (so nothing is
 * refused while Kubernetes takes the pod out of its Service), then the drain
 * starts: no new connections, in-flight requests finish within
 * --drain-timeout. */
void server_shutdown(struct server *s, bool delay);
/* main.c: starts draining every worker now. */
void server_start_drain(struct server *s);

#endif
