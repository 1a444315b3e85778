/* SPDX-License-Identifier: MIT
 * Strict HTTP/1.1 head parser and chunked decoder. The rules and the status
 * each violation maps to are listed in docs/http1.md. */
#include <errno.h>
#include <string.h>

#include "http1.h"
#include "util.h"

const struct http1_limits http1_default_limits = {
    .max_line = 8192,
    .max_head = 32768,
    .max_headers = 100,
    .max_body = 32u << 20,
};

static _Thread_local struct http1_header scratch_headers[HTTP1_MAX_HEADERS];

_Thread_local unsigned long http1_conn_cmps;

/* tchar (RFC 9110 §5.6.2) */
static const unsigned char is_tchar[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1, ['+'] = 1,
    ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1, ['~'] = 1,
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1,
    ['8'] = 1, ['9'] = 1,
    ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1,
    ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1,
    ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1,
    ['Y'] = 1, ['Z'] = 1,
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1,
    ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1,
    ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1,
    ['y'] = 1, ['z'] = 1,
};

/* field-vchar / SP / HTAB / obs-text: every byte but CTLs (HTAB allowed) and DEL. */
static inline bool is_value_char(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

/* Request-target bytes: visible ASCII only (no spaces, no CTLs, no obs-text),
 * and no '#': a fragment is never part of a request-target (RFC 9112 §3.2),
 * and servers disagree on whether to cut the path there. */
static inline bool is_target_char(unsigned char c)
{
    return c > 0x20 && c < 0x7f && c != '#';
}

void http1_msg_reset(struct http1_msg *m)
{
    struct http1_header *h = m->headers;
    memset(m, 0, sizeof(*m));
    m->headers = h;
}

static int fail(struct http1_msg *m, int status, const char *why)
{
    m->error = status;
    m->error_reason = why;
    return -1;
}

/* Parses "HTTP/1.x" at <p>; returns the minor version, -505 for another
 * well-formed version, or -1 for garbage. */
static int parse_version(const char *p, size_t len)
{
    if (len != 8 || memcmp(p, "HTTP/", 5) != 0 || p[6] != '.')
        return -1;
    if (p[5] < '0' || p[5] > '9' || p[7] < '0' || p[7] > '9')
        return -1;
    if (p[5] == '1' && (p[7] == '0' || p[7] == '1'))
        return p[7] - '0';
    return -505;
}

/* Parses the request line ending at <line_end> (its first CR): method SP
 * target SP version, and sets method, target and minor. Returns 0 or -1. */
static int request_line(const char *buf, const char *line_end, struct http1_msg *m)
{
    const char *p = buf;
    /* method SP target SP version: exactly one space between, nothing else */
    const char *sp1 = p;
    while (sp1 < line_end && is_tchar[(unsigned char)*sp1])
        sp1++;
    if (sp1 == p || sp1 == line_end || *sp1 != ' ')
        return fail(m, 400, "bad method");
    const char *t = sp1 + 1, *sp2 = t;
    while (sp2 < line_end && is_target_char((unsigned char)*sp2))
        sp2++;
    if (sp2 == t || sp2 == line_end || *sp2 != ' ')
        return fail(m, 400, "bad request target");
    int minor = parse_version(sp2 + 1, (size_t)(line_end - sp2 - 1));
    if (minor == -505)
        return fail(m, 505, "HTTP version not supported");
    if (minor < 0)
        return fail(m, 400, "bad HTTP version");
    m->method = slice_make(p, (size_t)(sp1 - p));
    m->target = slice_make(t, (size_t)(sp2 - t));
    m->minor = minor;
    if (m->target.p[0] != '/') {
        bool star = m->target.len == 1 && m->target.p[0] == '*';
        /* CONNECT's authority-form parses, so the caller can refuse the
         * method itself (405) rather than call it malformed. */
        size_t scheme = slice_starts_with(m->target, "http://")    ? 7
                        : slice_starts_with(m->target, "https://") ? 8
                                                                   : 0;
        if (!(star && slice_eq_cstr(m->method, "OPTIONS")) &&
            !slice_eq_cstr(m->method, "CONNECT") && scheme == 0)
            return fail(m, 400, "bad request target");
        /* absolute-form needs an authority: "http://" or "http:///x" is not a URI */
        if (scheme != 0 && (m->target.len == scheme || m->target.p[scheme] == '/'))
            return fail(m, 400, "absolute-form without authority");
    }
    if (line_end[1] != '\n')
        return fail(m, 400, "bare CR in request line");
    return 0;
}

/* Parses the status line ending at <line_end> (its first CR) and sets
 * status, reason and minor. Returns 0 or -1 (502). */
static int status_line(const char *buf, const char *line_end, struct http1_msg *m)
{
    if (line_end - buf < 12 || buf[8] != ' ')
        return fail(m, 502, "bad status line");
    int minor = parse_version(buf, 8);
    if (minor < 0)
        return fail(m, 502, "bad HTTP version in response");
    int st = 0;
    for (int i = 9; i < 12; i++) {
        if (buf[i] < '0' || buf[i] > '9')
            return fail(m, 502, "bad status code");
        st = st * 10 + (buf[i] - '0');
    }
    if (st < 100 || st > 599)
        return fail(m, 502, "bad status code");
    if (line_end - buf > 12) {
        if (buf[12] != ' ')
            return fail(m, 502, "bad status line");
        for (const char *q = buf + 13; q < line_end; q++)
            if (!is_value_char((unsigned char)*q))
                return fail(m, 502, "bad reason phrase");
        m->reason = slice_make(buf + 13, (size_t)(line_end - buf - 13));
    } else {
        m->reason = slice_make(buf + 12, 0);
    }
    if (line_end[1] != '\n')
        return fail(m, 502, "bare CR in status line");
    m->status = st;
    m->minor = minor;
    return 0;
}

/* Checks the limits a prefix of <len> bytes without a complete head breaks. */
static int check_open_head(size_t len, struct http1_msg *m, const struct http1_limits *lim,
                           bool request)
{
    if (m->_lines == 0 && len - m->_line_start > lim->max_line)
        return fail(m, request ? 414 : 502, "request line too long");
    /* A header line may hold max_line bytes before its CRLF; the +1 lets the
     * CR of an unfinished line arrive before its LF. */
    if (m->_lines > 0 && len - m->_line_start > lim->max_line + 1)
        return fail(m, request ? 431 : 502, "header line too long");
    if (len > lim->max_head)
        return fail(m, request ? 431 : 502, "head too large");
    return 0;
}

/* Finds the end of the head, scanning only bytes not seen before. Every LF
 * must follow a CR; a bare LF fails at once instead of waiting for a CRLFCRLF
 * that never comes. Returns the head length, -2 or -1.
 *
 * The verdict must not depend on how the bytes were split between calls, so
 * errors are found in byte order: before looking at an LF, the limits are
 * checked for the bytes before it, exactly as a call that ended there would
 * have checked them. Otherwise a bare LF lying past max_line would answer
 * 400 to a whole read and 414 to the same bytes read in pieces. */
static int scan_head(const char *buf, size_t len, struct http1_msg *m,
                     const struct http1_limits *lim, bool request)
{
    size_t i = m->_scanned;
    while (i < len) {
        const char *lf = memchr(buf + i, '\n', len - i);
        if (lf == NULL)
            break;
        size_t pos = (size_t)(lf - buf);
        if (check_open_head(pos, m, lim, request) != 0)
            return -1;
        if (pos == 0 || buf[pos - 1] != '\r')
            return fail(m, request ? 400 : 502, "bare LF in head");
        if (m->_lines == 0 && pos + 1 > lim->max_line)
            return fail(m, request ? 414 : 502, "request line too long");
        if (m->_lines == 0 && pos > 1) {
            /* Judge the first line as soon as it is complete: a TLS hello,
             * an SSH banner or HTTP/2.0 is refused now, not after the peer
             * has sent a whole head or the timeout has run out. It is done
             * here, in byte order, so the verdict stays split-independent;
             * the parse after the head re-reads it from the final buffer. */
            const char *le = memchr(buf, '\r', pos);
            if ((request ? request_line(buf, le, m) : status_line(buf, le, m)) != 0)
                return -1;
        }
        if (pos - 1 == m->_line_start) { /* empty line: end of head */
            if (m->_lines == 0)
                return fail(m, request ? 400 : 502, "empty first line");
            if (pos + 1 > lim->max_head)
                return fail(m, request ? 431 : 502, "head too large");
            m->_scanned = pos + 1;
            return (int)(pos + 1);
        }
        m->_lines++;
        m->_line_start = pos + 1;
        i = pos + 1;
    }
    m->_scanned = len;
    if (check_open_head(len, m, lim, request) != 0)
        return -1;
    return -2;
}

/* Parses the header lines between <p> and <end> (end excludes the final
 * empty line's CRLF). Applies the field syntax rules; framing comes after. */
static int parse_headers(const char *p, const char *end, struct http1_msg *m,
                         const struct http1_limits *lim, int bad)
{
    if (m->headers == NULL)
        m->headers = scratch_headers;
    m->nheaders = 0;
    while (p < end) {
        const char *eol = memchr(p, '\r', (size_t)(end - p));
        if (eol == NULL || eol + 1 >= end + 2 || eol[1] != '\n')
            return fail(m, bad, "bare CR in header");
        if (*p == ' ' || *p == '\t')
            return fail(m, bad, "obs-fold or whitespace before header");
        const char *colon = p;
        while (colon < eol && is_tchar[(unsigned char)*colon])
            colon++;
        if (colon == eol)
            return fail(m, bad, "header without colon");
        if (*colon != ':') {
            if (*colon == ' ' || *colon == '\t')
                return fail(m, bad, "whitespace before colon");
            return fail(m, bad, "invalid character in header name");
        }
        if (colon == p)
            return fail(m, bad, "empty header name");
        const char *v = colon + 1;
        for (const char *q = v; q < eol; q++)
            if (!is_value_char((unsigned char)*q))
                return fail(m, bad, "invalid character in header value");
        if (m->nheaders >= lim->max_headers || m->nheaders >= HTTP1_MAX_HEADERS)
            return fail(m, bad == 400 ? 431 : bad, "too many headers");
        struct http1_header *h = &m->headers[m->nheaders++];
        h->name = slice_make(p, (size_t)(colon - p));
        h->value = slice_trim(slice_make(v, (size_t)(eol - v)));
        p = eol + 2;
    }
    return 0;
}

const struct http1_header *http1_find(const struct http1_msg *m, const char *name)
{
    struct slice n = slice_cstr(name);
    for (unsigned i = 0; i < m->nheaders; i++)
        if (slice_case_eq(m->headers[i].name, n))
            return &m->headers[i];
    return NULL;
}

/* Iterates over comma-separated elements; empty elements are returned too. */
static bool list_next(struct slice *list, struct slice *elem)
{
    if (list->p == NULL)
        return false;
    const char *c = memchr(list->p, ',', list->len);
    if (c == NULL) {
        *elem = slice_trim(*list);
        list->p = NULL;
        return true;
    }
    *elem = slice_trim(slice_make(list->p, (size_t)(c - list->p)));
    list->len -= (size_t)(c - list->p) + 1;
    list->p = c + 1;
    return true;
}

bool http1_list_has(struct slice list, const char *token)
{
    struct slice e;
    while (list_next(&list, &e))
        if (slice_case_eq_cstr(e, token))
            return true;
    return false;
}

/* ------------------------------------------------------- connection options
 *
 * The proxy asks http1_is_hop_by_hop() about every header of a head it
 * rewrites. Walking the Connection lists on each question made that
 * O(headers x list bytes): 90 headers and three 8 KiB lists cost 30 times a
 * plain head. So the lists are read once, during the parse, into a bounded
 * set of distinct options; a question is then a hash and at most
 * HTTP1_MAX_CONN_OPTS integer comparisons, usually none (the bloom word). */

/* FNV-1a over the lower-cased bytes: names equal under slice_case_eq()
 * hash equal. Not keyed: a sender who makes its own options collide only
 * costs itself the (bounded) byte comparisons behind an equal hash. */
static uint32_t case_hash(struct slice s)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < s.len; i++)
        h = (h ^ (unsigned char)slice_lower(s.p[i])) * 16777619u;
    return h;
}

