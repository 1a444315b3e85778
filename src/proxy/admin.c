/* SPDX-License-Identifier: MIT
 * The admin API (admin.h; README "Admin API") on its own listener: registry
 * changes from operators and the watcher, metrics and health. Compatible
 * with the original demo's balancer (POST /api/register, DELETE
 * /api/unregister/NAME, GET /api/services answer as it did), hardened as
 * docs/hardening.md says:
 * bearer token compared in constant time, mutations only by POST/PUT/DELETE
 * with a JSON body, no browser Origin, bounded bodies, strict JSON, and
 * registrations refused for loopback, link-local, metadata and unspecified
 * addresses unless the operator allowed them (--backend-allow). Every change
 * is logged with the peer address. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "follow.h"
#include "log.h"
#include "metrics.h"
#include "proxy.h"
#include "stats.h"
#include "util.h"


/* Failed-auth limiter: at most this many failures per second, then 429. */
#define AUTH_FAILS_PER_SEC 20
static int64_t auth_window;
static unsigned auth_fails;

static void text(struct conn *c, int status, const char *msg)
{
    conn_respond(c, status, "text/plain; charset=utf-8", msg, strlen(msg), NULL);
}

static void jerr(struct conn *c, int status, const char *msg, const char *code)
{
    struct buf b = {0};
    buf_append_str(&b, "{\"error\":{\"message\":");
    json_append_str(&b, msg, strlen(msg));
    buf_printf(&b, ",\"type\":\"invalid_request_error\",\"param\":null,\"code\":\"%s\"}}", code);
    conn_respond(c, status, "application/json", buf_data(&b), b.len,
                 status == 405 ? "Allow: POST, PUT, DELETE\r\n" : NULL);
    buf_free(&b);
}

static bool authorized(struct conn *c)
{
    const char *tok = c->w->rt->cfg.admin_token;
    if (tok[0] == '\0')
        return true; /* loopback admin without a token (main.c refuses anything else) */
    if (c->x->ar == NULL || !c->x->ar->has_auth || strncmp(c->x->ar->auth, "Bearer ", 7) != 0)
        return false;
    const char *given = c->x->ar->auth + 7;
    return util_ct_equal(given, strlen(given), tok, strlen(tok));
}

/* The IPv4 address an IPv6 one stands for, if any: IPv4-mapped
 * (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d, deprecated but still routed
 * by some stacks) and NAT64 (64:ff9b::a.b.c.d). "::ffff:127.0.0.1" reaches
 * 127.0.0.1 through a dual-stack socket, so it is judged as 127.0.0.1. */
static bool embedded_v4(const struct net_addr *a, struct net_addr *v4)
{
    static const uint8_t nat64[12] = {0, 0x64, 0xff, 0x9b};
    if (a->ss.ss_family != AF_INET6)
        return false;
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&a->ss;
    const uint8_t *b = s6->sin6_addr.s6_addr;
    if (!IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr) && !IN6_IS_ADDR_V4COMPAT(&s6->sin6_addr) &&
        memcmp(b, nat64, sizeof(nat64)) != 0)
        return false;
    memset(v4, 0, sizeof(*v4));
    struct sockaddr_in *s4 = (struct sockaddr_in *)&v4->ss;
    s4->sin_family = AF_INET;
    s4->sin_port = s6->sin6_port;
    memcpy(&s4->sin_addr, b + 12, 4);
    v4->len = sizeof(*s4);
    return true;
}

