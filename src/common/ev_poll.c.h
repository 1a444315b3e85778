/* SPDX-License-Identifier: MIT
 * poll_oneoff backend of the event loop, #included by ev.c in the wasm32-wasi
 * build (WasmEdge; docs/wasm.md). One thread, so no wake pipe (WASI has no
 * pipes): ev_wake() only sets a flag that ev_run() reads.
 *
 * poll_oneoff is level-triggered and stateless (every call names every fd),
 * while the loop's owners expect edges: they read and write until EAGAIN and
 * remember readiness themselves (ev_epoll.c.h). Reporting a writable socket
 * on every pass would spin, so an edge-triggered io is "armed" per
 * direction: an armed direction is subscribed; once reported it is
 * disarmed; the socket layer re-arms it through ev_fd_drained() when a read
 * or write on the fd comes up short (EAGAIN, EOF, a short count), which is
 * exactly when epoll would report the next edge. Level-triggered ios
 * (listeners) are subscribed for their mask on every pass.
 *
 * WasmEdge hands out random fd numbers in [0, 2^31): ios live in a dense
 * array of slots, found by pointer (ev_io_set_mask, ev_io_stop) or by fd
 * (ev_fd_drained, with a one-entry cache: the re-arm nearly always follows
 * the callback of the same fd). poll_oneoff's userdata carries the slot and
 * the direction. A pass costs the host O(watched fds) epoll_ctl calls, so
 * this is for tens to hundreds of connections, not the fast path. */
#include <wasi/api.h>

#define EV_WAKE_PIPE 0

struct ev_pslot {
    struct ev_io *io;
    int fd;
    unsigned want; /* directions subscribed on the next pass */
    uint32_t pass; /* the pass that last fired it, and where: merges R and W */
    uint32_t fidx;
};

struct ev_fired {
    struct ev_io *io;
    int fd;
    unsigned mask;
};

struct ev_backend {
    struct ev_pslot *slots;
    size_t nslots, cap;
    __wasi_subscription_t *subs;
    __wasi_event_t *evs;
    struct ev_fired *fired;
    size_t subcap;
    uint32_t pass;
    struct ev_backend *next; /* every live backend: ev_fd_drained searches them */
};

/* One thread: the list of live backends (a process has one worker loop;
 * tests and the prober may hold a few). */
static struct ev_backend *ev_backends;
static struct ev_pslot *ev_last_hit;

static int backend_init(struct ev_backend *b)
{
    b->next = ev_backends;
    ev_backends = b;
    return 0;
}

static int backend_pipe(int p[2])
{
    (void)p;
    return -1;
}

static void backend_free(struct ev_backend *b)
{
    for (struct ev_backend **pp = &ev_backends; *pp != NULL; pp = &(*pp)->next)
        if (*pp == b) {
            *pp = b->next;
            break;
        }
    ev_last_hit = NULL;
    free(b->slots);
    free(b->subs);
    free(b->evs);
    free(b->fired);
}

static struct ev_pslot *slot_of(struct ev_backend *b, const struct ev_io *io)
{
    for (size_t i = 0; i < b->nslots; i++)
        if (b->slots[i].io == io)
            return &b->slots[i];
    return NULL;
}

static int backend_add(struct ev_backend *b, struct ev_io *io, unsigned mask)
{
    if (b->nslots == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 64;
        b->slots = xrealloc(b->slots, b->cap * sizeof(*b->slots));
        ev_last_hit = NULL;
    }
    b->slots[b->nslots++] = (struct ev_pslot){.io = io, .fd = io->fd, .want = mask};
    return 0;
}

static int backend_mod(struct ev_backend *b, struct ev_io *io, unsigned mask)
{
    struct ev_pslot *s = slot_of(b, io);
    if (s == NULL)
        return -ENOENT;
    s->want = mask & (EV_READ | EV_WRITE);
    return 0;
}

static void backend_del(struct ev_backend *b, struct ev_io *io)
{
    struct ev_pslot *s = slot_of(b, io);
    if (s == NULL)
        return;
    *s = b->slots[--b->nslots];
    ev_last_hit = NULL;
}

void ev_fd_drained(int fd, unsigned mask)
{
    struct ev_pslot *s = ev_last_hit;
    if (s == NULL || s->fd != fd) {
        s = NULL;
        for (struct ev_backend *b = ev_backends; b != NULL && s == NULL; b = b->next)
            for (size_t i = 0; i < b->nslots; i++)
                if (b->slots[i].fd == fd) {
                    s = &b->slots[i];
                    break;
                }
        if (s == NULL)
            return; /* not watched (a file, or a socket not yet started) */
        ev_last_hit = s;
    }
    if (!s->io->level)
        s->want |= mask & (EV_READ | EV_WRITE);
}

