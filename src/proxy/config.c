/* SPDX-License-Identifier: MIT
 * One option table for flags and config-file lines. */
#include <arpa/inet.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "lb.h"
#include "util.h"

enum opt_type {
    OPT_STR = 0, /* char[] field */
    OPT_UINT,
    OPT_DURATION, /* "10s", "250ms", bare = seconds */
    OPT_SIZE,     /* bytes, with k/m suffixes */
    OPT_BOOL,     /* on/off (flags: also bare) */
    OPT_POLICY,
    OPT_BACKEND,
    OPT_CIDR,
    OPT_ALIAS,
    OPT_FLAG, /* no value */
};

struct opt {
    const char *name;
    enum opt_type type;
    size_t off;     /* offset in struct cfg */
    size_t size;    /* OPT_STR: field size; OPT_UINT/SIZE: field width */
    uint64_t min, max;
    const char *help;
};

#define F(field) offsetof(struct cfg, field), sizeof(((struct cfg *)0)->field)

static const struct opt opts[] = {
    {"listen", OPT_STR, F(listen), 0, 0, "public listener HOST:PORT (default 0.0.0.0:8080)"},
    {"admin-listen", OPT_STR, F(admin_listen), 0, 0, "admin listener (default 127.0.0.1:8081)"},
    {"policy", OPT_POLICY, F(policy), 0, 0, "random | wrr | least | p2c (default least)"},
    {"workers", OPT_UINT, F(workers), 0, 256, "worker threads (default: CPU count)"},
    {"backend", OPT_BACKEND, 0, 0, 0, 0,
     "NAME=HOST:PORT[,weight=N][,models=A|B][,max-inflight=N] (repeatable)"},
    {"api-key-file", OPT_STR, F(api_key_file), 0, 0,
     "API keys for the public port, one per line with optional limits (off)"},
    {"admin-token-file", OPT_STR, F(admin_token_file), 0, 0,
     "file holding the admin bearer token (or env LLAMALB_ADMIN_TOKEN)"},
    {"backend-allow", OPT_CIDR, 0, 0, 0, 0,
     "CIDR admin registrations may use despite the loopback/link-local deny list (repeatable)"},
    {"header-timeout", OPT_DURATION, F(header_timeout), 1, 3600000, "request head deadline (10s)"},
    {"body-timeout", OPT_DURATION, F(body_timeout), 1, 3600000, "idle between body reads (30s)"},
    {"body-deadline", OPT_DURATION, F(body_deadline), 1, 86400000,
     "whole request body, however it trickles in (120s; admin bodies: at most 10s)"},
    {"keepalive-timeout", OPT_DURATION, F(keepalive_timeout), 1, 3600000,
     "idle client keep-alive (30s)"},
    {"connect-timeout", OPT_DURATION, F(connect_timeout), 1, 600000, "upstream connect (3s)"},
    {"response-timeout", OPT_DURATION, F(response_timeout), 1, 86400000,
     "request sent to first response byte (300s)"},
    {"stream-idle-timeout", OPT_DURATION, F(stream_idle_timeout), 1, 86400000,
     "idle between response bytes (120s)"},
    {"send-timeout", OPT_DURATION, F(send_timeout), 1, 3600000, "client not reading (60s)"},
    {"slow-client-budget", OPT_DURATION, F(slow_client_budget), 1, 86400000,
     "time a response from a capped backend may wait on its client, in total (30s)"},
    {"upstream-idle-timeout", OPT_DURATION, F(upstream_idle_timeout), 1, 3600000,
     "pooled upstream connection idle lifetime (20s)"},
    {"drain-timeout", OPT_DURATION, F(drain_timeout), 0, 86400000,
     "longest wait for in-flight requests once draining (25s)"},
    {"drain-delay", OPT_DURATION, F(drain_delay), 0, 3600000,
     "keep accepting this long after SIGTERM or /api/drain, not ready (3s)"},
    {"max-conns", OPT_UINT, F(max_conns), 0, 10000000, "client connections (default from RLIMIT_NOFILE)"},
    {"admin-max-conns", OPT_UINT, F(admin_max_conns), 1, 100000,
     "admin connections, counted apart from --max-conns (32)"},
    {"max-idle-per-backend", OPT_UINT, F(max_idle_per_backend), 0, 100000,
     "pooled upstream connections per worker and backend (64)"},
    {"max-body", OPT_SIZE, offsetof(struct cfg, limits.max_body), sizeof(uint64_t), 0,
     1ULL << 40, "request body limit (32m; 0 = none but --max-body-memory)"},
    {"max-body-memory", OPT_SIZE, F(max_body_memory), 1 << 20, 1ULL << 40,
     "request bodies buffered at once, whole process (256m); past it 503"},
    {"max-header-line", OPT_SIZE, offsetof(struct cfg, limits.max_line), sizeof(size_t), 64,
     1 << 20, "request line limit (8k)"},
    {"max-header-size", OPT_SIZE, offsetof(struct cfg, limits.max_head), sizeof(size_t), 256,
     1 << 20, "request head limit (32k)"},
    {"max-headers", OPT_UINT, offsetof(struct cfg, limits.max_headers), sizeof(unsigned), 1,
     HTTP1_MAX_HEADERS, "header lines limit (100)"},
    {"max-tries", OPT_UINT, F(max_tries), 1, REG_MAX_TRIES, "attempts per request (2)"},
    {"retry-on-status", OPT_BOOL, F(retry_on_status), 0, 0,
     "retry 502/503/429 elsewhere before any byte was relayed (on)"},
    {"eject-after", OPT_UINT, F(eject_after), 0, 1000, "consecutive failures to eject (5; 0 = never)"},
    {"eject-time", OPT_DURATION, F(eject_time), 1, 86400000, "first ejection (30s, doubling)"},
    {"eject-max-time", OPT_DURATION, F(eject_max_time), 1, 86400000, "longest ejection (300s)"},
    {"access-log", OPT_STR, F(access_log), 0, 0, "PATH, - (stdout) or off (default: stderr)"},
    {"access-log-format", OPT_STR, 0, 0, 0, 0, "text | json: the same fields either way (text)"},
    {"default-max-inflight", OPT_UINT, F(default_max_inflight), 0, 1000000,
     "requests a backend takes at once unless it says (1; 0 = no cap)"},
    {"queue-max", OPT_UINT, F(queue_max), 0, 1000000, "requests waiting for a free backend (1024)"},
    {"queue-timeout", OPT_DURATION, F(queue_timeout), 1, 86400000,
     "longest wait for a free backend (30s), then 503"},
    {"unknown-model", OPT_STR, 0, 0, 0, 0,
     "any (send to any backend, as the original demo) | reject (404 model_not_found)"},
    {"model-alias", OPT_ALIAS, 0, 0, 0, 0, "REQUESTED=SERVED (repeatable)"},
    {"local-models", OPT_BOOL, F(local_models), 0, 0,
     "answer GET /v1/models from the registry (on)"},
    {"affinity", OPT_STR, F(affinity), 0, 0,
     "session affinity key: a header name (X-Session-Id) or user; off by default"},
    {"slow-start", OPT_DURATION, F(slow_start), 0, 86400000,
     "weight ramp for new or recovered backends (0 = off)"},
    {"health-interval", OPT_DURATION, F(health_interval), 0, 86400000,
     "GET /v1/models probe of idle backends: health and model list (5s; 0 = off)"},
    {"probe-timeout", OPT_DURATION, F(probe_timeout), 1, 600000, "probe answer deadline (2s)"},
    {"log-level", OPT_STR, 0, 0, 0, 0, "debug | info | warn | error (info)"},
    {"drain-hook", OPT_STR, 0, 0, 0, 0,
     "PATH: GET PATH on the admin listener starts the drain without the token, for a pod's "
     "preStop httpGet hook (off)"},
    {"follow", OPT_STR, F(follow), 0, 0,
     "HOST:PORT of the active replica's public listener: forward every request there (off)"},
};

