/* SPDX-License-Identifier: MIT
 * The list+watch reflector and its backoff (see k8s.h); the API server's
 * address and credentials are k8s_config.c's, the transfers xfer.c's.
 *
 * The reflector is a state machine (docs/watcher.md, "The watch loop", has
 * the Kubernetes facts it relies on), the same as kube-rs' watcher:
 *
 *   IDLE --retry_at--> LISTING (pages of 500, continue tokens) --last page-->
 *   swap the set in, WATCHING from the list's resourceVersion --clean end-->
 *   WATCHING again from the last rv seen (no relist)
 *   410 (status or ERROR event), malformed or oversized line --> relist
 *   other errors, 401 (token re-read), refused, stalled --> backoff, re-watch
 *
 * The set in force (items) only ever changes by a watch event or by swapping
 * in a complete list, so an unreachable API server never empties it. A list
 * is bounded in objects (max_items) and pages (max_pages): a hostile or
 * broken server with an endless continue chain, or more objects than the
 * balancer could ever take, stops the list, which is then retried with
 * backoff while the previous set stays in force (never a truncated one). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "buf.h"
#include "k8s.h"
#include "log.h"
#include "model.h"
#include "util.h"
#include "xfer.h"

/* ------------------------------------------------------------------------
 * Backoff: min, doubling to max, "equal jitter" (the base plus up to half of
 * it again, capped at max), reset 120 s after the previous delay. */

int64_t k8s_backoff_next(struct k8s_backoff *b, int64_t now_ms)
{
    if (b->last_ms != 0 && now_ms - b->last_ms > 120000)
        b->cur_ms = 0;
    b->cur_ms = b->cur_ms == 0 ? b->min_ms : MIN(b->cur_ms * 2, b->max_ms);
    b->last_ms = now_ms;
    int64_t d = b->cur_ms + (b->cur_ms > 1 ? random() % (b->cur_ms / 2 + 1) : 0);
    return MIN(d, b->max_ms);
}

/* ------------------------------------------------------------------------
 * The reflector. */

struct k8s_reflector *k8s_reflector_new(struct k8s_config *cfg, const char *resource,
                                        const char *path, const char *selector)
{
    struct k8s_reflector *r = xcalloc(1, sizeof(*r));
    r->cfg = cfg;
    r->resource = resource;
    r->path = xstrdup(path);
    r->selector = selector && *selector ? xstrdup(selector) : NULL;
    r->items = json_object();
    r->timeout_s = 290;
    r->stall_ms = 295000;
    r->max_line = 1u << 20;
    r->page_limit = 500;
    r->max_items = MODEL_MAX_BACKENDS;
    r->backoff.min_ms = 800;
    r->backoff.max_ms = 30000;
    return r;
}

void k8s_reflector_free(struct k8s_reflector *r)
{
    if (r == NULL)
        return;
    xfer_cancel(r->x);
    json_decref(r->items);
    json_decref(r->pending);
    buf_free(&r->line);
    free(r->path);
    free(r->selector);
    free(r->rv);
    free(r->cont);
    free(r);
}

static void set_str(char **dst, const char *v)
{
    char *n = v ? xstrdup(v) : NULL;
    free(*dst);
    *dst = n;
}

static void retry_in(struct k8s_reflector *r, int64_t ms)
{
    r->state = K8S_IDLE;
    r->retry_at = k8s_now_ms() + ms;
}

static void fail(struct k8s_reflector *r, const char *what)
{
    int64_t d = k8s_backoff_next(&r->backoff, k8s_now_ms());
    log_warn("%s %s: %s; retrying in %lld ms", r->resource, r->rv ? "watch" : "list", what,
             (long long)d);
    retry_in(r, d);
}

/* 410 and broken streams: relist at once, unless that is what we just did. */
static void relist_soon(struct k8s_reflector *r, const char *why)
{
    log_warn("%s: %s: relisting", r->resource, why);
    free(r->rv);
    r->rv = NULL;
    r->want_relist = true;
    if (k8s_now_ms() - r->last_relist_ms < 1000)
        retry_in(r, k8s_backoff_next(&r->backoff, k8s_now_ms()));
    else
        retry_in(r, 0);
}