static inline uint64_t bloom_bit(uint32_t h)
{
    return 1ull << (h >> 26);
}

/* Index of <opt> (hash <h>) in the option set, or -1. */
static int conn_opt_find(const struct http1_msg *m, struct slice opt, uint32_t h)
{
    if ((m->_conn_bloom & bloom_bit(h)) == 0)
        return -1;
    for (unsigned i = 0; i < m->nconn_opts; i++) {
        http1_conn_cmps++;
        if (m->_conn_hash[i] == h && slice_case_eq(m->conn_opts[i], opt))
            return (int)i;
    }
    return -1;
}

/* Adds the options of one Connection value (1#token, RFC 9110 §7.6.1) to
 * the set; <*listed> counts the options seen so far in the message. Empty
 * elements are ignored (§5.6.1). An element that is not a token can name no
 * header field (names are 1*tchar) nor an option we act on, so it is
 * skipped: the old walk per question never matched it either.
 *
 * The bound is on options listed, repeats included, not only on distinct
 * ones: with a bound on distinct options alone, 4000 repeats of the 32nd
 * would each probe the whole set. This way the probes of one parse are at
 * most HTTP1_MAX_CONN_OPTS^2 / 2 whatever the lists hold, and a sender that
 * repeats an option 33 times has no legitimate reason to. Returns -1 when
 * the bound is crossed. */
