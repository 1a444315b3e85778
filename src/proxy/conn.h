/* SPDX-License-Identifier: MIT
 * Client connections (struct conn) and the request in progress on one
 * (struct exchange): the client side of the request path.
 *
 *   accept -> CS_HEAD: read + strict parse of the head; bad -> 4xx + close
 *          -> CS_BODY: read the body (CL or chunked, bounded, de-chunked)
 *          -> route.c: classify, pick a backend or queue (CS_QUEUED)
 *          -> upstream.c (CS_UPSTREAM): lease or connect, send, read the
 *             response head; retries while nothing reached the client
 *          -> relay.c (CS_RELAY): the body as it arrives, never buffering
 *             more than one read; a slow client stops upstream reads
 *          -> finish: access log, next pipelined request or close
 *   A request the balancer answers itself (admin API, /v1/models, errors)
 *   is CS_LOCAL while its answer is queued.
 *
 * A conn belongs to one worker and is touched only by its thread. Sockets
 * are edge-triggered: callbacks record readiness (rd_ready, wr_ready) and
 * the code reads or writes until EAGAIN. */
#ifndef LLAMALB_CONN_H
#define LLAMALB_CONN_H

#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "ev.h"
#include "http1.h"
#include "list.h"
#include "net.h"
#include "registry.h"
#include "server.h"

#define RELAY_TAIL 768 /* bytes of the response kept to read its "usage" */

enum conn_state {
    CS_HEAD = 0,  /* reading a request head, or idle between requests */
    CS_BODY,      /* reading the request body */
    CS_QUEUED,    /* every eligible backend is full: waiting in the gateway queue */
    CS_UPSTREAM,  /* request dispatched, waiting for the response head */
    CS_LOCAL,     /* being answered by the balancer itself (admin, /v1/models, errors) */
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
    /* The request head's parse state, then the response head's: the two
     * parses never overlap (header slices are valid only during a parse),
     * so they share the memory. */
    union {
        struct http1_msg req;
        struct http1_msg resp;
    };
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
    /* API keys (keys.h): the key the request came with, the keyring that
     * holds it (referenced), and whether its limits counted the request */
    const struct api_key *key;
    struct keyring *keyring;
    bool key_admitted;
    /* The Authorization line in uphead (offset, length; 0 = none): kept
     * while the request may go to the active replica, which checks and
     * counts the key itself; cut before any backend sees it (route.c). */
    unsigned auth_off, auth_len;
    uint64_t prompt_tokens, completion_tokens; /* the answer's usage, if it said */

    /* upstream side */
    struct upconn *up;
    struct backend *be;         /* referenced; in-flight slot held until slot_done */
    bool slot_done;             /* the backend answered in full: its slot is back */
    struct backend *tried[REG_MAX_TRIES];
    unsigned ntried;
    unsigned stale_retries;
    bool fresh_only;            /* after a stale pooled connection: connect anew */
    /* replicas (follow.h): how the request travels */
    unsigned char via;          /* enum follow_via: not a replica, to the active, local, hop */
    bool hopped;                /* came from another replica: never forwarded again */
    bool hop_hdr;               /* uphead ends with the hop header (forward attempt) */
    bool fwd_failed;            /* the active was tried and failed: serve it here */

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
    bool sse_cr;                /* ... and a CR was seen at that line's start */
    unsigned sse_events;        /* SSE events seen (blank-line terminated) */
    /* The last bytes of the response payload: "usage" is at the end of an
     * answer (and in the last chunk of a stream that asked for it). */
    char tail[RELAY_TAIL];
    unsigned tail_len;
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

static inline struct server *conn_srv(const struct conn *c) { return c->w->srv; }
static inline const struct cfg *conn_cfg(const struct conn *c) { return &c->w->rt->cfg; }
static inline int64_t conn_now(const struct conn *c) { return ev_now(c->w->loop); }

void conn_accept(struct worker *w, int fd, const struct net_addr *peer, bool admin);
void conn_close(struct conn *c);
/* Ends a connection with a reset, not a FIN: a client reading a response
 * delimited by the close must not take a cut stream for a whole one. */
void conn_abort(struct conn *c);
/* Starts draining a client connection: close it if idle, else after its response. */
void conn_drain(struct conn *c);
/* Frees a closed conn (before-sleep only). */
void conn_free(struct conn *c);
ev_io_cb conn_io_cb;

/* Queues a complete response made by the balancer (error bodies, admin). */
void conn_respond(struct conn *c, int status, const char *ctype, const char *body, size_t len,
                  const char *extra_headers);
/* An OpenAI-style JSON error: {"error":{"message","type","param","code"}}. */
void conn_error(struct conn *c, int status, const char *message, const char *type,
                const char *code);
/* Writes what is queued for the client (c->out, then relayed bytes). */
void conn_flush(struct conn *c);
/* Continues on the next loop iteration (a fairness cap was reached). */
void conn_resume_later(struct conn *c);
/* Arms the connection's deadline <ms> from now. */
void conn_arm(struct conn *c, int64_t ms);

/* After a response the balancer made itself: keep the connection for the
 * next request unless it must close. */
void conn_finish_local(struct conn *c);
/* Completes a request the balancer answered itself (logs it, then as above). */
void conn_local_done(struct conn *c);
/* After a relayed response: close, or go on with the next request. */
void conn_next_request(struct conn *c);

/* Frees the request body and gives its memory back to the process budget. */
void exchange_body_free(struct exchange *x);

#endif
