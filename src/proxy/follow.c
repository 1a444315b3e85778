/* SPDX-License-Identifier: MIT
 * Replicas that schedule as one (follow.h, docs/replicas.md): the role, the
 * forward to the active replica, the fallback when it is unreachable, and
 * what the admin API and /metrics show of it. */
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "follow.h"
#include "json.h"
#include "log.h"
#include "metrics.h"
#include "route.h"
#include "upstream.h"
#include "util.h"

/* Marked down after a failure: this long first, doubling up to the max. */
#define DOWN_FIRST_MS 500
#define DOWN_MAX_MS 5000

static const char hop_line[] = FOLLOW_HOP_HEADER ": 1\r\n";

struct follow {
    pthread_mutex_t lock;
    /* guarded by <lock> */
    struct backend *target;     /* the active's public listener; NULL = active here */
    char addr[NET_ADDRSTR_LEN]; /* as given */
    uint64_t generation;        /* last PUT /api/role generation applied */
    bool from_admin;            /* a PUT set the role: --follow reloads no longer apply */
    int64_t down_until;         /* ms: 0 = not down; else served locally until then */
    int64_t down_for;           /* ms: the last down period (doubles on repeats) */
    bool probing;               /* down period over: one request is trying the active */
    int64_t probe_until;        /* ms: ... until then (then another may try) */
    /* read without the lock */
    atomic_bool following;
    atomic_bool down;
    atomic_uint_fast64_t forwarded, fallbacks, local_down, hops, changes, down_total;
};

/* ================================================================ role */

static struct backend *target_new(struct server *s, const char *addr, const struct net_addr *na)
{
    struct backend *b = xcalloc(1, sizeof(*b));
    snprintf(b->spec.name, sizeof(b->spec.name), "active:%s", addr);
    net_addr_host(na, b->spec.host, sizeof(b->spec.host));
    b->spec.port = net_addr_port(na);
    b->addr = *na;
    b->cap = 0; /* the active queues; the follower never waits for it */
    atomic_init(&b->refs, 1);
    b->pools = xcalloc(s->reg.nworkers ? s->reg.nworkers : 1, sizeof(*b->pools));
    for (unsigned i = 0; i < (s->reg.nworkers ? s->reg.nworkers : 1); i++)
        list_init(&b->pools[i].idle);
    return b;
}

int follow_set(struct server *s, const char *addr, uint64_t generation, char *err)
{
    struct follow *f = s->follow;
    struct net_addr na;
    struct backend *nb = NULL, *old = NULL;
    if (addr != NULL && (addr[0] == '\0' || strcmp(addr, "off") == 0))
        addr = NULL;
    if (addr != NULL) {
        if (net_parse_addr(addr, false, false, &na, err) != 0)
            return -EINVAL;
        if (net_addr_reaches(&na, &s->listen_addr))
            addr = NULL; /* told to follow itself: it is the active */
    }
    pthread_mutex_lock(&f->lock);
    if (generation != 0 && generation < f->generation) {
        uint64_t cur = f->generation;
        pthread_mutex_unlock(&f->lock);
        snprintf(err, NET_ERR_LEN, "stale generation %llu: already at %llu",
                 (unsigned long long)generation, (unsigned long long)cur);
        return -ESTALE;
    }
    if (generation != 0) {
        f->generation = generation;
        f->from_admin = true;
    }
    bool same = addr == NULL ? f->target == NULL
                             : f->target != NULL && net_addr_equal(&f->target->addr, &na);
    pthread_mutex_unlock(&f->lock);
    if (same)
        return 0;
    if (addr != NULL)
        nb = target_new(s, addr, &na);
    pthread_mutex_lock(&f->lock);
    old = f->target;
    f->target = nb;
    snprintf(f->addr, sizeof(f->addr), "%s", addr ? addr : "");
    f->down_until = f->down_for = f->probe_until = 0;
    f->probing = false;
    atomic_store(&f->down, false);
    atomic_store(&f->following, nb != NULL);
    pthread_mutex_unlock(&f->lock);
    atomic_fetch_add(&f->changes, 1);
    if (old != NULL) {
        /* Requests under way keep it (their reference); its pooled
         * connections close when they come back. */
        atomic_store(&old->removed, true);
        backend_unref(old);
    }
    if (nb != NULL)
        log_info("replica: following the active replica at %s", addr);
    else
        log_info("replica: active (dispatching here)");
    return 0;
}

