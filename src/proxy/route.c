/* SPDX-License-Identifier: MIT
 * Routing (route.h): what the request asks for, read from its head and
 * body the way the backend will read them, then a backend from the
 * registry's policy or a place in the gateway queue. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conn.h"
#include "follow.h"
#include "json.h"
#include "log.h"
#include "route.h"
#include "upstream.h"
#include "util.h"


static void wake_loop(void *loop)
{
    ev_wake(loop);
}

void route_fill_req(struct conn *c, struct reg_req *q)
{
    q->model = c->x->model[0] ? c->x->model : NULL;
    q->pin = c->x->pin[0] ? c->x->pin : NULL;
    q->affinity = c->x->affinity;
    q->tried = c->x->tried;
    q->ntried = c->x->ntried;
}

/* ================================================================ classify */

/* What the body says about routing: the top-level "model", a file id for
 * /v1/chunks, and the "user" field when it is the affinity key, found in one
 * pass over the body (however large the prompt). Routing must read the body
 * as the backend will, or a request could be routed (and capped, and
 * allowed) as one model and served as another:
 *   - a member given twice is refused: {"model":"a","model":"b"} is "a" to
 *     a first-wins reader and "b" to Python, Go and most C++ parsers;
 *   - escapes are decoded ("llama\u002d3" is "llama-3");
 *   - a body that starts like a JSON object must be one: Go's decoder stops
 *     after the first value of {"model":"a"} {"model":"b"}.
 * Bodies that are not JSON (multipart uploads) carry no routing fields.
 * Returns false when it answered 400. */
static bool classify_body(struct conn *c)
{
    const struct cfg *k = conn_cfg(c);
    struct exchange *x = c->x;
    if (x->body.len == 0 || strcmp(x->method, "POST") != 0)
        return true;
    const char *js = buf_data(&x->body);
    size_t i = 0;
    while (i < x->body.len && (js[i] == ' ' || js[i] == '\t' || js[i] == '\r' || js[i] == '\n'))
        i++;
    if (i == x->body.len || js[i] != '{')
        return true;
    struct json_field f[] = {{.key = "model"}, {.key = "user"}, {.key = "id"}};
    const char *bad = NULL;
    if (json_top_fields(js, x->body.len, f, ARRAY_SIZE(f)) != 0)
        bad = "the request body is not a valid JSON object";
    else if (f[0].count > 1 || f[1].count > 1 || f[2].count > 1)
        bad = f[0].count > 1 ? "duplicate \"model\" member in the request body"
              : f[1].count > 1 ? "duplicate \"user\" member in the request body"
                               : "duplicate \"id\" member in the request body";
    else if (f[0].type == JSON_STRING && f[0].val.len > 0 &&
             json_decode_slice(js, f[0].val, x->model, sizeof(x->model)) <= 0)
        bad = "\"model\" must be a string of at most 127 bytes";
    if (bad != NULL) {
        x->model[0] = '\0';
        conn_error(c, 400, bad, "invalid_request_error", "invalid_request_body");
        return false;
    }
    if (x->model[0] != '\0') {
        const char *to = cfg_alias(k, x->model);
        if (to != x->model)
            snprintf(x->model, sizeof(x->model), "%s", to);
    }
    if (strcmp(k->affinity, "user") == 0 && f[1].type == JSON_STRING && f[1].val.len > 0)
        x->affinity = util_hash64(f[1].val.p, f[1].val.len);
    if (strncmp(x->path, "/v1/chunks", 10) == 0 && f[2].type == JSON_STRING) {
        char id[64];
        if (json_decode_slice(js, f[2].val, id, sizeof(id)) <= 0 ||
            !reg_file_get(&conn_srv(c)->reg, id, x->pin, sizeof(x->pin)))
            x->pin[0] = '\0';
    }
    return true;
}

/* What the head says about routing: local /v1/models, uploads, file ids in
 * the path, the affinity header. Runs while the header slices are valid. */
void route_classify_head(struct conn *c, const struct http1_msg *m)
{
    const struct cfg *k = conn_cfg(c);
    const char *p = c->x->path;
    size_t plen = strcspn(p, "?");
    if (k->local_models && plen == 10 && strncmp(p, "/v1/models", 10) == 0 &&
        (strcmp(c->x->method, "GET") == 0 || strcmp(c->x->method, "HEAD") == 0))
        c->x->local_models = true;
    if (plen == 9 && strncmp(p, "/v1/files", 9) == 0 && strcmp(c->x->method, "POST") == 0)
        c->x->is_upload = true;
    const char *id = NULL;
    if (strncmp(p, "/v1/files/download/", 19) == 0)
        id = p + 19;
    else if (strncmp(p, "/v1/files/", 10) == 0)
        id = p + 10;
    if (id != NULL) {
        char fid[64];
        size_t n = strcspn(id, "/?");
        if (n > 0 && n < sizeof(fid)) {
            memcpy(fid, id, n);
            fid[n] = '\0';
            if (!reg_file_get(&conn_srv(c)->reg, fid, c->x->pin, sizeof(c->x->pin)))
                c->x->pin[0] = '\0';
        }
    }
    if (k->affinity[0] != '\0' && strcmp(k->affinity, "user") != 0) {
        const struct http1_header *h = http1_find(m, k->affinity);
        if (h != NULL && h->value.len > 0)
            c->x->affinity = util_hash64(h->value.p, h->value.len);
    }
}

