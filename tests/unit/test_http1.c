/* SPDX-License-Identifier: MIT
 * Tests of the HTTP/1.1 head parser and the chunked decoder against the rules
 * of docs/http1.md (the cases P-01..P-30 and R-01..R-04 of docs/hardening.md,
 * "Failure and attack catalogue", and the positive controls).
 *
 * Every case is a table row {__LINE__, raw bytes, expected result, comment}
 * and is fed three ways: whole, byte by byte, and in random splits, always
 * from a buffer that ends exactly at a PROT_NONE page (pico:test.c), so any
 * read past the end of the input crashes the test instead of passing by luck.
 * The three results must agree. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../fuzz/fuzz_http1.h"
#include "../guard.h"
#include "../tap.h"
#include "http1.h"
#include "util.h"


static uint64_t rng = 0x9e3779b97f4a7c15ULL;

/* Fills <cuts> with up to <max> sorted cut points in (0, len). */
static size_t random_cuts(size_t len, size_t *cuts, size_t max)
{
    if (len < 2)
        return 0;
    size_t n = 1 + util_rand64(&rng) % max;
    for (size_t i = 0; i < n; i++)
        cuts[i] = 1 + util_rand64(&rng) % (len - 1);
    for (size_t i = 1; i < n; i++) /* insertion sort: n is tiny */
        for (size_t j = i; j > 0 && cuts[j - 1] > cuts[j]; j--) {
            size_t t = cuts[j];
            cuts[j] = cuts[j - 1];
            cuts[j - 1] = t;
        }
    return n;
}

/* ---------------------------------------------------------------- head feeding
 *
 * A parse result is summarised right after the parse (the slices point into
 * the guard area, which the next feed overwrites), and summaries compared,
 * with the fuzzers' own summary (tests/fuzz/fuzz_http1.h). */

static struct http1_header hdrs[HTTP1_MAX_HEADERS];

/* Feeds growing prefixes ending at <cuts>, then the whole input, to one msg. */
static void feed(bool request, bool head, const char *raw, size_t len, const size_t *cuts,
                 size_t ncuts, const struct http1_limits *lim, struct fuzz_summary *out)
{
    struct http1_msg m;
    memset(&m, 0, sizeof(m));
    m.headers = hdrs;
    int rc = -2;
    for (size_t k = 0; k <= ncuts; k++) {
        size_t n = k < ncuts ? cuts[k] : len;
        const char *b = at_guard(raw, n);
        rc = request ? http1_parse_request(b, n, &m, lim)
                     : http1_parse_response(b, n, &m, lim, head);
        if (rc != -2 || n == len)
            break;
    }
    fuzz_summarise(out, rc, &m);
}


/* Parses <raw> whole, byte by byte and in 8 random splits. Returns the whole
 * result in <*whole> and false (with a note) if any feeding disagrees. */
static bool parse_all_ways(bool request, bool head, const char *raw, size_t len,
                           const struct http1_limits *lim, struct fuzz_summary *whole)
{
    static size_t *cuts;
    static size_t ncap;
    if (ncap < len + 16) { /* random_cuts() may return more cuts than bytes */
        ncap = len + 16;
        cuts = xrealloc(cuts, ncap * sizeof(*cuts));
    }
    feed(request, head, raw, len, NULL, 0, lim, whole);
    struct fuzz_summary s;
    for (size_t i = 0; i + 1 < len; i++)
        cuts[i] = i + 1;
    feed(request, head, raw, len, cuts, len ? len - 1 : 0, lim, &s);
    if (!fuzz_same(whole, &s)) {
        note("  byte by byte: rc %d error %d; whole: rc %d error %d", s.rc, s.error, whole->rc,
             whole->error);
        return false;
    }
    for (int r = 0; r < 8; r++) {
        size_t n = random_cuts(len, cuts, 6);
        feed(request, head, raw, len, cuts, n, lim, &s);
        if (!fuzz_same(whole, &s)) {
            note("  random split %d: rc %d error %d; whole: rc %d error %d", r, s.rc, s.error,
                 whole->rc, whole->error);
            return false;
        }
    }
    return true;
}

/* Expected results: an HTTP status for errors, or one of these. */
#define ACCEPT 1   /* rc > 0 and equal to the length of the first head */
#define PARTIAL -2 /* needs more bytes */
#define ANY -1     /* framing / content length not checked */

static size_t head_len(const char *raw, size_t len)
{
    const char *e = memmem(raw, len, "\r\n\r\n", 4);
    return e ? (size_t)(e - raw) + 4 : 0;
}

/* Checks one case: all three feedings agree and give <want>; for accepted
 * heads also the framing and content length when not ANY. */
static void check(int line, bool request, bool head, const char *raw, size_t len, int want,
                  int framing, long long cl, const char *why, const struct http1_limits *lim)
{
    struct fuzz_summary w;
    bool agree = parse_all_ways(request, head, raw, len, lim, &w);
    bool good;
    if (want == ACCEPT)
        good = w.rc > 0 && (size_t)w.rc == head_len(raw, len) &&
               (framing == ANY || w.framing == framing) &&
               (cl == ANY || w.content_length == (uint64_t)cl);
    else if (want == PARTIAL)
        good = w.rc == -2;
    else
        good = w.rc == -1 && w.error == want;
    if (!ok(agree && good, "line %d: %s", line, why))
        note("  want %d framing %d cl %lld; got rc %d error %d framing %d cl %llu", want, framing,
             cl, w.rc, w.error, w.framing, (unsigned long long)w.content_length);
}

/* ---------------------------------------------------------------- requests */

struct req_case {
    int line;
    const char *raw;
    size_t len;
    int want;    /* ACCEPT, PARTIAL or the error status */
    int framing; /* enum http1_framing or ANY */
    long long cl;
    const char *why;
};

/* Raw bytes may contain NUL, so lengths come from sizeof. Hex escapes are
 * always closed by ending the literal ("\x0b" "chunked"), or C would read
 * the following hex letters into the escape. */
#define REQ(raw, want, fr, cl, why) {__LINE__, raw, sizeof(raw) - 1, want, fr, cl, why}
#define PRE "POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\n"
#define NONE HTTP1_BODY_NONE
#define LEN HTTP1_BODY_LENGTH
#define CHUNKED HTTP1_BODY_CHUNKED
#define CLOSE HTTP1_BODY_CLOSE

