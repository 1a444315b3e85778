/* SPDX-License-Identifier: MIT
 * llamalb-watcher: follows labelled Kubernetes Services (and their
 * EndpointSlices) and keeps every balancer replica's backend set equal to
 * what the cluster says. One thread, one libcurl multi handle: the list/watch
 * streams, the admin pushes and the /metrics listener share one poll.
 *
 * This file is the wiring and the loop: the flags come from opts.c, the
 * reflectors from k8s.c, the desired set from model.c, the pushes from
 * push.c, the listener's answers from status.c. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "buf.h"
#include "k8s.h"
#include "log.h"
#include "net.h"
#include "model.h"
#include "opts.h"
#include "push.h"
#include "serve.h"
#include "util.h"
#include "watcher.h"
#include "xfer.h"

static volatile sig_atomic_t g_stop;
static CURLM *g_multi;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
    if (g_multi)
        curl_multi_wakeup(g_multi);
}

static bool all_synced(const struct watcher *w)
{
    for (size_t i = 0; i < w->nrefl; i++)
        if (!w->refl[i]->synced)
            return false;
    return w->lbrefl == NULL || w->lbrefl->synced;
}

/* A reflector's object changed: the model recomputes only its Service. */
static void on_change(void *data, struct k8s_reflector *r, const char *key, json_t *obj)
{
    struct watcher *w = data;
    if (strcmp(r->resource, "services") == 0)
        model_state_set_service(&w->ms, key, obj);
    else
        model_state_set_slice(&w->ms, key, obj);
}

/* Logs each entry left out once, when it starts being left out (not at
 * every recompute or resync), and counts it by reason. */
static void note_drops(struct watcher *w, json_t *drops)
{
    const char *name;
    json_t *d;
    json_object_foreach(drops, name, d) {
        json_t *was = json_object_get(w->dropped, name);
        if (was != NULL && json_equal(was, d))
            continue;
        const char *reason = json_string_value(json_object_get(d, "reason"));
        log_warn("backend %s left out (%s): the balancer would refuse it: %s", name, reason,
                 json_string_value(json_object_get(d, "detail")));
        json_t *c = json_object_get(w->drop_counts, reason);
        json_object_set_new(w->drop_counts, reason, json_integer(json_integer_value(c) + 1));
    }
    json_decref(w->dropped);
    w->dropped = json_incref(drops);
}

/* Recomputes the desired set (the Services that changed) and hands it to push. */
static void recompute(struct watcher *w, int64_t now)
{
    json_t *warnings = json_array(), *drops = json_object(), *v;
    json_t *desired = model_state_desired(&w->ms, &w->mc, warnings, drops);
    json_t *seen = json_object();
    size_t i;
    json_array_foreach(warnings, i, v) {
        const char *msg = json_string_value(v);
        if (json_object_get(w->warned, msg) == NULL)
            log_warn("%s", msg);
        json_object_set_new(seen, msg, json_true());
    }
    json_decref(w->warned);
    w->warned = seen;
    note_drops(w, drops);
    log_info("desired set: %zu backends (%zu left out)", json_array_size(desired),
             json_object_size(drops));
    push_set_desired(&w->push, desired, now);
    json_decref(warnings);
    json_decref(drops);
}

static struct k8s_reflector *add_refl(struct watcher *w, const char *resource, const char *ns,
                                      const char *sel)
{
    char path[512];
    const char *base = strcmp(resource, "services") == 0 ? "/api/v1" : "/apis/discovery.k8s.io/v1";
    if (ns)
        snprintf(path, sizeof(path), "%s/namespaces/%s/%s", base, ns, resource);
    else
        snprintf(path, sizeof(path), "%s/%s", base, resource);
    return k8s_reflector_new(&w->kc, resource, path, sel);
}

static char *read_token(const char *path)
{
    FILE *f = fopen(path, "r");
    char tmp[4096];
    if (f == NULL)
        return NULL;
    size_t n = fread(tmp, 1, sizeof(tmp) - 1, f);
    fclose(f);
    tmp[n] = '\0';
    while (n > 0 && (tmp[n - 1] == '\n' || tmp[n - 1] == '\r' || tmp[n - 1] == ' '))
        tmp[--n] = '\0';
    return xstrdup(tmp);
}

/* The API server's configuration, the admin token, libcurl and the empty
 * state. Returns OPTS_RUN, or the exit status after a message on stderr. */
