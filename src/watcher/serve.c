/* SPDX-License-Identifier: MIT
 * /healthz and /metrics over plain sockets (see serve.h). */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "net.h"
#include "serve.h"
#include "util.h"

int serve_listen(struct serve *s, const char *addr, serve_route_cb *route, void *data,
                 char *bound, size_t boundlen, char *err, size_t errlen)
{
    struct net_addr a;
    char e[NET_ERR_LEN];
    memset(s, 0, sizeof(*s));
    for (int i = 0; i < SERVE_MAX_CONNS; i++)
        s->c[i].fd = -1;
    s->lfd = -1;
    s->route = route;
    s->data = data;
    if (net_parse_addr(addr, false, true, &a, e) < 0) {
        snprintf(err, errlen, "--listen %s: %s", addr, e);
        return -EINVAL;
    }
    int fd = net_listen(&a, 64, false, e);
    if (fd < 0) {
        snprintf(err, errlen, "--listen %s: %s", addr, e);
        return fd;
    }
    s->lfd = fd;
    net_local_addr(fd, &a);
    net_addr_str(&a, bound, boundlen);
    return 0;
}

unsigned serve_fds(struct serve *s, struct curl_waitfd *fds)
{
    unsigned n = 0;
    if (s->lfd < 0)
        return 0;
    fds[n++] = (struct curl_waitfd){.fd = s->lfd, .events = CURL_WAIT_POLLIN};
    for (int i = 0; i < SERVE_MAX_CONNS; i++) {
        if (s->c[i].fd < 0)
            continue;
        fds[n++] = (struct curl_waitfd){
            .fd = s->c[i].fd,
            .events = s->c[i].out.len ? CURL_WAIT_POLLOUT : CURL_WAIT_POLLIN};
    }
    return n;
}

static void conn_close(struct serve_conn *c)
{
    close(c->fd);
    c->fd = -1;
    buf_free(&c->in);
    buf_free(&c->out);
}

static void respond(struct serve *s, struct serve_conn *c)
{
    char method[16] = "", path[256] = "";
    struct buf body = {0};
    const char *ctype = "text/plain; charset=utf-8";
    int status;
    buf_append(&c->in, "", 1);
    if (sscanf(buf_data(&c->in), "%15s %255s", method, path) != 2) {
        status = 400;
        buf_append_str(&body, "bad request\n");
    } else if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        status = 405;
        buf_append_str(&body, "use GET\n");
    } else {
        char *q = strchr(path, '?');
        if (q)
            *q = '\0';
        status = s->route(s->data, path, &body, &ctype);
    }
    buf_printf(&c->out, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                        "Connection: close\r\n\r\n",
               status, status == 200 ? "OK" : status == 404 ? "Not Found" : "Error", ctype,
               body.len);
    if (strcmp(method, "HEAD") != 0)
        buf_append(&c->out, buf_data(&body), body.len);
    buf_free(&body);
}

static void conn_io(struct serve *s, struct serve_conn *c)
{
    if (c->out.len == 0) {
        char tmp[2048];
        ssize_t n = recv(c->fd, tmp, sizeof(tmp), 0);
        if (n == -1 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n <= 0) {
            conn_close(c);
            return;
        }
        if (c->in.len + (size_t)n > SERVE_MAX_HEAD) {
            conn_close(c);
            return;
        }
        buf_append(&c->in, tmp, (size_t)n);
        if (memmem(buf_data(&c->in), c->in.len, "\r\n\r\n", 4) == NULL &&
            memmem(buf_data(&c->in), c->in.len, "\n\n", 2) == NULL)
            return;
        respond(s, c);
    }
    while (c->out.len > 0) {
        ssize_t n = send(c->fd, buf_data(&c->out), c->out.len, MSG_NOSIGNAL);
        if (n == -1 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n <= 0) {
            conn_close(c);
            return;
        }
        buf_consume(&c->out, (size_t)n);
    }
    conn_close(c);
}

void serve_handle(struct serve *s, struct curl_waitfd *fds, unsigned n, int64_t now_ms)
{
    for (unsigned i = 0; i < n; i++) {
        if (fds[i].revents == 0)
            continue;
        if (fds[i].fd == s->lfd) {
            int fd;
            while ((fd = net_accept(s->lfd, NULL)) >= 0) {
                int slot = -1;
                for (int j = 0; j < SERVE_MAX_CONNS && slot < 0; j++)
                    if (s->c[j].fd < 0)
                        slot = j;
                if (slot < 0) {
                    close(fd); /* full: the scraper will retry */
                    continue;
                }
                s->c[slot].fd = fd;
                s->c[slot].deadline = now_ms + 5000;
            }
            continue;
        }
        for (int j = 0; j < SERVE_MAX_CONNS; j++)
            if (s->c[j].fd == fds[i].fd) {
                conn_io(s, &s->c[j]);
                break;
            }
    }
    for (int j = 0; j < SERVE_MAX_CONNS; j++)
        if (s->c[j].fd >= 0 && now_ms > s->c[j].deadline)
            conn_close(&s->c[j]);
}

void serve_close(struct serve *s)
{
    for (int j = 0; j < SERVE_MAX_CONNS; j++)
        if (s->c[j].fd >= 0)
            conn_close(&s->c[j]);
    if (s->lfd >= 0)
        close(s->lfd);
    s->lfd = -1;
}
