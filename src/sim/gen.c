/* SPDX-License-Identifier: MIT
 * Generations (chat, completions, embeddings, responses): from a parsed
 * request body to the last token. A generation asks slots.c for a slot,
 * waits in FIFO order if none is free, and holds it until its last byte is
 * queued. Non-streaming: one timer for ttft plus every token interval, the
 * whole body at the end, and (blocking mode) the server frozen meanwhile.
 * Streaming: the SSE head at once, then one event per token as the loop
 * clock reaches it; the server is never frozen by a stream. */

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "server.h"
#include "util.h"

/* <ms> times a uniform factor in [1 - jitter, 1 + jitter]. */
static double jittered(double ms)
{
    if (sim_srv.cfg->jitter_pct == 0 || ms <= 0)
        return ms;
    double j = (double)sim_srv.cfg->jitter_pct / 100.0;
    return ms * (1.0 + j * (2.0 * util_rand01(&sim_srv.rng) - 1.0));
}

static void gen_info(const struct sim_conn *c, struct sim_gen_info *gi)
{
    gi->id = c->g.id;
    gi->id_len = c->g.id_len;
    gi->model = sim_srv.cfg->model;
    gi->created = c->g.created;
    gi->prompt_tokens = c->g.prompt;
    gi->completion_tokens = c->g.n;
}

/* A non-streaming generation is due: its whole answer at once. */
static void finish_nonstream(struct sim_conn *c)
{
    if (sim_fault_finish(c))
        return;
    struct sim_gen_info gi;
    struct buf *b = &sim_srv.scratch;
    gen_info(c, &gi);
    b->len = 0;
    b->off = 0;
    switch (c->g.api) {
    case SIM_API_CHAT: sim_body_chat(b, &gi); break;
    case SIM_API_COMPLETIONS: sim_body_completion(b, &gi); break;
    case SIM_API_EMBEDDINGS:
        sim_body_embeddings(b, &gi, c->g.n_inputs, sim_srv.cfg->embedding_dim);
        break;
    case SIM_API_RESPONSES: sim_body_response(b, &gi); break;
    }
    sim_reply_fixed(c, 200, SIM_H_CORS | (c->g.user_hdr ? SIM_H_USER : 0), "application/json",
                    buf_data(b), b->len);
    sim_slot_release(&sim_srv.sched, &c->g.slot);
    sim_conn_request_done(c);
}

/* A stream: sends every event that is due, then arms the timer for the next
 * or ends the stream ([DONE], the terminating chunk, the slot released). */
static void stream_tick(struct sim_conn *c)
{
    struct sim_gen_info gi;
    struct buf *b = &sim_srv.scratch;
    double now = (double)ev_now(sim_srv.loop);
    gen_info(c, &gi);
    while (c->g.sent < c->g.n) {
        if (c->g.next_at > now + 0.5) {
            ev_timer_at(sim_srv.loop, &c->g.timer, (int64_t)ceil(c->g.next_at),
                        sim_gen_timer_cb, c);
            sim_conn_flush(c);
            return;
        }
        if (sim_fault_stream(c))
            return;
        b->off = b->len = 0;
        sim_sse_token(b, &gi, c->g.sent);
        sim_reply_event(c, buf_data(b), b->len);
        c->g.sent++;
        c->g.next_at += jittered(c->g.interval);
    }
    if (c->g.usage) {
        if (sim_fault_stream(c))
            return;
        b->off = b->len = 0;
        sim_sse_usage(b, &gi);
        sim_reply_event(c, buf_data(b), b->len);
    }
    if (sim_fault_stream(c))
        return;
    sim_reply_event(c, "data: [DONE]\n\n", 14);
    sim_slot_release(&sim_srv.sched, &c->g.slot);
    if (c->chunked_out) {
        buf_append(&c->out, "0\r\n\r\n", 5);
        sim_conn_request_done(c);
    } else {
        sim_conn_request_done(c);
        c->close_after_write = true; /* the end of a close-delimited body */
    }
    sim_conn_kick(c);
}

