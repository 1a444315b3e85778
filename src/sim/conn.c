/* SPDX-License-Identifier: MIT
 * One client connection of the simulator: accept, read, frame requests
 * (keep-alive, pipelining, chunked bodies, Expect: 100-continue), write,
 * the slow-headers drip, and close. Reading is edge-triggered: readiness is
 * remembered in can_read/can_write until a short read or write or EAGAIN.
 * While the server is frozen (slots.c), every io event is recorded on the
 * connection and replayed by server.c's before-sleep pass after the thaw.
 *
 * The request state machine (READ_HEAD -> READ_BODY -> BUSY -> READ_HEAD)
 * is in try_request() and the run loop sim_conn_run(); server.h describes
 * the states. */

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "net.h"
#include "server.h"
#include "util.h"

#define IN_LIMIT (64 * 1024) /* bytes of pipelined input buffered while busy */

/* ---------------------------------------------------------------- input */

/* True if the Authorization value <v> does not carry the API key. The token
 * is the word after the first space (the scheme is not checked), like the
 * real server's check. */
static bool auth_mismatch(struct slice v, const char *key)
{
    struct slice tok = {0};
    const char *sp = memchr(v.p, ' ', v.len);
    if (sp != NULL) {
        tok = slice_make(sp + 1, v.len - (size_t)(sp + 1 - v.p));
        const char *sp2 = memchr(tok.p, ' ', tok.len);
        if (sp2 != NULL)
            tok.len = (size_t)(sp2 - tok.p);
    }
    return !util_ct_equal(tok.p, tok.len, key, strlen(key));
}

/* Takes what this request needs from the headers, which live in the parser's
 * per-thread scratch array and are gone after the next parse. */
static void take_headers(struct sim_conn *c)
{
    const struct http1_header *h;
    c->auth_bad = false;
    c->ctype[0] = '\0';
    c->rid[0] = '\0';
    if (sim_srv.cfg->request_log != NULL && (h = http1_find(&c->msg, "x-request-id")) != NULL) {
        size_t n = MIN(h->value.len, sizeof(c->rid) - 1);
        memcpy(c->rid, h->value.p, n);
        c->rid[n] = '\0';
    }
    c->fault_bad = sim_fault_from_headers(&c->fault, &sim_srv.cfg->fault, &c->msg,
                                          c->fault_err, sizeof(c->fault_err)) != 0;
    h = http1_find(&c->msg, "content-type");
    if (h != NULL) {
        size_t n = MIN(h->value.len, sizeof(c->ctype) - 1);
        memcpy(c->ctype, h->value.p, n);
        c->ctype[n] = '\0';
    }
    if (sim_srv.cfg->api_key != NULL) {
        /* Checked only when the header is present and non-empty, like the
         * real server (docs/sim.md, What the simulator relies on). */
        h = http1_find(&c->msg, "authorization");
        if (h != NULL && h->value.len > 0)
            c->auth_bad = auth_mismatch(h->value, sim_srv.cfg->api_key);
    }
}

/* READ_HEAD: parses the head in <in>. Returns 1 when a head was taken (now
 * READ_BODY), 0 when more input is needed, -1 on a refused head (answered,
 * closing). */
static int read_head(struct sim_conn *c)
{
    if (c->in.len == 0)
        return 0;
    int r = http1_parse_request(buf_data(&c->in), c->in.len, &c->msg, &http1_default_limits);
    if (r == -2)
        return 0;
    if (r == -1) {
        sim_reply_parse_error(c, c->msg.error ? c->msg.error : 400);
        return -1;
    }
    const char *base = buf_data(&c->in);
    c->head_len = (size_t)r;
    c->method_off = (size_t)(c->msg.method.p - base);
    c->method_len = c->msg.method.len;
    c->path_off = (size_t)(c->msg.target.p - base);
    c->path_len = c->msg.target.len;
    c->keep_alive = c->msg.keep_alive;
    c->minor = c->msg.minor;
    c->head_only = slice_eq_cstr(c->msg.method, "HEAD");
    c->chunked = c->msg.framing == HTTP1_BODY_CHUNKED;
    c->body_raw = c->msg.framing == HTTP1_BODY_LENGTH ? (size_t)c->msg.content_length : 0;
    memset(&c->dec, 0, sizeof(c->dec));
    c->dec_off = 0;
    take_headers(c);
    bool body_missing = c->chunked || c->in.len < c->head_len + c->body_raw;
    if (c->msg.expect_continue && body_missing) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        buf_append(&c->out, cont, sizeof(cont) - 1);
    }
    http1_msg_reset(&c->msg);
    c->st = SIM_ST_READ_BODY;
    return 1;
}

