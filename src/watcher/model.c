/* SPDX-License-Identifier: MIT
 * Services + EndpointSlices -> the balancer's backend set. Everything here is
 * a pure function of its arguments (see model.h); k8s.c keeps the objects,
 * push.c sends the result. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "model.h"

static const char *str_at(json_t *obj, const char *a, const char *b)
{
    json_t *v = json_object_get(obj, a);
    if (b != NULL)
        v = json_object_get(v, b);
    return json_string_value(v);
}

bool model_key(json_t *obj, char *out, size_t outlen)
{
    json_t *md = json_object_get(obj, "metadata");
    const char *name = str_at(md, "name", NULL), *ns = str_at(md, "namespace", NULL);
    out[0] = '\0';
    if (name == NULL || name[0] == '\0')
        return false;
    int n = snprintf(out, outlen, "%s/%s", ns ? ns : "", name);
    if (n < 0 || (size_t)n >= outlen) {
        out[0] = '\0';
        return false;
    }
    return true;
}

int model_parse_weight(const char *s, unsigned *out)
{
    unsigned long v = 0;
    while (*s == ' ' || *s == '\t')
        s++;
    if (!isdigit((unsigned char)*s))
        return -EINVAL;
    for (; isdigit((unsigned char)*s); s++) {
        v = v * 10 + (unsigned long)(*s - '0');
        if (v > MODEL_MAX_WEIGHT)
            return -EINVAL;
    }
    while (*s == ' ' || *s == '\t')
        s++;
    if (*s != '\0')
        return -EINVAL;
    *out = (unsigned)v;
    return 0;
}

static void warn(json_t *warnings, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warn(json_t *warnings, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    if (warnings == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_array_append_new(warnings, json_string(msg));
}

/* ------------------------------------------------------------------------
 * Per-Service settings: the annotations, read once per Service. A bad value
 * is reported and replaced by the default, never fatal: one typo in one
 * Service must not take the others out of the balancer. */

struct svc_info {
    const char *ns, *name;
    unsigned weight;
    json_t *models;       /* array of strings, owned */
    long max_inflight;    /* -1 = not set */
    json_t *port;         /* the chosen spec.ports[] entry, borrowed; NULL if none */
};

static void svc_info_read(const struct model_cfg *cfg, const char *key, json_t *svc,
                          struct svc_info *si, json_t *warnings)
{
    json_t *ann = json_object_get(json_object_get(svc, "metadata"), "annotations");
    const char *v;
    si->ns = str_at(json_object_get(svc, "metadata"), "namespace", NULL);
    si->name = str_at(json_object_get(svc, "metadata"), "name", NULL);
    si->ns = si->ns ? si->ns : "";
    si->weight = 1;
    if ((v = json_string_value(json_object_get(ann, cfg->weight_key))) != NULL &&
        model_parse_weight(v, &si->weight) != 0) {
        warn(warnings, "%s: bad weight annotation \"%s\", using 1", key, v);
        si->weight = 1;
    }
    si->models = json_array();
    if ((v = json_string_value(json_object_get(ann, cfg->models_key))) != NULL) {
        const char *p = v;
        while (*p) {
            const char *e = strchr(p, ',');
            size_t n = e ? (size_t)(e - p) : strlen(p);
            while (n && isspace((unsigned char)*p))
                p++, n--;
            while (n && isspace((unsigned char)p[n - 1]))
                n--;
            if (n > 0 && n < 128 && json_array_size(si->models) < 32)
                json_array_append_new(si->models, json_stringn(p, n));
            else if (n > 0)
                warn(warnings, "%s: models annotation entry dropped (too long or too many)", key);
            p = e ? e + 1 : p + n;
            if (!e)
                break;
        }
    }
    si->max_inflight = -1;
    if ((v = json_string_value(json_object_get(ann, cfg->inflight_key))) != NULL) {
        unsigned m;
        if (model_parse_weight(v, &m) == 0)
            si->max_inflight = m;
        else
            warn(warnings, "%s: bad max-inflight annotation \"%s\", ignored", key, v);
    }
    json_t *ports = json_object_get(json_object_get(svc, "spec"), "ports");
    si->port = json_array_get(ports, 0);
    if ((v = json_string_value(json_object_get(ann, cfg->port_key))) != NULL) {
        size_t i;
        json_t *p;
        bool found = false;
        json_array_foreach(ports, i, p) {
            const char *pn = str_at(p, "name", NULL);
            json_int_t num = json_integer_value(json_object_get(p, "port"));
            if ((pn != NULL && strcmp(pn, v) == 0) ||
                (isdigit((unsigned char)v[0]) && num == strtol(v, NULL, 10))) {
                si->port = p;
                found = true;
                break;
            }
        }
        if (!found)
            warn(warnings, "%s: port annotation \"%s\" names no port of the Service, using the "
                           "first", key, v);
    }
}

