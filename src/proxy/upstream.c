/* SPDX-License-Identifier: MIT
 * The upstream side of the request path (upstream.h): the pools, the
 * rewritten request, connecting and sending, the response head, and the
 * one place where upstream failures become a retry or a status. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "conn.h"
#include "follow.h"
#include "log.h"
#include "relay.h"
#include "route.h"
#include "upstream.h"
#include "util.h"

/* Upstream failures, compared by address and mapped to statuses in one
 * place (up_failed). */

/* Upstream failures, compared by address and mapped to statuses in one
 * place (up_failed). */
static const char up_err_connect[] = "connect failed";
static const char up_err_connect_timeout[] = "connect timeout";
static const char up_err_stale[] = "pooled connection closed before responding";
static const char up_err_reset[] = "connection closed before the status line";
static const char up_err_timeout[] = "response timeout";
static const char up_err_bad[] = "invalid response";
static const char up_err_io[] = "upstream I/O error";

static void up_io_cb(struct ev_loop *loop, struct ev_io *io, unsigned events);
static void up_timeout_cb(struct ev_loop *loop, struct ev_timer *t);
static void up_failed(struct conn *c, const char *err);
static void upstream_send(struct conn *c);

/* ================================================================ the pool */

static void idle_timeout_cb(struct ev_loop *loop, struct ev_timer *t)
{
    UNUSED(loop);
    up_release(t->data, false);
}

struct upconn *up_lease(struct worker *w, struct backend *b, bool fresh_only, int *err)
{
    struct backend_pool *pool = &b->pools[w->id];
    if (!fresh_only && !list_empty(&pool->idle)) {
        struct upconn *u = list_entry(pool->idle.next, struct upconn, link);
        list_del(&u->link);
        list_del(&u->wlink);
        pool->nidle--;
        atomic_fetch_sub_explicit(&w->srv->stats.up_idle, 1, memory_order_relaxed);
        ev_timer_stop(w->loop, &u->timer);
        u->reused = true;
        u->uses++;
        atomic_fetch_add_explicit(&w->srv->stats.up_reuses, 1, memory_order_relaxed);
        return u;
    }
    atomic_fetch_add_explicit(&w->srv->stats.up_connects, 1, memory_order_relaxed);
    int fd = net_connect(&b->addr);
    if (fd < 0) {
        *err = fd;
        return NULL;
    }
    struct upconn *u = xcalloc(1, sizeof(*u));
    u->w = w;
    u->be = b;
    backend_ref(b);
    list_init(&u->link);
    list_init(&u->wlink);
    if (ev_io_start(w->loop, &u->io, fd, up_io_cb, u) != 0) {
        *err = -errno;
        close(fd);
        backend_unref(b);
        free(u);
        return NULL;
    }
    u->uses = 1;
    return u;
}

void up_release(struct upconn *u, bool reuse)
{
    struct worker *w = u->w;
    BUG_ON(u->closed);
    BUG_ON(u->c != NULL);
    struct backend_pool *pool = &u->be->pools[w->id];
    if (reuse && u->connected && !u->eof && !u->rdhup && !atomic_load(&u->be->removed) &&
        pool->nidle < w->rt->cfg.max_idle_per_backend) {
        buf_release(&u->in);
        u->reused = false;
        u->got_bytes = false;
        u->sent = 0;
        u->rd_ready = false;
        u->rdhup = false;
        u->reset = false;
        list_add_head(&pool->idle, &u->link);
        list_add_head(&w->idle_up, &u->wlink);
        pool->nidle++;
        atomic_fetch_add_explicit(&w->srv->stats.up_idle, 1, memory_order_relaxed);
        ev_timer_start(w->loop, &u->timer, w->rt->cfg.upstream_idle_timeout, idle_timeout_cb, u);
        return;
    }
    if (list_linked(&u->link)) { /* it was idle in the pool */
        list_del(&u->link);
        list_del(&u->wlink);
        pool->nidle--;
        atomic_fetch_sub_explicit(&w->srv->stats.up_idle, 1, memory_order_relaxed);
    }
    u->closed = true;
    ev_timer_stop(w->loop, &u->timer);
    int fd = u->io.fd;
    ev_io_stop(w->loop, &u->io);
    if (fd != -1)
        close(fd);
    list_add_tail(&w->graveyard_u, &u->link);
}

void up_free(struct upconn *u)
{
    buf_free(&u->in);
    backend_unref(u->be);
    free(u);
}