static int setup_state(struct watcher *w, const struct opts *o)
{
    char err[512];
    int r;
    const char *in_cluster = getenv("KUBERNETES_SERVICE_HOST");
    if (o->kubeconfig == NULL && in_cluster != NULL && *in_cluster)
        r = k8s_config_incluster(&w->kc, o->sa_dir, err, sizeof(err));
    else
        r = k8s_config_kubeconfig(&w->kc, o->kubeconfig, o->context, err, sizeof(err));
    if (r < 0) {
        fprintf(stderr, "llamalb-watcher: %s\n", err);
        return 1;
    }
    char *token = NULL;
    if (o->token_file != NULL && (token = read_token(o->token_file)) == NULL) {
        fprintf(stderr, "llamalb-watcher: --admin-token-file %s: %s\n", o->token_file,
                strerror(errno));
        return 1;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "llamalb-watcher: curl_global_init failed\n");
        return 1;
    }
    srandom((unsigned)time(NULL) ^ (unsigned)getpid());
    w->multi = g_multi = curl_multi_init();
    xfer_init(w->multi);
    push_init(&w->push, o->push, token);
    role_init(&w->role, o->lb_service != NULL ? o->follow_port : 0, 8081, token);
    free(token);
    w->push.debounce_ms = o->debounce_ms;
    w->warned = json_object();
    w->dropped = json_object();
    w->drop_counts = json_object();
    model_state_init(&w->ms);
    return OPTS_RUN;
}

/* One services reflector (and one slices reflector in endpoints mode) per
 * namespace, or one for all namespaces; the --lb-service reflector or the
 * static --lb list; the watch tuning copied into each. Returns OPTS_RUN or
 * the exit status after a message on stderr. */
static int setup_reflectors(struct watcher *w, const struct opts *o)
{
    for (size_t i = 0; i < (o->nns ? o->nns : 1); i++) {
        const char *ns = o->nns ? o->namespaces[i] : NULL;
        w->refl[w->nrefl++] = add_refl(w, "services", ns, o->selector);
        if (w->mc.mode == MODEL_ENDPOINTS)
            w->refl[w->nrefl++] = add_refl(w, "endpointslices", ns, o->slice_sel);
    }
    if (o->lb_service != NULL) {
        const char *why;
        if (opts_lb_service(o->lb_service, w->lb_ns, w->lb_name, &w->lb_port, &why) < 0) {
            fprintf(stderr, "llamalb-watcher: %s\n", why);
            return 2;
        }
        w->role.admin_port = w->lb_port;
        /* Only the EndpointSlice controller's slices of that Service: the
         * admin token goes to these addresses. The selector narrows the
         * watch; model_lb_urls() checks every slice again (ownerReferences
         * included), whatever the server sends. */
        char sel[400];
        snprintf(sel, sizeof(sel), MODEL_SLICE_SERVICE_LABEL "=%s," MODEL_SLICE_MANAGER_LABEL
                 "=" MODEL_SLICE_CONTROLLER, w->lb_name);
        w->lbrefl = add_refl(w, "endpointslices", w->lb_ns, sel);
    } else {
        json_t *urls = json_array();
        for (size_t i = 0; i < o->nlb; i++)
            json_array_append_new(urls, json_string(o->lbs[i]));
        push_set_targets(&w->push, urls);
        json_decref(urls);
    }
    for (size_t i = 0; i <= w->nrefl; i++) {
        struct k8s_reflector *rf = i < w->nrefl ? w->refl[i] : w->lbrefl;
        if (rf == NULL)
            continue;
        rf->timeout_s = (int)o->watch_timeout_s;
        rf->stall_ms = o->stall_ms;
        rf->max_line = (size_t)o->max_line;
        rf->page_limit = (int)o->page_limit;
        rf->max_items = (size_t)o->max_items;
        rf->max_pages = (int)o->max_pages;
        if (rf != w->lbrefl) {
            rf->on_change = on_change;
            rf->change_data = w;
        }
        rf->backoff.min_ms = o->backoff_min_ms;
        rf->backoff.max_ms = o->backoff_max_ms;
    }
    return OPTS_RUN;
}

/* One turn of the loop: tick every reflector, follow the --lb-service
 * replicas, recompute and push what changed, run the resync timers, then
 * wait in curl_multi_poll() for the next socket event or deadline. */
