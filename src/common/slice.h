/* SPDX-License-Identifier: MIT
 * A borrowed byte range: pointer and length, two words passed by value
 * (haproxy's ist). A slice never owns its bytes. */
#ifndef LLAMALB_SLICE_H
#define LLAMALB_SLICE_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

struct slice {
    const char *p;
    size_t len;
};

#define SLICE_LIT(s) ((struct slice){(s), sizeof(s) - 1})

static inline struct slice slice_make(const char *p, size_t len)
{
    return (struct slice){p, len};
}

static inline struct slice slice_cstr(const char *s)
{
    return (struct slice){s, strlen(s)};
}

static inline bool slice_eq(struct slice a, struct slice b)
{
    return a.len == b.len && memcmp(a.p, b.p, a.len) == 0;
}

static inline bool slice_eq_cstr(struct slice a, const char *s)
{
    return slice_eq(a, slice_cstr(s));
}

static inline char slice_lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
}

/* ASCII case-insensitive equality. */
static inline bool slice_case_eq(struct slice a, struct slice b)
{
    if (a.len != b.len)
        return false;
    for (size_t i = 0; i < a.len; i++)
        if (slice_lower(a.p[i]) != slice_lower(b.p[i]))
            return false;
    return true;
}

static inline bool slice_case_eq_cstr(struct slice a, const char *s)
{
    return slice_case_eq(a, slice_cstr(s));
}

static inline bool slice_starts_with(struct slice a, const char *prefix)
{
    size_t n = strlen(prefix);
    return a.len >= n && memcmp(a.p, prefix, n) == 0;
}

/* Strips spaces and tabs from both ends. */
static inline struct slice slice_trim(struct slice a)
{
    while (a.len > 0 && (a.p[0] == ' ' || a.p[0] == '\t')) {
        a.p++;
        a.len--;
    }
    while (a.len > 0 && (a.p[a.len - 1] == ' ' || a.p[a.len - 1] == '\t'))
        a.len--;
    return a;
}

#endif