void cfg_defaults(struct cfg *c)
{
    memset(c, 0, sizeof(*c));
    strcpy(c->listen, "0.0.0.0:8080");
    strcpy(c->admin_listen, "127.0.0.1:8081");
    c->policy = &lb_least;
    c->limits = http1_default_limits;
    c->header_timeout = 10000;
    c->body_timeout = 30000;
    c->body_deadline = 120000;
    c->admin_max_conns = 32;
    c->max_body_memory = 256u << 20;
    c->slow_client_budget = 30000;
    c->keepalive_timeout = 30000;
    c->connect_timeout = 3000;
    c->response_timeout = 300000;
    c->stream_idle_timeout = 120000;
    c->send_timeout = 60000;
    c->upstream_idle_timeout = 20000;
    c->drain_timeout = 25000;
    c->drain_delay = 3000;
    c->max_idle_per_backend = 64;
    c->max_tries = 2;
    c->retry_on_status = true;
    c->eject_after = 5;
    c->eject_time = 30000;
    c->eject_max_time = 300000;
    strcpy(c->access_log, "stderr");
    c->log_level = LOG_INFO;
    c->default_max_inflight = 1;
    c->queue_max = 1024;
    c->queue_timeout = 30000;
    c->local_models = true;
    c->health_interval = 5000;
    c->probe_timeout = 2000;
}

