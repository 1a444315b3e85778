/* SPDX-License-Identifier: MIT
 * Linear byte buffer: reserve room, read into it, commit, parse, consume.
 *
 *      area                  area+off           area+off+len        area+cap
 *       |<----- consumed ----->|<----- data ------>|<---- room ------>|
 *
 * A zeroed struct buf is a valid empty buffer with no memory. Buffers of the
 * standard size (BUF_CHUNK) come from a per-thread free list and go back to it
 * as soon as they are empty (buf_release), so an idle connection or a stream
 * waiting for its next token holds no buffer memory at all. Larger buffers
 * (request bodies) are plain heap blocks, bounded by the caller's limits. */
#ifndef LLAMALB_BUF_H
#define LLAMALB_BUF_H

#include <stddef.h>
#include <stdint.h>

#define BUF_CHUNK 16384 /* bytes: the standard buffer size */

struct buf {
    char *area;  /* NULL when nothing is allocated */
    size_t off;  /* start of unconsumed data */
    size_t len;  /* bytes of unconsumed data */
    size_t cap;  /* allocated bytes */
};

/* NULL for a buffer that never held anything (NULL + 0 is undefined in C). */
static inline char *buf_data(const struct buf *b) { return b->area ? b->area + b->off : NULL; }
static inline size_t buf_room(const struct buf *b) { return b->cap - b->off - b->len; }

/* Makes room for at least <min> more bytes after the data, moving the data to
 * the front or growing the area as needed, and returns where to write. The
 * caller must not ask for more than it is allowed to buffer. */
char *buf_reserve(struct buf *b, size_t min);

/* Makes the area hold at least <cap> bytes of data in all, exactly <cap>
 * when it must grow (no doubling: for buffers whose final size is known,
 * such as a body with a Content-Length), and returns where to write. */
char *buf_grow_to(struct buf *b, size_t cap);

/* Marks <n> bytes written at the pointer buf_reserve() returned as data. */
static inline void buf_commit(struct buf *b, size_t n) { b->len += n; }

/* Drops <n> bytes from the front. An emptied buffer rewinds to offset 0. */
void buf_consume(struct buf *b, size_t n);

/* Appends <n> bytes from <p>. */
void buf_append(struct buf *b, const void *p, size_t n);
void buf_append_str(struct buf *b, const char *s);
/* Appends a string literal (its length known at compile time). */
#define buf_append_lit(b, lit) buf_append((b), "" lit, sizeof(lit) - 1)
/* Appends <v> in decimal. The request path formats numbers with this, not
 * printf: vfprintf was a visible share of a proxied request's user time. */
void buf_append_u64(struct buf *b, uint64_t v);
/* Appends printf output. */
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Frees the memory if the buffer holds no data; keeps it otherwise. */
void buf_release(struct buf *b);
/* Frees the memory and discards any data. */
void buf_free(struct buf *b);

/* Empties this thread's cache of standard-size blocks (for leak checkers at exit). */
void buf_cache_drain(void);

#endif