/* READ_BODY, chunked: decodes what has arrived into <body>. Returns 1 when
 * the body is complete, 0 when more input is needed, -1 on a bad or too
 * large body (answered, closing). */
static int read_chunked(struct sim_conn *c)
{
    for (;;) {
        size_t at = c->head_len + c->dec_off, used = 0;
        struct slice data;
        enum http1_chunk_rc rc = http1_chunked_decode(&c->dec, buf_data(&c->in) + at,
                                                      c->in.len - at, &used, &data);
        c->dec_off += used;
        if (rc == HTTP1_CHUNK_DATA) {
            if (c->body.len + data.len > http1_default_limits.max_body) {
                sim_reply_parse_error(c, 413);
                return -1;
            }
            buf_append(&c->body, data.p, data.len);
            continue;
        }
        if (rc == HTTP1_CHUNK_MORE)
            return 0;
        if (rc == HTTP1_CHUNK_ERROR) {
            sim_reply_parse_error(c, 400);
            return -1;
        }
        c->body_raw = c->dec_off;
        return 1;
    }
}

/* Tries to complete and serve one request from <in>. Returns 1 when a
 * request was handled, 0 when more input is needed or the connection is
 * busy, -1 when the connection is closed or closing. */
static int try_request(struct sim_conn *c)
{
    if (c->st == SIM_ST_READ_HEAD) {
        int r = read_head(c);
        if (r <= 0)
            return r;
    }
    if (c->st != SIM_ST_READ_BODY)
        return 0;
    if (c->chunked) {
        int r = read_chunked(c);
        if (r <= 0)
            return r;
    } else if (c->in.len < c->head_len + c->body_raw) {
        return 0;
    }
    sim_route_serve(c);
    return 1;
}

/* Reads once into <in>. Returns 1 if bytes arrived, 0 if none (EAGAIN or the
 * buffer limit), -1 if the connection was closed. */
static int conn_read(struct sim_conn *c)
{
    size_t want = BUF_CHUNK;
    if (c->st == SIM_ST_BUSY && c->in.len >= IN_LIMIT)
        return 0; /* keep the edge: can_read stays set */
    if (c->st == SIM_ST_READ_BODY && !c->chunked) {
        size_t need = c->head_len + c->body_raw - c->in.len;
        want = MAX(want, MIN(need, (size_t)4 << 20));
    }
    char *p = buf_reserve(&c->in, want);
    size_t room = buf_room(&c->in);
    ssize_t n;
    do
        n = read(c->fd, p, room);
    while (n == -1 && errno == EINTR);
    if (n > 0) {
        buf_commit(&c->in, (size_t)n);
        if ((size_t)n < room)
            c->can_read = false; /* drained: the next arrival is a new edge */
        return 1;
    }
    if (n == -1 && errno == EAGAIN) {
        c->can_read = false;
        buf_release(&c->in);
        return 0;
    }
    /* EOF or error: hyper drops the connection and any response in progress
     * (for a stream that frees its slot: ChatStream::drop). */
    sim_conn_close(c);
    return -1;
}

void sim_conn_request_done(struct sim_conn *c)
{
    buf_consume(&c->in, c->head_len + c->body_raw);
    buf_release(&c->in);
    buf_free(&c->body);
    c->st = SIM_ST_READ_HEAD;
    c->streaming = false;
    c->events = 0;
    if (c->in_flight) {
        c->in_flight = false;
        sim_srv.in_flight--;
    }
    if (!c->keep_alive)
        c->close_after_write = true;
}

void sim_conn_body(const struct sim_conn *c, const char **p, size_t *len)
{
    if (c->chunked) {
        *p = c->body.area ? buf_data(&c->body) : "";
        *len = c->body.len;
    } else {
        *p = buf_data(&c->in) + c->head_len;
        *len = c->body_raw;
    }
}

/* ---------------------------------------------------------------- output */

void sim_conn_flush(struct sim_conn *c)
{
    if (c->closed || c->drip_left > 0)
        return;
    while (c->out.len > 0 && c->can_write) {
        ssize_t n = write(c->fd, buf_data(&c->out), c->out.len);
        if (n > 0) {
            bool short_write = (size_t)n < c->out.len;
            buf_consume(&c->out, (size_t)n);
            if (short_write)
                c->can_write = false;
            continue;
        }
        if (n == -1 && errno == EINTR)
            continue;
        if (n == -1 && errno == EAGAIN) {
            c->can_write = false;
            break;
        }
        sim_conn_close(c);
        return;
    }
    if (c->out.len == 0) {
        buf_release(&c->out);
        if (c->close_after_write)
            sim_conn_close(c);
    }
}