const char *cfg_alias(const struct cfg *c, const char *m)
{
    for (unsigned i = 0; i < c->naliases; i++)
        if (strcmp(c->aliases[i].from, m) == 0)
            return c->aliases[i].to;
    return m;
}

void cfg_free(struct cfg *c)
{
    reg_specs_free(c->backends, c->nbackends);
    c->backends = NULL;
    c->nbackends = 0;
}

void cfg_usage(FILE *f)
{
    fprintf(f, "usage: llamalb [options]\n"
               "  -c FILE                  read options from FILE (one 'name value' per line)\n"
               "  -t                       check the configuration and exit\n");
    for (size_t i = 0; i < ARRAY_SIZE(opts); i++)
        fprintf(f, "  --%-23s %s\n", opts[i].name, opts[i].help);
    fprintf(f, "  --help, --version\n");
}

static int parse_size(const char *v, uint64_t *out)
{
    size_t n = strlen(v);
    uint64_t mult = 1;
    if (n > 0) {
        char s = (char)(v[n - 1] | 0x20);
        if (s == 'k' || s == 'm' || s == 'g') {
            mult = s == 'k' ? 1024 : s == 'm' ? 1024 * 1024 : 1024ULL * 1024 * 1024;
            n--;
        }
    }
    uint64_t x;
    if (util_parse_u64(v, n, 0, UINT64_MAX / mult, &x) != 0)
        return -EINVAL;
    *out = x * mult;
    return 0;
}

static int parse_cidr(const char *v, struct cidr *out)
{
    char host[NET_ADDRSTR_LEN + 8], err[NET_ERR_LEN];
    const char *slash = strchr(v, '/');
    size_t hl = slash ? (size_t)(slash - v) : strlen(v);
    if (hl == 0 || hl >= NET_ADDRSTR_LEN)
        return -EINVAL;
    if (memchr(v, ':', hl) != NULL)
        snprintf(host, sizeof(host), "[%.*s]:1", (int)hl, v);
    else
        snprintf(host, sizeof(host), "%.*s:1", (int)hl, v);
    if (net_parse_addr(host, false, false, &out->net, err) != 0)
        return -EINVAL;
    unsigned maxbits = out->net.ss.ss_family == AF_INET ? 32 : 128;
    uint64_t bits = maxbits;
    if (slash && util_parse_u64(slash + 1, strlen(slash + 1), 0, maxbits, &bits) != 0)
        return -EINVAL;
    out->bits = (unsigned)bits;
    return 0;
}

bool cfg_allowed(const struct cfg *c, const struct net_addr *a)
{
    for (unsigned i = 0; i < c->nallow; i++) {
        const struct cidr *k = &c->allow[i];
        if (k->net.ss.ss_family != a->ss.ss_family)
            continue;
        const unsigned char *x, *y;
        if (a->ss.ss_family == AF_INET) {
            x = (const unsigned char *)&((const struct sockaddr_in *)&a->ss)->sin_addr;
            y = (const unsigned char *)&((const struct sockaddr_in *)&k->net.ss)->sin_addr;
        } else {
            x = (const unsigned char *)&((const struct sockaddr_in6 *)&a->ss)->sin6_addr;
            y = (const unsigned char *)&((const struct sockaddr_in6 *)&k->net.ss)->sin6_addr;
        }
        unsigned bits = k->bits, i8 = 0;
        bool match = true;
        for (; bits >= 8; bits -= 8, i8++)
            if (x[i8] != y[i8])
                match = false;
        if (match && bits > 0) {
            unsigned char mask = (unsigned char)(0xff << (8 - bits));
            match = (x[i8] & mask) == (y[i8] & mask);
        }
        if (match)
            return true;
    }
    return false;
}