void sim_gen_timer_cb(struct ev_loop *loop, struct ev_timer *t)
{
    struct sim_conn *c = t->data;
    UNUSED(loop);
    if (sim_srv.sched.frozen && sim_srv.sched.frozen_by != &c->g.slot) {
        c->pending_tick = true;
        sim_conn_defer(c);
        return;
    }
    if (c->g.stream) {
        stream_tick(c);
    } else {
        finish_nonstream(c);
        sim_conn_kick(c);
    }
}

void sim_gen_start(struct sim_conn *c)
{
    double now = (double)ev_now(sim_srv.loop);
    double ttft = jittered((double)sim_srv.cfg->ttft_ms);
    c->g.interval = sim_srv.cfg->tokens_per_sec > 0 ? 1000.0 / sim_srv.cfg->tokens_per_sec : 0;
    if (c->g.stream) {
        c->g.next_at = now + ttft;
        stream_tick(c);
        return;
    }
    double total = ttft;
    for (unsigned i = 1; i < c->g.n && c->g.interval > 0; i++)
        total += jittered(c->g.interval);
    if (total < 0.5) {
        finish_nonstream(c);
        return;
    }
    sim_slot_freeze(&sim_srv.sched, &c->g.slot);
    ev_timer_at(sim_srv.loop, &c->g.timer, (int64_t)ceil(now + total), sim_gen_timer_cb, c);
}

/* Fills <g> for a generation of <api> asked for by <r>. */
static void gen_setup(struct sim_gen *g, enum sim_api api, const struct sim_req *r)
{
    memset(g, 0, offsetof(struct sim_gen, timer));
    g->api = api;
    g->stream = api == SIM_API_CHAT && r->stream;
    g->usage = r->include_usage >= 0 ? r->include_usage == 1 : sim_srv.cfg->include_usage;
    g->prompt = r->prompt_tokens;
    g->n_inputs = r->n_inputs;
    if (api == SIM_API_EMBEDDINGS)
        g->n = 0;
    else if (r->max_tokens >= 0)
        g->n = (unsigned)MIN(r->max_tokens, (int64_t)sim_srv.cfg->max_tokens_cap);
    else
        g->n = sim_srv.cfg->completion_tokens;
    g->created = util_wall_s();
    g->user_hdr = api == SIM_API_CHAT;
    if (api == SIM_API_CHAT && r->user[0] != '\0') {
        g->id_len = strlen(r->user);
        memcpy(g->id, r->user, g->id_len + 1);
    } else if (api != SIM_API_EMBEDDINGS) {
        char u[37];
        sim_uuid(&sim_srv.rng, u);
        g->id_len = (size_t)snprintf(g->id, sizeof(g->id), "%s%s",
                                     api == SIM_API_CHAT          ? "chatcmpl-"
                                     : api == SIM_API_COMPLETIONS ? "cmpl-"
                                                                  : "resp_",
                                     u);
    }
}

void sim_gen_begin(struct sim_conn *c, enum sim_api api)
{
    const char *body;
    size_t len;
    struct sim_req r;
    struct buf *b = &sim_srv.scratch;
    sim_conn_body(c, &body, &len);
    b->off = b->len = 0;
    if (sim_parse_request(api, body, len, &r, b) != 0) {
        sim_reply_text(c, 400, buf_data(b), b->len);
        sim_conn_request_done(c);
        return;
    }
    if (api == SIM_API_EMBEDDINGS && !sim_srv.cfg->embeddings) {
        static const char t[] = "500 Internal Server Error: Computing embeddings is only "
                                "supported in the embeddings and rag modes.";
        sim_reply_text(c, 500, t, sizeof(t) - 1);
        sim_conn_request_done(c);
        return;
    }
    gen_setup(&c->g, api, &r);
    c->st = SIM_ST_BUSY;
    if (c->g.stream) {
        /* The real server answers 200 and the SSE head at once; the body
         * waits for the slot (docs/sim.md, Scheduling). */
        c->streaming = true;
        c->chunked_out = c->minor == 1;
        if (!c->chunked_out)
            c->keep_alive = false;
        sim_reply_head(c, 200, SIM_H_CORS | SIM_H_SSE | SIM_H_USER, "text/event-stream", 0);
        sim_conn_flush(c);
        if (c->closed)
            return;
    }
    if (sim_slot_acquire(&sim_srv.sched, &c->g.slot))
        sim_gen_start(c);
}