static void loop_turn(struct watcher *w)
{
    int64_t now = k8s_now_ms();
    int64_t next = now + 1000;
    bool changed = false;
    for (size_t i = 0; i <= w->nrefl; i++) {
        struct k8s_reflector *rf = i < w->nrefl ? w->refl[i] : w->lbrefl;
        if (rf == NULL)
            continue;
        next = MIN(next, k8s_reflector_tick(rf, now));
        if (rf->changed && rf != w->lbrefl)
            changed = true;
    }
    if (w->lbrefl && w->lbrefl->changed) {
        w->lbrefl->changed = false;
        json_t *urls = model_lb_urls(w->lbrefl->items, w->lb_ns, w->lb_name, w->lb_port);
        push_set_targets(&w->push, urls);
        json_decref(urls);
        role_update(&w->role, w->lbrefl->items, w->lb_ns, w->lb_name);
    }
    if (all_synced(w)) {
        if (!w->ready)
            log_info("initial lists complete");
        w->ready = true;
        if (changed) {
            for (size_t i = 0; i < w->nrefl; i++)
                w->refl[i]->changed = false;
            recompute(w, now);
        }
    }
    if (now >= w->next_resync) {
        w->next_resync = now + w->resync_ms;
        push_resync(&w->push);
        role_resync(&w->role);
    }
    if (now >= w->next_full) {
        w->next_full = now + w->full_ms;
        log_info("full resync: relisting and pushing everything again");
        for (size_t i = 0; i <= w->nrefl; i++) {
            struct k8s_reflector *rf = i < w->nrefl ? w->refl[i] : w->lbrefl;
            if (rf)
                k8s_reflector_relist(rf);
        }
        push_repush(&w->push, now);
    }
    next = MIN(next, push_tick(&w->push, now));
    next = MIN(next, role_tick(&w->role, now));
    next = MIN(next, MIN(w->next_resync, w->next_full));

    struct curl_waitfd fds[1 + SERVE_MAX_CONNS];
    unsigned nfds = serve_fds(&w->srv, fds);
    int timeout = (int)MAX(0, MIN(next - now, 1000));
    int numfds = 0, running = 0;
    curl_multi_poll(w->multi, fds, nfds, timeout, &numfds);
    curl_multi_perform(w->multi, &running);
    xfer_dispatch();
    serve_handle(&w->srv, fds, nfds, k8s_now_ms());
}

static void teardown(struct watcher *w)
{
    for (size_t i = 0; i < w->nrefl; i++)
        k8s_reflector_free(w->refl[i]);
    k8s_reflector_free(w->lbrefl);
    push_deinit(&w->push);
    role_deinit(&w->role);
    serve_close(&w->srv);
    json_decref(w->warned);
    json_decref(w->dropped);
    json_decref(w->drop_counts);
    model_state_deinit(&w->ms);
    k8s_config_deinit(&w->kc);
    curl_multi_cleanup(w->multi);
    curl_global_cleanup();
}

int main(int argc, char **argv)
{
    static struct opts o; /* w.mc.allow points into it for the whole run */
    static struct watcher w;
    char err[512];
    int rc;

    log_min_level = LOG_INFO;
    if ((rc = opts_parse(&o, argc, argv)) != OPTS_RUN)
        return rc;
    log_min_level = o.log_level;
    w.mc = o.mc;
    w.resync_ms = o.resync_ms;
    w.full_ms = o.full_ms;
    if ((rc = setup_state(&w, &o)) != OPTS_RUN || (rc = setup_reflectors(&w, &o)) != OPTS_RUN)
        return rc;

    char bound[NET_ADDRSTR_LEN];
    if (serve_listen(&w.srv, o.listen, status_route, &w, bound, sizeof(bound), err,
                     sizeof(err)) < 0) {
        fprintf(stderr, "llamalb-watcher: %s\n", err);
        return 1;
    }
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    log_info("watching %s (%s mode, selector %s) at %s; %s", o.nns ? "some namespaces" :
             "all namespaces", w.mc.mode == MODEL_SERVICE ? "service" : "endpoints", o.selector,
             w.kc.server, o.push == PUSH_PUT ? "PUT /api/services" : "register/unregister");
    printf("listening on %s\n", bound);
    fflush(stdout);

    int64_t now = k8s_now_ms();
    w.next_resync = now + w.resync_ms;
    w.next_full = now + w.full_ms;
    while (!g_stop)
        loop_turn(&w);
    log_info("stopping");
    teardown(&w);
    return 0;
}
