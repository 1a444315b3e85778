/* SPDX-License-Identifier: MIT
 * The simulator's server internals: the state shared by the files that run
 * the event loop, and each file's contract. sim.h has the parts that need no
 * loop (config, fault specs, the slot scheduler, bodies, files).
 *
 *   server.c  the process: sim_run(), the listener, signals, and the loop's
 *             before-sleep pass (start queued generations, replay work
 *             deferred while frozen, free closed connections)
 *   conn.c    one client connection: accept, read and frame requests (the
 *             request state machine), write, the slow-headers drip, close
 *   routes.c  which route a request is, the request-level gates (faults,
 *             API key), and the answer of every route but the generations
 *   gen.c     generations: from a parsed request body to the last token,
 *             waiting for and holding a slot of slots.c
 *   reply.c   the bytes of response heads, error answers and SSE events,
 *             as hyper 0.14 writes them
 *   faults.c  what a request's faults do to its answer (and, in sim.h, the
 *             fault specs)
 *
 * Threading: one thread. Everything runs on the event loop of sim_run(); no
 * locks, no atomics, and the global sim_srv is that loop's state.
 *
 * Ownership: sim_srv owns every connection (on sim_srv.all from accept to
 * free). A connection owns its buffers and its one generation (embedded, so
 * a generation never outlives its connection). sim_conn_close() only marks
 * and unlinks from the scheduler; the before-sleep pass frees, so a callback
 * may keep using a connection it has just closed until it returns. */
#ifndef LLAMALB_SIM_SERVER_H
#define LLAMALB_SIM_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "buf.h"
#include "ev.h"
#include "http1.h"
#include "list.h"
#include "sim.h"

/* ------------------------------------------------------------- routes.c */

/* The routes counted by /sim/stats, in its order. */
enum sim_route {
    SIM_R_ECHO = 0, SIM_R_CHAT, SIM_R_COMPLETIONS, SIM_R_EMBEDDINGS, SIM_R_MODELS, SIM_R_INFO,
    SIM_R_RESPONSES, SIM_R_FILES, SIM_R_CHUNKS, SIM_R_STATS, SIM_R_OTHER, SIM_R_COUNT,
};

/* Their names in /sim/stats. */
extern const char *const sim_route_names[SIM_R_COUNT];

/* The route of request path <path> (without the query). */
enum sim_route sim_route_of(struct slice path);

struct sim_conn;

/* Serves the complete request now in c->in (and c->body): either answers it
 * (sim_conn_request_done) or leaves the connection BUSY (a generation, the
 * hang fault). */
void sim_route_serve(struct sim_conn *c);

/* ---------------------------------------------------------------- state */

/* A connection is always in one of three request states. READ_HEAD and
 * READ_BODY gather one request from <in>; BUSY means a response is being
 * produced (waiting for a slot, generating, streaming, or never, for the
 * hang and stall faults). Pipelined requests stay in <in> until the current
 * response is complete, so answers go out in request order. */
enum sim_conn_state { SIM_ST_READ_HEAD = 0, SIM_ST_READ_BODY, SIM_ST_BUSY };

/* One generation (chat, completions, embeddings, responses), embedded in its
 * connection. It waits for or holds a slot from sim_gen_begin() to
 * sim_slot_release(). Fields before <timer> are reset per request. */
struct sim_gen {
    enum sim_api api;
    bool stream;          /* SSE answer (chat only) */
    bool usage;           /* stream ends with a usage chunk */
    struct sim_slot slot; /* queued for or holding a slot in sim_srv.sched */
    bool stalled;         /* stall fault hit: nothing more will be sent */
    unsigned n;           /* completion tokens to produce */
    unsigned sent;        /* tokens already sent (streams) */
    unsigned prompt;      /* prompt tokens */
    unsigned n_inputs;    /* embeddings: vectors to return */
    double next_at;       /* loop-clock ms of the next token (streams) or the end */
    double interval;      /* ms between tokens, 0 = none */
    int64_t created;      /* wall seconds */
    size_t id_len;
    char id[280];         /* response id, decoded */
    bool user_hdr;        /* send the user: header */
    struct ev_timer timer;
};

