/* SPDX-License-Identifier: MIT
 * Unit tests of reply.c: the bytes of response heads, errors and SSE events
 * as hyper writes them (header order, lowercase names, connection and
 * length headers, reason phrases, chunk framing). The date header is cut
 * off before comparing. */
#include <string.h>

#include "../tap.h"
#include "../../src/sim/server.h"

static struct sim_config cfg;
static struct sim_conn c;

static void fresh(int minor, bool keep_alive)
{
    buf_free(&c.out);
    memset(&c, 0, sizeof(c));
    c.minor = minor;
    c.keep_alive = keep_alive;
    sim_fault_init(&c.fault);
}

/* c.out with the value of the date header replaced by "D". */
static bool out_is(const char *want)
{
    static char got[2048];
    size_t n = 0;
    const char *p = c.out.area + c.out.off, *end = p + c.out.len;
    while (p < end && n < sizeof(got) - 2) {
        if ((size_t)(end - p) >= 6 && memcmp(p, "date: ", 6) == 0) {
            memcpy(got + n, "date: D", 7);
            n += 7;
            p = memchr(p, '\r', (size_t)(end - p));
            if (p == NULL)
                break;
            continue;
        }
        got[n++] = *p++;
    }
    got[n] = '\0';
    if (strcmp(got, want) == 0)
        return true;
    note("  got:  %s", got);
    return false;
}

int main(void)
{
    sim_config_init(&cfg);
    strcpy(cfg.id, "s1");
    sim_srv.cfg = &cfg;

    fresh(1, true);
    sim_reply_text(&c, 400, "bad", 3);
    ok(out_is("HTTP/1.1 400 Bad Request\r\naccess-control-allow-origin: *\r\n"
              "access-control-allow-methods: *\r\naccess-control-allow-headers: *\r\n"
              "x-sim-id: s1\r\ncontent-length: 3\r\ndate: D\r\n\r\nbad"),
       "plain-text error: CORS, no content-type, then length and date");

    fresh(1, false);
    sim_reply_fixed(&c, 200, 0, "application/json", "{}", 2);
    ok(out_is("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-sim-id: s1\r\n"
              "connection: close\r\ncontent-length: 2\r\ndate: D\r\n\r\n{}"),
       "HTTP/1.1 without keep-alive says connection: close");

    fresh(0, true);
    c.head_only = true;
    sim_reply_fixed(&c, 404, 0, "text/html", "xx", 2);
    ok(out_is("HTTP/1.0 404 Not Found\r\ncontent-type: text/html\r\nx-sim-id: s1\r\n"
              "connection: keep-alive\r\ncontent-length: 2\r\ndate: D\r\n\r\n"),
       "HTTP/1.0 keep-alive; HEAD gets no body");

    fresh(1, true);
    strcpy(c.g.id, "a\nb");
    c.g.id_len = 3;
    sim_reply_head(&c, 200, SIM_H_CORS | SIM_H_SSE | SIM_H_USER, "text/event-stream", 0);
    ok(out_is("HTTP/1.1 200 OK\r\naccess-control-allow-origin: *\r\n"
              "access-control-allow-methods: *\r\naccess-control-allow-headers: *\r\n"
              "content-type: text/event-stream\r\ncache-control: no-cache\r\n"
              "connection: keep-alive\r\nuser: a?b\r\nrequires-tool-call: false\r\n"
              "x-sim-id: s1\r\ntransfer-encoding: chunked\r\ndate: D\r\n\r\n"),
       "stream head in handler order, control characters of user masked");
    is_int(c.drip_left, 0, "no drip without the slow-headers fault");

    fresh(1, true);
    c.fault.slow_headers = 5;
    sim_reply_fixed(&c, 200, 0, NULL, "body", 4);
    is_int(c.drip_left, c.out.len - 4, "slow-headers drips exactly the head");

    fresh(1, true);
    c.chunked_out = true;
    sim_reply_event(&c, "data: x\n\n", 9);
    ok(out_is("9\r\ndata: x\n\n\r\n") && c.events == 1, "one SSE event, one chunk");
    fresh(0, false);
    sim_reply_event(&c, "data: x\n\n", 9);
    ok(out_is("data: x\n\n"), "close-delimited: raw event");

    fresh(1, true);
    sim_reply_parse_error(&c, 431);
    ok(out_is("HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\n"
              "content-length: 0\r\nx-sim-id: s1\r\ndate: D\r\n\r\n") &&
           c.close_after_write && c.st == SIM_ST_BUSY,
       "refused head: status, empty body, close");

    ok(strcmp(sim_reply_reason(413), "Payload Too Large") == 0, "hyper's 413 phrase");
    ok(strcmp(sim_reply_reason(418), "<unknown status code>") == 0, "unknown status phrase");

    fresh(1, true);
    sim_reply_download(&c, 200, NULL, "attachment; filename=\"f\"", "abc", 3);
    ok(out_is("HTTP/1.1 200 OK\r\naccess-control-allow-origin: *\r\n"
              "access-control-allow-methods: *\r\naccess-control-allow-headers: *\r\n"
              "content-type: application/octet-stream\r\n"
              "content-disposition: attachment; filename=\"f\"\r\nx-sim-id: s1\r\n"
              "content-length: 3\r\ndate: D\r\n\r\nabc"),
       "download head");
    buf_free(&c.out);
    buf_cache_drain();
    return done_testing();
}