/* The whole request is in: read its body's routing fields, answer
 * /v1/models from the registry, or dispatch. */
bool route_authorize(struct conn *c, const struct http1_msg *m)
{
    struct keyring *k = c->w->rt->keys;
    if (k == NULL)
        return true;
    const struct http1_header *h = http1_find(m, "authorization");
    if (h == NULL || h->value.len < 8 || strncasecmp(h->value.p, "Bearer ", 7) != 0)
        return false;
    struct slice v = slice_trim(slice_make(h->value.p + 7, h->value.len - 7));
    const struct api_key *key = keyring_find(k, v.p, v.len);
    if (key == NULL)
        return false;
    keyring_ref(k);
    c->x->keyring = k;
    c->x->key = key;
    return true;
}

/* The key's limits: 429 in OpenAI's shape, with Retry-After and the
 * x-ratelimit-* headers its SDKs read. Returns false when it answered.
 * Called where the request is served here (a follower forwarding to the
 * active replica leaves the key to it: limits count once), once. */
static bool admit_key(struct conn *c)
{
    struct exchange *x = c->x;
    struct server *s = conn_srv(c);
    if (x->key == NULL || x->key_admitted)
        return true;
    if (!key_allows_model(x->key, x->model)) {
        char msg[220];
        key_refused(&s->key_use, x->key->use);
        snprintf(msg, sizeof(msg), "The model '%.128s' does not exist or you do not have access to it.",
                 x->model);
        c->state = CS_LOCAL;
        conn_error(c, 404, msg, "invalid_request_error", "model_not_found");
        conn_finish_local(c);
        return false;
    }
    unsigned retry = 1;
    enum key_verdict v = key_admit(&s->key_use, x->key, conn_now(c), &retry);
    if (v == KEY_OK) {
        x->key_admitted = true;
        return true;
    }
    static const char *const why[] = {
        [KEY_RPM] = "Rate limit reached for requests per minute on this API key.",
        [KEY_TPM] = "Rate limit reached for tokens per minute on this API key.",
        [KEY_CONCURRENT] = "Too many requests in progress on this API key.",
    };
    struct buf h = {0}, b = {0};
    buf_printf(&h, "Retry-After: %u\r\n", retry);
    key_ratelimit_headers(&s->key_use, x->key, conn_now(c), &h);
    buf_append(&h, "", 1); /* conn_respond takes the headers as a C string */
    buf_append_str(&b, "{\"error\":{\"message\":");
    json_append_str(&b, why[v], strlen(why[v]));
    buf_append_str(&b, ",\"type\":\"requests\",\"param\":null,\"code\":\"rate_limit_exceeded\"}}");
    c->state = CS_LOCAL;
    atomic_fetch_add(&s->stats.local_errors[429], 1);
    conn_respond(c, 429, "application/json", buf_data(&b), b.len, buf_data(&h));
    buf_free(&h);
    buf_free(&b);
    conn_local_done(c);
    return false;
}

void route_request(struct conn *c)
{
    if (!classify_body(c))
        return;
    if (c->x->local_models) {
        if (!admit_key(c))
            return;
        struct buf b = {0};
        c->state = CS_LOCAL;
        reg_models_json(&conn_srv(c)->reg, &b, conn_now(c));
        conn_respond(c, 200, "application/json", buf_data(&b), b.len, NULL);
        buf_free(&b);
        conn_local_done(c);
        return;
    }
    route_dispatch(c);
}

/* ================================================================ dispatch */

/* Picks a backend and starts the request on it, or queues it when every
 * eligible backend is at its cap. */
