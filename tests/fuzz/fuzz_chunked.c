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
