/* SPDX-License-Identifier: MIT
 * Client connections and the request path: parse, buffer the body, pick a
 * backend, send, relay the response with backpressure, keep-alive and
 * pipelining. The state machine is described in proxy.h.
 *
 * Sockets are edge-triggered: a callback records readiness (rd_ready,
 * wr_ready) and the code reads or writes until EAGAIN, so the request path
 * makes no epoll_ctl calls. A side that must not be read yet (backpressure)
 * simply keeps its readiness flag set until we come back to it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "json.h"
#include "log.h"
#include "proxy.h"
#include "util.h"

/* Pipelined bytes buffered while a response is in progress; past this the
 * client is not read until the response is done. */
#define PIPELINE_MAX (64 * 1024)

static void drive(struct conn *c);
static void flush(struct conn *c);
static void dispatch(struct conn *c);
static void up_io_cb(struct ev_loop *loop, struct ev_io *io, unsigned events);
static void relay(struct conn *c);
static void body_free(struct exchange *x);
static void arm_body_timer(struct conn *c);
static bool stall_budget_spent(const struct conn *c);
static void conn_abort(struct conn *c);

/* Upstream failures, compared by address and mapped to statuses in one
 * place (up_failed). */
static const char up_err_connect[] = "connect failed";
static const char up_err_connect_timeout[] = "connect timeout";
static const char up_err_stale[] = "pooled connection closed before responding";
static const char up_err_reset[] = "connection closed before the status line";
static const char up_err_timeout[] = "response timeout";
static const char up_err_bad[] = "invalid response";
static const char up_err_io[] = "upstream I/O error";

const char *http_reason(int status)
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
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

static inline struct server *srv(const struct conn *c) { return c->w->srv; }
static inline const struct cfg *cfg(const struct conn *c) { return &c->w->srv->cfg; }
static inline int64_t now_ms(const struct conn *c) { return ev_now(c->w->loop); }

/* ================================================================ timers */

static void finish_local_error(struct conn *c);

static void conn_timeout_cb(struct ev_loop *loop, struct ev_timer *t)
{
    struct conn *c = t->data;
    UNUSED(loop);
    switch (c->state) {
    case CS_HEAD:
        if (c->in.len == 0) { /* idle keep-alive: close silently */
            conn_close(c);
            return;
        }
        conn_error(c, 408, "request head not received in time", "invalid_request_error",
                   "request_timeout");
        return;
    case CS_BODY:
        conn_error(c, 408, "request body not received in time", "invalid_request_error",
                   "request_timeout");
        return;
    case CS_QUEUED: {
        struct backend *b = reg_cancel_wait(&srv(c)->reg, &c->x->waiter);
        if (b != NULL) { /* handed a slot in the same instant: use it */
            c->x->waiter.assigned = b;
            conn_dequeued(c);
            return;
        }
        atomic_fetch_add(&srv(c)->reg.queue_timeouts, 1);
        c->state = CS_UPSTREAM;
        conn_error(c, 503, "every backend is busy: timed out waiting in the queue",
                   "server_error", "queue_timeout");
        finish_local_error(c);
        return;
    }
    case CS_LINGER: /* done discarding */
        conn_close(c);
        return;
    default: /* the client stopped reading our response */
        atomic_fetch_add(&srv(c)->stats.aborted_streams, 1);
        if (stall_budget_spent(c)) {
            log_info("backend %s: response cut: its client kept it waiting %lld ms "
                     "(--slow-client-budget)",
                     c->x->be ? c->x->be->spec.name : "?",
                     (long long)(c->x->stalled_ms + now_ms(c) - c->x->stall_since));
            atomic_fetch_add(&srv(c)->stats.slow_client_cuts, 1);
            conn_abort(c);
            return;
        }
        log_debug("client %d: send timeout", c->io.fd);
        conn_close(c);
        return;
    }
}

static void resume_cb(struct ev_loop *loop, struct ev_timer *t)
{
    struct conn *c = t->data;
    UNUSED(loop);
    if (c->state == CS_RELAY)
        relay(c);
    else
        drive(c);
}

/* Continues on the next loop iteration: after a fairness cap (other
 * connections get their turn) or instead of recursing into the next
 * pipelined request. Edge-triggered readiness already consumed is not lost:
 * the zero-delay timer brings us back without a new edge. */
static void resume_later(struct conn *c)
{
    if (!c->closed && !ev_timer_active(&c->resume))
        ev_timer_start(c->w->loop, &c->resume, 0, resume_cb, c);
}

static void arm(struct conn *c, int64_t ms)
{
    ev_timer_start(c->w->loop, &c->timer, ms, conn_timeout_cb, c);
}

static void arm_head_timer(struct conn *c)
{
    int64_t now = now_ms(c);
    if (c->out.len > 0) { /* still answering: the client must read first */
        arm(c, cfg(c)->send_timeout);
        return;
    }
    if (c->in.len == 0) {
        ev_timer_at(c->w->loop, &c->timer, now + cfg(c)->keepalive_timeout, conn_timeout_cb, c);
        c->head_deadline = 0;
    } else {
        if (c->head_deadline == 0)
            c->head_deadline = now + cfg(c)->header_timeout;
        ev_timer_at(c->w->loop, &c->timer, c->head_deadline, conn_timeout_cb, c);
    }
}

/* ================================================================ exchanges */

/* Gives <c> a fresh exchange for the request whose bytes just arrived. The
 * worker keeps a few released ones so a busy keep-alive connection does not
 * go through malloc for every request. */
static struct exchange *exchange_new(struct conn *c)
{
    struct worker *w = c->w;
    struct exchange *x = w->nxcache > 0 ? w->xcache[--w->nxcache] : xmalloc(sizeof(*x));
    memset(x, 0, sizeof(*x)); /* zeroed is the fresh state: parser, framing, counters */
    x->c = c;
    c->x = x;
    return x;
}

/* Frees the request body and gives its memory back to the process budget. */
static void body_free(struct exchange *x)
{
    buf_free(&x->body);
    if (x->body_charged > 0) {
        atomic_fetch_sub(&x->c->w->srv->stats.body_mem, x->body_charged);
        x->body_charged = 0;
    }
}

/* Frees what an exchange owns besides itself (the caller dropped its
 * references to backends and upstream connections). */
static void exchange_free_data(struct exchange *x)
{
    buf_free(&x->uphead);
    body_free(x);
    free(x->ar);
    x->ar = NULL;
}

/* Releases the exchange of a connection with no request in progress (idle
 * between requests, or freed): reset_request() or conn_close() already
 * dropped its references to backends and upstream connections. */
static void exchange_put(struct conn *c)
{
    struct exchange *x = c->x;
    struct worker *w = c->w;
    if (x == NULL)
        return;
    c->x = NULL;
    exchange_free_data(x);
    if (w->nxcache < ARRAY_SIZE(w->xcache))
        w->xcache[w->nxcache++] = x;
    else
        free(x);
}

/* ================================================================ lifecycle */

/* Admin connections are counted apart (--admin-max-conns), so that they
 * can neither use up nor pause the public listener's --max-conns. */
static atomic_uint_fast64_t *active_count(struct server *s, bool admin)
{
    return admin ? &s->stats.admin_conns_active : &s->stats.conns_active;
}

void conn_accept(struct worker *w, int fd, const struct net_addr *peer, bool admin)
{
    struct conn *c = xcalloc(1, sizeof(*c));
    c->w = w;
    c->admin = admin;
    c->peer = *peer;
    c->io.fd = -1;
    list_add_tail(&w->conns, &c->link);
    w->nconns++;
    atomic_fetch_add(&w->srv->stats.conns_accepted, 1);
    atomic_fetch_add(active_count(w->srv, admin), 1);
    net_set_nodelay(fd);
    if (ev_io_start(w->loop, &c->io, fd, NULL, c) != 0) {
        close(fd);
        c->closed = true;
        list_del(&c->link);
        list_add_tail(&w->graveyard_c, &c->link);
        w->nconns--;
        atomic_fetch_sub(active_count(w->srv, admin), 1);
        return;
    }
    c->io.cb = conn_io_cb;
    c->head_deadline = ev_now(w->loop) + w->srv->cfg.header_timeout;
    ev_timer_at(w->loop, &c->timer, c->head_deadline, conn_timeout_cb, c);
    /* Edge-triggered: the data may already be there; the first event will
     * say so, no speculative read needed. */
}

/* Gives the upstream side up: the connection is closed (a half-relayed
 * response makes it useless) and the backend slot released. */
static void drop_upstream(struct conn *c, bool failed)
{
    if (c->x->up != NULL) {
        c->x->up->c = NULL;
        up_release(c->x->up, false);
        c->x->up = NULL;
    }
    if (c->x->be != NULL) {
        struct reg_outcome o = {.failed = failed, .model = c->x->model, .counted = failed};
        reg_release(&srv(c)->reg, c->x->be, &o, now_ms(c));
        backend_unref(c->x->be);
        c->x->be = NULL;
    }
}