/* Refuses addresses that would turn the balancer into an SSRF pivot. */
static const char *address_denied(struct conn *c, const struct net_addr *a)
{
    const struct server *s = c->w->srv;
    struct net_addr v4;
    if (embedded_v4(a, &v4))
        return address_denied(c, &v4);
    /* Before the allow list: --backend-allow 127.0.0.0/8 must not let a
     * registration point the balancer at itself (a request loop). */
    if (net_addr_reaches(a, &s->listen_addr) || net_addr_reaches(a, &s->admin_addr))
        return "the balancer's own listeners are not allowed";
    if (cfg_allowed(&c->w->rt->cfg, a))
        return NULL;
    if (net_addr_is_loopback(a))
        return "loopback addresses are not allowed (see --backend-allow)";
    if (a->ss.ss_family == AF_INET) {
        uint32_t ip = ntohl(((const struct sockaddr_in *)&a->ss)->sin_addr.s_addr);
        if ((ip >> 16) == 0xa9fe)
            return "link-local and metadata addresses are not allowed";
        if ((ip >> 24) == 0 || (ip >> 28) == 0xe || ip == 0xffffffffu)
            return "unspecified, multicast and broadcast addresses are not allowed";
    } else {
        /* fd00:ec2::254 is the instance metadata service over IPv6 (the
         * rest of fc00::/7 is ordinary cluster address space). */
        static const uint8_t imds6[16] = {0xfd, 0, 0x0e, 0xc2, [14] = 0x02, [15] = 0x54};
        const struct in6_addr *v6 = &((const struct sockaddr_in6 *)&a->ss)->sin6_addr;
        if (IN6_IS_ADDR_LINKLOCAL(v6) || IN6_IS_ADDR_SITELOCAL(v6) ||
            IN6_IS_ADDR_UNSPECIFIED(v6) || IN6_IS_ADDR_MULTICAST(v6) ||
            memcmp(v6->s6_addr, imds6, sizeof(imds6)) == 0)
            return "link-local, metadata, unspecified and multicast addresses are not allowed";
    }
    return NULL;
}

/* Reads one service object into <sp>, which then owns its model list
 * (reg_spec_free), error or not. Returns NULL or an error message. */
static const char *parse_service(struct conn *c, const char *js, const struct json_tok *t, int obj,
                                 struct backend_spec *sp, char *err)
{
    int64_t v;
    int k;
    memset(sp, 0, sizeof(*sp));
    sp->weight = 1;
    if (t[obj].type != JSON_OBJECT)
        return "each service must be a JSON object";
    k = json_get(js, t, obj, "name");
    if (k < 0 || json_str(js, &t[k], sp->name, sizeof(sp->name)) <= 0)
        return "\"name\" must be a non-empty string of at most 253 characters";
    k = json_get(js, t, obj, "ip");
    if (k < 0 || json_str(js, &t[k], sp->host, sizeof(sp->host)) <= 0)
        return "\"ip\" must be a string holding a numeric IP address";
    k = json_get(js, t, obj, "port");
    if (k < 0 || json_int(js, &t[k], 1, 65535, &v) != 0)
        return "\"port\" must be an integer from 1 to 65535";
    sp->port = (int)v;
    if ((k = json_get(js, t, obj, "weight")) >= 0) {
        if (json_int(js, &t[k], 0, REG_MAX_WEIGHT, &v) != 0)
            return "\"weight\" must be an integer from 0 to 1000000";
        sp->weight = (unsigned)v;
    }
    if ((k = json_get(js, t, obj, "max_inflight")) >= 0) {
        if (json_int(js, &t[k], 0, 1000000, &v) != 0)
            return "\"max_inflight\" must be an integer from 0 to 1000000";
        sp->max_inflight = (unsigned)v;
        sp->max_inflight_set = true;
    }
    if ((k = json_get(js, t, obj, "models")) >= 0) {
        if (t[k].type != JSON_ARRAY || t[k].size > REG_MAX_MODELS)
            return "\"models\" must be an array of at most 32 strings";
        /* Decoded here, then kept packed: a spec holds only what it lists. */
        char names[REG_MAX_MODELS][REG_MODEL_MAX + 1];
        const char *ptrs[REG_MAX_MODELS];
        int e = k + 1;
        for (uint32_t i = 0; i < t[k].size; i++, e = (int)t[e].next) {
            if (json_str(js, &t[e], names[i], sizeof(names[i])) <= 0)
                return "\"models\" must hold non-empty strings of at most 127 bytes";
            ptrs[i] = names[i];
        }
        if (reg_spec_set_models(sp, ptrs, t[k].size, err) != 0)
            return err;
    }
    struct net_addr a;
    if (reg_spec_check(sp, &a, err) != 0)
        return err;
    return address_denied(c, &a);
}

