/* SPDX-License-Identifier: MIT
 * Pushing the desired set to every balancer (see push.h).
 *
 * Versions, not flags, say who is behind: push.ver is bumped when a new set
 * becomes due (after the debounce window), each target remembers the version
 * it last acknowledged (done_ver) and the one in flight (cur_ver). A target
 * is behind while done_ver != ver, so a change arriving during a push is sent
 * right after it.
 *
 * One entry must never block the others. model.c already leaves out what the
 * balancer's rules refuse; should a balancer still refuse an entry (a rule the
 * watcher cannot see, such as its own listener's address), a 400 naming
 * services[N] puts that entry aside for that balancer and the rest is sent at
 * once; a changed entry, or the next full resync, tries it again (and a
 * changed entry refused again is put aside again, in its new form). In register
 * mode a refused call does not end the round: every register and unregister
 * is sent, and the refused ones are retried by the next resync. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "k8s.h"
#include "log.h"
#include "model.h"
#include "push.h"
#include "util.h"

#define PUSH_TIMEOUT_MS 5000L
#define PUSH_RETRY_MIN_MS 500
#define PUSH_RETRY_MAX_MS 10000

static double unix_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

void push_init(struct push *p, enum push_mode mode, const char *token)
{
    memset(p, 0, sizeof(*p));
    p->mode = mode;
    p->token = token ? xstrdup(token) : NULL;
    p->debounce_ms = 50;
}

static void target_free(struct push_target *t)
{
    xfer_cancel(t->x);
    json_decref(t->ops);
    json_decref(t->sent);
    json_decref(t->refused);
    free(t->url);
    free(t);
}

void push_deinit(struct push *p)
{
    for (size_t i = 0; i < p->n; i++)
        target_free(p->t[i]);
    free(p->t);
    free(p->token);
    json_decref(p->desired);
    memset(p, 0, sizeof(*p));
}

void push_set_targets(struct push *p, json_t *urls)
{
    size_t i = 0, j;
    json_t *u;
    /* Drop targets no longer listed. */
    while (i < p->n) {
        bool keep = false;
        json_array_foreach(urls, j, u)
            if (strcmp(json_string_value(u), p->t[i]->url) == 0)
                keep = true;
        if (keep) {
            i++;
            continue;
        }
        log_info("balancer %s left", p->t[i]->url);
        target_free(p->t[i]);
        p->t[i] = p->t[--p->n];
    }
    json_array_foreach(urls, j, u) {
        const char *s = json_string_value(u);
        bool have = false;
        for (i = 0; i < p->n; i++)
            if (strcmp(p->t[i]->url, s) == 0)
                have = true;
        if (have)
            continue;
        struct push_target *t = xcalloc(1, sizeof(*t));
        t->url = xstrdup(s);
        t->refused = json_object();
        size_t l = strlen(t->url);
        while (l > 0 && t->url[l - 1] == '/')
            t->url[--l] = '\0';
        p->t = xrealloc(p->t, (p->n + 1) * sizeof(*p->t));
        p->t[p->n++] = t;
        log_info("balancer %s joined", t->url);
    }
}

void push_set_desired(struct push *p, json_t *desired, int64_t now_ms)
{
    if (p->desired != NULL && json_equal(p->desired, desired)) {
        json_decref(desired);
        return;
    }
    json_decref(p->desired);
    p->desired = desired;
    if (p->debounce_at == 0)
        p->debounce_at = now_ms + p->debounce_ms;
}

void push_resync(struct push *p)
{
    for (size_t i = 0; i < p->n; i++)
        p->t[i]->check = true;
}

void push_repush(struct push *p, int64_t now_ms)
{
    if (p->desired == NULL)
        return;
    p->ver++;
    for (size_t i = 0; i < p->n; i++) {
        p->t[i]->done_ver = 0;
        p->t[i]->retry_at = now_ms;
        json_object_clear(p->t[i]->refused);
    }
}

/* What target <t> is to hold: the desired set less the entries it refused
 * (unchanged since). A new reference. */
static json_t *target_set(const struct push *p, const struct push_target *t)
{
    if (json_object_size(t->refused) == 0)
        return json_incref(p->desired);
    json_t *set = json_array(), *b;
    size_t i;
    json_array_foreach(p->desired, i, b) {
        json_t *r = json_object_get(t->refused, json_string_value(json_object_get(b, "name")));
        if (r == NULL || !json_equal(r, b))
            json_array_append(set, b);
    }
    return set;
}

/* ------------------------------------------------------------------------
 * Requests. Each target has at most one in flight; its callback moves the
 * target to the next phase or back to IDLE. */

