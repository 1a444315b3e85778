/* SPDX-License-Identifier: MIT
 * The simulator's API surface: reading the request fields llama-api-server
 * looks at, and writing its JSON bodies byte for byte in its field order
 * (serde serializes struct fields in declaration order, so the order of the
 * fields in LlamaEdge's `endpoints` structs is the order on the wire; see
 * docs/sim.md, "What the simulator relies on"). A body marked [copied] is the
 * shape a running 0.28.1 server sent; [reconstructed] ones are rebuilt from
 * the struct definitions. Everything appends to a struct buf; nothing here allocates on its own
 * except when a request body has more JSON tokens than the static array. */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "json.h"
#include "sim.h"
#include "util.h"

/* ---------------------------------------------------------------- output
 *
 * Small appenders. Bodies are built on the request path, so numbers are
 * formatted by hand instead of through printf. */

static void put(struct buf *b, const char *s, size_t n)
{
    buf_append(b, s, n);
}

#define PUT_LIT(b, s) put((b), (s), sizeof(s) - 1)

static void put_u64(struct buf *b, uint64_t v)
{
    char tmp[24];
    size_t i = sizeof(tmp);
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    put(b, tmp + i, sizeof(tmp) - i);
}

static void put_i64(struct buf *b, int64_t v)
{
    if (v < 0) {
        PUT_LIT(b, "-");
        put_u64(b, (uint64_t)(-(v + 1)) + 1);
    } else {
        put_u64(b, (uint64_t)v);
    }
}

static void put_str(struct buf *b, const char *s)
{
    json_append_str(b, s, strlen(s));
}

unsigned sim_prompt_tokens(size_t n)
{
    size_t t = (n + 3) / 4;
    return t == 0 ? 1 : (t > 0x7fffffff ? 0x7fffffff : (unsigned)t);
}

void sim_token_text(struct buf *out, unsigned i)
{
    if (i == 0) {
        PUT_LIT(out, "w");
    } else {
        PUT_LIT(out, " w");
    }
    put_u64(out, (uint64_t)i + 1);
}

void sim_uuid(uint64_t *state, char out[37])
{
    static const char hex[] = "0123456789abcdef";
    uint8_t b[16];
    uint64_t a = util_rand64(state), c = util_rand64(state);
    memcpy(b, &a, 8);
    memcpy(b + 8, &c, 8);
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    size_t o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 15];
    }
    out[o] = '\0';
}

static void put_usage(struct buf *out, const struct sim_gen_info *g)
{
    PUT_LIT(out, "\"usage\":{\"prompt_tokens\":");
    put_u64(out, g->prompt_tokens);
    PUT_LIT(out, ",\"completion_tokens\":");
    put_u64(out, g->completion_tokens);
    PUT_LIT(out, ",\"total_tokens\":");
    put_u64(out, (uint64_t)g->prompt_tokens + g->completion_tokens);
    PUT_LIT(out, "}");
}

static void put_text(struct buf *out, unsigned n)
{
    PUT_LIT(out, "\"");
    for (unsigned i = 0; i < n; i++)
        sim_token_text(out, i);
    PUT_LIT(out, "\"");
}

/* ChatCompletionObject: id, object, created, model, choices, usage
 * (LlamaEdge's endpoints crate, chat module; docs/sim.md opens with one). */
void sim_body_chat(struct buf *out, const struct sim_gen_info *g)
{
    PUT_LIT(out, "{\"id\":");
    json_append_str(out, g->id, g->id_len);
    PUT_LIT(out, ",\"object\":\"chat.completion\",\"created\":");
    put_i64(out, g->created);
    PUT_LIT(out, ",\"model\":");
    put_str(out, g->model);
    PUT_LIT(out, ",\"choices\":[{\"index\":0,\"message\":{\"content\":");
    put_text(out, g->completion_tokens);
    PUT_LIT(out, ",\"role\":\"assistant\"},\"finish_reason\":\"stop\",\"logprobs\":null}],");
    put_usage(out, g);
    PUT_LIT(out, "}");
}

/* CompletionObject: id, choices, created, model, object, usage
 * (LlamaEdge's endpoints crate, completions module) [reconstructed]. */
void sim_body_completion(struct buf *out, const struct sim_gen_info *g)
{
    PUT_LIT(out, "{\"id\":");
    json_append_str(out, g->id, g->id_len);
    PUT_LIT(out, ",\"choices\":[{\"index\":0,\"text\":");
    put_text(out, g->completion_tokens);
    PUT_LIT(out, ",\"finish_reason\":\"stop\",\"logprobs\":null}],\"created\":");
    put_i64(out, g->created);
    PUT_LIT(out, ",\"model\":");
    put_str(out, g->model);
    PUT_LIT(out, ",\"object\":\"text_completion\",");
    put_usage(out, g);
    PUT_LIT(out, "}");
}