static json_t *backend(const char *name, unsigned weight, const char *ip, json_int_t port,
                       const struct svc_info *si)
{
    json_t *b = json_object();
    json_object_set_new(b, "name", json_string(name));
    json_object_set_new(b, "weight", json_integer(weight));
    json_object_set_new(b, "ip", json_string(ip));
    json_object_set_new(b, "port", json_integer(port));
    json_object_set_new(b, "models", json_deep_copy(si->models));
    if (si->max_inflight >= 0)
        json_object_set_new(b, "max_inflight", json_integer(si->max_inflight));
    return b;
}

static bool is_ip(const char *s)
{
    unsigned char a[16];
    return s && (inet_pton(AF_INET, s, a) == 1 || inet_pton(AF_INET6, s, a) == 1);
}

/* A condition: true, false, or absent (-1). */
static int cond(json_t *conds, const char *k)
{
    json_t *v = json_object_get(conds, k);
    return json_is_boolean(v) ? json_is_true(v) : -1;
}

/* The slice port that carries Service port <sp>: same name, else the first. */
static json_int_t slice_port(json_t *slice, json_t *sp)
{
    json_t *ports = json_object_get(slice, "ports"), *p;
    const char *want = sp ? str_at(sp, "name", NULL) : NULL;
    size_t i;
    want = want ? want : "";
    json_array_foreach(ports, i, p) {
        const char *n = str_at(p, "name", NULL);
        if (strcmp(n ? n : "", want) == 0 && json_integer_value(json_object_get(p, "port")) > 0)
            return json_integer_value(json_object_get(p, "port"));
    }
    return json_integer_value(json_object_get(json_array_get(ports, 0), "port"));
}

/* Adds the endpoints of one slice of Service <si> to <out> (name -> backend).
 * Ready endpoints carry the Service's weight; serving-but-terminating ones
 * stay at weight 0 so their in-flight streams finish (drain); the rest are
 * left out. A pod seen twice (slices overlap while the controller moves it)
 * keeps its better entry. */