static struct push *g_push; /* the owner of every target (there is one) */

static void target_ok(struct push_target *t)
{
    t->backoff_ms = 0;
    t->retry_at = 0;
    t->last_sync = unix_now();
}

static void target_fail(struct push_target *t, const char *what)
{
    t->backoff_ms = t->backoff_ms ? MIN(t->backoff_ms * 2, PUSH_RETRY_MAX_MS) : PUSH_RETRY_MIN_MS;
    t->retry_at = k8s_now_ms() + t->backoff_ms;
    t->phase = PUSH_IDLE;
    log_warn("balancer %s: %s; retrying in %lld ms", t->url, what, (long long)t->backoff_ms);
}

static void describe(struct xfer *x, CURLcode rc, long status, char *out, size_t outlen)
{
    if (rc != CURLE_OK && status == 0)
        snprintf(out, outlen, "%s", xfer_strerror(rc));
    else
        snprintf(out, outlen, "HTTP %ld: %.*s", status, (int)MIN(x->body.len, 200),
                 buf_data(&x->body));
}

static struct xfer *admin_req(struct push *p, struct push_target *t, const char *method,
                              const char *path, const char *body, xfer_done_cb *cb)
{
    char url[1024], hdr[4200];
    snprintf(url, sizeof(url), "%s%s", t->url, path);
    struct xfer *x = xfer_new(method, url, body, 16u << 20, cb, t);
    if (x == NULL)
        return NULL;
    if (p->token != NULL && strlen(p->token) < 4096) {
        snprintf(hdr, sizeof(hdr), "Authorization: Bearer %s", p->token);
        xfer_header(x, hdr);
    }
    xfer_timeout(x, PUSH_TIMEOUT_MS);
    if (xfer_start(x) < 0)
        return NULL;
    t->x = x;
    return x;
}

static void on_put_done(struct xfer *x, CURLcode rc, long status)
{
    struct push_target *t = x->data;
    struct push *p = g_push;
    char what[300];
    t->x = NULL;
    t->phase = PUSH_IDLE;
    json_t *sent = t->sent;
    t->sent = NULL;
    if (rc == CURLE_OK && status == 200) {
        t->ok++;
        t->done_ver = t->cur_ver;
        target_ok(t);
        log_info("balancer %s: set of %zu pushed (generation %" PRIu64 ")", t->url,
                 json_array_size(sent), p->generation);
        json_decref(sent);
        return;
    }
    t->failed++;
    uint64_t g;
    /* Someone pushed a newer generation (a restarted watcher with a slow
     * clock, or a second one): go past it. The body is not NUL-terminated;
     * the parser stops at its end. */
    if (status == 409 && model_conflict_generation(buf_data(&x->body), x->body.len, &g) &&
        g >= p->generation) {
        p->generation = g;
        p->ver++;
    }
    describe(x, rc, status, what, sizeof(what));
    long bad = status == 400 ? model_refused_index(buf_data(&x->body), x->body.len) : -1;
    json_t *b = bad >= 0 ? json_array_get(sent, (size_t)bad) : NULL;
    const char *name = json_string_value(json_object_get(b, "name"));
    json_t *held = name != NULL ? json_object_get(t->refused, name) : NULL;
    if (name != NULL && (held == NULL || !json_equal(held, b))) {
        /* One entry refused: set it aside for this balancer, send the rest
         * now. An entry it refused before that has changed since was sent
         * again (target_set() holds back only the copy it refused): refused
         * once more, the new copy replaces the old one, or the whole set
         * would be resent with backoff until the next full resync. An
         * entry equal to the copy already held back was never sent
         * (target_set() leaves it out): a balancer naming it answers about
         * another body, an ordinary failure with backoff. */
        log_warn("balancer %s refused backend %s (%s): sending the set without it", t->url, name,
                 what);
        json_object_set(t->refused, name, b);
        t->done_ver = 0;
        t->retry_at = 0;
    } else {
        target_fail(t, what);
    }
    json_decref(sent);
}

static void start_put(struct push *p, struct push_target *t)
{
    json_decref(t->sent);
    t->sent = target_set(p, t);
    json_t *body = json_pack("{s:I,s:O}", "generation", (json_int_t)p->generation, "services",
                             t->sent);
    char *s = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    t->cur_ver = p->ver;
    t->phase = PUSH_SEND;
    if (admin_req(p, t, "PUT", "/api/services", s, on_put_done) == NULL)
        target_fail(t, "cannot start a request");
    free(s);
}