/* Applies option <o> with value <v> (NULL for a bare boolean flag). */
/* Options whose string value is one of a few keywords. */
static int apply_keyword(struct cfg *c, const struct opt *o, const char *v, char *err,
                         size_t errlen)
{
    if (strcmp(o->name, "unknown-model") == 0) {
        if (strcmp(v, "any") != 0 && strcmp(v, "reject") != 0) {
            snprintf(err, errlen, "unknown-model: expected any or reject");
            return -1;
        }
        c->reject_unknown_model = strcmp(v, "reject") == 0;
        return 0;
    }
    if (strcmp(o->name, "access-log-format") == 0) {
        if (strcmp(v, "text") != 0 && strcmp(v, "json") != 0) {
            snprintf(err, errlen, "access-log-format: expected text or json");
            return -1;
        }
        c->access_log_json = strcmp(v, "json") == 0;
        return 0;
    }
    if (strcmp(o->name, "drain-hook") == 0) {
        /* A capability in a path: long enough not to be guessed, and apart
         * from the admin API's own routes. */
        size_t n = strlen(v);
        bool ok = n >= 16 && n < sizeof(c->drain_hook) && v[0] == '/' && strncmp(v, "/api/", 5) != 0;
        for (size_t i = 0; ok && i < n; i++)
            ok = (v[i] >= 'a' && v[i] <= 'z') || (v[i] >= 'A' && v[i] <= 'Z') ||
                 (v[i] >= '0' && v[i] <= '9') || strchr("/-_.", v[i]) != NULL;
        if (!ok) {
            snprintf(err, errlen, "drain-hook: expected a path of 16 to %zu characters "
                                  "(letters, digits, / - _ .) outside /api/",
                     sizeof(c->drain_hook) - 1);
            return -1;
        }
        memcpy(c->drain_hook, v, n + 1);
        return 0;
    }
    if (strcmp(o->name, "log-level") == 0) {
        enum log_level lvl;
        if (log_parse_level(v, &lvl) != 0) {
            snprintf(err, errlen, "log-level: expected debug, info, warn or error");
            return -1;
        }
        c->log_level = lvl; /* applied by the caller: a refused reload keeps the level */
        return 0;
    }
    c->affinity[0] = '\0'; /* --affinity off */
    return 0;
}

/* Options that may be given many times, each adding one entry. */
static int apply_repeated(struct cfg *c, const struct opt *o, const char *v, char *err,
                          size_t errlen)
{
    char nerr[NET_ERR_LEN];
    if (o->type == OPT_BACKEND) {
        struct backend_spec s;
        if (reg_spec_parse(v, &s, nerr) != 0) {
            snprintf(err, errlen, "%s", nerr);
            return -1;
        }
        for (unsigned i = 0; i < c->nbackends; i++) {
            if (strcmp(c->backends[i].name, s.name) == 0) {
                snprintf(err, errlen, "backend '%.64s' given twice", s.name);
                reg_spec_free(&s);
                return -1;
            }
        }
        c->backends = xrealloc(c->backends, (c->nbackends + 1) * sizeof(*c->backends));
        c->backends[c->nbackends++] = s;
        return 0;
    }
    if (o->type == OPT_CIDR) {
        if (c->nallow == CFG_MAX_ALLOW || parse_cidr(v, &c->allow[c->nallow]) != 0) {
            snprintf(err, errlen, "backend-allow: expected an IP or CIDR such as 10.0.0.0/8");
            return -1;
        }
        c->nallow++;
        return 0;
    }
    const char *eq = strchr(v, '='); /* OPT_ALIAS */
    if (c->naliases == CFG_MAX_ALIASES || eq == NULL || eq == v || eq[1] == '\0' ||
        (size_t)(eq - v) >= sizeof(c->aliases[0].from) ||
        strlen(eq + 1) >= sizeof(c->aliases[0].to)) {
        snprintf(err, errlen, "model-alias: expected REQUESTED=SERVED");
        return -1;
    }
    memcpy(c->aliases[c->naliases].from, v, (size_t)(eq - v));
    c->aliases[c->naliases].from[eq - v] = '\0';
    strcpy(c->aliases[c->naliases].to, eq + 1);
    c->naliases++;
    return 0;
}