static void add_slice(const char *key, const char *slice_key, json_t *slice,
                      const struct svc_info *si, json_t *out, json_t *warnings)
{
    const char *at = str_at(slice, "addressType", NULL);
    if (at != NULL && strcmp(at, "FQDN") == 0) {
        /* Named by its key, which always exists: metadata.name may not, and
         * a NULL must never reach %s. */
        const char *sn = strchr(slice_key, '/');
        warn(warnings, "%s: FQDN EndpointSlice %s skipped (the balancer needs IP addresses)", key,
             sn ? sn + 1 : slice_key);
        return;
    }
    json_int_t port = slice_port(slice, si->port);
    if (port <= 0 || port > 65535)
        return;
    json_t *eps = json_object_get(slice, "endpoints"), *ep;
    size_t i;
    json_array_foreach(eps, i, ep) {
        const char *ip = json_string_value(json_array_get(json_object_get(ep, "addresses"), 0));
        if (!is_ip(ip))
            continue;
        json_t *c = json_object_get(ep, "conditions");
        int ready = cond(c, "ready"), serving = cond(c, "serving"), term = cond(c, "terminating");
        if (serving < 0)
            serving = ready != 0;
        unsigned w;
        if (term == 1)
            w = 0;
        else if (ready != 0)
            w = si->weight;
        else
            continue;
        if (term == 1 && !serving)
            continue;
        const char *pod = str_at(json_object_get(ep, "targetRef"), "name", NULL);
        char name[MODEL_NAME_MAX + 2]; /* one more than the limit: a cut name is refused */
        snprintf(name, sizeof(name), "%s/%s/%s", si->ns, si->name, pod ? pod : ip);
        json_t *old = json_object_get(out, name);
        if (old != NULL && json_integer_value(json_object_get(old, "weight")) >= (json_int_t)w)
            continue;
        json_object_set_new(out, name, backend(name, w, ip, port, si));
    }
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The keys of object <m>, sorted (borrowed from <m>; free the array). */
static const char **sorted_keys(json_t *m, size_t *n)
{
    const char **keys = calloc(json_object_size(m) + 1, sizeof(*keys)), *k;
    json_t *v;
    size_t i = 0;
    json_object_foreach(m, k, v)
        keys[i++] = k;
    qsort(keys, i, sizeof(*keys), by_name);
    *n = i;
    return keys;
}

/* The values of object <m>, as an array sorted by key. Steals nothing. */
static json_t *sorted_values(json_t *m)
{
    size_t n, i;
    const char **keys = sorted_keys(m, &n);
    json_t *arr = json_array();
    for (i = 0; i < n; i++)
        json_array_append(arr, json_object_get(m, keys[i]));
    free(keys);
    return arr;
}

/* ------------------------------------------------------------------------
 * The balancer's rules, applied before sending (src/proxy/registry.c
 * reg_spec_check and admin.c parse_service / address_denied). One entry the
 * balancer refuses makes it refuse the whole PUT; the watcher would then
 * resend the same set forever and no change of any tenant would get
 * through. So whatever it would refuse is dropped here, and said why. */

int model_parse_cidr(const char *s, struct model_cidr *out)
{
    char host[64];
    const char *slash = strchr(s, '/');
    size_t hl = slash ? (size_t)(slash - s) : strlen(s);
    long bits;
    if (hl == 0 || hl >= sizeof(host))
        return -EINVAL;
    memcpy(host, s, hl);
    host[hl] = '\0';
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, host, out->net) == 1)
        out->family = AF_INET;
    else if (inet_pton(AF_INET6, host, out->net) == 1)
        out->family = AF_INET6;
    else
        return -EINVAL;
    bits = out->family == AF_INET ? 32 : 128;
    if (slash != NULL) {
        char *end;
        long b = strtol(slash + 1, &end, 10);
        if (end == slash + 1 || *end != '\0' || b < 0 || b > bits)
            return -EINVAL;
        bits = b;
    }
    out->bits = (unsigned)bits;
    return 0;
}

static bool cidr_match(const struct model_cidr *c, int family, const unsigned char *a)
{
    unsigned bits = c->bits, i = 0;
    if (c->family != family)
        return false;
    for (; bits >= 8; bits -= 8, i++)
        if (a[i] != c->net[i])
            return false;
    return bits == 0 || ((a[i] ^ c->net[i]) & (unsigned char)(0xff << (8 - bits))) == 0;
}

static const unsigned char v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

const char *model_addr_denied(const struct model_cfg *cfg, const char *ip)
{
    unsigned char a[16], *v4 = NULL;
    bool v6 = false;
    if (ip == NULL)
        return "not a numeric IP address";
    if (inet_pton(AF_INET, ip, a) == 1)
        v4 = a;
    else if (inet_pton(AF_INET6, ip, a) == 1)
        v6 = true;
    else
        return "not a numeric IP address";
    /* ::ffff:a.b.c.d reaches a.b.c.d: judge it as that IPv4 address, so
     * ::ffff:127.0.0.1 is loopback, not "some IPv6 address". */
    if (v6 && memcmp(a, v4mapped, 12) == 0)
        v4 = a + 12;
    for (size_t i = 0; i < cfg->nallow; i++)
        if ((v4 && cidr_match(&cfg->allow[i], AF_INET, v4)) ||
            (v6 && cidr_match(&cfg->allow[i], AF_INET6, a)))
            return NULL;
    if (v4 != NULL) {
        uint32_t x = (uint32_t)v4[0] << 24 | (uint32_t)v4[1] << 16 | (uint32_t)v4[2] << 8 | v4[3];
        if ((x >> 24) == 127)
            return "loopback";
        if ((x >> 16) == 0xa9fe)
            return "link-local (169.254.0.0/16)";
        if (x == 0 || (x >> 28) == 0xe || x == 0xffffffffu)
            return "unspecified, multicast or broadcast";
        return NULL;
    }
    static const unsigned char zero[16], one[16] = {[15] = 1};
    if (memcmp(a, one, 16) == 0)
        return "loopback";
    if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80)
        return "link-local (fe80::/10)";
    if (memcmp(a, zero, 16) == 0 || a[0] == 0xff)
        return "unspecified or multicast";
    return NULL;
}