/* The most tokens a service takes with only the members parse_service
 * reads: the object, six keys and their values, REG_MAX_MODELS names. */
#define SERVICE_MAX_TOKENS (1 + 2 * 6 + REG_MAX_MODELS)
/* ... and a body: the top object, "generation" and "services" with their
 * values, and REG_MAX_BACKENDS services. More is refused unparsed. */
#define BODY_MAX_TOKENS (5 + (size_t)REG_MAX_BACKENDS * SERVICE_MAX_TOKENS)

/* The tokens <s> takes if it is valid JSON, or more: every token but the
 * first follows a '[', '{', ',' or ':' outside strings. The token array is
 * sized by this, not by the body's length (a body of one-byte values
 * needs len / 2 tokens: 8M tokens, 190 MB, for 16 MiB). */
static size_t count_tokens(const char *s, size_t len)
{
    size_t n = 1;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (ch == '"') {
            for (i++; i < len && s[i] != '"'; i++)
                if (s[i] == '\\')
                    i++;
        } else if (ch == '[' || ch == '{' || ch == ',' || ch == ':') {
            n++;
        }
    }
    return n;
}

/* Parses the JSON body. Returns the token count, or answers (400, or 413
 * for more values than any accepted body has) and returns -1. */
static int parse_body(struct conn *c, struct json_tok **toks)
{
    const char *js = buf_data(&c->x->body);
    if (c->x->body.len == 0) {
        jerr(c, 400, "a JSON body is required", "invalid_json");
        return -1;
    }
    size_t max = count_tokens(js, c->x->body.len);
    if (max > BODY_MAX_TOKENS) {
        jerr(c, 413, "JSON body has too many values", "too_many_values");
        return -1;
    }
    *toks = xmalloc(max * sizeof(**toks));
    int n = json_parse(js, c->x->body.len, *toks, (unsigned)max);
    if (n < 0) {
        /* -E2BIG too: valid JSON fits in <max> tokens. */
        jerr(c, 400, "malformed JSON body", "invalid_json");
        return -1;
    }
    return n;
}

/* Answers a registry refusal: over REG_MAX_BACKENDS is 413, like a body
 * with more services than that; the rest are bad services. */
static void reg_error(struct conn *c, int r, const char *err)
{
    if (r == -ENOSPC)
        jerr(c, 413, err, "too_many_backends");
    else
        jerr(c, 400, err, "invalid_service");
}

static void audit(struct conn *c, const char *what, const char *name)
{
    char peer[NET_ADDRSTR_LEN];
    net_addr_str(&c->peer, peer, sizeof(peer));
    log_info("admin %s: %s %s", peer, what, name);
    atomic_fetch_add(&c->w->srv->stats.admin_changes, 1);
}

static void do_register(struct conn *c)
{
    struct json_tok *t = NULL;
    struct backend_spec sp = {0};
    char err[NET_ERR_LEN];
    if (parse_body(c, &t) < 0)
        goto out;
    const char *bad = parse_service(c, buf_data(&c->x->body), t, 0, &sp, err);
    if (bad != NULL) {
        jerr(c, 400, bad, "invalid_service");
        goto out;
    }
    int r = reg_upsert(&c->w->srv->reg, &sp, REG_SOURCE_ADMIN, err);
    if (r < 0) {
        reg_error(c, r, err);
        goto out;
    }
    audit(c, r == 0 ? "registered" : "updated", sp.name);
    text(c, 200, "Registered");
out:
    reg_spec_free(&sp);
    free(t);
}

