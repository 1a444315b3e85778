/* SPDX-License-Identifier: MIT
 * The watcher's desired-set logic: Kubernetes Services and EndpointSlices in,
 * the balancer's backend set out. Pure functions over jansson values (and the
 * model_state cache, plain data), with no I/O and no clock, so
 * tests/unit/test_watch_model.c can drive every rule. */
#ifndef LLAMALB_WATCH_MODEL_H
#define LLAMALB_WATCH_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

enum model_mode {
    MODEL_ENDPOINTS = 0, /* one backend per ready pod address (EndpointSlices) */
    MODEL_SERVICE,       /* one backend per Service, reached by its ClusterIP */
};

/* An address range the balancer was told to allow (its --backend-allow). */
struct model_cidr {
    int family;              /* AF_INET or AF_INET6 */
    unsigned char net[16];
    unsigned bits;
};

/* Which annotations carry what. The strings are borrowed; they outlive the cfg. */
struct model_cfg {
    enum model_mode mode;
    const char *weight_key;   /* default "llamaedge/weight" */
    const char *models_key;   /* default "llamaedge/models" (comma-separated) */
    const char *inflight_key; /* default "llamaedge/max-inflight" */
    const char *port_key;     /* default "llamaedge/port" (port name or number) */
    const struct model_cidr *allow; /* --backend-allow ranges (borrowed), as the balancer's */
    size_t nallow;
};

/* The balancer's limits (src/proxy/registry.h and admin.c). The watcher
 * applies them itself: the balancer refuses a whole PUT for one bad entry,
 * so an entry it would refuse is dropped here, never sent. */
#define MODEL_MAX_WEIGHT 1000000u   /* REG_MAX_WEIGHT */
#define MODEL_NAME_MAX 253          /* REG_NAME_MAX */
#define MODEL_MAX_MODELS 32         /* REG_MAX_MODELS */
#define MODEL_MODEL_LEN 127         /* bytes of one model name */
#define MODEL_MAX_INFLIGHT 1000000u /* max_inflight range */
#define MODEL_MAX_BACKENDS 100000   /* REG_MAX_BACKENDS */
#define MODEL_SLICE_SERVICE_LABEL "kubernetes.io/service-name"
#define MODEL_SLICE_MANAGER_LABEL "endpointslice.kubernetes.io/managed-by"
#define MODEL_SLICE_CONTROLLER "endpointslice-controller.k8s.io"

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

/* Parses "IP" or "IP/BITS" (--backend-allow) into <out>. Returns 0 or -EINVAL. */
int model_parse_cidr(const char *s, struct model_cidr *out);

/* Why the balancer would refuse address <ip>, or NULL if it takes it: not a
 * numeric address, loopback, link-local (169.254/16, fe80::/10), unspecified,
 * multicast, broadcast, unless a range of cfg->allow covers it. An
 * IPv4-mapped IPv6 address (::ffff:a.b.c.d) is judged by its IPv4 address. */
const char *model_addr_denied(const struct model_cfg *cfg, const char *ip);

/* The reason (a metric label: "name", "address", "port", "weight",
 * "max_inflight", "models") the balancer would refuse backend <b>, or NULL. */
const char *model_check_backend(const struct model_cfg *cfg, json_t *b);

/* The desired set, kept per Service so that a change costs what it touches:
 * the slices are filed under the Service they belong to, each Service's
 * backends (and warnings, and dropped entries) are cached, and only Services
 * marked dirty by a change are computed again. The assembled set is then
 * checked as a whole (duplicate names, the MODEL_MAX_BACKENDS limit). */
struct model_state {
    json_t *svcs;        /* svc key -> Service */
    json_t *slices;      /* svc key -> {slice key -> EndpointSlice} */
    json_t *slice_owner; /* slice key -> the svc key it is filed under */
    json_t *cache;       /* svc key -> {"backends":[...],"warnings":[...],"drops":{}} */
    json_t *dirty;       /* svc keys to compute again */
    uint64_t recomputed; /* Services computed, in all (for /metrics and the tests) */
    size_t max_backends; /* MODEL_MAX_BACKENDS; smaller in tests */
};

void model_state_init(struct model_state *st);
void model_state_deinit(struct model_state *st);
/* Service <key> is now <svc> (borrowed), or gone when <svc> is NULL. */
void model_state_set_service(struct model_state *st, const char *key, json_t *svc);
/* EndpointSlice <key> is now <slice> (borrowed), or gone when NULL. */
void model_state_set_slice(struct model_state *st, const char *key, json_t *slice);
/* Computes the dirty Services and returns the whole desired set (a new array,
 * sorted by name, as model_desired()). Appends the warnings of every Service
 * to <warnings> and sets <drops> (an object, cleared first) to name ->
 * {"reason": a metric label, "detail": text to log} for every entry left out
 * because the balancer would refuse it; either may be NULL. */
json_t *model_state_desired(struct model_state *st, const struct model_cfg *cfg,
                            json_t *warnings, json_t *drops);

/* True when EndpointSlice <slice> is one the EndpointSlice controller made
 * for Service <ns>/<name>: in that namespace, labelled with the Service's
 * name and managed-by the controller, and, when it has ownerReferences,
 * owned by a Service of that name (and controlled by nothing else). */
bool model_lb_slice_trusted(json_t *slice, const char *ns, const char *name);

/* The admin base URLs ("http://IP:PORT", IPv6 in brackets) of every address
 * in the trusted slices (model_lb_slice_trusted) of Service <ns>/<name> that
 * is not terminating (ready or not: a balancer only becomes ready once it has
 * been fed), sorted, without duplicates. These URLs get the admin token, so a
 * slice anyone else made never adds one.
 * <slices> is borrowed; returns a new array of strings. */
json_t *model_lb_urls(json_t *slices, const char *ns, const char *name, int port);

/* Reads the balancer's current generation from the body of a 409 answer
 * ("... already at N"); <body> need not be NUL-terminated. Returns true and
 * sets <*gen> when found. */
bool model_conflict_generation(const char *body, size_t len, uint64_t *gen);

/* The index N of the entry a 400 answer to PUT /api/services blames
 * ("services[N]: ..."); <body> need not be NUL-terminated. Returns -1 if none. */
long model_refused_index(const char *body, size_t len);

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
