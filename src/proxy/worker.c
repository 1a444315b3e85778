/* SPDX-License-Identifier: MIT
 * Worker threads: one event loop each, with its own listening socket, its
 * connections, its upstream pools and its access-log buffer. The
 * before-sleep hook is where closed objects are freed, the access log is
 * written (one write per loop iteration, not per request) and draining
 * finishes. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "follow.h"
#include "json.h"
#include "log.h"
#include "probe.h"
#include "proxy.h"
#include "util.h"

/* ================================================================ accept */

/* Each listener pauses on its own: the public one at --max-conns, the admin
 * one at --admin-max-conns, either when out of descriptors (a listener that
 * stays readable would spin the worker). Admin connections never count
 * against the public limit, so they cannot pause the public listener. */
static void resume_accept_cb(struct ev_loop *loop, struct ev_timer *t)
{
    struct worker *w = t->data;
    if (w->lfd != -1 && w->accept_paused) {
        w->accept_paused = false;
        ev_io_set_mask(loop, &w->lio, EV_READ);
    }
}

static void resume_admin_accept_cb(struct ev_loop *loop, struct ev_timer *t)
{
    struct worker *w = t->data;
    if (w->afd != -1 && w->admin_accept_paused) {
        w->admin_accept_paused = false;
        ev_io_set_mask(loop, &w->aio, EV_READ);
    }
}

static void pause_accept(struct worker *w, bool admin, int64_t ms)
{
    if (admin) {
        if (w->afd == -1 || w->admin_accept_paused)
            return;
        w->admin_accept_paused = true;
        ev_io_set_mask(w->loop, &w->aio, 0);
        ev_timer_start(w->loop, &w->admin_accept_timer, ms, resume_admin_accept_cb, w);
        return;
    }
    if (w->lfd == -1 || w->accept_paused)
        return;
    w->accept_paused = true;
    ev_io_set_mask(w->loop, &w->lio, 0);
    ev_timer_start(w->loop, &w->accept_timer, ms, resume_accept_cb, w);
}

void worker_conn_closed(struct worker *w, bool admin)
{
    if (admin && w->admin_accept_paused)
        resume_admin_accept_cb(w->loop, &w->admin_accept_timer);
    else if (!admin && w->accept_paused && !w->draining)
        resume_accept_cb(w->loop, &w->accept_timer);
}

static void accept_cb(struct ev_loop *loop, struct ev_io *io, unsigned events)
{
    struct worker *w = io->data;
    bool admin = io == &w->aio;
    struct server *s = w->srv;
    UNUSED(loop);
    UNUSED(events);
    /* A bounded batch per wake-up keeps one busy listener from starving
     * the connections already accepted. */
    for (int i = 0; i < 64; i++) {
        if (admin ? atomic_load(&s->stats.admin_conns_active) >= w->rt->cfg.admin_max_conns
                  : atomic_load(&s->stats.conns_active) >= s->max_conns) {
            pause_accept(w, admin, 100);
            return;
        }
        struct net_addr peer;
        int fd = net_accept(io->fd, &peer);
        if (fd == -EAGAIN)
            return;
        if (fd < 0) {
            if (fd == -EMFILE || fd == -ENFILE || fd == -ENOBUFS || fd == -ENOMEM) {
                /* Out of descriptors: stop accepting for a while instead of
                 * spinning on a listener that stays readable. */
                log_warn("accept%s: %s; pausing accepts for 100 ms", admin ? " (admin)" : "",
                         strerror(-fd));
                pause_accept(w, admin, 100);
                return;
            }
            continue;
        }
        conn_accept(w, fd, &peer, admin);
    }
}

/* ================================================================ access log */