static void do_put_services(struct conn *c)
{
    struct json_tok *t = NULL;
    struct backend_spec *specs = NULL;
    unsigned n_specs = 0; /* allocated (each may own a model list) */
    char err[NET_ERR_LEN];
    int64_t gen = 0;
    if (parse_body(c, &t) < 0)
        goto out;
    const char *js = buf_data(&c->x->body);
    int g = json_get(js, t, 0, "generation"), sv = json_get(js, t, 0, "services");
    if (t[0].type != JSON_OBJECT || sv < 0 || t[sv].type != JSON_ARRAY) {
        jerr(c, 400, "body must be {\"generation\":N,\"services\":[...]}", "invalid_json");
        goto out;
    }
    if (g >= 0 && json_int(js, &t[g], 0, INT64_MAX, &gen) != 0) {
        jerr(c, 400, "\"generation\" must be a non-negative integer", "invalid_json");
        goto out;
    }
    unsigned n = t[sv].size;
    if (n > REG_MAX_BACKENDS) {
        /* Before anything is allocated per service. */
        snprintf(err, sizeof(err), "too many services: %u, at most %d", n, REG_MAX_BACKENDS);
        jerr(c, 413, err, "too_many_backends");
        goto out;
    }
    specs = xcalloc(n ? n : 1, sizeof(*specs));
    n_specs = n;
    int e = sv + 1;
    for (unsigned i = 0; i < n; i++, e = (int)t[e].next) {
        const char *bad = parse_service(c, js, t, e, &specs[i], err);
        if (bad != NULL) {
            char msg[NET_ERR_LEN + 64];
            snprintf(msg, sizeof(msg), "services[%u]: %s", i, bad);
            jerr(c, 400, msg, "invalid_service");
            goto out;
        }
    }
    int r = reg_replace(&c->w->srv->reg, REG_SOURCE_ADMIN, specs, n, (uint64_t)gen, err);
    if (r == -ESTALE) {
        jerr(c, 409, err, "stale_generation");
        goto out;
    }
    if (r < 0) {
        reg_error(c, r, err);
        goto out;
    }
    char name[64];
    snprintf(name, sizeof(name), "generation %lld, %u services", (long long)gen, n);
    audit(c, "replaced the set:", name);
    struct buf b = {0};
    buf_printf(&b, "{\"generation\":%lld,\"services\":%u}", (long long)gen, n);
    conn_respond(c, 200, "application/json", buf_data(&b), b.len, NULL);
    buf_free(&b);
out:
    reg_specs_free(specs, n_specs);
    free(t);
}

