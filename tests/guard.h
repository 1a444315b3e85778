/* SPDX-License-Identifier: MIT
 * Test inputs that end exactly at a PROT_NONE page (picohttpparser's
 * trick): a parser that reads one byte too far crashes instead of passing.
 * One mapping per test program: a writable area followed by the guard;
 * at_guard() copies an input so its last byte is the last byte before it. */
#ifndef LLAMALB_TESTS_GUARD_H
#define LLAMALB_TESTS_GUARD_H

#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "util.h"

static char *guard_end;
static size_t guard_cap;

static inline void guard_init(size_t cap)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    size_t n = (cap + pg - 1) / pg * pg;
    char *m = mmap(NULL, n + pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    BUG_ON(m == MAP_FAILED);
    BUG_ON(mprotect(m + n, pg, PROT_NONE) != 0);
    guard_end = m + n;
    guard_cap = n;
}

static inline const char *at_guard(const char *p, size_t len)
{
    BUG_ON(len > guard_cap);
    char *d = guard_end - len;
    if (len > 0)
        memmove(d, p, len);
    return d;
}

#endif
