/* SPDX-License-Identifier: MIT
 * The simulator's routes: which route a request is, the gates every request
 * passes (counting, /sim/stats before any fault, the faults, the API key),
 * and the answers of the routes that are not generations (echo, models,
 * info, files and chunks, stats, the 404s). Generations go to gen.c. The
 * route table is in docs/sim.md, Routes. */

#include <stdio.h>
#include <string.h>

#include "json.h"
#include "server.h"
#include "util.h"

const char *const sim_route_names[SIM_R_COUNT] = {
    "echo", "chat", "completions", "embeddings", "models", "info", "responses",
    "files", "chunks", "stats", "other",
};

enum sim_route sim_route_of(struct slice path)
{
    static const struct {
        const char *path;
        bool subtree; /* also matches path + "/..." */
        enum sim_route rt;
    } table[] = {
        {"/echo", true, SIM_R_ECHO},
        {"/v1/chat/completions", false, SIM_R_CHAT},
        {"/v1/completions", false, SIM_R_COMPLETIONS},
        {"/v1/embeddings", false, SIM_R_EMBEDDINGS},
        {"/v1/models", false, SIM_R_MODELS},
        {"/v1/info", false, SIM_R_INFO},
        {"/v1/responses", false, SIM_R_RESPONSES},
        {"/v1/files", true, SIM_R_FILES},
        {"/v1/chunks", false, SIM_R_CHUNKS},
        {"/sim/stats", false, SIM_R_STATS},
    };
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        size_t n = strlen(table[i].path);
        if (path.len < n || memcmp(path.p, table[i].path, n) != 0)
            continue;
        if (path.len == n || (table[i].subtree && path.p[n] == '/'))
            return table[i].rt;
    }
    return SIM_R_OTHER;
}

static void serve_stats(struct sim_conn *c)
{
    const struct sim_config *cfg = sim_srv.cfg;
    struct buf *b = &sim_srv.scratch;
    b->off = b->len = 0;
    buf_printf(b, "{\"id\":");
    json_append_str(b, cfg->id, strlen(cfg->id));
    buf_printf(b, ",\"model\":");
    json_append_str(b, cfg->model, strlen(cfg->model));
    buf_printf(b,
               ",\"requests\":%llu,\"in_flight\":%llu,\"active\":%u,\"queued\":%u,"
               "\"slots\":%u,\"connections\":%llu,\"frozen\":%s,\"routes\":{",
               (unsigned long long)sim_srv.requests, (unsigned long long)sim_srv.in_flight,
               sim_srv.sched.active, sim_srv.sched.queued, cfg->slots,
               (unsigned long long)sim_srv.conns, sim_srv.sched.frozen ? "true" : "false");
    for (int i = 0; i < SIM_R_COUNT; i++)
        buf_printf(b, "%s\"%s\":%llu", i ? "," : "", sim_route_names[i],
                   (unsigned long long)sim_srv.route_count[i]);
    buf_printf(b, "}}");
    sim_reply_fixed(c, 200, 0, "application/json", buf_data(b), b->len);
}

static void serve_files(struct sim_conn *c, struct slice method, struct slice path)
{
    const char *body;
    size_t len;
    struct sim_files_reply rep;
    struct buf *b = &sim_srv.scratch;
    sim_conn_body(c, &body, &len);
    b->off = b->len = 0;
    memset(&rep, 0, sizeof(rep));
    sim_files_handle(sim_srv.files, method, path, slice_cstr(c->ctype), body, len, &sim_srv.rng,
                     b, &rep);
    if (rep.disposition[0] != '\0') /* a download: the file, with its name attached */
        sim_reply_download(c, rep.status, rep.ctype, rep.disposition, buf_data(b), b->len);
    else
        sim_reply_fixed(c, rep.status, SIM_H_CORS, rep.ctype, buf_data(b), b->len);
}