static void do_metrics(struct conn *c)
{
    struct server *s = c->w->srv;
    struct server_stats *st = &s->stats;
    struct buf b = {0};
    static const char *const classes[] = {"none", "1xx", "2xx", "3xx", "4xx", "5xx"};
    /* The process families, in the order /metrics has always listed them;
     * the registry appends its own (queue, backends, models). */
    const struct metric_scalar head[] = {
        {{"llamalb_up", "1 while the balancer runs.", METRIC_GAUGE}, METRIC_INT, 1, 0},
        {{"llamalb_draining", "1 while draining.", METRIC_GAUGE}, METRIC_INT,
         atomic_load(&s->draining) ? 1 : 0, 0},
        {{"llamalb_connections_active", "Open client connections.", METRIC_GAUGE}, METRIC_INT,
         atomic_load(&st->conns_active), 0},
        {{"llamalb_connections_total", "Accepted client connections.", METRIC_COUNTER},
         METRIC_INT, atomic_load(&st->conns_accepted), 0},
        {{"llamalb_admin_connections_active", "Open admin connections (--admin-max-conns).",
          METRIC_GAUGE}, METRIC_INT, atomic_load(&st->admin_conns_active), 0},
        {{"llamalb_body_memory_bytes", "Memory reserved for request bodies (--max-body-memory).",
          METRIC_GAUGE}, METRIC_INT, atomic_load(&st->body_mem), 0},
        {{"llamalb_body_memory_refused_total",
          "Requests refused with 503: request body memory full.", METRIC_COUNTER},
         METRIC_INT, atomic_load(&st->body_mem_refused), 0},
        {{"llamalb_slow_client_cuts_total",
          "Responses of capped backends cut because the client kept them waiting "
          "(--slow-client-budget).", METRIC_COUNTER},
         METRIC_INT, atomic_load(&st->slow_client_cuts), 0},
        {{"llamalb_requests_total", "Requests whose head was accepted.", METRIC_COUNTER},
         METRIC_INT, atomic_load(&st->requests), 0},
    };
    const struct metric_scalar tail[] = {
        {{"llamalb_no_backend_total", "Requests refused with no eligible backend.",
          METRIC_COUNTER}, METRIC_INT, atomic_load(&st->no_backend), 0},
        {{"llamalb_aborted_total",
          "Responses cut short (client left or upstream died mid-response).", METRIC_COUNTER},
         METRIC_INT, atomic_load(&st->aborted_streams), 0},
        {{"llamalb_upstream_connects_total",
          "Upstream connections opened (a low count against requests means the pools work).",
          METRIC_COUNTER}, METRIC_INT, atomic_load(&st->up_connects), 0},
        {{"llamalb_upstream_reuses_total", "Requests sent on a pooled upstream connection.",
          METRIC_COUNTER}, METRIC_INT, atomic_load(&st->up_reuses), 0},
        {{"llamalb_upstream_idle_connections",
          "Upstream connections pooled and idle now, all workers.", METRIC_GAUGE},
         METRIC_INT, atomic_load(&st->up_idle), 0},
        {{"llamalb_admin_changes_total", "Registry changes through the admin API.",
          METRIC_COUNTER}, METRIC_INT, atomic_load(&st->admin_changes), 0},
        {{"llamalb_admin_auth_failures_total", "Admin requests refused for a bad token.",
          METRIC_COUNTER}, METRIC_INT, atomic_load(&st->admin_auth_failures), 0},
    };
    static const struct metric_family responses = {
        "llamalb_responses_total", "Responses sent, by status class.", METRIC_COUNTER};
    static const struct metric_family local = {
        "llamalb_local_responses_total",
        "Responses the balancer made itself (errors), by status.", METRIC_COUNTER};

    metric_scalars(&b, head, ARRAY_SIZE(head));
    metric_head(&b, &responses);
    for (int k = 1; k < 6; k++) {
        struct metric_label l = {"code", classes[k]};
        metric_u64(&b, responses.name, NULL, &l, 1, atomic_load(&st->responses[k]));
    }
    metric_head(&b, &local);
    for (int code = 100; code < 600; code++) {
        uint64_t v = atomic_load(&st->local_errors[code]);
        char sv[8];
        snprintf(sv, sizeof(sv), "%d", code);
        struct metric_label l = {"status", sv};
        if (v)
            metric_u64(&b, local.name, NULL, &l, 1, v);
    }
    metric_scalars(&b, tail, ARRAY_SIZE(tail));
    reg_write_metrics(&s->reg, &b, ev_now(c->w->loop));
    key_write_metrics(&s->key_use, &b);
    follow_write_metrics(s, &b);
    conn_respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", buf_data(&b), b.len, NULL);
    buf_free(&b);
}

static bool method_is(const struct conn *c, const char *m)
{
    return strcmp(c->x->method, m) == 0;
}

/* The admin routes: what each takes is decided here once, so the head can
 * be judged before any body byte is read (admin_check_head). Bodies are
 * small (64 KiB), except the watcher's full-state PUT /api/services: a
 * cluster of thousands of endpoints is megabytes of JSON. */