void follow_init(struct server *s)
{
    char err[NET_ERR_LEN];
    s->follow = xcalloc(1, sizeof(*s->follow));
    pthread_mutex_init(&s->follow->lock, NULL);
    if (s->cfg.follow[0] != '\0' && follow_set(s, s->cfg.follow, 0, err) != 0)
        log_error("--follow %s: %s", s->cfg.follow, err);
}

void follow_deinit(struct server *s)
{
    struct follow *f = s->follow;
    if (f == NULL)
        return;
    if (f->target != NULL) {
        atomic_store(&f->target->removed, true);
        backend_unref(f->target);
    }
    pthread_mutex_destroy(&f->lock);
    free(f);
    s->follow = NULL;
}

void follow_reload(struct server *s, const char *follow)
{
    struct follow *f = s->follow;
    char err[NET_ERR_LEN];
    if (f == NULL)
        return;
    pthread_mutex_lock(&f->lock);
    bool admin = f->from_admin;
    bool same = strcmp(f->addr, strcmp(follow, "off") == 0 ? "" : follow) == 0;
    pthread_mutex_unlock(&f->lock);
    if (same)
        return;
    if (admin) {
        log_warn("reload: --follow changed, but the role was set by PUT /api/role: kept");
        return;
    }
    if (follow_set(s, follow, 0, err) != 0)
        log_error("reload: --follow %s: %s", follow, err);
}

/* ================================================================ requests */

bool follow_dispatch(struct conn *c)
{
    struct follow *f = conn_srv(c)->follow;
    struct exchange *x = c->x;
    if (f == NULL)
        return false;
    if (x->hopped) {
        if (x->via != FOLLOW_VIA_HOP) {
            x->via = FOLLOW_VIA_HOP;
            atomic_fetch_add(&f->hops, 1);
        }
        return false;
    }
    if (!atomic_load_explicit(&f->following, memory_order_relaxed))
        return false;
    if (x->fwd_failed) {
        x->via = FOLLOW_VIA_LOCAL;
        return false;
    }
    int64_t now = conn_now(c);
    pthread_mutex_lock(&f->lock);
    struct backend *b = f->target;
    bool go = b != NULL;
    if (go && f->down_until != 0) {
        if (now < f->down_until || (f->probing && now < f->probe_until)) {
            go = false;
        } else { /* this request tries the active again; the others stay here */
            f->probing = true;
            f->probe_until = now + conn_cfg(c)->connect_timeout + 1000;
        }
    }
    if (go)
        backend_ref(b);
    pthread_mutex_unlock(&f->lock);
    if (b == NULL)
        return false;
    if (!go) {
        x->via = FOLLOW_VIA_LOCAL;
        atomic_fetch_add(&f->local_down, 1);
        return false;
    }
    atomic_fetch_add(&b->inflight, 1); /* given back by reg_release, as for any backend */
    if (!x->hop_hdr) {
        buf_append(&x->uphead, hop_line, sizeof(hop_line) - 1);
        x->hop_hdr = true;
        atomic_fetch_add(&f->forwarded, 1);
    }
    x->via = FOLLOW_VIA_ACTIVE;
    x->be = b;
    log_debug("%s %s -> %s (following)", x->method, x->path, b->spec.name);
    up_start(c);
    return true;
}

static void mark_down(struct conn *c, struct backend *b)
{
    struct follow *f = conn_srv(c)->follow;
    int64_t now = conn_now(c), len = -1;
    pthread_mutex_lock(&f->lock);
    if (f->target == b && (f->down_until == 0 || f->probing || now >= f->down_until)) {
        f->down_for = f->down_for ? MIN(f->down_for * 2, DOWN_MAX_MS) : DOWN_FIRST_MS;
        f->down_until = now + f->down_for;
        f->probing = false;
        len = f->down_for;
        atomic_store(&f->down, true);
    }
    pthread_mutex_unlock(&f->lock);
    if (len >= 0) {
        atomic_fetch_add(&f->down_total, 1);
        log_warn("replica: active %s unreachable: serving here, trying it again in %lld ms",
                 b->spec.name + 7, (long long)len);
    }
}

