/* SPDX-License-Identifier: MIT
 * The client side of the request path (conn.h): accepting, reading and
 * parsing the head, reading the body into a buffer that grows within the
 * process budget, the deadlines of each stage, the balancer's own answers,
 * writing to the client, and closing. Routing, the upstream and the relay
 * are route.c, upstream.c and relay.c.
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

#include "admin.h"
#include "conn.h"
#include "json.h"
#include "log.h"
#include "relay.h"
#include "route.h"
#include "upstream.h"
#include "util.h"

/* Pipelined bytes buffered while a response is in progress; past this the
 * client is not read until the response is done. */
#define PIPELINE_MAX (64 * 1024)

static void drive(struct conn *c);
static void arm_body_timer(struct conn *c);
static bool stall_budget_spent(const struct conn *c);

/* ================================================================ timers */

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
    case CS_QUEUED:
        route_queue_timeout(c);
        return;
    case CS_LINGER: /* done discarding */
        conn_close(c);
        return;
    default: /* the client stopped reading our response */
        atomic_fetch_add(&conn_srv(c)->stats.aborted_streams, 1);
        if (stall_budget_spent(c)) {
            log_info("backend %s: response cut: its client kept it waiting %lld ms "
                     "(--slow-client-budget)",
                     c->x->be ? c->x->be->spec.name : "?",
                     (long long)(c->x->stalled_ms + conn_now(c) - c->x->stall_since));
            atomic_fetch_add(&conn_srv(c)->stats.slow_client_cuts, 1);
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
        relay_run(c);
    else
        drive(c);
}

/* Continues on the next loop iteration: after a fairness cap (other
 * connections get their turn) or instead of recursing into the next
 * pipelined request. Edge-triggered readiness already consumed is not lost:
 * the zero-delay timer brings us back without a new edge. */
void conn_resume_later(struct conn *c)
{
    if (!c->closed && !ev_timer_active(&c->resume))
        ev_timer_start(c->w->loop, &c->resume, 0, resume_cb, c);
}

void conn_arm(struct conn *c, int64_t ms)
{
    ev_timer_start(c->w->loop, &c->timer, ms, conn_timeout_cb, c);
}

static void arm_head_timer(struct conn *c)
{
    int64_t now = conn_now(c);
    if (c->out.len > 0) { /* still answering: the client must read first */
        conn_arm(c, conn_cfg(c)->send_timeout);
        return;
    }
    if (c->in.len == 0) {
        ev_timer_at(c->w->loop, &c->timer, now + conn_cfg(c)->keepalive_timeout, conn_timeout_cb, c);
        c->head_deadline = 0;
    } else {
        if (c->head_deadline == 0)
            c->head_deadline = now + conn_cfg(c)->header_timeout;
        ev_timer_at(c->w->loop, &c->timer, c->head_deadline, conn_timeout_cb, c);
    }
}

/* ================================================================ exchanges */

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
void exchange_body_free(struct exchange *x)
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
    if (x->keyring != NULL) {
        keyring_unref(x->keyring);
        x->keyring = NULL;
        x->key = NULL;
    }
    buf_free(&x->uphead);
    exchange_body_free(x);
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
    c->head_deadline = ev_now(w->loop) + w->rt->cfg.header_timeout;
    ev_timer_at(w->loop, &c->timer, c->head_deadline, conn_timeout_cb, c);
    /* Edge-triggered: the data may already be there; the first event will
     * say so, no speculative read needed. */
}

