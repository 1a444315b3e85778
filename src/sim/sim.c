/* SPDX-License-Identifier: MIT
 * The simulator's server: one event loop, one connection state machine, and
 * a scheduler that hands out generation slots in FIFO order. It reproduces
 * what a client of llama-api-server 0.28.1 sees on the wire (hyper 0.14's
 * framing: lowercase header names in handler order, then content-length or
 * transfer-encoding, then date) and its one-at-a-time behaviour
 * (docs/sim.md, Scheduling): while a non-streaming generation runs, the
 * whole process answers nothing else, unless that is turned off. */

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "ev.h"
#include "http1.h"
#include "json.h"
#include "log.h"
#include "net.h"
#include "sim.h"
#include "util.h"

/* ---------------------------------------------------------------- state
 *
 * A connection is always in one of three request states. READ_HEAD and
 * READ_BODY gather one request from <in>; BUSY means a response is being
 * produced (waiting for a slot, generating, streaming, or never, for the
 * hang and stall faults). Pipelined requests stay in <in> until the current
 * response is complete, so answers go out in request order. */

enum route {
    R_ECHO = 0, R_CHAT, R_COMPLETIONS, R_EMBEDDINGS, R_MODELS, R_INFO, R_RESPONSES,
    R_FILES, R_CHUNKS, R_STATS, R_OTHER, R_COUNT,
};

static const char *const route_names[R_COUNT] = {
    "echo", "chat", "completions", "embeddings", "models", "info", "responses",
    "files", "chunks", "stats", "other",
};

enum conn_state { ST_READ_HEAD = 0, ST_READ_BODY, ST_BUSY };

#define IN_LIMIT (64 * 1024) /* bytes of pipelined input buffered while busy */

/* One generation (chat, completions, embeddings, responses), embedded in its
 * connection. It holds a slot from start_gen() to sim_slot_release(). */
struct gen {
    enum sim_api api;
    bool stream;         /* SSE answer (chat only) */
    bool usage;          /* stream ends with a usage chunk */
    struct sim_slot slot; /* queued for or holding a slot in srv.sched */
    bool stalled;        /* stall fault hit: nothing more will be sent */
    unsigned n;          /* completion tokens to produce */
    unsigned sent;       /* tokens already sent (streams) */
    unsigned prompt;     /* prompt tokens */
    unsigned n_inputs;   /* embeddings: vectors to return */
    double next_at;      /* loop-clock ms of the next token (streams) or the end */
    double interval;     /* ms between tokens, 0 = none */
    int64_t created;     /* wall seconds */
    size_t id_len;
    char id[280];        /* response id, decoded */
    bool user_hdr;       /* send the user: header */
    struct ev_timer timer;
};

/* A client connection. Owned by the server's <all> list; conn_close() marks
 * it closed and queues it, the before-sleep hook frees it. */
struct conn {
    struct ev_io io;
    int fd;
    enum conn_state st;
    bool closed;
    bool in_run;                /* inside conn_run(): callees must not re-enter it */
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
    bool in_flight;             /* counted in srv.in_flight */
    /* response */
    bool streaming, chunked_out; /* SSE body; chunked (HTTP/1.1) or close-delimited */
    unsigned events;            /* SSE events sent */
    size_t drip_left;           /* slow-headers fault: head bytes still to drip */
    struct ev_timer drip;
    struct gen g;
    /* lists */
    unsigned pending_ev;        /* events deferred while the server was frozen */
    bool pending_tick;          /* a generation tick deferred while frozen */
    bool in_deferred;
    struct conn *dnext;         /* srv.deferred */
    struct conn *aprev, *anext; /* srv.all */
    struct conn *fnext;         /* srv.to_free */
};

static struct server {
    const struct sim_config *cfg;
    struct ev_loop *loop;
    int lfd;
    struct ev_io lio;
    int port;
    struct sim_slots sched;     /* slots, their FIFO, the frozen state */
    struct conn *dhead, *dtail; /* connections with deferred work */
    struct conn *all;
    struct conn *to_free;
    uint64_t rng;
    int64_t start_ms, start_wall;
    uint64_t requests, in_flight, conns, route_count[R_COUNT];
    struct sim_files *files;
    char date[40];              /* "Tue, 29 Jul 2025 18:18:25 GMT" */
    time_t date_sec;
} srv;

static volatile sig_atomic_t stop_requested;

static void conn_run(struct conn *c);
static void conn_kick(struct conn *c);
static void conn_flush(struct conn *c);
static void gen_tick(struct conn *c);
static void start_gen(struct conn *c);

/* ---------------------------------------------------------------- config */

void sim_config_init(struct sim_config *c)
{
    memset(c, 0, sizeof(*c));
    c->listen = "0.0.0.0:8080";
    snprintf(c->model, sizeof(c->model), "default");
    c->slots = 1;
    c->completion_tokens = 16;
    c->max_tokens_cap = 100000;
    c->embedding_dim = 8;
    c->embeddings = true;
    c->block = -1;
    sim_fault_init(&c->fault);
}

/* ---------------------------------------------------------------- lists */

static void defer(struct conn *c)
{
    if (c->in_deferred)
        return;
    c->in_deferred = true;
    c->dnext = NULL;
    if (srv.dtail)
        srv.dtail->dnext = c;
    else
        srv.dhead = c;
    srv.dtail = c;
}

/* ---------------------------------------------------------------- freeze
 *
 * The real server computes a non-streaming answer synchronously on its only
 * thread. Freezing reproduces that: the listener stops accepting and every
 * callback of every connection is recorded and replayed after the thaw. */

