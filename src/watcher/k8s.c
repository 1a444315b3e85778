/* SPDX-License-Identifier: MIT
 * Kubernetes API client on libcurl + jansson + libyaml (see k8s.h).
 *
 * The reflector's life, as in kube-rs' watcher (docs/watcher.md, "The watch
 * loop"):
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
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>
#include <yaml.h>

#include "buf.h"
#include "k8s.h"
#include "log.h"
#include "model.h"
#include "util.h"

int64_t k8s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------------------
 * Configuration. Files are small; anything over 1 MiB is refused. */

static int read_file(const char *path, struct k8s_blob *out)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return -errno;
    struct buf b = {0};
    char tmp[4096];
    size_t n;
    while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0) {
        if (b.len + n > (1u << 20)) {
            fclose(f);
            buf_free(&b);
            return -EFBIG;
        }
        buf_append(&b, tmp, n);
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        buf_free(&b);
        return -EIO;
    }
    out->p = xmalloc(b.len + 1);
    memcpy(out->p, buf_data(&b), b.len);
    out->p[b.len] = '\0';
    out->len = b.len;
    buf_free(&b);
    return 0;
}

static char *trimmed_dup(const char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        n--;
    return xstrndup(s, n);
}

void k8s_config_reload_token(struct k8s_config *c, int64_t now_ms, bool force)
{
    if (c->token_file == NULL || (!force && c->token_read_ms != 0 && now_ms - c->token_read_ms < 60000))
        return;
    struct k8s_blob b = {0};
    int r = read_file(c->token_file, &b);
    c->token_read_ms = now_ms ? now_ms : 1;
    if (r < 0) {
        log_warn("token file %s: %s (keeping the previous token)", c->token_file, strerror(-r));
        return;
    }
    char *t = trimmed_dup(b.p);
    free(b.p);
    if (c->token == NULL || strcmp(c->token, t) != 0)
        log_info("bearer token %s from %s", c->token ? "reloaded" : "read", c->token_file);
    free(c->token);
    c->token = t;
}

int k8s_config_incluster(struct k8s_config *c, const char *sa_dir, char *err, size_t errlen)
{
    const char *host = getenv("KUBERNETES_SERVICE_HOST"), *port = getenv("KUBERNETES_SERVICE_PORT");
    char path[4096];
    memset(c, 0, sizeof(*c));
    if (host == NULL || port == NULL || !*host || !*port) {
        snprintf(err, errlen, "not in a cluster: KUBERNETES_SERVICE_HOST/PORT unset "
                              "(use --kubeconfig)");
        return -ENOENT;
    }
    size_t n = strlen(host) + strlen(port) + 16;
    c->server = xmalloc(n);
    snprintf(c->server, n, strchr(host, ':') ? "https://[%s]:%s" : "https://%s:%s", host, port);
    snprintf(path, sizeof(path), "%s/token", sa_dir);
    c->token_file = xstrdup(path);
    k8s_config_reload_token(c, k8s_now_ms(), true);
    if (c->token == NULL) {
        snprintf(err, errlen, "cannot read the service-account token %s", path);
        return -ENOENT;
    }
    snprintf(path, sizeof(path), "%s/ca.crt", sa_dir);
    c->ca_file = xstrdup(path);
    snprintf(path, sizeof(path), "%s/namespace", sa_dir);
    struct k8s_blob ns = {0};
    if (read_file(path, &ns) == 0) {
        c->namespace = trimmed_dup(ns.p);
        free(ns.p);
    } else {
        c->namespace = xstrdup("default");
    }
    return 0;
}

void k8s_config_deinit(struct k8s_config *c)
{
    free(c->server);
    free(c->namespace);
    free(c->token);
    free(c->token_file);
    free(c->ca_file);
    free(c->ca.p);
    free(c->cert_file);
    free(c->key_file);
    free(c->cert.p);
    free(c->key.p);
    memset(c, 0, sizeof(*c));
}

/* Decodes standard base64 (whitespace ignored). Returns 0 or -EINVAL. */
static int b64_decode(const char *in, struct k8s_blob *out)
{
    size_t n = strlen(in);
    unsigned char *o = xmalloc(n / 4 * 3 + 4);
    size_t len = 0;
    unsigned acc = 0;
    int bits = 0;
    for (const char *p = in; *p; p++) {
        int v;
        unsigned char ch = (unsigned char)*p;
        if (ch >= 'A' && ch <= 'Z')
            v = ch - 'A';
        else if (ch >= 'a' && ch <= 'z')
            v = ch - 'a' + 26;
        else if (ch >= '0' && ch <= '9')
            v = ch - '0' + 52;
        else if (ch == '+' || ch == '-')
            v = 62;
        else if (ch == '/' || ch == '_')
            v = 63;
        else if (ch == '=' || isspace(ch))
            continue;
        else {
            free(o);
            return -EINVAL;
        }
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            o[len++] = (unsigned char)(acc >> bits);
        }
    }
    o[len] = '\0';
    out->p = (char *)o;
    out->len = len;
    return 0;
}

