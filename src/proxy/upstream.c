/* SPDX-License-Identifier: MIT
 * Per-worker, per-backend pools of idle upstream connections (h2o's socket
 * pool). A connection is leased to one request and leaves the lease exactly
 * once: back to the pool for keep-alive, or closed. Idle connections stay
 * registered with the loop, so a backend closing one is noticed at once
 * (EV_READ on an idle connection means EOF or junk: it is closed). */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "log.h"
#include "proxy.h"
#include "util.h"


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
    if (ev_io_start(w->loop, &u->io, fd, conn_up_io_cb, u) != 0) {
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
        pool->nidle < w->srv->cfg.max_idle_per_backend) {
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
        ev_timer_start(w->loop, &u->timer, w->srv->cfg.upstream_idle_timeout, idle_timeout_cb, u);
        return;
    }
    if (list_linked(&u->link)) { /* it was idle in the pool */
        list_del(&u->link);
        list_del(&u->wlink);
        pool->nidle--;
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