static int conn_opts_add(struct http1_msg *m, struct slice list, unsigned *listed)
{
    struct slice e;
    while (list_next(&list, &e)) {
        size_t k = 0;
        while (k < e.len && is_tchar[(unsigned char)e.p[k]])
            k++;
        if (e.len == 0 || k != e.len)
            continue;
        if (++*listed > HTTP1_MAX_CONN_OPTS)
            return -1;
        uint32_t h = case_hash(e);
        if (conn_opt_find(m, e, h) >= 0)
            continue;
        m->conn_opts[m->nconn_opts] = e;
        m->_conn_hash[m->nconn_opts++] = h;
        m->_conn_bloom |= bloom_bit(h);
    }
    return 0;
}

bool http1_is_hop_by_hop(const struct http1_msg *m, struct slice name)
{
    static const char *const hop[] = {"connection", "keep-alive", "proxy-connection",
                                      "proxy-authenticate", "proxy-authorization", "te",
                                      "trailer", "transfer-encoding", "upgrade"};
    for (size_t i = 0; i < ARRAY_SIZE(hop); i++)
        if (slice_case_eq_cstr(name, hop[i]))
            return true;
    return m->nconn_opts > 0 && conn_opt_find(m, name, case_hash(name)) >= 0;
}

/* Content-Length: exactly 1*DIGIT, no leading zeros (an ambiguous "007" is
 * refused rather than guessed), no lists, no overflow. */
