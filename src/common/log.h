/* SPDX-License-Identifier: MIT
 * Leveled, printf-checked logging to stderr, one line per message. */
#ifndef LLAMALB_LOG_H
#define LLAMALB_LOG_H

#include <stdatomic.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Atomic: every thread reads it before each debug or info line, and a
 * reload (SIGHUP, another thread) may set it. */
extern _Atomic enum log_level log_min_level;

void log_msg(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Parses "debug", "info", "warn" or "error". Returns 0 or -EINVAL. */
int log_parse_level(const char *s, enum log_level *out);

#define log_enabled(lvl) (atomic_load_explicit(&log_min_level, memory_order_relaxed) <= (lvl))
#define log_debug(...) do { if (log_enabled(LOG_DEBUG)) log_msg(LOG_DEBUG, __VA_ARGS__); } while (0)
#define log_info(...) do { if (log_enabled(LOG_INFO)) log_msg(LOG_INFO, __VA_ARGS__); } while (0)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