/* libyaml's document tree: tiny lookups over mappings and sequences. */
static yaml_node_t *ymap(yaml_document_t *d, yaml_node_t *m, const char *key)
{
    if (m == NULL || m->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(d, p->key);
        if (k && k->type == YAML_SCALAR_NODE && strcmp((char *)k->data.scalar.value, key) == 0)
            return yaml_document_get_node(d, p->value);
    }
    return NULL;
}

static const char *ystr(yaml_document_t *d, yaml_node_t *m, const char *key)
{
    yaml_node_t *n = ymap(d, m, key);
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

/* The entry of list <list> (contexts, clusters, users) whose name is <name>,
 * returning its inner <inner> mapping. */
static yaml_node_t *ynamed(yaml_document_t *d, yaml_node_t *root, const char *list,
                           const char *name, const char *inner)
{
    yaml_node_t *s = ymap(d, root, list);
    if (s == NULL || s->type != YAML_SEQUENCE_NODE || name == NULL)
        return NULL;
    for (yaml_node_item_t *i = s->data.sequence.items.start; i < s->data.sequence.items.top; i++) {
        yaml_node_t *e = yaml_document_get_node(d, *i);
        const char *n = ystr(d, e, "name");
        if (n && strcmp(n, name) == 0)
            return ymap(d, e, inner);
    }
    return NULL;
}

/* A path in a kubeconfig is relative to the kubeconfig's directory. */
static char *rel_path(const char *kubeconfig, const char *p)
{
    if (p[0] == '/')
        return xstrdup(p);
    const char *slash = strrchr(kubeconfig, '/');
    size_t dl = slash ? (size_t)(slash - kubeconfig) : 1;
    size_t n = dl + strlen(p) + 2;
    char *out = xmalloc(n);
    snprintf(out, n, "%.*s/%s", (int)dl, slash ? kubeconfig : ".", p);
    return out;
}

int k8s_config_kubeconfig(struct k8s_config *c, const char *path, const char *context,
                          char *err, size_t errlen)
{
    char def[4096];
    memset(c, 0, sizeof(*c));
    if (path == NULL)
        path = getenv("KUBECONFIG");
    if (path != NULL && strchr(path, ':') != NULL) {
        /* kubectl merges a list; we take its first file, as the C client does. */
        snprintf(def, sizeof(def), "%.*s", (int)(strchr(path, ':') - path), path);
        path = def;
    }
    if (path == NULL || !*path) {
        const char *home = getenv("HOME");
        snprintf(def, sizeof(def), "%s/.kube/config", home ? home : "");
        path = def;
    }
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, errlen, "kubeconfig %s: %s", path, strerror(errno));
        return -ENOENT;
    }
    yaml_parser_t parser;
    yaml_document_t doc;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, f);
    int ok = yaml_parser_load(&parser, &doc);
    fclose(f);
    if (!ok) {
        snprintf(err, errlen, "kubeconfig %s: YAML error at line %zu: %s", path,
                 parser.problem_mark.line + 1, parser.problem ? parser.problem : "?");
        yaml_parser_delete(&parser);
        return -EINVAL;
    }
    yaml_parser_delete(&parser);
    int rc = -EINVAL;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    const char *ctx_name = context ? context : ystr(&doc, root, "current-context");
    yaml_node_t *ctx = ynamed(&doc, root, "contexts", ctx_name, "context");
    if (ctx == NULL) {
        snprintf(err, errlen, "kubeconfig %s: context \"%s\" not found", path,
                 ctx_name ? ctx_name : "(no current-context)");
        goto out;
    }
    yaml_node_t *cl = ynamed(&doc, root, "clusters", ystr(&doc, ctx, "cluster"), "cluster");
    yaml_node_t *us = ynamed(&doc, root, "users", ystr(&doc, ctx, "user"), "user");
    const char *server = ystr(&doc, cl, "server"), *v;
    if (server == NULL) {
        snprintf(err, errlen, "kubeconfig %s: cluster of context \"%s\" has no server", path,
                 ctx_name);
        goto out;
    }
    c->server = xstrdup(server);
    size_t sl = strlen(c->server);
    while (sl > 0 && c->server[sl - 1] == '/')
        c->server[--sl] = '\0';
    c->namespace = xstrdup((v = ystr(&doc, ctx, "namespace")) ? v : "default");
    if ((v = ystr(&doc, cl, "certificate-authority-data")) && b64_decode(v, &c->ca) < 0) {
        snprintf(err, errlen, "kubeconfig %s: bad base64 in certificate-authority-data", path);
        goto out;
    }
    if ((v = ystr(&doc, cl, "certificate-authority")))
        c->ca_file = rel_path(path, v);
    v = ystr(&doc, cl, "insecure-skip-tls-verify");
    c->insecure = v && strcmp(v, "true") == 0;
    if (ymap(&doc, us, "exec") || ymap(&doc, us, "auth-provider")) {
        snprintf(err, errlen, "kubeconfig %s: exec and auth-provider credentials are not "
                              "supported; use a token or a client certificate", path);
        goto out;
    }
    if ((v = ystr(&doc, us, "token")))
        c->token = xstrdup(v);
    if ((v = ystr(&doc, us, "tokenFile"))) {
        c->token_file = rel_path(path, v);
        k8s_config_reload_token(c, k8s_now_ms(), true);
    }
    if ((v = ystr(&doc, us, "client-certificate")))
        c->cert_file = rel_path(path, v);
    if ((v = ystr(&doc, us, "client-key")))
        c->key_file = rel_path(path, v);
    if (((v = ystr(&doc, us, "client-certificate-data")) && b64_decode(v, &c->cert) < 0) ||
        ((v = ystr(&doc, us, "client-key-data")) && b64_decode(v, &c->key) < 0)) {
        snprintf(err, errlen, "kubeconfig %s: bad base64 in client-*-data", path);
        goto out;
    }
    log_info("kubeconfig %s: context \"%s\", server %s", path, ctx_name, c->server);
    rc = 0;
