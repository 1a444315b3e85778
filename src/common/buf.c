/* SPDX-License-Identifier: MIT
 * Linear buffers with a per-thread cache of standard-size blocks, so the
 * request path reuses memory instead of calling malloc for every read. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "util.h"

/* Free standard-size blocks of this thread, linked through their first word.
 * Bounded so that a burst of connections does not pin memory forever. */
#define BUF_CACHE_MAX 256
static _Thread_local void *cache_head;
static _Thread_local unsigned cache_count;

static char *chunk_get(void)
{
    void *p = cache_head;
    if (p != NULL) {
        memcpy(&cache_head, p, sizeof(void *));
        cache_count--;
        return p;
    }
    return xmalloc(BUF_CHUNK);
}

static void area_put(char *area, size_t cap)
{
    if (cap == BUF_CHUNK && cache_count < BUF_CACHE_MAX) {
        memcpy(area, &cache_head, sizeof(void *));
        cache_head = area;
        cache_count++;
        return;
    }
    free(area);
}

void buf_cache_drain(void)
{
    while (cache_head != NULL) {
        void *p = cache_head;
        memcpy(&cache_head, p, sizeof(void *));
        free(p);
    }
    cache_count = 0;
}

char *buf_grow_to(struct buf *b, size_t cap)
{
    if (b->area == NULL || b->cap < cap) {
        if (cap <= BUF_CHUNK && b->area == NULL)
            return buf_reserve(b, cap);
        char *n = xmalloc(cap);
        if (b->area != NULL) {
            memcpy(n, b->area + b->off, b->len);
            area_put(b->area, b->cap);
        }
        b->area = n;
        b->cap = cap;
        b->off = 0;
    } else if (b->off > 0 && b->cap - b->off - b->len < cap - b->len) {
        memmove(b->area, b->area + b->off, b->len);
        b->off = 0;
    }
    return b->area + b->off + b->len;
}

char *buf_reserve(struct buf *b, size_t min)
{
    if (b->area == NULL) {
        if (min <= BUF_CHUNK) {
            b->area = chunk_get();
            b->cap = BUF_CHUNK;
        } else {
            b->area = xmalloc(min);
            b->cap = min;
        }
        b->off = b->len = 0;
        return b->area;
    }
    if (buf_room(b) >= min)
        return b->area + b->off + b->len;
    /* Slide the data to the front if that makes enough room. */
    if (b->off > 0 && b->cap - b->len >= min) {
        memmove(b->area, b->area + b->off, b->len);
        b->off = 0;
        return b->area + b->len;
    }
    size_t need = b->len + min, ncap = b->cap * 2;
    while (ncap < need)
        ncap *= 2;
    char *n = xmalloc(ncap);
    memcpy(n, b->area + b->off, b->len);
    area_put(b->area, b->cap);
    b->area = n;
    b->cap = ncap;
    b->off = 0;
    return n + b->len;
}

void buf_consume(struct buf *b, size_t n)
{
    BUG_ON(n > b->len);
    b->len -= n;
    b->off = b->len == 0 ? 0 : b->off + n;
}

void buf_append(struct buf *b, const void *p, size_t n)
{
    if (n == 0)
        return;
    memcpy(buf_reserve(b, n), p, n);
    b->len += n;
}

void buf_append_str(struct buf *b, const char *s)
{
    buf_append(b, s, strlen(s));
}

void buf_append_u64(struct buf *b, uint64_t v)
{
    char d[UTIL_U64_DIGITS];
    buf_append(b, d, util_fmt_u64(d, v));
}

void buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    size_t room = buf_room(b);
    char *dst = b->area ? b->area + b->off + b->len : NULL;
    va_start(ap, fmt);
    int n = vsnprintf(dst, dst ? room : 0, fmt, ap);
    va_end(ap);
    BUG_ON(n < 0);
    if ((size_t)n >= room || dst == NULL) {
        dst = buf_reserve(b, (size_t)n + 1);
        va_start(ap, fmt);
        vsnprintf(dst, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    b->len += (size_t)n;
}

void buf_release(struct buf *b)
{
    if (b->area != NULL && b->len == 0) {
        area_put(b->area, b->cap);
        b->area = NULL;
        b->off = b->cap = 0;
    }
}

void buf_free(struct buf *b)
{
    if (b->area != NULL)
        area_put(b->area, b->cap);
    b->area = NULL;
    b->off = b->len = b->cap = 0;
}