bool follow_failed(struct conn *c, bool replayable, bool unreachable)
{
    struct follow *f = conn_srv(c)->follow;
    struct exchange *x = c->x;
    if (unreachable)
        mark_down(c, x->be);
    if (!replayable)
        return false;
    up_drop(c, false);
    if (x->hop_hdr) { /* the local attempt goes without it */
        x->uphead.len -= sizeof(hop_line) - 1;
        x->hop_hdr = false;
    }
    x->fwd_failed = true;
    x->fresh_only = false;
    x->stale_retries = 0;
    x->via = FOLLOW_VIA_LOCAL;
    atomic_fetch_add(&f->fallbacks, 1);
    route_dispatch(c);
    return true;
}

void follow_answered(struct conn *c)
{
    struct follow *f = conn_srv(c)->follow;
    if (f == NULL || !atomic_load_explicit(&f->down, memory_order_relaxed))
        return;
    bool back = false;
    pthread_mutex_lock(&f->lock);
    if (f->target == c->x->be && f->down_until != 0) {
        f->down_until = f->down_for = f->probe_until = 0;
        f->probing = false;
        atomic_store(&f->down, false);
        back = true;
    }
    pthread_mutex_unlock(&f->lock);
    if (back)
        log_info("replica: active %s answers again: following it", c->x->be->spec.name + 7);
}

const char *follow_via_word(const struct conn *c)
{
    static const char *const words[] = {"", "active", "local", "hop"};
    unsigned v = c->x != NULL ? c->x->via : 0;
    return v < ARRAY_SIZE(words) ? words[v] : "";
}

/* ================================================================ admin */

static void role_json(struct follow *f, struct buf *b)
{
    pthread_mutex_lock(&f->lock);
    bool following = f->target != NULL;
    char addr[NET_ADDRSTR_LEN];
    snprintf(addr, sizeof(addr), "%s", f->addr);
    uint64_t gen = f->generation;
    bool down = f->down_until != 0;
    pthread_mutex_unlock(&f->lock);
    buf_printf(b, "{\"role\":\"%s\",\"follow\":", following ? "follower" : "active");
    if (following)
        json_append_str(b, addr, strlen(addr));
    else
        buf_append_lit(b, "null");
    buf_printf(b,
               ",\"generation\":%llu,\"active_down\":%s,\"forwarded\":%llu,\"fallbacks\":%llu,"
               "\"local_while_down\":%llu,\"hops_received\":%llu}",
               (unsigned long long)gen, down ? "true" : "false",
               (unsigned long long)atomic_load(&f->forwarded),
               (unsigned long long)atomic_load(&f->fallbacks),
               (unsigned long long)atomic_load(&f->local_down),
               (unsigned long long)atomic_load(&f->hops));
}

static void role_error(struct conn *c, int status, const char *msg, const char *code)
{
    struct buf b = {0};
    buf_append_str(&b, "{\"error\":{\"message\":");
    json_append_str(&b, msg, strlen(msg));
    buf_printf(&b, ",\"type\":\"invalid_request_error\",\"param\":null,\"code\":\"%s\"}}", code);
    conn_respond(c, status, "application/json", buf_data(&b), b.len, NULL);
    buf_free(&b);
}