/* The slow-headers fault: one byte of the head per tick. */
static void drip_cb(struct ev_loop *loop, struct ev_timer *t)
{
    struct sim_conn *c = t->data;
    UNUSED(loop);
    if (c->out.len > 0 && c->drip_left > 0) {
        ssize_t n = write(c->fd, buf_data(&c->out), 1);
        if (n == 1) {
            buf_consume(&c->out, 1);
            c->drip_left--;
        } else if (n == -1 && errno != EAGAIN && errno != EINTR) {
            sim_conn_close(c);
            return;
        }
    } else {
        c->drip_left = 0;
    }
    if (c->drip_left > 0)
        ev_timer_start(sim_srv.loop, &c->drip, c->fault.slow_headers, drip_cb, c);
    else
        sim_conn_kick(c);
}

/* ------------------------------------------------------------------ run */

void sim_conn_kick(struct sim_conn *c)
{
    if (!c->in_run && !c->closed)
        sim_conn_run(c);
}

void sim_conn_run(struct sim_conn *c)
{
    c->in_run = true;
    while (!c->closed) {
        if (c->st != SIM_ST_BUSY) {
            int r = try_request(c);
            if (r < 0)
                break;
            if (r > 0)
                continue;
        }
        if (c->close_after_write)
            break;
        if (!c->can_read)
            break;
        if (conn_read(c) <= 0)
            break;
    }
    c->in_run = false;
    if (c->closed)
        return;
    if (c->drip_left > 0 && !ev_timer_active(&c->drip)) {
        ev_timer_start(sim_srv.loop, &c->drip, c->fault.slow_headers, drip_cb, c);
        return;
    }
    sim_conn_flush(c);
}

void sim_conn_defer(struct sim_conn *c)
{
    if (!list_linked(&c->defer_node))
        list_add_tail(&sim_srv.deferred, &c->defer_node);
}

static void conn_io_cb(struct ev_loop *loop, struct ev_io *io, unsigned events)
{
    struct sim_conn *c = io->data;
    UNUSED(loop);
    if (sim_srv.sched.frozen) {
        c->pending_ev |= events;
        sim_conn_defer(c);
        return;
    }
    if (events & EV_READ)
        c->can_read = true;
    if (events & EV_WRITE)
        c->can_write = true;
    sim_conn_run(c);
}

void sim_conn_accept_cb(struct ev_loop *loop, struct ev_io *io, unsigned events)
{
    UNUSED(events);
    UNUSED(io);
    for (int i = 0; i < 64 && !sim_srv.sched.frozen; i++) {
        int fd = net_accept(sim_srv.lfd, NULL);
        if (fd < 0) {
            if (fd != -EAGAIN)
                log_warn("accept: %s", strerror(-fd));
            return;
        }
        net_set_nodelay(fd);
        struct sim_conn *c = xcalloc(1, sizeof(*c));
        c->fd = fd;
        c->io.fd = -1;
        c->can_write = true;
        list_init(&c->defer_node);
        list_init(&c->free_node);
        list_add_head(&sim_srv.all, &c->all_node);
        sim_srv.conns++;
        if (ev_io_start(loop, &c->io, fd, conn_io_cb, c) != 0) {
            sim_conn_close(c);
            continue;
        }
    }
}

/* ---------------------------------------------------------------- close */

void sim_conn_close(struct sim_conn *c)
{
    if (c->closed)
        return;
    c->closed = true;
    sim_slot_release(&sim_srv.sched, &c->g.slot);
    if (c->in_flight) {
        c->in_flight = false;
        sim_srv.in_flight--;
    }
    ev_timer_stop(sim_srv.loop, &c->g.timer);
    ev_timer_stop(sim_srv.loop, &c->drip);
    ev_io_stop(sim_srv.loop, &c->io);
    if (c->rst_after_write) {
        struct linger lg = {1, 0};
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    close(c->fd);
    c->fd = -1;
    list_add_head(&sim_srv.to_free, &c->free_node);
}

void sim_conn_free(struct sim_conn *c)
{
    list_del(&c->all_node);
    if (list_linked(&c->free_node))
        list_del(&c->free_node);
    if (list_linked(&c->defer_node))
        list_del(&c->defer_node);
    buf_free(&c->in);
    buf_free(&c->out);
    buf_free(&c->body);
    free(c);
    sim_srv.conns--;
}