void route_dispatch(struct conn *c)
{
    struct server *s = conn_srv(c);
    struct reg_req q;
    const char *why = NULL;
    struct backend *b = NULL;
    route_fill_req(c, &q);
    c->state = CS_UPSTREAM;
    if (!c->x->model_counted) {
        reg_model_inflight(&s->reg, c->x->model, +1);
        c->x->model_counted = true;
    }
    c->x->waiter.ready_list = &c->w->ready;
    c->x->waiter.wake = wake_loop;
    c->x->waiter.wake_arg = c->w->loop;
    if (follow_dispatch(c)) /* a follower replica: to the active (follow.h) */
        return;
    /* Served here: the key's limits count it, and no backend sees it. */
    if (!admit_key(c))
        return;
    if (c->x->auth_len > 0) {
        struct buf *h = &c->x->uphead;
        char *p = buf_data(h) + c->x->auth_off;
        memmove(p, p + c->x->auth_len, h->len - c->x->auth_off - c->x->auth_len);
        h->len -= c->x->auth_len;
        c->x->auth_len = 0;
    }
    enum reg_pick_rc rc = reg_pick(&s->reg, &q, &c->w->rng, conn_now(c), &c->x->waiter, &b, &why);
    switch (rc) {
    case REG_PICKED:
        log_debug("%s %s -> %s (%s%s%s)", c->x->method, c->x->path, b->spec.name, why,
                  c->x->model[0] ? ", model " : "", c->x->model);
        c->x->be = b;
        up_start(c);
        return;
    case REG_QUEUED:
        c->state = CS_QUEUED;
        conn_arm(c, conn_cfg(c)->queue_timeout);
        return;
    case REG_QUEUE_FULL:
        c->state = CS_LOCAL;
        conn_error(c, 503, "every backend is busy and the queue is full", "server_error",
                   "queue_full");
        break;
    case REG_NO_MODEL: {
        c->state = CS_LOCAL;
        char msg[200];
        snprintf(msg, sizeof(msg), "The model '%.128s' does not exist", c->x->model);
        conn_error(c, 404, msg, "invalid_request_error", "model_not_found");
        break;
    }
    case REG_NONE:
        c->state = CS_LOCAL;
        if (c->x->ntried == 0) {
            atomic_fetch_add(&s->stats.no_backend, 1);
            conn_error(c, 503, "no backend available", "server_error", "no_backend");
        } else {
            conn_error(c, 502, "every backend tried failed", "server_error", "upstream_error");
        }
        break;
    }
    conn_finish_local(c);
}

void route_dequeued(struct conn *c)
{
    struct backend *b = c->x->waiter.assigned;
    c->x->waiter.assigned = NULL;
    c->x->waiter.state = REG_W_IDLE;
    if (b == NULL) {
        /* Refused while it waited: the set changed so that a new pick finds
         * no backend for it (its model or every backend left). It picks
         * again now, and gets the answer a new request gets (404
         * model_not_found, 503 no_backend), not a queue timeout later. */
        if (!c->closed) {
            ev_timer_stop(c->w->loop, &c->timer);
            route_dispatch(c);
        }
        return;
    }
    if (c->closed) { /* cannot happen: conn_close cancels; keep the slot safe anyway */
        struct reg_outcome o = {0};
        reg_release(&conn_srv(c)->reg, b, &o, conn_now(c));
        backend_unref(b);
        return;
    }
    ev_timer_stop(c->w->loop, &c->timer);
    log_debug("%s %s -> %s (dequeued)", c->x->method, c->x->path, b->spec.name);
    c->x->be = b;
    up_start(c);
}

void route_queue_timeout(struct conn *c)
{
    struct backend *b = reg_cancel_wait(&conn_srv(c)->reg, &c->x->waiter);
    if (b != NULL) { /* handed a slot in the same instant: use it */
        c->x->waiter.assigned = b;
        route_dequeued(c);
        return;
    }
    reg_note_queue_timeout(&conn_srv(c)->reg);
    c->state = CS_LOCAL;
    conn_error(c, 503, "every backend is busy: timed out waiting in the queue", "server_error",
               "queue_timeout");
    conn_finish_local(c);
}

/* Leaves the gateway queue; a slot handed over meanwhile goes back. */
void route_leave_queue(struct conn *c)
{
    struct backend *b = reg_cancel_wait(&conn_srv(c)->reg, &c->x->waiter);
    if (b != NULL) {
        struct reg_outcome o = {0};
        reg_release(&conn_srv(c)->reg, b, &o, conn_now(c));
        backend_unref(b);
    }
}

static void uncount_model(struct conn *c)
{
    if (c->x != NULL && c->x->model_counted) {
        reg_model_inflight(&conn_srv(c)->reg, c->x->model, -1);
        c->x->model_counted = false;
    }
}

static void clear_tried(struct conn *c)
{
    if (c->x == NULL)
        return;
    for (unsigned i = 0; i < c->x->ntried; i++)
        backend_unref(c->x->tried[i]);
    c->x->ntried = 0;
}

void route_forget(struct conn *c)
{
    uncount_model(c);
    clear_tried(c);
    struct exchange *x = c->x;
    if (x != NULL && x->key_admitted) {
        x->key_admitted = false;
        key_done(&conn_srv(c)->key_use, x->key->use, conn_now(c), x->prompt_tokens,
                 x->completion_tokens);
    }
}