/* EmbeddingsResponse: object, data[{index, object, embedding}], model, usage
 * (LlamaEdge's endpoints crate, embeddings module) [reconstructed]. The vectors are
 * deterministic: a function of input index and dimension only. */
void sim_body_embeddings(struct buf *out, const struct sim_gen_info *g, unsigned n_inputs,
                         unsigned dim)
{
    PUT_LIT(out, "{\"object\":\"list\",\"data\":[");
    for (unsigned k = 0; k < n_inputs; k++) {
        if (k > 0)
            PUT_LIT(out, ",");
        PUT_LIT(out, "{\"index\":");
        put_u64(out, k);
        PUT_LIT(out, ",\"object\":\"embedding\",\"embedding\":[");
        for (unsigned j = 0; j < dim; j++) {
            /* Multiples of 1/16 in [-0.5, 0.5]: exact in binary, short in text. */
            unsigned v = ((k + 1) * (j + 3) * 7) % 17;
            buf_printf(out, "%s%g", j ? "," : "", (double)v / 16.0 - 0.5);
        }
        PUT_LIT(out, "]}");
    }
    PUT_LIT(out, "],\"model\":");
    put_str(out, g->model);
    PUT_LIT(out, ",\"usage\":{\"prompt_tokens\":");
    put_u64(out, g->prompt_tokens);
    PUT_LIT(out, ",\"completion_tokens\":0,\"total_tokens\":");
    put_u64(out, g->prompt_tokens);
    PUT_LIT(out, "}}");
}

/* The Responses API object (OpenAI shape, which llama-api-server 0.28
 * follows) [reconstructed]. */
void sim_body_response(struct buf *out, const struct sim_gen_info *g)
{
    PUT_LIT(out, "{\"id\":");
    json_append_str(out, g->id, g->id_len);
    PUT_LIT(out, ",\"object\":\"response\",\"created_at\":");
    put_i64(out, g->created);
    PUT_LIT(out, ",\"status\":\"completed\",\"model\":");
    put_str(out, g->model);
    PUT_LIT(out, ",\"output\":[{\"type\":\"message\",\"id\":\"msg_");
    /* The message id reuses the response id's uuid part. */
    const char *u = memchr(g->id, '_', g->id_len);
    if (u != NULL)
        put(out, u + 1, g->id_len - (size_t)(u + 1 - g->id));
    PUT_LIT(out, "\",\"status\":\"completed\",\"role\":\"assistant\",\"content\":[{\"type\":"
                 "\"output_text\",\"text\":");
    put_text(out, g->completion_tokens);
    PUT_LIT(out, ",\"annotations\":[]}]}],\"usage\":{\"input_tokens\":");
    put_u64(out, g->prompt_tokens);
    PUT_LIT(out, ",\"output_tokens\":");
    put_u64(out, g->completion_tokens);
    PUT_LIT(out, ",\"total_tokens\":");
    put_u64(out, (uint64_t)g->prompt_tokens + g->completion_tokens);
    PUT_LIT(out, "}}");
}

/* ListModelsResponse: the one model, owned_by "Not specified". */
void sim_body_models(struct buf *out, const char *model, int64_t created)
{
    PUT_LIT(out, "{\"object\":\"list\",\"data\":[{\"id\":");
    put_str(out, model);
    PUT_LIT(out, ",\"created\":");
    put_i64(out, created);
    PUT_LIT(out, ",\"object\":\"model\",\"owned_by\":\"Not specified\"}]}");
}

/* ApiServer (a flat object since 0.17), for a chat model started
 * with the defaults and --prompt-template llama-3-chat. */
void sim_body_info(struct buf *out, const char *model, int port)
{
    PUT_LIT(out, "{\"type\":\"llama\",\"version\":\"0.28.1\",\"ggml_plugin_version\":"
                 "\"b5640 (commit 1a2b3c4d)\",\"port\":\"");
    put_u64(out, (uint64_t)port);
    PUT_LIT(out, "\",\"chat_model\":{\"name\":");
    put_str(out, model);
    PUT_LIT(out, ",\"type\":\"chat\",\"ctx_size\":4096,\"batch_size\":512,\"ubatch_size\":512,"
                 "\"prompt_template\":\"Llama3Chat\",\"n_predict\":-1,\"n_gpu_layers\":100,"
                 "\"temperature\":1.0,\"top_p\":1.0,\"repeat_penalty\":1.1,"
                 "\"presence_penalty\":0.0,\"frequency_penalty\":0.0,\"split_mode\":\"layer\"},"
                 "\"extras\":{}}");
}

