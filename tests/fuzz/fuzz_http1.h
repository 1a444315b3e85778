/* SPDX-License-Identifier: MIT
 * Helpers shared by the HTTP/1.1 head fuzzers: a summary of one parse result
 * (taken right after the parse, since the slices point into a buffer that is
 * freed next), its comparison, and the split feeding.
 *
 * The first two input bytes are control bytes, as in
 * nodejs/llhttp:test/fuzzers/fuzz_parser.c: bit 0 of the first picks byte by
 * byte (inputs up to 1 KiB) or random splits, bit 1 small limits, bit 2 (for
 * responses) a HEAD request; both bytes seed the split points. The rest is
 * the message. Every prefix is copied into its own exact-size heap block, so
 * AddressSanitizer sees any read past the bytes the parser was given. */
#ifndef LLAMALB_FUZZ_HTTP1_H
#define LLAMALB_FUZZ_HTTP1_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http1.h"
#include "util.h"

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fuzz_fail(__FILE__, __LINE__, #cond);                                                  \
    } while (0)

static inline void fuzz_fail(const char *file, int line, const char *what)
{
    util_bug(file, line, what); /* prints and aborts */
}

struct fuzz_summary {
    int rc, error;
    int framing, minor, status;
    uint64_t content_length;
    bool keep_alive, expect_continue, cl_and_te;
    unsigned nheaders, nconn_opts;
    uint64_t hash; /* over method, target, reason, header names and values */
};

static inline uint64_t fuzz_fnv(uint64_t h, struct slice s)
{
    for (size_t i = 0; i < s.len; i++)
        h = (h ^ (unsigned char)s.p[i]) * 0x100000001b3ULL;
    return (h ^ 0x1ff) * 0x100000001b3ULL;
}

static inline void fuzz_summarise(struct fuzz_summary *s, int rc, const struct http1_msg *m)
{
    memset(s, 0, sizeof(*s));
    s->rc = rc;
    if (rc == -1)
        s->error = m->error;
    if (rc <= 0)
        return;
    s->framing = (int)m->framing;
    s->minor = m->minor;
    s->status = m->status;
    s->content_length = m->content_length;
    s->keep_alive = m->keep_alive;
    s->expect_continue = m->expect_continue;
    s->cl_and_te = m->cl_and_te;
    s->nheaders = m->nheaders;
    s->nconn_opts = m->nconn_opts;
    uint64_t h = 0xcbf29ce484222325ULL;
    h = fuzz_fnv(h, m->method);
    h = fuzz_fnv(h, m->target);
    h = fuzz_fnv(h, m->reason);
    for (unsigned i = 0; i < m->nheaders; i++) {
        h = fuzz_fnv(h, m->headers[i].name);
        h = fuzz_fnv(h, m->headers[i].value);
    }
    s->hash = h;
}

static inline bool fuzz_same(const struct fuzz_summary *a, const struct fuzz_summary *b)
{
    return memcmp(a, b, sizeof(*a)) == 0;
}

/* Every slice of an accepted head must lie inside the <len> bytes at <buf>. */
static inline bool fuzz_inside(struct slice s, const char *buf, size_t len)
{
    return s.len == 0 || (s.p >= buf && s.p + s.len <= buf + len);
}

static inline void fuzz_check_slices(const struct http1_msg *m, const char *buf, size_t len)
{
    FUZZ_CHECK(fuzz_inside(m->method, buf, len));
    FUZZ_CHECK(fuzz_inside(m->target, buf, len));
    FUZZ_CHECK(fuzz_inside(m->reason, buf, len));
    for (unsigned i = 0; i < m->nheaders; i++) {
        FUZZ_CHECK(fuzz_inside(m->headers[i].name, buf, len));
        FUZZ_CHECK(fuzz_inside(m->headers[i].value, buf, len));
        FUZZ_CHECK(m->headers[i].name.len > 0);
    }
    FUZZ_CHECK(m->nconn_opts <= HTTP1_MAX_CONN_OPTS);
    for (unsigned i = 0; i < m->nconn_opts; i++)
        FUZZ_CHECK(m->conn_opts[i].len > 0 && fuzz_inside(m->conn_opts[i], buf, len));
}

/* The definition of hop-by-hop before the Connection option set, written
 * out independently: the fixed names, then every element of every
 * Connection list, split on commas, OWS trimmed, compared case-insensitively. */