static int parse_content_length(struct slice v, uint64_t *out)
{
    if (v.len == 0 || v.len > 19 || (v.len > 1 && v.p[0] == '0'))
        return -EINVAL;
    return util_parse_u64(v.p, v.len, 0, UINT64_MAX, out);
}

/* Transfer-Encoding: the only coding we implement is chunked, and it must
 * come last and only once. Returns 0 (chunked), or the status to answer. */
static int check_transfer_encoding(struct slice v, const char **why)
{
    struct slice list = v, e;
    unsigned n = 0, chunked = 0;
    bool last_chunked = false;
    while (list_next(&list, &e)) {
        n++;
        if (e.len == 0) {
            *why = "empty transfer coding";
            return 400;
        }
        for (size_t i = 0; i < e.len; i++)
            if (!is_tchar[(unsigned char)e.p[i]]) {
                *why = "invalid transfer coding";
                return 400;
            }
        last_chunked = slice_case_eq_cstr(e, "chunked");
        chunked += last_chunked;
    }
    if (chunked > 1) {
        *why = "chunked applied twice";
        return 400;
    }
    if (!last_chunked) {
        *why = "chunked is not the final transfer coding";
        return 400;
    }
    if (n > 1) {
        *why = "unsupported transfer coding";
        return 501;
    }
    return 0;
}

