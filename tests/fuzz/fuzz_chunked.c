/* SPDX-License-Identifier: MIT
 * libFuzzer target: the chunked decoder. The first two bytes pick the read
 * split (as in fuzz_http1.h); the rest is a chunked body. Invariants: every
 * call consumes at most what it was given, DATA slices lie inside the input
 * and are never empty, the decoded bytes, the verdict and the bytes consumed
 * are the same whatever the split, and re-encoding the decoded bytes as one
 * chunk decodes back to the same bytes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_http1.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct decoded {
    enum http1_chunk_rc rc;
    size_t consumed;
    char *data;
    size_t dlen;
};

/* Decodes <in>/<len> delivered in pieces ending at <cuts>; the unconsumed
 * rest of one piece stays in front of the next, as in a relay buffer. */
static void decode(const char *in, size_t len, const size_t *cuts, size_t ncuts,
                   struct decoded *r)
{
    struct http1_chunked d = {0};
    size_t pos = 0;
    r->rc = HTTP1_CHUNK_MORE;
    r->data = malloc(len + 1);
    FUZZ_CHECK(r->data != NULL);
    r->dlen = 0;
    for (size_t k = 0; k <= ncuts; k++) {
        size_t avail = k < ncuts ? cuts[k] : len;
        while (pos < avail) {
            size_t n = avail - pos, used = (size_t)-1;
            struct slice s = {0};
            char *b = malloc(n);
            FUZZ_CHECK(b != NULL);
            memcpy(b, in + pos, n);
            r->rc = http1_chunked_decode(&d, b, n, &used, &s);
            if (r->rc == HTTP1_CHUNK_ERROR) {
                FUZZ_CHECK(d.error_reason != NULL);
                free(b);
                goto out;
            }
            FUZZ_CHECK(used <= n);
            if (r->rc == HTTP1_CHUNK_MORE)
                FUZZ_CHECK(used == n);
            if (r->rc == HTTP1_CHUNK_DATA) {
                FUZZ_CHECK(s.len > 0 && s.p >= b && s.p + s.len == b + used);
                memcpy(r->data + r->dlen, s.p, s.len);
                r->dlen += s.len;
            }
            pos += used;
            free(b);
            if (r->rc == HTTP1_CHUNK_DONE)
                goto out;
        }
    }
    if (r->rc == HTTP1_CHUNK_DATA)
        r->rc = HTTP1_CHUNK_MORE;
out:
    r->consumed = pos;
}

/* ---------------------------------------------------------------- reference
 *
 * A second, non-incremental decoder written straight from the grammar of
 * RFC 9112 §7.1 and the limits in http1.c (16 hex digits, 4 KiB of
 * extension, 8 KiB of trailer bytes counting CR but not LF). It sees the
 * whole input at once; the real one must agree on verdict, bytes and
 * consumed count. */