/* Leaves the gateway queue; a slot handed over meanwhile goes back. */
static void leave_queue(struct conn *c)
{
    struct backend *b = reg_cancel_wait(&srv(c)->reg, &c->x->waiter);
    if (b != NULL) {
        struct reg_outcome o = {0};
        reg_release(&srv(c)->reg, b, &o, now_ms(c));
        backend_unref(b);
    }
}

static void uncount_model(struct conn *c)
{
    if (c->x != NULL && c->x->model_counted) {
        reg_model_inflight(&srv(c)->reg, c->x->model, -1);
        c->x->model_counted = false;
    }
}

static void clear_tried(struct conn *c)
{
    if (c->x == NULL)
        return;
    for (unsigned i = 0; i < c->x->ntried; i++)
        backend_unref(c->x->tried[i]);
    c->x->ntried = 0;
}

void conn_close(struct conn *c)
{
    if (c->closed)
        return;
    c->closed = true;
    if (c->state == CS_QUEUED)
        leave_queue(c);
    if (c->state == CS_UPSTREAM || c->state == CS_RELAY) {
        if (!c->x->resp_done)
            atomic_fetch_add(&srv(c)->stats.aborted_streams, 1);
        drop_upstream(c, false);
    }
    clear_tried(c);
    uncount_model(c);
    ev_timer_stop(c->w->loop, &c->timer);
    ev_timer_stop(c->w->loop, &c->resume);
    int fd = c->io.fd;
    ev_io_stop(c->w->loop, &c->io);
    if (fd != -1)
        close(fd);
    list_del(&c->link);
    list_add_tail(&c->w->graveyard_c, &c->link);
    c->w->nconns--;
    atomic_fetch_sub(active_count(srv(c), c->admin), 1);
    worker_conn_closed(c->w, c->admin);
}

/* Called before sleep for every conn on the graveyard. */
void conn_free(struct conn *c)
{
    buf_free(&c->in);
    buf_free(&c->out);
    exchange_put(c);
    free(c);
}

void conn_drain(struct conn *c)
{
    if (c->state == CS_HEAD && c->in.len == 0) {
        conn_close(c);
        return;
    }
    c->keep_alive = false;
    c->close_after = true;
}

/* ================================================================ output */

void conn_respond(struct conn *c, int status, const char *ctype, const char *body, size_t len,
                  const char *extra_headers)
{
    struct buf *o = &c->out;
    bool close_conn = c->close_after || !c->keep_alive;
    buf_printf(o, "HTTP/1.1 %d %s\r\n", status, http_reason(status));
    if (ctype != NULL)
        buf_printf(o, "Content-Type: %s\r\n", ctype);
    buf_printf(o, "Content-Length: %zu\r\n", c->is_head ? (size_t)0 : len);
    if (extra_headers != NULL)
        buf_append_str(o, extra_headers);
    if (close_conn)
        buf_append_lit(o, "Connection: close\r\n");
    else if (c->minor == 0)
        buf_append_lit(o, "Connection: keep-alive\r\n");
    buf_append(o, "\r\n", 2);
    if (!c->is_head)
        buf_append(o, body, len);
    c->status = status;
    atomic_fetch_add(&srv(c)->stats.responses[status / 100], 1);
}

void conn_error(struct conn *c, int status, const char *message, const char *type,
                const char *code)
{
    struct buf b = {0};
    buf_append_str(&b, "{\"error\":{\"message\":");
    json_append_str(&b, message, strlen(message));
    buf_printf(&b, ",\"type\":\"%s\",\"param\":null,\"code\":\"%s\"}}", type, code);
    /* Parse errors and timeouts leave the stream unsynchronized: close. */
    if (status == 400 || status == 408 || status == 413 || status == 414 || status == 431 ||
        status == 501 || status == 505 || status == 417 || c->state == CS_HEAD ||
        c->state == CS_BODY)
        c->close_after = true;
    atomic_fetch_add(&srv(c)->stats.local_errors[status], 1);
    if (c->x != NULL)
        body_free(c->x); /* never sent now: give its memory back before the close */
    conn_respond(c, status, "application/json", buf_data(&b), b.len,
                 status == 503 ? "Retry-After: 1\r\n" : NULL);
    buf_free(&b);
    worker_log_access(c, "-");
    if (c->close_after) {
        c->state = CS_CLOSING;
        ev_timer_start(c->w->loop, &c->timer, cfg(c)->send_timeout, conn_timeout_cb, c);
        flush(c);
        return;
    }
}

/* A backend with a cap (a llama-api-server takes one request at a time) is
 * held by its response until the client has read it: a client that takes a
 * segment every 50 s would keep the send deadline alive forever and pin the
 * backend's only slot. So such a response may keep waiting on its client
 * for --slow-client-budget in total, counted only while bytes are waiting
 * and the client takes none; then the stream is cut (conn_timeout_cb). */
static void arm_stall_timer(struct conn *c)
{
    int64_t now = now_ms(c);
    if (c->x->stall_since == 0)
        c->x->stall_since = now;
    int64_t left = cfg(c)->slow_client_budget - c->x->stalled_ms - (now - c->x->stall_since);
    arm(c, MAX(0, MIN(left, cfg(c)->send_timeout)));
}

static bool stall_budget_spent(const struct conn *c)
{
    return c->state == CS_RELAY && c->x->capped && c->x->stall_since != 0 &&
           c->x->stalled_ms + (now_ms(c) - c->x->stall_since) >= cfg(c)->slow_client_budget;
}

/* Ends a connection with a reset, not a FIN: a client reading a response
 * delimited by the close must not take a cut stream for a whole one. */
static void conn_abort(struct conn *c)
{
    struct linger l = {.l_onoff = 1, .l_linger = 0};
    if (c->io.fd != -1)
        setsockopt(c->io.fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    conn_close(c);
}

/* Writes c->out, then the validated pass-through bytes of the upstream
 * buffer, with one writev. Returns after EAGAIN or when all is written. */
static void flush(struct conn *c)
{
    while (c->wr_ready && !c->closed) {
        struct iovec iov[2];
        int n = 0;
        if (c->out.len > 0)
            iov[n++] = (struct iovec){buf_data(&c->out), c->out.len};
        if (c->x != NULL && c->x->pass > 0 && c->x->up != NULL)
            iov[n++] = (struct iovec){buf_data(&c->x->up->in), c->x->pass};
        if (n == 0)
            break;
        ssize_t w = writev(c->io.fd, iov, n);
        if (w == -1) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                c->wr_ready = false;
                /* Blocked on the client: its send deadline runs (other
                 * states keep their own deadline: queue, head, body). */
                if (c->state == CS_RELAY && c->x->capped)
                    arm_stall_timer(c);
                else if (c->state == CS_RELAY || c->state == CS_CLOSING || c->state == CS_UPSTREAM)
                    arm(c, cfg(c)->send_timeout);
                return;
            }
            conn_close(c);
            return;
        }
        size_t done = (size_t)w, a = MIN(done, c->out.len);
        if (c->x != NULL && c->x->stall_since != 0) { /* the client reads again */
            c->x->stalled_ms += now_ms(c) - c->x->stall_since;
            c->x->stall_since = 0;
        }
        buf_consume(&c->out, a);
        done -= a;
        if (done > 0) {
            buf_consume(&c->x->up->in, done);
            c->x->pass -= done;
            c->x->bytes_out += done;
        }
        if (c->state == CS_RELAY || c->state == CS_UPSTREAM)
            ev_timer_stop(c->w->loop, &c->timer);
    }
    if (c->out.len == 0)
        buf_release(&c->out);
    if (c->state == CS_CLOSING && c->out.len == 0 && !c->closed) {
        /* Everything said. Closing now while the client's unread request
         * bytes (a refused body, pipelined requests) sit in our receive
         * queue would send an RST that can destroy the response before the
         * client reads it. So: shut our side, discard what still comes for
         * a short while, then close (nginx's lingering close). */
        shutdown(c->io.fd, SHUT_WR);
        if (c->client_eof) {
            conn_close(c);
            return;
        }
        c->state = CS_LINGER;
        buf_consume(&c->in, c->in.len);
        arm(c, 2000);
        c->rd_ready = true; /* drain what is already queued */
        resume_later(c);
    }
}

/* ================================================================ request head */

static bool valid_request_id(struct slice v)
{
    if (v.len == 0 || v.len >= sizeof(((struct exchange *)0)->rid))
        return false;
    for (size_t i = 0; i < v.len; i++) {
        char ch = v.p[i];
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              ch == '-' || ch == '_' || ch == '.'))
            return false;
    }
    return true;
}

