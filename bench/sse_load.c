/* SPDX-License-Identifier: MIT
 * sse_load: the load generator for the streaming and memory benchmarks
 * (bench/run.sh compiles it with `cc -O2`; wrk cannot express these tests).
 * One thread, epoll, keep-alive HTTP/1.1 connections to one address.
 *
 *   sse_load -a HOST:PORT -m loop|hold|idle [-c CONNS] [-d SECONDS] [-b BODY] [-p PATH] [-i US]
 *
 *   loop  every connection sends BODY as a POST, reads the whole response
 *         (Content-Length or chunked), then sends the next; for each response
 *         it records the time to its first byte (ttfb) and to its first SSE
 *         event `data: {` (ttfe), and counts events. With -i US a connection
 *         starts a request at most every US microseconds (paced, light load). After SECONDS prints one JSON line:
 *         responses, events, errors, ttfb/ttfe percentiles (µs), own CPU seconds.
 *   hold  opens CONNS connections (in steps of 256), sends BODY on each and
 *         keeps reading whatever arrives, 64 bytes per readiness (a slow
 *         reader); once every one has its response head prints "held N" and
 *         keeps them open until stdin closes (or SECONDS pass).
 *   idle  like hold, but each connection reads one complete response and then
 *         stays idle (a keep-alive connection between requests).
 * Loopback benchmarks only: no TLS, no DNS, numeric IPv4. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { M_LOOP, M_HOLD, M_IDLE };

struct cn {
    int fd;
    int64_t t_send;     /* µs */
    int got_first;      /* first event (or body byte) seen */
    int got_byte;       /* first response byte seen */
    int head_done;      /* response head complete */
    int chunked;
    int64_t body_left;  /* Content-Length bodies */
    char head[4096];
    size_t head_len;
    unsigned tail;      /* "\r\n0\r\n\r\n" matcher */
    unsigned ev_k;      /* "data: {" matcher */
    int done;           /* (hold/idle) response complete or head seen */
    int64_t next_send;  /* loop with -i: when to send the next request, 0 = none pending */
};

static int64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static struct sockaddr_in dst;
static char *req;
static size_t req_len;
static int mode = M_LOOP;
static uint64_t n_resp, n_events, n_err;
/* Latency samples in microseconds, grown as needed. */
struct samples {
    uint32_t *v;
    size_t n, cap;
};
static struct samples lat, lat2; /* first response byte, first event */
static int ep;

static void rec(struct samples *s, uint32_t us) {
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 65536;
        s->v = realloc(s->v, s->cap * sizeof *s->v);
        if (!s->v) abort();
    }
    s->v[s->n++] = us;
}

/* The q-quantile of sorted samples (0 when there are none). */
static uint32_t quantile(const struct samples *s, double q) {
    return s->n ? s->v[(size_t)((double)(s->n - 1) * q)] : 0;
}

static int cmp32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static int open_conn(struct cn *c) {
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) return -1;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c->fd, (struct sockaddr *)&dst, sizeof dst) < 0 && errno != EINPROGRESS) {
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    struct epoll_event e = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &e);
    return 0;
}

static void reset_resp(struct cn *c) {
    c->got_first = c->got_byte = c->head_done = c->chunked = 0;
    c->body_left = -1;
    c->head_len = 0;
    c->tail = c->ev_k = 0;
}

static int send_req(struct cn *c) {
    reset_resp(c);
    c->t_send = now_us();
    ssize_t n = send(c->fd, req, req_len, MSG_NOSIGNAL);
    if (n == (ssize_t)req_len) return 0;
    /* Requests are small enough for an empty socket buffer; 100 KiB ones are
     * finished with a blocking poll loop (rare, the load generator's own time). */
    size_t off = n > 0 ? (size_t)n : 0;
    if (n < 0 && errno != EAGAIN) return -1;
    while (off < req_len) {
        struct pollfd p = {.fd = c->fd, .events = POLLOUT};
        poll(&p, 1, 1000);
        n = send(c->fd, req + off, req_len - off, MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN) return -1;
        if (n > 0) off += (size_t)n;
    }
    return 0;
}

static void fail(struct cn *c) {
    n_err++;
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    c->done = 1;
}