static char *url_for(struct k8s_reflector *r, bool watch)
{
    struct buf b = {0};
    buf_printf(&b, "%s%s?", r->cfg->server, r->path);
    if (r->selector) {
        buf_append_str(&b, "labelSelector=");
        xfer_escape(&b, r->selector);
        buf_append_str(&b, "&");
    }
    if (watch) {
        buf_append_str(&b, "watch=true&resourceVersion=");
        xfer_escape(&b, r->rv);
        buf_printf(&b, "&allowWatchBookmarks=true&timeoutSeconds=%d", r->timeout_s);
    } else {
        buf_printf(&b, "limit=%d", r->page_limit);
        if (r->cont) {
            buf_append_str(&b, "&continue=");
            xfer_escape(&b, r->cont);
        }
    }
    buf_append(&b, "", 1);
    char *s = xstrdup(buf_data(&b));
    buf_free(&b);
    return s;
}

/* A one-line summary of an error body (a Status object's message). */
static void status_message(struct xfer *x, char *out, size_t outlen)
{
    json_t *j = json_loadb(buf_data(&x->body), x->body.len, 0, NULL);
    const char *m = json_string_value(json_object_get(j, "message"));
    snprintf(out, outlen, "%s", m ? m : "(no Status message)");
    json_decref(j);
}

static void http_error(struct k8s_reflector *r, struct xfer *x, CURLcode rc, long status)
{
    char msg[512], what[700];
    r->st.http_errors++;
    if (rc != CURLE_OK && status == 0) {
        snprintf(what, sizeof(what), "%s", xfer_strerror(rc));
    } else {
        status_message(x, msg, sizeof(msg));
        snprintf(what, sizeof(what), "HTTP %ld: %s", status, msg);
    }
    if (status == 401)
        k8s_config_reload_token(r->cfg, k8s_now_ms(), true);
    fail(r, what);
}

/* managedFields and kubectl's last-applied copy can be most of an object's
 * size and the watcher reads neither: they are dropped before storing. */
static void slim(json_t *obj)
{
    json_t *md = json_object_get(obj, "metadata");
    json_object_del(md, "managedFields");
    json_object_del(json_object_get(md, "annotations"),
                    "kubectl.kubernetes.io/last-applied-configuration");
}

static void start_list(struct k8s_reflector *r);
static void start_watch(struct k8s_reflector *r);

static int max_pages(const struct k8s_reflector *r)
{
    if (r->max_pages > 0)
        return r->max_pages;
    /* Twice the pages max_items needs (a server may send short pages), and
     * never fewer than 100. */
    size_t need = r->max_items / (size_t)MAX(r->page_limit, 1) + 1;
    return (int)MIN((size_t)1000000, MAX((size_t)100, 2 * need));
}

/* The list outgrew its bounds: drop what it built and keep the set in force
 * (a truncated set pushed to the balancers would remove live backends). */
static void list_limit(struct k8s_reflector *r, const char *what)
{
    r->st.limit_hits++;
    json_decref(r->pending);
    r->pending = NULL;
    set_str(&r->cont, NULL);
    r->pages = 0;
    log_error("%s: list stopped: %s; keeping the previous %zu objects", r->resource, what,
              json_object_size(r->items));
    fail(r, "list over its bounds");
}

/* Swaps the complete list <fresh> in and tells the owner what differs. */
static void swap_in(struct k8s_reflector *r, json_t *fresh)
{
    const char *k;
    json_t *v;
    json_object_foreach(r->items, k, v) {
        if (json_object_get(fresh, k) == NULL) {
            r->changed = true;
            if (r->on_change)
                r->on_change(r->change_data, r, k, NULL);
        }
    }
    json_object_foreach(fresh, k, v) {
        json_t *old = json_object_get(r->items, k);
        if (old == NULL || !json_equal(old, v)) {
            r->changed = true;
            if (r->on_change)
                r->on_change(r->change_data, r, k, v);
        }
    }
    json_decref(r->items);
    r->items = fresh;
}

