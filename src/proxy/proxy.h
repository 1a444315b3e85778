/* SPDX-License-Identifier: MIT
 * The balancer's process-wide state (struct server), its worker threads
 * (struct worker), and the two connection kinds they run: client
 * connections (struct conn) and upstream connections (struct upconn).
 *
 * One event loop per worker; each worker has its own public listening
 * socket (SO_REUSEPORT: the kernel spreads connections), its own upstream
 * pools, and touches only its own connections. What workers share is the
 * registry (backends, in-flight counts, health) and the counters below,
 * all atomics or behind the registry lock.
 *
 * Request path (design.md §2), all inside one worker:
 *
 *   accept -> CS_HEAD: read + strict parse of the head; bad -> 4xx + close
 *          -> CS_BODY: read the body (CL or chunked, bounded, de-chunked)
 *          -> dispatch: policy picks a backend; lease a pooled upstream
 *             connection or connect; write the rewritten head + body
 *          -> CS_UPSTREAM: read + strict parse of the response head;
 *             connect errors and (optionally) 502/503/429 retry elsewhere
 *             while nothing has reached the client
 *          -> CS_RELAY: relay the body as it arrives, never buffering more
 *             than one read; a slow client stops upstream reads
 *          -> finish: upstream connection back to the pool (or closed),
 *             access log + metrics, next pipelined request or close */
#ifndef LLAMALB_PROXY_H
#define LLAMALB_PROXY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "config.h"
#include "ev.h"
#include "http1.h"
#include "list.h"
#include "net.h"
#include "registry.h"

struct worker;

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
};

struct server {
    struct cfg cfg;             /* settings; immutable while workers run, except backends */
    struct registry reg;
    struct worker *workers;
    unsigned nworkers;
    struct net_addr listen_addr;   /* resolved (port 0 replaced) */
    struct net_addr admin_addr;
    bool admin_enabled;
    unsigned max_conns;
    atomic_bool draining;       /* SIGTERM or POST /api/drain: stop accepting, finish, exit */
    atomic_int_fast64_t drain_deadline; /* ms, monotonic */
    int access_fd;              /* -1 = off */
    struct server_stats stats;
    int64_t started_ms;
};

struct worker {
    unsigned id;
    struct server *srv;
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

enum conn_state {
    CS_HEAD = 0,  /* reading a request head, or idle between requests */
    CS_BODY,      /* reading the request body */
    CS_QUEUED,    /* every eligible backend is full: waiting in the gateway queue */
    CS_UPSTREAM,  /* request dispatched, waiting for the response head */
    CS_RELAY,     /* relaying the response body */
    CS_CLOSING,   /* flushing our last bytes, then close */
    CS_LINGER,    /* our side shut: discarding what the client still sends, then close */
};

/* Admin request details that must outlive the head parse (admin conns only). */
struct admin_req {
    char auth[300];             /* Authorization header value, truncated */
    bool has_auth, has_origin, has_ctype, json_ctype;
};

/* The request being served on a client connection and its response: parse
 * state, body, identity (method, path, id, model), the upstream side and
 * relay state. Allocated when a request's first bytes arrive and given back
 * when the connection goes idle, so an idle keep-alive connection costs only
 * its struct conn (bench measurement 3). */
struct exchange {
    struct conn *c;             /* owner (the gateway queue finds it from the waiter) */
    struct http1_msg req;       /* head parse state; header slices valid only during parse */
    struct buf uphead;          /* rewritten head for the upstream, without framing */
    struct buf body;            /* request body, de-chunked; grown as bytes arrive */
    size_t body_charged;        /* bytes of body.cap counted in server_stats.body_mem */
    int64_t body_deadline;      /* ms: the whole body must have arrived by then */
    char clhdr[40];             /* "Content-Length: N\r\n\r\n" or "\r\n" */
    unsigned clhdr_len;
    bool send_cl;               /* method or body calls for an explicit Content-Length */
    enum http1_framing req_framing;
    uint64_t body_left;
    struct http1_chunked ck;
    char method[16];
    char path[320];             /* for logs and admin routing (truncated; holds
                                 * /api/unregister/ + a 253-character name) */
    char rid[36];               /* X-Request-Id */
    int64_t t0_us;              /* head complete */
    struct admin_req *ar;
    char model[128];            /* requested "model" (aliases applied), "" = none */
    char pin[REG_NAME_MAX + 1]; /* backend holding the named uploaded file, "" = none */
    uint64_t affinity;          /* session key hash, 0 = none */
    bool is_upload;             /* POST /v1/files: learn the new file's id */
    bool local_models;          /* GET /v1/models: answered here */
    bool model_counted;         /* counted in its model's in-flight gauge */
    struct reg_waiter waiter;   /* the gateway queue */

    /* upstream side */
    struct upconn *up;
    struct backend *be;         /* referenced; in-flight slot held */
    struct backend *tried[REG_MAX_TRIES];
    unsigned ntried;
    unsigned stale_retries;
    bool fresh_only;            /* after a stale pooled connection: connect anew */