/* The answer of a route that needs no generation. */
static void serve_simple(struct sim_conn *c, enum sim_route rt, struct slice method,
                         struct slice path)
{
    struct buf *b = &sim_srv.scratch;
    switch (rt) {
    case SIM_R_ECHO: {
        static const char t[] = "echo test";
        sim_reply_fixed(c, 200, 0, NULL, t, sizeof(t) - 1);
        break;
    }
    case SIM_R_CHAT: /* OPTIONS, the CORS preflight */
        sim_reply_fixed(c, 200, SIM_H_CORS, "application/json", "", 0);
        break;
    case SIM_R_MODELS:
        b->off = b->len = 0;
        sim_body_models(b, sim_srv.cfg->model, sim_srv.start_wall);
        sim_reply_fixed(c, 200, SIM_H_CORS, "application/json", buf_data(b), b->len);
        break;
    case SIM_R_INFO:
        b->off = b->len = 0;
        sim_body_info(b, sim_srv.cfg->model, sim_srv.port);
        sim_reply_fixed(c, 200, SIM_H_CORS, "application/json", buf_data(b), b->len);
        break;
    case SIM_R_FILES:
    case SIM_R_CHUNKS:
        serve_files(c, method, path);
        break;
    case SIM_R_STATS:
        serve_stats(c);
        break;
    default:
        if (slice_starts_with(path, "/v1/") || slice_eq_cstr(path, "/v1")) {
            sim_reply_textf(c, 404, "404 The requested service endpoint is not found: %.*s",
                            (int)MIN(path.len, 400), path.p);
        } else {
            /* The static web UI has no such file. */
            sim_reply_fixed(c, 404, 0, "text/html", "", 0);
        }
        break;
    }
    sim_conn_request_done(c);
}

/* --request-log: one line per request read, "<X-Request-Id or -> <route>",
 * written at once (line-buffered), so that a test can prove which requests
 * reached this instance even after it is killed. */
static void request_log(struct sim_conn *c, enum sim_route rt)
{
    static FILE *f;
    if (sim_srv.cfg->request_log == NULL)
        return;
    if (f == NULL) {
        f = fopen(sim_srv.cfg->request_log, "a");
        if (f == NULL)
            return;
        setvbuf(f, NULL, _IOLBF, 0);
    }
    fprintf(f, "%s %s\n", c->rid[0] ? c->rid : "-", sim_route_names[rt]);
}

void sim_route_serve(struct sim_conn *c)
{
    const char *base = buf_data(&c->in);
    struct slice method = slice_make(base + c->method_off, c->method_len);
    struct slice path = slice_make(base + c->path_off, c->path_len);
    const char *q = memchr(path.p, '?', path.len);
    if (q != NULL)
        path.len = (size_t)(q - path.p);
    enum sim_route rt = sim_route_of(path);

    sim_srv.requests++;
    sim_srv.route_count[rt]++;
    request_log(c, rt);
    c->in_flight = true;
    sim_srv.in_flight++;
    c->st = SIM_ST_BUSY;

    /* /sim/stats is never subject to faults or the API key. */
    if (rt == SIM_R_STATS) {
        serve_simple(c, rt, method, path);
        return;
    }
    if (sim_fault_answer(c))
        return;
    if (c->auth_bad) {
        static const char t[] = "401 Unauthorized: Invalid API key.";
        sim_reply_text(c, 401, t, sizeof(t) - 1);
        sim_conn_request_done(c);
        return;
    }
    switch (rt) {
    case SIM_R_CHAT:
        if (slice_eq_cstr(method, "OPTIONS"))
            break;
        sim_gen_begin(c, SIM_API_CHAT); /* answers, or leaves the connection BUSY */
        return;
    case SIM_R_COMPLETIONS:
        sim_gen_begin(c, SIM_API_COMPLETIONS);
        return;
    case SIM_R_EMBEDDINGS:
        sim_gen_begin(c, SIM_API_EMBEDDINGS);
        return;
    case SIM_R_RESPONSES:
        sim_gen_begin(c, SIM_API_RESPONSES);
        return;
    default:
        break;
    }
    serve_simple(c, rt, method, path);
}