/* Applies the framing rules shared by requests and responses: at most one
 * CL and one TE header, never both in a request, syntax of each. */
static int framing(struct http1_msg *m, bool request, int bad)
{
    const struct http1_header *cl = NULL, *te = NULL;
    unsigned listed = 0;
    m->nconn_opts = 0;
    m->_conn_bloom = 0;
    for (unsigned i = 0; i < m->nheaders; i++) {
        struct http1_header *h = &m->headers[i];
        if (slice_case_eq_cstr(h->name, "content-length")) {
            if (cl != NULL)
                return fail(m, bad, "duplicate Content-Length");
            cl = h;
        } else if (slice_case_eq_cstr(h->name, "transfer-encoding")) {
            if (te != NULL)
                return fail(m, bad, "duplicate Transfer-Encoding");
            te = h;
        } else if (slice_case_eq_cstr(h->name, "connection")) {
            if (conn_opts_add(m, h->value, &listed) != 0)
                return fail(m, bad, "too many Connection options");
        }
    }
    struct slice close = SLICE_LIT("close"), keep = SLICE_LIT("keep-alive");
    bool conn_close = m->nconn_opts > 0 && conn_opt_find(m, close, case_hash(close)) >= 0;
    bool conn_keep = m->nconn_opts > 0 && conn_opt_find(m, keep, case_hash(keep)) >= 0;
    m->keep_alive = m->minor == 1 ? !conn_close : (conn_keep && !conn_close);
    if (te != NULL) {
        if (m->minor == 0)
            return fail(m, bad, "Transfer-Encoding in HTTP/1.0");
        if (cl != NULL) {
            if (request)
                return fail(m, 400, "both Content-Length and Transfer-Encoding");
            m->cl_and_te = true;
        }
        const char *why = NULL;
        int st = check_transfer_encoding(te->value, &why);
        /* A response whose final coding is not chunked would be delimited by
         * close (RFC 9112 §6.3), but Transfer-Encoding is hop-by-hop: relayed
         * without it, the client would get coded bytes it cannot tell are
         * coded. A proxy refuses it: 502. */
        if (st != 0)
            return fail(m, request ? st : 502, why);
        m->framing = HTTP1_BODY_CHUNKED;
        return 0;
    }
    if (cl != NULL) {
        if (parse_content_length(cl->value, &m->content_length) != 0)
            return fail(m, bad, "invalid Content-Length");
        m->framing = m->content_length ? HTTP1_BODY_LENGTH : HTTP1_BODY_NONE;
        return 0;
    }
    m->framing = request ? HTTP1_BODY_NONE : HTTP1_BODY_CLOSE;
    return 0;
}