static const struct req_case req_cases[] = {
    /* P-01, P-02: CL and TE together */
    REQ(PRE "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /x HTTP/1.1\r\n"
            "Host: a\r\n\r\n",
        400, ANY, ANY, "P-01 CL then TE"),
    REQ(PRE "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 400, ANY, ANY,
        "P-02 TE then CL"),
    REQ(PRE "Content-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n", 400, ANY, ANY,
        "P-01 CL 0 with TE"),
    /* P-03..P-07: Content-Length syntax */
    REQ(PRE "Content-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400, ANY, ANY, "P-03 two CLs"),
    REQ(PRE "Content-Length: 1\r\nContent-Length: 1\r\n\r\na", 400, ANY, ANY,
        "P-04 identical CLs"),
    REQ(PRE "Content-Length: 1\r\ncontent-length: 1\r\n\r\na", 400, ANY, ANY,
        "P-04 identical CLs, case differs"),
    REQ(PRE "Content-Length: 1, 2\r\n\r\na", 400, ANY, ANY, "P-05 CL list 1, 2"),
    REQ(PRE "Content-Length: 1, 1\r\n\r\na", 400, ANY, ANY, "P-05 CL list 1, 1"),
    REQ(PRE "Content-Length: 1,1\r\n\r\na", 400, ANY, ANY, "P-05 CL list 1,1"),
    REQ(PRE "Content-Length: +5\r\n\r\n", 400, ANY, ANY, "P-06 CL +5"),
    REQ(PRE "Content-Length: -1\r\n\r\n", 400, ANY, ANY, "P-06 CL -1"),
    REQ(PRE "Content-Length: 0x5\r\n\r\n", 400, ANY, ANY, "P-06 CL 0x5"),
    REQ(PRE "Content-Length: 1 0\r\n\r\n", 400, ANY, ANY, "P-06 CL 1 0"),
    REQ(PRE "Content-Length: 5_0\r\n\r\n", 400, ANY, ANY, "P-06 CL 5_0"),
    REQ(PRE "Content-Length: 1Z\r\n\r\n", 400, ANY, ANY, "P-06 CL 1Z"),
    REQ(PRE "Content-Length: \r\n\r\n", 400, ANY, ANY, "P-06 CL empty"),
    REQ(PRE "Content-Length:\r\n\r\n", 400, ANY, ANY, "P-06 CL empty, no OWS"),
    REQ(PRE "Content-Length: 5.0\r\n\r\n", 400, ANY, ANY, "P-06 CL 5.0"),
    REQ(PRE "Content-Length: \xd9\xa5\r\n\r\n", 400, ANY, ANY, "P-06 CL Arabic-Indic digit"),
    REQ(PRE "Content-Length: 007\r\n\r\n", 400, ANY, ANY, "P-06b CL 007 (leading zeros)"),
    REQ(PRE "Content-Length: 00\r\n\r\n", 400, ANY, ANY, "P-06b CL 00"),
    REQ(PRE "Content-Length: 99999999999999999999999\r\n\r\n", 400, ANY, ANY,
        "P-07 CL overflow"),
    REQ(PRE "Content-Length: 18446744073709551616\r\n\r\n", 400, ANY, ANY, "P-07 CL 2^64"),
    REQ(PRE "Content-Length: 18446744073709551615\r\n\r\n", 400, ANY, ANY,
        "P-07 CL 2^64-1 (20 digits)"),
    REQ(PRE "Content-Length: 33554433\r\n\r\n", 413, ANY, ANY, "P-08 CL over max_body"),
    REQ(PRE "Content-Length: 9999999999999999999\r\n\r\n", 413, ANY, ANY,
        "P-08 CL 19 nines over max_body"),
    /* P-09..P-13: Transfer-Encoding values */
    REQ(PRE "Transfer-Encoding: xchunked\r\n\r\n", 400, ANY, ANY, "P-09 TE xchunked"),
    REQ(PRE "Transfer-Encoding: identity\r\n\r\n", 400, ANY, ANY, "P-09 TE identity"),
    REQ(PRE "Transfer-Encoding: gzip\r\n\r\n", 400, ANY, ANY, "P-09 TE gzip"),
    REQ(PRE "Transfer-Encoding: chunkedx\r\n\r\n", 400, ANY, ANY, "P-09 TE chunkedx"),
    REQ(PRE "Transfer-Encoding: \"chunked\"\r\n\r\n", 400, ANY, ANY, "P-09 TE quoted"),
    REQ(PRE "Transfer-Encoding: chunked;q=1\r\n\r\n", 400, ANY, ANY, "P-09 TE with parameter"),
    REQ(PRE "Transfer-Encoding: chunked, gzip\r\n\r\n", 400, ANY, ANY, "P-10 chunked, gzip"),
    REQ(PRE "Transfer-Encoding: gzip, chunked\r\n\r\n", 501, ANY, ANY, "P-11 gzip, chunked"),
    REQ(PRE "Transfer-Encoding: deflate,chunked\r\n\r\n", 501, ANY, ANY,
        "P-11 deflate,chunked"),
    REQ(PRE "Transfer-Encoding: chunked, chunked\r\n\r\n", 400, ANY, ANY,
        "P-12 chunked, chunked"),
    REQ(PRE "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400, ANY, ANY,
        "P-12 two TE lines"),
    REQ(PRE "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", 400, ANY, ANY,
        "P-12 TE split over two lines"),
    REQ(PRE "Transfer-Encoding: ,chunked\r\n\r\n", 400, ANY, ANY, "P-13 ,chunked"),
    REQ(PRE "Transfer-Encoding: chunked,\r\n\r\n", 400, ANY, ANY, "P-13 chunked,"),
    REQ(PRE "Transfer-Encoding: chunked, \r\n\r\n", 400, ANY, ANY, "P-13 chunked, SP"),
    REQ(PRE "Transfer-Encoding: \r\n\r\n", 400, ANY, ANY, "P-13 empty TE"),
    /* P-14: whitespace before the colon */
    REQ(PRE "Transfer-Encoding : chunked\r\n\r\n", 400, ANY, ANY, "P-14 TE SP colon"),
    REQ(PRE "Content-Length : 5\r\n\r\nhello", 400, ANY, ANY, "P-14 CL SP colon"),
    REQ(PRE "Transfer-Encoding\t: chunked\r\n\r\n", 400, ANY, ANY, "P-14 TE HTAB colon"),
    REQ(PRE "X-A : b\r\n\r\n", 400, ANY, ANY, "P-14 any header, SP colon"),
    /* P-15: control and non-ASCII bytes around the value */
    REQ(PRE "Transfer-Encoding:\x0b" "chunked\r\n\r\n", 400, ANY, ANY, "P-15 TE VT chunked"),
    REQ(PRE "Transfer-Encoding:\x0c" "chunked\r\n\r\n", 400, ANY, ANY, "P-15 TE FF chunked"),
    REQ(PRE "Transfer-Encoding:\xa0" "chunked\r\n\r\n", 400, ANY, ANY, "P-15 TE NBSP chunked"),
    REQ(PRE "Transfer-Encoding: chunked\x00\r\n\r\n", 400, ANY, ANY, "P-15 TE chunked NUL"),
    REQ(PRE "Transfer-Encoding: chunked\xa0\r\n\r\n", 400, ANY, ANY, "P-15 TE chunked NBSP"),
    REQ(PRE "Transfer-Encoding: \xff" "chunked\r\n\r\n", 400, ANY, ANY, "P-15 TE 0xff chunked"),
    /* P-16, P-17: obs-fold */
    REQ(PRE "Transfer-Encoding:\r\n chunked\r\n\r\n", 400, ANY, ANY, "P-16 TE obs-fold"),
    REQ(PRE "Transfer-Encoding: gzip\r\n ,chunked\r\n\r\n", 400, ANY, ANY, "P-16 TE folded list"),
    REQ(PRE "X-A: a\r\n b\r\n\r\n", 400, ANY, ANY, "P-17 obs-fold SP"),
    REQ(PRE "X-A: a\r\n\tb\r\n\r\n", 400, ANY, ANY, "P-17 obs-fold HTAB"),
    /* P-18: TE in HTTP/1.0 */
    REQ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, ANY, ANY,
        "P-18 TE in HTTP/1.0"),
    REQ("POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
        400, ANY, ANY, "P-18 TE and CL in HTTP/1.0"),
    /* P-25..P-30: field syntax */
    REQ(PRE "X: a\x00" "b\r\n\r\n", 400, ANY, ANY, "P-25 NUL in value"),
    REQ(PRE "X: \x00\r\n\r\n", 400, ANY, ANY, "P-25 NUL alone"),
    REQ(PRE "X: a\rb\r\n\r\n", 400, ANY, ANY, "P-26 bare CR in value"),
    REQ(PRE "X: a\r\r\n\r\n", 400, ANY, ANY, "P-26 CR before CRLF"),
    REQ(PRE "X\r: a\r\n\r\n", 400, ANY, ANY, "P-26 bare CR in name"),
    REQ("GET / HTTP/1.1\nHost: a\n\n", 400, ANY, ANY, "P-27 bare LF everywhere"),
    REQ("GET / HTTP/1.1\r\nHost: a\n\r\n", 400, ANY, ANY, "P-27 one bare LF"),
    REQ("GET / HTTP/1.1\r\nHost: a\r\n\n", 400, ANY, ANY, "P-27 bare LF ends head"),
    REQ(PRE "X: a\nb\r\n\r\n", 400, ANY, ANY, "P-27 bare LF inside value"),
    REQ(PRE ": x\r\n\r\n", 400, ANY, ANY, "P-28 empty name"),
    REQ(PRE "A B: x\r\n\r\n", 400, ANY, ANY, "P-28 space in name"),
    REQ(PRE "A\x01" "B: x\r\n\r\n", 400, ANY, ANY, "P-28 CTL in name"),
    REQ(PRE "A\x85" "B: x\r\n\r\n", 400, ANY, ANY, "P-28 0x85 in name"),
    REQ(PRE "A(B: x\r\n\r\n", 400, ANY, ANY, "P-28 ( in name"),
    REQ(PRE "A\x7f: x\r\n\r\n", 400, ANY, ANY, "P-28 DEL in name"),
    REQ(PRE "A\x00: x\r\n\r\n", 400, ANY, ANY, "P-28 NUL in name"),
    REQ(PRE "Content-Length 10\r\n\r\n", 400, ANY, ANY, "P-29 no colon"),
    REQ(PRE "X\r\n\r\n", 400, ANY, ANY, "P-29 name only"),
    REQ("GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400, ANY, ANY, "P-30 SP before first header"),
    REQ("GET / HTTP/1.1\r\n\tHost: a\r\n\r\n", 400, ANY, ANY, "P-30 HTAB before first header"),
    REQ(PRE "X: a\x7f" "b\r\n\r\n", 400, ANY, ANY, "DEL in value"),
    REQ(PRE "X: a\x1b" "b\r\n\r\n", 400, ANY, ANY, "ESC in value"),
    /* Host (RFC 9112 §3.2) */
    REQ("GET / HTTP/1.1\r\n\r\n", 400, ANY, ANY, "missing Host"),
    REQ("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400, ANY, ANY, "duplicate Host"),
    REQ("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", 400, ANY, ANY, "two Hosts, case differs"),
    REQ("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400, ANY, ANY, "Host with space"),
    REQ("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400, ANY, ANY, "Host with /"),
    REQ("GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400, ANY, ANY, "Host with userinfo"),
    REQ("GET / HTTP/1.1\r\nHost: a\\b\r\n\r\n", 400, ANY, ANY, "Host with backslash"),
    REQ("GET / HTTP/1.1\r\nHost: \xc3\xa9\r\n\r\n", 400, ANY, ANY, "Host with obs-text"),
    /* request line */
    REQ("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400, ANY, ANY, "two spaces after method"),
    REQ("GET /  HTTP/1.1\r\nHost: a\r\n\r\n", 400, ANY, ANY, "two spaces after target"),
    REQ("GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400, ANY, ANY, "space after version"),
    REQ(" GET / HTTP/1.1\r\nHost: a\r\n\r\n", 400, ANY, ANY, "space before method"),
    REQ("GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", 400, ANY, ANY, "HTAB as separator"),
    REQ("G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400, ANY, ANY, "( in method"),
    REQ("GET x HTTP/1.1\r\nHost: a\r\n\r\n", 400, ANY, ANY, "target not origin-form"),
    REQ("GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n", 400, ANY, ANY, "DEL in target"),
    REQ("GET /a\xff HTTP/1.1\r\nHost: a\r\n\r\n", 400, ANY, ANY, "obs-text in target"),
    REQ("GET /a\x00 HTTP/1.1\r\nHost: a\r\n\r\n", 400, ANY, ANY, "NUL in target"),
    REQ("GET /public#/../admin HTTP/1.1\r\nHost: a\r\n\r\n", 400, ANY, ANY, "fragment in target"),
    REQ("GET http://a/#x HTTP/1.1\r\nHost: a\r\n\r\n", 400, ANY, ANY,
        "fragment in absolute-form"),
    REQ("GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400, ANY, ANY, "asterisk-form without OPTIONS"),
    REQ("CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", ACCEPT, NONE, 0,
        "CONNECT authority-form parses (the proxy answers 405)"),
    REQ("GET a:443 HTTP/1.1\r\nHost: a\r\n\r\n", 400, ANY, ANY, "authority-form without CONNECT"),
    REQ("GET http:// HTTP/1.1\r\nHost: x\r\n\r\n", 400, ANY, ANY, "absolute-form, empty authority"),
    REQ("GET https:///v1/x HTTP/1.1\r\nHost: x\r\n\r\n", 400, ANY, ANY,
        "absolute-form, empty authority before the path"),
    REQ("GET / http/1.1\r\nHost: a\r\n\r\n", 400, ANY, ANY, "lower-case version"),
    REQ("GET / HTTP/1.10\r\nHost: a\r\n\r\n", 400, ANY, ANY, "version HTTP/1.10"),
    REQ("GET / HTTP/1\r\nHost: a\r\n\r\n", 400, ANY, ANY, "version HTTP/1"),
    REQ("GET / HTTP/x.1\r\nHost: a\r\n\r\n", 400, ANY, ANY, "version HTTP/x.1"),
    REQ("GET /\r\nHost: a\r\n\r\n", 400, ANY, ANY, "HTTP/0.9 style line"),
    REQ("GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505, ANY, ANY, "HTTP/2.0 is 505"),
    REQ("GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505, ANY, ANY, "HTTP/0.9 is 505"),
    REQ("GET / HTTP/3.0\r\nHost: a\r\n\r\n", 505, ANY, ANY, "HTTP/3.0 is 505"),
    REQ("GET / HTTP/1.1\rX\r\nHost: a\r\n\r\n", 400, ANY, ANY, "bare CR in request line"),
    REQ("GET /\r HTTP/1.1\r\nHost: a\r\n\r\n", 400, ANY, ANY, "bare CR in target"),
    REQ("\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400, ANY, ANY, "empty line before request"),
    REQ("\r\n\r\n", 400, ANY, ANY, "only CRLFCRLF"),
    REQ("SSH-2.0-OpenSSH\r\n\r\n", 400, ANY, ANY, "not HTTP"),
    REQ("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400, ANY, ANY,
        "TLS ClientHello bytes"),
    /* Expect */
    REQ(PRE "Expect: 100-continue\r\nContent-Length: 3\r\n\r\n", ACCEPT, LEN, 3,
        "Expect: 100-continue"),
    REQ(PRE "Expect: 100-Continue\r\nContent-Length: 3\r\n\r\n", ACCEPT, LEN, 3,
        "Expect is case-insensitive"),
    REQ(PRE "Expect: foo\r\n\r\n", 417, ANY, ANY, "unknown Expect is 417"),
    REQ(PRE "Expect: 100-continue, foo\r\n\r\n", 417, ANY, ANY, "Expect list is 417"),
    /* incomplete heads */
    REQ("", PARTIAL, ANY, ANY, "empty input"),
    REQ("GET", PARTIAL, ANY, ANY, "method only"),
    REQ("GET / HTTP/1.1\r\nHost: a\r\n", PARTIAL, ANY, ANY, "no final CRLF"),
    REQ("GET / HTTP/1.1\r\nHost: a\r\n\r", PARTIAL, ANY, ANY, "final CR without LF"),
    REQ("GET / HTTP/1.1\r\n", PARTIAL, ANY, ANY, "good request line, no headers yet"),
    /* a bad first line is refused as soon as it is complete, head or not */
    REQ("SSH-2.0-OpenSSH_9.2\r\n", 400, ANY, ANY, "SSH banner refused at its line end"),
    REQ("GET / HTTP/2.0\r\n", 505, ANY, ANY, "HTTP/2.0 refused at its line end"),
    REQ("GET / HTTP/1.1 \r\nHost: a\r\n", 400, ANY, ANY, "bad line refused before the head ends"),
    REQ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, ANY, ANY, "h2 preface is 505"),
    /* positive controls */
    REQ(PRE "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", ACCEPT, CHUNKED, 0,
        "TE chunked"),
    REQ(PRE "Transfer-Encoding: Chunked\r\n\r\n", ACCEPT, CHUNKED, 0, "TE Chunked (case)"),
    REQ(PRE "transfer-encoding: CHUNKED\r\n\r\n", ACCEPT, CHUNKED, 0, "TE lower-case name"),
    REQ(PRE "Transfer-Encoding:chunked\r\n\r\n", ACCEPT, CHUNKED, 0, "TE without OWS"),
    REQ(PRE "Transfer-Encoding: \tchunked \t\r\n\r\n", ACCEPT, CHUNKED, 0, "TE OWS both sides"),
    REQ(PRE "Content-Length: 5\r\n\r\nhello", ACCEPT, LEN, 5, "CL 5"),
    REQ(PRE "Content-Length:  5 \r\n\r\nhello", ACCEPT, LEN, 5, "CL with OWS"),
    REQ(PRE "Content-Length: 0\r\n\r\n", ACCEPT, NONE, 0, "CL 0"),
    REQ(PRE "Content-Length: 16777216\r\n\r\n", ACCEPT, LEN, 16777216, "16 MiB body"),
    REQ(PRE "Content-Length: 33554432\r\n\r\n", ACCEPT, LEN, 33554432, "CL at max_body"),
    REQ(PRE "\r\n", ACCEPT, NONE, 0, "POST without body"),
    REQ("GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", ACCEPT, NONE, 0,
        "pipelined: first head only"),
    REQ("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", ACCEPT, NONE, 0, "OPTIONS *"),
    REQ("GET http://a/v1/models HTTP/1.1\r\nHost: a\r\n\r\n", ACCEPT, NONE, 0, "absolute-form"),
    REQ("GET https://a:8443/x?y=1 HTTP/1.1\r\nHost: a:8443\r\n\r\n", ACCEPT, NONE, 0,
        "absolute-form https"),
    REQ("GET /v1/models?a=1&b=%20 HTTP/1.1\r\nHost: a\r\n\r\n", ACCEPT, NONE, 0, "query string"),
    REQ("GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", ACCEPT, NONE, 0, "IPv6 Host"),
    REQ("GET / HTTP/1.1\r\nHost:\r\n\r\n", ACCEPT, NONE, 0, "empty Host"),
    REQ("GET / HTTP/1.0\r\n\r\n", ACCEPT, NONE, 0, "HTTP/1.0 without Host"),
    REQ(PRE "X: \xc3\xa9t\xc3\xa9\r\n\r\n", ACCEPT, NONE, 0, "obs-text in value"),
    REQ(PRE "X: a\tb c\r\n\r\n", ACCEPT, NONE, 0, "HTAB and SP inside value"),
    REQ(PRE "X:\r\n\r\n", ACCEPT, NONE, 0, "empty value"),
    REQ(PRE "!#$%&'*+-.^_`|~09azAZ: x\r\n\r\n", ACCEPT, NONE, 0, "every tchar in a name"),
    REQ("get / HTTP/1.1\r\nHost: a\r\n\r\n", ACCEPT, NONE, 0, "lower-case method"),
    REQ("POST /v1/chat/completions HTTP/1.1\r\nHost: lb:8080\r\nContent-Type: application/json"
        "\r\nAuthorization: Bearer sk-x\r\nAccept: text/event-stream\r\nContent-Length: 58\r\n"
        "\r\n{\"model\":\"m\",\"stream\":true,\"messages\":[{\"role\":\"user\"}]}",
        ACCEPT, LEN, 58, "typical OpenAI request"),
};

static void test_request_table(void)
{
    for (size_t i = 0; i < ARRAY_SIZE(req_cases); i++) {
        const struct req_case *c = &req_cases[i];
        check(c->line, true, false, c->raw, c->len, c->want, c->framing, c->cl, c->why,
              &http1_default_limits);
    }
}

/* The fields of one accepted request, checked once, since the table only
 * compares them between feedings. */
static void test_request_fields(void)
{
    static const char raw[] = "POST /v1/x?y HTTP/1.1\r\nHost: a\r\nX-Trim:  v w \t\r\n"
                              "Connection: keep-alive, Close\r\nContent-Length: 2\r\n\r\nab";
    struct http1_msg m = {0};
    int rc = http1_parse_request(at_guard(raw, sizeof(raw) - 1), sizeof(raw) - 1, &m,
                                 &http1_default_limits);
    is_int(rc, sizeof(raw) - 3, "fields: head length excludes the body");
    ok(slice_eq_cstr(m.method, "POST") && slice_eq_cstr(m.target, "/v1/x?y") && m.minor == 1,
       "fields: method, target, version");
    is_int(m.nheaders, 4, "fields: four headers");
    const struct http1_header *h = http1_find(&m, "x-trim");
    ok(h && slice_eq_cstr(h->value, "v w"), "fields: value trimmed of OWS, inner SP kept");
    ok(!m.keep_alive, "fields: Connection list with close");
    ok(http1_is_hop_by_hop(&m, SLICE_LIT("Keep-Alive")), "fields: Keep-Alive named in Connection");
    ok(http1_is_hop_by_hop(&m, SLICE_LIT("transfer-encoding")), "fields: TE is hop-by-hop");
    ok(!http1_is_hop_by_hop(&m, SLICE_LIT("Content-Type")), "fields: Content-Type is end-to-end");
    ok(http1_list_has(SLICE_LIT(" a ,b, C "), "c") && !http1_list_has(SLICE_LIT("ab"), "a"),
       "fields: http1_list_has");
    ok(http1_find(&m, "x-absent") == NULL, "fields: http1_find of an absent header");

    static const char raw2[] = "GET / HTTP/1.1\r\nHost: a\r\nConnection: X-Foo\r\nX-Foo: 1\r\n\r\n";
    struct http1_msg m2 = {0}; /* headers NULL: the thread's scratch array */
    rc = http1_parse_request(raw2, sizeof(raw2) - 1, &m2, &http1_default_limits);
    ok(rc > 0 && m2.headers != NULL && m2.nheaders == 3, "fields: scratch header array by default");
    ok(http1_is_hop_by_hop(&m2, SLICE_LIT("x-foo")),
       "fields: a header named in Connection is hop-by-hop");
    struct http1_header *keep = m2.headers;
    http1_msg_reset(&m2);
    ok(m2.headers == keep && m2.nheaders == 0 && m2.framing == HTTP1_BODY_NONE && m2._scanned == 0,
       "fields: http1_msg_reset keeps the header array, clears the rest");
}

/* ---------------------------------------------------------------- Connection options
 *
 * The options of every Connection header are collected once per parse, so
 * http1_is_hop_by_hop() never walks the lists again (docs/hardening.md,
 * "Request heads": 90 headers and three 8 KiB lists cost 30 times a plain
 * head). The old walk is kept here as the oracle of the semantics. */

/* The definition before the option set: every Connection list split on
 * commas, OWS trimmed, compared case-insensitively with <name>. */
static bool ref_hop(const struct http1_msg *m, struct slice name, unsigned long *cmps)
{
    static const char *const hop[] = {"connection", "keep-alive", "proxy-connection",
                                      "proxy-authenticate", "proxy-authorization", "te",
                                      "trailer", "transfer-encoding", "upgrade"};
    for (size_t i = 0; i < ARRAY_SIZE(hop); i++)
        if (slice_case_eq_cstr(name, hop[i]))
            return true;
    for (unsigned i = 0; i < m->nheaders; i++) {
        if (!slice_case_eq_cstr(m->headers[i].name, "connection"))
            continue;
        struct slice v = m->headers[i].value;
        for (size_t a = 0; a <= v.len;) {
            const char *c = memchr(v.p + a, ',', v.len - a);
            size_t b = c ? (size_t)(c - v.p) : v.len;
            (*cmps)++;
            if (slice_case_eq(slice_trim(slice_make(v.p + a, b - a)), name))
                return true;
            a = b + 1;
        }
    }
    return false;
}

static struct http1_header conn_hdrs[HTTP1_MAX_HEADERS];

/* Parses <raw> whole (request or response) into <m>, from a guarded buffer. */
static int parse_one(bool request, const char *raw, size_t len, struct http1_msg *m)
{
    memset(m, 0, sizeof(*m));
    m->headers = conn_hdrs;
    const char *b = at_guard(raw, len);
    return request ? http1_parse_request(b, len, m, &http1_default_limits)
                   : http1_parse_response(b, len, m, &http1_default_limits, false);
}

static void test_conn_semantics(void)
{
    static const struct {
        int line;
        const char *hdrs;       /* after "GET / HTTP/1.1\r\nHost: a\r\n" */
        unsigned nopts;         /* distinct options collected */
        const char *hop, *end;  /* names, '|'-separated, that are / are not hop-by-hop */
    } c[] = {
        {__LINE__, "Connection: X-A, x-b\r\nX-A: 1\r\nConnection: X-C\r\n", 3,
         "x-a|X-A|X-B|x-c|te|Upgrade", "x-d|x-|x-ab|a|X-A-|Content-Type"},
        {__LINE__, "Connection: \t a ,\tb\t, ,, c \r\n", 3, "a|B|c", "d|ab|abc"},
        {__LINE__, "Connection: Foo, FOO, foo\r\nConnection: fOo\r\n", 1, "foo|FOO", "fo|fooo"},
        {__LINE__, "Connection: ,,, ,\t,\r\n", 0, "keep-alive", "x|a"},
        {__LINE__, "Connection:\r\n", 0, "connection", "x"},
        {__LINE__, "Connection: a b, c, \"d\", e;f\r\n", 1, "c", "a|b|d|e|f"},
        {__LINE__, "Connection: close\r\nX-Close: 1\r\n", 1, "", "x-close|x"},
        {__LINE__, "Connection: x-y\r\nconnection: X-Z\r\nCONNECTION: x-w\r\n", 3,
         "x-y|x-z|X-W", "x-yz"},
        {__LINE__, "X: a\r\n", 0, "Proxy-Authorization|transfer-encoding", "x|a"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(c); i++) {
        char raw[512];
        int n = snprintf(raw, sizeof(raw), "GET / HTTP/1.1\r\nHost: a\r\n%s\r\n", c[i].hdrs);
        struct http1_msg m;
        int rc = parse_one(true, raw, (size_t)n, &m);
        bool good = rc == n && m.nconn_opts == c[i].nopts;
        for (int want = 1; want >= 0; want--) {
            const char *p = want ? c[i].hop : c[i].end;
            while (*p) {
                size_t k = strcspn(p, "|");
                unsigned long cmps = 0;
                struct slice name = slice_make(p, k);
                bool got = http1_is_hop_by_hop(&m, name);
                if (got != (bool)want || got != ref_hop(&m, name, &cmps)) {
                    note("  '%.*s' hop-by-hop %d", (int)k, p, got);
                    good = false;
                }
                p += k + (p[k] == '|');
            }
        }
        ok(good, "line %d: Connection options %u, hop-by-hop as listed", c[i].line, c[i].nopts);
    }

    /* The first spelling is kept, the order is first-seen; keep-alive and
     * close are read from the set across several headers. */
    static const char r1[] = "GET / HTTP/1.0\r\nConnection: X-Foo, Keep-Alive\r\n"
                             "Connection: x-foo, Close\r\n\r\n";
    struct http1_msg m;
    ok(parse_one(true, r1, sizeof(r1) - 1, &m) > 0 && m.nconn_opts == 3 &&
           slice_eq_cstr(m.conn_opts[0], "X-Foo") && slice_eq_cstr(m.conn_opts[1], "Keep-Alive") &&
           slice_eq_cstr(m.conn_opts[2], "Close") && !m.keep_alive,
       "Connection options: first spelling, first-seen order, close across headers wins");
    static const char r2[] = "GET / HTTP/1.0\r\nConnection: x\r\nConnection: ,KEEP-ALIVE ,\r\n\r\n";
    ok(parse_one(true, r2, sizeof(r2) - 1, &m) > 0 && m.keep_alive,
       "Connection options: HTTP/1.0 keep-alive in a second Connection header");
    static const char r3[] = "HTTP/1.1 200 OK\r\nConnection: X-Up, close\r\nX-Up: 1\r\n"
                             "Content-Length: 0\r\n\r\n";
    ok(parse_one(false, r3, sizeof(r3) - 1, &m) > 0 && m.nconn_opts == 2 && !m.keep_alive &&
           http1_is_hop_by_hop(&m, SLICE_LIT("x-up")) &&
           !http1_is_hop_by_hop(&m, SLICE_LIT("Content-Length")),
       "Connection options: response");
    memset(&m, 0, sizeof(m));
    ok(!http1_is_hop_by_hop(&m, SLICE_LIT("x")) && http1_is_hop_by_hop(&m, SLICE_LIT("TE")),
       "Connection options: a zeroed message has none");

    /* Random messages: the option set answers as the old walk did for every
     * header name and a few probes. */
    static const char *const elems[] = {"x-a", "X-A", "x-b", " x-c\t", "", " ", "a b", "close",
                                        "Keep-Alive", "upgrade", "x-a\t", "X-D", "\"x-b\""};
    static const char *const names[] = {"x-a", "X-B", "x-c", "x-d", "Content-Type", "close",
                                        "X-E"};
    static const char *const probes[] = {"x-a", "x-b", "x-c", "x-d", "x-e", "a", "b", "x-"};
    char *raw = xmalloc(4096);
    int bad = 0, checks = 0;
    for (int round = 0; round < 2000; round++) {
        size_t n = (size_t)snprintf(raw, 4096, "GET / HTTP/1.1\r\nHost: a\r\n");
        int nh = (int)(util_rand64(&rng) % 8);
        for (int h = 0; h < nh; h++) {
            if (util_rand64(&rng) % 2) {
                n += (size_t)snprintf(raw + n, 4096 - n, "Connection:");
                int ne = (int)(util_rand64(&rng) % 6);
                for (int e = 0; e < ne; e++)
                    n += (size_t)snprintf(raw + n, 4096 - n, "%s%s", e ? "," : " ",
                                          elems[util_rand64(&rng) % ARRAY_SIZE(elems)]);
                n += (size_t)snprintf(raw + n, 4096 - n, "\r\n");
            } else {
                n += (size_t)snprintf(raw + n, 4096 - n, "%s: v\r\n",
                                      names[util_rand64(&rng) % ARRAY_SIZE(names)]);
            }
        }
        n += (size_t)snprintf(raw + n, 4096 - n, "\r\n");
        if (parse_one(true, raw, n, &m) != (int)n) {
            if (bad++ < 3)
                note("  refused: %.*s", (int)n, raw);
            continue;
        }
        for (unsigned i = 0; i < m.nheaders + ARRAY_SIZE(probes); i++) {
            struct slice name = i < m.nheaders ? m.headers[i].name
                                               : slice_cstr(probes[i - m.nheaders]);
            unsigned long cmps = 0;
            checks++;
            if (http1_is_hop_by_hop(&m, name) != ref_hop(&m, name, &cmps) && bad++ < 3)
                note("  '%.*s' disagrees in: %.*s", (int)name.len, name.p, (int)n, raw);
        }
    }
    ok(bad == 0, "Connection options vs the old walk: %d checks, %d disagree", checks, bad);
    free(raw);
}

/* More than HTTP1_MAX_CONN_OPTS options listed, repeats included, is
 * refused; empty elements and non-tokens do not count. Every verdict is the
 * same whole, byte by byte and in random splits. */
static void test_conn_bound(void)
{
    char *raw = xmalloc(1 << 16);
    static const struct {
        int line;
        bool request;
        unsigned opts, repeats, headers; /* <opts> distinct, each listed <repeats> times */
        const char *pad;                 /* between elements */
        int want;
        const char *why;
    } c[] = {
        {__LINE__, true, 32, 1, 1, ", ", ACCEPT, "32 options"},
        {__LINE__, true, 33, 1, 1, ", ", 400, "33 options"},
        {__LINE__, true, 32, 1, 3, ",", ACCEPT, "32 options over three headers"},
        {__LINE__, true, 33, 1, 3, ",", 400, "33 options over three headers"},
        {__LINE__, true, 1, 32, 1, ",", ACCEPT, "one option 32 times"},
        {__LINE__, true, 1, 33, 1, ",", 400, "one option 33 times"},
        {__LINE__, true, 11, 3, 2, ",", 400, "11 options 3 times"},
        {__LINE__, true, 32, 1, 1, " ,, ,\t,, a b ,,", ACCEPT,
         "32 options among empty elements and non-tokens"},
        {__LINE__, false, 32, 1, 2, ", ", ACCEPT, "response: 32 options"},
        {__LINE__, false, 33, 1, 2, ", ", 502, "response: 33 options"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(c); i++) {
        size_t n = (size_t)snprintf(raw, 1 << 16, "%s",
                                    c[i].request ? "GET / HTTP/1.1\r\nHost: a\r\n"
                                                 : "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n");
        unsigned total = c[i].opts * c[i].repeats, per = (total + c[i].headers - 1) / c[i].headers;
        for (unsigned k = 0; k < total; k++) {
            if (k % per == 0)
                n += (size_t)snprintf(raw + n, (1 << 16) - n, "%sConnection: ", k ? "\r\n" : "");
            else
                n += (size_t)snprintf(raw + n, (1 << 16) - n, "%s", c[i].pad);
            n += (size_t)snprintf(raw + n, (1 << 16) - n, "%s-%u", k % 2 ? "x-Opt" : "X-OPT",
                                  k % c[i].opts);
        }
        n += (size_t)snprintf(raw + n, (1 << 16) - n, "\r\n\r\n");
        check(c[i].line, c[i].request, false, raw, n, c[i].want, ANY, ANY, c[i].why,
              &http1_default_limits);
    }
    /* 8 KiB of empty elements and junk around two options: accepted. */
    size_t n = (size_t)snprintf(raw, 1 << 16, "GET / HTTP/1.1\r\nHost: a\r\nConnection: x-a");
    while (n < 8000)
        n += (size_t)snprintf(raw + n, (1 << 16) - n, ", ,a b,,\t");
    n += (size_t)snprintf(raw + n, (1 << 16) - n, ",close\r\n\r\n");
    check(__LINE__, true, false, raw, n, ACCEPT, NONE, 0, "8 KiB of empty elements and non-tokens",
          &http1_default_limits);
    free(raw);
}

/* Builds the audit's head: 90 headers, three Connection lists of about
 * <list_bytes> each, holding 30 options of equal length (differing only at
 * their end, the old walk's worst case) among empty elements and
 * non-tokens, and 5 headers named by options. Only the padding depends on
 * <list_bytes>. Returns its length. */
static size_t cost_head(char *raw, size_t cap, size_t list_bytes)
{
    const size_t optlen = 200;
    size_t n = (size_t)snprintf(raw, cap, "POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\n");
    for (int l = 0; l < 3; l++) {
        size_t start = n;
        n += (size_t)snprintf(raw + n, cap - n, "Connection: ");
        for (int k = 0; k < 10; k++) {
            n += (size_t)snprintf(raw + n, cap - n, "%sx-", k ? ", " : "");
            memset(raw + n, 'o', optlen);
            n += optlen;
            n += (size_t)snprintf(raw + n, cap - n, "-%02d", l * 10 + k);
        }
        while (n - start < list_bytes)
            n += (size_t)snprintf(raw + n, cap - n, ", ,\t, a b ,");
        n += (size_t)snprintf(raw + n, cap - n, "\r\n");
    }
    for (int h = 0; h < 5; h++) {
        n += (size_t)snprintf(raw + n, cap - n, "X-");
        memset(raw + n, 'O', optlen);
        n += optlen;
        n += (size_t)snprintf(raw + n, cap - n, "-%02d: 1\r\n", h * 6);
    }
    for (int h = 0; h < 81; h++)
        n += (size_t)snprintf(raw + n, cap - n, "X-Header-%02d: value %d\r\n", h, h);
    n += (size_t)snprintf(raw + n, cap - n, "\r\n");
    return n;
}

/* The proxy asks about every header of a head it rewrites. The probes of
 * the option set are counted (http1_conn_cmps): at most
 * HTTP1_MAX_CONN_OPTS^2/2 for the parse and HTTP1_MAX_CONN_OPTS per
 * question, and exactly the same for 2 KiB lists as for 8 KiB ones. The old
 * walk made one comparison per list element per question. */
static void test_conn_cost(void)
{
    size_t cap = 1 << 16;
    char *raw = xmalloc(cap);
    unsigned long parse_cmps[2], hop_cmps[2], old_cmps = 0;
    unsigned dropped[2];
    bool agree = true;
    for (int v = 0; v < 2; v++) {
        size_t n = cost_head(raw, cap, v ? 8150 : 2200);
        struct http1_msg m;
        http1_conn_cmps = 0;
        int rc = parse_one(true, raw, n, &m);
        parse_cmps[v] = http1_conn_cmps;
        if (!ok(rc == (int)n && m.nheaders == 90 && m.nconn_opts == 30,
                "cost head (%zu bytes, lists of %d): 90 headers, 30 options", n,
                v ? 8150 : 2200))
            note("  rc %d error %d %s nheaders %u nconn_opts %u", rc, m.error,
                 m.error_reason ? m.error_reason : "", m.nheaders, m.nconn_opts);
        http1_conn_cmps = 0;
        dropped[v] = 0;
        for (unsigned i = 0; i < m.nheaders; i++) {
            unsigned long before = http1_conn_cmps;
            bool hop = http1_is_hop_by_hop(&m, m.headers[i].name);
            if (http1_conn_cmps - before > HTTP1_MAX_CONN_OPTS)
                agree = false;
            dropped[v] += hop;
            if (v == 1) {
                unsigned long c = 0;
                agree &= hop == ref_hop(&m, m.headers[i].name, &c);
                old_cmps += c;
            }
        }
        hop_cmps[v] = http1_conn_cmps;
    }
    note("  option probes: parse %lu, 90 questions %lu; the old walk compared %lu elements",
         parse_cmps[1], hop_cmps[1], old_cmps);
    ok(dropped[0] == 8 && dropped[1] == 8 && agree,
       "cost head: Connection x3 and the 5 option-named headers are hop-by-hop, as before");
    ok(parse_cmps[1] <= HTTP1_MAX_CONN_OPTS * HTTP1_MAX_CONN_OPTS / 2,
       "cost head: parse probes %lu <= %d", parse_cmps[1],
       HTTP1_MAX_CONN_OPTS * HTTP1_MAX_CONN_OPTS / 2);
    ok(hop_cmps[1] <= 90 * HTTP1_MAX_CONN_OPTS, "cost head: 90 questions cost %lu probes <= %d",
       hop_cmps[1], 90 * HTTP1_MAX_CONN_OPTS);
    ok(parse_cmps[0] == parse_cmps[1] && hop_cmps[0] == hop_cmps[1],
       "cost head: the same probes for 2 KiB and 8 KiB lists (%lu+%lu vs %lu+%lu)",
       parse_cmps[0], hop_cmps[0], parse_cmps[1], hop_cmps[1]);

    /* The worst order for the parse: 32 distinct options, the last one
     * repeated is refused before the repeats can cost anything. */
    size_t n = (size_t)snprintf(raw, cap, "GET / HTTP/1.1\r\nHost: a\r\nConnection: o0");
    for (int k = 1; k < 32; k++)
        n += (size_t)snprintf(raw + n, cap - n, ",o%d", k);
    while (n < 8000)
        n += (size_t)snprintf(raw + n, cap - n, ",o31");
    n += (size_t)snprintf(raw + n, cap - n, "\r\n\r\n");
    struct http1_msg m;
    http1_conn_cmps = 0;
    int rc = parse_one(true, raw, n, &m);
    ok(rc == -1 && m.error == 400 && http1_conn_cmps <= HTTP1_MAX_CONN_OPTS * HTTP1_MAX_CONN_OPTS,
       "8 KiB of one repeated option: 400 after %lu probes", http1_conn_cmps);
    free(raw);
}

/* HTTP/1.0 and 1.1 persistence defaults (RFC 9112 §9.3). */
static void test_keep_alive(void)
{
    static const struct {
        int line;
        const char *raw;
        bool keep_alive, expect;
    } cases[] = {
        {__LINE__, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", true, false},
        {__LINE__, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", false, false},
        {__LINE__, "GET / HTTP/1.1\r\nHost: a\r\nConnection: CLOSE\r\n\r\n", false, false},
        {__LINE__, "GET / HTTP/1.0\r\n\r\n", false, false},
        {__LINE__, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true, false},
        {__LINE__, "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true, false},
        {__LINE__, "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", false, false},
        {__LINE__, "POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n", false,
         false},
        {__LINE__,
         "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
         true, true},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        struct fuzz_summary w;
        bool agree = parse_all_ways(true, false, cases[i].raw, strlen(cases[i].raw),
                                    &http1_default_limits, &w);
        ok(agree && w.rc > 0 && w.keep_alive == cases[i].keep_alive &&
               w.expect_continue == cases[i].expect,
           "line %d: keep_alive %d expect_continue %d", cases[i].line, cases[i].keep_alive,
           cases[i].expect);
    }
}

/* ---------------------------------------------------------------- TE obfuscation
 *
 * defparam/smuggler's generated Transfer-Encoding mutations. The rule: a
 * mangled name or value is never accepted as chunked, and CL with anything
 * TE-like never yields chunked. Only OWS (SP, HTAB) after the colon is a
 * legitimate spelling, and a byte inside another header's value that is not a
 * CTL keeps "Transfer-Encoding: chunked" as plain text of that value. */

static void test_te_obfuscation(void)
{
    static const unsigned char bytes[] = {0x01, 0x04, 0x08, 0x09, 0x0a, 0x0b, 0x0c,
                                          0x0d, 0x1f, 0x20, 0x7f, 0xa0, 0xff};
    static const char *const pats[] = {
        "Transfer-Encoding:%cchunked",
        "Transfer-Encoding%c: chunked",
        "%cTransfer-Encoding: chunked",
        "X: X%cTransfer-Encoding: chunked",
    };
    char raw[256];
    int bad = 0, n = 0;
    for (size_t p = 0; p < ARRAY_SIZE(pats); p++)
        for (size_t b = 0; b < sizeof(bytes); b++)
            for (int with_cl = 0; with_cl < 2; with_cl++) {
                unsigned char c = bytes[b];
                bool ows = c == ' ' || c == '\t';
                bool ctl = c < 0x20 ? c != '\t' : c == 0x7f;
                size_t len = (size_t)snprintf(raw, sizeof(raw), PRE "%s",
                                              with_cl ? "Content-Length: 5\r\n" : "");
                const char *pc = strstr(pats[p], "%c"); /* -Wformat-nonliteral: no printf */
                memcpy(raw + len, pats[p], (size_t)(pc - pats[p]));
                len += (size_t)(pc - pats[p]);
                raw[len++] = (char)c;
                len += (size_t)snprintf(raw + len, sizeof(raw) - len, "%s", pc + 2);
                len += (size_t)snprintf(raw + len, sizeof(raw) - len, "\r\n\r\n0\r\n\r\n");
                struct fuzz_summary w;
                bool agree = parse_all_ways(true, false, raw, len, &http1_default_limits, &w);
                int want_framing; /* -1: must be rejected with 400 */
                if (p == 0 && ows)
                    want_framing = with_cl ? -1 : HTTP1_BODY_CHUNKED;
                else if (p == 3 && !ctl)
                    want_framing = with_cl ? HTTP1_BODY_LENGTH : HTTP1_BODY_NONE;
                else
                    want_framing = -1;
                bool good = want_framing == -1 ? (w.rc == -1 && w.error == 400)
                                               : (w.rc > 0 && w.framing == want_framing);
                /* The hard rule, whatever the expectation says. */
                if (w.rc > 0 && w.framing == HTTP1_BODY_CHUNKED && (with_cl || p != 0))
                    good = false;
                n++;
                if (!agree || !good) {
                    bad++;
                    note("  pattern %zu byte 0x%02x cl %d: rc %d error %d framing %d", p, c,
                         with_cl, w.rc, w.error, w.framing);
                }
            }
    ok(bad == 0, "TE obfuscation: %d generated cases, %d wrong", n, bad);
}

/* ---------------------------------------------------------------- limits */

static void test_limits(void)
{
    const struct http1_limits *lim = &http1_default_limits;
    struct buf_s {
        char *p;
        size_t len;
    } b = {xmalloc(1 << 17), 0};
#define ADD(...) (b.len += (size_t)snprintf(b.p + b.len, (1 << 17) - b.len, __VA_ARGS__))

    /* 414: a request line of max_line bytes (CRLF included) passes, one more fails. */
    for (int extra = 0; extra < 2; extra++) {
        b.len = 0;
        size_t target = lim->max_line - strlen("GET  HTTP/1.1\r\n") + (size_t)extra;
        ADD("GET /");
        memset(b.p + b.len, 'a', target - 1);
        b.len += target - 1;
        ADD(" HTTP/1.1\r\nHost: a\r\n\r\n");
        check(__LINE__, true, false, b.p, b.len, extra ? 414 : ACCEPT, NONE, 0,
              extra ? "414: request line one byte over max_line" : "request line at max_line",
              lim);
    }
    /* 414 without a line end: refused once more than max_line bytes wait. */
    b.len = 0;
    ADD("GET /");
    memset(b.p + b.len, 'a', lim->max_line + 10);
    b.len += lim->max_line + 10;
    check(__LINE__, true, false, b.p, b.len, 414, ANY, ANY, "414: endless request line", lim);

    /* Whatever the split, the first limit crossed decides: a bare LF that
     * lies beyond max_line (or max_head) must not turn 414 (431) into 400. */
    b.len = 0;
    ADD("GET /");
    memset(b.p + b.len, 'a', lim->max_line + 10);
    b.len += lim->max_line + 10;
    ADD(" HTTP/1.1\nHost: a\r\n\r\n");
    check(__LINE__, true, false, b.p, b.len, 414, ANY, ANY, "414 beats a later bare LF", lim);
    b.len = 0;
    ADD("GET / HTTP/1.1\r\nHost: a\r\nX: ");
    memset(b.p + b.len, 'a', lim->max_head + 10);
    b.len += lim->max_head + 10;
    ADD("\n\r\n");
    check(__LINE__, true, false, b.p, b.len, 431, ANY, ANY, "431 beats a later bare LF", lim);
    b.len = 0;
    ADD("GET / HTTP/1.1\r\nHost: a\r\n");
    while (b.len <= lim->max_head)
        ADD("X: 0123456789abcdef0123456789abcdef\r\n");
    ADD("Y: a\n\r\n");
    check(__LINE__, true, false, b.p, b.len, 431, ANY, ANY, "431 beats a bare LF two lines later",
          lim);

    /* 431: header count */
    for (unsigned n = lim->max_headers; n <= lim->max_headers + 1; n++) {
        b.len = 0;
        ADD("GET / HTTP/1.1\r\nHost: a\r\n");
        for (unsigned i = 1; i < n; i++)
            ADD("X-%u: %u\r\n", i, i);
        ADD("\r\n");
        check(__LINE__, true, false, b.p, b.len, n > lim->max_headers ? 431 : ACCEPT, NONE, 0,
              n > lim->max_headers ? "431: one header over max_headers" : "max_headers headers",
              lim);
    }
    /* HTTP1_MAX_HEADERS caps a larger configured limit. */
    {
        struct http1_limits big = *lim;
        big.max_headers = 1000;
        b.len = 0;
        ADD("GET / HTTP/1.1\r\nHost: a\r\n");
        for (unsigned i = 1; i <= HTTP1_MAX_HEADERS; i++)
            ADD("X-%u: %u\r\n", i, i);
        ADD("\r\n");
        check(__LINE__, true, false, b.p, b.len, 431, ANY, ANY, "431: over HTTP1_MAX_HEADERS",
              &big);
    }
    /* 431: head bytes, complete and incomplete */
    b.len = 0;
    ADD("GET / HTTP/1.1\r\nHost: a\r\n");
    for (int i = 0; i < 40; i++) {
        ADD("X-%02d: ", i);
        memset(b.p + b.len, 'v', 1000);
        b.len += 1000;
        ADD("\r\n");
    }
    size_t open_len = b.len;
    ADD("\r\n");
    check(__LINE__, true, false, b.p, b.len, 431, ANY, ANY, "431: head over max_head", lim);
    check(__LINE__, true, false, b.p, open_len, 431, ANY, ANY, "431: unfinished head over max_head",
          lim);
    /* Positive control: 8 KiB of headers. */
    b.len = 0;
    ADD("POST /v1/completions HTTP/1.1\r\nHost: a\r\n");
    for (int i = 0; i < 64; i++) {
        ADD("X-Header-%02d: ", i);
        memset(b.p + b.len, 'a' + i % 26, 113);
        b.len += 113;
        ADD("\r\n");
    }
    ADD("Content-Length: 2\r\n\r\n{}");
    ok(b.len > 8192, "8 KiB of headers: %zu bytes", b.len);
    check(__LINE__, true, false, b.p, b.len, ACCEPT, LEN, 2, "8 KiB of headers accepted", lim);
    /* One header line over max_line (8 KiB) is 431 even in a small head;
     * one of exactly max_line bytes before its CRLF passes. */
    for (int over = 0; over <= 1; over++) {
        b.len = 0;
        ADD("GET / HTTP/1.1\r\nHost: a\r\nX-Big: ");
        size_t fill = lim->max_line - 7 + (size_t)over;
        memset(b.p + b.len, 'z', fill);
        b.len += fill;
        ADD("\r\n\r\n");
        if (over)
            check(__LINE__, true, false, b.p, b.len, 431, ANY, ANY, "header line over max_line",
                  lim);
        else
            check(__LINE__, true, false, b.p, b.len, ACCEPT, NONE, 0,
                  "header line of exactly max_line", lim);
    }
    /* A small configured limit. */
    struct http1_limits small = {.max_line = 32, .max_head = 64, .max_headers = 2, .max_body = 10};
    static const char over_head[] = "GET / HTTP/1.1\r\nHost: a\r\nX: 0123456789012345678901234567"
                                    "890123456789\r\n\r\n";
    static const char over_body[] = "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n";
    static const char over_line[] = "GET /0123456789012345678 HTTP/1.1\r\nHost: a\r\n\r\n";
    check(__LINE__, true, false, over_head, strlen(over_head), 431, ANY, ANY,
          "small limits: head over 64 bytes", &small);
    check(__LINE__, true, false, over_body, strlen(over_body), 413, ANY, ANY,
          "small limits: CL 11 over max_body 10", &small);
    check(__LINE__, true, false, over_line, strlen(over_line), 414, ANY, ANY,
          "small limits: line of 35 bytes", &small);
    /* max_head is inclusive: a head of exactly 64 bytes passes, 65 does not. */
    static const char h64[] = "GET / HTTP/1.1\r\nHost: a\r\n"
                              "X: 01234567890123456789012345678901\r\n\r\n";
    static const char h65[] = "GET / HTTP/1.1\r\nHost: a\r\n"
                              "X: 012345678901234567890123456789012\r\n\r\n";
    small.max_line = 64;
    check(__LINE__, true, false, h64, strlen(h64), ACCEPT, NONE, 0, "head of exactly max_head",
          &small);
    check(__LINE__, true, false, h65, strlen(h65), 431, ANY, ANY, "head of max_head + 1", &small);
    struct http1_limits unlimited = *lim;
    unlimited.max_body = 0;
    check(__LINE__, true, false, PRE "Content-Length: 1000000000000\r\n\r\n",
          strlen(PRE "Content-Length: 1000000000000\r\n\r\n"), ACCEPT, LEN, 1000000000000LL,
          "max_body 0 = unlimited", &unlimited);
#undef ADD
    free(b.p);
}

/* ---------------------------------------------------------------- responses */

struct resp_case {
    int line;
    const char *raw;
    size_t len;
    bool head; /* the request was HEAD */
    int want;
    int framing;
    long long cl;
    int status;
    int keep_alive; /* 0, 1, or ANY */
    bool cl_and_te;
    const char *why;
};

#define RESP(raw, head, want, fr, cl, st, ka, clte, why)                                           \
    {__LINE__, raw, sizeof(raw) - 1, head, want, fr, cl, st, ka, clte, why}

static const struct resp_case resp_cases[] = {
    RESP("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false, ACCEPT, LEN, 5, 200, 1,
         false, "CL response"),
    RESP("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
         "\r\n1a\r\ndata: {\"choices\":[]}\n\n\r\n",
         false, ACCEPT, CHUNKED, 0, 200, 1, false, "SSE chunked response"),
    RESP("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", false,
         ACCEPT, CHUNKED, ANY, 200, 0, true, "R-01 CL+TE: chunked, cl_and_te, no reuse"),
    RESP("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", false,
         ACCEPT, CHUNKED, ANY, 200, 0, true, "R-01 TE+CL"),
    RESP("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: gzip\r\n\r\n", false, 502,
         ANY, ANY, 0, ANY, false, "R-01 CL with non-chunked TE"),
    RESP("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", false, 502, ANY,
         ANY, 0, ANY, false, "R-02 two CLs"),
    RESP("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", false, 502, ANY,
         ANY, 0, ANY, false, "R-02 two identical CLs"),
    RESP("HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n", false, 502, ANY, ANY, 0, ANY, false,
         "R-02 CL abc"),
    RESP("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", false, 502, ANY, ANY, 0, ANY, false,
         "R-02 CL -1"),
    RESP("SSH-2.0-x\r\n\r\n", false, 502, ANY, ANY, 0, ANY, false, "R-03 SSH banner"),
    RESP("HTTP/1.1 2x0 OK\r\n\r\n", false, 502, ANY, ANY, 0, ANY, false, "R-03 status 2x0"),
    RESP("HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", false, 502, ANY, ANY, 0, ANY, false,
         "R-03 obs-fold"),
    RESP("HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n", false, 502, ANY, ANY, 0, ANY, false,
         "bare CR in response header"),
    RESP("HTTP/1.1 200 OK\nContent-Length: 0\n\n", false, 502, ANY, ANY, 0, ANY, false,
         "bare LF response"),
    RESP("HTTP/1.1 200 OK\r\nX : a\r\n\r\n", false, 502, ANY, ANY, 0, ANY, false,
         "space before colon in response"),
    RESP("HTTP/1.1 200 OK\r\nX: a\x00\r\n\r\n", false, 502, ANY, ANY, 0, ANY, false,
         "NUL in response header"),
    RESP("HTTP/1.1 200 OK\rX\r\n\r\n", false, 502, ANY, ANY, 0, ANY, false,
         "bare CR in status line"),
    RESP("HTTP/1.1 200 O\x01K\r\n\r\n", false, 502, ANY, ANY, 0, ANY, false, "CTL in reason"),
    RESP("HTTP/1.1 099 X\r\n\r\n", false, 502, ANY, ANY, 0, ANY, false, "status 099"),
    RESP("HTTP/1.1 600 X\r\n\r\n", false, 502, ANY, ANY, 0, ANY, false, "status 600"),
    RESP("HTTP/1.1 20 OK\r\n\r\n", false, 502, ANY, ANY, 0, ANY, false, "two-digit status"),
    RESP("HTTP/1.1 2000 OK\r\n\r\n", false, 502, ANY, ANY, 0, ANY, false, "four-digit status"),
    RESP("HTTP/1.1  200 OK\r\n\r\n", false, 502, ANY, ANY, 0, ANY, false, "two spaces"),
    RESP("HTTP/2 200 OK\r\n\r\n", false, 502, ANY, ANY, 0, ANY, false, "HTTP/2 status line"),
    RESP("HTTP/2.0 200 OK\r\n\r\n", false, 502, ANY, ANY, 0, ANY, false, "HTTP/2.0 version"),
    RESP("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false, 502, ANY, ANY, 0, ANY,
         false, "TE in HTTP/1.0 response"),
    RESP("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
         false, 502, ANY, ANY, 0, ANY, false, "two TE lines in response"),
    RESP("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", false, 502, ANY, ANY, 0,
         ANY, false, "chunked not final, but present"),
    RESP("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false, 502, ANY, ANY, 0, ANY,
         false, "TE without chunked: 502 (relayed without its hop-by-hop TE it would be unlabelled)"),
    RESP("HTTP/1.1 100 Continue\r\n\r\n", false, ACCEPT, NONE, 0, 100, ANY, false, "1xx"),
    RESP("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\n\r\n", false, ACCEPT,
         NONE, 0, 103, ANY, false, "103 then the final response"),
    RESP("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", false, ACCEPT, NONE, 0, 204, 1,
         false, "204 has no body"),
    RESP("HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n", false, ACCEPT, NONE,
         0, 304, ANY, false, "304 has no body"),
    RESP("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true, ACCEPT, NONE, 0, 200, 1, false,
         "response to HEAD has no body"),
    RESP("HTTP/1.1 200 OK\r\n\r\nstream until close", false, ACCEPT, CLOSE, 0, 200, 0, false,
         "no CL/TE: close-delimited, not reusable"),
    RESP("HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nabc", false, ACCEPT, LEN, 3, 200, 0, false,
         "HTTP/1.0 response closes"),
    RESP("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\nabc", false,
         ACCEPT, LEN, 3, 200, 1, false, "HTTP/1.0 keep-alive response"),
    RESP("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\nabc", false, ACCEPT,
         LEN, 3, 200, 0, false, "Connection: close response"),
    RESP("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", false, ACCEPT, NONE, 0, 200, 1, false,
         "no reason phrase"),
    RESP("HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n", false, ACCEPT, NONE, 0, 200, 1, false,
         "empty reason phrase"),
    RESP("HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n", false,
         ACCEPT, NONE, 0, 429, 1, false, "429"),
    RESP("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n", false, PARTIAL, ANY, ANY, 0, ANY, false,
         "incomplete response"),
    RESP("SSH-2.0-OpenSSH_9.2\r\n", false, 502, ANY, ANY, 0, ANY, false,
         "SSH banner refused at its line end, no head needed"),
    RESP("HTTP/1.1 999 X\r\nContent-Length: 5\r\n", false, 502, ANY, ANY, 0, ANY, false,
         "bad status refused before the head ends"),
};

static void test_response_table(void)
{
    for (size_t i = 0; i < ARRAY_SIZE(resp_cases); i++) {
        const struct resp_case *c = &resp_cases[i];
        struct fuzz_summary w;
        bool agree = parse_all_ways(false, c->head, c->raw, c->len, &http1_default_limits, &w);
        bool good;
        if (c->want == ACCEPT)
            good = w.rc > 0 && (size_t)w.rc == head_len(c->raw, c->len) &&
                   w.framing == c->framing &&
                   (c->cl == ANY || w.content_length == (uint64_t)c->cl) &&
                   w.status == c->status &&
                   (c->keep_alive == ANY || w.keep_alive == c->keep_alive) &&
                   w.cl_and_te == c->cl_and_te;
        else if (c->want == PARTIAL)
            good = w.rc == -2;
        else
            good = w.rc == -1 && w.error == c->want;
        if (!ok(agree && good, "line %d: %s", c->line, c->why))
            note("  got rc %d error %d framing %d status %d keep_alive %d cl_and_te %d", w.rc,
                 w.error, w.framing, w.status, w.keep_alive, w.cl_and_te);
    }
    /* too many headers in a response is 502, not 431. */
    char *raw = xmalloc(8192);
    size_t len = (size_t)snprintf(raw, 8192, "HTTP/1.1 200 OK\r\n");
    for (unsigned i = 0; i <= http1_default_limits.max_headers; i++)
        len += (size_t)snprintf(raw + len, 8192 - len, "X-%u: 1\r\n", i);
    len += (size_t)snprintf(raw + len, 8192 - len, "\r\n");
    check(__LINE__, false, false, raw, len, 502, ANY, ANY, "R-04 too many response headers",
          &http1_default_limits);
    free(raw);
}

/* ---------------------------------------------------------------- chunked */

struct chunk_result {
    enum http1_chunk_rc rc;
    size_t consumed; /* total bytes consumed from the input */
    char *data;      /* decoded bytes (malloc) */
    size_t dlen;
};

/* Decodes <body> delivered in pieces ending at <cuts>, as a relay would: the
 * unconsumed rest of one read stays in front of the next. Each call's input
 * sits at the guard page. */
static void decode(const char *body, size_t len, const size_t *cuts, size_t ncuts,
                   struct chunk_result *r)
{
    struct http1_chunked d = {0};
    size_t pos = 0;
    r->rc = HTTP1_CHUNK_MORE;
    r->data = xmalloc(len + 1);
    r->dlen = 0;
    for (size_t k = 0; k <= ncuts; k++) {
        size_t avail = k < ncuts ? cuts[k] : len;
        while (pos < avail) {
            size_t used = 0;
            struct slice data = {0};
            const char *b = at_guard(body + pos, avail - pos);
            r->rc = http1_chunked_decode(&d, b, avail - pos, &used, &data);
            BUG_ON(used > avail - pos);
            pos += used;
            if (r->rc == HTTP1_CHUNK_DATA) {
                BUG_ON(data.p < b || data.p + data.len > b + (avail - pos + used));
                memcpy(r->data + r->dlen, data.p, data.len);
                r->dlen += data.len;
                continue;
            }
            if (r->rc != HTTP1_CHUNK_MORE)
                goto out;
        }
        if (k == ncuts)
            break;
    }
    if (r->rc == HTTP1_CHUNK_DATA)
        r->rc = HTTP1_CHUNK_MORE; /* all input taken, body not finished */
out:
    r->consumed = pos;
}

/* Decodes whole, byte by byte and in random splits; all must agree. */
static bool decode_all_ways(const char *body, size_t len, struct chunk_result *whole)
{
    size_t *cuts = xmalloc((len + 16) * sizeof(*cuts));
    bool agree = true;
    decode(body, len, NULL, 0, whole);
    for (int way = 0; way < 9 && agree; way++) {
        struct chunk_result r;
        size_t n;
        if (way == 0) {
            for (n = 0; n + 1 < len; n++)
                cuts[n] = n + 1;
        } else {
            n = random_cuts(len, cuts, 8);
        }
        decode(body, len, cuts, n, &r);
        agree = r.rc == whole->rc && r.dlen == whole->dlen &&
                memcmp(r.data, whole->data, r.dlen) == 0 &&
                (r.rc == HTTP1_CHUNK_ERROR || r.consumed == whole->consumed);
        if (!agree)
            note("  way %d: rc %d consumed %zu dlen %zu; whole: rc %d consumed %zu dlen %zu", way,
                 r.rc, r.consumed, r.dlen, whole->rc, whole->consumed, whole->dlen);
        free(r.data);
    }
    free(cuts);
    return agree;
}

struct chunk_case {
    int line;
    const char *raw;
    size_t len;
    enum http1_chunk_rc want;
    const char *data; /* decoded bytes, for DONE and MORE */
    size_t rest;      /* DONE: bytes left after the body */
    const char *why;
};

#define CK(raw, want, data, rest, why) {__LINE__, raw, sizeof(raw) - 1, want, data, rest, why}
#define DONE HTTP1_CHUNK_DONE
#define MORE HTTP1_CHUNK_MORE
#define ERR HTTP1_CHUNK_ERROR

static const struct chunk_case chunk_cases[] = {
    CK("5\r\nhello\r\n0\r\n\r\n", DONE, "hello", 0, "one chunk"),
    CK("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", DONE, "hello world", 0, "two chunks"),
    CK("a\r\n0123456789\r\nA\r\nabcdefghij\r\n0\r\n\r\n", DONE, "0123456789abcdefghij", 0,
       "hex a and A"),
    CK("0\r\n\r\n", DONE, "", 0, "empty body"),
    CK("000\r\n\r\n", DONE, "", 0, "last chunk 000"),
    CK("01\r\nZ\r\n0\r\n\r\n", DONE, "Z", 0, "leading zero in size"),
    CK("1;foo=bar\r\nZ\r\n0\r\n\r\n", DONE, "Z", 0, "positive: chunk-ext 1;foo=bar"),
    CK("1;a;b=\"c d\"\r\nZ\r\n0;x\r\n\r\n", DONE, "Z", 0, "chunk-ext list, quoted"),
    CK("0\r\nX-T: 1\r\n\r\n", DONE, "", 0, "positive: trailer X-T: 1"),
    CK("1\r\nZ\r\n0\r\nX-T: 1\r\nX-U:2\r\n\r\n", DONE, "Z", 0, "two trailers"),
    CK("1\r\nZ\r\n0\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\nHost: x\r\n\r\n", DONE,
       "Z", 0, "P-24 CL/TE/Host trailers dropped, data unchanged"),
    CK("1\r\nZ\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n", DONE, "Z", 18, "stops at the end of body"),
    CK("5\r\nhel", MORE, "hel", 0, "incomplete data"),
    CK("5\r\nhello\r\n", MORE, "hello", 0, "waiting for the next size"),
    CK("FFFFFFFFFFFFFFFF\r\nab", MORE, "ab", 0, "16 hex digits of size"),
    CK("0x1\r\nZ\r\n0\r\n\r\n", ERR, "", 0, "P-19 size 0x1"),
    CK("+1\r\nZ\r\n0\r\n\r\n", ERR, "", 0, "P-19 size +1"),
    CK("-1\r\nZ\r\n0\r\n\r\n", ERR, "", 0, "P-19 size -1"),
    CK("1_0\r\n", ERR, "", 0, "P-19 size 1_0"),
    CK(" 1\r\nZ\r\n0\r\n\r\n", ERR, "", 0, "P-19 size SP 1"),
    CK("1 \r\nZ\r\n0\r\n\r\n", ERR, "", 0, "P-19 size 1 SP"),
    CK("1\t;a\r\nZ\r\n0\r\n\r\n", ERR, "", 0, "P-19 size HTAB ext"),
    CK("\r\nZ\r\n0\r\n\r\n", ERR, "", 0, "P-19 empty size line"),
    CK(";a\r\n", ERR, "", 0, "P-19 extension without size"),
    CK("g\r\n", ERR, "", 0, "P-19 not hex"),
    CK("FFFFFFFFFFFFFFFFF1\r\n", ERR, "", 0, "P-20 beyond 64 bits"),
    CK("10000000000000000\r\n", ERR, "", 0, "P-20 2^64"),
    CK("00000000000000000001\r\n", ERR, "", 0, "P-20 twenty digits"),
    CK("1;a\rb\r\nZ\r\n0\r\n\r\n", ERR, "", 0, "P-21 bare CR in ext"),
    CK("1;a\nb\r\nZ\r\n0\r\n\r\n", ERR, "", 0, "P-21 bare LF in ext"),
    CK("1;a\x00\r\nZ\r\n", ERR, "", 0, "P-21 NUL in ext"),
    CK("1\r\nZZ\r\n0\r\n\r\n", ERR, "Z", 0, "P-22 data longer than size"),
    CK("1\r\nZ0\r\n\r\n", ERR, "Z", 0, "P-22 missing CRLF after data"),
    CK("1\r\nZ\r0\r\n\r\n", ERR, "Z", 0, "P-22 CR without LF after data"),
    CK("1\r\nZ\n0\r\n\r\n", ERR, "Z", 0, "P-22/23 bare LF after data"),
    CK("1\nZ\n0\n\n", ERR, "", 0, "P-23 bare LF chunk lines"),
    CK("1\r\nZ\r\n0\n\n", ERR, "Z", 0, "P-23 bare LF last chunk"),
    CK("0\r\n\n", ERR, "", 0, "P-23 bare LF final line"),
    CK("1\rZ\r\n", ERR, "", 0, "bare CR after size"),
    CK("0\r\nX: a\rb\r\n\r\n", ERR, "", 0, "bare CR in trailer"),
    CK("0\r\nX: a\nb\r\n\r\n", ERR, "", 0, "bare LF in trailer"),
    CK("0\r\nX: a\x00\r\n\r\n", ERR, "", 0, "NUL in trailer"),
    CK("0\r\n X: a\r\n\r\n", ERR, "", 0, "trailer starting with SP"),
    CK("0\r\n: a\r\n\r\n", ERR, "", 0, "trailer with empty name"),
    CK("0\r\nfoo\r\n\r\n", ERR, "", 0, "trailer without colon"),
    CK("0\r\nX : a\r\n\r\n", ERR, "", 0, "trailer SP before colon"),
    CK("0\r\nX(: a\r\n\r\n", ERR, "", 0, "trailer bad name byte"),
    CK("0\r\n\rX", ERR, "", 0, "CR then not LF at the end"),
};

static void test_chunked_table(void)
{
    for (size_t i = 0; i < ARRAY_SIZE(chunk_cases); i++) {
        const struct chunk_case *c = &chunk_cases[i];
        struct chunk_result w;
        bool agree = decode_all_ways(c->raw, c->len, &w);
        size_t dl = strlen(c->data);
        bool good = w.rc == c->want && w.dlen == dl && memcmp(w.data, c->data, dl) == 0 &&
                    (c->want != DONE || w.consumed == c->len - c->rest);
        if (!ok(agree && good, "line %d: %s", c->line, c->why))
            note("  got rc %d dlen %zu consumed %zu", w.rc, w.dlen, w.consumed);
        free(w.data);
    }
}

/* Generated chunked bodies: extension and trailer limits, and an SSE-like
 * stream of random chunk sizes whose decoded bytes must come out unchanged. */
static void test_chunked_generated(void)
{
    size_t cap = 1 << 17;
    char *b = xmalloc(cap);
    struct chunk_result w;
    for (int over = 0; over < 2; over++) {
        size_t n = (size_t)snprintf(b, cap, "1;");
        size_t ext = 4096 + (size_t)over; /* bytes after the ';' */
        memset(b + n, 'e', ext);
        n += ext;
        n += (size_t)snprintf(b + n, cap - n, "\r\nZ\r\n0\r\n\r\n");
        bool agree = decode_all_ways(b, n, &w);
        ok(agree && w.rc == (over ? ERR : DONE),
           over ? "P-21 chunk-ext over 4 KiB refused" : "chunk-ext of 4 KiB accepted");
        free(w.data);
    }
    for (int over = 0; over < 2; over++) {
        size_t n = (size_t)snprintf(b, cap, "0\r\n");
        size_t lines = over ? 1000 : 500;
        for (size_t i = 0; i < lines; i++)
            n += (size_t)snprintf(b + n, cap - n, "X-T%04zu: 1\r\n", i);
        n += (size_t)snprintf(b + n, cap - n, "\r\n");
        bool agree = decode_all_ways(b, n, &w);
        ok(agree && w.rc == (over ? ERR : DONE), over ? "12 KiB of trailers refused"
                                                      : "6 KiB of trailers accepted");
        free(w.data);
    }
    {
        size_t n = (size_t)snprintf(b, cap, "0\r\n");
        memset(b + n, 'N', 9000);
        n += 9000;
        n += (size_t)snprintf(b + n, cap - n, ": v\r\n\r\n");
        bool agree = decode_all_ways(b, n, &w);
        ok(agree && w.rc == ERR, "trailer name over the trailer limit refused");
        free(w.data);
    }
    /* SSE stream */
    char *want = xmalloc(cap);
    size_t n = 0, wl = 0;
    for (int ev = 0; ev < 200; ev++) {
        char line[128];
        int ll = snprintf(line, sizeof(line), "data: {\"id\":%d,\"choices\":[{\"delta\":"
                                              "{\"content\":\"tok%d\"}}]}\n\n", ev, ev);
        n += (size_t)snprintf(b + n, cap - n, ev % 3 ? "%x\r\n" : "%X;n=%d\r\n", ll, ev);
        memcpy(b + n, line, (size_t)ll);
        memcpy(want + wl, line, (size_t)ll);
        n += (size_t)ll;
        wl += (size_t)ll;
        n += (size_t)snprintf(b + n, cap - n, "\r\n");
    }
    n += (size_t)snprintf(b + n, cap - n, "0\r\n\r\n");
    bool agree = decode_all_ways(b, n, &w);
    ok(agree && w.rc == DONE && w.dlen == wl && memcmp(w.data, want, wl) == 0 && w.consumed == n,
       "SSE stream of 200 chunks decodes to the same bytes every way");
    free(w.data);
    /* After DONE the decoder stays done and consumes nothing more. */
    struct http1_chunked d = {0};
    size_t used;
    struct slice data;
    enum http1_chunk_rc rc = http1_chunked_decode(&d, "0\r\n\r\nXY", 7, &used, &data);
    ok(rc == DONE && used == 5, "DONE consumes through the final CRLF");
    rc = http1_chunked_decode(&d, "XY", 2, &used, &data);
    ok(rc == DONE && used == 0, "a finished decoder consumes nothing");
    free(want);
    free(b);
}

int main(void)
{
    guard_init(1 << 17);
    test_request_table();
    test_request_fields();
    test_keep_alive();
    test_conn_semantics();
    test_conn_bound();
    test_conn_cost();
    test_te_obfuscation();
    test_limits();
    test_response_table();
    test_chunked_table();
    test_chunked_generated();
    return done_testing();
}
