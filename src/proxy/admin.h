/* SPDX-License-Identifier: MIT
 * The admin API on its own listener: registry changes from operators and
 * the watcher, metrics and health. Every request is judged on its head
 * first (admin_check_head), then answered locally once its body is in. */
#ifndef LLAMALB_ADMIN_H
#define LLAMALB_ADMIN_H

#include <stdbool.h>
#include <stdint.h>

#include "http1.h"

struct conn;

/* The total deadline of an admin request body (ms), under --body-deadline. */
#define ADMIN_BODY_DEADLINE 10000

/* Judges an admin request on its head alone: path, token, method, Origin,
 * media type and declared length. Returns true to read the body and go on
 * to admin_handle(); false when it answered (the connection closes after if
 * a body was announced). */
struct server;

bool admin_check_head(struct conn *c, const struct http1_msg *m);
/* The largest body the admin route of <path> and <method> takes. */
uint64_t admin_body_limit(const struct server *s, const char *path, const char *method);
/* Answers an admin request whose head admin_check_head() accepted. */
void admin_handle(struct conn *c);

#endif