struct admin_route {
    const char *path;
    bool prefix;          /* path is a prefix (/api/unregister/NAME) */
    bool auth;            /* needs the bearer token */
    const char *methods;  /* allowed methods, space-separated */
    const char *use;      /* the 405 message */
    uint64_t max_body;
};

static const struct admin_route routes[] = {
    {"/healthz", false, false, "GET HEAD", "use GET", 65536},
    {"/readyz", false, false, "GET HEAD", "use GET", 65536},
    {"/metrics", false, true, "GET HEAD", "use GET", 65536},
    {"/api/register", false, true, "POST", "use POST", 65536},
    {"/api/unregister/", true, true, "DELETE", "use DELETE", 65536},
    {"/api/services", false, true, "GET HEAD PUT", "use GET or PUT", 16u << 20},
    {"/api/drain", false, true, "POST", "use POST", 65536},
    {"/api/role", false, true, "GET HEAD PUT", "use GET or PUT", 65536}, /* follow.h */
    {"/", false, false, "GET HEAD", "use GET", 65536},          /* the status page (stats.c) */
    {"/api/stats", false, true, "GET HEAD", "use GET", 65536}, /* ... its data */
};

/* Copies the path of the request target (no query) into <p>. */
static void target_path(const char *target, char *p, size_t n)
{
    size_t plen = strcspn(target, "?");
    plen = MIN(plen, n - 1);
    memcpy(p, target, plen);
    p[plen] = '\0';
}

/* --drain-hook: the same drain as POST /api/drain, started by a GET
 * without the token (a preStop httpGet hook can send neither a method nor
 * a Secret); the unguessable path is the credential. */
static const struct admin_route drain_hook = {"", false, false, "GET", "use GET", 65536};

static bool is_drain_hook(const struct server *s, const char *path)
{
    return s->cfg.drain_hook[0] != '\0' && strcmp(path, s->cfg.drain_hook) == 0;
}

static const struct admin_route *find_route(const struct server *s, const char *path)
{
    if (is_drain_hook(s, path))
        return &drain_hook;
    for (size_t i = 0; i < ARRAY_SIZE(routes); i++) {
        const struct admin_route *r = &routes[i];
        if (r->prefix ? strncmp(path, r->path, strlen(r->path)) == 0 : strcmp(path, r->path) == 0)
            return r;
    }
    return NULL;
}

static bool route_allows(const struct admin_route *r, const char *method)
{
    size_t n = strlen(method);
    for (const char *m = r->methods; *m != '\0';) {
        size_t k = strcspn(m, " ");
        if (k == n && strncmp(m, method, n) == 0)
            return true;
        m += k + (m[k] == ' ');
    }
    return false;
}

uint64_t admin_body_limit(const struct server *s, const char *target, const char *method)
{
    char p[sizeof(((struct exchange *)0)->path)];
    target_path(target, p, sizeof(p));
    const struct admin_route *r = find_route(s, p);
    return r != NULL && route_allows(r, method) ? r->max_body : 65536;
}

/* A refusal on the head: an announced body is never read, so the
 * connection closes after the answer (its bytes would be taken for the
 * next request). */
static bool refuse(struct conn *c, const struct http1_msg *m, int status, const char *msg,
                   const char *code)
{
    if (m->framing != HTTP1_BODY_NONE)
        c->close_after = true;
    jerr(c, status, msg, code);
    conn_local_done(c);
    return false;
}