int http1_parse_request(const char *buf, size_t len, struct http1_msg *m,
                        const struct http1_limits *lim)
{
    int hl = scan_head(buf, len, m, lim, true);
    if (hl < 0)
        return hl;
    const char *line_end = memchr(buf, '\r', (size_t)hl);
    if (request_line(buf, line_end, m) != 0)
        return -1;
    if (parse_headers(line_end + 2, buf + hl - 2, m, lim, 400) != 0)
        return -1;

    unsigned hosts = 0;
    for (unsigned i = 0; i < m->nheaders; i++) {
        struct http1_header *h = &m->headers[i];
        if (slice_case_eq_cstr(h->name, "host")) {
            hosts++;
            for (size_t k = 0; k < h->value.len; k++) {
                unsigned char c = (unsigned char)h->value.p[k];
                if (c <= 0x20 || c >= 0x7f || c == '/' || c == '@' || c == '\\' || c == '?' ||
                    c == '#')
                    return fail(m, 400, "invalid Host");
            }
        } else if (slice_case_eq_cstr(h->name, "expect")) {
            if (!slice_case_eq_cstr(h->value, "100-continue"))
                return fail(m, 417, "unsupported expectation");
            m->expect_continue = m->minor == 1;
        }
    }
    if (hosts > 1)
        return fail(m, 400, "duplicate Host");
    if (hosts == 0 && m->minor == 1)
        return fail(m, 400, "missing Host");
    if (framing(m, true, 400) != 0)
        return -1;
    if (m->framing == HTTP1_BODY_LENGTH && lim->max_body && m->content_length > lim->max_body)
        return fail(m, 413, "body too large");
    return hl;
}

int http1_parse_response(const char *buf, size_t len, struct http1_msg *m,
                         const struct http1_limits *lim, bool req_method_head)
{
    int hl = scan_head(buf, len, m, lim, false);
    if (hl < 0)
        return hl;
    const char *line_end = memchr(buf, '\r', (size_t)hl);
    if (status_line(buf, line_end, m) != 0)
        return -1;
    if (parse_headers(line_end + 2, buf + hl - 2, m, lim, 502) != 0)
        return -1;
    if (framing(m, false, 502) != 0)
        return -1;
    if (req_method_head || m->status < 200 || m->status == 204 || m->status == 304) {
        m->framing = HTTP1_BODY_NONE;
        m->content_length = 0;
    }
    /* A body delimited by close ends the connection by definition, and a
     * response that carried both CL and TE is a smuggling symptom whose
     * connection must not be reused (RFC 9112 §6.1, §6.3). */
    if (m->framing == HTTP1_BODY_CLOSE || m->cl_and_te)
        m->keep_alive = false;
    return hl;
}

/* ---------------------------------------------------------------- chunked */

enum {
    CK_SIZE = 0, /* reading hex digits (zeroed struct starts here) */
    CK_EXT,      /* after ';' up to CR */
    CK_SIZE_LF,  /* CR seen, want LF */
    CK_DATA,
    CK_DATA_CR,
    CK_DATA_LF,
    CK_TRAILER,  /* at the start of a trailer line or the final CRLF */
    CK_TRAILER_NAME, /* in a trailer field name, up to its colon */
    CK_TRAILER_LINE, /* in a trailer field value, up to CR */
    CK_TRAILER_LF,
    CK_FINAL_LF,
    CK_DONE,
};

#define CK_MAX_EXT 4096
#define CK_MAX_TRAILERS 8192

