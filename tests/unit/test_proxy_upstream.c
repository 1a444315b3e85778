/* SPDX-License-Identifier: MIT
 * upstream.c: a pooled connection leaves each lease exactly once, back to
 * the pool or closed, and the backend's slot with it. Through a real worker
 * (proxy_world.h): keep-alive reuse, a backend closing an idle pooled
 * connection, a client leaving mid-response (upstream closed, slot freed),
 * a response not read to its end never pooled, and no pooling at all with
 * --max-idle-per-backend 0. ASan (make check) sees any second release. */
#include <errno.h>

#include "../tap.h"
#include "proxy_world.h"

static char buf[1 << 16];

static bool wait_until(bool (*pred)(struct world *), struct world *wd)
{
    for (int i = 0; i < 300; i++) {
        if (pred(wd))
            return true;
        usleep(10000);
    }
    return pred(wd);
}

static bool slot_free(struct world *wd) { return atomic_load(&wd->be->inflight) == 0; }
/* The pool belongs to the worker's thread: the test reads the process-wide
 * atomic count (one worker, one backend here). */
static bool one_idle(struct world *wd) { return atomic_load(&wd->s.stats.up_idle) == 1; }
static bool none_idle(struct world *wd) { return atomic_load(&wd->s.stats.up_idle) == 0; }

static bool backend_request(int bfd)
{
    size_t len = 0;
    return read_until(bfd, buf, sizeof(buf), &len, "\r\n\r\n") > 0;
}

static bool client_answer(int cfd, const char *want)
{
    size_t len = 0;
    return read_until(cfd, buf, sizeof(buf), &len, want) > 0;
}

static void test_reuse(struct world *wd)
{
    uint64_t c0 = atomic_load(&wd->s.stats.up_connects), r0 = atomic_load(&wd->s.stats.up_reuses);
    int cfd = world_client(wd, 0), bfd = -1;
    bool all = true;
    for (int i = 0; i < 5; i++) {
        WRITE_STR(cfd, "GET /v1/x HTTP/1.1\r\nHost: a\r\n\r\n");
        if (bfd < 0)
            bfd = world_backend_accept(wd);
        all = all && backend_request(bfd);
        WRITE_STR(bfd, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        all = all && client_answer(cfd, "\r\n\r\nok");
    }
    ok(all, "five requests answered on one upstream connection");
    is_int(atomic_load(&wd->s.stats.up_connects) - c0, 1, "one connect");
    is_int(atomic_load(&wd->s.stats.up_reuses) - r0, 4, "four reuses");
    ok(wait_until(one_idle, wd) && slot_free(wd), "then idle in the pool, the slot free");

    /* The backend closes the idle connection: the pool lets it go at once. */
    close(bfd);
    ok(wait_until(none_idle, wd), "a pooled connection the backend closed leaves the pool");
    WRITE_STR(cfd, "GET /v1/y HTTP/1.1\r\nHost: a\r\n\r\n");
    bfd = world_backend_accept(wd);
    ok(bfd >= 0 && backend_request(bfd), "the next request opens a new connection");
    WRITE_STR(bfd, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    ok(client_answer(cfd, "\r\n\r\n"), "and is answered");
    ok(wait_until(one_idle, wd), "back in the pool");
    close(cfd);
    close(bfd);
}

static void test_client_leaves(struct world *wd)
{
    int cfd = world_client(wd, 0);
    WRITE_STR(cfd, "GET /stream HTTP/1.1\r\nHost: a\r\n\r\n");
    int bfd = world_backend_accept(wd);
    ok(bfd >= 0 && backend_request(bfd), "the request reaches the backend");
    WRITE_STR(bfd, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
    ok(client_answer(cfd, "hello"), "the stream starts");
    ok(atomic_load(&wd->be->inflight) == 1, "the slot is held while it streams");
    close(cfd); /* the client leaves mid-stream */
    char c;
    ssize_t r = read(bfd, &c, 1);
    ok(r == 0, "the upstream connection is closed, not pooled (read %zd)", r);
    ok(wait_until(slot_free, wd), "and the slot is released");
    close(bfd);
}

static void tweak_no_pool(struct cfg *k) { k->max_idle_per_backend = 0; }

int main(void)
{
    struct world wd;
    world_start(&wd, 1, NULL);
    test_reuse(&wd);
    world_stop(&wd);

    world_start(&wd, 1, NULL);
    test_client_leaves(&wd);
    world_stop(&wd);

    world_start(&wd, 1, tweak_no_pool);
    int cfd = world_client(&wd, 0);
    bool all = true;
    for (int i = 0; i < 3; i++) {
        WRITE_STR(cfd, "GET /v1/x HTTP/1.1\r\nHost: a\r\n\r\n");
        int bfd = world_backend_accept(&wd);
        all = all && bfd >= 0 && backend_request(bfd);
        WRITE_STR(bfd, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        all = all && client_answer(cfd, "\r\n\r\nok");
        char ch;
        all = all && read(bfd, &ch, 1) == 0; /* closed after its response */
        close(bfd);
    }
    ok(all, "--max-idle-per-backend 0: a connection per request, each closed after it");
    is_int(atomic_load(&wd.s.stats.up_reuses), 0, "no reuse");
    close(cfd);
    world_stop(&wd);
    return done_testing();
}
