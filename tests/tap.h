/* SPDX-License-Identifier: MIT
 * Minimal TAP producer for unit tests (picotest-shaped): ok(), is(),
 * note(), done_testing(). prove reads the output. */
#ifndef LLAMALB_TAP_H
#define LLAMALB_TAP_H

#include <stdbool.h>

/* Reports one test; returns <cond>. */
bool tap_ok(bool cond, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void tap_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints the plan and returns the process exit status (0 if all passed). */
int tap_done(void);

#define ok(cond, ...) tap_ok(!!(cond), __FILE__, __LINE__, __VA_ARGS__)
#define is_int(got, want, ...)                                                                     \
    do {                                                                                           \
        long long g_ = (long long)(got), w_ = (long long)(want);                                   \
        if (!ok(g_ == w_, __VA_ARGS__))                                                            \
            tap_note("  got %lld, want %lld", g_, w_);                                             \
    } while (0)
#define note(...) tap_note(__VA_ARGS__)
#define done_testing() tap_done()

#endif
