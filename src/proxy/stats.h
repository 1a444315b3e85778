/* SPDX-License-Identifier: MIT
 * The status page on the admin listener: GET / serves the page (one
 * self-contained HTML file compiled into the binary from
 * src/proxy/status/status.html), GET /api/stats the JSON it polls (same
 * bearer token as /metrics). README "Operating llamalb". */
#ifndef LLAMALB_STATS_H
#define LLAMALB_STATS_H

#include <stddef.h>

struct buf;
struct conn;
struct server;

/* The page's bytes, generated at build time (mk/status.mk). */
extern const unsigned char status_html[];
extern const size_t status_html_len;

/* Appends the stats document GET /api/stats answers. */
void stats_json(struct server *s, int64_t now_ms, struct buf *out);

/* Answers GET / and GET /api/stats on the admin listener. */
void stats_serve_page(struct conn *c);
void stats_serve_json(struct conn *c);

#endif
