/* SPDX-License-Identifier: MIT
 * The watcher's desired-set logic: Kubernetes Services and EndpointSlices in,
 * the balancer's backend set out. Pure functions over jansson values, with no
 * I/O and no clock, so tests/unit/test_watch_model.c can drive every rule. */
#ifndef LLAMALB_WATCH_MODEL_H
#define LLAMALB_WATCH_MODEL_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

enum model_mode {
    MODEL_ENDPOINTS = 0, /* one backend per ready pod address (EndpointSlices) */
    MODEL_SERVICE,       /* one backend per Service, reached by its ClusterIP */
};

/* Which annotations carry what. The strings are borrowed; they outlive the cfg. */
struct model_cfg {
    enum model_mode mode;
    const char *weight_key;   /* default "llamaedge/weight" */
    const char *models_key;   /* default "llamaedge/models" (comma-separated) */
    const char *inflight_key; /* default "llamaedge/max-inflight" */
    const char *port_key;     /* default "llamaedge/port" (port name or number) */
};

#define MODEL_MAX_WEIGHT 1000000u /* the balancer's REG_MAX_WEIGHT */
#define MODEL_SLICE_SERVICE_LABEL "kubernetes.io/service-name"

/* Writes "namespace/name" of the Kubernetes object <obj> into <out>. Returns
 * false (and writes "") when metadata.name is missing or the key does not fit. */
bool model_key(json_t *obj, char *out, size_t outlen);

/* Parses an annotation value as a weight: decimal digits, 0..MODEL_MAX_WEIGHT,
 * surrounding blanks allowed. Returns 0 and sets <*out>, or -EINVAL. */
int model_parse_weight(const char *s, unsigned *out);

/* Computes the desired backend set. <services> and <slices> are JSON objects
 * mapping "namespace/name" to the Service / EndpointSlice objects as the API
 * server sent them (borrowed). Returns a new JSON array, sorted by "name", of
 * {"name","weight","ip","port","models":[...]} objects plus "max_inflight"
 * when the annotation is set. Each problem worth a log line (a bad annotation,
 * a headless Service in service mode, ...) is appended to <warnings> as a
 * string if <warnings> is not NULL; the same input gives the same warnings, so
 * the caller can log only new ones. */
json_t *model_desired(const struct model_cfg *cfg, json_t *services, json_t *slices,
                      json_t *warnings);

/* The admin base URLs ("http://IP:PORT", IPv6 in brackets) of every address
 * in the slices of Service <ns>/<name> that is not terminating (ready or not:
 * a balancer only becomes ready once it has been fed), sorted, without
 * duplicates.
 * <slices> is borrowed; returns a new array of strings. */
json_t *model_lb_urls(json_t *slices, const char *ns, const char *name, int port);

/* True when the balancer's answer to GET /api/services (<actual>, an array;
 * entries with "source":"static" are ignored) holds exactly the backends of
 * <desired>: same names, weight, ip and port, the same models when <desired>
 * names any, the same max_inflight when <desired> sets it. */
bool model_same_set(json_t *desired, json_t *actual);

/* The admin calls that turn <actual> (as for model_same_set; NULL = empty) into
 * <desired> with POST /api/register and DELETE /api/unregister: a new array of
 * {"op":"register","service":{name,weight,ip,port}} and
 * {"op":"unregister","name":N}, registers first (so a replaced backend is never
 * missing), then unregisters; both sorted by name. Only the four fields the
 * original demo's balancer knows are sent. */
json_t *model_register_ops(json_t *desired, json_t *actual);

#endif
