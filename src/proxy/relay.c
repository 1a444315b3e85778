/* SPDX-License-Identifier: MIT
 * The response (relay.h): the client's head, the body framed and passed as
 * it arrives with backpressure, SSE counting, and the end of the exchange. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "conn.h"
#include "json.h"
#include "log.h"
#include "relay.h"
#include "upstream.h"
#include "util.h"


/* ================================================================ response */

/* Builds the client's response head from the upstream's: same status and
 * end-to-end headers, our own framing and connection handling. */
static void build_client_head(struct conn *c, const struct http1_msg *r)
{
    struct buf *o = &c->out;
    const struct http1_header *cl = NULL;
    buf_reserve(o, 512);
    buf_append_lit(o, "HTTP/1.1 ");
    buf_append_u64(o, (uint64_t)r->status);
    buf_append(o, " ", 1);
    buf_append(o, r->reason.p, r->reason.len);
    buf_append_lit(o, "\r\n");
    for (unsigned i = 0; i < r->nheaders; i++) {
        const struct http1_header *h = &r->headers[i];
        if (slice_case_eq_cstr(h->name, "content-length")) {
            cl = h;
            continue;
        }
        if (http1_is_hop_by_hop(r, h->name))
            continue;
        buf_append(o, h->name.p, h->name.len);
        buf_append(o, ": ", 2);
        buf_append(o, h->value.p, h->value.len);
        buf_append(o, "\r\n", 2);
    }
    switch (c->x->resp_framing) {
    case HTTP1_BODY_NONE:
        if (c->is_head && cl != NULL && r->framing != HTTP1_BODY_CHUNKED) {
            buf_append_lit(o, "Content-Length: ");
            buf_append(o, cl->value.p, cl->value.len);
            buf_append_lit(o, "\r\n");
        } else if (r->status >= 200 && r->status != 204 && r->status != 304 && !c->is_head) {
            buf_append_lit(o, "Content-Length: 0\r\n");
        }
        break;
    case HTTP1_BODY_LENGTH:
        buf_append_lit(o, "Content-Length: ");
        buf_append_u64(o, c->x->resp_left);
        buf_append_lit(o, "\r\n");
        break;
    case HTTP1_BODY_CHUNKED:
        if (c->minor == 1)
            buf_append_lit(o, "Transfer-Encoding: chunked\r\n");
        else {
            c->x->dechunk = true;
            c->close_after = true;
        }
        break;
    case HTTP1_BODY_CLOSE:
        c->close_after = true;
        break;
    }
    if (c->close_after || atomic_load(&conn_srv(c)->draining)) {
        c->close_after = true;
        buf_append_lit(o, "Connection: close\r\n");
    } else if (c->minor == 0) {
        buf_append_lit(o, "Connection: keep-alive\r\n");
    }
    if (c->x->key != NULL) /* what OpenAI's SDKs read, for a key with limits */
        key_ratelimit_headers(&conn_srv(c)->key_use, c->x->key, conn_now(c), o);
    buf_append(o, "\r\n", 2);
}

/* Keeps the last RELAY_TAIL bytes of the response payload. */
static void tail_feed(struct exchange *x, const char *p, size_t n)
{
    if (n == 0)
        return; /* <p> may be NULL then, which memcpy must not see */
    if (n >= RELAY_TAIL) {
        memcpy(x->tail, p + n - RELAY_TAIL, RELAY_TAIL);
        x->tail_len = RELAY_TAIL;
        return;
    }
    if (x->tail_len + n > RELAY_TAIL) {
        size_t drop = x->tail_len + n - RELAY_TAIL;
        memmove(x->tail, x->tail + drop, x->tail_len - drop);
        x->tail_len -= (unsigned)drop;
    }
    memcpy(x->tail + x->tail_len, p, n);
    x->tail_len += (unsigned)n;
}

