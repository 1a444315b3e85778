/* SPDX-License-Identifier: MIT
 * The event loop on poll_oneoff with WasmEdge's sockets (ev_poll.c.h,
 * net_wasi.c.h), built to wasm32-wasi only (mk/wasm.mk) and run under the
 * real wasmedge by tests/wasm/t81: timers, a wake-up without a pipe, and a
 * loopback connection through net_listen / net_connect / net_accept, whose
 * readiness must behave as epoll's edges do: reported once, reported again
 * after a read or write came up short, and never spinning on a writable
 * socket nobody writes to. */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "../tap.h"
#include "ev.h"
#include "net.h"
#include "util.h"

struct side {
    struct ev_io io;
    unsigned calls, reads, writes;
};

static void side_cb(struct ev_loop *loop, struct ev_io *io, unsigned events)
{
    struct side *s = io->data;
    (void)loop;
    s->calls++;
    if (events & EV_READ)
        s->reads++;
    if (events & EV_WRITE)
        s->writes++;
}

static void stop_cb(struct ev_loop *loop, struct ev_timer *t)
{
    (void)t;
    ev_loop_stop(loop);
}

/* Runs the loop for about <ms>. */
static void spin(struct ev_loop *loop, int64_t ms)
{
    struct ev_timer t = {0};
    ev_timer_start(loop, &t, ms, stop_cb, NULL);
    ev_run(loop);
    ev_timer_stop(loop, &t);
}

static int fired_order[4], nfired;
static void order_cb(struct ev_loop *loop, struct ev_timer *t)
{
    (void)loop;
    fired_order[nfired++] = (int)(intptr_t)t->data;
}

static int woken;
static void wake_hook(struct ev_loop *loop, void *data)
{
    (void)data;
    woken++;
    ev_loop_stop(loop);
}

int main(void)
{
    struct ev_loop *loop = ev_loop_new();
    ok(loop != NULL, "a loop on poll_oneoff");

    /* timers, in deadline order */
    struct ev_timer t1 = {0}, t2 = {0}, t3 = {0};
    ev_timer_start(loop, &t1, 30, order_cb, (void *)(intptr_t)3);
    ev_timer_start(loop, &t2, 10, order_cb, (void *)(intptr_t)1);
    ev_timer_start(loop, &t3, 20, order_cb, (void *)(intptr_t)2);
    int64_t t0 = util_now_ms();
    spin(loop, 60);
    is_int(nfired, 3, "three timers fired");
    ok(fired_order[0] == 1 && fired_order[1] == 2 && fired_order[2] == 3, "in deadline order");
    ok(util_now_ms() - t0 >= 55, "the loop slept until its stop timer");

    /* a wake-up from the loop's own thread: no pipe, no wait */
    ev_set_wake(loop, wake_hook, NULL);
    ev_wake(loop);
    ev_wake(loop);
    struct ev_timer guard = {0};
    ev_timer_start(loop, &guard, 2000, stop_cb, NULL);
    t0 = util_now_ms();
    ev_run(loop);
    ev_timer_stop(loop, &guard);
    is_int(woken, 1, "two ev_wake() calls ran the hook once");
    ok(util_now_ms() - t0 < 1000, "without waiting for a timer");

    /* a loopback connection through the WasmEdge socket backend */
    struct net_addr a;
    char err[NET_ERR_LEN];
    ok(net_parse_addr("127.0.0.1:0", false, true, &a, err) == 0, "numeric address parsed");
    ok(net_parse_addr("localhost:80", true, false, &a, err) != 0, "names are not resolved");
    net_parse_addr("127.0.0.1:0", false, true, &a, err);
    int lfd = net_listen(&a, 16, false, err);
    ok(lfd >= 0, "net_listen on 127.0.0.1:0 (sock_open, sock_bind, sock_listen)");
    struct net_addr bound;
    ok(net_local_addr(lfd, &bound) == 0 && net_addr_port(&bound) > 0,
       "net_local_addr gives the port chosen");
    is_int(net_accept(lfd, NULL), -EAGAIN, "accept on a listener with nothing pending: EAGAIN");
    int cfd = net_connect(&bound);
    ok(cfd >= 0, "net_connect (non-blocking)");
    int sfd = -EAGAIN;
    struct net_addr peer;
    for (int i = 0; i < 200 && sfd == -EAGAIN; i++) {
        sfd = net_accept(lfd, &peer);
        if (sfd == -EAGAIN)
            usleep(5000);
    }
    ok(sfd >= 0, "net_accept");
    ok(net_addr_is_loopback(&peer), "the peer address is loopback (sock_getpeeraddr)");
    is_int(net_connect_result(cfd), 0, "the connect succeeded (SO_ERROR)");

    struct side c = {0}, s = {0};
    ev_io_start(loop, &c.io, cfd, side_cb, &c);
    ev_io_start(loop, &s.io, sfd, side_cb, &s);
    is_int(ev_io_count(loop), 2, "two ios registered");
    spin(loop, 50);
    ok(c.writes == 1 && s.writes == 1, "writable reported once each (an edge)");
    unsigned calls = c.calls + s.calls;
    spin(loop, 100);
    is_int(c.calls + s.calls, calls, "idle writable sockets: no more callbacks (no spin)");

    /* data: one read edge; a short read re-arms it; new data: a new edge */
    ok(write(cfd, "hello", 5) == 5, "5 bytes sent (sock_send)");
    spin(loop, 50);
    is_int(s.reads, 1, "the receiver got one read edge");
    spin(loop, 50);
    is_int(s.reads, 1, "unread data raises no second edge");
    char buf[64];
    bool ready = true;
    ssize_t n = net_read(sfd, buf, sizeof(buf), &ready, false);
    ok(n == 5 && memcmp(buf, "hello", 5) == 0 && !ready, "net_read: 5 bytes, a short read");
    ok(write(cfd, "again", 5) == 5, "5 more bytes sent");
    spin(loop, 50);
    is_int(s.reads, 2, "after the short read, new data is a new edge");
    n = net_read(sfd, buf, sizeof(buf), &ready, false);
    is_int((int)n, 5, "and is read");

    /* fill the sender until EAGAIN: the next writable report is an edge */
    char big[16384];
    memset(big, 'x', sizeof(big));
    size_t sent = 0;
    ssize_t w;
    while ((w = write(cfd, big, sizeof(big))) > 0)
        sent += (size_t)w;
    ok(w == -1 && errno == EAGAIN, "writes until EAGAIN (%zu bytes queued)", sent);
    unsigned before = c.writes;
    spin(loop, 30);
    is_int(c.writes, before, "a full socket is not reported writable");
    size_t got = 0;
    ready = true;
    while (got < sent) {
        n = net_read(sfd, big, sizeof(big), &ready, false);
        if (n > 0)
            got += (size_t)n;
        else
            spin(loop, 5);
    }
    spin(loop, 50);
    ok(c.writes > before, "once the peer read it all, writable again (an edge after EAGAIN)");

    /* the peer closes: read edge, then EOF */
    ev_io_stop(loop, &c.io);
    close(cfd);
    spin(loop, 50);
    ok(s.reads >= 3, "the close is a read edge");
    n = net_read(sfd, buf, sizeof(buf), &ready, false);
    is_int((int)n, 0, "read after the peer closed: EOF");

    ev_io_stop(loop, &s.io);
    close(sfd);
    close(lfd);
    is_int(ev_io_count(loop), 0, "the loop ends with no io");
    ev_loop_free(loop);
    return done_testing();
}