/* Feeds response bytes; returns 1 when the response is complete. */
static int feed(struct cn *c, const char *p, size_t n, int64_t t) {
    static const char term[] = "\r\n0\r\n\r\n", evp[] = "data: {";
    size_t i = 0;
    if (!c->got_byte) {
        c->got_byte = 1;
        if (mode == M_LOOP) rec(&lat, (uint32_t)(t - c->t_send));
    }
    if (!c->head_done) {
        size_t take = n;
        if (c->head_len + take > sizeof c->head - 1) take = sizeof c->head - 1 - c->head_len;
        memcpy(c->head + c->head_len, p, take);
        c->head_len += take;
        c->head[c->head_len] = 0;
        char *e = strstr(c->head, "\r\n\r\n");
        if (!e) return 0;
        size_t hl = (size_t)(e + 4 - c->head);
        i = hl - (c->head_len - take); /* body starts at p + i */
        c->head_done = 1;
        if (strncmp(c->head, "HTTP/1.1 200", 12) != 0) n_err++;
        for (char *h = strstr(c->head, "\r\n"); h && h < e; h = strstr(h + 2, "\r\n")) {
            if (!strncasecmp(h + 2, "content-length:", 15)) c->body_left = strtoll(h + 17, NULL, 10);
            if (!strncasecmp(h + 2, "transfer-encoding:", 18) && strcasestr(h, "chunked")) c->chunked = 1;
        }
        c->tail = 2; /* the head's last "\r\n" starts the terminator pattern */
    }
    if (!c->chunked) {
        if (!c->got_first) {
            c->got_first = 1;
            if (mode == M_LOOP) rec(&lat2, (uint32_t)(t - c->t_send));
        }
        int64_t left = c->body_left < 0 ? 0 : c->body_left;
        left -= (int64_t)(n - i);
        c->body_left = left;
        return left <= 0;
    }
    for (; i < n; i++) {
        char ch = p[i];
        c->ev_k = ch == evp[c->ev_k] ? c->ev_k + 1 : (ch == 'd');
        if (c->ev_k == 7) {
            c->ev_k = 0;
            n_events++;
            if (!c->got_first) {
                c->got_first = 1;
                if (mode == M_LOOP) rec(&lat2, (uint32_t)(t - c->t_send));
            }
        }
        c->tail = ch == term[c->tail] ? c->tail + 1 : (ch == '\r');
        if (c->tail == 7) return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *addr = NULL, *body = "{}", *path = "/v1/chat/completions";
    int conns = 1;
    double secs = 5;
    int64_t interval = 0; /* -i: µs from one request's start to the next on a connection */
    int opt;
    while ((opt = getopt(argc, argv, "a:m:c:d:b:p:i:")) != -1) {
        switch (opt) {
        case 'a': addr = optarg; break;
        case 'm': mode = !strcmp(optarg, "hold") ? M_HOLD : !strcmp(optarg, "idle") ? M_IDLE : M_LOOP; break;
        case 'c': conns = atoi(optarg); break;
        case 'd': secs = atof(optarg); break;
        case 'b': body = optarg; break;
        case 'p': path = optarg; break;
        case 'i': interval = atoll(optarg); break;
        default: fprintf(stderr, "usage: sse_load -a HOST:PORT -m loop|hold|idle [-c N] [-d S] [-b BODY] [-p PATH] [-i US]\n"); return 2;
        }
    }
    if (!addr || conns < 1) { fprintf(stderr, "sse_load: -a HOST:PORT required\n"); return 2; }
    char host[64];
    const char *colon = strrchr(addr, ':');
    if (!colon || (size_t)(colon - addr) >= sizeof host) return 2;
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = 0;
    dst.sin_family = AF_INET;
    dst.sin_port = htons((uint16_t)atoi(colon + 1));
    if (inet_pton(AF_INET, host, &dst.sin_addr) != 1) return 2;
    size_t bl = strlen(body);
    req = malloc(bl + 256);
    req_len = (size_t)sprintf(req, "POST %s HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                              "Content-Length: %zu\r\n\r\n%s", path, bl, body);
    ep = epoll_create1(EPOLL_CLOEXEC);
    struct cn *cs = calloc((size_t)conns, sizeof *cs);
    struct epoll_event evs[512];
    char buf[65536];
    int64_t t0 = now_us(), t_end = t0 + (int64_t)(secs * 1e6);
    int opened = 0, held_printed = 0;
    int64_t t_loop_end = 0;

    for (;;) {
        /* Open (hold/idle: ramp in steps of 256 once the previous step is served). */
        int pending = 0;
        if (!held_printed)
            for (int k = 0; k < opened; k++) pending += cs[k].fd >= 0 && !cs[k].done;
        if (opened < conns && (mode == M_LOOP || pending == 0)) {
            int step = mode == M_LOOP ? conns : 256;
            for (int k = 0; k < step && opened < conns; k++, opened++) {
                struct cn *c = &cs[opened];
                if (open_conn(c) < 0 || send_req(c) < 0) { n_err++; c->done = 1; }
            }
            continue;
        }
        if (mode != M_LOOP && opened == conns && pending == 0 && !held_printed) {
            int live = 0;
            for (int k = 0; k < conns; k++) live += cs[k].fd >= 0;
            printf("held %d\n", live);
            fflush(stdout);
            held_printed = 1;
            struct epoll_event e = {.events = EPOLLIN, .data.ptr = NULL};
            epoll_ctl(ep, EPOLL_CTL_ADD, 0, &e);
        }
        int64_t t = now_us();
        if (t >= t_end) break;
        int timeout = (int)((t_end - t) / 1000) + 1;
        if (interval > 0) {
            for (int k = 0; k < opened; k++) {
                struct cn *c = &cs[k];
                if (c->fd < 0 || !c->next_send) continue;
                if (c->next_send <= t) {
                    c->next_send = 0;
                    if (send_req(c) < 0) fail(c);
                } else if ((c->next_send - t + 999) / 1000 < timeout) {
                    timeout = (int)((c->next_send - t + 999) / 1000);
                }
            }
        }
        int n = epoll_wait(ep, evs, 512, timeout);
        t = now_us();
        for (int k = 0; k < n; k++) {
            struct cn *c = evs[k].data.ptr;
            if (!c) { /* stdin: closed or a line: stop holding */
                char tmp[64];
                if (read(0, tmp, sizeof tmp) <= 0) t_end = 0; else t_end = 0;
                continue;
            }
            if (c->fd < 0) continue;
            if (!(evs[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) continue;
            for (;;) {
                size_t want = mode == M_HOLD && c->done ? 64 : sizeof buf;
                ssize_t r = recv(c->fd, buf, want, 0);
                if (r < 0 && errno == EAGAIN) break;
                if (r <= 0) { if (!(mode == M_HOLD && c->done)) fail(c); else { close(c->fd); c->fd = -1; } break; }
                if (mode == M_HOLD) {
                    if (!c->done) { feed(c, buf, (size_t)r, t); if (c->head_done) c->done = 1; }
                    if (c->done) break; /* slow reader: 64 bytes per readiness edge... */
                    continue;
                }
                if (feed(c, buf, (size_t)r, now_us())) {
                    n_resp++;
                    if (mode == M_IDLE) { c->done = 1; continue; }
                    if (interval > 0) {
                        int64_t nt = c->t_send + interval, tn = now_us();
                        c->next_send = nt > tn ? nt : tn;
                        break;
                    }
                    if (send_req(c) < 0) { fail(c); break; }
                }
            }
        }
        (void)t_loop_end;
    }
    double el = (double)(now_us() - t0) / 1e6;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
                 ru.ru_stime.tv_usec / 1e6;
    qsort(lat.v, lat.n, sizeof *lat.v, cmp32);
    qsort(lat2.v, lat2.n, sizeof *lat2.v, cmp32);
    printf("{\"responses\":%llu,\"events\":%llu,\"errors\":%llu,\"seconds\":%.3f,\"cpu_s\":%.3f,"
           "\"ttfb_p50_us\":%u,\"ttfb_p90_us\":%u,\"ttfb_p99_us\":%u,\"samples\":%zu,"
           "\"ttfe_p50_us\":%u,\"ttfe_p99_us\":%u}\n",
           (unsigned long long)n_resp, (unsigned long long)n_events, (unsigned long long)n_err, el, cpu,
           quantile(&lat, 0.5), quantile(&lat, 0.9), quantile(&lat, 0.99), lat.n, quantile(&lat2, 0.5),
           quantile(&lat2, 0.99));
    return 0;
}