static void new_request_id(struct conn *c)
{
    static const char hex[] = "0123456789abcdef";
    uint64_t a = util_rand64(&c->w->rng), b = util_rand64(&c->w->rng);
    for (int i = 0; i < 16; i++) {
        c->x->rid[i] = hex[(a >> (i * 4)) & 15];
        c->x->rid[16 + i] = hex[(b >> (i * 4)) & 15];
    }
    c->x->rid[32] = '\0';
}

/* Rewrites the request head for the upstream: origin-form target, HTTP/1.1,
 * hop-by-hop headers and our framing headers dropped, X-Forwarded-* and
 * X-Request-Id added. Framing (Content-Length) is appended when the body is
 * complete, since a chunked body's length is known only then. */
static void build_upstream_head(struct conn *c, const struct http1_msg *m)
{
    struct buf *o = &c->x->uphead;
    struct slice target = m->target;
    char peer[NET_ADDRSTR_LEN];
    struct buf xff = {0}; /* every X-Forwarded-For line, combined in order */
    bool have_rid = false;

    size_t scheme = slice_starts_with(target, "http://")    ? 7
                    : slice_starts_with(target, "https://") ? 8
                                                            : 0;
    if (scheme != 0) { /* the parser guarantees a non-empty authority */
        const char *p = memchr(target.p + scheme, '/', target.len - scheme);
        target = p ? slice_make(p, (size_t)(target.p + target.len - p)) : SLICE_LIT("/");
    }
    buf_reserve(o, m->method.len + target.len + 256);
    buf_append(o, m->method.p, m->method.len);
    buf_append(o, " ", 1);
    buf_append(o, target.p, target.len);
    buf_append(o, " HTTP/1.1\r\n", 11);
    for (unsigned i = 0; i < m->nheaders; i++) {
        const struct http1_header *h = &m->headers[i];
        if (http1_is_hop_by_hop(m, h->name) || slice_case_eq_cstr(h->name, "content-length") ||
            slice_case_eq_cstr(h->name, "expect") ||
            slice_case_eq_cstr(h->name, "x-forwarded-proto"))
            continue;
        if (slice_case_eq_cstr(h->name, "x-forwarded-for")) {
            if (xff.len > 0)
                buf_append(&xff, ", ", 2);
            buf_append(&xff, h->value.p, h->value.len);
            continue;
        }
        if (slice_case_eq_cstr(h->name, "x-request-id")) {
            if (!valid_request_id(h->value) || have_rid)
                continue;
            memcpy(c->x->rid, h->value.p, h->value.len);
            c->x->rid[h->value.len] = '\0';
            have_rid = true;
            continue;
        }
        buf_append(o, h->name.p, h->name.len);
        buf_append(o, ": ", 2);
        buf_append(o, h->value.p, h->value.len);
        buf_append(o, "\r\n", 2);
    }
    if (!have_rid)
        new_request_id(c);
    net_addr_host(&c->peer, peer, sizeof(peer));
    buf_append_lit(o, "X-Forwarded-For: ");
    if (xff.len > 0) {
        buf_append(o, buf_data(&xff), xff.len);
        buf_append(o, ", ", 2);
    }
    buf_append_str(o, peer);
    buf_free(&xff);
    buf_append_lit(o, "\r\nX-Forwarded-Proto: http\r\nX-Request-Id: ");
    buf_append_str(o, c->x->rid);
    buf_append_lit(o, "\r\n");
}

static void copy_for_log(struct conn *c, const struct http1_msg *m)
{
    size_t n = MIN(m->method.len, sizeof(c->x->method) - 1);
    memcpy(c->x->method, m->method.p, n);
    c->x->method[n] = '\0';
    n = MIN(m->target.len, sizeof(c->x->path) - 1);
    memcpy(c->x->path, m->target.p, n);
    c->x->path[n] = '\0';
}

static void capture_admin_headers(struct conn *c, const struct http1_msg *m)
{
    if (c->x->ar == NULL)
        c->x->ar = xmalloc(sizeof(*c->x->ar));
    memset(c->x->ar, 0, sizeof(*c->x->ar));
    const struct http1_header *h;
    if ((h = http1_find(m, "authorization")) != NULL) {
        size_t n = MIN(h->value.len, sizeof(c->x->ar->auth) - 1);
        memcpy(c->x->ar->auth, h->value.p, n);
        c->x->ar->auth[n] = '\0';
        c->x->ar->has_auth = true;
    }
    c->x->ar->has_origin = http1_find(m, "origin") != NULL;
    if ((h = http1_find(m, "content-type")) != NULL) {
        c->x->ar->has_ctype = true;
        struct slice v = h->value;
        const char *semi = memchr(v.p, ';', v.len);
        if (semi)
            v.len = (size_t)(semi - v.p);
        c->x->ar->json_ctype = slice_case_eq_cstr(slice_trim(v), "application/json");
    }
}

/* Resets per-request state for the next request on this connection: the
 * exchange goes back to its zeroed, fresh state (a pipelined request that
 * fails before its head parses must not inherit the previous one's method,
 * path, id or start time in the access log). */
static void reset_request(struct conn *c)
{
    struct exchange *x = c->x;
    BUG_ON(x->up != NULL || x->be != NULL); /* released by whoever finished the request */
    uncount_model(c);
    clear_tried(c);
    exchange_free_data(x);
    memset(x, 0, sizeof(*x));
    x->c = c;
    c->status = 0;
    c->is_head = false;
    c->head_deadline = 0;
}

static uint64_t hash_bytes(const char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 0x100000001B3ULL;
    return h ? h : 1;
}

/* Copies a JSON string's raw contents if it has no escapes (model names
 * and file ids never need them; an escaped one is treated as absent). */
static bool copy_plain(struct slice v, char *out, size_t outlen)
{
    if (v.len == 0 || v.len >= outlen || memchr(v.p, '\\', v.len) != NULL)
        return false;
    memcpy(out, v.p, v.len);
    out[v.len] = '\0';
    return true;
}

/* Decodes the JSON string value <v> (raw, inside <js>) into <out>. */
static int decode_str(const char *js, struct slice v, char *out, size_t outlen)
{
    struct json_tok t = {.type = JSON_STRING, .start = (uint32_t)(v.p - js),
                         .end = (uint32_t)(v.p - js + v.len), .escaped = true};
    return json_str(js, &t, out, outlen);
}

/* What the body says about routing: the top-level "model", a file id for
 * /v1/chunks, and the "user" field when it is the affinity key, found in one
 * pass over the body (however large the prompt). Routing must read the body
 * as the backend will, or a request could be routed (and capped, and
 * allowed) as one model and served as another:
 *   - a member given twice is refused: {"model":"a","model":"b"} is "a" to
 *     a first-wins reader and "b" to Python, Go and most C++ parsers;
 *   - escapes are decoded ("llama\u002d3" is "llama-3");
 *   - a body that starts like a JSON object must be one: Go's decoder stops
 *     after the first value of {"model":"a"} {"model":"b"}.
 * Bodies that are not JSON (multipart uploads) carry no routing fields.
 * Returns false when it answered 400. */
static bool classify_body(struct conn *c)
{
    const struct cfg *k = cfg(c);
    struct exchange *x = c->x;
    if (x->body.len == 0 || strcmp(x->method, "POST") != 0)
        return true;
    const char *js = buf_data(&x->body);
    size_t i = 0;
    while (i < x->body.len && (js[i] == ' ' || js[i] == '\t' || js[i] == '\r' || js[i] == '\n'))
        i++;
    if (i == x->body.len || js[i] != '{')
        return true;
    struct json_field f[] = {{.key = "model"}, {.key = "user"}, {.key = "id"}};
    const char *bad = NULL;
    if (json_top_fields(js, x->body.len, f, ARRAY_SIZE(f)) != 0)
        bad = "the request body is not a valid JSON object";
    else if (f[0].count > 1 || f[1].count > 1 || f[2].count > 1)
        bad = f[0].count > 1 ? "duplicate \"model\" member in the request body"
              : f[1].count > 1 ? "duplicate \"user\" member in the request body"
                               : "duplicate \"id\" member in the request body";
    else if (f[0].type == JSON_STRING && f[0].val.len > 0 &&
             decode_str(js, f[0].val, x->model, sizeof(x->model)) <= 0)
        bad = "\"model\" must be a string of at most 127 bytes";
    if (bad != NULL) {
        x->model[0] = '\0';
        conn_error(c, 400, bad, "invalid_request_error", "invalid_request_body");
        return false;
    }
    if (x->model[0] != '\0') {
        const char *to = cfg_alias(k, x->model);
        if (to != x->model)
            snprintf(x->model, sizeof(x->model), "%s", to);
    }
    if (strcmp(k->affinity, "user") == 0 && f[1].type == JSON_STRING && f[1].val.len > 0)
        x->affinity = hash_bytes(f[1].val.p, f[1].val.len);
    if (strncmp(x->path, "/v1/chunks", 10) == 0 && f[2].type == JSON_STRING) {
        char id[64];
        if (decode_str(js, f[2].val, id, sizeof(id)) <= 0 ||
            !reg_file_get(&srv(c)->reg, id, x->pin, sizeof(x->pin)))
            x->pin[0] = '\0';
    }
    return true;
}

