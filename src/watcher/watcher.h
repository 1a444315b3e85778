/* SPDX-License-Identifier: MIT
 * The watcher's state: one instance, built by main.c from the flags and
 * driven by its loop; status.c reads it to answer /healthz, /readyz and
 * /metrics. Single-threaded: nothing here is locked. */
#ifndef LLAMALB_WATCH_WATCHER_H
#define LLAMALB_WATCH_WATCHER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>
#include <jansson.h>

#include "buf.h"
#include "k8s.h"
#include "model.h"
#include "opts.h"
#include "push.h"
#include "role.h"
#include "serve.h"

struct watcher {
    struct k8s_config kc;
    struct model_cfg mc;            /* --mode and the annotation keys (allow: in the opts) */
    struct k8s_reflector *refl[2 * OPTS_MAX_NAMESPACES]; /* services and slices, per namespace */
    size_t nrefl;
    struct k8s_reflector *lbrefl;   /* slices of --lb-service, or NULL */
    char lb_ns[254], lb_name[254];
    int lb_port;
    struct push push;
    struct role role;               /* the active replica (--follow-port) */
    json_t *warned;                 /* warnings already logged (object used as a set) */
    struct model_state ms;          /* the desired set, cached per Service */
    json_t *dropped;                /* name -> {reason, detail}: left out right now */
    json_t *drop_counts;            /* reason -> times an entry started being left out */
    struct serve srv;
    bool ready;                     /* every reflector has listed once */
    int64_t resync_ms, full_ms, next_resync, next_full;
    CURLM *multi;
};

/* serve_route_cb for the watcher's listener (<data> is the struct watcher):
 * /healthz 200 always, /readyz 200 once every list has completed (503
 * before), /metrics the Prometheus text of docs/watcher.md ("Metrics"),
 * anything else 404. */
int status_route(void *data, const char *path, struct buf *out, const char **ctype);

#endif