static int apply(struct cfg *c, const struct opt *o, const char *v, char *err, size_t errlen)
{
    char *field = (char *)c + o->off;
    uint64_t n;
    int64_t ms;
    if (v == NULL && o->type != OPT_BOOL && o->type != OPT_FLAG) {
        snprintf(err, errlen, "option %s needs a value", o->name);
        return -1;
    }
    switch (o->type) {
    case OPT_STR:
        if (strcmp(o->name, "unknown-model") == 0 || strcmp(o->name, "log-level") == 0 ||
            strcmp(o->name, "access-log-format") == 0 || strcmp(o->name, "drain-hook") == 0 ||
            (strcmp(o->name, "affinity") == 0 && strcmp(v, "off") == 0))
            return apply_keyword(c, o, v, err, errlen);
        if (strlen(v) >= o->size) {
            snprintf(err, errlen, "%s: value too long", o->name);
            return -1;
        }
        if (strcmp(o->name, "follow") == 0 && strcmp(v, "off") != 0) {
            struct net_addr a;
            char e[NET_ERR_LEN];
            if (net_parse_addr(v, false, false, &a, e) != 0) {
                snprintf(err, errlen, "follow: %s", e);
                return -1;
            }
        }
        strcpy(field, v);
        return 0;
    case OPT_UINT:
        if (util_parse_u64(v, strlen(v), o->min, o->max, &n) != 0) {
            snprintf(err, errlen, "%s: expected a whole number from %llu to %llu", o->name,
                     (unsigned long long)o->min, (unsigned long long)o->max);
            return -1;
        }
        *(unsigned *)field = (unsigned)n;
        return 0;
    case OPT_DURATION:
        if (util_parse_duration_ms(v, 1000, &ms) != 0 || ms < (int64_t)o->min ||
            ms > (int64_t)o->max) {
            snprintf(err, errlen, "%s: expected a duration such as 10s or 250ms", o->name);
            return -1;
        }
        *(int64_t *)field = ms;
        return 0;
    case OPT_SIZE:
        if (parse_size(v, &n) != 0 || n < o->min || n > o->max) {
            snprintf(err, errlen, "%s: expected a size such as 8k or 32m, from %llu to %llu",
                     o->name, (unsigned long long)o->min, (unsigned long long)o->max);
            return -1;
        }
        if (o->size == sizeof(unsigned))
            *(unsigned *)field = (unsigned)n;
        else if (o->size == sizeof(size_t))
            *(size_t *)field = (size_t)n;
        else
            *(uint64_t *)field = n;
        return 0;
    case OPT_BOOL:
        if (v == NULL || strcmp(v, "on") == 0 || strcmp(v, "true") == 0 || strcmp(v, "1") == 0)
            *(bool *)field = true;
        else if (strcmp(v, "off") == 0 || strcmp(v, "false") == 0 || strcmp(v, "0") == 0)
            *(bool *)field = false;
        else {
            snprintf(err, errlen, "%s: expected on or off", o->name);
            return -1;
        }
        return 0;
    case OPT_POLICY:
        if ((c->policy = lb_find(v)) == NULL) {
            snprintf(err, errlen, "policy: expected random, wrr, least or p2c");
            return -1;
        }
        return 0;
    case OPT_BACKEND:
    case OPT_CIDR:
    case OPT_ALIAS:
        return apply_repeated(c, o, v, err, errlen);
    case OPT_FLAG:
        return 0;
    }
    return -1;
}

static const struct opt *find_opt(const char *name, size_t len)
{
    for (size_t i = 0; i < ARRAY_SIZE(opts); i++)
        if (strlen(opts[i].name) == len && memcmp(opts[i].name, name, len) == 0)
            return &opts[i];
    return NULL;
}

static int parse_file(struct cfg *c, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    char line[4096], e[512];
    unsigned lineno = 0;
    if (f == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        lineno++;
        size_t n = strlen(line);
        if (n == sizeof(line) - 1 && line[n - 1] != '\n') {
            snprintf(err, errlen, "%s:%u: line too long", path, lineno);
            fclose(f);
            return -1;
        }
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' ' ||
                         line[n - 1] == '\t'))
            line[--n] = '\0';
        char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '\0' || *p == '#')
            continue;
        char *key = p;
        while (*p && *p != ' ' && *p != '\t')
            p++;
        size_t klen = (size_t)(p - key);
        while (*p == ' ' || *p == '\t')
            p++;
        const struct opt *o = find_opt(key, klen);
        if (o == NULL) {
            snprintf(err, errlen, "%s:%u: unknown option '%.*s'", path, lineno, (int)klen, key);
            fclose(f);
            return -1;
        }
        if (apply(c, o, *p ? p : NULL, e, sizeof(e)) != 0) {
            snprintf(err, errlen, "%s:%u: %s", path, lineno, e);
            fclose(f);
            return -1;
        }
    }
    fclose(f);
    return 0;
}

