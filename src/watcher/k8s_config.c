/* SPDX-License-Identifier: MIT
 * Where the API server is and how to talk to it (see k8s_config.h): the
 * in-cluster service account, kubeconfig files (libyaml), token files
 * re-read as they rotate, and the TLS and auth options of each request. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <yaml.h>

#include "buf.h"
#include "k8s_config.h"
#include "log.h"
#include "util.h"
#include "xfer.h"

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

void k8s_config_apply(struct k8s_config *c, struct xfer *x)
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