void worker_log_access(struct conn *c, const char *backend)
{
    struct worker *w = c->w;
    if (!atomic_load_explicit(&w->srv->access_on, memory_order_relaxed))
        return;
    char ts[32], peer[NET_ADDRSTR_LEN];
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
    net_addr_str(&c->peer, peer, sizeof(peer));
    /* An answer made before any request byte was parsed has no exchange. */
    static const struct exchange none;
    const struct exchange *x = c->x ? c->x : &none;
    int64_t dur = x->t0_us ? util_now_us() - x->t0_us : 0;
    if (conn_cfg(c)->access_log_json) {
        /* The text line's fields, by name; strings escaped (json.h). */
        struct buf *o = &w->alog;
        const char *key = x->key != NULL ? x->key->name : NULL;
        buf_printf(o, "{\"time\":\"%s\",\"peer\":", ts);
        json_append_str(o, peer, strlen(peer));
        buf_append_lit(o, ",\"method\":");
        json_append_str(o, x->method[0] ? x->method : "-", strlen(x->method[0] ? x->method : "-"));
        buf_append_lit(o, ",\"path\":");
        json_append_str(o, x->path[0] ? x->path : "-", strlen(x->path[0] ? x->path : "-"));
        buf_printf(o, ",\"protocol\":\"HTTP/1.%d\",\"status\":%d,\"bytes\":%llu,\"backend\":",
                   c->minor, c->status, (unsigned long long)x->bytes_out);
        json_append_str(o, backend, strlen(backend));
        buf_printf(o, ",\"tries\":%u,\"ttfb_ms\":%.3f,\"duration_ms\":%.3f,\"rid\":",
                   x->ntried + 1, (double)x->ttfb_us / 1000.0, (double)dur / 1000.0);
        json_append_str(o, x->rid[0] ? x->rid : "-", strlen(x->rid[0] ? x->rid : "-"));
        buf_append_lit(o, ",\"key\":");
        json_append_str(o, key != NULL ? key : "-", strlen(key != NULL ? key : "-"));
        if (follow_via_word(c)[0] != '\0') /* replicas (follow.h) */
            buf_printf(o, ",\"via\":\"%s\"", follow_via_word(c));
        buf_printf(o, ",\"admin\":%s}\n", c->admin ? "true" : "false");
        return;
    }
    buf_printf(&w->alog,
               "%s %s \"%s %s HTTP/1.%d\" %d %llu backend=%s tries=%u ttfb_ms=%.3f "
               "duration_ms=%.3f rid=%s key=%s%s%s%s\n",
               ts, peer, x->method[0] ? x->method : "-", x->path[0] ? x->path : "-", c->minor,
               c->status, (unsigned long long)x->bytes_out, backend, x->ntried + 1,
               (double)x->ttfb_us / 1000.0, (double)dur / 1000.0, x->rid[0] ? x->rid : "-",
               x->key != NULL ? x->key->name : "-", follow_via_word(c)[0] ? " via=" : "",
               follow_via_word(c), c->admin ? " admin" : "");
}

static void flush_access_log(struct worker *w)
{
    size_t off = 0;
    while (off < w->alog.len) {
        ssize_t n = write(w->srv->access_fd, buf_data(&w->alog) + off, w->alog.len - off);
        if (n <= 0) {
            if (n == -1 && errno == EINTR)
                continue;
            break; /* a full disk or closed pipe must not stop the balancer */
        }
        off += (size_t)n;
    }
    buf_consume(&w->alog, w->alog.len);
    buf_release(&w->alog);
}

/* ================================================================ draining */

static void drain_deadline_cb(struct ev_loop *loop, struct ev_timer *t)
{
    struct worker *w = t->data;
    UNUSED(loop);
    log_warn("worker %u: drain deadline reached, closing %u connections", w->id, w->nconns);
    while (!list_empty(&w->conns))
        conn_close(list_entry(w->conns.next, struct conn, link));
}

static void close_public_listener(struct worker *w)
{
    if (w->lfd != -1) {
        ev_io_stop(w->loop, &w->lio);
        close(w->lfd);
        w->lfd = -1;
    }
    ev_timer_stop(w->loop, &w->accept_timer);
}

static void close_listeners(struct worker *w)
{
    close_public_listener(w);
    if (w->afd != -1) {
        ev_io_stop(w->loop, &w->aio);
        close(w->afd);
        w->afd = -1;
    }
    ev_timer_stop(w->loop, &w->admin_accept_timer);
}

static void start_drain(struct worker *w)
{
    if (w->draining)
        return;
    w->draining = true;
    ev_timer_stop(w->loop, &w->poll_timer);
    /* The admin listener stays open: /metrics and /readyz show the drain. */
    close_public_listener(w);
    probe_stop(w);
    struct list *e = w->conns.next;
    while (e != &w->conns) {
        struct conn *c = list_entry(e, struct conn, link);
        e = e->next;
        conn_drain(c);
    }
    int64_t left = atomic_load(&w->srv->drain_deadline) - util_now_ms();
    ev_timer_start(w->loop, &w->drain_timer, left > 0 ? left : 0, drain_deadline_cb, w);
}

static void delay_cb(struct ev_loop *loop, struct ev_timer *t)
{
    struct worker *w = t->data;
    UNUSED(loop);
    server_start_drain(w->srv);
}

void server_shutdown(struct server *s, bool delay)
{
    int64_t d = 0;
    if (delay) {
        struct runtime *rt = runtime_get(s);
        d = rt->cfg.drain_delay;
        runtime_unref(rt);
    }
    if (d == 0) {
        server_start_drain(s);
        return;
    }
    if (atomic_load(&s->stopping))
        return; /* already on its way */
    atomic_store(&s->drain_at, util_now_ms() + d); /* before <stopping>: worker 0 reads it */
    atomic_store(&s->stopping, true);
    log_info("shutting down: not ready; still accepting for %lld ms (--drain-delay), then "
             "draining", (long long)d);
    ev_wake(s->workers[0].loop); /* worker 0 keeps the time */
}