static void run_ops(struct push *p, struct push_target *t);

static void on_op_done(struct xfer *x, CURLcode rc, long status)
{
    struct push_target *t = x->data;
    struct push *p = g_push;
    char what[300];
    t->x = NULL;
    json_t *op = json_array_get(t->ops, t->op_i);
    bool unreg = strcmp(json_string_value(json_object_get(op, "op")), "unregister") == 0;
    /* 404 on unregister: already gone, which is what we wanted. */
    if (rc == CURLE_OK && (status == 200 || (unreg && status == 404))) {
        t->op_i++;
        run_ops(p, t);
        return;
    }
    describe(x, rc, status, what, sizeof(what));
    if (status == 0) {
        /* No answer at all: the balancer is away, so are the other calls. */
        t->failed++;
        target_fail(t, what);
        return;
    }
    /* The balancer refused this one call: the others (the unregisters of
     * deleted pods above all) still go. */
    t->call_failures++;
    t->op_failed++;
    log_warn("balancer %s: %s %s refused: %s", t->url, unreg ? "unregister" : "register",
             unreg ? json_string_value(json_object_get(op, "name"))
                   : json_string_value(json_object_get(json_object_get(op, "service"), "name")),
             what);
    t->op_i++;
    run_ops(p, t);
}

static void run_ops(struct push *p, struct push_target *t)
{
    if (t->op_i >= json_array_size(t->ops)) {
        size_t n = json_array_size(t->ops);
        t->done_ver = t->cur_ver;
        t->phase = PUSH_IDLE;
        if (t->op_failed > 0) {
            /* Not a hot loop: the next resync diffs again and retries
             * exactly what is still missing. */
            log_warn("balancer %s: %zu of %zu register/unregister calls refused; retrying them "
                     "at the next resync", t->url, t->op_failed, n);
            t->failed++;
            return;
        }
        if (n > 0)
            log_info("balancer %s: %zu register/unregister calls done", t->url, n);
        t->ok++;
        target_ok(t);
        return;
    }
    json_t *op = json_array_get(t->ops, t->op_i);
    struct xfer *x;
    if (strcmp(json_string_value(json_object_get(op, "op")), "register") == 0) {
        char *s = json_dumps(json_object_get(op, "service"), JSON_COMPACT);
        x = admin_req(p, t, "POST", "/api/register", s, on_op_done);
        free(s);
    } else {
        char path[600];
        snprintf(path, sizeof(path), "/api/unregister/%s",
                 json_string_value(json_object_get(op, "name")));
        x = admin_req(p, t, "DELETE", path, NULL, on_op_done);
    }
    if (x == NULL)
        target_fail(t, "cannot start a request");
}

/* GET /api/services answered: compare (check) or diff (register round). */
static void on_get_done(struct xfer *x, CURLcode rc, long status)
{
    struct push_target *t = x->data;
    struct push *p = g_push;
    char what[300];
    t->x = NULL;
    json_t *actual = NULL;
    if (rc == CURLE_OK && status == 200)
        actual = json_loadb(buf_data(&x->body), x->body.len, 0, NULL);
    if (!json_is_array(actual)) {
        json_decref(actual);
        if (t->phase == PUSH_REG_GET)
            t->failed++;
        describe(x, rc, status, what, sizeof(what));
        t->done_ver = 0; /* unknown state: push again once it answers */
        target_fail(t, what);
        return;
    }
    if (t->phase == PUSH_CHECK) {
        t->phase = PUSH_IDLE;
        json_t *want = target_set(p, t);
        bool same = model_same_set(want, actual);
        json_decref(want);
        if (same) {
            t->checks_ok++;
            target_ok(t);
        } else {
            t->repairs++;
            t->done_ver = 0;
            log_warn("balancer %s: its set differs from the desired one: repairing", t->url);
        }
        json_decref(actual);
        return;
    }
    json_decref(t->ops);
    t->ops = model_register_ops(p->desired, actual);
    t->op_i = 0;
    t->op_failed = 0;
    t->phase = PUSH_REG_OPS;
    json_decref(actual);
    run_ops(p, t);
}

static void start_get(struct push *p, struct push_target *t, enum push_phase phase)
{
    t->phase = phase;
    t->cur_ver = p->ver;
    if (admin_req(p, t, "GET", "/api/services", NULL, on_get_done) == NULL)
        target_fail(t, "cannot start a request");
}

