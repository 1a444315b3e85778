/* SPDX-License-Identifier: MIT
 * Replicas that schedule as one (docs/replicas.md). Of the llamalb replicas
 * in front of one backend set, one is active: it dispatches with its slot
 * counts and its queue as a lone balancer does. The others follow: they
 * forward every proxied request to the active's public listener, one more
 * hop streamed like any upstream, so every single-slot backend is counted
 * by one scheduler only.
 *
 * The role comes from --follow HOST:PORT (static) or PUT /api/role
 * {"generation":N,"follow":"HOST:PORT"|null} (the watcher, which picks the
 * active); a PUT generation older than the last applied is refused (409).
 *
 * The active is reached through a struct backend of its own, outside the
 * registry's set: its own pools, no cap, no place in picks or probes. When
 * it cannot be reached (refused, connect timeout, closed before any answer
 * byte, under docs/hardening.md's retry rules) the request is served here
 * from the local registry at once, the active is marked down for a while
 * (0.5 s doubling to 5 s), and after that one request at a time tries it
 * again: the first answer it gives brings every request back to it.
 *
 * A request forwarded carries "X-Llamalb-Hop: 1"; a replica that receives
 * it never forwards it again (so two replicas that both think the other is
 * active cannot loop), and the header is stripped from what backends see. */
#ifndef LLAMALB_FOLLOW_H
#define LLAMALB_FOLLOW_H

#include <stdbool.h>
#include <stdint.h>

struct buf;
struct conn;
struct server;

#define FOLLOW_HOP_HEADER "X-Llamalb-Hop"

/* How a request travelled (struct exchange's via, the access log's via=). */
enum follow_via {
    FOLLOW_VIA_NONE = 0, /* not following: dispatched here as always */
    FOLLOW_VIA_ACTIVE,   /* forwarded to the active replica */
    FOLLOW_VIA_LOCAL,    /* following, but served here: the active is unreachable */
    FOLLOW_VIA_HOP,      /* came from a follower: dispatched here, never forwarded */
};

/* Creates s->follow and applies s->cfg.follow. Needs the registry (its
 * worker count). */
void follow_init(struct server *s);
void follow_deinit(struct server *s);

/* A reload's --follow: applied when it changed, unless PUT /api/role has
 * set the role since start (the watcher's word wins). */
void follow_reload(struct server *s, const char *follow);

/* Sets the role: <addr> "HOST:PORT" to follow, NULL or "" to be active.
 * <generation> 0 is the static form; otherwise one older than the last
 * applied is refused (-ESTALE). Returns 0, or -EINVAL / -ESTALE with a
 * message in <err> (NET_ERR_LEN bytes). */
int follow_set(struct server *s, const char *addr, uint64_t generation, char *err);

/* route_dispatch's first step: forwards the request to the active replica
 * when following, it did not come from another replica, and the active is
 * not marked down. Returns true when it took the request. */
bool follow_dispatch(struct conn *c);

/* up_failed's branch for a forward attempt: <replayable> says whether the
 * retry rules allow another attempt (nothing sent, or nothing answered),
 * <unreachable> whether the active is to be marked down. Marks it down,
 * and when <replayable> serves the request here (returns true); else the
 * caller answers the failure as for any backend. */
bool follow_failed(struct conn *c, bool replayable, bool unreachable);

/* The active answered a forwarded request (a response head): if it was
 * marked down, it is followed again. */
void follow_answered(struct conn *c);

/* " via=active" etc. for the access log ("" when not a replica), and the
 * bare word for JSON ("" likewise). */
const char *follow_via_word(const struct conn *c);

/* GET /api/role and PUT /api/role (admin.c routes them). */
void follow_admin_role(struct conn *c);

/* llamalb_replica_* families for /metrics. */
void follow_write_metrics(struct server *s, struct buf *out);
/* The role as GET /api/role answers it (one JSON object), for the status page. */
void follow_role_json(struct server *s, struct buf *out);

#endif