static bool name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > MODEL_NAME_MAX)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("-_./:", *s))
            return false;
    return true;
}

static bool int_in(json_t *v, json_int_t lo, json_int_t hi)
{
    return json_is_integer(v) && json_integer_value(v) >= lo && json_integer_value(v) <= hi;
}

const char *model_check_backend(const struct model_cfg *cfg, json_t *b)
{
    if (!name_ok(str_at(b, "name", NULL)))
        return "name";
    if (model_addr_denied(cfg, str_at(b, "ip", NULL)) != NULL)
        return "address";
    if (!int_in(json_object_get(b, "port"), 1, 65535))
        return "port";
    if (!int_in(json_object_get(b, "weight"), 0, MODEL_MAX_WEIGHT))
        return "weight";
    json_t *mi = json_object_get(b, "max_inflight"), *models = json_object_get(b, "models"), *m;
    if (mi != NULL && !int_in(mi, 0, MODEL_MAX_INFLIGHT))
        return "max_inflight";
    size_t i;
    if (models != NULL && (!json_is_array(models) || json_array_size(models) > MODEL_MAX_MODELS))
        return "models";
    json_array_foreach(models, i, m)
        if (!json_is_string(m) || json_string_length(m) == 0 ||
            json_string_length(m) > MODEL_MODEL_LEN || strlen(json_string_value(m)) !=
            json_string_length(m))
            return "models";
    return NULL;
}

/* ------------------------------------------------------------------------
 * The per-Service cache. */

void model_state_init(struct model_state *st)
{
    st->svcs = json_object();
    st->slices = json_object();
    st->slice_owner = json_object();
    st->cache = json_object();
    st->dirty = json_object();
    st->recomputed = 0;
    st->max_backends = MODEL_MAX_BACKENDS;
}

void model_state_deinit(struct model_state *st)
{
    json_decref(st->svcs);
    json_decref(st->slices);
    json_decref(st->slice_owner);
    json_decref(st->cache);
    json_decref(st->dirty);
    memset(st, 0, sizeof(*st));
}

static void mark_dirty(struct model_state *st, const char *svc_key)
{
    json_object_set_new(st->dirty, svc_key, json_true());
}

void model_state_set_service(struct model_state *st, const char *key, json_t *svc)
{
    if (svc != NULL)
        json_object_set(st->svcs, key, svc);
    else
        json_object_del(st->svcs, key);
    mark_dirty(st, key);
}

/* "namespace/service" of the Service a slice belongs to, or false. */
static bool slice_owner_key(json_t *slice, char *out, size_t outlen)
{
    json_t *md = json_object_get(slice, "metadata");
    const char *svc = str_at(json_object_get(md, "labels"), MODEL_SLICE_SERVICE_LABEL, NULL);
    const char *ns = str_at(md, "namespace", NULL);
    if (svc == NULL || svc[0] == '\0')
        return false;
    int n = snprintf(out, outlen, "%s/%s", ns ? ns : "", svc);
    return n > 0 && (size_t)n < outlen;
}

void model_state_set_slice(struct model_state *st, const char *key, json_t *slice)
{
    json_t *old = json_object_get(st->slice_owner, key);
    if (old != NULL) {
        const char *ok = json_string_value(old);
        json_t *m = json_object_get(st->slices, ok);
        json_object_del(m, key);
        mark_dirty(st, ok);
        if (json_object_size(m) == 0)
            json_object_del(st->slices, ok);
        json_object_del(st->slice_owner, key); /* <old> and <ok> are gone now */
    }
    char owner[520];
    if (slice == NULL || !slice_owner_key(slice, owner, sizeof(owner)))
        return;
    json_t *m = json_object_get(st->slices, owner);
    if (m == NULL) {
        m = json_object();
        json_object_set_new(st->slices, owner, m);
    }
    json_object_set(m, key, slice);
    json_object_set_new(st->slice_owner, key, json_string(owner));
    mark_dirty(st, owner);
}