/* Closes this worker's idle connections to backends that left the set. */
void up_prune_removed(struct worker *w)
{
    uint_fast64_t v = atomic_load(&w->srv->reg.version);
    if (v == w->reg_version)
        return;
    w->reg_version = v;
    struct list *e = w->idle_up.next;
    while (e != &w->idle_up) {
        struct upconn *u = list_entry(e, struct upconn, wlink);
        e = e->next;
        if (atomic_load(&u->be->removed))
            up_release(u, false);
    }
}

void up_close_idle_all(struct worker *w)
{
    while (!list_empty(&w->idle_up))
        up_release(list_entry(w->idle_up.next, struct upconn, wlink), false);
}

/* ================================================================ the request */

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
void up_build_head(struct conn *c, const struct http1_msg *m)
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
        /* The client's API key is the balancer's to check, not the
         * backend's to see (keys.h): its line is marked, and cut out
         * when a backend is picked (route_dispatch). Until then the
         * request may go to the active replica, which needs it. */
        if (c->x->key != NULL && slice_case_eq_cstr(h->name, "authorization")) {
            if (c->x->auth_len > 0) /* a second one: never sent anywhere */
                continue;
            size_t at = o->len;
            buf_append(o, h->name.p, h->name.len);
            buf_append(o, ": ", 2);
            buf_append(o, h->value.p, h->value.len);
            buf_append(o, "\r\n", 2);
            c->x->auth_off = (unsigned)at;
            c->x->auth_len = (unsigned)(o->len - at);
            continue;
        }
        if (slice_case_eq_cstr(h->name, FOLLOW_HOP_HEADER)) {
            c->x->hopped = true; /* from a follower replica: never forwarded again */
            continue;
        }
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

/* The framing the upstream gets: the body is complete (a chunked one was
 * de-chunked), so its length is known and sent as Content-Length. */
static void set_framing(struct conn *c)
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
}

/* Gives the upstream side up: the connection is closed (a half-relayed
 * response makes it useless) and the backend slot released. */
void up_drop(struct conn *c, bool failed)
{
    if (c->x->up != NULL) {
        c->x->up->c = NULL;
        up_release(c->x->up, false);
        c->x->up = NULL;
    }
    if (c->x->be != NULL) {
        struct reg_outcome o = {.failed = failed, .model = c->x->model, .counted = failed};
        if (!c->x->slot_done)
            reg_release(&conn_srv(c)->reg, c->x->be, &o, conn_now(c));
        backend_unref(c->x->be);
        c->x->be = NULL;
    }
}

/* Starts the request on the backend in c->x->be: lease a pooled connection
 * or connect, then send. */
void up_start(struct conn *c)
{
    struct backend *b = c->x->be;
    int err = 0;
    c->state = CS_UPSTREAM;
    if (c->x->clhdr_len == 0)
        set_framing(c);
    struct upconn *u = up_lease(c->w, b, c->x->fresh_only, &err);
    if (u == NULL) {
        log_debug("backend %s: connect: %s", b->spec.name, strerror(-err));
        up_failed(c, up_err_connect);
        return;
    }
    c->x->up = u;
    /* The registry may change the cap under its lock while this runs: an
     * atomic read (registry.c stores it atomically). */
    c->x->capped = __atomic_load_n(&b->cap, __ATOMIC_RELAXED) != 0;
    u->c = c;
    u->sent = 0;
    u->got_bytes = false;
    c->x->resp_done = false;
    c->x->pass = 0;
    c->x->t_sent_us = util_now_us();
    http1_msg_reset(&c->x->resp); /* the request head's parse is over */
    if (!u->connected) {
        ev_timer_start(c->w->loop, &u->timer, conn_cfg(c)->connect_timeout, up_timeout_cb, u);
        return; /* the writable event completes the connect */
    }
    upstream_send(c);
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
        ev_timer_start(c->w->loop, &u->timer, conn_cfg(c)->response_timeout, up_timeout_cb, u);
    else if (u->sent > before || before == 0)
        ev_timer_start(c->w->loop, &u->timer, conn_cfg(c)->send_timeout, up_timeout_cb, u);
}

/* ================================================================ failures */

void up_arm(struct upconn *u, int64_t ms)
{
    ev_timer_start(u->w->loop, &u->timer, ms, up_timeout_cb, u);
}

/* Maps an upstream failure to a retry or a status, in one place
 * (docs/hardening.md, "Retries"). Nothing has reached the client when this
 * runs. */