/* What the head says about routing: local /v1/models, uploads, file ids in
 * the path, the affinity header. Runs while the header slices are valid. */
static void classify_head(struct conn *c, const struct http1_msg *m)
{
    const struct cfg *k = cfg(c);
    const char *p = c->x->path;
    size_t plen = strcspn(p, "?");
    if (k->local_models && plen == 10 && strncmp(p, "/v1/models", 10) == 0 &&
        (strcmp(c->x->method, "GET") == 0 || strcmp(c->x->method, "HEAD") == 0))
        c->x->local_models = true;
    if (plen == 9 && strncmp(p, "/v1/files", 9) == 0 && strcmp(c->x->method, "POST") == 0)
        c->x->is_upload = true;
    const char *id = NULL;
    if (strncmp(p, "/v1/files/download/", 19) == 0)
        id = p + 19;
    else if (strncmp(p, "/v1/files/", 10) == 0)
        id = p + 10;
    if (id != NULL) {
        char fid[64];
        size_t n = strcspn(id, "/?");
        if (n > 0 && n < sizeof(fid)) {
            memcpy(fid, id, n);
            fid[n] = '\0';
            if (!reg_file_get(&srv(c)->reg, fid, c->x->pin, sizeof(c->x->pin)))
                c->x->pin[0] = '\0';
        }
    }
    if (k->affinity[0] != '\0' && strcmp(k->affinity, "user") != 0) {
        const struct http1_header *h = http1_find(m, k->affinity);
        if (h != NULL && h->value.len > 0)
            c->x->affinity = hash_bytes(h->value.p, h->value.len);
    }
}

static void body_complete(struct conn *c)
{
    static const char cl[] = "Content-Length: ";
    size_t n = 0;
    if (c->x->send_cl || c->x->body.len > 0) {
        memcpy(c->x->clhdr, cl, sizeof(cl) - 1);
        n = sizeof(cl) - 1;
        n += util_fmt_u64(c->x->clhdr + n, c->x->body.len);
        memcpy(c->x->clhdr + n, "\r\n", 2);
        n += 2;
    }
    memcpy(c->x->clhdr + n, "\r\n", 2);
    c->x->clhdr_len = (unsigned)(n + 2);
    ev_timer_stop(c->w->loop, &c->timer);
    if (c->admin) {
        c->state = CS_UPSTREAM; /* "being answered" */
        admin_handle(c);
        return;
    }
    if (!classify_body(c))
        return;
    if (c->x->local_models) {
        struct buf b = {0};
        c->state = CS_UPSTREAM;
        reg_models_json(&srv(c)->reg, &b, now_ms(c));
        conn_respond(c, 200, "application/json", buf_data(&b), b.len, NULL);
        buf_free(&b);
        conn_local_done(c);
        return;
    }
    dispatch(c);
}

