/* SPDX-License-Identifier: MIT
 * libFuzzer target: response heads. Invariants: the same verdict whatever
 * the read split, consumed <= len, errors are always 502, framing agrees with
 * the headers (TE -> chunked unless the status or HEAD forbids a body, CL+TE
 * -> cl_and_te and no reuse, close-delimited -> no reuse), hop-by-hop
 * answers as a walk of the Connection lists would, and a round trip of the
 * accepted status line and headers parses to the same fields.
 * Format of the input: see fuzz_http1.h (bit 2 of the first byte: HEAD). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_http1.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int parse_resp(const char *buf, size_t len, struct http1_msg *m,
                      const struct http1_limits *lim, bool head)
{
    return http1_parse_response(buf, len, m, lim, head);
}

static void check_accepted(const struct http1_msg *m, bool head)
{
    const struct http1_header *cl = http1_find(m, "content-length");
    const struct http1_header *te = http1_find(m, "transfer-encoding");
    bool bodyless = head || m->status < 200 || m->status == 204 || m->status == 304;
    FUZZ_CHECK(m->status >= 100 && m->status <= 599);
    FUZZ_CHECK(m->minor == 0 || m->minor == 1);
    FUZZ_CHECK(m->cl_and_te == (cl != NULL && te != NULL));
    if (m->cl_and_te)
        FUZZ_CHECK(!m->keep_alive);
    if (bodyless)
        FUZZ_CHECK(m->framing == HTTP1_BODY_NONE && m->content_length == 0);
    else if (te != NULL)
        FUZZ_CHECK(m->framing == HTTP1_BODY_CHUNKED || m->framing == HTTP1_BODY_CLOSE);
    else if (cl != NULL)
        FUZZ_CHECK(m->framing == HTTP1_BODY_LENGTH || m->framing == HTTP1_BODY_NONE);
    else
        FUZZ_CHECK(m->framing == HTTP1_BODY_CLOSE);
    if (m->framing == HTTP1_BODY_CLOSE)
        FUZZ_CHECK(!m->keep_alive);
    if (m->framing == HTTP1_BODY_CHUNKED)
        FUZZ_CHECK(m->content_length == 0 || m->cl_and_te);
    if (m->framing == HTTP1_BODY_LENGTH)
        FUZZ_CHECK(m->content_length > 0);
    fuzz_check_conn(m);
}

static void round_trip(const char *in, size_t len, const struct http1_limits *lim, bool head)
{
    static struct http1_header h1[HTTP1_MAX_HEADERS], h2[HTTP1_MAX_HEADERS];
    struct http1_msg a = {.headers = h1}, b = {.headers = h2};
    int rc = http1_parse_response(in, len, &a, lim, head);
    if (rc <= 0)
        return;
    check_accepted(&a, head);
    struct http1_limits big = *lim;
    big.max_line = big.max_head = 1u << 20;
    size_t cap = (size_t)rc * 2 + 64, n;
    char *out = malloc(cap);
    FUZZ_CHECK(out != NULL);
    n = (size_t)snprintf(out, cap, "HTTP/1.%d %03d %.*s\r\n", a.minor, a.status,
                         (int)a.reason.len, a.reason.p);
    for (unsigned i = 0; i < a.nheaders && n < cap; i++)
        n += (size_t)snprintf(out + n, cap - n, "%.*s: %.*s\r\n", (int)a.headers[i].name.len,
                              a.headers[i].name.p, (int)a.headers[i].value.len,
                              a.headers[i].value.p);
    if (n < cap)
        n += (size_t)snprintf(out + n, cap - n, "\r\n");
    FUZZ_CHECK(n < cap);
    int rc2 = http1_parse_response(out, n, &b, &big, head);
    FUZZ_CHECK(rc2 > 0 && (size_t)rc2 == n);
    FUZZ_CHECK(a.status == b.status && a.minor == b.minor && slice_eq(a.reason, b.reason));
    FUZZ_CHECK(a.nheaders == b.nheaders);
    for (unsigned i = 0; i < a.nheaders; i++)
        FUZZ_CHECK(slice_eq(a.headers[i].name, b.headers[i].name) &&
                   slice_eq(a.headers[i].value, b.headers[i].value));
    FUZZ_CHECK(a.framing == b.framing && a.content_length == b.content_length &&
               a.keep_alive == b.keep_alive && a.cl_and_te == b.cl_and_te);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    const uint8_t *ctl = data;
    const char *in = (const char *)data + 2;
    size_t len = size - 2;
    const struct http1_limits *lim = (ctl[0] & 2) ? &fuzz_small_limits : &http1_default_limits;
    bool head = (ctl[0] & 4) != 0;

    struct fuzz_summary whole, split;
    fuzz_feed(parse_resp, in, len, NULL, 0, lim, head, &whole);
    if (whole.rc == -1)
        FUZZ_CHECK(whole.error == 502);

    size_t *cuts = malloc((len + 16) * sizeof(*cuts));
    FUZZ_CHECK(cuts != NULL);
    size_t ncuts = fuzz_cuts(ctl, len, cuts);
    fuzz_feed(parse_resp, in, len, cuts, ncuts, lim, head, &split);
    free(cuts);
    FUZZ_CHECK(fuzz_same(&whole, &split));

    if (whole.rc > 0)
        round_trip(in, len, lim, head);
    return 0;
}