static void wake_cb(struct ev_loop *loop, void *data)
{
    struct worker *w = data;
    struct list ready;
    UNUSED(loop);
    runtime_adopt(w); /* a reload may have published new settings */
    /* Queued requests that were handed a backend by another thread. */
    list_init(&ready);
    reg_take_ready(&w->srv->reg, &w->ready, &ready);
    while (!list_empty(&ready)) {
        struct reg_waiter *wt = list_entry(ready.next, struct reg_waiter, link);
        list_del(&wt->link);
        route_dequeued(list_entry(wt, struct exchange, waiter)->c);
    }
    if (atomic_load(&w->srv->draining))
        start_drain(w);
    else if (w->id == 0 && atomic_load(&w->srv->stopping) && !ev_timer_active(&w->delay_timer)) {
        int64_t left = atomic_load(&w->srv->drain_at) - util_now_ms();
        ev_timer_start(w->loop, &w->delay_timer, left > 0 ? left : 0, delay_cb, w);
    }
    up_prune_removed(w);
}

static void before_sleep(struct ev_loop *loop, void *data)
{
    struct worker *w = data;
    up_prune_removed(w);
    while (!list_empty(&w->graveyard_c)) {
        struct conn *c = list_entry(w->graveyard_c.next, struct conn, link);
        list_del(&c->link);
        conn_free(c);
    }
    while (!list_empty(&w->graveyard_u)) {
        struct upconn *u = list_entry(w->graveyard_u.next, struct upconn, link);
        list_del(&u->link);
        up_free(u);
    }
    if (w->id == 0)
        probe_reap();
    if (w->alog.len > 0)
        flush_access_log(w);
    if (w->draining && w->nconns == 0) {
        up_close_idle_all(w);
        ev_timer_stop(loop, &w->drain_timer);
        /* Free what closing the idle upstreams just retired. */
        while (!list_empty(&w->graveyard_u)) {
            struct upconn *u = list_entry(w->graveyard_u.next, struct upconn, link);
            list_del(&u->link);
            up_free(u);
        }
        ev_loop_stop(loop);
    }
}

/* ================================================================ setup */

int worker_init(struct worker *w, struct server *s, unsigned id, int lfd, int afd)
{
    memset(w, 0, sizeof(*w));
    w->id = id;
    w->srv = s;
    w->lfd = lfd;
    w->afd = afd;
    w->rt = runtime_get(s);
    list_init(&w->conns);
    list_init(&w->graveyard_c);
    list_init(&w->graveyard_u);
    list_init(&w->idle_up);
    list_init(&w->ready);
    util_random_bytes(&w->rng, sizeof(w->rng));
    w->rng |= 1;
    w->loop = ev_loop_new();
    if (w->loop == NULL)
        return -ENOMEM;
    w->lio.level = true;
    if (ev_io_start(w->loop, &w->lio, lfd, accept_cb, w) != 0)
        return -errno;
    ev_io_set_mask(w->loop, &w->lio, EV_READ);
    if (afd != -1) {
        w->aio.level = true;
        if (ev_io_start(w->loop, &w->aio, afd, accept_cb, w) != 0)
            return -errno;
        ev_io_set_mask(w->loop, &w->aio, EV_READ);
    }
    ev_set_before_sleep(w->loop, before_sleep, w);
    ev_set_wake(w->loop, wake_cb, w);
    return 0;
}

/* Worker 0 watches the API key and admin token files (runtime.h). */
static void poll_cb(struct ev_loop *loop, struct ev_timer *t)
{
    struct worker *w = t->data;
    runtime_poll(w->srv, ev_now(loop));
    if (!w->draining)
        ev_timer_start(loop, &w->poll_timer, 1000, poll_cb, w);
}

void *worker_main(void *arg)
{
    struct worker *w = arg;
    if (w->id == 0) {
        probe_start(w);
        ev_timer_start(w->loop, &w->poll_timer, 1000, poll_cb, w);
    }
    if (atomic_load(&w->srv->draining))
        start_drain(w);
    int r = ev_run(w->loop);
    if (r != 0)
        log_error("worker %u: event loop failed: %s", w->id, strerror(-r));
    close_listeners(w);
    buf_free(&w->alog);
    buf_cache_drain();
    reg_thread_exit();
    return NULL;
}

void worker_free(struct worker *w)
{
    while (w->nxcache > 0)
        free(w->xcache[--w->nxcache]);
    ev_loop_free(w->loop);
    w->loop = NULL;
    runtime_unref(w->rt);
    w->rt = NULL;
}