/* Told by the scheduler of each freeze and thaw: stop or resume accepting. */
static void listener_freeze(void *arg, bool frozen)
{
    UNUSED(arg);
    ev_io_set_mask(srv.loop, &srv.lio, frozen ? 0 : EV_READ);
}

/* ---------------------------------------------------------------- output */

/* hyper's reason phrases (the http crate's canonical ones, "Payload Too
 * Large" for 413, "<unknown status code>" otherwise), not llamalb's RFC 9110
 * ones: the simulator copies the real server's bytes. */
static const char *reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 417: return "Expectation Failed";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "<unknown status code>";
    }
}

static const char *date_now(void)
{
    time_t now = time(NULL);
    if (now != srv.date_sec) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(srv.date, sizeof(srv.date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        srv.date_sec = now;
    }
    return srv.date;
}

#define OUT_LIT(b, s) buf_append((b), (s), sizeof(s) - 1)

static void put_uint(struct buf *b, uint64_t v)
{
    char tmp[24];
    size_t i = sizeof(tmp);
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    buf_append(b, tmp + i, sizeof(tmp) - i);
}

/* Header groups of a response head, in the order the real handlers add them. */
#define H_CORS 0x1u  /* access-control-allow-{origin,methods,headers}: * */
#define H_USER 0x2u  /* user: <id> and requires-tool-call: false */
#define H_SSE 0x4u   /* streaming head: no length, cache-control, connection */

static void put_status(struct conn *c, int status)
{
    struct buf *o = &c->out;
    if (c->minor == 0)
        OUT_LIT(o, "HTTP/1.0 ");
    else
        OUT_LIT(o, "HTTP/1.1 ");
    put_uint(o, (uint64_t)status);
    OUT_LIT(o, " ");
    buf_append_str(o, reason(status));
    OUT_LIT(o, "\r\n");
}

/* Appends a response head to <out>. <ctype> NULL = no Content-Type;
 * <clen> is the body length (ignored with H_SSE). */
static void put_head(struct conn *c, int status, unsigned flags, const char *ctype,
                     size_t clen)
{
    struct buf *o = &c->out;
    size_t before = o->len;
    put_status(c, status);
    if (flags & H_CORS)
        OUT_LIT(o, "access-control-allow-origin: *\r\naccess-control-allow-methods: *\r\n"
                   "access-control-allow-headers: *\r\n");
    if (ctype != NULL) {
        OUT_LIT(o, "content-type: ");
        buf_append_str(o, ctype);
        OUT_LIT(o, "\r\n");
    }
    if (flags & H_SSE)
        OUT_LIT(o, "cache-control: no-cache\r\nconnection: keep-alive\r\n");
    if (flags & H_USER) {
        OUT_LIT(o, "user: ");
        /* A header value cannot carry control characters; hyper would
         * refuse them, the simulator masks them. */
        char *d = buf_reserve(o, c->g.id_len);
        for (size_t i = 0; i < c->g.id_len; i++) {
            unsigned char ch = (unsigned char)c->g.id[i];
            d[i] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
        }
        buf_commit(o, c->g.id_len);
        OUT_LIT(o, "\r\nrequires-tool-call: false\r\n");
    }
    OUT_LIT(o, "x-sim-id: ");
    buf_append_str(o, srv.cfg->id);
    OUT_LIT(o, "\r\n");
    if (flags & H_SSE) {
        if (c->minor == 1)
            OUT_LIT(o, "transfer-encoding: chunked\r\n");
    } else {
        if (!c->keep_alive && c->minor == 1)
            OUT_LIT(o, "connection: close\r\n");
        else if (c->keep_alive && c->minor == 0)
            OUT_LIT(o, "connection: keep-alive\r\n");
        OUT_LIT(o, "content-length: ");
        put_uint(o, clen);
        OUT_LIT(o, "\r\n");
    }
    OUT_LIT(o, "date: ");
    buf_append_str(o, date_now());
    OUT_LIT(o, "\r\n\r\n");
    /* The slow-headers fault drips everything up to this blank line. */
    if (c->fault.slow_headers > 0 && c->drip_left == 0 && o->len > before)
        c->drip_left = o->len;
}

/* A complete response with a fixed-length body. */
static void send_fixed(struct conn *c, int status, unsigned flags, const char *ctype,
                       const char *body, size_t len)
{
    put_head(c, status, flags, ctype, len);
    if (!c->head_only)
        buf_append(&c->out, body, len);
}

/* The real server's plain-text errors: CORS headers only, no content-type. */
static void send_text_error(struct conn *c, int status, const char *text, size_t len)
{
    send_fixed(c, status, H_CORS, NULL, text, len);
}

static void send_text_errorf(struct conn *c, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void send_text_errorf(struct conn *c, int status, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    send_text_error(c, status, tmp, (size_t)MIN(n, (int)sizeof(tmp) - 1));
}

/* Scratch buffer for bodies built before their head (thread-local: one loop). */
static _Thread_local struct buf scratch;

/* ---------------------------------------------------------------- close */

static void conn_close(struct conn *c)
{
    if (c->closed)
        return;
    c->closed = true;
    sim_slot_release(&srv.sched, &c->g.slot);
    if (c->in_flight) {
        c->in_flight = false;
        srv.in_flight--;
    }
    ev_timer_stop(srv.loop, &c->g.timer);
    ev_timer_stop(srv.loop, &c->drip);
    ev_io_stop(srv.loop, &c->io);
    if (c->rst_after_write) {
        struct linger lg = {1, 0};
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    close(c->fd);
    c->fd = -1;
    c->fnext = srv.to_free;
    srv.to_free = c;
}

static void conn_free(struct conn *c)
{
    if (c->aprev)
        c->aprev->anext = c->anext;
    else
        srv.all = c->anext;
    if (c->anext)
        c->anext->aprev = c->aprev;
    buf_free(&c->in);
    buf_free(&c->out);
    buf_free(&c->body);
    free(c);
    srv.conns--;
}

/* ---------------------------------------------------------------- slots */

static double jittered(double ms)
{
    if (srv.cfg->jitter_pct == 0 || ms <= 0)
        return ms;
    double j = (double)srv.cfg->jitter_pct / 100.0;
    return ms * (1.0 + j * (2.0 * util_rand01(&srv.rng) - 1.0));
}

/* The request is answered completely: drop it from <in> and go back to
 * reading the next one (which may already be buffered). */
static void request_done(struct conn *c)
{
    buf_consume(&c->in, c->head_len + c->body_raw);
    buf_release(&c->in);
    buf_free(&c->body);
    c->st = ST_READ_HEAD;
    c->streaming = false;
    c->events = 0;
    if (c->in_flight) {
        c->in_flight = false;
        srv.in_flight--;
    }
    if (!c->keep_alive)
        c->close_after_write = true;
}

static void gen_info(const struct conn *c, struct sim_gen_info *gi)
{
    gi->id = c->g.id;
    gi->id_len = c->g.id_len;
    gi->model = srv.cfg->model;
    gi->created = c->g.created;
    gi->prompt_tokens = c->g.prompt;
    gi->completion_tokens = c->g.n;
}

static void finish_nonstream(struct conn *c)
{
    if (c->fault.close_after == 0) {
        sim_slot_release(&srv.sched, &c->g.slot);
        conn_close(c);
        return;
    }
    if (c->fault.stall_after == 0) {
        /* Never answers; keeps its slot like a hung generation, but lets the
         * rest of the server run. */
        c->g.stalled = true;
        sim_slot_unfreeze(&srv.sched, &c->g.slot);
        return;
    }
    struct sim_gen_info gi;
    gen_info(c, &gi);
    scratch.len = 0;
    scratch.off = 0;
    switch (c->g.api) {
    case SIM_API_CHAT: sim_body_chat(&scratch, &gi); break;
    case SIM_API_COMPLETIONS: sim_body_completion(&scratch, &gi); break;
    case SIM_API_EMBEDDINGS:
        sim_body_embeddings(&scratch, &gi, c->g.n_inputs, srv.cfg->embedding_dim);
        break;
    case SIM_API_RESPONSES: sim_body_response(&scratch, &gi); break;
    }
    send_fixed(c, 200, H_CORS | (c->g.user_hdr ? H_USER : 0), "application/json",
               buf_data(&scratch), scratch.len);
    sim_slot_release(&srv.sched, &c->g.slot);
    request_done(c);
}

static void gen_timer_cb(struct ev_loop *loop, struct ev_timer *t)
{
    struct conn *c = t->data;
    UNUSED(loop);
    if (srv.sched.frozen && srv.sched.frozen_by != &c->g.slot) {
        c->pending_tick = true;
        defer(c);
        return;
    }
    if (c->g.stream) {
        gen_tick(c);
    } else {
        finish_nonstream(c);
        conn_kick(c);
    }
}

static void start_gen(struct conn *c)
{
    double now = (double)ev_now(srv.loop);
    double ttft = jittered((double)srv.cfg->ttft_ms);
    c->g.interval = srv.cfg->tokens_per_sec > 0 ? 1000.0 / srv.cfg->tokens_per_sec : 0;
    if (c->g.stream) {
        c->g.next_at = now + ttft;
        gen_tick(c);
        return;
    }
    double total = ttft;
    for (unsigned i = 1; i < c->g.n && c->g.interval > 0; i++)
        total += jittered(c->g.interval);
    if (total < 0.5) {
        finish_nonstream(c);
        return;
    }
    sim_slot_freeze(&srv.sched, &c->g.slot);
    ev_timer_at(srv.loop, &c->g.timer, (int64_t)ceil(now + total), gen_timer_cb, c);
}

/* ---------------------------------------------------------------- streams */

/* Appends <ev> as one HTTP chunk (or raw bytes for a close-delimited body). */
static void put_event(struct conn *c, const char *ev, size_t len)
{
    struct buf *o = &c->out;
    if (c->chunked_out) {
        char hex[20];
        int n = snprintf(hex, sizeof(hex), "%zx\r\n", len);
        buf_append(o, hex, (size_t)n);
    }
    buf_append(o, ev, len);
    if (c->chunked_out)
        OUT_LIT(o, "\r\n");
    c->events++;
}

/* Applies the close-after / stall-after faults before the next event.
 * Returns true if the stream must not go on. */
static bool stream_fault(struct conn *c)
{
    if (c->fault.close_after >= 0 && c->events >= (unsigned)c->fault.close_after) {
        conn_flush(c);
        conn_close(c);
        return true;
    }
    if (c->fault.stall_after >= 0 && c->events >= (unsigned)c->fault.stall_after) {
        c->g.stalled = true;
        conn_flush(c);
        return true;
    }
    return false;
}

static void gen_tick(struct conn *c)
{
    struct sim_gen_info gi;
    double now = (double)ev_now(srv.loop);
    gen_info(c, &gi);
    while (c->g.sent < c->g.n) {
        if (c->g.next_at > now + 0.5) {
            ev_timer_at(srv.loop, &c->g.timer, (int64_t)ceil(c->g.next_at), gen_timer_cb, c);
            conn_flush(c);
            return;
        }
        if (stream_fault(c))
            return;
        scratch.off = scratch.len = 0;
        sim_sse_token(&scratch, &gi, c->g.sent);
        put_event(c, buf_data(&scratch), scratch.len);
        c->g.sent++;
        c->g.next_at += jittered(c->g.interval);
    }
    if (c->g.usage) {
        if (stream_fault(c))
            return;
        scratch.off = scratch.len = 0;
        sim_sse_usage(&scratch, &gi);
        put_event(c, buf_data(&scratch), scratch.len);
    }
    if (stream_fault(c))
        return;
    put_event(c, "data: [DONE]\n\n", 14);
    sim_slot_release(&srv.sched, &c->g.slot);
    if (c->chunked_out) {
        OUT_LIT(&c->out, "0\r\n\r\n");
        request_done(c);
    } else {
        request_done(c);
        c->close_after_write = true; /* the end of a close-delimited body */
    }
    conn_kick(c);
}

/* ---------------------------------------------------------------- routes */

static bool path_is(struct slice p, const char *s)
{
    return slice_eq_cstr(p, s);
}

static void handle_stats(struct conn *c)
{
    struct buf *b = &scratch;
    b->off = b->len = 0;
    buf_printf(b, "{\"id\":");
    json_append_str(b, srv.cfg->id, strlen(srv.cfg->id));
    buf_printf(b, ",\"model\":");
    json_append_str(b, srv.cfg->model, strlen(srv.cfg->model));
    buf_printf(b,
               ",\"requests\":%llu,\"in_flight\":%llu,\"active\":%u,\"queued\":%u,"
               "\"slots\":%u,\"connections\":%llu,\"frozen\":%s,\"routes\":{",
               (unsigned long long)srv.requests, (unsigned long long)srv.in_flight,
               srv.sched.active, srv.sched.queued, srv.cfg->slots,
               (unsigned long long)srv.conns, srv.sched.frozen ? "true" : "false");
    for (int i = 0; i < R_COUNT; i++)
        buf_printf(b, "%s\"%s\":%llu", i ? "," : "", route_names[i],
                   (unsigned long long)srv.route_count[i]);
    buf_printf(b, "}}");
    send_fixed(c, 200, 0, "application/json", buf_data(b), b->len);
}

static void req_body(struct conn *c, const char **p, size_t *len)
{
    if (c->chunked) {
        *p = c->body.area ? buf_data(&c->body) : "";
        *len = c->body.len;
    } else {
        *p = buf_data(&c->in) + c->head_len;
        *len = c->body_raw;
    }
}

static void handle_gen(struct conn *c, enum sim_api api)
{
    const char *body;
    size_t len;
    struct sim_req r;
    req_body(c, &body, &len);
    scratch.off = scratch.len = 0;
    if (sim_parse_request(api, body, len, &r, &scratch) != 0) {
        send_text_error(c, 400, buf_data(&scratch), scratch.len);
        request_done(c);
        return;
    }
    if (api == SIM_API_EMBEDDINGS && !srv.cfg->embeddings) {
        static const char t[] = "500 Internal Server Error: Computing embeddings is only "
                                "supported in the embeddings and rag modes.";
        send_text_error(c, 500, t, sizeof(t) - 1);
        request_done(c);
        return;
    }
    struct gen *g = &c->g;
    memset(g, 0, offsetof(struct gen, timer));
    g->api = api;
    g->stream = api == SIM_API_CHAT && r.stream;
    g->usage = r.include_usage >= 0 ? r.include_usage == 1 : srv.cfg->include_usage;
    g->prompt = r.prompt_tokens;
    g->n_inputs = r.n_inputs;
    if (api == SIM_API_EMBEDDINGS)
        g->n = 0;
    else if (r.max_tokens >= 0)
        g->n = (unsigned)MIN(r.max_tokens, (int64_t)srv.cfg->max_tokens_cap);
    else
        g->n = srv.cfg->completion_tokens;
    g->created = util_wall_s();
    g->user_hdr = api == SIM_API_CHAT;
    if (api == SIM_API_CHAT && r.user[0] != '\0') {
        g->id_len = strlen(r.user);
        memcpy(g->id, r.user, g->id_len + 1);
    } else if (api != SIM_API_EMBEDDINGS) {
        char u[37];
        sim_uuid(&srv.rng, u);
        g->id_len = (size_t)snprintf(g->id, sizeof(g->id), "%s%s",
                                     api == SIM_API_CHAT          ? "chatcmpl-"
                                     : api == SIM_API_COMPLETIONS ? "cmpl-"
                                                                  : "resp_",
                                     u);
    }
    c->st = ST_BUSY;
    if (g->stream) {
        /* The real server answers 200 and the SSE head at once; the body
         * waits for the slot (docs/sim.md, Scheduling). */
        c->streaming = true;
        c->chunked_out = c->minor == 1;
        if (!c->chunked_out)
            c->keep_alive = false;
        put_head(c, 200, H_CORS | H_SSE | H_USER, "text/event-stream", 0);
        conn_flush(c);
        if (c->closed)
            return;
    }
    if (sim_slot_acquire(&srv.sched, &g->slot))
        start_gen(c);
}

static void handle_files(struct conn *c, struct slice method, struct slice path)
{
    const char *body;
    size_t len;
    struct sim_files_reply rep;
    req_body(c, &body, &len);
    scratch.off = scratch.len = 0;
    memset(&rep, 0, sizeof(rep));
    sim_files_handle(srv.files, method, path, slice_cstr(c->ctype), body, len, &srv.rng,
                     &scratch, &rep);
    if (rep.disposition[0] != '\0') {
        /* A download: the body is the file, with its name attached. */
        put_status(c, rep.status);
        OUT_LIT(&c->out, "access-control-allow-origin: *\r\naccess-control-allow-methods: *\r\n"
                         "access-control-allow-headers: *\r\ncontent-type: ");
        buf_append_str(&c->out, rep.ctype ? rep.ctype : "application/octet-stream");
        OUT_LIT(&c->out, "\r\ncontent-disposition: ");
        buf_append_str(&c->out, rep.disposition);
        OUT_LIT(&c->out, "\r\nx-sim-id: ");
        buf_append_str(&c->out, srv.cfg->id);
        OUT_LIT(&c->out, "\r\ncontent-length: ");
        put_uint(&c->out, scratch.len);
        OUT_LIT(&c->out, "\r\ndate: ");
        buf_append_str(&c->out, date_now());
        OUT_LIT(&c->out, "\r\n\r\n");
        if (!c->head_only)
            buf_append(&c->out, buf_data(&scratch), scratch.len);
        return;
    }
    send_fixed(c, rep.status, H_CORS, rep.ctype, buf_data(&scratch), scratch.len);
}

/* Serves the complete request now in <in> (and <body>). Either answers it
 * (request_done) or leaves the connection BUSY. */
static void handle_request(struct conn *c)
{
    const char *base = buf_data(&c->in);
    struct slice method = slice_make(base + c->method_off, c->method_len);
    struct slice target = slice_make(base + c->path_off, c->path_len);
    struct slice path = target;
    const char *q = memchr(target.p, '?', target.len);
    if (q != NULL)
        path.len = (size_t)(q - target.p);

    enum route rt = R_OTHER;
    if (path_is(path, "/echo") || slice_starts_with(path, "/echo/"))
        rt = R_ECHO;
    else if (path_is(path, "/v1/chat/completions"))
        rt = R_CHAT;
    else if (path_is(path, "/v1/completions"))
        rt = R_COMPLETIONS;
    else if (path_is(path, "/v1/embeddings"))
        rt = R_EMBEDDINGS;
    else if (path_is(path, "/v1/models"))
        rt = R_MODELS;
    else if (path_is(path, "/v1/info"))
        rt = R_INFO;
    else if (path_is(path, "/v1/responses"))
        rt = R_RESPONSES;
    else if (path_is(path, "/v1/files") || slice_starts_with(path, "/v1/files/"))
        rt = R_FILES;
    else if (path_is(path, "/v1/chunks"))
        rt = R_CHUNKS;
    else if (path_is(path, "/sim/stats"))
        rt = R_STATS;

    srv.requests++;
    srv.route_count[rt]++;
    c->in_flight = true;
    srv.in_flight++;
    c->st = ST_BUSY;

    if (rt == R_STATS) {
        handle_stats(c);
        request_done(c);
        return;
    }
    if (c->fault_bad) {
        send_text_errorf(c, 400, "400 Bad Request: X-Sim-Fault: %s", c->fault_err);
        request_done(c);
        return;
    }
    const struct sim_fault *f = &c->fault;
    if (f->hang)
        return; /* BUSY forever: only the client's close ends it */
    if (f->garbage) {
        OUT_LIT(&c->out, "SSH-2.0-OpenSSH_9.2 this is not HTTP\r\n\r\n");
        c->close_after_write = true;
        request_done(c);
        return;
    }
    if (f->reset) {
        put_status(c, 200);
        c->close_after_write = true;
        c->rst_after_write = true;
        request_done(c);
        return;
    }
    if (srv.cfg->fault.unhealthy_ms > 0 &&
        ev_now(srv.loop) - srv.start_ms < srv.cfg->fault.unhealthy_ms) {
        static const char t[] = "503 Service Unavailable: the simulated server is not ready";
        send_text_error(c, 503, t, sizeof(t) - 1);
        request_done(c);
        return;
    }
    if (f->status > 0) {
        if (f->status == 500)
            send_text_errorf(c, 500, "500 Internal Server Error: Failed to get chat "
                                     "completions. Reason: simulated fault");
        else
            send_text_errorf(c, f->status, "%d %s: simulated fault", f->status,
                             reason(f->status));
        request_done(c);
        return;
    }
    if (c->auth_bad) {
        static const char t[] = "401 Unauthorized: Invalid API key.";
        send_text_error(c, 401, t, sizeof(t) - 1);
        request_done(c);
        return;
    }

    switch (rt) {
    case R_ECHO: {
        static const char t[] = "echo test";
        send_fixed(c, 200, 0, NULL, t, sizeof(t) - 1);
        break;
    }
    case R_CHAT:
        if (slice_eq_cstr(method, "OPTIONS")) {
            send_fixed(c, 200, H_CORS, "application/json", "", 0);
            break;
        }
        handle_gen(c, SIM_API_CHAT); /* answers, or leaves the connection BUSY */
        return;
    case R_COMPLETIONS:
        handle_gen(c, SIM_API_COMPLETIONS);
        return;
    case R_EMBEDDINGS:
        handle_gen(c, SIM_API_EMBEDDINGS);
        return;
    case R_RESPONSES:
        handle_gen(c, SIM_API_RESPONSES);
        return;
    case R_MODELS:
        scratch.off = scratch.len = 0;
        sim_body_models(&scratch, srv.cfg->model, srv.start_wall);
        send_fixed(c, 200, H_CORS, "application/json", buf_data(&scratch), scratch.len);
        break;
    case R_INFO:
        scratch.off = scratch.len = 0;
        sim_body_info(&scratch, srv.cfg->model, srv.port);
        send_fixed(c, 200, H_CORS, "application/json", buf_data(&scratch), scratch.len);
        break;
    case R_FILES:
    case R_CHUNKS:
        handle_files(c, method, path);
        break;
    case R_OTHER:
        if (slice_starts_with(path, "/v1/") || path_is(path, "/v1")) {
            send_text_errorf(c, 404, "404 The requested service endpoint is not found: %.*s",
                             (int)MIN(path.len, 400), path.p);
        } else {
            /* The static web UI has no such file. */
            send_fixed(c, 404, 0, "text/html", "", 0);
        }
        break;
    case R_STATS:
    case R_COUNT:
        break;
    }
    request_done(c);
}

/* ---------------------------------------------------------------- input */

/* Takes what this request needs from the headers, which live in the parser's
 * per-thread scratch array and are gone after the next parse. */
static void take_headers(struct conn *c)
{
    const struct http1_header *h;
    c->auth_bad = false;
    c->ctype[0] = '\0';
    c->fault_bad = sim_fault_from_headers(&c->fault, &srv.cfg->fault, &c->msg, c->fault_err,
                                          sizeof(c->fault_err)) != 0;
    h = http1_find(&c->msg, "content-type");
    if (h != NULL) {
        size_t n = MIN(h->value.len, sizeof(c->ctype) - 1);
        memcpy(c->ctype, h->value.p, n);
        c->ctype[n] = '\0';
    }
    if (srv.cfg->api_key != NULL) {
        /* Checked only when the header is present and non-empty, like
         * the real server (docs/sim.md, --api-key). */
        h = http1_find(&c->msg, "authorization");
        if (h != NULL && h->value.len > 0) {
            struct slice v = h->value, tok = {0};
            const char *sp = memchr(v.p, ' ', v.len);
            if (sp != NULL) {
                tok = slice_make(sp + 1, v.len - (size_t)(sp + 1 - v.p));
                const char *sp2 = memchr(tok.p, ' ', tok.len);
                if (sp2 != NULL)
                    tok.len = (size_t)(sp2 - tok.p);
            }
            c->auth_bad = !util_ct_equal(tok.p, tok.len, srv.cfg->api_key,
                                         strlen(srv.cfg->api_key));
        }
    }
}

/* A request head the parser refused: hyper answers the status with an empty
 * body and closes. */
static void send_parse_error(struct conn *c, int status)
{
    c->minor = 1;
    c->keep_alive = false;
    c->head_only = false;
    put_status(c, status);
    OUT_LIT(&c->out, "connection: close\r\ncontent-length: 0\r\nx-sim-id: ");
    buf_append_str(&c->out, srv.cfg->id);
    OUT_LIT(&c->out, "\r\ndate: ");
    buf_append_str(&c->out, date_now());
    OUT_LIT(&c->out, "\r\n\r\n");
    c->close_after_write = true;
    c->st = ST_BUSY;
}

/* Tries to complete and serve one request from <in>. Returns 1 when a
 * request was handled, 0 when more input is needed or the connection is
 * busy, -1 when the connection is closed or closing. */
static int try_request(struct conn *c)
{
    if (c->st == ST_READ_HEAD) {
        if (c->in.len == 0)
            return 0;
        int r = http1_parse_request(buf_data(&c->in), c->in.len, &c->msg,
                                    &http1_default_limits);
        if (r == -2)
            return 0;
        if (r == -1) {
            send_parse_error(c, c->msg.error ? c->msg.error : 400);
            return -1;
        }
        const char *base = buf_data(&c->in);
        c->head_len = (size_t)r;
        c->method_off = (size_t)(c->msg.method.p - base);
        c->method_len = c->msg.method.len;
        c->path_off = (size_t)(c->msg.target.p - base);
        c->path_len = c->msg.target.len;
        c->keep_alive = c->msg.keep_alive;
        c->minor = c->msg.minor;
        c->head_only = slice_eq_cstr(c->msg.method, "HEAD");
        c->chunked = c->msg.framing == HTTP1_BODY_CHUNKED;
        c->body_raw = c->msg.framing == HTTP1_BODY_LENGTH ? (size_t)c->msg.content_length : 0;
        memset(&c->dec, 0, sizeof(c->dec));
        c->dec_off = 0;
        take_headers(c);
        bool body_missing = c->chunked || c->in.len < c->head_len + c->body_raw;
        if (c->msg.expect_continue && body_missing)
            OUT_LIT(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
        http1_msg_reset(&c->msg);
        c->st = ST_READ_BODY;
    }
    if (c->st == ST_READ_BODY) {
        if (c->chunked) {
            for (;;) {
                size_t at = c->head_len + c->dec_off, used = 0;
                struct slice data;
                enum http1_chunk_rc rc = http1_chunked_decode(
                    &c->dec, buf_data(&c->in) + at, c->in.len - at, &used, &data);
                c->dec_off += used;
                if (rc == HTTP1_CHUNK_DATA) {
                    if (c->body.len + data.len > http1_default_limits.max_body) {
                        send_parse_error(c, 413);
                        return -1;
                    }
                    buf_append(&c->body, data.p, data.len);
                    continue;
                }
                if (rc == HTTP1_CHUNK_MORE)
                    return 0;
                if (rc == HTTP1_CHUNK_ERROR) {
                    send_parse_error(c, 400);
                    return -1;
                }
                c->body_raw = c->dec_off;
                break;
            }
        } else if (c->in.len < c->head_len + c->body_raw) {
            return 0;
        }
        handle_request(c);
        return 1;
    }
    return 0;
}

/* Reads once into <in>. Returns 1 if bytes arrived, 0 if none (EAGAIN or the
 * buffer limit), -1 if the connection was closed. */
static int conn_read(struct conn *c)
{
    size_t want = BUF_CHUNK;
    if (c->st == ST_BUSY && c->in.len >= IN_LIMIT)
        return 0; /* keep the edge: can_read stays set */
    if (c->st == ST_READ_BODY && !c->chunked) {
        size_t need = c->head_len + c->body_raw - c->in.len;
        want = MAX(want, MIN(need, (size_t)4 << 20));
    }
    char *p = buf_reserve(&c->in, want);
    size_t room = buf_room(&c->in);
    ssize_t n;
    do
        n = read(c->fd, p, room);
    while (n == -1 && errno == EINTR);
    if (n > 0) {
        buf_commit(&c->in, (size_t)n);
        if ((size_t)n < room)
            c->can_read = false; /* drained: the next arrival is a new edge */
        return 1;
    }
    if (n == -1 && errno == EAGAIN) {
        c->can_read = false;
        buf_release(&c->in);
        return 0;
    }
    /* EOF or error: hyper drops the connection and any response in progress
     * (for a stream that frees its slot: ChatStream::drop). */
    conn_close(c);
    return -1;
}

static void conn_flush(struct conn *c)
{
    if (c->closed || c->drip_left > 0)
        return;
    while (c->out.len > 0 && c->can_write) {
        ssize_t n = write(c->fd, buf_data(&c->out), c->out.len);
        if (n > 0) {
            bool short_write = (size_t)n < c->out.len;
            buf_consume(&c->out, (size_t)n);
            if (short_write)
                c->can_write = false;
            continue;
        }
        if (n == -1 && errno == EINTR)
            continue;
        if (n == -1 && errno == EAGAIN) {
            c->can_write = false;
            break;
        }
        conn_close(c);
        return;
    }
    if (c->out.len == 0) {
        buf_release(&c->out);
        if (c->close_after_write)
            conn_close(c);
    }
}

static void drip_cb(struct ev_loop *loop, struct ev_timer *t)
{
    struct conn *c = t->data;
    UNUSED(loop);
    if (c->out.len > 0 && c->drip_left > 0) {
        ssize_t n = write(c->fd, buf_data(&c->out), 1);
        if (n == 1) {
            buf_consume(&c->out, 1);
            c->drip_left--;
        } else if (n == -1 && errno != EAGAIN && errno != EINTR) {
            conn_close(c);
            return;
        }
    } else {
        c->drip_left = 0;
    }
    if (c->drip_left > 0)
        ev_timer_start(srv.loop, &c->drip, c->fault.slow_headers, drip_cb, c);
    else
        conn_kick(c);
}

/* Runs conn_run() unless it is already on the stack for <c>. */
static void conn_kick(struct conn *c)
{
    if (!c->in_run && !c->closed)
        conn_run(c);
}

static void conn_run(struct conn *c)
{
    c->in_run = true;
    while (!c->closed) {
        if (c->st != ST_BUSY) {
            int r = try_request(c);
            if (r < 0)
                break;
            if (r > 0)
                continue;
        }
        if (c->close_after_write)
            break;
        if (!c->can_read)
            break;
        if (conn_read(c) <= 0)
            break;
    }
    c->in_run = false;
    if (c->closed)
        return;
    if (c->drip_left > 0 && !ev_timer_active(&c->drip)) {
        ev_timer_start(srv.loop, &c->drip, c->fault.slow_headers, drip_cb, c);
        return;
    }
    conn_flush(c);
}

static void conn_io_cb(struct ev_loop *loop, struct ev_io *io, unsigned events)
{
    struct conn *c = io->data;
    UNUSED(loop);
    if (srv.sched.frozen) {
        c->pending_ev |= events;
        defer(c);
        return;
    }
    if (events & EV_READ)
        c->can_read = true;
    if (events & EV_WRITE)
        c->can_write = true;
    conn_run(c);
}

static void accept_cb(struct ev_loop *loop, struct ev_io *io, unsigned events)
{
    UNUSED(events);
    UNUSED(io);
    for (int i = 0; i < 64 && !srv.sched.frozen; i++) {
        int fd = net_accept(srv.lfd, NULL);
        if (fd < 0) {
            if (fd != -EAGAIN)
                log_warn("accept: %s", strerror(-fd));
            return;
        }
        net_set_nodelay(fd);
        struct conn *c = xcalloc(1, sizeof(*c));
        c->fd = fd;
        c->io.fd = -1;
        c->can_write = true;
        c->anext = srv.all;
        if (srv.all)
            srv.all->aprev = c;
        srv.all = c;
        srv.conns++;
        if (ev_io_start(loop, &c->io, fd, conn_io_cb, c) != 0) {
            conn_close(c);
            continue;
        }
    }
}

/* ---------------------------------------------------------------- loop */

static void before_sleep(struct ev_loop *loop, void *data)
{
    UNUSED(loop);
    UNUSED(data);
    bool progress = true;
    while (progress && !srv.sched.frozen) {
        progress = false;
        struct sim_slot *e;
        while ((e = sim_slot_next(&srv.sched)) != NULL) {
            start_gen(list_entry(e, struct conn, g.slot));
            progress = true;
        }
        while (!srv.sched.frozen && srv.dhead != NULL) {
            struct conn *c = srv.dhead;
            srv.dhead = c->dnext;
            if (srv.dhead == NULL)
                srv.dtail = NULL;
            c->in_deferred = false;
            progress = true;
            if (c->closed)
                continue;
            unsigned ev = c->pending_ev;
            bool tick = c->pending_tick;
            c->pending_ev = 0;
            c->pending_tick = false;
            if (ev & EV_READ)
                c->can_read = true;
            if (ev & EV_WRITE)
                c->can_write = true;
            if (tick)
                gen_timer_cb(srv.loop, &c->g.timer);
            else
                conn_run(c);
        }
    }
    /* A closed connection still linked in the deferred list (the server
     * froze again before the list was drained) is freed on a later pass. */
    struct conn *keep = NULL;
    while (srv.to_free != NULL) {
        struct conn *c = srv.to_free;
        srv.to_free = c->fnext;
        if (c->in_deferred) {
            c->fnext = keep;
            keep = c;
        } else {
            conn_free(c);
        }
    }
    srv.to_free = keep;
}

static void wake_cb(struct ev_loop *loop, void *data)
{
    UNUSED(data);
    if (stop_requested)
        ev_loop_stop(loop);
}

static void on_signal(int sig)
{
    UNUSED(sig);
    stop_requested = 1;
    if (srv.loop != NULL)
        ev_wake(srv.loop);
}

/* "Refuse" fault: a socket bound to the address but never listening, so
 * connects fail with ECONNREFUSED while the port stays taken. */
static int bind_only(const struct net_addr *a, char *err)
{
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    if (fd == -1) {
        snprintf(err, NET_ERR_LEN, "socket: %s", strerror(errno));
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)&a->ss, a->len) == -1) {
        snprintf(err, NET_ERR_LEN, "bind: %s", strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

int sim_run(const struct sim_config *cfg)
{
    char err[NET_ERR_LEN], addr[NET_ADDRSTR_LEN];
    struct net_addr a, local;
    int rc = 0;

    memset(&srv, 0, sizeof(srv));
    srv.lio.fd = -1;
    srv.cfg = cfg;
    sim_slots_init(&srv.sched, cfg->slots, cfg->block < 0 ? cfg->slots == 1 : cfg->block == 1,
                   listener_freeze, NULL);
    if (cfg->seed != 0) {
        /* splitmix64 of the seed: small seeds still give a well-mixed state. */
        uint64_t z = cfg->seed + 0x9e3779b97f4a7c15ULL;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        srv.rng = z ^ (z >> 31);
    } else {
        util_random_bytes(&srv.rng, sizeof(srv.rng));
    }
    if (srv.rng == 0)
        srv.rng = 0x853c49e6748fea9bULL;

    if (net_parse_addr(cfg->listen, false, true, &a, err) != 0) {
        fprintf(stderr, "llamalb-sim: %s\n", err);
        return 2;
    }
    struct sigaction sa = {0};
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    srv.loop = ev_loop_new();
    if (srv.loop == NULL) {
        fprintf(stderr, "llamalb-sim: cannot create the event loop\n");
        return 1;
    }
    ev_set_wake(srv.loop, wake_cb, NULL);
    ev_set_before_sleep(srv.loop, before_sleep, NULL);

    srv.lfd = cfg->fault.refuse ? bind_only(&a, err) : net_listen(&a, 4096, false, err);
    if (srv.lfd < 0) {
        fprintf(stderr, "llamalb-sim: %s\n", err);
        ev_loop_free(srv.loop);
        return 1;
    }
    net_local_addr(srv.lfd, &local);
    srv.port = net_addr_port(&local);
    net_addr_str(&local, addr, sizeof(addr));
    srv.start_ms = ev_now(srv.loop);
    srv.start_wall = util_wall_s();
    srv.files = sim_files_new();
    if (!cfg->fault.refuse) {
        srv.lio.level = true;
        if (ev_io_start(srv.loop, &srv.lio, srv.lfd, accept_cb, NULL) != 0 ||
            ev_io_set_mask(srv.loop, &srv.lio, EV_READ) != 0) {
            fprintf(stderr, "llamalb-sim: cannot watch the listener\n");
            rc = 1;
            goto out;
        }
    }
    printf("listening on %s\n", addr);
    fflush(stdout);
    log_info("llamalb-sim %s: model %s, %u slot(s), ttft %lld ms, %g tokens/s%s%s", cfg->id,
             cfg->model, cfg->slots, (long long)cfg->ttft_ms, cfg->tokens_per_sec,
             srv.sched.block ? ", blocking" : "", cfg->fault.refuse ? ", refusing connections" : "");
    if (!stop_requested && ev_run(srv.loop) != 0)
        rc = 1;
    log_info("llamalb-sim %s: stopping after %llu requests", cfg->id,
             (unsigned long long)srv.requests);
out:
    srv.to_free = NULL; /* every connection, closed or not, is still in <all> */
    while (srv.all != NULL) {
        struct conn *c = srv.all;
        conn_close(c);
        srv.to_free = NULL;
        conn_free(c);
    }
    ev_io_stop(srv.loop, &srv.lio);
    close(srv.lfd);
    sim_files_free(srv.files);
    ev_loop_free(srv.loop);
    srv.loop = NULL;
    buf_free(&scratch);
    buf_cache_drain();
    return rc;
}