static void on_head(struct conn *c, int hl)
{
    const struct http1_msg *m = &c->x->req;
    atomic_fetch_add(&srv(c)->stats.requests, 1);
    c->x->t0_us = util_now_us();
    c->minor = m->minor;
    c->keep_alive = m->keep_alive && !atomic_load(&srv(c)->draining);
    c->close_after = !c->keep_alive;
    c->is_head = slice_eq_cstr(m->method, "HEAD");
    c->x->req_framing = m->framing;
    copy_for_log(c, m);
    bool bodied_method = slice_eq_cstr(m->method, "POST") || slice_eq_cstr(m->method, "PUT") ||
                         slice_eq_cstr(m->method, "PATCH");
    c->x->send_cl = bodied_method || m->framing != HTTP1_BODY_NONE;
    if (!c->admin) {
        if (slice_eq_cstr(m->method, "CONNECT") || slice_eq_cstr(m->method, "TRACE")) {
            buf_consume(&c->in, (size_t)hl);
            c->state = CS_BODY;
            conn_error(c, 405, "method not allowed", "invalid_request_error",
                       "method_not_allowed");
            return;
        }
        if (slice_starts_with(m->target, "/api/") || slice_eq_cstr(m->target, "/api")) {
            /* The admin API never answers on the public port (hardening.md §6). */
            c->x->rid[0] = '\0';
            buf_consume(&c->in, (size_t)hl);
            c->state = CS_BODY;
            c->close_after = c->close_after || m->framing != HTTP1_BODY_NONE;
            conn_error(c, 404, "not found", "invalid_request_error", "not_found");
            return;
        }
        build_upstream_head(c, m);
        classify_head(c, m);
    }
    buf_consume(&c->in, (size_t)hl);
    c->x->body_left = m->framing == HTTP1_BODY_LENGTH ? m->content_length : 0;
    if (c->admin) {
        /* Token, path, method, media type and length are judged on the head,
         * before a body byte is read or 100 Continue promised: without the
         * token, an admin connection costs its head and nothing more. */
        capture_admin_headers(c, m);
        c->state = CS_UPSTREAM; /* "being answered", if refused */
        if (!admin_check_head(c, m))
            return;
    }
    c->state = CS_BODY;
    if (m->framing == HTTP1_BODY_LENGTH && m->content_length > cfg(c)->max_body_memory) {
        /* Could never be buffered, whatever else is in flight. */
        conn_error(c, 413, "request body larger than the balancer's body memory",
                   "invalid_request_error", "body_too_large");
        return;
    }
    if (m->expect_continue && m->framing != HTTP1_BODY_NONE &&
        (m->framing == HTTP1_BODY_CHUNKED || c->in.len < c->x->body_left))
        buf_append_str(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
    if (m->framing == HTTP1_BODY_NONE) {
        body_complete(c);
        return;
    }
    /* Admin bodies come from the watcher or an operator over a short path:
     * a short total deadline bounds what a slow sender can hold. */
    c->x->body_deadline = now_ms(c) + (c->admin ? MIN(cfg(c)->body_deadline, ADMIN_BODY_DEADLINE)
                                                : cfg(c)->body_deadline);
    arm_body_timer(c);
}

/* The first allocation of a body buffer; it then doubles as bytes arrive. */
#define BODY_FIRST (64 * 1024)

/* Makes room for <n> more body bytes and returns where to write them, or
 * NULL when the process-wide budget (--max-body-memory) cannot cover it.
 * The buffer grows with what arrives, at least doubling (a large body costs
 * a few copies, not one per read), and never past what Content-Length says
 * is left: what the head declares is never reserved ahead of the bytes, so
 * "Content-Length: 999999999999" and one byte cost 64 KiB, not a failed
 * allocation. Every byte reserved is counted in server_stats.body_mem until
 * body_free(), so queued requests holding their bodies stay in the budget. */
static char *body_reserve(struct conn *c, size_t n)
{
    struct exchange *x = c->x;
    struct buf *b = &x->body;
    if (b->area != NULL && buf_room(b) >= n)
        return buf_data(b) + b->len;
    size_t want = b->len + n;
    size_t cap = MAX(want, MAX(b->cap * 2, (size_t)BODY_FIRST));
    if (x->req_framing == HTTP1_BODY_LENGTH && cap > b->len + x->body_left)
        cap = (size_t)MAX((uint64_t)want, b->len + x->body_left);
    atomic_uint_fast64_t *mem = &srv(c)->stats.body_mem;
    uint64_t more = cap > x->body_charged ? cap - x->body_charged : 0;
    if (atomic_fetch_add(mem, more) + more > cfg(c)->max_body_memory) {
        atomic_fetch_sub(mem, more);
        return NULL;
    }
    char *p = buf_grow_to(b, cap);
    /* A small first body takes a standard block: count what it took. */
    if (b->cap > x->body_charged + more)
        atomic_fetch_add(mem, b->cap - x->body_charged - more);
    else if (b->cap < x->body_charged + more)
        atomic_fetch_sub(mem, x->body_charged + more - b->cap);
    x->body_charged = b->cap;
    return p;
}

/* The process has no memory left for this body now: 503, try again soon. */
static void body_over_budget(struct conn *c)
{
    atomic_fetch_add(&srv(c)->stats.body_mem_refused, 1);
    conn_error(c, 503, "the balancer is buffering too many request bodies; retry shortly",
               "server_error", "overloaded");
}

/* Arms the body deadline: idle (--body-timeout) but never past the whole
 * body's deadline (--body-deadline), so a byte every few seconds cannot hold
 * a connection and its buffer forever. */
static void arm_body_timer(struct conn *c)
{
    int64_t at = MIN(now_ms(c) + cfg(c)->body_timeout, c->x->body_deadline);
    ev_timer_at(c->w->loop, &c->timer, at, conn_timeout_cb, c);
}

/* Moves body bytes from c->in into c->x->body. Returns false if the
 * connection was answered with an error. */
static bool take_body(struct conn *c)
{
    uint64_t max = c->admin ? admin_body_limit(c->x->path, c->x->method) : cfg(c)->limits.max_body;
    if (c->x->req_framing == HTTP1_BODY_LENGTH) {
        size_t n = (size_t)MIN((uint64_t)c->in.len, c->x->body_left);
        if (n > 0) {
            char *p = body_reserve(c, n);
            if (p == NULL) {
                body_over_budget(c);
                return false;
            }
            memcpy(p, buf_data(&c->in), n);
            buf_commit(&c->x->body, n);
            buf_consume(&c->in, n);
            c->x->body_left -= n;
        }
        if (c->x->body_left == 0)
            body_complete(c);
        return true;
    }
    /* chunked */
    while (c->in.len > 0) {
        size_t used = 0;
        struct slice d;
        enum http1_chunk_rc rc = http1_chunked_decode(&c->x->ck, buf_data(&c->in), c->in.len, &used, &d);
        if (rc == HTTP1_CHUNK_ERROR) {
            conn_error(c, 400, c->x->ck.error_reason ? c->x->ck.error_reason : "bad chunked body",
                       "invalid_request_error", "bad_request");
            return false;
        }
        if (rc == HTTP1_CHUNK_DATA) {
            if (max != 0 && c->x->body.len + d.len > max) { /* 0: no per-request limit */
                conn_error(c, 413, "request body too large", "invalid_request_error",
                           "body_too_large");
                return false;
            }
            char *p = body_reserve(c, d.len);
            if (p == NULL) {
                body_over_budget(c);
                return false;
            }
            memcpy(p, d.p, d.len);
            buf_commit(&c->x->body, d.len);
        }
        buf_consume(&c->in, used);
        if (rc == HTTP1_CHUNK_DONE) {
            body_complete(c);
            return true;
        }
    }
    return true;
}

/* Reads what the client sent. Returns false if the connection closed. */
static bool read_client(struct conn *c)
{
    while (c->rd_ready && !c->closed) {
        size_t limit;
        if (c->state == CS_LINGER) {
            char junk[4096];
            ssize_t n = read(c->io.fd, junk, sizeof(junk));
            if (n > 0) {
                continue;
            }
            if (n == -1 && errno == EINTR)
                continue;
            if (n == -1 && errno == EAGAIN) {
                c->rd_ready = false;
                return true;
            }
            conn_close(c); /* EOF or error: the client is done */
            return false;
        }
        struct buf *dst = &c->in;
        char *p;
        size_t room;
        if (c->state == CS_BODY && c->x->req_framing == HTTP1_BODY_LENGTH && c->in.len == 0 &&
            c->x->body_left > 0) {
            /* The rest of a Content-Length body goes straight into the body
             * buffer (grown by body_reserve as bytes come, within the
             * process budget): no copy out of c->in, and one read per
             * socket buffer instead of one per 16 KiB block. Never past the
             * body: a pipelined request stays in the socket for c->in. */
            dst = &c->x->body;
            p = body_reserve(c, (size_t)MIN(c->x->body_left, (uint64_t)BUF_CHUNK));
            if (p == NULL) {
                body_over_budget(c);
                return true; /* answered: the state machine moved on */
            }
            room = (size_t)MIN((uint64_t)buf_room(dst), c->x->body_left);
        } else {
            if (c->state == CS_HEAD)
                limit = cfg(c)->limits.max_head + 1024;
            else if (c->state == CS_BODY)
                limit = BUF_CHUNK * 4;
            else
                limit = PIPELINE_MAX;
            if (c->in.len >= limit)
                return true; /* backpressure: leave rd_ready set */
            p = buf_reserve(&c->in, 4096);
            room = MIN(buf_room(&c->in), limit - c->in.len + 1);
        }
        ssize_t r = read(c->io.fd, p, room);
        if (r > 0) {
            buf_commit(dst, (size_t)r);
            if (dst != &c->in)
                c->x->body_left -= (uint64_t)r;
            if (c->state == CS_BODY)
                arm_body_timer(c);
            /* A short read drained the socket: skip the read that would only
             * say EAGAIN (new data raises a new edge). Unless the peer closed:
             * then read on to the EOF, for which no edge will come. */
            if ((size_t)r < room && !c->rdhup)
                c->rd_ready = false;
            continue;
        }
        if (r == 0) {
            /* The client closed (or half-closed) its side. During a
             * response that means it left: stop the upstream work now. */
            c->rd_ready = false;
            if (c->state == CS_HEAD && c->in.len == 0) {
                conn_close(c);
                return false;
            }
            if (c->state == CS_HEAD || c->state == CS_BODY) {
                /* A request followed by a half-close ("send, then shut
                 * down writing"): answer what is buffered, then close. */
                c->client_eof = true;
                c->keep_alive = false;
                c->close_after = true;
                return true;
            }
            if (c->state != CS_CLOSING) {
                log_debug("client left during response");
                conn_close(c);
                return false;
            }
            return true;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN) {
            c->rd_ready = false;
            break;
        }
        conn_close(c);
        return false;
    }
    if (c->in.len == 0)
        buf_release(&c->in);
    return !c->closed;
}

/* Runs the state machine as far as the buffered input allows. */
static void drive(struct conn *c)
{
    int rounds;
    for (rounds = 0; rounds < 64 && !c->closed; rounds++) {
        if (!read_client(c))
            return;
        if (c->state == CS_LINGER)
            return;
        if (c->state == CS_HEAD) {
            if (c->in.len == 0) {
                if (c->client_eof) {
                    conn_close(c);
                    return;
                }
                exchange_put(c); /* idle: keep only the connection */
                arm_head_timer(c);
                break;
            }
            if (c->x == NULL)
                exchange_new(c);
            if (c->out.len >= PIPELINE_MAX) {
                /* Answers pile up unread: parse no more until the client
                 * reads (EV_WRITE brings us back). */
                arm(c, cfg(c)->send_timeout);
                break;
            }
            int hl = http1_parse_request(buf_data(&c->in), c->in.len, &c->x->req, &cfg(c)->limits);
            if (hl == -2) {
                if (c->client_eof) { /* it will never be complete */
                    conn_close(c);
                    return;
                }
                arm_head_timer(c);
                if (!c->rd_ready)
                    break;
                continue;
            }
            if (hl == -1) {
                c->state = CS_BODY; /* unsynchronized: answer and close */
                conn_error(c, c->x->req.error, c->x->req.error_reason, "invalid_request_error",
                           c->x->req.error == 413 ? "body_too_large" : "bad_request");
                return;
            }
            on_head(c, hl);
            continue;
        }
        if (c->state == CS_BODY) {
            if (!take_body(c))
                return;
            if (c->state == CS_BODY) {
                if (c->client_eof) { /* the body will never be complete */
                    conn_close(c);
                    return;
                }
                if (!c->rd_ready)
                    break;
                continue;
            }
            continue;
        }
        break; /* UPSTREAM / RELAY / CLOSING advance on their own events */
    }
    if (rounds == 64 && !c->closed)
        resume_later(c); /* fairness cap reached with work left */
    if (!c->closed)
        flush(c);
}

void conn_io_cb(struct ev_loop *loop, struct ev_io *io, unsigned events)
{
    struct conn *c = io->data;
    UNUSED(loop);
    if (events & EV_WRITE)
        c->wr_ready = true;
    if (events & EV_READ)
        c->rd_ready = true;
    if (events & EV_RDHUP)
        c->rdhup = true;
    if (events & EV_WRITE) {
        flush(c);
        if (c->closed)
            return;
        if (c->state == CS_RELAY && c->x->pass == 0 && c->out.len == 0) {
            relay(c); /* the client drained: resume reading the upstream */
            if (c->closed)
                return;
        }
    }
    drive(c);
}

/* ================================================================ dispatch */

static void upstream_send(struct conn *c);

static void up_timeout_cb(struct ev_loop *loop, struct ev_timer *t);
static void up_failed(struct conn *c, const char *err);

static void wake_loop(void *loop)
{
    ev_wake(loop);
}

static void fill_req(struct conn *c, struct reg_req *q)
{
    q->model = c->x->model[0] ? c->x->model : NULL;
    q->pin = c->x->pin[0] ? c->x->pin : NULL;
    q->affinity = c->x->affinity;
    q->tried = c->x->tried;
    q->ntried = c->x->ntried;
}

/* After a response the balancer made itself (no backend, queue full or
 * timed out, upstream failed, admin answers): keep the connection for the
 * next request unless it must close. */
static void finish_local_error(struct conn *c)
{
    if (c->closed || c->state == CS_CLOSING)
        return;
    if (c->close_after) {
        c->state = CS_CLOSING;
        arm(c, cfg(c)->send_timeout);
        flush(c);
        return;
    }
    reset_request(c);
    c->state = CS_HEAD;
    flush(c);
    resume_later(c); /* the next pipelined request, without recursing */
}

/* Starts the request on the backend in c->x->be: lease a pooled connection
 * or connect, then send. */
static void start_upstream(struct conn *c)
{
    struct backend *b = c->x->be;
    int err = 0;
    c->state = CS_UPSTREAM;
    struct upconn *u = up_lease(c->w, b, c->x->fresh_only, &err);
    if (u == NULL) {
        log_debug("backend %s: connect: %s", b->spec.name, strerror(-err));
        up_failed(c, up_err_connect);
        return;
    }
    c->x->up = u;
    c->x->capped = b->cap != 0;
    u->c = c;
    u->sent = 0;
    u->got_bytes = false;
    c->x->resp_done = false;
    c->x->pass = 0;
    c->x->t_sent_us = util_now_us();
    http1_msg_reset(&c->x->req); /* reused below for the response head */
    if (!u->connected) {
        ev_timer_start(c->w->loop, &u->timer, cfg(c)->connect_timeout, up_timeout_cb, u);
        return; /* the writable event completes the connect */
    }
    upstream_send(c);
}

/* Picks a backend and starts the request on it, or queues it when every
 * eligible backend is at its cap. */
static void dispatch(struct conn *c)
{
    struct server *s = srv(c);
    struct reg_req q;
    const char *why = NULL;
    struct backend *b = NULL;
    fill_req(c, &q);
    c->state = CS_UPSTREAM;
    if (!c->x->model_counted) {
        reg_model_inflight(&s->reg, c->x->model, +1);
        c->x->model_counted = true;
    }
    c->x->waiter.ready_list = &c->w->ready;
    c->x->waiter.wake = wake_loop;
    c->x->waiter.wake_arg = c->w->loop;
    enum reg_pick_rc rc = reg_pick(&s->reg, &q, &c->w->rng, now_ms(c), &c->x->waiter, &b, &why);
    switch (rc) {
    case REG_PICKED:
        log_debug("%s %s -> %s (%s%s%s)", c->x->method, c->x->path, b->spec.name, why,
                  c->x->model[0] ? ", model " : "", c->x->model);
        c->x->be = b;
        start_upstream(c);
        return;
    case REG_QUEUED:
        c->state = CS_QUEUED;
        arm(c, cfg(c)->queue_timeout);
        return;
    case REG_QUEUE_FULL:
        conn_error(c, 503, "every backend is busy and the queue is full", "server_error",
                   "queue_full");
        break;
    case REG_NO_MODEL: {
        char msg[200];
        snprintf(msg, sizeof(msg), "The model '%.128s' does not exist", c->x->model);
        conn_error(c, 404, msg, "invalid_request_error", "model_not_found");
        break;
    }
    case REG_NONE:
        if (c->x->ntried == 0) {
            atomic_fetch_add(&s->stats.no_backend, 1);
            conn_error(c, 503, "no backend available", "server_error", "no_backend");
        } else {
            conn_error(c, 502, "every backend tried failed", "server_error", "upstream_error");
        }
        break;
    }
    finish_local_error(c);
}

void conn_dequeued(struct conn *c)
{
    struct backend *b = c->x->waiter.assigned;
    c->x->waiter.assigned = NULL;
    c->x->waiter.state = REG_W_IDLE;
    if (c->closed) { /* cannot happen: conn_close cancels; keep the slot safe anyway */
        struct reg_outcome o = {0};
        reg_release(&srv(c)->reg, b, &o, now_ms(c));
        backend_unref(b);
        return;
    }
    ev_timer_stop(c->w->loop, &c->timer);
    log_debug("%s %s -> %s (dequeued)", c->x->method, c->x->path, b->spec.name);
    c->x->be = b;
    start_upstream(c);
}

/* Writes the request (head, framing, body) to the upstream. */
static void upstream_send(struct conn *c)
{
    struct upconn *u = c->x->up;
    size_t total = c->x->uphead.len + c->x->clhdr_len + c->x->body.len, before = u->sent;
    if (before == total)
        return; /* sent already: the response deadline keeps running */
    while (u->wr_ready && u->sent < total) {
        struct iovec iov[3];
        int n = 0;
        size_t off = u->sent;
        const char *parts[3] = {buf_data(&c->x->uphead), c->x->clhdr, c->x->body.area ? buf_data(&c->x->body) : ""};
        size_t lens[3] = {c->x->uphead.len, c->x->clhdr_len, c->x->body.len};
        for (int i = 0; i < 3; i++) {
            if (off >= lens[i]) {
                off -= lens[i];
                continue;
            }
            iov[n++] = (struct iovec){(char *)parts[i] + off, lens[i] - off};
            off = 0;
        }
        ssize_t w = writev(u->io.fd, iov, n);
        if (w == -1) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                u->wr_ready = false;
                break;
            }
            up_failed(c, u->reused && !u->got_bytes ? up_err_stale : up_err_reset);
            return;
        }
        u->sent += (size_t)w;
    }
    if (u->sent == total)
        ev_timer_start(c->w->loop, &u->timer, cfg(c)->response_timeout, up_timeout_cb, u);
    else if (u->sent > before || before == 0)
        ev_timer_start(c->w->loop, &u->timer, cfg(c)->send_timeout, up_timeout_cb, u);
}

