/* SPDX-License-Identifier: MIT
 * Tests of the linear buffer: reserve / commit / consume / release and the
 * per-thread block cache, checked against a plain byte-array model over
 * random operation sequences, with the struct invariants after every step. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tap.h"
#include "buf.h"
#include "util.h"

/* The invariants every operation keeps (buf.h's picture). */
static bool sane(const struct buf *b)
{
    if (b->area == NULL)
        return b->cap == 0 && b->off == 0 && b->len == 0;
    return b->off + b->len <= b->cap && (b->len > 0 || b->off == 0);
}

static void test_basics(void)
{
    struct buf b = {0};
    ok(sane(&b) && buf_room(&b) == 0, "zeroed buffer is valid and empty");
    char *w = buf_reserve(&b, 10);
    ok(w == b.area && b.cap == BUF_CHUNK && b.len == 0 && sane(&b),
       "first reserve takes a standard block");
    memcpy(w, "hello", 5);
    buf_commit(&b, 5);
    ok(b.len == 5 && memcmp(buf_data(&b), "hello", 5) == 0, "commit makes bytes data");
    buf_consume(&b, 2);
    ok(b.off == 2 && b.len == 3 && memcmp(buf_data(&b), "llo", 3) == 0, "consume drops the front");
    buf_consume(&b, 3);
    ok(b.off == 0 && b.len == 0 && b.area != NULL, "emptied buffer rewinds, keeps its memory");
    char *area = b.area;
    buf_release(&b);
    ok(b.area == NULL && b.cap == 0 && sane(&b), "release of an empty buffer frees");
    buf_reserve(&b, 1);
    ok(b.area == area, "the released block comes back from the cache");
    buf_append(&b, "x", 1);
    buf_release(&b);
    ok(b.area != NULL && b.len == 1, "release keeps a buffer that holds data");
    buf_free(&b);
    ok(b.area == NULL && b.len == 0 && sane(&b), "free discards data");
    buf_free(&b);
    ok(sane(&b), "free of an empty buffer is harmless");

    /* Sliding: data at a high offset moves to the front instead of growing. */
    buf_reserve(&b, BUF_CHUNK);
    memset(b.area, 'a', BUF_CHUNK);
    buf_commit(&b, BUF_CHUNK);
    buf_consume(&b, BUF_CHUNK - 100);
    area = b.area;
    w = buf_reserve(&b, 1000);
    ok(b.area == area && b.off == 0 && b.len == 100 && w == b.area + 100 && b.cap == BUF_CHUNK,
       "reserve slides the data to the front when that makes room");
    /* Growing: data kept, capacity doubled at least. */
    w = buf_reserve(&b, BUF_CHUNK);
    ok(b.cap >= BUF_CHUNK + 100 && b.len == 100 && buf_room(&b) >= BUF_CHUNK && sane(&b),
       "reserve grows when sliding is not enough");
    size_t i;
    for (i = 0; i < 100 && buf_data(&b)[i] == 'a'; i++)
        ;
    ok(i == 100, "growing keeps the data");
    buf_free(&b);

    /* A large first reserve is an exact heap block. */
    buf_reserve(&b, 3 * BUF_CHUNK + 1);
    ok(b.cap == 3 * BUF_CHUNK + 1 && sane(&b), "large first reserve is exact");
    buf_free(&b);
    w = buf_reserve(&b, 0);
    ok(w != NULL && b.cap == BUF_CHUNK, "reserve of 0 bytes on an empty buffer");
    buf_free(&b);
}

static void test_printf(void)
{
    struct buf b = {0};
    buf_printf(&b, "%d-%s", 42, "x");
    ok(b.len == 4 && memcmp(buf_data(&b), "42-x", 4) == 0, "printf into an empty buffer");
    /* Fill to 3 bytes of room, then print 10: must grow and reprint. */
    size_t room = buf_room(&b);
    memset(buf_reserve(&b, room - 3), 'z', room - 3);
    buf_commit(&b, room - 3);
    buf_printf(&b, "%s", "0123456789");
    ok(b.len == BUF_CHUNK + 7 && memcmp(buf_data(&b) + b.len - 10, "0123456789", 10) == 0 &&
           sane(&b),
       "printf over the end of the room grows and keeps every byte");
    buf_free(&b);
    char *big = xmalloc(3 * BUF_CHUNK);
    memset(big, 'q', 3 * BUF_CHUNK - 1);
    big[3 * BUF_CHUNK - 1] = '\0';
    buf_printf(&b, "<%s>", big);
    ok(b.len == 3 * BUF_CHUNK + 1 && buf_data(&b)[0] == '<' && buf_data(&b)[b.len - 1] == '>',
       "printf larger than a block");
    free(big);
    buf_free(&b);
    buf_printf(&b, "%s", "");
    ok(b.len == 0 && sane(&b), "empty printf");
    buf_free(&b);
}

/* Random sequences against a model byte array. */
static void test_model(void)
{
    uint64_t rng = 99;
    size_t mcap = 1 << 20, mlen = 0;
    char *model = xmalloc(mcap);
    struct buf b = {0};
    int bad = 0, steps = 20000;
    for (int s = 0; s < steps && !bad; s++) {
        unsigned op = (unsigned)(util_rand64(&rng) % 10);
        if (op < 4 && mlen < mcap - 70000) { /* append up to 64 KiB, mostly small */
            size_t n = util_rand64(&rng) % (op == 0 ? 65536 : 300);
            char *tmp = xmalloc(n + 1);
            for (size_t i = 0; i < n; i++)
                tmp[i] = (char)util_rand64(&rng);
            buf_append(&b, tmp, n);
            memcpy(model + mlen, tmp, n);
            mlen += n;
            free(tmp);
        } else if (op < 6) { /* reserve + partial commit */
            size_t n = 1 + util_rand64(&rng) % 5000, k = util_rand64(&rng) % (n + 1);
            if (mlen + k >= mcap)
                continue;
            char *w = buf_reserve(&b, n);
            if (buf_room(&b) < n || w != b.area + b.off + b.len)
                bad = 1;
            for (size_t i = 0; i < k; i++)
                w[i] = model[mlen + i] = (char)(i * 7 + (size_t)s);
            buf_commit(&b, k);
            mlen += k;
        } else if (op < 9) { /* consume */
            size_t n = mlen ? util_rand64(&rng) % (mlen + 1) : 0;
            buf_consume(&b, n);
            memmove(model, model + n, mlen - n);
            mlen -= n;
        } else { /* release or printf */
            if (util_rand64(&rng) % 2) {
                buf_release(&b);
            } else {
                buf_printf(&b, "%d", s);
                mlen += (size_t)sprintf(model + mlen, "%d", s);
            }
        }
        if (!sane(&b) || b.len != mlen || (mlen && memcmp(buf_data(&b), model, mlen) != 0)) {
            bad = 1;
            note("  step %d op %u: len %zu model %zu", s, op, b.len, mlen);
        }
    }
    ok(!bad, "%d random operations match the model", steps);
    buf_free(&b);
    free(model);
}

int main(void)
{
    test_basics();
    test_printf();
    test_model();
    buf_cache_drain();
    return done_testing();
}