/* ChatCompletionChunk: id, choices, created, model, system_fingerprint,
 * object; usage only on the last chunk [copied]. */
static void sse_chunk_head(struct buf *out, const struct sim_gen_info *g)
{
    PUT_LIT(out, "data: {\"id\":");
    json_append_str(out, g->id, g->id_len);
    PUT_LIT(out, ",\"choices\":[");
}

static void sse_chunk_tail(struct buf *out, const struct sim_gen_info *g)
{
    PUT_LIT(out, "],\"created\":");
    put_i64(out, g->created);
    PUT_LIT(out, ",\"model\":");
    put_str(out, g->model);
    PUT_LIT(out, ",\"system_fingerprint\":\"fp_44709d6fcb\",\"object\":\"chat.completion.chunk\"");
}

void sim_sse_token(struct buf *out, const struct sim_gen_info *g, unsigned i)
{
    sse_chunk_head(out, g);
    PUT_LIT(out, "{\"index\":0,\"delta\":{\"content\":\"");
    sim_token_text(out, i);
    PUT_LIT(out, "\",\"role\":\"assistant\"},\"logprobs\":null,\"finish_reason\":null}");
    sse_chunk_tail(out, g);
    PUT_LIT(out, "}\n\n");
}

void sim_sse_usage(struct buf *out, const struct sim_gen_info *g)
{
    sse_chunk_head(out, g);
    sse_chunk_tail(out, g);
    PUT_LIT(out, ",");
    put_usage(out, g);
    PUT_LIT(out, "}\n\n");
}

void sim_sse_done(struct buf *out)
{
    PUT_LIT(out, "data: [DONE]\n\n");
}

void sim_json_compact(struct buf *out, const char *s, size_t len)
{
    bool in_str = false;
    char *d = buf_reserve(out, len);
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (in_str) {
            d[o++] = c;
            if (c == '\\' && i + 1 < len)
                d[o++] = s[++i];
            else if (c == '"')
                in_str = false;
        } else if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
            d[o++] = c;
            in_str = c == '"';
        }
    }
    buf_commit(out, o);
}

/* ---------------------------------------------------------------- input
 *
 * The real server deserializes with serde; its error texts carry serde's
 * message and position ("missing field `messages` at line 1 column 13").
 * Positions are reproduced for missing fields; for malformed JSON the strict
 * tokenizer does not say where it stopped, so the message names column 1. */

#define TOKS_STATIC 4096
#define TOKS_MAX (1u << 20)

static _Thread_local struct json_tok toks_static[TOKS_STATIC];

static const char *const api_what[] = {
    [SIM_API_CHAT] = "chat completion request",
    [SIM_API_COMPLETIONS] = "completions request",
    [SIM_API_EMBEDDINGS] = "embedding request",
    [SIM_API_RESPONSES] = "responses request",
};

/* serde_json's line and column after byte <off>: 1-based line, column = bytes
 * consumed on that line. */
static void line_col(const char *s, size_t off, unsigned *line, unsigned *col)
{
    unsigned l = 1;
    size_t start = 0;
    for (size_t i = 0; i < off; i++)
        if (s[i] == '\n') {
            l++;
            start = i + 1;
        }
    *line = l;
    *col = (unsigned)(off - start);
}

static void bad_request(struct buf *err, enum sim_api api, const char *body, size_t len,
                        const char *msg, size_t pos, bool valid_json)
{
    unsigned line, col;
    line_col(body, pos, &line, &col);
    buf_printf(err, "400 Bad Request: Fail to deserialize %s: %s at line %u column %u.",
               api_what[api], msg, line, col);
    if (valid_json) {
        buf_append_str(err, "\njson_value: ");
        sim_json_compact(err, body, len);
    }
}

/* Adds the bytes of the text in a message "content" (a string, or an array
 * of parts with "text") to <*n>. */
static void content_bytes(const char *s, const struct json_tok *t, int i, size_t *n)
{
    if (t[i].type == JSON_STRING) {
        *n += t[i].end - t[i].start;
    } else if (t[i].type == JSON_ARRAY) {
        for (int e = i + 1, k = 0; k < (int)t[i].size; k++, e = (int)t[e].next) {
            if (t[e].type == JSON_STRING) {
                *n += t[e].end - t[e].start;
            } else if (t[e].type == JSON_OBJECT) {
                int x = json_get(s, t, e, "text");
                if (x >= 0 && t[x].type == JSON_STRING)
                    *n += t[x].end - t[x].start;
            }
        }
    }
}

int sim_parse_request(enum sim_api api, const char *body, size_t len, struct sim_req *r,
                      struct buf *err)
{
    struct json_tok *t = toks_static;
    unsigned cap = TOKS_STATIC;
    int n;
    int rc = -EINVAL;

