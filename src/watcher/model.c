/* SPDX-License-Identifier: MIT
 * Services + EndpointSlices -> the balancer's backend set. Everything here is
 * a pure function of its arguments (see model.h); k8s.c keeps the objects,
 * push.c sends the result. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
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
static void add_slice(const char *key, json_t *slice, const struct svc_info *si, json_t *out,
                      json_t *warnings)
{
    const char *at = str_at(slice, "addressType", NULL);
    if (at != NULL && strcmp(at, "FQDN") == 0) {
        warn(warnings, "%s: FQDN EndpointSlice %s skipped (the balancer needs IP addresses)", key,
             str_at(json_object_get(slice, "metadata"), "name", NULL));
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
        char name[512];
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

/* The values of object <m>, as an array sorted by key. Steals nothing. */
static json_t *sorted_values(json_t *m)
{
    size_t n = json_object_size(m), i = 0;
    const char **keys = calloc(n ? n : 1, sizeof(*keys));
    const char *k;
    json_t *v, *arr = json_array();
    json_object_foreach(m, k, v)
        keys[i++] = k;
    qsort(keys, n, sizeof(*keys), by_name);
    for (i = 0; i < n; i++)
        json_array_append(arr, json_object_get(m, keys[i]));
    free(keys);
    return arr;
}

json_t *model_desired(const struct model_cfg *cfg, json_t *services, json_t *slices,
                      json_t *warnings)
{
    json_t *out = json_object(), *svc;
    json_t *skeys = sorted_values(services); /* deterministic warning order */
    size_t si_idx;
    json_array_foreach(skeys, si_idx, svc) {
        struct svc_info si;
        char k[512];
        if (!model_key(svc, k, sizeof(k)))
            continue;
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
            json_t *sl;
            json_t *sorted = sorted_values(slices);
            size_t j;
            json_array_foreach(sorted, j, sl) {
                json_t *md = json_object_get(sl, "metadata");
                const char *owner = str_at(json_object_get(md, "labels"),
                                           MODEL_SLICE_SERVICE_LABEL, NULL);
                const char *sns = str_at(md, "namespace", NULL);
                if (owner && strcmp(owner, si.name) == 0 && strcmp(sns ? sns : "", si.ns) == 0)
                    add_slice(k, sl, &si, out, warnings);
            }
            json_decref(sorted);
        }
        json_decref(si.models);
    }
    json_decref(skeys);
    json_t *arr = sorted_values(out);
    json_decref(out);
    return arr;
}

json_t *model_lb_urls(json_t *slices, const char *ns, const char *name, int port)
{
    json_t *set = json_object(), *sl;
    const char *k;
    json_object_foreach(slices, k, sl) {
        json_t *md = json_object_get(sl, "metadata");
        const char *owner = str_at(json_object_get(md, "labels"), MODEL_SLICE_SERVICE_LABEL, NULL);
        const char *sns = str_at(md, "namespace", NULL);
        if (!owner || strcmp(owner, name) != 0 || strcmp(sns ? sns : "", ns) != 0)
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