/* Maps an upstream failure to a retry or a status, in one place
 * (hardening.md §4). Nothing has reached the client when this runs. */
static void up_failed(struct conn *c, const char *err)
{
    struct server *s = srv(c);
    struct backend *b = c->x->be;
    bool nothing_sent = c->x->up == NULL || c->x->up->sent == 0;
    bool safe = err == up_err_connect || err == up_err_connect_timeout || err == up_err_stale;
    /* Refused: nothing reached any backend and none would take it (F-02). */
    int status = err == up_err_timeout || err == up_err_connect_timeout ? 504
                 : err == up_err_connect                                ? 503
                                                                        : 502;

    if (b != NULL) {
        log_info("backend %s: %s (request %s %s)", b->spec.name, err, c->x->method, c->x->path);
        atomic_fetch_add(&b->stats.failures, 1);
        atomic_fetch_add(&b->stats.status[0], 1);
        if (err == up_err_connect || err == up_err_connect_timeout) {
            /* A refused or unreachable backend is down for certain: eject at
             * once rather than after eject_after requests. */
            pthread_mutex_lock(&s->reg.lock);
            b->consecutive_failures = s->reg.eject_after ? s->reg.eject_after - 1 : 0;
            pthread_mutex_unlock(&s->reg.lock);
        }
    }
    if (err == up_err_stale && c->x->stale_retries < 2) {
        /* The pooled connection raced its idle close: try the same backend
         * on a fresh connection; this is not a failure of the backend. */
        c->x->stale_retries++;
        c->x->fresh_only = true;
        if (c->x->up != NULL) {
            c->x->up->c = NULL;
            up_release(c->x->up, false);
            c->x->up = NULL;
        }
        struct reg_outcome ok = {0};
        reg_release(&s->reg, b, &ok, now_ms(c));
        backend_unref(b);
        c->x->be = NULL;
        dispatch(c);
        return;
    }
    bool retry = false;
    if (c->x->ntried + 1 < cfg(c)->max_tries) {
        if (safe || (nothing_sent && err != up_err_timeout))
            retry = true;
        else if (err == up_err_reset && cfg(c)->retry_on_status)
            retry = true; /* closed before the status line: allowed once (rule 3) */
    }
    if (b != NULL) {
        c->x->tried[c->x->ntried++] = b;
        backend_ref(b);
    }
    drop_upstream(c, true);
    c->x->fresh_only = false;
    struct reg_req q;
    fill_req(c, &q);
    if (retry && reg_has_alternative(&s->reg, &q, now_ms(c))) {
        if (b != NULL)
            atomic_fetch_add(&b->stats.retries, 1);
        dispatch(c);
        return;
    }
    conn_error(c, status,
               status == 504   ? "upstream timed out"
               : status == 503 ? "no backend reachable"
                               : "upstream failed",
               "server_error", status == 503 ? "no_backend" : status == 504 ? "upstream_timeout"
                                                                           : "upstream_error");
    finish_local_error(c); /* keep-alive survives our own error */
}