bool admin_check_head(struct conn *c, const struct http1_msg *m)
{
    struct server *s = c->w->srv;
    char p[sizeof(c->x->path)];
    target_path(c->x->path, p, sizeof(p));

    if (m->target.len >= sizeof(c->x->path) - 1) {
        /* Truncated: acting on a prefix could unregister another service. */
        return refuse(c, m, 414, "request target too long", "uri_too_long");
    }
    const struct admin_route *r = find_route(s, p);
    if (r == NULL && strncmp(p, "/api/", 5) != 0)
        return refuse(c, m, 404, "not found", "not_found");
    if (r == NULL || r->auth) {
        if (!authorized(c)) {
            int64_t now = ev_now(c->w->loop);
            atomic_fetch_add(&s->stats.admin_auth_failures, 1);
            if (now - auth_window >= 1000) {
                auth_window = now;
                auth_fails = 0;
            }
            if (++auth_fails > AUTH_FAILS_PER_SEC)
                return refuse(c, m, 429, "too many failed authentication attempts", "rate_limited");
            char peer[NET_ADDRSTR_LEN];
            net_addr_str(&c->peer, peer, sizeof(peer));
            log_warn("admin %s: %s %s refused: bad or missing token", peer, c->x->method, p);
            return refuse(c, m, 401, "missing or invalid bearer token", "unauthorized");
        }
    }
    if (r == NULL)
        return refuse(c, m, 404, "not found", "not_found");
    if (!route_allows(r, c->x->method))
        return refuse(c, m, 405, r->use, "method_not_allowed");
    bool mutating = !method_is(c, "GET") && !method_is(c, "HEAD");
    bool has_body = m->framing == HTTP1_BODY_CHUNKED ||
                    (m->framing == HTTP1_BODY_LENGTH && m->content_length > 0);
    if (mutating && c->x->ar->has_origin) {
        /* Browsers send Origin on cross-site POSTs: refuse CSRF outright. */
        return refuse(c, m, 403, "requests carrying an Origin header are refused", "forbidden");
    }
    if (mutating && has_body && !c->x->ar->json_ctype)
        return refuse(c, m, 415, "Content-Type must be application/json", "unsupported_media_type");
    if (m->framing == HTTP1_BODY_LENGTH && m->content_length > r->max_body)
        return refuse(c, m, 413,
                      r->max_body > 65536 ? "admin request body over 16 MiB"
                                          : "admin request body over 64 KiB",
                      "body_too_large");
    return true;
}

void admin_handle(struct conn *c)
{
    struct server *s = c->w->srv;
    char p[sizeof(c->x->path)];
    target_path(c->x->path, p, sizeof(p));
    int64_t now = ev_now(c->w->loop);

    /* admin_check_head() accepted the path, token, method and media type. */
    if (strcmp(p, "/healthz") == 0) {
        text(c, 200, "ok\n");
    } else if (strcmp(p, "/readyz") == 0) {
        bool ready = !atomic_load(&s->stopping) && reg_count(&s->reg) > 0;
        text(c, ready ? 200 : 503, ready ? "ready\n" : "not ready\n");
    } else if (strcmp(p, "/metrics") == 0) {
        do_metrics(c);
    } else if (strcmp(p, "/") == 0) {
        stats_serve_page(c);
    } else if (strcmp(p, "/api/stats") == 0) {
        stats_serve_json(c);
    } else if (strcmp(p, "/api/register") == 0) {
        do_register(c);
    } else if (strncmp(p, "/api/unregister/", 16) == 0) {
        const char *name = p + 16;
        if (reg_remove(&s->reg, name) == 0) {
            audit(c, "unregistered", name);
            text(c, 200, "Unregistered");
        } else {
            text(c, 404, "Service not found");
        }
    } else if (strcmp(p, "/api/services") == 0) {
        if (method_is(c, "PUT")) {
            do_put_services(c);
        } else {
            struct buf b = {0};
            reg_dump_json(&s->reg, &b, now);
            conn_respond(c, 200, "application/json", buf_data(&b), b.len, NULL);
            buf_free(&b);
        }
    } else if (strcmp(p, "/api/role") == 0) {
        follow_admin_role(c);
    } else if (strcmp(p, "/api/drain") == 0 || is_drain_hook(s, p)) {
        audit(c, "started draining", "");
        c->close_after = true;
        text(c, 200, "draining\n");
        server_shutdown(s, true);
    } else {
        jerr(c, 404, "not found", "not_found");
    }
    conn_local_done(c);
}