/* The number after "<key>": in <p>/<n>, or -1. */
static int64_t number_after(const char *p, size_t n, const char *key)
{
    size_t k = strlen(key);
    const char *end = p + n, *hit = NULL;
    for (const char *q = p; (q = memmem(q, (size_t)(end - q), key, k)) != NULL; q += k)
        hit = q;
    if (hit == NULL)
        return -1;
    const char *q = hit + k;
    while (q < end && (*q == ' ' || *q == ':' || *q == '\t'))
        q++;
    int64_t v = -1;
    while (q < end && *q >= '0' && *q <= '9' && v < (int64_t)1 << 40)
        v = (v < 0 ? 0 : v * 10) + (*q++ - '0');
    return v;
}

/* Token usage from the answer's "usage" (the body's, or the last stream
 * chunk's when the client asked stream_options.include_usage), else the
 * stream's events as completion tokens (about one per token; the final
 * [DONE] is not one). */
static void read_usage(struct exchange *x)
{
    const char *t = x->tail;
    size_t n = x->tail_len;
    const char *u = NULL;
    for (const char *q = t; (q = memmem(q, (size_t)(t + n - q), "\"usage\"", 7)) != NULL; q += 7)
        u = q;
    if (u != NULL) {
        size_t left = (size_t)(t + n - u);
        int64_t p = number_after(u, left, "\"prompt_tokens\"");
        int64_t c = number_after(u, left, "\"completion_tokens\"");
        if (p >= 0 || c >= 0) {
            x->prompt_tokens = p > 0 ? (uint64_t)p : 0;
            x->completion_tokens = c > 0 ? (uint64_t)c : 0;
            return;
        }
    }
    if (x->sse_events > 0)
        x->completion_tokens = x->sse_events > 1 ? x->sse_events - 1 : 1;
}

/* The backend has sent its whole answer: its statistics are recorded and
 * its slot goes back now, before the last bytes go to the client, so the
 * client's next request (on any worker) finds the backend free, and a slow
 * reader of the tail does not hold a generation slot. The pooled connection
 * and the access log wait for the client (finish_response). */
static void settle_backend(struct conn *c)
{
    struct exchange *x = c->x;
    struct registry *reg = &conn_srv(c)->reg;
    read_usage(x);
    struct reg_outcome o = {.failed = c->status >= 500, .model = x->model, .counted = true,
                            .sse_events = x->sse_events,
                            .prompt_tokens = x->prompt_tokens,
                            .completion_tokens = x->completion_tokens};
    if (x->t_sent_us != 0 && x->t_first_us >= x->t_sent_us) {
        o.ttft_us = x->t_first_us - x->t_sent_us;
        o.events = x->events;
        if (x->events > 1)
            o.tbt_us = (x->t_last_us - x->t_first_us) / (x->events - 1);
    }
    /* bytes: those relayed so far and the validated rest, still to go */
    struct reg_response rr = {.status = c->status, .bytes = x->bytes_out + x->pass,
                              .dur_us = util_now_us() - x->t0_us, .ttfb_us = x->ttfb_us,
                              .ttft_us = o.ttft_us, .tbt_us = o.tbt_us,
                              .sse_events = x->sse_events};
    reg_record_response(reg, x->be, &rr);
    x->slot_done = true;
    reg_release(reg, x->be, &o, conn_now(c));
}

/* The client has taken the whole answer: log it, give the connection back
 * to the pool and go on with the next request. */
static void finish_response(struct conn *c)
{
    struct server *s = conn_srv(c);
    struct exchange *x = c->x;
    atomic_fetch_add(&s->stats.responses[c->status / 100], 1);
    worker_log_access(c, x->be->spec.name);

    struct upconn *u = x->up;
    x->up = NULL;
    u->c = NULL;
    up_release(u, x->up_reusable && u->in.len == 0 && !atomic_load(&s->draining));
    backend_unref(x->be);
    x->be = NULL;
    conn_next_request(c);
}