/* Files backend <b> under <drops> as name -> {"reason": the metric label,
 * "detail": what to log}. */
static void drop(const struct model_cfg *cfg, json_t *drops, json_t *b, const char *why)
{
    char detail[400];
    const char *name = str_at(b, "name", NULL), *ip = str_at(b, "ip", NULL);
    if (strcmp(why, "address") == 0)
        snprintf(detail, sizeof(detail), "address %.64s: %s", ip ? ip : "(none)",
                 model_addr_denied(cfg, ip));
    else if (strcmp(why, "name") == 0)
        snprintf(detail, sizeof(detail), "name of %zu characters: the balancer takes 1-%d of "
                 "A-Z a-z 0-9 - _ . / :", name ? strlen(name) : 0, MODEL_NAME_MAX);
    else if (strcmp(why, "duplicate") == 0)
        snprintf(detail, sizeof(detail), "another Service makes the same name");
    else if (strcmp(why, "limit") == 0)
        snprintf(detail, sizeof(detail), "more than %d backends in all", MODEL_MAX_BACKENDS);
    else
        snprintf(detail, sizeof(detail), "%s out of the balancer's range", why);
    json_object_set_new(drops, name ? name : "", json_pack("{s:s,s:s}", "reason", why, "detail",
                                                           detail));
}

/* Computes Service <k> alone into the cache: its backends (sorted by name),
 * its warnings, and the entries the balancer would refuse. */
static void compute_service(struct model_state *st, const struct model_cfg *cfg, const char *k)
{
    json_t *svc = json_object_get(st->svcs, k);
    st->recomputed++;
    if (svc == NULL) {
        json_object_del(st->cache, k);
        return;
    }
    json_t *out = json_object(), *warnings = json_array(), *drops = json_object();
    struct svc_info si;
    svc_info_read(cfg, k, svc, &si, warnings);
    if (cfg->mode == MODEL_SERVICE) {
        const char *ip = str_at(json_object_get(svc, "spec"), "clusterIP", NULL);
        json_int_t port = json_integer_value(json_object_get(si.port, "port"));
        if (ip == NULL || strcmp(ip, "None") == 0 || ip[0] == '\0')
            warn(warnings, "%s: headless or ExternalName Service skipped (no ClusterIP)", k);
        else if (!is_ip(ip))
            warn(warnings, "%s: clusterIP \"%s\" is not an IP address, skipped", k, ip);
        else if (port <= 0 || port > 65535)
            warn(warnings, "%s: Service has no port, skipped", k);
        else
            json_object_set_new(out, k, backend(k, si.weight, ip, port, &si));
    } else {
        json_t *mine = json_object_get(st->slices, k);
        size_t n;
        const char **keys = sorted_keys(mine, &n); /* only this Service's slices */
        for (size_t j = 0; j < n; j++)
            add_slice(k, keys[j], json_object_get(mine, keys[j]), &si, out, warnings);
        free(keys);
    }
    json_decref(si.models);
    json_t *set = sorted_values(out), *b;
    json_decref(out);
    size_t i = 0;
    while (i < json_array_size(set)) {
        b = json_array_get(set, i);
        const char *why = model_check_backend(cfg, b);
        if (why == NULL) {
            i++;
            continue;
        }
        drop(cfg, drops, b, why);
        json_array_remove(set, i);
    }
    json_object_set_new(st->cache, k, json_pack("{s:o,s:o,s:o}", "backends", set, "warnings",
                                                 warnings, "drops", drops));
}

static int by_backend_name(const void *a, const void *b)
{
    return strcmp(str_at(*(json_t *const *)a, "name", NULL),
                  str_at(*(json_t *const *)b, "name", NULL));
}

