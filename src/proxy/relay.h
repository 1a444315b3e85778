/* SPDX-License-Identifier: MIT
 * The response, from the upstream's head to the client's last byte: the
 * client's head (same status and end-to-end headers, our own framing),
 * then the body as it arrives. The upstream buffer is framed before
 * anything passes (a framing error cuts the stream, never fakes an end),
 * SSE events are counted, and the upstream is read only once the client
 * has taken everything before: a slow client holds one read, no more.
 * When the message is complete the connection goes back to the pool and
 * the backend's slot is released with what was measured (TTFT, time
 * between tokens). */
#ifndef LLAMALB_RELAY_H
#define LLAMALB_RELAY_H

#include <stdbool.h>
#include <stddef.h>

#include "http1.h"

struct conn;
struct exchange;

/* Starts relaying the response whose head <r> is complete (<hl> bytes at
 * the front of the upstream buffer). */
void relay_start(struct conn *c, const struct http1_msg *r, int hl);
/* Moves response bytes from the upstream to the client until one side
 * blocks (or a fairness cap: then it resumes on the next loop iteration). */
void relay_run(struct conn *c);
/* Counts SSE events (lines ended by a blank line) in payload bytes. */
void relay_count_sse(struct exchange *x, const char *p, size_t n);

#endif
