/* SPDX-License-Identifier: MIT
 * Event loop core: timer heap, clock cache, wake-ups; the readiness backend
 * is #included below. */

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ev.h"
#include "util.h"

static void ev_update_now_impl(struct ev_loop *loop);
#define ev_update_now ev_update_now_impl
#ifdef __wasi__
#include "ev_poll.c.h" /* poll_oneoff: WasmEdge, one thread (docs/wasm.md) */
#else
#include "ev_epoll.c.h"
#endif
#undef ev_update_now

/* Timer rounds per iteration are capped so a timer that keeps re-arming
 * itself at "now" cannot starve I/O (h2o's evloop does the same). */
#define EV_TIMER_ROUNDS 16

struct ev_loop {
    struct ev_backend backend;
    int64_t now;             /* ms, cached once per iteration */
    bool stop;
    struct ev_timer **heap;  /* min-heap on deadline */
    size_t nheap, capheap;
    size_t nio;
    ev_hook_cb *before_sleep;
    void *before_sleep_data;
    /* Wake-ups: a pipe whose read end is watched; wake_pending coalesces.
     * A backend without pipes (EV_WAKE_PIPE 0: one thread, nobody else to
     * wake the loop) only sets wake_pending, and ev_run() sees it. */
    int wake_rd, wake_wr;
    struct ev_io wake_io;
    atomic_bool wake_pending;
    ev_hook_cb *wake_cb;
    void *wake_data;
};

static void ev_update_now_impl(struct ev_loop *loop)
{
    loop->now = util_now_ms();
}

void ev_update_now(struct ev_loop *loop)
{
    ev_update_now_impl(loop);
}

int64_t ev_now(const struct ev_loop *loop)
{
    return loop->now;
}

static void wake_run(struct ev_loop *loop)
{
    atomic_store(&loop->wake_pending, false);
    if (loop->wake_cb != NULL)
        loop->wake_cb(loop, loop->wake_data);
}

static void wake_read(struct ev_loop *loop, struct ev_io *io, unsigned events)
{
    char drain[64];
    UNUSED(events);
    while (read(io->fd, drain, sizeof(drain)) > 0)
        ;
    wake_run(loop);
}

struct ev_loop *ev_loop_new(void)
{
    struct ev_loop *loop = xcalloc(1, sizeof(*loop));
    int p[2];
    loop->wake_rd = loop->wake_wr = -1;
    if (backend_init(&loop->backend) != 0)
        goto fail;
    ev_update_now_impl(loop);
    if (!EV_WAKE_PIPE)
        return loop;
    if (backend_pipe(p) == -1)
        goto fail;
    loop->wake_rd = p[0];
    loop->wake_wr = p[1];
    loop->wake_io.level = true;
    if (ev_io_start(loop, &loop->wake_io, loop->wake_rd, wake_read, NULL) != 0)
        goto fail;
    ev_io_set_mask(loop, &loop->wake_io, EV_READ);
    loop->nio = 0; /* the wake pipe is internal: not counted */
    ev_update_now_impl(loop);
    return loop;
fail:
    ev_loop_free(loop);
    return NULL;
}

void ev_loop_free(struct ev_loop *loop)
{
    if (loop == NULL)
        return;
    if (loop->wake_rd != -1)
        close(loop->wake_rd);
    if (loop->wake_wr != -1)
        close(loop->wake_wr);
    backend_free(&loop->backend);
    free(loop->heap);
    free(loop);
}

void ev_loop_stop(struct ev_loop *loop)
{
    loop->stop = true;
}

/* ---------------------------------------------------------------- fds */

int ev_io_start(struct ev_loop *loop, struct ev_io *io, int fd, ev_io_cb *cb, void *data)
{
    io->fd = fd;
    io->cb = cb;
    io->data = data;
    int r = backend_add(&loop->backend, io, EV_READ | EV_WRITE);
    if (r != 0) {
        io->fd = -1;
        return r;
    }
    loop->nio++;
    return 0;
}

int ev_io_set_mask(struct ev_loop *loop, struct ev_io *io, unsigned mask)
{
    return backend_mod(&loop->backend, io, mask);
}

void ev_io_stop(struct ev_loop *loop, struct ev_io *io)
{
    if (io->fd == -1)
        return;
    backend_del(&loop->backend, io);
    io->fd = -1;
    loop->nio--;
}

size_t ev_io_count(const struct ev_loop *loop)
{
    return loop->nio;
}

/* ---------------------------------------------------------------- timers */

static void heap_set(struct ev_loop *loop, size_t i, struct ev_timer *t)
{
    loop->heap[i] = t;
    t->_heap_idx = i + 1;
}

