/* SPDX-License-Identifier: MIT
 * libFuzzer target: request heads. Invariants checked on every input:
 * the same verdict whatever the read split, consumed <= len, an error is one
 * of the statuses http1.h lists, an accepted request never carries both CL
 * and TE, a chunked request never has a content length, and a round trip:
 * an accepted head re-serialized (method, target, headers) parses back to
 * the same fields (http-garden's oracle: what we accept, we would forward
 * unchanged in meaning); http1_is_hop_by_hop() answers as a walk of the
 * Connection lists would, within the option bound. Format of the input: see
 * fuzz_http1.h. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_http1.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int parse_req(const char *buf, size_t len, struct http1_msg *m,
                     const struct http1_limits *lim, bool head)
{
    (void)head;
    return http1_parse_request(buf, len, m, lim);
}

/* tchar of RFC 9110 §5.6.2, written out independently of http1.c. */
static bool tchar(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static bool valid_status(int st)
{
    return st == 400 || st == 413 || st == 414 || st == 417 || st == 431 || st == 501 ||
           st == 505;
}

/* Checks the framing rules of an accepted request head. */
static void check_accepted(const struct http1_msg *m, const struct http1_limits *lim)
{
    const struct http1_header *cl = http1_find(m, "content-length");
    const struct http1_header *te = http1_find(m, "transfer-encoding");
    FUZZ_CHECK(!(cl && te));
    FUZZ_CHECK(m->framing != HTTP1_BODY_CLOSE);
    FUZZ_CHECK(m->minor == 0 || m->minor == 1);
    FUZZ_CHECK(!m->cl_and_te);
    if (m->framing == HTTP1_BODY_CHUNKED) {
        FUZZ_CHECK(te != NULL && cl == NULL && m->content_length == 0 && m->minor == 1);
        FUZZ_CHECK(http1_list_has(te->value, "chunked"));
    }
    if (te != NULL)
        FUZZ_CHECK(m->framing == HTTP1_BODY_CHUNKED);
    if (m->framing == HTTP1_BODY_LENGTH)
        FUZZ_CHECK(cl != NULL && m->content_length > 0 &&
                   (lim->max_body == 0 || m->content_length <= lim->max_body));
    if (cl == NULL && te == NULL)
        FUZZ_CHECK(m->framing == HTTP1_BODY_NONE);
    if (m->minor == 1)
        FUZZ_CHECK(http1_find(m, "host") != NULL);
    FUZZ_CHECK(m->method.len > 0 && m->target.len > 0);
    fuzz_check_conn(m);

    /* Spec oracle, independent of how the parser is written: what it
     * accepted must be well-formed by the grammar of RFC 9110/9112. */
    if (te != NULL) /* only "chunked" alone: no mangled spelling, no list */
        FUZZ_CHECK(slice_case_eq_cstr(te->value, "chunked"));
    if (cl != NULL) { /* 1*DIGIT, no leading zero, equal to the parsed value */
        uint64_t v = 0;
        FUZZ_CHECK(cl->value.len > 0 && (cl->value.len == 1 || cl->value.p[0] != '0'));
        for (size_t i = 0; i < cl->value.len; i++) {
            FUZZ_CHECK(cl->value.p[i] >= '0' && cl->value.p[i] <= '9');
            v = v * 10 + (uint64_t)(cl->value.p[i] - '0');
        }
        FUZZ_CHECK(v == m->content_length);
    }
    for (size_t i = 0; i < m->method.len; i++)
        FUZZ_CHECK(tchar(m->method.p[i]));
    for (size_t i = 0; i < m->target.len; i++)
        FUZZ_CHECK(m->target.p[i] > 0x20 && m->target.p[i] < 0x7f && m->target.p[i] != '#');
    for (unsigned i = 0; i < m->nheaders; i++) {
        struct slice n = m->headers[i].name, v = m->headers[i].value;
        for (size_t k = 0; k < n.len; k++)
            FUZZ_CHECK(tchar(n.p[k]));
        for (size_t k = 0; k < v.len; k++) {
            unsigned char c = (unsigned char)v.p[k];
            FUZZ_CHECK(c == '\t' || (c >= 0x20 && c != 0x7f));
        }
        if (v.len > 0)
            FUZZ_CHECK(v.p[0] != ' ' && v.p[0] != '\t' && v.p[v.len - 1] != ' ' &&
                       v.p[v.len - 1] != '\t');
    }
}

/* Serializes an accepted head the way a proxy would forward it. */
static size_t serialize(const struct http1_msg *m, char *out, size_t cap)
{
    size_t n = (size_t)snprintf(out, cap, "%.*s %.*s HTTP/1.%d\r\n", (int)m->method.len,
                                m->method.p, (int)m->target.len, m->target.p, m->minor);
    for (unsigned i = 0; i < m->nheaders && n < cap; i++)
        n += (size_t)snprintf(out + n, cap - n, "%.*s: %.*s\r\n", (int)m->headers[i].name.len,
                              m->headers[i].name.p, (int)m->headers[i].value.len,
                              m->headers[i].value.p);
    if (n < cap)
        n += (size_t)snprintf(out + n, cap - n, "\r\n");
    return n;
}

static void round_trip(const char *in, size_t len, const struct http1_limits *lim)
{
    static struct http1_header h1[HTTP1_MAX_HEADERS], h2[HTTP1_MAX_HEADERS];
    struct http1_msg a = {.headers = h1}, b = {.headers = h2};
    int rc = http1_parse_request(in, len, &a, lim);
    if (rc <= 0)
        return;
    check_accepted(&a, lim);
    /* OWS is trimmed and ": " added, so the size may change: only the
     * size limits are lifted for the second parse. */
    struct http1_limits big = *lim;
    big.max_line = big.max_head = 1u << 20;
    size_t cap = (size_t)rc * 2 + 64;
    char *out = malloc(cap);
    FUZZ_CHECK(out != NULL);
    size_t n = serialize(&a, out, cap);
    FUZZ_CHECK(n < cap);
    int rc2 = http1_parse_request(out, n, &b, &big);
    FUZZ_CHECK(rc2 > 0 && (size_t)rc2 == n);
    FUZZ_CHECK(slice_eq(a.method, b.method) && slice_eq(a.target, b.target));
    FUZZ_CHECK(a.minor == b.minor && a.nheaders == b.nheaders);
    for (unsigned i = 0; i < a.nheaders; i++)
        FUZZ_CHECK(slice_eq(a.headers[i].name, b.headers[i].name) &&
                   slice_eq(a.headers[i].value, b.headers[i].value));
    FUZZ_CHECK(a.framing == b.framing && a.content_length == b.content_length &&
               a.keep_alive == b.keep_alive && a.expect_continue == b.expect_continue);
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

    struct fuzz_summary whole, split;
    fuzz_feed(parse_req, in, len, NULL, 0, lim, false, &whole);
    if (whole.rc == -1)
        FUZZ_CHECK(valid_status(whole.error));

    size_t *cuts = malloc((len + 16) * sizeof(*cuts));
    FUZZ_CHECK(cuts != NULL);
    size_t ncuts = fuzz_cuts(ctl, len, cuts);
    fuzz_feed(parse_req, in, len, cuts, ncuts, lim, false, &split);
    free(cuts);
    FUZZ_CHECK(fuzz_same(&whole, &split));

    if (whole.rc > 0)
        round_trip(in, len, lim);
    return 0;
}