/* A client connection. Owned by sim_srv.all; sim_conn_close() marks it closed
 * and puts it on sim_srv.to_free, the before-sleep pass frees it. */
struct sim_conn {
    struct ev_io io;
    int fd;
    enum sim_conn_state st;
    bool closed;
    char rid[64];               /* X-Request-Id of the request (--request-log), "" = none */
    bool in_run;                /* inside the run loop: callees must not re-enter it */
    bool can_read, can_write;   /* readiness remembered between edges */
    bool close_after_write;     /* close once <out> is flushed */
    bool rst_after_write;       /* ... with a reset instead of a FIN */
    struct buf in, out;
    struct http1_msg msg;
    /* the current request, as offsets into <in> (stable until consumed) */
    size_t head_len, method_off, method_len, path_off, path_len;
    size_t body_raw;            /* request body bytes in <in> after the head */
    bool chunked;
    struct http1_chunked dec;
    size_t dec_off;             /* chunked: raw bytes decoded so far */
    struct buf body;            /* chunked: the decoded body */
    bool keep_alive;
    int minor;
    bool head_only;             /* HEAD request */
    bool auth_bad;
    bool fault_bad;             /* X-Sim-Fault did not parse */
    char fault_err[128];
    struct sim_fault fault;     /* instance faults plus this request's header */
    char ctype[256];            /* request Content-Type (multipart boundary) */
    bool in_flight;             /* counted in sim_srv.in_flight */
    /* response */
    bool streaming, chunked_out; /* SSE body; chunked (HTTP/1.1) or close-delimited */
    unsigned events;            /* SSE events sent */
    size_t drip_left;           /* slow-headers fault: head bytes still to drip */
    struct ev_timer drip;
    struct sim_gen g;
    /* work deferred while the server was frozen */
    unsigned pending_ev;        /* io events */
    bool pending_tick;          /* a generation timer */
    /* lists */
    struct list defer_node;     /* sim_srv.deferred (linked = has deferred work) */
    struct list all_node;       /* sim_srv.all */
    struct list free_node;      /* sim_srv.to_free once closed */
};

/* The one server of the process. */
struct sim_server {
    const struct sim_config *cfg;
    struct ev_loop *loop;
    int lfd;
    struct ev_io lio;
    int port;
    struct sim_slots sched;     /* slots, their FIFO, the frozen state */
    struct list deferred;       /* connections with work deferred while frozen, FIFO */
    struct list all;            /* every connection, newest first */
    struct list to_free;        /* closed connections, freed before the loop sleeps */
    uint64_t rng;               /* ids and jitter (xorshift64*) */
    int64_t start_ms, start_wall;
    uint64_t requests, in_flight, conns, route_count[SIM_R_COUNT];
    struct sim_files *files;
    struct buf scratch;         /* bodies built before their head; reused per request */
    char date[40];              /* "Tue, 29 Jul 2025 18:18:25 GMT" */
    time_t date_sec;
};

extern struct sim_server sim_srv;

/* --------------------------------------------------------------- conn.c */

/* The listener's callback: accepts up to 64 connections unless frozen. */
void sim_conn_accept_cb(struct ev_loop *loop, struct ev_io *io, unsigned events);

/* Runs the connection's request state machine (read, frame, serve, write)
 * until it needs to wait. Must not be on the stack for <c> already: use
 * sim_conn_kick() from code that may be. */
void sim_conn_run(struct sim_conn *c);

/* sim_conn_run() unless it is already on the stack for <c> or <c> is closed. */
void sim_conn_kick(struct sim_conn *c);

/* Writes what <out> holds as far as the socket takes it; closes when done if
 * close_after_write is set. No-op while the slow-headers drip runs. */
void sim_conn_flush(struct sim_conn *c);