    /* the response being relayed */
    enum http1_framing resp_framing;
    uint64_t resp_left;
    struct http1_chunked rck;
    bool dechunk;               /* HTTP/1.0 client: strip chunked framing */
    bool resp_done;             /* the upstream message is complete */
    bool up_reusable;
    size_t pass;                /* validated bytes at the front of up->in to forward */
    uint64_t bytes_out;
    int64_t ttfb_us;
    int64_t t_sent_us;          /* request handed to the backend */
    int64_t t_first_us;         /* first response body bytes (first token) */
    int64_t t_last_us;          /* latest response body bytes */
    unsigned events;            /* reads that brought body bytes (one per token when streaming) */
    bool capped;                /* the backend takes a limited number of requests at once */
    int64_t stall_since;        /* ms: the client stopped taking bytes (0 = it takes them) */
    int64_t stalled_ms;         /* total time the client kept this response waiting */
    bool sse;                   /* the response is text/event-stream */
    bool sse_nl;                /* the last payload byte seen was a newline */
    unsigned sse_events;        /* SSE events seen (blank-line terminated) */
};

/* A client connection. Owned by its worker (on worker->conns); freed before
 * sleep after conn_close() put it on the graveyard. Between requests it holds
 * no exchange (x == NULL) and, once its buffers are released, nothing else. */
struct conn {
    struct list link;
    struct worker *w;
    struct ev_io io;
    bool admin;                 /* accepted on the admin listener */
    bool rd_ready, wr_ready;    /* edge-triggered readiness not yet consumed */
    bool rdhup;                 /* the client closed its side: read until EOF */
    bool client_eof;            /* read EOF: answer what is buffered, then close */
    bool closed;
    /* How the current answer ends; kept here because the balancer's own
     * error answers need them before or without a parsed request. */
    bool is_head;
    bool keep_alive;            /* client wants the connection kept */
    bool close_after;           /* close the client connection after this response */
    int minor;                  /* client's HTTP/1.<minor> */
    int status;                 /* status of the current answer */
    enum conn_state state;
    struct buf in;              /* bytes from the client not yet consumed */
    struct buf out;             /* bytes for the client: our heads, errors, de-chunked data */
    struct ev_timer timer;      /* header, body, keep-alive and send deadlines */
    struct ev_timer resume;     /* 0 ms: continue work cut short by a fairness cap */
    int64_t head_deadline;      /* ms: absolute deadline of the current head */
    struct exchange *x;         /* the request in progress, NULL between requests */
    struct net_addr peer;
};

/* An upstream connection: leased to one conn, or idle in its backend's pool
 * for this worker. Holds a reference to its backend. */
struct upconn {
    struct list link;           /* pool idle list or worker graveyard */
    struct list wlink;          /* worker's list of all its idle upconns */
    struct worker *w;
    struct ev_io io;
    struct backend *be;
    struct conn *c;             /* owner while leased, NULL when idle */
    struct buf in;
    struct ev_timer timer;      /* connect, response and idle deadlines */
    bool connected, rd_ready, wr_ready, reused, closed, eof;
    bool rdhup;                 /* the backend closed its side: read until EOF */
    bool reset;                 /* a read failed (RST): not a clean end */
    bool got_bytes;             /* any response byte arrived on this lease */
    size_t sent;                /* request bytes written on this lease */
    unsigned uses;
};

/* conn.c */
void conn_accept(struct worker *w, int fd, const struct net_addr *peer, bool admin);
void conn_close(struct conn *c);
/* Starts draining a client connection: close it if idle, else after its response. */
void conn_drain(struct conn *c);
/* Queues a complete response made by the balancer (error bodies, admin). */
void conn_respond(struct conn *c, int status, const char *ctype, const char *body, size_t len,
                  const char *extra_headers);
/* An OpenAI-style JSON error: {"error":{"message","type","param","code"}}. */
void conn_error(struct conn *c, int status, const char *message, const char *type,
                const char *code);
const char *http_reason(int status);

/* Completes a request the balancer answered itself (admin API). */
void conn_local_done(struct conn *c);
/* A queued request got a backend (worker thread, after reg_take_ready). */
void conn_dequeued(struct conn *c);
/* Frees a closed conn (before-sleep only). */
void conn_free(struct conn *c);
ev_io_cb conn_io_cb;

/* upstream.c */
struct upconn *up_lease(struct worker *w, struct backend *b, bool fresh_only, int *err);
void up_release(struct upconn *u, bool reuse);
void up_prune_removed(struct worker *w);
void up_close_idle_all(struct worker *w);
void up_free(struct upconn *u);
extern ev_io_cb *const conn_up_io_cb;

/* admin.c */
/* The total deadline of an admin request body (ms), under --body-deadline. */
#define ADMIN_BODY_DEADLINE 10000
/* Judges an admin request on its head alone: path, token, method, Origin,
 * media type and declared length. Returns true to read the body and go on
 * to admin_handle(); false when it answered (the connection closes after if
 * a body was announced). */
bool admin_check_head(struct conn *c, const struct http1_msg *m);
/* The largest body the admin route of <path> and <method> takes. */
uint64_t admin_body_limit(const char *path, const char *method);
/* Answers an admin request whose head admin_check_head() accepted. */
void admin_handle(struct conn *c);

/* worker.c */
int worker_init(struct worker *w, struct server *s, unsigned id, int lfd, int afd);
void *worker_main(void *arg);
void worker_free(struct worker *w);
void worker_log_access(struct conn *c, const char *backend);
void worker_conn_closed(struct worker *w, bool admin);

/* main.c: starts draining every worker (SIGTERM, POST /api/drain). */
void server_start_drain(struct server *s);

#endif