void conn_close(struct conn *c)
{
    if (c->closed)
        return;
    c->closed = true;
    if (c->state == CS_QUEUED)
        route_leave_queue(c);
    if (c->state == CS_UPSTREAM || c->state == CS_RELAY) {
        if (!c->x->resp_done)
            atomic_fetch_add(&conn_srv(c)->stats.aborted_streams, 1);
        up_drop(c, false);
    }
    route_forget(c);
    ev_timer_stop(c->w->loop, &c->timer);
    ev_timer_stop(c->w->loop, &c->resume);
    int fd = c->io.fd;
    ev_io_stop(c->w->loop, &c->io);
    if (fd != -1)
        close(fd);
    list_del(&c->link);
    list_add_tail(&c->w->graveyard_c, &c->link);
    c->w->nconns--;
    atomic_fetch_sub(active_count(conn_srv(c), c->admin), 1);
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

/* ================================================================ output */

void conn_respond(struct conn *c, int status, const char *ctype, const char *body, size_t len,
                  const char *extra_headers)
{
    struct buf *o = &c->out;
    bool close_conn = c->close_after || !c->keep_alive;
    buf_printf(o, "HTTP/1.1 %d %s\r\n", status, http1_reason(status));
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
    atomic_fetch_add(&conn_srv(c)->stats.responses[status / 100], 1);
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
    atomic_fetch_add(&conn_srv(c)->stats.local_errors[status], 1);
    if (c->x != NULL)
        exchange_body_free(c->x); /* never sent now: give its memory back before the close */
    conn_respond(c, status, "application/json", buf_data(&b), b.len,
                 status == 503 ? "Retry-After: 1\r\n" : NULL);
    buf_free(&b);
    worker_log_access(c, "-");
    if (c->close_after) {
        c->state = CS_CLOSING;
        ev_timer_start(c->w->loop, &c->timer, conn_cfg(c)->send_timeout, conn_timeout_cb, c);
        conn_flush(c);
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
    int64_t now = conn_now(c);
    if (c->x->stall_since == 0)
        c->x->stall_since = now;
    int64_t left = conn_cfg(c)->slow_client_budget - c->x->stalled_ms - (now - c->x->stall_since);
    conn_arm(c, MAX(0, MIN(left, conn_cfg(c)->send_timeout)));
}

static bool stall_budget_spent(const struct conn *c)
{
    return c->state == CS_RELAY && c->x->capped && c->x->stall_since != 0 &&
           c->x->stalled_ms + (conn_now(c) - c->x->stall_since) >= conn_cfg(c)->slow_client_budget;
}

/* Ends a connection with a reset, not a FIN: a client reading a response
 * delimited by the close must not take a cut stream for a whole one. */
void conn_abort(struct conn *c)
{
    struct linger l = {.l_onoff = 1, .l_linger = 0};
    if (c->io.fd != -1)
        setsockopt(c->io.fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    conn_close(c);
}

/* Writes c->out, then the validated pass-through bytes of the upstream
 * buffer, with one writev. Returns after EAGAIN or when all is written. */
void conn_flush(struct conn *c)
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
                else if (c->state == CS_RELAY || c->state == CS_CLOSING ||
                         c->state == CS_UPSTREAM || c->state == CS_LOCAL)
                    conn_arm(c, conn_cfg(c)->send_timeout);
                return;
            }
            conn_close(c);
            return;
        }
        size_t done = (size_t)w, a = MIN(done, c->out.len);
        if (c->x != NULL && c->x->stall_since != 0) { /* the client reads again */
            c->x->stalled_ms += conn_now(c) - c->x->stall_since;
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
        conn_arm(c, 2000);
        c->rd_ready = true; /* drain what is already queued */
        conn_resume_later(c);
    }
}

/* ================================================================ request head */

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
    route_forget(c);
    exchange_free_data(x);
    memset(x, 0, sizeof(*x));
    x->c = c;
    c->status = 0;
    c->is_head = false;
    c->head_deadline = 0;
}

/* The whole request is in: the admin API answers it here, everything else
 * goes to routing. */
static void body_complete(struct conn *c)
{
    ev_timer_stop(c->w->loop, &c->timer);
    if (c->admin) {
        c->state = CS_LOCAL;
        admin_handle(c);
        return;
    }
    route_request(c);
}

static void on_head(struct conn *c, int hl)
{
    const struct http1_msg *m = &c->x->req;
    atomic_fetch_add(&conn_srv(c)->stats.requests, 1);
    c->x->t0_us = util_now_us();
    c->minor = m->minor;
    c->keep_alive = m->keep_alive && !atomic_load(&conn_srv(c)->draining);
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
            /* The admin API never answers on the public port (docs/hardening.md). */
            c->x->rid[0] = '\0';
            buf_consume(&c->in, (size_t)hl);
            c->state = CS_BODY;
            c->close_after = c->close_after || m->framing != HTTP1_BODY_NONE;
            conn_error(c, 404, "not found", "invalid_request_error", "not_found");
            return;
        }
        if (!route_authorize(c, m)) { /* no valid API key: 401, the body never read */
            buf_consume(&c->in, (size_t)hl);
            c->state = CS_BODY;
            conn_error(c, 401,
                       http1_find(m, "authorization") == NULL
                           ? "You didn't provide an API key. Send it as Authorization: Bearer KEY."
                           : "Incorrect API key provided.",
                       "invalid_request_error", "invalid_api_key");
            return;
        }
        up_build_head(c, m);
        route_classify_head(c, m);
    }
    buf_consume(&c->in, (size_t)hl);
    c->x->body_left = m->framing == HTTP1_BODY_LENGTH ? m->content_length : 0;
    if (c->admin) {
        /* Token, path, method, media type and length are judged on the head,
         * before a body byte is read or 100 Continue promised: without the
         * token, an admin connection costs its head and nothing more. */
        capture_admin_headers(c, m);
        c->state = CS_LOCAL; /* if refused */
        if (!admin_check_head(c, m))
            return;
    }
    c->state = CS_BODY;
    if (m->framing == HTTP1_BODY_LENGTH && m->content_length > conn_cfg(c)->max_body_memory) {
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
    c->x->body_deadline = conn_now(c) + (c->admin ? MIN(conn_cfg(c)->body_deadline, ADMIN_BODY_DEADLINE)
                                                : conn_cfg(c)->body_deadline);
    arm_body_timer(c);
}

/* ================================================================ request body */

/* The first allocation of a body buffer; it then doubles as bytes arrive. */
#define BODY_FIRST (64 * 1024)