static void up_timeout_cb(struct ev_loop *loop, struct ev_timer *t)
{
    struct upconn *u = t->data;
    struct conn *c = u->c;
    UNUSED(loop);
    if (c == NULL) { /* idle pooled connection past its lifetime */
        up_release(u, false);
        return;
    }
    if (!u->connected) {
        up_failed(c, up_err_connect_timeout);
        return;
    }
    if (c->state == CS_UPSTREAM) {
        if (u->sent < c->x->uphead.len + c->x->clhdr_len + c->x->body.len)
            up_failed(c, up_err_io);
        else
            up_failed(c, up_err_timeout);
        return;
    }
    /* Idle between response bytes mid-stream: end it as truncated. */
    log_info("backend %s: stream idle timeout", c->x->be ? c->x->be->spec.name : "?");
    if (c->x->be)
        atomic_fetch_add(&c->x->be->stats.failures, 1);
    conn_close(c);
}

/* ================================================================ response */

/* Builds the client's response head from the upstream's: same status and
 * end-to-end headers, our own framing and connection handling. */
static void build_client_head(struct conn *c, const struct http1_msg *r)
{
    struct buf *o = &c->out;
    const struct http1_header *cl = NULL;
    buf_reserve(o, 512);
    buf_append_lit(o, "HTTP/1.1 ");
    buf_append_u64(o, (uint64_t)r->status);
    buf_append(o, " ", 1);
    buf_append(o, r->reason.p, r->reason.len);
    buf_append_lit(o, "\r\n");
    for (unsigned i = 0; i < r->nheaders; i++) {
        const struct http1_header *h = &r->headers[i];
        if (slice_case_eq_cstr(h->name, "content-length")) {
            cl = h;
            continue;
        }
        if (http1_is_hop_by_hop(r, h->name))
            continue;
        buf_append(o, h->name.p, h->name.len);
        buf_append(o, ": ", 2);
        buf_append(o, h->value.p, h->value.len);
        buf_append(o, "\r\n", 2);
    }
    switch (c->x->resp_framing) {
    case HTTP1_BODY_NONE:
        if (c->is_head && cl != NULL && r->framing != HTTP1_BODY_CHUNKED) {
            buf_append_lit(o, "Content-Length: ");
            buf_append(o, cl->value.p, cl->value.len);
            buf_append_lit(o, "\r\n");
        } else if (r->status >= 200 && r->status != 204 && r->status != 304 && !c->is_head) {
            buf_append_lit(o, "Content-Length: 0\r\n");
        }
        break;
    case HTTP1_BODY_LENGTH:
        buf_append_lit(o, "Content-Length: ");
        buf_append_u64(o, c->x->resp_left);
        buf_append_lit(o, "\r\n");
        break;
    case HTTP1_BODY_CHUNKED:
        if (c->minor == 1)
            buf_append_lit(o, "Transfer-Encoding: chunked\r\n");
        else {
            c->x->dechunk = true;
            c->close_after = true;
        }
        break;
    case HTTP1_BODY_CLOSE:
        c->close_after = true;
        break;
    }
    if (c->close_after || atomic_load(&srv(c)->draining)) {
        c->close_after = true;
        buf_append_lit(o, "Connection: close\r\n");
    } else if (c->minor == 0) {
        buf_append_lit(o, "Connection: keep-alive\r\n");
    }
    buf_append(o, "\r\n", 2);
}

static void finish_response(struct conn *c)
{
    struct server *s = srv(c);
    struct backend *b = c->x->be;
    int64_t dur_us = util_now_us() - c->x->t0_us;
    bool failed = c->status >= 500;

    atomic_fetch_add(&b->stats.requests, 1);
    atomic_fetch_add(&b->stats.status[c->status / 100], 1);
    atomic_fetch_add(&b->stats.bytes_out, c->x->bytes_out);
    atomic_fetch_add(&b->stats.lat_sum_us, (uint64_t)dur_us);
    atomic_fetch_add(&b->stats.ttfb_sum_us, (uint64_t)c->x->ttfb_us);
    unsigned k = 0;
    while (k < REG_LAT_BUCKETS && (double)dur_us / 1e6 > reg_lat_bounds[k])
        k++;
    atomic_fetch_add(&b->stats.lat_count[k], 1);
    atomic_fetch_add(&s->stats.responses[c->status / 100], 1);
    worker_log_access(c, b->spec.name);

    struct upconn *u = c->x->up;
    c->x->up = NULL;
    u->c = NULL;
    up_release(u, c->x->up_reusable && u->in.len == 0 && !atomic_load(&s->draining));
    struct reg_outcome o = {.failed = failed, .model = c->x->model, .counted = true};
    if (c->x->t_sent_us != 0 && c->x->t_first_us >= c->x->t_sent_us) {
        o.ttft_us = c->x->t_first_us - c->x->t_sent_us;
        o.events = c->x->events;
        if (c->x->events > 1)
            o.tbt_us = (c->x->t_last_us - c->x->t_first_us) / (c->x->events - 1);
    }
    o.sse_events = c->x->sse_events;
    if (c->x->sse_events > 0)
        atomic_fetch_add(&b->stats.events, c->x->sse_events);
    reg_release(&s->reg, b, &o, now_ms(c));
    backend_unref(b);
    c->x->be = NULL;
    if (c->close_after) {
        c->state = CS_CLOSING;
        arm(c, cfg(c)->send_timeout);
        flush(c);
        return;
    }
    reset_request(c);
    c->state = CS_HEAD;
    drive(c); /* the next pipelined request may already be buffered */
}

/* Counts SSE events (lines ended by a blank line) in response payload. */
static void count_sse(struct conn *c, const char *p, size_t n)
{
    const char *end = p + n;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL) {
            c->x->sse_nl = false;
            return;
        }
        /* "\n\n" or "\n\r\n" ends an event; a newline right after one counts. */
        if (c->x->sse_nl && (nl == p || (nl == p + 1 && p[0] == '\r')))
            c->x->sse_events++;
        c->x->sse_nl = true;
        p = nl + 1;
        if (p < end && *p != '\n' && *p != '\r')
            c->x->sse_nl = false;
    }
}

/* Frames what the upstream buffer holds: how many bytes may pass to the
 * client, and whether the message is complete. Returns false on a framing
 * error (the upstream broke the protocol mid-response). */
static bool frame_upstream(struct conn *c)
{
    struct buf *in = &c->x->up->in;
    if (c->x->pass > 0 || c->x->resp_done)
        return true;
    switch (c->x->resp_framing) {
    case HTTP1_BODY_NONE:
        c->x->resp_done = true;
        break;
    case HTTP1_BODY_LENGTH:
        c->x->pass = (size_t)MIN((uint64_t)in->len, c->x->resp_left);
        c->x->resp_left -= c->x->pass;
        c->x->resp_done = c->x->resp_left == 0;
        if (c->x->sse)
            count_sse(c, buf_data(in), c->x->pass);
        break;
    case HTTP1_BODY_CLOSE:
        c->x->pass = in->len;
        if (c->x->sse)
            count_sse(c, buf_data(in), c->x->pass);
        break;
    case HTTP1_BODY_CHUNKED: {
        size_t off = 0;
        while (off < in->len) {
            size_t used = 0;
            struct slice d;
            enum http1_chunk_rc rc =
                http1_chunked_decode(&c->x->rck, buf_data(in) + off, in->len - off, &used, &d);
            if (rc == HTTP1_CHUNK_ERROR)
                return false;
            if (rc == HTTP1_CHUNK_DATA && c->x->sse)
                count_sse(c, d.p, d.len);
            if (c->x->dechunk && rc == HTTP1_CHUNK_DATA)
                buf_append(&c->out, d.p, d.len);
            off += used;
            if (rc == HTTP1_CHUNK_DONE) {
                c->x->resp_done = true;
                break;
            }
        }
        if (c->x->dechunk) {
            c->x->bytes_out += off;
            buf_consume(in, off);
        } else {
            c->x->pass = off;
        }
        break;
    }
    }
    return true;
}

/* Notes that response body bytes arrived: live speed for the policy. */
static void mark_body(struct conn *c)
{
    int64_t t = util_now_us();
    if (c->x->events++ == 0)
        c->x->t_first_us = t;
    c->x->t_last_us = t;
}

/* Learns which backend stored an upload, from the id in its JSON answer
 * (when the whole small body came with the head). */
static void learn_upload(struct conn *c)
{
    struct buf *in = &c->x->up->in;
    struct slice v;
    char id[64];
    if (c->status != 200 || c->x->resp_framing != HTTP1_BODY_LENGTH || in->len < c->x->resp_left)
        return;
    if (json_top_string(buf_data(in), (size_t)c->x->resp_left, "id", &v) == 1 &&
        copy_plain(v, id, sizeof(id)))
        reg_file_put(&srv(c)->reg, id, c->x->be->spec.name);
}

