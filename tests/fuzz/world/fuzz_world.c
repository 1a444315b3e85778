/* SPDX-License-Identifier: MIT
 * libFuzzer target: the whole request path of one worker (conn.c, route.c,
 * upstream.c, relay.c, the registry), run as llamalb runs it: a real worker
 * loop in a thread (tests/unit/proxy_world.h), loopback sockets, one
 * backend whose side the fuzzer plays. The input is a script, so that
 * sequences are explored, not single messages: each op is one byte, most
 * followed by a length byte and that many bytes of data:
 *
 *   0 client sends bytes      1 backend sends bytes (accepting first)
 *   2 client reads            3 backend reads
 *   4 time passes (0-63 ms; every timeout is 20-120 ms here)
 *   5 client half-closes      6 client closes, 7 resets
 *   8 backend closes          9 backend resets
 *   10 a new client connection (the previous one stays open)
 *
 * Time is the loop's real clock with timeouts scaled down, so that waiting
 * a few milliseconds crosses them. After the script every socket is
 * closed, and the invariants are checked: within a bound the backend's
 * in-flight slot is given back and every client connection is closed
 * (a slot or a connection kept by a lost path is a leak llamalb would
 * carry forever). ASan and UBSan catch the rest. Replayed by `make test`
 * from tests/fuzz/corpus/world and tests/fuzz/regression/world
 * (mk/fuzz_world.mk). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../unit/proxy_world.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            util_bug(__FILE__, __LINE__, #cond);                                                   \
    } while (0)

static struct world wd;
static bool started;

static void tweak(struct cfg *k)
{
    k->header_timeout = 100;
    k->body_timeout = 60;
    k->body_deadline = 120;
    k->keepalive_timeout = 80;
    k->connect_timeout = 60;
    k->response_timeout = 100;
    k->stream_idle_timeout = 80;
    k->send_timeout = 80;
    k->slow_client_budget = 80;
    k->upstream_idle_timeout = 50;
    k->queue_timeout = 100;
    k->eject_after = 0; /* the one backend stays in play whatever it answers */
    k->max_tries = 1;
}

static void start_once(void)
{
    if (started)
        return;
    started = true;
    signal(SIGPIPE, SIG_IGN);
    log_min_level = LOG_WARN; /* timeouts and bad answers are the point here */
    world_start(&wd, 1, tweak);
}

#define MAXFD 8

static void nonblock(int fd)
{
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

static void drain(int fd)
{
    char buf[16384];
    while (fd >= 0 && read(fd, buf, sizeof(buf)) > 0) {
    }
}

static void send_some(int fd, const uint8_t *p, size_t n)
{
    if (fd < 0)
        return;
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return; /* full or gone: the rest is dropped, like a client giving up */
        p += w;
        n -= (size_t)w;
    }
}

static void hard_close(int *fd, bool reset)
{
    if (*fd < 0)
        return;
    if (reset) {
        struct linger l = {.l_onoff = 1, .l_linger = 0};
        setsockopt(*fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    }
    close(*fd);
    *fd = -1;
}

/* Accepts the worker's next upstream connection if one is waiting. */
static void backend_accept(int *bfd, int *bfds, unsigned *nb)
{
    struct pollfd p = {.fd = wd.backend_fd, .events = POLLIN};
    if (poll(&p, 1, 5) != 1)
        return;
    int fd = accept(wd.backend_fd, NULL, NULL);
    if (fd < 0)
        return;
    nonblock(fd);
    if (*nb < MAXFD) {
        bfds[(*nb)++] = fd;
        *bfd = fd;
    } else {
        close(fd);
    }
}

static uint64_t active(void)
{
    return atomic_load(&wd.s.stats.conns_active);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    start_once();
    int cfds[MAXFD], bfds[MAXFD];
    unsigned nc = 0, nb = 0;
    int cfd = -1, bfd = -1;
    size_t i = 0;
    unsigned slept = 0;
    while (i < size) {
        uint8_t op = data[i++] % 11;
        size_t len = 0;
        const uint8_t *arg = NULL;
        if (op == 0 || op == 1) {
            len = i < size ? data[i++] : 0;
            len = len > size - i ? size - i : len;
            arg = data + i;
            i += len;
        }
        if (cfd < 0 && (op == 0 || op == 10) && nc < MAXFD) {
            cfd = world_client(&wd, 0);
            nonblock(cfd);
            cfds[nc++] = cfd;
        }
        switch (op) {
        case 0:
            send_some(cfd, arg, len);
            break;
        case 1:
            backend_accept(&bfd, bfds, &nb);
            send_some(bfd, arg, len);
            break;
        case 2:
            drain(cfd);
            break;
        case 3:
            backend_accept(&bfd, bfds, &nb);
            drain(bfd);
            break;
        case 4: {
            unsigned ms = i < size ? data[i++] % 64 : 10;
            if (slept + ms <= 400) { /* a bound on each input's run time */
                usleep(ms * 1000);
                slept += ms;
            }
            break;
        }
        case 5:
            if (cfd >= 0)
                shutdown(cfd, SHUT_WR);
            break;
        case 6:
        case 7:
            for (unsigned k = 0; k < nc; k++)
                if (cfds[k] == cfd)
                    cfds[k] = -1;
            hard_close(&cfd, op == 7);
            break;
        case 8:
        case 9:
            for (unsigned k = 0; k < nb; k++)
                if (bfds[k] == bfd)
                    bfds[k] = -1;
            hard_close(&bfd, op == 9);
            break;
        case 10:
            if (nc < MAXFD) {
                cfd = world_client(&wd, 0);
                nonblock(cfd);
                cfds[nc++] = cfd;
            }
            break;
        }
    }
    for (unsigned k = 0; k < nc; k++)
        hard_close(&cfds[k], false);
    /* Upstream connections the worker still opens or holds are answered by
     * a close, so nothing waits for the response timeout. */
    for (int spin = 0; spin < 400; spin++) {
        backend_accept(&bfd, bfds, &nb);
        for (unsigned k = 0; k < nb; k++)
            hard_close(&bfds[k], false);
        nb = 0;
        if (atomic_load(&wd.be->inflight) == 0 && active() == 0)
            break;
        usleep(5000);
    }
    CHECK(atomic_load(&wd.be->inflight) == 0); /* the slot came back */
    CHECK(active() == 0);                      /* every client connection closed */
    return 0;
}
