/* SPDX-License-Identifier: MIT
 * Choosing the active balancer replica and telling every replica its role
 * (role.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "k8s_config.h"
#include "model.h"
#include "role.h"
#include "util.h"
#include "xfer.h"

#define ROLE_TIMEOUT_MS 5000
#define ROLE_RETRY_MS 1000

struct role_target {
    struct role *r;
    char ip[64];
    bool ready;
    uint64_t done_ver;      /* role version this replica is known to hold */
    uint64_t cur_ver;
    struct xfer *x;
    int64_t retry_at;
};

void role_init(struct role *r, int public_port, int admin_port, const char *token)
{
    memset(r, 0, sizeof(*r));
    r->public_port = public_port;
    r->admin_port = admin_port;
    r->token = token ? strdup(token) : NULL;
    r->ver = 1;
}

static void target_free(struct role_target *t)
{
    if (t->x != NULL)
        xfer_cancel(t->x);
    free(t);
}

void role_deinit(struct role *r)
{
    for (size_t i = 0; i < r->n; i++)
        target_free(r->t[i]);
    free(r->t);
    free(r->token);
    memset(r, 0, sizeof(*r));
}

static int cond(json_t *conds, const char *k)
{
    json_t *v = json_object_get(conds, k);
    return json_is_boolean(v) ? json_is_true(v) : -1;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void role_update(struct role *r, json_t *slices, const char *ns, const char *name)
{
    if (r->public_port == 0)
        return;
    /* ip -> ready, from the trusted slices, terminating ones left out */
    json_t *ips = json_object(), *sl;
    const char *k;
    json_object_foreach(slices, k, sl) {
        if (!model_lb_slice_trusted(sl, ns, name))
            continue;
        json_t *ep;
        size_t i;
        json_array_foreach(json_object_get(sl, "endpoints"), i, ep) {
            const char *ip = json_string_value(json_array_get(json_object_get(ep, "addresses"), 0));
            json_t *c = json_object_get(ep, "conditions");
            if (ip == NULL || strlen(ip) >= 64 || cond(c, "terminating") == 1)
                continue;
            bool ready = cond(c, "ready") != 0; /* absent means ready (the API's rule) */
            json_object_set_new(ips, ip, json_boolean(ready));
        }
    }
    size_t n = json_object_size(ips), j = 0;
    const char **v = calloc(n ? n : 1, sizeof(*v));
    json_t *val;
    json_object_foreach(ips, k, val)
        v[j++] = k;
    qsort(v, n, sizeof(*v), cmp_str);
    /* The active: the current one while ready, else the lowest ready address. */
    char active[64] = "";
    json_t *cur = r->active[0] ? json_object_get(ips, r->active) : NULL;
    if (cur != NULL && json_is_true(cur))
        snprintf(active, sizeof(active), "%s", r->active);
    for (size_t i = 0; i < n && active[0] == '\0'; i++)
        if (json_is_true(json_object_get(ips, v[i])))
            snprintf(active, sizeof(active), "%s", v[i]);
    bool changed = strcmp(active, r->active) != 0;
    if (changed) {
        log_info("replicas: active %s (was %s)", active[0] ? active : "none: every replica dispatches",
                 r->active[0] ? r->active : "none");
        snprintf(r->active, sizeof(r->active), "%s", active);
        r->ver++;
        r->changes++;
    }
    /* The targets: kept by address, new ones get their role at once. */
    struct role_target **nt = calloc(n ? n : 1, sizeof(*nt));
    for (size_t i = 0; i < n; i++) {
        struct role_target *t = NULL;
        for (size_t q = 0; q < r->n; q++)
            if (r->t[q] != NULL && strcmp(r->t[q]->ip, v[i]) == 0) {
                t = r->t[q];
                r->t[q] = NULL;
                break;
            }
        if (t == NULL) {
            t = calloc(1, sizeof(*t));
            t->r = r;
            snprintf(t->ip, sizeof(t->ip), "%s", v[i]);
        }
        t->ready = json_is_true(json_object_get(ips, v[i]));
        nt[i] = t;
    }
    for (size_t q = 0; q < r->n; q++)
        if (r->t[q] != NULL)
            target_free(r->t[q]);
    free(r->t);
    r->t = nt;
    r->n = n;
    free(v);
    json_decref(ips);
}

void role_resync(struct role *r)
{
    for (size_t i = 0; i < r->n; i++)
        r->t[i]->done_ver = 0;
}

static void on_done(struct xfer *x, CURLcode rc, long status)
{
    struct role_target *t = x->data;
    struct role *r = t->r;
    t->x = NULL;
    if (rc == CURLE_OK && status == 200) {
        t->done_ver = t->cur_ver;
        r->pushes_ok++;
        return;
    }
    r->pushes_failed++;
    uint64_t at;
    if (status == 409 && model_conflict_generation(buf_data(&x->body), x->body.len, &at) &&
        at >= r->generation) {
        r->generation = at; /* another watcher went further: go past it */
        t->retry_at = 0;
        return;
    }
    t->retry_at = k8s_now_ms() + ROLE_RETRY_MS;
    log_warn("replica %s: PUT /api/role: %s %ld; retrying", t->ip,
             rc == CURLE_OK ? "HTTP" : xfer_strerror(rc), status);
}

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void send_role(struct role *r, struct role_target *t)
{
    char url[160], body[200], hdr[4200];
    bool v6 = strchr(t->ip, ':') != NULL;
    snprintf(url, sizeof(url), v6 ? "http://[%s]:%d/api/role" : "http://%s:%d/api/role", t->ip,
             r->admin_port);
    if (r->active[0] == '\0' || strcmp(r->active, t->ip) == 0)
        snprintf(body, sizeof(body), "{\"generation\":%llu,\"follow\":null}",
                 (unsigned long long)r->generation);
    else
        snprintf(body, sizeof(body),
                 strchr(r->active, ':') ? "{\"generation\":%llu,\"follow\":\"[%s]:%d\"}"
                                        : "{\"generation\":%llu,\"follow\":\"%s:%d\"}",
                 (unsigned long long)r->generation, r->active, r->public_port);
    struct xfer *x = xfer_new("PUT", url, body, 65536, on_done, t);
    if (x == NULL)
        return;
    if (r->token != NULL && strlen(r->token) < 4096) {
        snprintf(hdr, sizeof(hdr), "Authorization: Bearer %s", r->token);
        xfer_header(x, hdr);
    }
    xfer_timeout(x, ROLE_TIMEOUT_MS);
    if (xfer_start(x) < 0)
        return;
    t->x = x;
    t->cur_ver = r->ver;
}

int64_t role_tick(struct role *r, int64_t now_ms)
{
    int64_t next = now_ms + 1000;
    bool due = false;
    for (size_t i = 0; i < r->n; i++)
        if (r->t[i]->done_ver != r->ver && r->t[i]->x == NULL && now_ms >= r->t[i]->retry_at)
            due = true;
    if (!due)
        return next;
    /* One generation per round, growing across restarts (as PUT /api/services). */
    uint64_t g = wall_ms();
    r->generation = g > r->generation ? g : r->generation + 1;
    for (size_t i = 0; i < r->n; i++) {
        struct role_target *t = r->t[i];
        if (t->done_ver != r->ver && t->x == NULL && now_ms >= t->retry_at)
            send_role(r, t);
        else if (t->done_ver != r->ver && t->x == NULL)
            next = MIN(next, t->retry_at);
    }
    return next;
}

void role_metrics(const struct role *r, struct buf *out)
{
    if (r->public_port == 0)
        return;
    buf_printf(out, "# HELP llamalb_watcher_replica_active the balancer replica chosen as active\n"
                    "# TYPE llamalb_watcher_replica_active gauge\n");
    if (r->active[0])
        buf_printf(out, "llamalb_watcher_replica_active{address=\"%s\"} 1\n", r->active);
    buf_printf(out,
               "# HELP llamalb_watcher_role_pushes_total PUT /api/role calls\n"
               "# TYPE llamalb_watcher_role_pushes_total counter\n"
               "llamalb_watcher_role_pushes_total{result=\"ok\"} %llu\n"
               "llamalb_watcher_role_pushes_total{result=\"failed\"} %llu\n"
               "# HELP llamalb_watcher_active_changes_total times another replica became active\n"
               "# TYPE llamalb_watcher_active_changes_total counter\n"
               "llamalb_watcher_active_changes_total %llu\n",
               (unsigned long long)r->pushes_ok, (unsigned long long)r->pushes_failed,
               (unsigned long long)r->changes);
}