static void put_role(struct conn *c)
{
    struct server *s = conn_srv(c);
    const char *js = buf_data(&c->x->body);
    struct json_tok t[16];
    char addr[NET_ADDRSTR_LEN], err[NET_ERR_LEN];
    int64_t gen = 0;
    int n = c->x->body.len > 0 ? json_parse(js, c->x->body.len, t, ARRAY_SIZE(t)) : -EINVAL;
    if (n < 0 || t[0].type != JSON_OBJECT) {
        role_error(c, 400, "body must be {\"generation\":N,\"follow\":\"HOST:PORT\"|null}",
                   "invalid_json");
        return;
    }
    int g = json_get(js, t, 0, "generation"), fl = json_get(js, t, 0, "follow");
    if (fl < 0 || (t[fl].type != JSON_NULL && t[fl].type != JSON_STRING)) {
        role_error(c, 400, "\"follow\" must be \"HOST:PORT\" or null", "invalid_json");
        return;
    }
    if (g >= 0 && json_int(js, &t[g], 0, INT64_MAX, &gen) != 0) {
        role_error(c, 400, "\"generation\" must be a non-negative integer", "invalid_json");
        return;
    }
    addr[0] = '\0';
    if (t[fl].type == JSON_STRING && json_str(js, &t[fl], addr, sizeof(addr)) < 0) {
        role_error(c, 400, "\"follow\" must be a numeric HOST:PORT", "invalid_role");
        return;
    }
    int r = follow_set(s, addr, (uint64_t)gen, err);
    if (r == -ESTALE) {
        role_error(c, 409, err, "stale_generation");
        return;
    }
    if (r < 0) {
        char msg[NET_ERR_LEN + 32];
        snprintf(msg, sizeof(msg), "follow: %s", err);
        role_error(c, 400, msg, "invalid_role");
        return;
    }
    char peer[NET_ADDRSTR_LEN];
    net_addr_str(&c->peer, peer, sizeof(peer));
    log_info("admin %s: role: generation %lld, follow %s", peer, (long long)gen,
             addr[0] ? addr : "null (active)");
    atomic_fetch_add(&s->stats.admin_changes, 1);
    struct buf b = {0};
    role_json(s->follow, &b);
    conn_respond(c, 200, "application/json", buf_data(&b), b.len, NULL);
    buf_free(&b);
}

void follow_role_json(struct server *s, struct buf *out)
{
    if (s->follow == NULL)
        buf_append_lit(out, "null");
    else
        role_json(s->follow, out);
}

void follow_admin_role(struct conn *c)
{
    if (strcmp(c->x->method, "PUT") == 0) {
        put_role(c);
        return;
    }
    struct buf b = {0};
    role_json(conn_srv(c)->follow, &b);
    conn_respond(c, 200, "application/json", buf_data(&b), b.len, NULL);
    buf_free(&b);
}

void follow_write_metrics(struct server *s, struct buf *out)
{
    struct follow *f = s->follow;
    if (f == NULL)
        return;
    pthread_mutex_lock(&f->lock);
    char addr[NET_ADDRSTR_LEN];
    snprintf(addr, sizeof(addr), "%s", f->addr);
    bool following = f->target != NULL, down = f->down_until != 0;
    uint64_t gen = f->generation;
    pthread_mutex_unlock(&f->lock);
    static const struct metric_family info = {
        "llamalb_replica_info", "this replica's role (active or follower) and the active it follows",
        METRIC_GAUGE};
    char esc[METRIC_LABEL_LEN(NET_ADDRSTR_LEN)];
    struct metric_label l[2] = {{"role", following ? "follower" : "active"},
                                {"follow", metric_label_escape(esc, sizeof(esc), addr)}};
    metric_head(out, &info);
    metric_u64(out, info.name, NULL, l, 2, 1);
    struct metric_scalar v[] = {
        {{"llamalb_replica_following", "1 when requests are forwarded to an active replica",
          METRIC_GAUGE}, METRIC_INT, following, 0},
        {{"llamalb_replica_active_down", "1 while the active is unreachable and requests are served here",
          METRIC_GAUGE}, METRIC_INT, down, 0},
        {{"llamalb_replica_generation", "last PUT /api/role generation applied", METRIC_GAUGE},
         METRIC_INT, gen, 0},
        {{"llamalb_replica_forwarded_total", "requests forwarded to the active replica",
          METRIC_COUNTER}, METRIC_INT, atomic_load(&f->forwarded), 0},
        {{"llamalb_replica_fallbacks_total",
          "forwarded requests the active did not take, served here instead", METRIC_COUNTER},
         METRIC_INT, atomic_load(&f->fallbacks), 0},
        {{"llamalb_replica_local_total", "requests served here while the active was marked down",
          METRIC_COUNTER}, METRIC_INT, atomic_load(&f->local_down), 0},
        {{"llamalb_replica_hops_received_total", "requests received from a follower",
          METRIC_COUNTER}, METRIC_INT, atomic_load(&f->hops), 0},
        {{"llamalb_replica_active_down_total", "times the active was marked unreachable",
          METRIC_COUNTER}, METRIC_INT, atomic_load(&f->down_total), 0},
        {{"llamalb_replica_role_changes_total", "role changes (static or PUT /api/role)",
          METRIC_COUNTER}, METRIC_INT, atomic_load(&f->changes), 0},
    };
    metric_scalars(out, v, ARRAY_SIZE(v));
}