/* Counts SSE events: an empty line ("\n" or "\r\n" right after a line's
 * end) ends one. The state (at a line's start, a CR seen there) carries
 * across reads, so the count does not depend on where the reads cut. */
void relay_count_sse(struct exchange *x, const char *p, size_t n)
{
    const char *end = p + n;
    while (p < end) {
        if (x->sse_nl) { /* at the start of a line */
            if (*p == '\r' && !x->sse_cr) {
                x->sse_cr = true;
                p++;
                continue;
            }
            if (*p == '\n') { /* an empty line */
                x->sse_events++;
                x->sse_cr = false;
                p++;
                continue;
            }
            x->sse_nl = false;
            x->sse_cr = false;
        }
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL)
            return;
        x->sse_nl = true;
        p = nl + 1;
    }
}

/* Frames what the upstream buffer holds: how many bytes may pass to the
 * client, and whether the message is complete. Returns false on a framing
 * error (the upstream broke the protocol mid-response). */
static bool frame_upstream(struct conn *c)
{
    struct buf *in = &c->x->up->in;
    if (c->x->pass > 0 || c->x->resp_done)
        return true;
    switch (c->x->resp_framing) {
    case HTTP1_BODY_NONE:
        c->x->resp_done = true;
        break;
    case HTTP1_BODY_LENGTH:
        c->x->pass = (size_t)MIN((uint64_t)in->len, c->x->resp_left);
        c->x->resp_left -= c->x->pass;
        c->x->resp_done = c->x->resp_left == 0;
        if (c->x->sse)
            relay_count_sse(c->x, buf_data(in), c->x->pass);
        tail_feed(c->x, buf_data(in), c->x->pass);
        break;
    case HTTP1_BODY_CLOSE:
        c->x->pass = in->len;
        if (c->x->sse)
            relay_count_sse(c->x, buf_data(in), c->x->pass);
        tail_feed(c->x, buf_data(in), c->x->pass);
        break;
    case HTTP1_BODY_CHUNKED: {
        size_t off = 0;
        while (off < in->len) {
            size_t used = 0;
            struct slice d;
            enum http1_chunk_rc rc =
                http1_chunked_decode(&c->x->rck, buf_data(in) + off, in->len - off, &used, &d);
            if (rc == HTTP1_CHUNK_ERROR)
                return false;
            if (rc == HTTP1_CHUNK_DATA && c->x->sse)
                relay_count_sse(c->x, d.p, d.len);
            if (rc == HTTP1_CHUNK_DATA)
                tail_feed(c->x, d.p, d.len);
            if (c->x->dechunk && rc == HTTP1_CHUNK_DATA)
                buf_append(&c->out, d.p, d.len);
            off += used;
            if (rc == HTTP1_CHUNK_DONE) {
                c->x->resp_done = true;
                break;
            }
        }
        if (c->x->dechunk) {
            c->x->bytes_out += off;
            buf_consume(in, off);
        } else {
            c->x->pass = off;
        }
        break;
    }
    }
    return true;
}

/* Notes that response body bytes arrived: live speed for the policy. */
static void mark_body(struct conn *c)
{
    int64_t t = util_now_us();
    if (c->x->events++ == 0)
        c->x->t_first_us = t;
    c->x->t_last_us = t;
}

/* Learns which backend stored an upload, from the id in its JSON answer
 * (when the whole small body came with the head). */
static void learn_upload(struct conn *c)
{
    struct buf *in = &c->x->up->in;
    struct slice v;
    char id[64];
    if (c->status != 200 || c->x->resp_framing != HTTP1_BODY_LENGTH || in->len < c->x->resp_left)
        return;
    if (json_top_string(buf_data(in), (size_t)c->x->resp_left, "id", &v) == 1 &&
        json_decode_slice(buf_data(in), v, id, sizeof(id)) > 0)
        reg_file_put(&conn_srv(c)->reg, id, c->x->be->spec.name);
}

/* Moves response bytes from the upstream to the client, reading the
 * upstream only when the client has taken everything before. */