int64_t push_tick(struct push *p, int64_t now_ms)
{
    int64_t next = now_ms + 1000;
    g_push = p;
    if (p->desired == NULL)
        return next;
    if (p->debounce_at != 0) {
        if (now_ms < p->debounce_at)
            return p->debounce_at;
        p->debounce_at = 0;
        p->ver++;
        /* Monotonic across restarts: wall-clock ms, or one more than last time. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
        p->generation = MAX(p->generation + 1, ms);
    }
    for (size_t i = 0; i < p->n; i++) {
        struct push_target *t = p->t[i];
        if (t->phase != PUSH_IDLE)
            continue;
        if (now_ms < t->retry_at) {
            next = MIN(next, t->retry_at);
            continue;
        }
        if (t->done_ver != p->ver) {
            if (p->mode == PUSH_PUT) {
                start_put(p, t);
            } else {
                start_get(p, t, PUSH_REG_GET);
            }
            t->check = false;
        } else if (t->check) {
            t->check = false;
            start_get(p, t, p->mode == PUSH_PUT ? PUSH_CHECK : PUSH_REG_GET);
        }
    }
    return next;
}

void push_metrics(const struct push *p, struct buf *out)
{
    double last = 0;
    buf_append_str(out, "# HELP llamalb_watcher_pushes_total Pushes to a balancer (PUT, or a "
                        "register round), by result.\n# TYPE llamalb_watcher_pushes_total counter\n");
    for (size_t i = 0; i < p->n; i++) {
        buf_printf(out, "llamalb_watcher_pushes_total{balancer=\"%s\",result=\"ok\"} %" PRIu64 "\n",
                   p->t[i]->url, p->t[i]->ok);
        buf_printf(out,
                   "llamalb_watcher_pushes_total{balancer=\"%s\",result=\"failed\"} %" PRIu64 "\n",
                   p->t[i]->url, p->t[i]->failed);
    }
    buf_append_str(out, "# HELP llamalb_watcher_admin_call_failures_total Register or "
                        "unregister calls a balancer refused (register mode).\n"
                        "# TYPE llamalb_watcher_admin_call_failures_total counter\n");
    for (size_t i = 0; i < p->n; i++)
        buf_printf(out, "llamalb_watcher_admin_call_failures_total{balancer=\"%s\"} %" PRIu64
                        "\n", p->t[i]->url, p->t[i]->call_failures);
    buf_append_str(out, "# HELP llamalb_watcher_refused_backends Backends a balancer refused "
                        "that are held back from it (PUT mode).\n"
                        "# TYPE llamalb_watcher_refused_backends gauge\n");
    for (size_t i = 0; i < p->n; i++)
        buf_printf(out, "llamalb_watcher_refused_backends{balancer=\"%s\"} %zu\n", p->t[i]->url,
                   json_object_size(p->t[i]->refused));
    buf_append_str(out, "# HELP llamalb_watcher_repairs_total Resync checks that found a balancer "
                        "out of step.\n# TYPE llamalb_watcher_repairs_total counter\n");
    for (size_t i = 0; i < p->n; i++)
        buf_printf(out, "llamalb_watcher_repairs_total{balancer=\"%s\"} %" PRIu64 "\n",
                   p->t[i]->url, p->t[i]->repairs);
    buf_append_str(out, "# HELP llamalb_watcher_balancer_last_sync_timestamp_seconds Last "
                        "confirmed sync, per balancer.\n"
                        "# TYPE llamalb_watcher_balancer_last_sync_timestamp_seconds gauge\n");
    for (size_t i = 0; i < p->n; i++) {
        buf_printf(out, "llamalb_watcher_balancer_last_sync_timestamp_seconds{balancer=\"%s\"} "
                        "%.3f\n", p->t[i]->url, p->t[i]->last_sync);
        last = MAX(last, p->t[i]->last_sync);
    }
    buf_printf(out, "# HELP llamalb_watcher_last_sync_timestamp_seconds Last successful push or "
                    "check of any balancer.\n"
                    "# TYPE llamalb_watcher_last_sync_timestamp_seconds gauge\n"
                    "llamalb_watcher_last_sync_timestamp_seconds %.3f\n", last);
    buf_printf(out, "# HELP llamalb_watcher_balancers Balancer replicas being fed.\n"
                    "# TYPE llamalb_watcher_balancers gauge\nllamalb_watcher_balancers %zu\n",
               p->n);
    buf_printf(out, "# HELP llamalb_watcher_backends_desired Backends in the desired set.\n"
                    "# TYPE llamalb_watcher_backends_desired gauge\n"
                    "llamalb_watcher_backends_desired %zu\n",
               p->desired ? json_array_size(p->desired) : 0);
}
