/* SPDX-License-Identifier: MIT
 * The list+watch "reflector" that keeps one resource's objects in memory the
 * way client-go and kube-rs do: list (paged), watch from the list's
 * resourceVersion with bookmarks, re-watch on a clean end, relist on 410 Gone
 * or a malformed stream, back off exponentially on errors, reopen a stalled
 * stream. docs/watcher.md ("The watch loop") states the rules and the
 * Kubernetes API facts they rest on. Where the API server is and how to
 * authenticate is k8s_config.h's. */
#ifndef LLAMALB_WATCH_K8S_H
#define LLAMALB_WATCH_K8S_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "k8s_config.h"
#include "xfer.h"

/* Backoff between failed attempts: the kube-rs defaults (800 ms, doubling,
 * capped at 30 s, jittered, reset 120 s after the last backoff or on success). */
struct k8s_backoff {
    int64_t min_ms, max_ms;  /* 800, 30000 */
    int64_t cur_ms;          /* last base delay; 0 = reset */
    int64_t last_ms;         /* when the last delay was handed out */
};
/* The next delay in ms for a failure at <now_ms>. */
int64_t k8s_backoff_next(struct k8s_backoff *b, int64_t now_ms);

enum k8s_state {
    K8S_IDLE = 0,   /* waiting for retry_at */
    K8S_LISTING,    /* a list page is in flight */
    K8S_WATCHING,   /* the watch stream is open */
};

/* Counters for /metrics. */
struct k8s_stats {
    uint64_t added, modified, deleted, bookmarks, errors; /* watch events by type */
    uint64_t lists, relists, watches, watch_restarts, stalls, bad_lines, http_errors;
    uint64_t limit_hits;   /* lists (or watches) stopped at max_items / max_pages */
};

struct k8s_reflector;
/* Object <key> changed to <obj> (borrowed), or was deleted (<obj> NULL): by a
 * watch event, or found different when a new list was swapped in. */
typedef void k8s_change_cb(void *data, struct k8s_reflector *r, const char *key, json_t *obj);

#define K8S_PAGE_PAUSE_MS 2 /* between list pages: a long list never hogs the loop */

/* One resource (services or endpointslices) in one namespace or all of them.
 * Created by k8s_reflector_new(), driven by k8s_reflector_tick(), owned by main. */
struct k8s_reflector {
    const char *resource;      /* "services" or "endpointslices" (static string) */
    char *path;                /* "/api/v1/services", "/apis/.../namespaces/ns/endpointslices" */
    char *selector;            /* label selector, or NULL */
    struct k8s_config *cfg;    /* borrowed */
    json_t *items;             /* "ns/name" -> object: the set in force */
    json_t *pending;           /* the list being built, swapped in when complete */
    char *rv;                  /* resourceVersion to watch from; NULL = must list */
    char *cont;                /* continue token of the list in progress */
    enum k8s_state state;
    bool synced;               /* a full list has completed at least once */
    bool changed;              /* items changed since the owner last looked */
    bool want_relist;          /* drop rv and list again at the next attempt */
    int64_t retry_at;          /* loop clock ms: next attempt when IDLE */
    int64_t last_byte_ms;      /* last bytes seen on the watch (its start before any) */
    int64_t watch_start_ms;
    bool watch_got_bytes;      /* the open watch has delivered a byte (200 body) */
    int64_t last_relist_ms;
    struct xfer *x;            /* the request in flight, or NULL */
    struct buf line;           /* watch stream bytes not yet split into lines */
    bool line_overflow;        /* a line exceeded max_line: abort + relist */
    bool bad_stream;           /* a malformed line or ERROR 410 seen: relist */
    bool stream_error;         /* another ERROR event: re-watch after a backoff */
    struct k8s_backoff backoff;
    struct k8s_stats st;
    /* Settings, copied from main's flags. */
    int timeout_s;             /* watch timeoutSeconds (290) */
    int64_t stall_ms;          /* no bytes for this long: reopen (timeout+5 s) */
    size_t max_line;           /* bytes (1 MiB) */
    int page_limit;            /* list page size (500) */
    size_t max_items;          /* objects a list may hold (MODEL_MAX_BACKENDS) */
    int max_pages;             /* pages a list may take; 0 = twice what max_items needs */
    int pages;                 /* pages of the list in progress */
    int64_t page_at;           /* LISTING with no request: when to ask for the next page */
    k8s_change_cb *on_change;  /* told of every change to items, or NULL */
    void *change_data;
};

/* A reflector for <resource> under <path> with label selector <selector>
 * (copied; NULL for none). */
struct k8s_reflector *k8s_reflector_new(struct k8s_config *cfg, const char *resource,
                                        const char *path, const char *selector);
/* Cancels its request and frees everything; NULL is a no-op. */
void k8s_reflector_free(struct k8s_reflector *r);

/* Starts whatever is due at <now_ms>: a list, a watch, a retry; reopens a
 * stalled stream. Returns the loop-clock time it next needs a tick. */
int64_t k8s_reflector_tick(struct k8s_reflector *r, int64_t now_ms);

/* Forces a fresh list (full resync): the set stays in force until the new
 * list has completed, then is swapped in at once. */
void k8s_reflector_relist(struct k8s_reflector *r);


#endif