static bool ref_tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static int ref_hex(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

#define REF_CRLF(in, len, pos)                                                                     \
    do {                                                                                           \
        if (pos == len)                                                                            \
            goto more;                                                                             \
        if (in[pos] != '\r')                                                                       \
            goto error;                                                                            \
        if (++pos == len)                                                                          \
            goto more;                                                                             \
        if (in[pos] != '\n')                                                                       \
            goto error;                                                                            \
        pos++;                                                                                     \
    } while (0)

static void ref_decode(const char *in, size_t len, struct decoded *r)
{
    const unsigned char *u = (const unsigned char *)in;
    size_t pos = 0;
    r->data = malloc(len + 1);
    FUZZ_CHECK(r->data != NULL);
    r->dlen = 0;
    for (;;) {
        uint64_t size = 0;
        int digits = 0;
        while (pos < len && ref_hex(u[pos]) >= 0) {
            if (digits == 16)
                goto error;
            size = size << 4 | (uint64_t)ref_hex(u[pos++]);
            digits++;
        }
        if (pos == len)
            goto more;
        if (digits == 0)
            goto error;
        if (u[pos] == ';') {
            size_t ext = 0;
            for (pos++; pos < len && u[pos] != '\r'; pos++)
                if ((u[pos] < 0x20 && u[pos] != '\t') || u[pos] == 0x7f || ++ext > 4096)
                    goto error;
        }
        REF_CRLF(in, len, pos);
        if (size == 0)
            break;
        size_t n = len - pos < size ? len - pos : (size_t)size;
        memcpy(r->data + r->dlen, in + pos, n);
        r->dlen += n;
        pos += n;
        if (n < size)
            goto more;
        REF_CRLF(in, len, pos);
    }
    size_t tb = 0;
    for (;;) { /* trailer lines, then the final CRLF */
        if (pos == len)
            goto more;
        if (u[pos] == '\r') {
            REF_CRLF(in, len, pos);
            r->rc = HTTP1_CHUNK_DONE;
            r->consumed = pos;
            return;
        }
        if (!ref_tchar(u[pos]))
            goto error;
        tb++, pos++; /* the first byte of a line is counted, not checked */
        while (pos < len && u[pos] != ':') {
            if (!ref_tchar(u[pos]) || ++tb > 8192)
                goto error;
            pos++;
        }
        if (pos == len)
            goto more;
        if (++tb > 8192)
            goto error;
        for (pos++; pos < len && u[pos] != '\r'; pos++)
            if ((u[pos] < 0x20 && u[pos] != '\t') || u[pos] == 0x7f || ++tb > 8192)
                goto error;
        if (pos < len && ++tb > 8192)
            goto error;
        REF_CRLF(in, len, pos);
    }
more:
    r->rc = HTTP1_CHUNK_MORE;
    r->consumed = len;
    return;
error:
    r->rc = HTTP1_CHUNK_ERROR;
    r->consumed = pos;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    const char *in = (const char *)data + 2;
    size_t len = size - 2;
    struct decoded whole, split;
    decode(in, len, NULL, 0, &whole);
    size_t *cuts = malloc((len + 16) * sizeof(*cuts));
    FUZZ_CHECK(cuts != NULL);
    size_t ncuts = fuzz_cuts(data, len, cuts);
    decode(in, len, cuts, ncuts, &split);
    free(cuts);
    FUZZ_CHECK(whole.rc == split.rc && whole.dlen == split.dlen &&
               memcmp(whole.data, split.data, whole.dlen) == 0);
    if (whole.rc != HTTP1_CHUNK_ERROR)
        FUZZ_CHECK(whole.consumed == split.consumed);
    if (whole.rc == HTTP1_CHUNK_MORE)
        FUZZ_CHECK(whole.consumed == len);
    struct decoded ref;
    ref_decode(in, len, &ref);
    FUZZ_CHECK(ref.rc == whole.rc && ref.dlen == whole.dlen &&
               memcmp(ref.data, whole.data, ref.dlen) == 0);
    if (ref.rc == HTTP1_CHUNK_DONE)
        FUZZ_CHECK(ref.consumed == whole.consumed);
    free(ref.data);

    /* Re-encode what a finished body decoded to, and decode that. */
    if (whole.rc == HTTP1_CHUNK_DONE) {
        char *enc = malloc(whole.dlen + 64);
        FUZZ_CHECK(enc != NULL);
        size_t n = 0;
        if (whole.dlen > 0) {
            n = (size_t)sprintf(enc, "%zx\r\n", whole.dlen);
            memcpy(enc + n, whole.data, whole.dlen);
            n += whole.dlen;
            memcpy(enc + n, "\r\n", 2);
            n += 2;
        }
        memcpy(enc + n, "0\r\n\r\n", 5);
        n += 5;
        struct decoded again;
        decode(enc, n, NULL, 0, &again);
        FUZZ_CHECK(again.rc == HTTP1_CHUNK_DONE && again.consumed == n &&
                   again.dlen == whole.dlen && memcmp(again.data, whole.data, whole.dlen) == 0);
        free(again.data);
        free(enc);
    }
    free(whole.data);
    free(split.data);
    return 0;
}
