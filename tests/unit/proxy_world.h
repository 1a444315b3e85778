/* SPDX-License-Identifier: MIT
 * A whole balancer worker in a unit test: one struct server, one worker
 * running its real event loop in a thread, one backend that is a loopback
 * listener the test owns, and clients on loopback. The test plays client
 * and backend with blocking sockets
 * (timeouts on every read), so the request path (conn.c, route.c,
 * upstream.c, relay.c) runs exactly as in llamalb, with no process around
 * it. Used by test_proxy_relay.c and test_proxy_upstream.c. */
#ifndef LLAMALB_TEST_PROXY_WORLD_H
#define LLAMALB_TEST_PROXY_WORLD_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "../../src/proxy/proxy.h"
#include "util.h"

struct world {
    struct server s;
    struct worker *w;
    pthread_t thread;
    int lfd;        /* the worker's public listener */
    int lport;
    int backend_fd; /* the test's backend listener */
    struct backend *be;
};

/* The balancer's main.c is not in the test: draining stops the loop. */
void server_start_drain(struct server *s)
{
    atomic_store(&s->draining, true);
    atomic_store(&s->drain_deadline, util_now_ms() + 2000);
    for (unsigned i = 0; i < s->nworkers; i++)
        ev_wake(s->workers[i].loop);
}

static inline void set_timeout(int fd, int ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static inline int listen_loopback(int *port, bool nonblock)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(fd, 16) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        perror("listen_loopback");
        exit(2);
    }
    *port = ntohs(a.sin_port);
    return fd;
}

/* Starts a world with one backend (cap <max_inflight>, 0 = none). <tweak>
 * may change settings before the worker starts. */
static inline void world_start(struct world *wd, unsigned max_inflight, void (*tweak)(struct cfg *))
{
    char err[NET_ERR_LEN], spec[64];
    int port;
    memset(wd, 0, sizeof(*wd));
    struct server *s = &wd->s;
    cfg_defaults(&s->cfg);
    s->cfg.health_interval = 0;
    strcpy(s->cfg.access_log, "off");
    if (tweak != NULL)
        tweak(&s->cfg);
    s->max_conns = 1000;
    if (runtime_init(s, err, sizeof(err)) != 0) {
        fprintf(stderr, "runtime: %s\n", err);
        exit(2);
    }
    s->nworkers = 1;
    s->workers = xcalloc(1, sizeof(*s->workers));
    reg_init(&s->reg, 1, s->cfg.policy);
    struct reg_settings rs = {
        .eject_after = s->cfg.eject_after,
        .eject_base_ms = s->cfg.eject_time,
        .eject_max_ms = s->cfg.eject_max_time,
        .default_cap = s->cfg.default_max_inflight,
        .queue_max = s->cfg.queue_max,
    };
    reg_configure(&s->reg, &rs);
    wd->backend_fd = listen_loopback(&port, false);
    snprintf(spec, sizeof(spec), "b1=127.0.0.1:%d,max-inflight=%u", port, max_inflight);
    struct backend_spec sp = {0};
    if (reg_spec_parse(spec, &sp, err) != 0 || reg_upsert(&s->reg, &sp, REG_SOURCE_STATIC, err) < 0) {
        fprintf(stderr, "backend: %s\n", err);
        exit(2);
    }
    reg_spec_free(&sp);
    struct backend **v;
    unsigned n = reg_snapshot(&s->reg, &v);
    wd->be = n == 1 ? v[0] : NULL; /* the snapshot's reference keeps it */
    free(v);
    wd->lfd = listen_loopback(&wd->lport, true);
    wd->w = &s->workers[0];
    if (worker_init(wd->w, s, 0, wd->lfd, -1) != 0) {
        fprintf(stderr, "worker_init failed\n");
        exit(2);
    }
    pthread_create(&wd->thread, NULL, worker_main, wd->w);
}

static inline void world_stop(struct world *wd)
{
    server_start_drain(&wd->s);
    pthread_join(wd->thread, NULL);
    worker_free(wd->w);
    close(wd->backend_fd);
    if (wd->be != NULL)
        backend_unref(wd->be);
    runtime_deinit(&wd->s);
    reg_deinit(&wd->s.reg);
    free(wd->s.workers);
    cfg_free(&wd->s.cfg);
}

/* A client connection to the worker's public listener; <rcvbuf> > 0 makes
 * its receive buffer small (a slow reader). */
static inline int world_client(struct world *wd, int rcvbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (rcvbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                            .sin_port = htons((uint16_t)wd->lport)};
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        perror("connect");
        exit(2);
    }
    set_timeout(fd, 3000);
    return fd;
}

/* The backend side: the next upstream connection the worker opens. */
static inline int world_backend_accept(struct world *wd)
{
    set_timeout(wd->backend_fd, 3000);
    int fd = accept(wd->backend_fd, NULL, NULL);
    if (fd >= 0)
        set_timeout(fd, 3000);
    return fd;
}

/* Reads until <want> appears (returns its end offset in <out>), EOF or timeout (-1). */
static inline long read_until(int fd, char *out, size_t cap, size_t *len, const char *want)
{
    for (;;) {
        char *hit = *len ? memmem(out, *len, want, strlen(want)) : NULL;
        if (hit != NULL)
            return (long)(hit - out + (long)strlen(want));
        if (*len + 1 >= cap)
            return -1;
        ssize_t r = read(fd, out + *len, cap - 1 - *len);
        if (r <= 0)
            return -1;
        *len += (size_t)r;
        out[*len] = '\0';
    }
}

/* Reads until EOF or an error; returns what came (-1 on a timeout). */
static inline long read_to_eof(int fd, char *out, size_t cap, size_t *len)
{
    for (;;) {
        if (*len + 1 >= cap)
            return -1;
        ssize_t r = read(fd, out + *len, cap - 1 - *len);
        if (r == 0)
            return (long)*len;
        if (r < 0)
            return errno == EAGAIN ? -1 : (long)*len;
        *len += (size_t)r;
        out[*len] = '\0';
    }
}

static inline void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

#define WRITE_STR(fd, s) write_all((fd), (s), strlen(s))

#endif