static enum http1_chunk_rc ck_fail(struct http1_chunked *d, const char *why)
{
    d->error_reason = why;
    return HTTP1_CHUNK_ERROR;
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* A state machine over the chunk framing (size line, data, CRLF, trailers):
 * one function, one switch, kept whole on purpose so each state's byte rules
 * read in one place. */
enum http1_chunk_rc http1_chunked_decode(struct http1_chunked *d, const char *buf, size_t len,
                                         size_t *consumed, struct slice *data)
{
    size_t i = 0;
    while (i < len) {
        unsigned char c = (unsigned char)buf[i];
        switch (d->_state) {
        case CK_SIZE: {
            int h = hexval(c);
            if (h >= 0) {
                if (d->_digits == 16 || (d->_remaining >> 60) != 0)
                    return ck_fail(d, "chunk size too large");
                d->_remaining = d->_remaining << 4 | (uint64_t)h;
                d->_digits++;
                i++;
                break;
            }
            if (d->_digits == 0)
                return ck_fail(d, "bad chunk size");
            if (c == ';') {
                d->_state = CK_EXT;
                d->_linelen = 0;
            } else if (c == '\r') {
                d->_state = CK_SIZE_LF;
            } else {
                return ck_fail(d, "bad chunk size");
            }
            i++;
            break;
        }
        case CK_EXT:
            if (c == '\r') {
                d->_state = CK_SIZE_LF;
            } else if (!is_value_char(c) || ++d->_linelen > CK_MAX_EXT) {
                return ck_fail(d, "bad chunk extension");
            }
            i++;
            break;
        case CK_SIZE_LF:
            if (c != '\n')
                return ck_fail(d, "bare CR in chunk line");
            i++;
            d->_digits = 0;
            if (d->_remaining == 0) {
                d->_state = CK_TRAILER;
                d->_trailer_bytes = 0;
            } else {
                d->_state = CK_DATA;
            }
            break;
        case CK_DATA: {
            size_t n = len - i;
            if (n > d->_remaining)
                n = (size_t)d->_remaining;
            d->_remaining -= n;
            if (d->_remaining == 0)
                d->_state = CK_DATA_CR;
            *data = slice_make(buf + i, n);
            *consumed = i + n;
            return HTTP1_CHUNK_DATA;
        }
        case CK_DATA_CR:
            if (c != '\r')
                return ck_fail(d, "chunk data longer than its size");
            d->_state = CK_DATA_LF;
            i++;
            break;
        case CK_DATA_LF:
            if (c != '\n')
                return ck_fail(d, "missing CRLF after chunk data");
            d->_state = CK_SIZE;
            i++;
            break;
        case CK_TRAILER:
            if (c == '\r') {
                d->_state = CK_FINAL_LF;
            } else if (is_tchar[c]) {
                d->_state = CK_TRAILER_NAME;
                d->_linelen = 1;
                d->_trailer_bytes++;
            } else {
                return ck_fail(d, "bad trailer");
            }
            i++;
            break;
        case CK_TRAILER_NAME:
            /* Trailers are dropped, not forwarded, but a field line that is
             * not "name: value" means the body is not what we think it is. */
            if (c == ':')
                d->_state = CK_TRAILER_LINE;
            else if (!is_tchar[c])
                return ck_fail(d, "bad trailer field name");
            if (++d->_trailer_bytes > CK_MAX_TRAILERS)
                return ck_fail(d, "trailers too large");
            i++;
            break;
        case CK_TRAILER_LINE:
            if (c == '\r') {
                d->_state = CK_TRAILER_LF;
            } else if (!is_value_char(c)) {
                return ck_fail(d, "bad trailer");
            }
            if (++d->_trailer_bytes > CK_MAX_TRAILERS)
                return ck_fail(d, "trailers too large");
            i++;
            break;
        case CK_TRAILER_LF:
            if (c != '\n')
                return ck_fail(d, "bare CR in trailer");
            d->_state = CK_TRAILER;
            i++;
            break;
        case CK_FINAL_LF:
            if (c != '\n')
                return ck_fail(d, "bare CR at end of chunked body");
            d->_state = CK_DONE;
            *consumed = i + 1;
            return HTTP1_CHUNK_DONE;
        default:
            *consumed = i;
            return HTTP1_CHUNK_DONE;
        }
    }
    *consumed = len;
    return HTTP1_CHUNK_MORE;
}

/* The reason phrase the balancer writes for <status> (RFC 9110 §15). */
const char *http1_reason(int status)
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
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}