/* Moves response bytes from the upstream to the client, reading the
 * upstream only when the client has taken everything before. */
static void relay(struct conn *c)
{
    struct upconn *u = c->x->up;
    for (int rounds = 0; rounds < 64 && !c->closed && c->x->up == u; rounds++) {
        if (!frame_upstream(c)) {
            log_info("backend %s: invalid framing mid-response", c->x->be->spec.name);
            atomic_fetch_add(&c->x->be->stats.failures, 1);
            conn_close(c); /* truncated, never a fake clean end */
            return;
        }
        flush(c);
        if (c->closed)
            return;
        if (c->x->pass > 0 || c->out.len > 0) {
            /* The client is slow: wait for its EV_WRITE, read nothing more
             * upstream. Its send deadline runs, not the backend's idle one. */
            ev_timer_stop(c->w->loop, &u->timer);
            return;
        }
        if (c->x->resp_done) {
            if (u->in.len > 0 || (u->eof && c->x->resp_framing != HTTP1_BODY_CLOSE))
                c->x->up_reusable = false; /* extra bytes after the message: never reuse */
            finish_response(c);
            return;
        }
        if (u->eof) {
            if (c->x->resp_framing == HTTP1_BODY_CLOSE && !u->reset) {
                c->x->resp_done = true;
                c->x->up_reusable = false;
                continue;
            }
            log_info("backend %s: closed mid-response", c->x->be->spec.name);
            atomic_fetch_add(&c->x->be->stats.failures, 1);
            conn_close(c);
            return;
        }
        if (!u->rd_ready) {
            /* Waiting for the next token: hold no buffer memory meanwhile. */
            if (u->in.len == 0)
                buf_release(&u->in);
            ev_timer_start(c->w->loop, &u->timer, cfg(c)->stream_idle_timeout, up_timeout_cb, u);
            return;
        }
        char *p = buf_reserve(&u->in, BUF_CHUNK / 4);
        size_t room = buf_room(&u->in);
        ssize_t r = read(u->io.fd, p, room);
        if (r > 0) {
            buf_commit(&u->in, (size_t)r);
            mark_body(c);
            if ((size_t)r < room && !u->rdhup) /* drained: see read_client() */
                u->rd_ready = false;
            continue;
        }
        if (r == 0) {
            u->eof = true;
            u->rd_ready = false;
            continue;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN) {
            u->rd_ready = false;
            continue;
        }
        u->eof = true; /* a reset: the end, but not a clean one */
        u->reset = true;
        u->rd_ready = false;
    }
    if (!c->closed && c->x->up == u && c->state == CS_RELAY)
        resume_later(c); /* fairness cap reached with work left */
}

/* The response head is complete in u->in: decide between retry and relay. */
static void on_response_head(struct conn *c, int hl)
{
    struct upconn *u = c->x->up;
    const struct http1_msg *r = &c->x->req;
    int st = r->status;

    if (st >= 100 && st < 200) {
        buf_consume(&u->in, (size_t)hl);
        http1_msg_reset(&c->x->req);
        if (st == 101) {
            up_failed(c, up_err_bad);
        }
        return; /* interim response: we answered Expect ourselves */
    }
    if ((st == 502 || st == 503 || st == 429) && cfg(c)->retry_on_status &&
        c->x->ntried + 1 < cfg(c)->max_tries) {
        struct backend *b = c->x->be;
        c->x->tried[c->x->ntried] = b; /* tentatively, to ask for an alternative */
        struct reg_req q;
        fill_req(c, &q);
        q.ntried++;
        bool alt = reg_has_alternative(&srv(c)->reg, &q, now_ms(c));
        if (alt) {
            log_info("backend %s answered %d: retrying elsewhere", b->spec.name, st);
            atomic_fetch_add(&b->stats.retries, 1);
            atomic_fetch_add(&b->stats.status[st / 100], 1);
            backend_ref(b);
            c->x->ntried++;
            drop_upstream(c, st != 429);
            dispatch(c);
            return;
        }
    }
    c->status = st;
    c->x->ttfb_us = util_now_us() - c->x->t0_us;
    c->x->resp_framing = r->framing;
    c->x->resp_left = r->content_length;
    /* A backend may answer before it has read the whole request (an early
     * 413); what we did not send would prefix the next request on this
     * connection, so such a connection is never reused. */
    c->x->up_reusable = r->keep_alive && !r->cl_and_te && r->framing != HTTP1_BODY_CLOSE &&
                     u->sent == c->x->uphead.len + c->x->clhdr_len + c->x->body.len;
    const struct http1_header *ct = http1_find(r, "content-type");
    c->x->sse = ct != NULL && ct->value.len >= 17 && memcmp(ct->value.p, "text/event-stream", 17) == 0;
    build_client_head(c, r);
    buf_consume(&u->in, (size_t)hl);
    ev_timer_stop(c->w->loop, &u->timer);
    if (u->in.len > 0 || c->x->resp_framing == HTTP1_BODY_NONE)
        mark_body(c);
    if (c->x->is_upload)
        learn_upload(c);
    c->state = CS_RELAY;
    if (u->sent == c->x->uphead.len + c->x->clhdr_len + c->x->body.len) {
        buf_free(&c->x->uphead);
        body_free(c->x);
        c->x->clhdr_len = 0;
        u->sent = 0;
    }
    relay(c);
}

/* Upstream readiness while waiting for the response head. */
static void read_response_head(struct conn *c)
{
    struct upconn *u = c->x->up;
    struct http1_limits lim = cfg(c)->limits;
    lim.max_body = 0;
    for (;;) {
        if (u->in.len > 0 && memcmp(buf_data(&u->in), "HTTP/", MIN(u->in.len, (size_t)5)) != 0) {
            /* Not HTTP at all (an SSH banner, bare HTML): fail now instead
             * of waiting for a head that never ends until the timeout. */
            log_info("backend %s: response does not start with HTTP/", c->x->be->spec.name);
            up_failed(c, up_err_bad);
            return;
        }
        if (u->in.len > 0) {
            int hl = http1_parse_response(buf_data(&u->in), u->in.len, &c->x->req, &lim, c->is_head);
            if (hl == -1) {
                log_info("backend %s: %s", c->x->be->spec.name, c->x->req.error_reason);
                up_failed(c, up_err_bad);
                return;
            }
            if (hl > 0) {
                on_response_head(c, hl);
                if (c->closed || c->state != CS_UPSTREAM || c->x->up != u)
                    return;
                continue;
            }
        }
        if (u->eof) {
            up_failed(c, u->reused && !u->got_bytes ? up_err_stale : up_err_reset);
            return;
        }
        if (!u->rd_ready)
            return;
        char *p = buf_reserve(&u->in, BUF_CHUNK / 4);
        size_t room = buf_room(&u->in);
        ssize_t r = read(u->io.fd, p, room);
        if (r > 0) {
            buf_commit(&u->in, (size_t)r);
            u->got_bytes = true;
            if ((size_t)r < room && !u->rdhup) /* drained: see read_client() */
                u->rd_ready = false;
            continue;
        }
        if (r == 0 || (errno != EINTR && errno != EAGAIN)) {
            u->eof = true;
            u->rd_ready = false;
            continue;
        }
        if (errno == EAGAIN)
            u->rd_ready = false;
    }
}

static void up_io_cb(struct ev_loop *loop, struct ev_io *io, unsigned events)
{
    struct upconn *u = io->data;
    struct conn *c = u->c;
    UNUSED(loop);
    if (events & EV_READ)
        u->rd_ready = true;
    if (events & EV_WRITE)
        u->wr_ready = true;
    if (events & EV_RDHUP)
        u->rdhup = true;
    if (c == NULL) {
        /* Idle in the pool: any readiness but writable means the backend
         * closed it or sent something unasked. Either way it is done. */
        if (events & (EV_READ | EV_ERROR))
            up_release(u, false);
        return;
    }
    if (!u->connected) {
        if (!(events & (EV_WRITE | EV_ERROR)))
            return;
        int e = net_connect_result(io->fd);
        if (e != 0) {
            log_debug("connect to %s: %s", u->be->spec.name, strerror(-e));
            up_failed(c, up_err_connect);
            return;
        }
        u->connected = true;
        ev_timer_stop(loop, &u->timer);
    }
    if (c->state == CS_UPSTREAM) {
        upstream_send(c);
        if (c->closed || c->x->up != u)
            return;
        read_response_head(c);
        return;
    }
    if (c->state == CS_RELAY)
        relay(c);
}

/* Exported for upstream.c so new connections use the same callback. */
ev_io_cb *const conn_up_io_cb = up_io_cb;

/* Completes a request the balancer answered itself (admin API). */
void conn_local_done(struct conn *c)
{
    worker_log_access(c, "-");
    finish_local_error(c);
}
