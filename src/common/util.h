/* SPDX-License-Identifier: MIT
 * Small helpers every module uses: aborting allocators, BUG_ON, ARRAY_SIZE,
 * branch hints, and a monotonic millisecond clock. Running out of memory is
 * treated as a bug (every peer-controlled size is checked against a limit
 * before allocating), so the allocators abort instead of returning NULL. */
#ifndef LLAMALB_UTIL_H
#define LLAMALB_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define UNUSED(x) ((void)(x))

/* BUG_ON stays on in release builds: an invariant that does not hold means
 * memory is already wrong, and carrying on would only hide where. */
#define BUG_ON(cond)                                                                               \
    do {                                                                                           \
        if (unlikely(cond))                                                                        \
            util_bug(__FILE__, __LINE__, #cond);                                                   \
    } while (0)

void util_bug(const char *file, int line, const char *what) __attribute__((noreturn));

/* xmalloc family: never return NULL; print the size and abort on failure. */
void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

/* Monotonic clock in milliseconds / microseconds (CLOCK_MONOTONIC). */
int64_t util_now_ms(void);
int64_t util_now_us(void);
/* Wall clock in seconds since the epoch. */
int64_t util_wall_s(void);

/* Writes <v> in decimal to <out> (no terminator); returns the length. */
#define UTIL_U64_DIGITS 20
size_t util_fmt_u64(char out[UTIL_U64_DIGITS], uint64_t v);

/* Parses a whole decimal number in [<min>, <max>] from <s>. Returns 0 and
 * stores it in <*out>, or -EINVAL. No sign, no spaces, no trailing bytes. */
int util_parse_u64(const char *s, size_t len, uint64_t min, uint64_t max, uint64_t *out);

/* Parses a duration such as "10s", "250ms", "2m" or a bare number of
 * <default_unit_ms> units into milliseconds. Returns 0 or -EINVAL. */
int util_parse_duration_ms(const char *s, int64_t default_unit_ms, int64_t *out);

/* Constant-time comparison of two byte strings (length leaks, content does not). */
int util_ct_equal(const void *a, size_t alen, const void *b, size_t blen);

/* Fills <buf> with <n> bytes from the OS random source (falls back to a
 * clock-seeded mix if it is unavailable). */
void util_random_bytes(void *buf, size_t n);

/* xorshift64* PRNG: deterministic for a given seed; <*state> must be non-zero. */
static inline uint64_t util_rand64(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* Uniform double in [0, 1). */
static inline double util_rand01(uint64_t *state)
{
    return (double)(util_rand64(state) >> 11) * (1.0 / 9007199254740992.0);
}

/* FNV-1a 64 of <n> bytes; never 0. */
uint64_t util_hash64(const void *data, size_t n);

#endif
