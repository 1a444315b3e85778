/* SPDX-License-Identifier: MIT
 * epoll backend of the event loop, #included by ev.c. Sockets are registered
 * once, edge-triggered for both directions, so the request path never calls
 * epoll_ctl to flip interest: readiness is remembered by the owner, which
 * reads or writes until EAGAIN. */
#include <sys/epoll.h>

#define EV_BATCH 256
#define EV_WAKE_PIPE 1 /* other threads wake the loop through a pipe */

struct ev_backend {
    int epfd;
    struct epoll_event events[EV_BATCH];
};

static int backend_init(struct ev_backend *b)
{
    b->epfd = epoll_create1(EPOLL_CLOEXEC);
    return b->epfd == -1 ? -errno : 0;
}

static int backend_pipe(int p[2])
{
    return pipe2(p, O_NONBLOCK | O_CLOEXEC);
}

static void backend_free(struct ev_backend *b)
{
    if (b->epfd != -1)
        close(b->epfd);
}

static uint32_t to_epoll(const struct ev_io *io, unsigned mask)
{
    uint32_t e = 0;
    if (mask & EV_READ)
        e |= EPOLLIN | EPOLLRDHUP;
    if (mask & EV_WRITE)
        e |= EPOLLOUT;
    if (!io->level)
        e |= EPOLLET;
    return e;
}

static int backend_add(struct ev_backend *b, struct ev_io *io, unsigned mask)
{
    struct epoll_event ev = {.events = to_epoll(io, mask), .data.ptr = io};
    return epoll_ctl(b->epfd, EPOLL_CTL_ADD, io->fd, &ev) == -1 ? -errno : 0;
}

static int backend_mod(struct ev_backend *b, struct ev_io *io, unsigned mask)
{
    struct epoll_event ev = {.events = to_epoll(io, mask), .data.ptr = io};
    return epoll_ctl(b->epfd, EPOLL_CTL_MOD, io->fd, &ev) == -1 ? -errno : 0;
}

static void backend_del(struct ev_backend *b, struct ev_io *io)
{
    struct epoll_event ev = {0};
    epoll_ctl(b->epfd, EPOLL_CTL_DEL, io->fd, &ev);
}

/* Waits up to <timeout_ms> (-1 = forever) and dispatches ready ios. */
static int backend_poll(struct ev_loop *loop, struct ev_backend *b, int timeout_ms)
{
    int n = epoll_wait(b->epfd, b->events, EV_BATCH, timeout_ms);
    if (n == -1)
        return errno == EINTR ? 0 : -errno;
    ev_update_now(loop);
    for (int i = 0; i < n; i++) {
        struct ev_io *io = b->events[i].data.ptr;
        uint32_t e = b->events[i].events;
        unsigned mask = 0;
        if (io->fd == -1) /* stopped by an earlier callback of this batch */
            continue;
        if (e & (EPOLLIN | EPOLLRDHUP))
            mask |= EV_READ;
        if (e & (EPOLLRDHUP | EPOLLHUP))
            mask |= EV_RDHUP;
        if (e & EPOLLOUT)
            mask |= EV_WRITE;
        if (e & (EPOLLERR | EPOLLHUP))
            mask |= EV_ERROR | EV_READ | EV_WRITE;
        io->cb(loop, io, mask);
    }
    return n;
}

/* epoll reports edges itself: nothing to re-arm (see ev.h). */
void ev_fd_drained(int fd, unsigned mask)
{
    (void)fd;
    (void)mask;
}