static inline bool fuzz_ref_hop(const struct http1_msg *m, struct slice name)
{
    static const char *const hop[] = {"connection", "keep-alive", "proxy-connection",
                                      "proxy-authenticate", "proxy-authorization", "te",
                                      "trailer", "transfer-encoding", "upgrade"};
    for (size_t i = 0; i < sizeof(hop) / sizeof(hop[0]); i++)
        if (slice_case_eq_cstr(name, hop[i]))
            return true;
    for (unsigned i = 0; i < m->nheaders; i++) {
        if (!slice_case_eq_cstr(m->headers[i].name, "connection"))
            continue;
        struct slice v = m->headers[i].value;
        for (size_t a = 0; a <= v.len;) {
            const char *c = v.len > a ? memchr(v.p + a, ',', v.len - a) : NULL;
            size_t b = c ? (size_t)(c - v.p) : v.len;
            if (slice_case_eq(slice_trim(slice_make(v.p + a, b - a)), name))
                return true;
            a = b + 1;
        }
    }
    return false;
}

/* An accepted head: http1_is_hop_by_hop() answers as the old walk for every
 * header name and every collected option, each option is distinct, and
 * no more than HTTP1_MAX_CONN_OPTS non-empty token elements were listed. */
static inline void fuzz_check_conn(const struct http1_msg *m)
{
    unsigned listed = 0;
    for (unsigned i = 0; i < m->nheaders; i++) {
        FUZZ_CHECK(http1_is_hop_by_hop(m, m->headers[i].name) ==
                   fuzz_ref_hop(m, m->headers[i].name));
        if (!slice_case_eq_cstr(m->headers[i].name, "connection"))
            continue;
        struct slice v = m->headers[i].value;
        for (size_t a = 0; a <= v.len;) {
            const char *c = v.len > a ? memchr(v.p + a, ',', v.len - a) : NULL;
            size_t b = c ? (size_t)(c - v.p) : v.len;
            struct slice e = slice_trim(slice_make(v.p + a, b - a));
            bool token = e.len > 0;
            for (size_t k = 0; k < e.len; k++)
                token &= (e.p[k] >= '0' && e.p[k] <= '9') || (e.p[k] >= 'a' && e.p[k] <= 'z') ||
                         (e.p[k] >= 'A' && e.p[k] <= 'Z') ||
                         (e.p[k] != '\0' && strchr("!#$%&'*+-.^_`|~", e.p[k]) != NULL);
            listed += token;
            a = b + 1;
        }
    }
    FUZZ_CHECK(listed <= HTTP1_MAX_CONN_OPTS && m->nconn_opts <= listed);
    for (unsigned i = 0; i < m->nconn_opts; i++) {
        FUZZ_CHECK(http1_is_hop_by_hop(m, m->conn_opts[i]));
        FUZZ_CHECK(fuzz_ref_hop(m, m->conn_opts[i]));
        for (unsigned j = 0; j < i; j++)
            FUZZ_CHECK(!slice_case_eq(m->conn_opts[i], m->conn_opts[j]));
    }
}

typedef int fuzz_parse_fn(const char *buf, size_t len, struct http1_msg *m,
                          const struct http1_limits *lim, bool head);

/* Feeds <in>/<len> to <parse>: whole when <ncuts> is 0, else as growing
 * prefixes ending at <cuts>. Each call gets its own exact-size copy. */
static inline void fuzz_feed(fuzz_parse_fn *parse, const char *in, size_t len, const size_t *cuts,
                             size_t ncuts, const struct http1_limits *lim, bool head,
                             struct fuzz_summary *out)
{
    static struct http1_header hdrs[HTTP1_MAX_HEADERS];
    struct http1_msg m;
    memset(&m, 0, sizeof(m));
    m.headers = hdrs;
    int rc = -2;
    for (size_t k = 0; k <= ncuts; k++) {
        size_t n = k < ncuts ? cuts[k] : len;
        char *b = malloc(n ? n : 1);
        FUZZ_CHECK(b != NULL);
        memcpy(b, in, n);
        rc = parse(b, n, &m, lim, head);
        FUZZ_CHECK(rc == -1 || rc == -2 || (rc > 0 && (size_t)rc <= n));
        if (rc > 0)
            fuzz_check_slices(&m, b, (size_t)rc);
        fuzz_summarise(out, rc, &m);
        free(b);
        if (rc != -2)
            break;
    }
}

/* Makes the cut points for one split feeding from the control bytes. */
static inline size_t fuzz_cuts(const uint8_t ctl[2], size_t len, size_t *cuts)
{
    size_t n = 0;
    if ((ctl[0] & 1) && len <= 1024) {
        for (size_t i = 1; i < len; i++)
            cuts[n++] = i;
        return n;
    }
    uint64_t seed = ((uint64_t)ctl[0] << 8 | ctl[1]) * 0x9e3779b97f4a7c15ULL + 1;
    size_t want = 1 + (ctl[1] & 7);
    size_t pos = 0;
    while (n < want && len > 1) {
        pos += 1 + util_rand64(&seed) % (len / want + 1);
        if (pos >= len)
            break;
        cuts[n++] = pos;
    }
    return n;
}

static const struct http1_limits fuzz_small_limits = {
    .max_line = 256, .max_head = 1024, .max_headers = 16, .max_body = 1u << 20};

#endif
