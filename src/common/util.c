/* SPDX-License-Identifier: MIT
 * Allocators that abort, clocks, number parsing and constant-time compare. */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

void util_bug(const char *file, int line, const char *what)
{
    fprintf(stderr, "BUG at %s:%d: %s\n", file, line, what);
    abort();
}

static void oom(size_t n) __attribute__((noreturn));
static void oom(size_t n)
{
    fprintf(stderr, "out of memory allocating %zu bytes\n", n);
    abort();
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        oom(n);
    return p;
}

void *xcalloc(size_t nmemb, size_t size)
{
    void *p = calloc(nmemb ? nmemb : 1, size ? size : 1);
    if (p == NULL)
        oom(nmemb * size);
    return p;
}

void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (q == NULL)
        oom(n);
    return q;
}

char *xstrdup(const char *s)
{
    return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
    char *p = xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

int64_t util_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t util_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t util_wall_s(void)
{
    return (int64_t)time(NULL);
}

size_t util_fmt_u64(char out[UTIL_U64_DIGITS], uint64_t v)
{
    char tmp[UTIL_U64_DIGITS];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

int util_parse_u64(const char *s, size_t len, uint64_t min, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    if (len == 0 || len > 20)
        return -EINVAL;
    for (size_t i = 0; i < len; i++) {
        unsigned d = (unsigned char)s[i] - '0';
        if (d > 9)
            return -EINVAL;
        if (v > (UINT64_MAX - d) / 10)
            return -EINVAL;
        v = v * 10 + d;
    }
    if (v < min || v > max)
        return -EINVAL;
    *out = v;
    return 0;
}

int util_parse_duration_ms(const char *s, int64_t default_unit_ms, int64_t *out)
{
    size_t n = strlen(s), digits = 0;
    uint64_t v;
    int64_t unit = default_unit_ms;
    while (digits < n && s[digits] >= '0' && s[digits] <= '9')
        digits++;
    if (util_parse_u64(s, digits, 0, 1000000000ULL, &v) != 0)
        return -EINVAL;
    const char *u = s + digits;
    if (*u == '\0')
        unit = default_unit_ms;
    else if (strcmp(u, "ms") == 0)
        unit = 1;
    else if (strcmp(u, "s") == 0)
        unit = 1000;
    else if (strcmp(u, "m") == 0)
        unit = 60000;
    else if (strcmp(u, "h") == 0)
        unit = 3600000;
    else
        return -EINVAL;
    *out = (int64_t)v * unit;
    return 0;
}

int util_ct_equal(const void *a, size_t alen, const void *b, size_t blen)
{
    const unsigned char *x = a, *y = b;
    unsigned char d = (unsigned char)(alen != blen);
    size_t n = alen < blen ? alen : blen;
    for (size_t i = 0; i < n; i++)
        d |= x[i] ^ y[i];
    return d == 0;
}

void util_random_bytes(void *buf, size_t n)
{
    unsigned char *p = buf;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd != -1) {
        while (n > 0) {
            ssize_t r = read(fd, p, n);
            if (r <= 0) {
                if (r == -1 && errno == EINTR)
                    continue;
                break;
            }
            p += r;
            n -= (size_t)r;
        }
        close(fd);
    }
    uint64_t s = (uint64_t)util_now_us() ^ ((uint64_t)getpid() << 32) ^ 0x9E3779B97F4A7C15ULL;
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)util_rand64(&s);
}

/* FNV-1a, 64 bits: small keys (session ids, names) into a hash table or a
 * rendezvous score. Never 0, so 0 can mean "none". */
uint64_t util_hash64(const void *data, size_t n)
{
    const unsigned char *p = data;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001B3ULL;
    return h ? h : 1;
}