/* Makes room for <n> more body bytes and returns where to write them, or
 * NULL when the process-wide budget (--max-body-memory) cannot cover it.
 * The buffer grows with what arrives, at least doubling (a large body costs
 * a few copies, not one per read), and never past what Content-Length says
 * is left: what the head declares is never reserved ahead of the bytes, so
 * "Content-Length: 999999999999" and one byte cost 64 KiB, not a failed
 * allocation. Every byte reserved is counted in server_stats.body_mem until
 * exchange_body_free(), so queued requests holding their bodies stay in the budget. */
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
    atomic_uint_fast64_t *mem = &conn_srv(c)->stats.body_mem;
    uint64_t more = cap > x->body_charged ? cap - x->body_charged : 0;
    if (atomic_fetch_add(mem, more) + more > conn_cfg(c)->max_body_memory) {
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
    atomic_fetch_add(&conn_srv(c)->stats.body_mem_refused, 1);
    conn_error(c, 503, "the balancer is buffering too many request bodies; retry shortly",
               "server_error", "overloaded");
}

/* Arms the body deadline: idle (--body-timeout) but never past the whole
 * body's deadline (--body-deadline), so a byte every few seconds cannot hold
 * a connection and its buffer forever. */
static void arm_body_timer(struct conn *c)
{
    int64_t at = MIN(conn_now(c) + conn_cfg(c)->body_timeout, c->x->body_deadline);
    ev_timer_at(c->w->loop, &c->timer, at, conn_timeout_cb, c);
}

/* Moves body bytes from c->in into c->x->body. Returns false if the
 * connection was answered with an error. */
static bool take_body(struct conn *c)
{
    uint64_t max = c->admin ? admin_body_limit(c->w->srv, c->x->path, c->x->method) : conn_cfg(c)->limits.max_body;
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

/* ================================================================ reading */

/* Reads what the client sent. Returns false if the connection closed. */
static bool read_client(struct conn *c)
{
    while (c->rd_ready && !c->closed) {
        size_t limit;
        if (c->state == CS_LINGER) {
            char junk[4096];
            ssize_t n = net_read(c->io.fd, junk, sizeof(junk), &c->rd_ready, true);
            if (n > 0)
                continue;
            if (n == -EAGAIN)
                return true;
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
                limit = conn_cfg(c)->limits.max_head + 1024;
            else if (c->state == CS_BODY)
                limit = BUF_CHUNK * 4;
            else
                limit = PIPELINE_MAX;
            if (c->in.len >= limit)
                return true; /* backpressure: leave rd_ready set */
            p = buf_reserve(&c->in, 4096);
            room = MIN(buf_room(&c->in), limit - c->in.len + 1);
        }
        ssize_t r = net_read(c->io.fd, p, room, &c->rd_ready, c->rdhup);
        if (r > 0) {
            buf_commit(dst, (size_t)r);
            if (dst != &c->in)
                c->x->body_left -= (uint64_t)r;
            if (c->state == CS_BODY)
                arm_body_timer(c);
            continue;
        }
        if (r == -EAGAIN)
            break;
        if (r == 0) {
            /* The client closed (or half-closed) its side. During a
             * response that means it left: stop the upstream work now. */
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
        conn_close(c); /* a read error */
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
                conn_arm(c, conn_cfg(c)->send_timeout);
                break;
            }
            int hl = http1_parse_request(buf_data(&c->in), c->in.len, &c->x->req, &conn_cfg(c)->limits);
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
        conn_resume_later(c); /* fairness cap reached with work left */
    if (!c->closed)
        conn_flush(c);
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
        conn_flush(c);
        if (c->closed)
            return;
        if (c->state == CS_RELAY && c->x->pass == 0 && c->out.len == 0) {
            relay_run(c); /* the client drained: resume reading the upstream */
            if (c->closed)
                return;
        }
    }
    drive(c);
}

/* ================================================================ ends of a request */

/* After a response the balancer made itself (no backend, queue full or
 * timed out, upstream failed, admin answers): keep the connection for the
 * next request unless it must close. The next pipelined request goes on in
 * the next loop iteration, not recursively. */
void conn_finish_local(struct conn *c)
{
    if (c->closed || c->state == CS_CLOSING)
        return;
    if (c->close_after) {
        c->state = CS_CLOSING;
        conn_arm(c, conn_cfg(c)->send_timeout);
        conn_flush(c);
        return;
    }
    reset_request(c);
    c->state = CS_HEAD;
    conn_flush(c);
    conn_resume_later(c); /* the next pipelined request, without recursing */
}

/* Completes a request the balancer answered itself (admin API). */
void conn_local_done(struct conn *c)
{
    worker_log_access(c, "-");
    conn_finish_local(c);
}

void conn_next_request(struct conn *c)
{
    if (c->close_after) {
        c->state = CS_CLOSING;
        conn_arm(c, conn_cfg(c)->send_timeout);
        conn_flush(c);
        return;
    }
    reset_request(c);
    c->state = CS_HEAD;
    drive(c); /* the next pipelined request may already be buffered */
}