int cfg_parse_args(struct cfg *c, int argc, char **argv, char *err, size_t errlen)
{
    /* First pass: -c and -t, so the file is read before the flags override it. */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) {
            if (i + 1 >= argc) {
                snprintf(err, errlen, "-c needs a file");
                return -1;
            }
            snprintf(c->config_file, sizeof(c->config_file), "%s", argv[++i]);
        } else if (strcmp(argv[i], "-t") == 0) {
            c->check_only = true;
        }
    }
    if (c->config_file[0] != '\0' && parse_file(c, c->config_file, err, errlen) != 0)
        return -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) {
            i++;
            continue;
        }
        if (strcmp(a, "-t") == 0)
            continue;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            cfg_usage(stdout);
            return 1;
        }
        if (strcmp(a, "--version") == 0) {
            printf("llamalb " LLAMALB_VERSION "\n");
            return 1;
        }
        if (strncmp(a, "--", 2) != 0) {
            snprintf(err, errlen, "unexpected argument '%s' (see --help)", a);
            return -1;
        }
        a += 2;
        const char *eq = strchr(a, '=');
        size_t nlen = eq ? (size_t)(eq - a) : strlen(a);
        const struct opt *o = find_opt(a, nlen);
        if (o == NULL) {
            snprintf(err, errlen, "unknown option '--%.*s' (see --help)", (int)nlen, a);
            return -1;
        }
        const char *v = eq ? eq + 1 : NULL;
        /* A boolean takes "--flag", "--flag=off" or "--flag off". */
        if (v == NULL && o->type == OPT_BOOL && i + 1 < argc &&
            (strcmp(argv[i + 1], "on") == 0 || strcmp(argv[i + 1], "off") == 0 ||
             strcmp(argv[i + 1], "true") == 0 || strcmp(argv[i + 1], "false") == 0))
            v = argv[++i];
        if (v == NULL && o->type != OPT_BOOL && o->type != OPT_FLAG) {
            if (i + 1 >= argc) {
                snprintf(err, errlen, "option --%s needs a value", o->name);
                return -1;
            }
            v = argv[++i];
        }
        if (apply(c, o, v, err, errlen) != 0)
            return -1;
    }
    return 0;
}

int cfg_load_token(struct cfg *c, char *err, size_t errlen)
{
    const char *env = getenv("LLAMALB_ADMIN_TOKEN");
    /* One byte more than a token may hold, plus room for a trailing
     * newline: a longer token is refused, never silently cut (a cut token
     * would accept every request that starts with its first 255 bytes). */
    char tmp[sizeof(c->admin_token) + 2];
    size_t n = 0;
    c->admin_token[0] = '\0';
    if (c->admin_token_file[0] != '\0') {
        FILE *f = fopen(c->admin_token_file, "r");
        if (f == NULL) {
            snprintf(err, errlen, "admin-token-file %s: %s", c->admin_token_file, strerror(errno));
            return -1;
        }
        n = fread(tmp, 1, sizeof(tmp) - 1, f);
        bool more = n == sizeof(tmp) - 1 && fgetc(f) != EOF;
        fclose(f);
        if (more)
            n = sizeof(tmp); /* over the limit whatever the trimming below */
    } else if (env != NULL) {
        n = strnlen(env, sizeof(tmp));
        memcpy(tmp, env, MIN(n, sizeof(tmp) - 1));
    } else {
        return 0;
    }
    while (n > 0 && n < sizeof(tmp) && (tmp[n - 1] == '\n' || tmp[n - 1] == '\r' || tmp[n - 1] == ' '))
        n--;
    if (n >= sizeof(c->admin_token)) {
        snprintf(err, errlen, "admin token longer than %zu bytes", sizeof(c->admin_token) - 1);
        return -1;
    }
    memcpy(c->admin_token, tmp, n);
    c->admin_token[n] = '\0';
    if (strlen(c->admin_token) != n) {
        snprintf(err, errlen, "admin token holds a NUL byte");
        return -1;
    }
    if (n < 16) {
        snprintf(err, errlen, "admin token too short: use at least 16 characters (32 random bytes "
                              "recommended)");
        return -1;
    }
    return 0;
}