static void on_list_done(struct xfer *x, CURLcode rc, long status)
{
    struct k8s_reflector *r = x->data;
    r->x = NULL;
    if (status == 410) {
        r->pages = 0;
        json_decref(r->pending);
        r->pending = NULL;
        set_str(&r->cont, NULL);
        relist_soon(r, "list continue token expired (410 Gone)");
        return;
    }
    if (rc != CURLE_OK || status != 200) {
        json_decref(r->pending);
        r->pending = NULL;
        set_str(&r->cont, NULL);
        r->pages = 0;
        if (x->too_big)
            fail(r, "list page too large");
        else
            http_error(r, x, rc, status);
        return;
    }
    json_error_t jerr;
    json_t *list = json_loadb(buf_data(&x->body), x->body.len, 0, &jerr);
    json_t *items = json_object_get(list, "items"), *it;
    json_t *md = json_object_get(list, "metadata");
    const char *rv = json_string_value(json_object_get(md, "resourceVersion"));
    const char *cont = json_string_value(json_object_get(md, "continue"));
    if (list == NULL || !json_is_array(items) || rv == NULL) {
        json_decref(list);
        json_decref(r->pending);
        r->pending = NULL;
        set_str(&r->cont, NULL);
        r->pages = 0;
        fail(r, list == NULL ? "list is not JSON" : "list has no items or resourceVersion");
        return;
    }
    r->pages++;
    if (json_object_size(r->pending) + json_array_size(items) > r->max_items) {
        char why[160];
        snprintf(why, sizeof(why), "more than %zu objects (--max-list-items)", r->max_items);
        json_decref(list);
        list_limit(r, why);
        return;
    }
    bool more = cont != NULL && *cont;
    if (more && r->pages >= max_pages(r)) {
        char why[160];
        snprintf(why, sizeof(why), "still not complete after %d pages (--max-list-pages)",
                 r->pages);
        json_decref(list);
        list_limit(r, why);
        return;
    }
    size_t i;
    json_array_foreach(items, i, it) {
        char key[512];
        if (model_key(it, key, sizeof(key))) {
            slim(it);
            json_object_set(r->pending, key, it);
        }
    }
    r->backoff.cur_ms = 0;
    if (more) {
        /* The next page after a short pause, from the loop: a long list
         * leaves room for everything else (the /metrics listener, pushes). */
        set_str(&r->cont, cont);
        json_decref(list);
        r->page_at = k8s_now_ms() + K8S_PAGE_PAUSE_MS;
        return;
    }
    /* The complete list: swap it in at once, then watch from its version. */
    set_str(&r->cont, NULL);
    set_str(&r->rv, rv);
    r->pages = 0;
    swap_in(r, r->pending);
    r->pending = NULL;
    if (!r->synced)
        r->changed = true;
    r->synced = true;
    r->want_relist = false;
    log_info("%s: listed %zu at resourceVersion %s", r->resource, json_object_size(r->items), rv);
    json_decref(list);
    start_watch(r);
}

static void start_list(struct k8s_reflector *r)
{
    if (r->pending == NULL) {
        r->pending = json_object();
        r->pages = 0;
        r->st.lists++;
        if (r->synced)
            r->st.relists++;
        r->last_relist_ms = k8s_now_ms();
    }
    char *url = url_for(r, false);
    struct xfer *x = xfer_new("GET", url, NULL, 64u << 20, on_list_done, r);
    free(url);
    if (x == NULL) {
        fail(r, "cannot create a request");
        return;
    }
    k8s_config_apply(r->cfg, x);
    xfer_timeout(x, 60000L);
    if (xfer_start(x) < 0) {
        fail(r, "cannot start a request");
        return;
    }
    r->x = x;
    r->state = K8S_LISTING;
}