static void sub_fd(__wasi_subscription_t *sub, size_t slot, int fd, bool write)
{
    memset(sub, 0, sizeof(*sub));
    sub->userdata = ((uint64_t)slot << 1) | (write ? 1u : 0u);
    sub->u.tag = write ? __WASI_EVENTTYPE_FD_WRITE : __WASI_EVENTTYPE_FD_READ;
    if (write)
        sub->u.u.fd_write.file_descriptor = (__wasi_fd_t)fd;
    else
        sub->u.u.fd_read.file_descriptor = (__wasi_fd_t)fd;
}

#define EV_CLOCK_USERDATA UINT64_MAX

/* Waits up to <timeout_ms> (-1 = forever) and dispatches ready ios. */
static int backend_poll(struct ev_loop *loop, struct ev_backend *b, int timeout_ms)
{
    size_t need = 2 * b->nslots + 1;
    if (need > b->subcap) {
        b->subcap = need * 2;
        b->subs = xrealloc(b->subs, b->subcap * sizeof(*b->subs));
        b->evs = xrealloc(b->evs, b->subcap * sizeof(*b->evs));
        b->fired = xrealloc(b->fired, b->subcap * sizeof(*b->fired));
    }
    size_t n = 0;
    for (size_t i = 0; i < b->nslots; i++) {
        struct ev_pslot *s = &b->slots[i];
        if (s->want & EV_READ)
            sub_fd(&b->subs[n++], i, s->fd, false);
        if (s->want & EV_WRITE)
            sub_fd(&b->subs[n++], i, s->fd, true);
    }
    /* A clock subscription bounds the wait (ev_run caps timeouts at 60 s;
     * "forever" is a minute here, harmlessly). */
    __wasi_subscription_t *c = &b->subs[n++];
    memset(c, 0, sizeof(*c));
    c->userdata = EV_CLOCK_USERDATA;
    c->u.tag = __WASI_EVENTTYPE_CLOCK;
    c->u.u.clock.id = __WASI_CLOCKID_MONOTONIC;
    c->u.u.clock.timeout = (uint64_t)(timeout_ms < 0 ? 60000 : timeout_ms) * 1000000u;
    __wasi_size_t nev = 0;
    __wasi_errno_t e = __wasi_poll_oneoff(b->subs, b->evs, n, &nev);
    if (e != 0)
        return e == __WASI_ERRNO_INTR ? 0 : -(int)e;
    ev_update_now(loop);
    /* Events become (io, fd, mask) before any callback runs: callbacks add
     * and remove slots, which moves them. */
    size_t nf = 0;
    b->pass = b->pass + 1 ? b->pass + 1 : 1;
    for (__wasi_size_t k = 0; k < nev; k++) {
        const __wasi_event_t *ev = &b->evs[k];
        if (ev->userdata == EV_CLOCK_USERDATA)
            continue;
        size_t i = (size_t)(ev->userdata >> 1);
        bool write = ev->userdata & 1;
        if (i >= b->nslots)
            continue;
        struct ev_pslot *s = &b->slots[i];
        unsigned mask = write ? EV_WRITE : EV_READ;
        if (ev->error != 0)
            mask |= EV_ERROR | EV_READ | EV_WRITE;
        else if (ev->fd_readwrite.flags & __WASI_EVENTRWFLAGS_FD_READWRITE_HANGUP)
            mask |= EV_RDHUP | EV_ERROR | EV_READ | EV_WRITE;
        if (!s->io->level)
            s->want &= ~(write ? EV_WRITE : EV_READ); /* until the next short read/write */
        if (s->pass != b->pass) {
            s->pass = b->pass;
            s->fidx = (uint32_t)nf;
            b->fired[nf++] = (struct ev_fired){.io = s->io, .fd = s->fd, .mask = 0};
        }
        b->fired[s->fidx].mask |= mask;
    }
    for (size_t j = 0; j < nf; j++) {
        struct ev_io *io = b->fired[j].io;
        if (io->fd != b->fired[j].fd) /* stopped (or restarted) by an earlier callback */
            continue;
        io->cb(loop, io, b->fired[j].mask);
    }
    return (int)nf;
}