/* Marks <c> closed: leaves its slot or the queue, stops its timers and io,
 * closes the socket (RST if rst_after_write) and queues it for freeing.
 * Idempotent. <c> stays valid until the before-sleep pass. */
void sim_conn_close(struct sim_conn *c);

/* Frees a closed connection (unlinks it from sim_srv.all). */
void sim_conn_free(struct sim_conn *c);

/* Remembers that <c> has deferred work (pending_ev, pending_tick) for the
 * before-sleep pass, which replays it once the server thaws. */
void sim_conn_defer(struct sim_conn *c);

/* The current request is answered completely: drop it from <in>, go back to
 * reading the next one (which may already be buffered). */
void sim_conn_request_done(struct sim_conn *c);

/* The current request's body (decoded if it was chunked). */
void sim_conn_body(const struct sim_conn *c, const char **p, size_t *len);

/* ---------------------------------------------------------------- gen.c */

/* Starts generation request <api> on <c>: parses the body, answers 400/500
 * errors at once, else sets up c->g, sends a stream's head, and starts it
 * or queues it for a slot. */
void sim_gen_begin(struct sim_conn *c, enum sim_api api);

/* Starts c->g, which has just been given a slot. */
void sim_gen_start(struct sim_conn *c);

/* The generation timer's callback (also replayed after a thaw). */
void sim_gen_timer_cb(struct ev_loop *loop, struct ev_timer *t);

/* -------------------------------------------------------------- reply.c
 *
 * Everything appends to c->out; nothing writes to the socket. */

/* Header groups of a response head, in the order the real handlers add them. */
#define SIM_H_CORS 0x1u /* access-control-allow-{origin,methods,headers}: * */
#define SIM_H_USER 0x2u /* user: <id> and requires-tool-call: false */
#define SIM_H_SSE 0x4u  /* streaming head: no length, cache-control, connection */

/* hyper's reason phrase for <status>. */
const char *sim_reply_reason(int status);

/* The status line alone ("HTTP/1.x N Reason\r\n"). */
void sim_reply_status(struct sim_conn *c, int status);

/* A response head. <ctype> NULL = no content-type; <clen> is the body length
 * (ignored with SIM_H_SSE). Arms the slow-headers drip if that fault is on. */
void sim_reply_head(struct sim_conn *c, int status, unsigned flags, const char *ctype,
                    size_t clen);

/* A complete response with a fixed-length body (no body for HEAD). */
void sim_reply_fixed(struct sim_conn *c, int status, unsigned flags, const char *ctype,
                     const char *body, size_t len);

/* A file download: the body with content-disposition. */
void sim_reply_download(struct sim_conn *c, int status, const char *ctype,
                        const char *disposition, const char *body, size_t len);

/* The real server's plain-text errors: CORS headers only, no content-type. */
void sim_reply_text(struct sim_conn *c, int status, const char *text, size_t len);
void sim_reply_textf(struct sim_conn *c, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A request head the parser refused: the status, an empty body, and the
 * connection closed after it (what hyper does). Leaves <c> BUSY. */
void sim_reply_parse_error(struct sim_conn *c, int status);

/* One SSE event as one HTTP chunk (or raw for a close-delimited body). */
void sim_reply_event(struct sim_conn *c, const char *ev, size_t len);

/* ------------------------------------------------------------- faults.c */

/* The request-level faults, checked after /sim/stats and before the API key:
 * a bad X-Sim-Fault (400), hang, garbage, reset, unhealthy-for, status.
 * Returns true if a fault answered the request (or, for hang, took it). */
bool sim_fault_answer(struct sim_conn *c);

/* Streams, before each event: close-after and stall-after. Returns true if
 * the stream must not go on (the connection is then closed or stalled). */
bool sim_fault_stream(struct sim_conn *c);

/* Non-streaming generations, when the answer is due: close-after=0 and
 * stall-after=0. Returns true if a fault took the answer's place. */
bool sim_fault_finish(struct sim_conn *c);

#endif
