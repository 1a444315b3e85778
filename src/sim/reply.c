/* SPDX-License-Identifier: MIT
 * The bytes of a response, as llama-api-server 0.28.1 (hyper 0.14) writes
 * them: lowercase header names in the order the handler adds them, then
 * content-length or transfer-encoding, then date; hyper's reason phrases;
 * plain-text errors with the CORS headers and no content-type; SSE events
 * one per HTTP chunk. Everything appends to the connection's <out>. */

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "server.h"
#include "util.h"

#define OUT_LIT(b, s) buf_append((b), (s), sizeof(s) - 1)

/* hyper's reason phrases (the http crate's canonical ones, "Payload Too
 * Large" for 413, "<unknown status code>" otherwise), not llamalb's RFC 9110
 * ones: the simulator copies the real server's bytes. */
const char *sim_reply_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 417: return "Expectation Failed";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "<unknown status code>";
    }
}

/* The date header's value, formatted once a second. */
static const char *date_now(void)
{
    time_t now = time(NULL);
    if (now != sim_srv.date_sec) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(sim_srv.date, sizeof(sim_srv.date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        sim_srv.date_sec = now;
    }
    return sim_srv.date;
}

static void put_uint(struct buf *b, uint64_t v)
{
    char tmp[24];
    size_t i = sizeof(tmp);
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    buf_append(b, tmp + i, sizeof(tmp) - i);
}

void sim_reply_status(struct sim_conn *c, int status)
{
    struct buf *o = &c->out;
    if (c->minor == 0)
        OUT_LIT(o, "HTTP/1.0 ");
    else
        OUT_LIT(o, "HTTP/1.1 ");
    put_uint(o, (uint64_t)status);
    OUT_LIT(o, " ");
    buf_append_str(o, sim_reply_reason(status));
    OUT_LIT(o, "\r\n");
}

/* user: <id>, with control characters masked: a header value cannot carry
 * them; hyper would refuse them, the simulator masks them. */
static void put_user(struct buf *o, const struct sim_gen *g)
{
    OUT_LIT(o, "user: ");
    char *d = buf_reserve(o, g->id_len);
    for (size_t i = 0; i < g->id_len; i++) {
        unsigned char ch = (unsigned char)g->id[i];
        d[i] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
    }
    buf_commit(o, g->id_len);
    OUT_LIT(o, "\r\nrequires-tool-call: false\r\n");
}

void sim_reply_head(struct sim_conn *c, int status, unsigned flags, const char *ctype,
                    size_t clen)
{
    struct buf *o = &c->out;
    size_t before = o->len;
    sim_reply_status(c, status);
    if (flags & SIM_H_CORS)
        OUT_LIT(o, "access-control-allow-origin: *\r\naccess-control-allow-methods: *\r\n"
                   "access-control-allow-headers: *\r\n");
    if (ctype != NULL) {
        OUT_LIT(o, "content-type: ");
        buf_append_str(o, ctype);
        OUT_LIT(o, "\r\n");
    }
    if (flags & SIM_H_SSE)
        OUT_LIT(o, "cache-control: no-cache\r\nconnection: keep-alive\r\n");
    if (flags & SIM_H_USER)
        put_user(o, &c->g);
    OUT_LIT(o, "x-sim-id: ");
    buf_append_str(o, sim_srv.cfg->id);
    OUT_LIT(o, "\r\n");
    if (flags & SIM_H_SSE) {
        if (c->minor == 1)
            OUT_LIT(o, "transfer-encoding: chunked\r\n");
    } else {
        if (!c->keep_alive && c->minor == 1)
            OUT_LIT(o, "connection: close\r\n");
        else if (c->keep_alive && c->minor == 0)
            OUT_LIT(o, "connection: keep-alive\r\n");
        OUT_LIT(o, "content-length: ");
        put_uint(o, clen);
        OUT_LIT(o, "\r\n");
    }
    OUT_LIT(o, "date: ");
    buf_append_str(o, date_now());
    OUT_LIT(o, "\r\n\r\n");
    /* The slow-headers fault drips everything up to this blank line. */
    if (c->fault.slow_headers > 0 && c->drip_left == 0 && o->len > before)
        c->drip_left = o->len;
}

void sim_reply_fixed(struct sim_conn *c, int status, unsigned flags, const char *ctype,
                     const char *body, size_t len)
{
    sim_reply_head(c, status, flags, ctype, len);
    if (!c->head_only)
        buf_append(&c->out, body, len);
}

void sim_reply_download(struct sim_conn *c, int status, const char *ctype,
                        const char *disposition, const char *body, size_t len)
{
    struct buf *o = &c->out;
    sim_reply_status(c, status);
    OUT_LIT(o, "access-control-allow-origin: *\r\naccess-control-allow-methods: *\r\n"
               "access-control-allow-headers: *\r\ncontent-type: ");
    buf_append_str(o, ctype ? ctype : "application/octet-stream");
    OUT_LIT(o, "\r\ncontent-disposition: ");
    buf_append_str(o, disposition);
    OUT_LIT(o, "\r\nx-sim-id: ");
    buf_append_str(o, sim_srv.cfg->id);
    OUT_LIT(o, "\r\ncontent-length: ");
    put_uint(o, len);
    OUT_LIT(o, "\r\ndate: ");
    buf_append_str(o, date_now());
    OUT_LIT(o, "\r\n\r\n");
    if (!c->head_only)
        buf_append(o, body, len);
}

void sim_reply_text(struct sim_conn *c, int status, const char *text, size_t len)
{
    sim_reply_fixed(c, status, SIM_H_CORS, NULL, text, len);
}

void sim_reply_textf(struct sim_conn *c, int status, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    sim_reply_text(c, status, tmp, (size_t)MIN(n, (int)sizeof(tmp) - 1));
}

void sim_reply_parse_error(struct sim_conn *c, int status)
{
    c->minor = 1;
    c->keep_alive = false;
    c->head_only = false;
    sim_reply_status(c, status);
    OUT_LIT(&c->out, "connection: close\r\ncontent-length: 0\r\nx-sim-id: ");
    buf_append_str(&c->out, sim_srv.cfg->id);
    OUT_LIT(&c->out, "\r\ndate: ");
    buf_append_str(&c->out, date_now());
    OUT_LIT(&c->out, "\r\n\r\n");
    c->close_after_write = true;
    c->st = SIM_ST_BUSY;
}

void sim_reply_event(struct sim_conn *c, const char *ev, size_t len)
{
    struct buf *o = &c->out;
    if (c->chunked_out) {
        char hex[20];
        int n = snprintf(hex, sizeof(hex), "%zx\r\n", len);
        buf_append(o, hex, (size_t)n);
    }
    buf_append(o, ev, len);
    if (c->chunked_out)
        OUT_LIT(o, "\r\n");
    c->events++;
}