json_t *model_state_desired(struct model_state *st, const struct model_cfg *cfg,
                            json_t *warnings, json_t *drops)
{
    const char *k;
    json_t *v;
    json_object_foreach(st->dirty, k, v)
        compute_service(st, cfg, k); /* touches the cache only, not <dirty> */
    json_object_clear(st->dirty);

    /* Assemble: every Service's cached backends, sorted by name as a whole. */
    size_t total = 0, n = 0, i;
    json_object_foreach(st->cache, k, v)
        total += json_array_size(json_object_get(v, "backends"));
    json_t **all = calloc(total + 1, sizeof(*all)), *b;
    if (drops != NULL)
        json_object_clear(drops);
    json_object_foreach(st->cache, k, v) {
        json_array_foreach(json_object_get(v, "backends"), i, b)
            all[n++] = b;
        if (warnings != NULL)
            json_array_extend(warnings, json_object_get(v, "warnings"));
        if (drops != NULL)
            json_object_update(drops, json_object_get(v, "drops"));
    }
    qsort(all, n, sizeof(*all), by_backend_name);
    /* What only the whole set shows: one name twice (Services whose names
     * make the same ns/svc/pod), and the balancer's size limit. Both keep the
     * first in name order, so the outcome does not depend on event order. */
    json_t *set = json_array();
    const char *prev = NULL;
    for (i = 0; i < n; i++) {
        const char *name = str_at(all[i], "name", NULL);
        const char *why = prev && strcmp(prev, name) == 0 ? "duplicate"
                          : json_array_size(set) >= st->max_backends ? "limit" : NULL;
        if (why != NULL) {
            if (drops != NULL)
                drop(cfg, drops, all[i], why);
            continue;
        }
        json_array_append(set, all[i]);
        prev = name;
    }
    free(all);
    return set;
}

json_t *model_desired(const struct model_cfg *cfg, json_t *services, json_t *slices,
                      json_t *warnings)
{
    struct model_state st;
    const char *k;
    json_t *v;
    model_state_init(&st);
    json_object_foreach(services, k, v)
        model_state_set_service(&st, k, v);
    json_object_foreach(slices, k, v)
        model_state_set_slice(&st, k, v);
    json_t *set = model_state_desired(&st, cfg, warnings, NULL);
    model_state_deinit(&st);
    return set;
}

bool model_lb_slice_trusted(json_t *slice, const char *ns, const char *name)
{
    json_t *md = json_object_get(slice, "metadata"), *labels = json_object_get(md, "labels");
    const char *svc = str_at(labels, MODEL_SLICE_SERVICE_LABEL, NULL);
    const char *mgr = str_at(labels, MODEL_SLICE_MANAGER_LABEL, NULL);
    const char *sns = str_at(md, "namespace", NULL);
    if (svc == NULL || strcmp(svc, name) != 0 || strcmp(sns ? sns : "", ns) != 0 ||
        mgr == NULL || strcmp(mgr, MODEL_SLICE_CONTROLLER) != 0)
        return false;
    json_t *refs = json_object_get(md, "ownerReferences"), *ref;
    size_t i;
    bool owned = false;
    if (json_array_size(refs) == 0)
        return true; /* older controllers set none; the labels decide */
    json_array_foreach(refs, i, ref) {
        const char *kind = str_at(ref, "kind", NULL), *rn = str_at(ref, "name", NULL);
        if (kind && rn && strcmp(kind, "Service") == 0 && strcmp(rn, name) == 0)
            owned = true;
        else if (json_is_true(json_object_get(ref, "controller")))
            return false; /* controlled by something else */
    }
    return owned;
}

json_t *model_lb_urls(json_t *slices, const char *ns, const char *name, int port)
{
    json_t *set = json_object(), *sl;
    const char *k;
    json_object_foreach(slices, k, sl) {
        if (!model_lb_slice_trusted(sl, ns, name))
            continue;
        json_t *ep;
        size_t i;
        json_array_foreach(json_object_get(sl, "endpoints"), i, ep) {
            const char *ip = json_string_value(json_array_get(json_object_get(ep, "addresses"), 0));
            /* Not-ready replicas are fed too: a balancer is ready only once it
             * has backends, so waiting for readiness would never end. Only
             * terminating ones are left out. */
            if (!is_ip(ip) || cond(json_object_get(ep, "conditions"), "terminating") == 1)
                continue;
            char url[128];
            snprintf(url, sizeof(url), strchr(ip, ':') ? "http://[%s]:%d" : "http://%s:%d", ip,
                     port);
            json_object_set_new(set, url, json_string(url));
        }
    }
    json_t *arr = sorted_values(set);
    json_decref(set);
    return arr;
}