static void sift_up(struct ev_loop *loop, size_t i)
{
    struct ev_timer *t = loop->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (loop->heap[parent]->_key <= t->_key)
            break;
        heap_set(loop, i, loop->heap[parent]);
        i = parent;
    }
    heap_set(loop, i, t);
}

static void sift_down(struct ev_loop *loop, size_t i)
{
    struct ev_timer *t = loop->heap[i];
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        int64_t best = t->_key;
        if (l < loop->nheap && loop->heap[l]->_key < best) {
            m = l;
            best = loop->heap[l]->_key;
        }
        if (r < loop->nheap && loop->heap[r]->_key < best)
            m = r;
        if (m == i)
            break;
        heap_set(loop, i, loop->heap[m]);
        i = m;
    }
    heap_set(loop, i, t);
}

void ev_timer_stop(struct ev_loop *loop, struct ev_timer *t)
{
    if (t->_heap_idx == 0)
        return;
    size_t i = t->_heap_idx - 1;
    t->_heap_idx = 0;
    loop->nheap--;
    if (i == loop->nheap)
        return;
    heap_set(loop, i, loop->heap[loop->nheap]);
    sift_down(loop, i);
    sift_up(loop, loop->heap[i]->_heap_idx - 1);
}

void ev_timer_at(struct ev_loop *loop, struct ev_timer *t, int64_t deadline, ev_timer_cb *cb,
                 void *data)
{
    t->cb = cb;
    t->data = data;
    if (t->_heap_idx != 0) {
        t->deadline = deadline;
        if (deadline < t->_key) {
            t->_key = deadline;
            sift_up(loop, t->_heap_idx - 1);
        }
        return; /* later: re-filed when the old key comes due */
    }
    if (loop->nheap == loop->capheap) {
        loop->capheap = loop->capheap ? loop->capheap * 2 : 64;
        loop->heap = xrealloc(loop->heap, loop->capheap * sizeof(*loop->heap));
    }
    t->deadline = t->_key = deadline;
    heap_set(loop, loop->nheap++, t);
    sift_up(loop, loop->nheap - 1);
}

void ev_timer_start(struct ev_loop *loop, struct ev_timer *t, int64_t ms, ev_timer_cb *cb,
                    void *data)
{
    ev_timer_at(loop, t, loop->now + ms, cb, data);
}

size_t ev_timer_count(const struct ev_loop *loop)
{
    return loop->nheap;
}

static void run_timers(struct ev_loop *loop)
{
    for (int round = 0; round < EV_TIMER_ROUNDS && loop->nheap > 0; round++) {
        int64_t now = loop->now;
        size_t fired = 0;
        while (loop->nheap > 0 && loop->heap[0]->_key <= now && fired < 4096) {
            struct ev_timer *t = loop->heap[0];
            if (t->deadline > now) { /* pushed back since it was filed */
                t->_key = t->deadline;
                sift_down(loop, 0);
                continue;
            }
            ev_timer_stop(loop, t);
            t->cb(loop, t);
            fired++;
        }
        if (fired == 0)
            break;
        ev_update_now_impl(loop);
    }
}

/* ---------------------------------------------------------------- hooks */

void ev_set_before_sleep(struct ev_loop *loop, ev_hook_cb *cb, void *data)
{
    loop->before_sleep = cb;
    loop->before_sleep_data = data;
}

void ev_set_wake(struct ev_loop *loop, ev_hook_cb *cb, void *data)
{
    loop->wake_cb = cb;
    loop->wake_data = data;
}

void ev_wake(struct ev_loop *loop)
{
    if (atomic_exchange(&loop->wake_pending, true))
        return;
    if (!EV_WAKE_PIPE)
        return; /* the loop's own thread: ev_run() sees wake_pending */
    char c = 1;
    ssize_t w = write(loop->wake_wr, &c, 1);
    (void)w;
}

/* ---------------------------------------------------------------- run */

int ev_run(struct ev_loop *loop)
{
    loop->stop = false;
    while (!loop->stop) {
        if (loop->before_sleep != NULL)
            loop->before_sleep(loop, loop->before_sleep_data);
        if (loop->stop)
            break;
        int timeout = -1;
        if (loop->nheap > 0) {
            int64_t d = loop->heap[0]->_key - util_now_ms();
            timeout = d <= 0 ? 0 : (d > 60000 ? 60000 : (int)d);
        }
        if (!EV_WAKE_PIPE && atomic_load(&loop->wake_pending))
            timeout = 0;
        int r = backend_poll(loop, &loop->backend, timeout);
        if (r < 0)
            return r;
        if (r == 0)
            ev_update_now_impl(loop);
        if (!EV_WAKE_PIPE && atomic_load(&loop->wake_pending))
            wake_run(loop);
        run_timers(loop);
    }
    if (loop->before_sleep != NULL)
        loop->before_sleep(loop, loop->before_sleep_data);
    return 0;
}