/* One watch event. Returns false to abort the stream (and says why in r). */
static bool handle_line(struct k8s_reflector *r, const char *p, size_t n)
{
    size_t i = 0;
    while (i < n && isspace((unsigned char)p[i]))
        i++;
    if (i == n)
        return true;
    json_error_t jerr;
    json_t *ev = json_loadb(p, n, 0, &jerr);
    const char *type = json_string_value(json_object_get(ev, "type"));
    json_t *obj = json_object_get(ev, "object");
    if (ev == NULL || type == NULL || !json_is_object(obj)) {
        log_warn("%s: malformed watch line (%zu bytes): %s", r->resource, n,
                 ev == NULL ? jerr.text : "no type or object");
        r->st.bad_lines++;
        r->bad_stream = true;
        json_decref(ev);
        return false;
    }
    const char *rv = json_string_value(json_object_get(json_object_get(obj, "metadata"),
                                                       "resourceVersion"));
    char key[512];
    bool keep = true;
    if (strcmp(type, "ERROR") == 0) {
        r->st.errors++;
        json_int_t code = json_integer_value(json_object_get(obj, "code"));
        const char *msg = json_string_value(json_object_get(obj, "message"));
        if (code == 410) {
            log_warn("%s: watch ERROR 410: %s", r->resource, msg ? msg : "");
            r->bad_stream = true;
        } else {
            log_warn("%s: watch ERROR %lld: %s", r->resource, (long long)code, msg ? msg : "");
            r->stream_error = true;
        }
        keep = false;
    } else if (strcmp(type, "BOOKMARK") == 0) {
        r->st.bookmarks++;
    } else if (!model_key(obj, key, sizeof(key))) {
        log_warn("%s: %s event without metadata.name", r->resource, type);
        r->st.bad_lines++;
        r->bad_stream = true;
        keep = false;
    } else if ((strcmp(type, "ADDED") == 0 || strcmp(type, "MODIFIED") == 0) &&
               json_object_get(r->items, key) == NULL &&
               json_object_size(r->items) >= r->max_items) {
        /* One object more than a list may hold: relist, which then stops at
         * the bound and keeps the set in force. */
        log_error("%s: %s %s would make more than %zu objects (--max-list-items)", r->resource,
                  type, key, r->max_items);
        r->st.limit_hits++;
        r->bad_stream = true;
        keep = false;
    } else if (strcmp(type, "ADDED") == 0 || strcmp(type, "MODIFIED") == 0) {
        if (type[0] == 'A')
            r->st.added++;
        else
            r->st.modified++;
        slim(obj);
        json_object_set(r->items, key, obj);
        r->changed = true;
        if (r->on_change)
            r->on_change(r->change_data, r, key, obj);
        log_debug("%s: %s %s rv %s", r->resource, type, key, rv ? rv : "?");
    } else if (strcmp(type, "DELETED") == 0) {
        r->st.deleted++;
        if (json_object_del(r->items, key) == 0) {
            r->changed = true;
            if (r->on_change)
                r->on_change(r->change_data, r, key, NULL);
        }
        log_debug("%s: DELETED %s rv %s", r->resource, key, rv ? rv : "?");
    } else {
        log_warn("%s: unknown watch event type \"%s\"", r->resource, type);
        r->st.bad_lines++;
        r->bad_stream = true;
        keep = false;
    }
    if (keep) {
        if (rv != NULL)
            set_str(&r->rv, rv);
        r->backoff.cur_ms = 0;
    }
    json_decref(ev);
    return keep;
}

static bool on_watch_data(struct xfer *x, long status, const char *p, size_t n)
{
    struct k8s_reflector *r = x->data;
    if (status != 200) {
        size_t room = x->body.len < 65536 ? 65536 - x->body.len : 0;
        buf_append(&x->body, p, MIN(n, room));
        return true;
    }
    r->last_byte_ms = k8s_now_ms();
    if (n > 0)
        r->watch_got_bytes = true;
    while (n > 0) {
        const char *nl = memchr(p, '\n', n);
        size_t take = nl ? (size_t)(nl - p) : n;
        if (r->line.len + take > r->max_line) {
            log_warn("%s: watch line longer than %zu bytes: dropped", r->resource, r->max_line);
            r->st.bad_lines++;
            r->line_overflow = true;
            buf_free(&r->line);
            return false;
        }
        buf_append(&r->line, p, take);
        if (nl == NULL)
            break;
        bool go = handle_line(r, buf_data(&r->line), r->line.len);
        buf_consume(&r->line, r->line.len);
        if (!go) {
            buf_free(&r->line);
            return false;
        }
        p = nl + 1;
        n -= take + 1;
    }
    return true;
}