void relay_run(struct conn *c)
{
    struct upconn *u = c->x->up;
    for (int rounds = 0; rounds < 64 && !c->closed && c->x->up == u; rounds++) {
        if (!frame_upstream(c)) {
            log_info("backend %s: invalid framing mid-response", c->x->be->spec.name);
            atomic_fetch_add(&c->x->be->stats.failures, 1);
            conn_close(c); /* truncated, never a fake clean end */
            return;
        }
        if (c->x->resp_done && !c->x->slot_done)
            settle_backend(c);
        conn_flush(c);
        if (c->closed)
            return;
        if (c->x->pass > 0 || c->out.len > 0) {
            /* The client is slow: wait for its EV_WRITE, read nothing more
             * upstream. Its send deadline runs, not the backend's idle one. */
            ev_timer_stop(c->w->loop, &u->timer);
            return;
        }
        if (c->x->resp_done) {
            if (u->in.len > 0 || (u->eof && c->x->resp_framing != HTTP1_BODY_CLOSE))
                c->x->up_reusable = false; /* extra bytes after the message: never reuse */
            finish_response(c);
            return;
        }
        if (u->eof) {
            if (c->x->resp_framing == HTTP1_BODY_CLOSE && !u->reset) {
                c->x->resp_done = true;
                c->x->up_reusable = false;
                continue;
            }
            log_info("backend %s: closed mid-response", c->x->be->spec.name);
            atomic_fetch_add(&c->x->be->stats.failures, 1);
            conn_close(c);
            return;
        }
        if (!u->rd_ready) {
            /* Waiting for the next token: hold no buffer memory meanwhile. */
            if (u->in.len == 0)
                buf_release(&u->in);
            up_arm(u, conn_cfg(c)->stream_idle_timeout);
            return;
        }
        char *p = buf_reserve(&u->in, BUF_CHUNK / 4);
        size_t room = buf_room(&u->in);
        ssize_t r = net_read(u->io.fd, p, room, &u->rd_ready, u->rdhup);
        if (r > 0) {
            buf_commit(&u->in, (size_t)r);
            mark_body(c);
            continue;
        }
        if (r == -EAGAIN)
            continue;
        u->eof = true;
        u->reset = r < 0; /* an error (a reset) is the end, but not a clean one */
    }
    if (!c->closed && c->x->up == u && c->state == CS_RELAY)
        conn_resume_later(c); /* fairness cap reached with work left */
}

void relay_start(struct conn *c, const struct http1_msg *r, int hl)
{
    struct upconn *u = c->x->up;
    int st = r->status;
    c->status = st;
    c->x->ttfb_us = util_now_us() - c->x->t0_us;
    c->x->resp_framing = r->framing;
    c->x->resp_left = r->content_length;
    /* A backend may answer before it has read the whole request (an early
     * 413); what we did not send would prefix the next request on this
     * connection, so such a connection is never reused. */
    c->x->up_reusable = r->keep_alive && !r->cl_and_te && r->framing != HTTP1_BODY_CLOSE &&
                     u->sent == c->x->uphead.len + c->x->clhdr_len + c->x->body.len;
    const struct http1_header *ct = http1_find(r, "content-type");
    c->x->sse = ct != NULL && ct->value.len >= 17 && memcmp(ct->value.p, "text/event-stream", 17) == 0;
    build_client_head(c, r);
    buf_consume(&u->in, (size_t)hl);
    ev_timer_stop(c->w->loop, &u->timer);
    if (u->in.len > 0 || c->x->resp_framing == HTTP1_BODY_NONE)
        mark_body(c);
    if (c->x->is_upload)
        learn_upload(c);
    c->state = CS_RELAY;
    if (u->sent == c->x->uphead.len + c->x->clhdr_len + c->x->body.len) {
        buf_free(&c->x->uphead);
        exchange_body_free(c->x);
        c->x->clhdr_len = 0;
        u->sent = 0;
    }
    relay_run(c);
}