out:
    yaml_document_delete(&doc);
    if (rc < 0)
        k8s_config_deinit(c);
    return rc;
}

/* Applies auth and TLS settings to a request to the API server. */
static void config_apply(struct k8s_config *c, struct xfer *x)
{
    CURL *e = x->easy;
    char hdr[8192];
    k8s_config_reload_token(c, k8s_now_ms(), false);
    xfer_header(x, "Accept: application/json");
    if (c->token != NULL && strlen(c->token) < sizeof(hdr) - 32) {
        snprintf(hdr, sizeof(hdr), "Authorization: Bearer %s", c->token);
        xfer_header(x, hdr);
    }
    if (c->insecure) {
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (c->ca_file)
        curl_easy_setopt(e, CURLOPT_CAINFO, c->ca_file);
    if (c->ca.p) {
        struct curl_blob b = {c->ca.p, c->ca.len, CURL_BLOB_COPY};
        curl_easy_setopt(e, CURLOPT_CAINFO_BLOB, &b);
    }
    if (c->cert_file)
        curl_easy_setopt(e, CURLOPT_SSLCERT, c->cert_file);
    if (c->key_file)
        curl_easy_setopt(e, CURLOPT_SSLKEY, c->key_file);
    if (c->cert.p) {
        struct curl_blob b = {c->cert.p, c->cert.len, CURL_BLOB_COPY};
        curl_easy_setopt(e, CURLOPT_SSLCERT_BLOB, &b);
        curl_easy_setopt(e, CURLOPT_SSLCERTTYPE, "PEM");
    }
    if (c->key.p) {
        struct curl_blob b = {c->key.p, c->key.len, CURL_BLOB_COPY};
        curl_easy_setopt(e, CURLOPT_SSLKEY_BLOB, &b);
        curl_easy_setopt(e, CURLOPT_SSLKEYTYPE, "PEM");
    }
}

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
        char *esc = curl_easy_escape(NULL, r->selector, 0);
        buf_printf(&b, "labelSelector=%s&", esc);
        curl_free(esc);
    }
    if (watch) {
        char *esc = curl_easy_escape(NULL, r->rv, 0);
        buf_printf(&b, "watch=true&resourceVersion=%s&allowWatchBookmarks=true&timeoutSeconds=%d",
                   esc, r->timeout_s);
        curl_free(esc);
    } else {
        buf_printf(&b, "limit=%d", r->page_limit);
        if (r->cont) {
            char *esc = curl_easy_escape(NULL, r->cont, 0);
            buf_printf(&b, "&continue=%s", esc);
            curl_free(esc);
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
        snprintf(what, sizeof(what), "%s", curl_easy_strerror(rc));
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
    config_apply(r->cfg, x);
    curl_easy_setopt(x->easy, CURLOPT_TIMEOUT_MS, 60000L);
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
     * last version seen. A stream that closes at once every time is an error
     * in disguise, so it backs off. */
    if (now - r->watch_start_ms < 1000 && r->last_byte_ms < r->watch_start_ms)
        fail(r, "watch closed at once");
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
    config_apply(r->cfg, x);
    /* A backstop only: the stall check in k8s_reflector_tick() acts first. */
    long limit = (long)MAX(r->stall_ms, (int64_t)(r->timeout_s + 5) * 1000) + 10000;
    curl_easy_setopt(x->easy, CURLOPT_TIMEOUT_MS, limit);
    if (xfer_start(x) < 0) {
        fail(r, "cannot start a request");
        return;
    }
    r->x = x;
    r->st.watches++;
    r->state = K8S_WATCHING;
    r->watch_start_ms = r->last_byte_ms = k8s_now_ms();
    r->last_byte_ms = r->watch_start_ms;
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