static void up_failed(struct conn *c, const char *err)
{
    struct server *s = conn_srv(c);
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
            reg_note_unreachable(&s->reg, b);
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
        reg_release(&s->reg, b, &ok, conn_now(c));
        backend_unref(b);
        c->x->be = NULL;
        route_dispatch(c);
        return;
    }
    if (b != NULL && c->x->via == FOLLOW_VIA_ACTIVE) {
        /* The active replica (follow.h): the same rules decide whether the
         * request may go elsewhere, and elsewhere is here. */
        bool replayable = safe || (nothing_sent && err != up_err_timeout) ||
                          (err == up_err_reset && conn_cfg(c)->retry_on_status);
        if (follow_failed(c, replayable, err != up_err_timeout && err != up_err_bad))
            return;
    }
    bool retry = false;
    if (c->x->ntried + 1 < conn_cfg(c)->max_tries) {
        if (safe || (nothing_sent && err != up_err_timeout))
            retry = true;
        else if (err == up_err_reset && conn_cfg(c)->retry_on_status)
            retry = true; /* closed before the status line: allowed once (rule 3) */
    }
    if (b != NULL) {
        c->x->tried[c->x->ntried++] = b;
        backend_ref(b);
    }
    up_drop(c, true);
    c->x->fresh_only = false;
    struct reg_req q;
    route_fill_req(c, &q);
    if (retry && reg_has_alternative(&s->reg, &q, conn_now(c))) {
        if (b != NULL)
            atomic_fetch_add(&b->stats.retries, 1);
        route_dispatch(c);
        return;
    }
    c->state = CS_LOCAL;
    conn_error(c, status,
               status == 504   ? "upstream timed out"
               : status == 503 ? "no backend reachable"
                               : "upstream failed",
               "server_error", status == 503 ? "no_backend" : status == 504 ? "upstream_timeout"
                                                                           : "upstream_error");
    conn_finish_local(c); /* keep-alive survives our own error */
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

/* ================================================================ the response head */

/* The response head is complete in u->in: decide between retry and relay. */
static void on_response_head(struct conn *c, int hl)
{
    struct upconn *u = c->x->up;
    const struct http1_msg *r = &c->x->resp;
    int st = r->status;

    if (st >= 100 && st < 200) {
        buf_consume(&u->in, (size_t)hl);
        http1_msg_reset(&c->x->resp);
        if (st == 101) {
            up_failed(c, up_err_bad);
        }
        return; /* interim response: we answered Expect ourselves */
    }
    if (c->x->via == FOLLOW_VIA_ACTIVE) {
        follow_answered(c); /* the active's answer is final: relayed as it is */
        relay_start(c, r, hl);
        return;
    }
    if ((st == 502 || st == 503 || st == 429) && conn_cfg(c)->retry_on_status &&
        c->x->ntried + 1 < conn_cfg(c)->max_tries) {
        struct backend *b = c->x->be;
        c->x->tried[c->x->ntried] = b; /* tentatively, to ask for an alternative */
        struct reg_req q;
        route_fill_req(c, &q);
        q.ntried++;
        bool alt = reg_has_alternative(&conn_srv(c)->reg, &q, conn_now(c));
        if (alt) {
            log_info("backend %s answered %d: retrying elsewhere", b->spec.name, st);
            atomic_fetch_add(&b->stats.retries, 1);
            atomic_fetch_add(&b->stats.status[st / 100], 1);
            backend_ref(b);
            c->x->ntried++;
            up_drop(c, st != 429);
            route_dispatch(c);
            return;
        }
    }
    relay_start(c, r, hl);
}

/* Upstream readiness while waiting for the response head. */
static void read_response_head(struct conn *c)
{
    struct upconn *u = c->x->up;
    struct http1_limits lim = conn_cfg(c)->limits;
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
            int hl = http1_parse_response(buf_data(&u->in), u->in.len, &c->x->resp, &lim, c->is_head);
            if (hl == -1) {
                log_info("backend %s: %s", c->x->be->spec.name, c->x->resp.error_reason);
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
        ssize_t r = net_read(u->io.fd, p, room, &u->rd_ready, u->rdhup);
        if (r > 0) {
            buf_commit(&u->in, (size_t)r);
            u->got_bytes = true;
        } else if (r != -EAGAIN) {
            u->eof = true; /* EOF or an error: no more response */
        }
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
        relay_run(c);
}