static void on_watch_done(struct xfer *x, CURLcode rc, long status)
{
    struct k8s_reflector *r = x->data;
    int64_t now = k8s_now_ms();
    r->x = NULL;
    buf_free(&r->line);
    bool overflow = r->line_overflow, bad = r->bad_stream, serr = r->stream_error;
    r->line_overflow = r->bad_stream = r->stream_error = false;
    if (overflow || bad) {
        relist_soon(r, overflow ? "oversized watch line" : "watch stream says 410 Gone or is malformed");
        return;
    }
    r->st.watch_restarts++;
    if (serr) {
        fail(r, "watch ERROR event");
        return;
    }
    if (status == 410) {
        relist_soon(r, "watch answered 410 Gone");
        return;
    }
    if (rc != CURLE_OK || status != 200) {
        http_error(r, x, rc, status);
        return;
    }
    /* A clean end (timeoutSeconds or a server restart): watch again from the
     * last version seen. A stream that closes within a second without a
     * single byte (not even a bookmark) is an error in disguise (client-go's
     * "very short watch"): reopening it at once would loop as fast as the
     * server answers, so it backs off. Whether bytes came is a flag, not a
     * comparison of clocks: bytes may arrive in the very millisecond the
     * watch started, and last_byte_ms starts at watch_start_ms so that the
     * stall check counts from the start. A watch that ends at its
     * timeoutSeconds, with or without bytes, is healthy: again at once. */
    if (!r->watch_got_bytes && now - r->watch_start_ms < 1000)
        fail(r, "watch closed at once without data");
    else
        retry_in(r, 0);
}

static void start_watch(struct k8s_reflector *r)
{
    char *url = url_for(r, true);
    struct xfer *x = xfer_new("GET", url, NULL, 65536, on_watch_done, r);
    free(url);
    if (x == NULL) {
        fail(r, "cannot create a request");
        return;
    }
    x->on_data = on_watch_data;
    k8s_config_apply(r->cfg, x);
    /* A backstop only: the stall check in k8s_reflector_tick() acts first. */
    long limit = (long)MAX(r->stall_ms, (int64_t)(r->timeout_s + 5) * 1000) + 10000;
    xfer_timeout(x, limit);
    if (xfer_start(x) < 0) {
        fail(r, "cannot start a request");
        return;
    }
    r->x = x;
    r->st.watches++;
    r->state = K8S_WATCHING;
    r->watch_start_ms = r->last_byte_ms = k8s_now_ms();
    r->watch_got_bytes = false;
    log_debug("%s: watching from resourceVersion %s", r->resource, r->rv);
}

void k8s_reflector_relist(struct k8s_reflector *r)
{
    if (r->state == K8S_LISTING)
        return;
    xfer_cancel(r->x);
    r->x = NULL;
    buf_free(&r->line);
    free(r->rv);
    r->rv = NULL;
    r->want_relist = true;
    retry_in(r, 0);
}

int64_t k8s_reflector_tick(struct k8s_reflector *r, int64_t now_ms)
{
    switch (r->state) {
    case K8S_IDLE:
        if (now_ms < r->retry_at)
            return r->retry_at;
        if (r->rv == NULL || r->want_relist)
            start_list(r);
        else
            start_watch(r);
        return now_ms + 1000;
    case K8S_LISTING:
        if (r->x != NULL)
            return now_ms + 1000;
        if (now_ms < r->page_at)
            return r->page_at;
        start_list(r); /* the next page */
        return now_ms + 1000;
    case K8S_WATCHING:
        if (now_ms - r->last_byte_ms >= r->stall_ms) {
            log_warn("%s: watch stalled (no bytes for %lld ms): reopening", r->resource,
                     (long long)(now_ms - r->last_byte_ms));
            xfer_cancel(r->x);
            r->x = NULL;
            buf_free(&r->line);
            r->st.stalls++;
            r->st.watch_restarts++;
            retry_in(r, k8s_backoff_next(&r->backoff, now_ms) / 4);
            return r->retry_at;
        }
        return r->last_byte_ms + r->stall_ms;
    }
    return now_ms + 1000;
}