/* <actual> as an object name -> entry, static backends left out. */
static json_t *index_actual(json_t *actual)
{
    json_t *m = json_object(), *e;
    size_t i;
    json_array_foreach(actual, i, e) {
        const char *n = str_at(e, "name", NULL), *src = str_at(e, "source", NULL);
        if (n && !(src && strcmp(src, "static") == 0))
            json_object_set(m, n, e);
    }
    return m;
}

static bool same_backend(json_t *d, json_t *a, bool full)
{
    static const char *const keys[] = {"weight", "ip", "port"};
    for (size_t i = 0; i < 3; i++)
        if (!json_equal(json_object_get(d, keys[i]), json_object_get(a, keys[i])))
            return false;
    if (!full)
        return true;
    json_t *dm = json_object_get(d, "models");
    if (json_array_size(dm) > 0 && !json_equal(dm, json_object_get(a, "models")))
        return false;
    json_t *dmi = json_object_get(d, "max_inflight");
    if (dmi != NULL && !json_equal(dmi, json_object_get(a, "max_inflight")))
        return false;
    return true;
}

bool model_same_set(json_t *desired, json_t *actual)
{
    json_t *m = index_actual(actual), *d;
    size_t i;
    bool same = json_object_size(m) == json_array_size(desired);
    json_array_foreach(desired, i, d) {
        json_t *a = same ? json_object_get(m, str_at(d, "name", NULL)) : NULL;
        if (a == NULL || !same_backend(d, a, true)) {
            same = false;
            break;
        }
    }
    json_decref(m);
    return same;
}

json_t *model_register_ops(json_t *desired, json_t *actual)
{
    json_t *m = index_actual(actual), *ops = json_array(), *d, *want = json_object();
    size_t i;
    json_array_foreach(desired, i, d) {
        const char *n = str_at(d, "name", NULL);
        json_object_set(want, n, d);
        json_t *a = json_object_get(m, n);
        if (a != NULL && same_backend(d, a, false))
            continue;
        json_t *svc = json_pack("{s:O,s:O,s:O,s:O}", "name", json_object_get(d, "name"), "weight",
                                json_object_get(d, "weight"), "ip", json_object_get(d, "ip"),
                                "port", json_object_get(d, "port"));
        json_array_append_new(ops, json_pack("{s:s,s:o}", "op", "register", "service", svc));
    }
    json_t *names = sorted_values(m), *a;
    json_array_foreach(names, i, a) {
        const char *n = str_at(a, "name", NULL);
        if (json_object_get(want, n) == NULL)
            json_array_append_new(ops, json_pack("{s:s,s:s}", "op", "unregister", "name", n));
    }
    json_decref(names);
    json_decref(want);
    json_decref(m);
    return ops;
}

bool model_conflict_generation(const char *body, size_t len, uint64_t *gen)
{
    const char *at = body ? memmem(body, len, "already at ", 11) : NULL;
    if (at == NULL)
        return false;
    /* Digits up to the end of the body, never past it: the body is raw
     * bytes from the network, not a C string. */
    size_t i = (size_t)(at - body) + 11, nd = 0;
    uint64_t g = 0;
    for (; i < len && isdigit((unsigned char)body[i]); i++, nd++) {
        unsigned d = (unsigned)(body[i] - '0');
        if (g > (UINT64_MAX - d) / 10)
            return false;
        g = g * 10 + d;
    }
    if (nd == 0)
        return false;
    *gen = g;
    return true;
}

long model_refused_index(const char *body, size_t len)
{
    const char *at = body ? memmem(body, len, "services[", 9) : NULL;
    if (at == NULL)
        return -1;
    size_t i = (size_t)(at - body) + 9, nd = 0;
    long v = 0;
    for (; i < len && isdigit((unsigned char)body[i]) && nd < 9; i++, nd++)
        v = v * 10 + (body[i] - '0');
    return nd > 0 && i < len && body[i] == ']' ? v : -1;
}
