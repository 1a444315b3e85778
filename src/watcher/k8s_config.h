/* SPDX-License-Identifier: MIT
 * Where the Kubernetes API server is and how to talk to it: the in-cluster
 * service account or a kubeconfig file, bearer tokens re-read from their file
 * as they rotate, CA and client certificates; and the TLS and auth options
 * every request to the API server gets. Also the watcher's loop clock.
 *
 * Contract: the loaders read files only (never run a program: exec and
 * auth-provider plugins are refused) and fill a struct k8s_config that
 * k8s_config_deinit() frees; k8s_config_apply() sets options on a request
 * that is not started yet and re-reads a token file at most once a minute. */
#ifndef LLAMALB_WATCH_K8S_CONFIG_H
#define LLAMALB_WATCH_K8S_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "xfer.h"

/* A byte string read from a file or decoded from a kubeconfig *-data field. */
struct k8s_blob {
    char *p;     /* owned; NULL when unset */
    size_t len;
};

/* Where the API server is and how to talk to it. Filled by one of the two
 * loaders; freed by k8s_config_deinit(). */
struct k8s_config {
    char *server;            /* base URL without a trailing slash */
    char *namespace;         /* the context's or the pod's namespace ("default") */
    char *token;             /* bearer token, or NULL */
    char *token_file;        /* re-read every minute and after a 401, or NULL */
    int64_t token_read_ms;   /* when token_file was last read (loop clock) */
    char *ca_file;           /* CA bundle path, or NULL */
    struct k8s_blob ca;      /* CA bundle PEM (certificate-authority-data) */
    char *cert_file, *key_file;   /* client certificate and key paths */
    struct k8s_blob cert, key;    /* ... or their PEM (client-*-data) */
    bool insecure;           /* insecure-skip-tls-verify */
};

/* In-cluster config from KUBERNETES_SERVICE_HOST/PORT and <sa_dir> (normally
 * /var/run/secrets/kubernetes.io/serviceaccount). Returns 0 or -errno with a
 * message in <err>. */
int k8s_config_incluster(struct k8s_config *c, const char *sa_dir, char *err, size_t errlen);

/* kubeconfig <path> (NULL: $KUBECONFIG, else ~/.kube/config), context
 * <context> (NULL: current-context). Supports token, tokenFile, client
 * certificate/key (file or -data), certificate-authority (file or -data),
 * insecure-skip-tls-verify; refuses exec and auth-provider plugins. Returns 0
 * or -errno with a message in <err>. */
int k8s_config_kubeconfig(struct k8s_config *c, const char *path, const char *context,
                          char *err, size_t errlen);

/* Frees what the loaders allocated and zeroes <c>. */
void k8s_config_deinit(struct k8s_config *c);

/* Re-reads the token file if <force> or if it was read a minute or more
 * before <now_ms>. Keeps the old token if the file cannot be read. */
void k8s_config_reload_token(struct k8s_config *c, int64_t now_ms, bool force);

/* Applies the token (Authorization: Bearer), Accept: application/json and
 * the TLS settings (CA, client certificate and key, insecure-skip-tls-verify)
 * to <x>, re-reading the token file first if a minute has passed. */
void k8s_config_apply(struct k8s_config *c, struct xfer *x);

/* The loop clock, in ms (CLOCK_MONOTONIC): every deadline of the watcher. */
int64_t k8s_now_ms(void);

#endif