    memset(r, 0, sizeof(*r));
    r->max_tokens = -1;
    r->include_usage = -1;
    r->n_inputs = 1;
    size_t ws = 0;
    while (ws < len && (body[ws] == ' ' || body[ws] == '\n' || body[ws] == '\r' || body[ws] == '\t'))
        ws++;
    if (ws == len) {
        bad_request(err, api, body, len, "EOF while parsing a value", len, false);
        return -EINVAL;
    }
    for (;;) {
        n = json_parse(body, len, t, cap);
        if (n != -E2BIG || cap >= TOKS_MAX)
            break;
        if (t != toks_static)
            free(t);
        cap = cap == TOKS_STATIC ? 65536 : cap * 4;
        t = xmalloc(cap * sizeof(*t));
    }
    if (n < 0) {
        bad_request(err, api, body, len,
                    n == -E2BIG ? "recursion limit exceeded" : "expected value", ws + 1, false);
        goto out;
    }
    if (t[0].type != JSON_OBJECT) {
        bad_request(err, api, body, len, "invalid type: expected a map", t[0].end, true);
        goto out;
    }
    const char *need = api == SIM_API_CHAT ? "messages"
                       : api == SIM_API_COMPLETIONS ? "prompt"
                                                    : "input";
    int req = json_get(body, t, 0, need);
    if (req < 0) {
        char msg[64];
        snprintf(msg, sizeof(msg), "missing field `%s`", need);
        bad_request(err, api, body, len, msg, t[0].end, true);
        goto out;
    }

    size_t prompt = 0;
    if (api == SIM_API_CHAT) {
        if (t[req].type != JSON_ARRAY) {
            bad_request(err, api, body, len, "invalid type: expected a sequence", t[req].end,
                        true);
            goto out;
        }
        for (int e = req + 1, k = 0; k < (int)t[req].size; k++, e = (int)t[e].next) {
            int c = t[e].type == JSON_OBJECT ? json_get(body, t, e, "content") : -1;
            if (c >= 0)
                content_bytes(body, t, c, &prompt);
        }
    } else if (t[req].type == JSON_STRING) {
        prompt = t[req].end - t[req].start;
    } else if (t[req].type == JSON_ARRAY) {
        r->n_inputs = t[req].size ? t[req].size : 1;
        for (int e = req + 1, k = 0; k < (int)t[req].size; k++, e = (int)t[e].next) {
            if (t[e].type == JSON_OBJECT) {
                int c = json_get(body, t, e, "content");
                if (c >= 0)
                    content_bytes(body, t, c, &prompt);
            } else if (t[e].type == JSON_STRING) {
                prompt += t[e].end - t[e].start;
            } else {
                prompt += t[e].end - t[e].start; /* token arrays: their text length */
            }
        }
    } else {
        bad_request(err, api, body, len, "invalid type: expected a string or a sequence",
                    t[req].end, true);
        goto out;
    }
    r->prompt_tokens = sim_prompt_tokens(prompt);

    /* The length field each API recognises; chat ignores max_tokens. */
    const char *lenkey = api == SIM_API_CHAT          ? "max_completion_tokens"
                         : api == SIM_API_COMPLETIONS ? "max_tokens"
                                                      : "max_output_tokens";
    int m = json_get(body, t, 0, lenkey);
    int64_t v;
    if (m >= 0 && json_int(body, &t[m], INT32_MIN, INT32_MAX, &v) == 0)
        r->max_tokens = v < 0 ? 0 : v;

    int s = json_get(body, t, 0, "stream");
    r->stream = s >= 0 && t[s].type == JSON_TRUE;
    int so = json_get(body, t, 0, "stream_options");
    if (so >= 0 && t[so].type == JSON_OBJECT) {
        int iu = json_get(body, t, so, "include_usage");
        if (iu >= 0 && (t[iu].type == JSON_TRUE || t[iu].type == JSON_FALSE))
            r->include_usage = t[iu].type == JSON_TRUE;
    }
    int u = json_get(body, t, 0, "user");
    if (u >= 0 && t[u].type == JSON_STRING) {
        char tmp[4096];
        int k = json_str(body, &t[u], tmp, sizeof(tmp));
        if (k < 0) { /* too long or an embedded NUL: keep the raw bytes */
            k = (int)MIN((size_t)(t[u].end - t[u].start), sizeof(tmp) - 1);
            memcpy(tmp, body + t[u].start, (size_t)k);
        }
        k = MIN(k, (int)sizeof(r->user) - 1);
        memcpy(r->user, tmp, (size_t)k);
        r->user[k] = '\0';
    }
    rc = 0;
out:
    if (t != toks_static)
        free(t);
    return rc;
}
