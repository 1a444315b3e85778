/* SPDX-License-Identifier: MIT
 * relay.c: the response from the upstream's head to the client's last byte,
 * through a real worker (proxy_world.h). Content-Length and chunked bodies
 * pass byte for byte; an HTTP/1.0 client gets a chunked body de-chunked and
 * delimited by the close; a framing error or a backend that dies mid-body
 * cuts the client's stream without a terminator; bytes after a complete
 * message are never forwarded and the connection is not pooled; SSE events
 * are counted whatever the read boundaries. The backend's slot goes back
 * when its answer is complete, not when a slow client has taken it. */
#include <errno.h>
#include <sys/uio.h>

#include "../tap.h"
#include "proxy_world.h"

static char buf[1 << 20];

/* Reads one request head from a backend connection. */
static bool backend_read_request(int bfd)
{
    size_t len = 0;
    return read_until(bfd, buf, sizeof(buf), &len, "\r\n\r\n") > 0;
}

/* The next request on <cfd> comes to the backend on the same upstream
 * connection <bfd> (it went back to the pool) and is answered. */
static void expect_pooled(int cfd, int bfd, const char *why)
{
    WRITE_STR(cfd, "GET /v1/y HTTP/1.1\r\nHost: a\r\n\r\n");
    ok(backend_read_request(bfd), "%s", why);
    WRITE_STR(bfd, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    size_t len = 0;
    ok(read_until(cfd, buf, sizeof(buf), &len, "\r\n\r\nok") > 0, "and is answered");
}

static void test_count_sse(void)
{
    static const char ev[] = "data: {\"a\":1}\n\ndata: {\"b\":2}\n\n: comment\n\ndata: [DONE]\n\n";
    struct exchange x;
    memset(&x, 0, sizeof(x));
    relay_count_sse(&x, ev, sizeof(ev) - 1);
    is_int(x.sse_events, 4, "four blank-line-terminated events in one read");
    for (size_t cut = 1; cut < sizeof(ev) - 1; cut++) {
        memset(&x, 0, sizeof(x));
        relay_count_sse(&x, ev, cut);
        relay_count_sse(&x, ev + cut, sizeof(ev) - 1 - cut);
        if (x.sse_events != 4) {
            ok(0, "split at %zu: %u events", cut, x.sse_events);
            return;
        }
    }
    ok(1, "the same four events at every split point");
    memset(&x, 0, sizeof(x));
    static const char crlf[] = "data: a\r\n\r\ndata: b\r\n\r\n";
    for (size_t i = 0; i < sizeof(crlf) - 1; i++)
        relay_count_sse(&x, crlf + i, 1);
    is_int(x.sse_events, 2, "CRLF line ends, one byte per read");
}

static void test_content_length(struct world *wd)
{
    int cfd = world_client(wd, 0);
    WRITE_STR(cfd, "GET /v1/x HTTP/1.1\r\nHost: a\r\n\r\n");
    int bfd = world_backend_accept(wd);
    ok(bfd >= 0 && backend_read_request(bfd), "the request reaches the backend");
    WRITE_STR(bfd, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\n01234");
    usleep(20000);
    WRITE_STR(bfd, "56789");
    size_t len = 0;
    long end = read_until(cfd, buf, sizeof(buf), &len, "0123456789");
    ok(end > 0 && strstr(buf, "Content-Length: 10\r\n") != NULL,
       "a Content-Length body arrives whole, in two reads");
    expect_pooled(cfd, bfd, "the next request comes on the same upstream connection");
    close(cfd);
    close(bfd);
}

static void test_chunked(struct world *wd, bool http10)
{
    int cfd = world_client(wd, 0);
    WRITE_STR(cfd, http10 ? "GET /s HTTP/1.0\r\nHost: a\r\n\r\n" : "GET /s HTTP/1.1\r\nHost: a\r\n\r\n");
    int bfd = world_backend_accept(wd);
    backend_read_request(bfd);
    WRITE_STR(bfd, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                   "Transfer-Encoding: chunked\r\n\r\n");
    const char *events[] = {"data: w1\n\n", "data: w2\n\n", "data: [DONE]\n\n"};
    for (int i = 0; i < 3; i++) {
        char chunk[64];
        snprintf(chunk, sizeof(chunk), "%zx\r\n%s\r\n", strlen(events[i]), events[i]);
        WRITE_STR(bfd, chunk);
        usleep(10000);
    }
    WRITE_STR(bfd, "0\r\n\r\n");
    size_t len = 0;
    if (http10) {
        long n = read_to_eof(cfd, buf, sizeof(buf), &len);
        char *body = strstr(buf, "\r\n\r\n");
        ok(n > 0 && body != NULL && strcmp(body + 4, "data: w1\n\ndata: w2\n\ndata: [DONE]\n\n") == 0,
           "HTTP/1.0 client: the stream de-chunked, ended by the close");
        ok(strstr(buf, "Transfer-Encoding") == NULL && strstr(buf, "Connection: close") != NULL,
           "HTTP/1.0 client: no chunked framing, Connection: close");
    } else {
        long end = read_until(cfd, buf, sizeof(buf), &len, "0\r\n\r\n");
        ok(end > 0 && strstr(buf, "Transfer-Encoding: chunked\r\n") != NULL &&
               strstr(buf, "a\r\ndata: w1\n\n\r\n") != NULL,
           "HTTP/1.1 client: chunks pass as they came, terminator included");
    }
    close(cfd);
    close(bfd);
}

static void test_cut(struct world *wd, const char *how)
{
    int cfd = world_client(wd, 0);
    WRITE_STR(cfd, "GET /s HTTP/1.1\r\nHost: a\r\n\r\n");
    int bfd = world_backend_accept(wd);
    backend_read_request(bfd);
    WRITE_STR(bfd, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
    usleep(50000); /* the valid chunk is relayed before what follows arrives */
    if (strcmp(how, "framing") == 0)
        WRITE_STR(bfd, "zz\r\nbad\r\n");
    close(bfd); /* "close": dies mid-body */
    size_t len = 0;
    long n = read_to_eof(cfd, buf, sizeof(buf), &len);
    ok(n > 0 && strstr(buf, "5\r\nhello\r\n") != NULL && strstr(buf, "0\r\n\r\n") == NULL,
       "%s mid-body: the client gets what came, then the close, no terminator", how);
    close(cfd);
}

static void test_extra_bytes(struct world *wd)
{
    int cfd = world_client(wd, 0);
    WRITE_STR(cfd, "GET /x HTTP/1.1\r\nHost: a\r\n\r\n");
    int bfd = world_backend_accept(wd);
    backend_read_request(bfd);
    WRITE_STR(bfd, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokSMUGGLED");
    size_t len = 0;
    read_until(cfd, buf, sizeof(buf), &len, "\r\n\r\nok");
    usleep(50000);
    char more[64];
    set_timeout(cfd, 200);
    ssize_t r = read(cfd, more, sizeof(more));
    ok(r < 0 && strstr(buf, "SMUGGLED") == NULL, "bytes after the message never reach the client");
    set_timeout(cfd, 3000);
    WRITE_STR(cfd, "GET /y HTTP/1.1\r\nHost: a\r\n\r\n");
    int bfd2 = world_backend_accept(wd);
    ok(bfd2 >= 0 && backend_read_request(bfd2),
       "the next request opens a new upstream connection (the old one is not pooled)");
    WRITE_STR(bfd2, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    len = 0;
    ok(read_until(cfd, buf, sizeof(buf), &len, "\r\n\r\n") > 0, "and is answered");
    close(cfd);
    close(bfd);
    close(bfd2);
}

/* The backend's slot goes back before the client can see the answer's
 * end: a client that sends its next request the moment it has the answer
 * (any worker may take it) finds the backend free. Before, the slot came
 * back after the last write, and a quick client won the race now and then
 * (session affinity then moved it to another backend). */
static void test_slot_back_before_the_end(struct world *wd)
{
    int cfd = world_client(wd, 0);
    int bfd = -1, late = 0, n = 300;
    for (int i = 0; i < n; i++) {
        WRITE_STR(cfd, "GET /q HTTP/1.1\r\nHost: a\r\n\r\n");
        if (bfd < 0)
            bfd = world_backend_accept(wd);
        backend_read_request(bfd);
        WRITE_STR(bfd, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone");
        size_t len = 0;
        if (read_until(cfd, buf, sizeof(buf), &len, "\r\n\r\ndone") < 0)
            break;
        if (atomic_load(&wd->be->inflight) != 0)
            late++;
    }
    is_int(late, 0, "after %d answers, the client never saw one before its slot was back", n);
    close(cfd);
    close(bfd);
}

/* The worker's end of client connection <cfd> (the world runs in this
 * process): the socket whose peer is <cfd>'s local address. */
static int worker_side(int cfd)
{
    struct sockaddr_in me, peer;
    socklen_t n = sizeof(me);
    if (getsockname(cfd, (struct sockaddr *)&me, &n) != 0)
        return -1;
    for (int fd = 3; fd < 4096; fd++) {
        n = sizeof(peer);
        if (fd != cfd && getpeername(fd, (struct sockaddr *)&peer, &n) == 0 &&
            peer.sin_family == AF_INET && peer.sin_port == me.sin_port &&
            peer.sin_addr.s_addr == me.sin_addr.s_addr)
            return fd;
    }
    return -1;
}

/* The whole answer is in hand but the client reads slowly: the backend is
 * free at once, the client still gets every byte, and the connection is
 * pooled after it has. Both socket buffers on the client's path are made
 * small, so the answer cannot all be written before the client reads. */
static void test_slow_reader_frees_slot(struct world *wd)
{
    static char body[14000]; /* with the head, one upstream read (BUF_CHUNK) */
    memset(body, 'x', sizeof(body));
    memcpy(body + sizeof(body) - 4, "END!", 4);
    int cfd = world_client(wd, 1024);
    WRITE_STR(cfd, "GET /big HTTP/1.1\r\nHost: a\r\n\r\n");
    int bfd = world_backend_accept(wd);
    backend_read_request(bfd);
    int wfd = worker_side(cfd), small = 4096;
    ok(wfd >= 0 && setsockopt(wfd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)) == 0,
       "the worker's end of the client connection gets a small send buffer");
    char head[128];
    int hn = snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n",
                      sizeof(body));
    struct iovec iov[2] = {{head, (size_t)hn}, {body, sizeof(body)}};
    ok(writev(bfd, iov, 2) == (ssize_t)(hn + sizeof(body)), "the backend answers in one write");
    int inflight = -1;
    for (int i = 0; i < 100 && inflight != 0; i++) {
        usleep(10000);
        inflight = (int)atomic_load(&wd->be->inflight);
    }
    is_int(inflight, 0, "the backend's slot is back while the client has not read");
    size_t len = 0;
    long end = read_until(cfd, buf, sizeof(buf), &len, "END!");
    char *h = memmem(buf, len, "\r\n\r\n", 4);
    ok(end > 0 && h != NULL && (size_t)(buf + len - (h + 4)) == sizeof(body),
       "and the slow client gets all %zu bytes", sizeof(body));
    expect_pooled(cfd, bfd, "the upstream connection is pooled once the client has it all");
    close(cfd);
    close(bfd);
}

int main(void)
{
    struct world wd;
    test_count_sse();
    world_start(&wd, 0, NULL);
    test_content_length(&wd);
    test_chunked(&wd, false);
    test_chunked(&wd, true);
    test_cut(&wd, "close");
    test_cut(&wd, "framing");
    test_extra_bytes(&wd);
    test_slow_reader_frees_slot(&wd);
    test_slot_back_before_the_end(&wd);
    world_stop(&wd);
    return done_testing();
}
