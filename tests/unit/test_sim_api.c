/* SPDX-License-Identifier: MIT
 * Unit tests of api.c: request fields and their error texts, token text,
 * ids, bodies. (Fault specs: test_sim_faults.c.) */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "../tap.h"
#include "buf.h"
#include "../../src/sim/sim.h"

static bool buf_is(const struct buf *b, const char *want)
{
    return b->len == strlen(want) && memcmp(b->area + b->off, want, b->len) == 0;
}

static void test_request(void)
{
    struct buf err = {0};
    struct sim_req r;
    const char *b = "{\"model\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":\"12345\"}],"
                    "\"stream\":true,\"stream_options\":{\"include_usage\":true},"
                    "\"user\":\"a\\nb\",\"max_completion_tokens\":7,\"max_tokens\":2}";
    is_int(sim_parse_request(SIM_API_CHAT, b, strlen(b), &r, &err), 0, "chat request parses");
    ok(r.stream && r.include_usage == 1 && r.max_tokens == 7 && r.prompt_tokens == 2,
       "chat fields (max_tokens ignored)");
    ok(strcmp(r.user, "a\nb") == 0, "user decoded");

    b = "{\"model\":\"x\"}";
    is_int(sim_parse_request(SIM_API_CHAT, b, strlen(b), &r, &err), -EINVAL, "no messages");
    ok(buf_is(&err, "400 Bad Request: Fail to deserialize chat completion request: missing field "
                    "`messages` at line 1 column 13.\njson_value: {\"model\":\"x\"}"),
       "missing-field text");
    buf_free(&err);
    b = "{\n  \"model\": \"x\"\n}";
    sim_parse_request(SIM_API_CHAT, b, strlen(b), &r, &err);
    ok(buf_is(&err, "400 Bad Request: Fail to deserialize chat completion request: missing field "
                    "`messages` at line 3 column 1.\njson_value: {\"model\":\"x\"}"),
       "line and column across lines, compact json_value");
    buf_free(&err);
    is_int(sim_parse_request(SIM_API_CHAT, "", 0, &r, &err), -EINVAL, "empty body");
    ok(buf_is(&err, "400 Bad Request: Fail to deserialize chat completion request: EOF while "
                    "parsing a value at line 1 column 0."),
       "empty-body text");
    buf_free(&err);
    b = "{\"prompt\":[\"ab\",\"cdefgh\"],\"max_tokens\":3}";
    is_int(sim_parse_request(SIM_API_COMPLETIONS, b, strlen(b), &r, &err), 0, "completions");
    ok(r.max_tokens == 3 && r.prompt_tokens == 2 && r.n_inputs == 2, "completions fields");
    b = "{\"input\":\"x\"}";
    is_int(sim_parse_request(SIM_API_EMBEDDINGS, b, strlen(b), &r, &err), 0, "embeddings");
    ok(r.max_tokens == -1 && r.include_usage == -1 && r.user[0] == '\0', "absent fields");
    buf_free(&err);
}

static void test_text(void)
{
    struct buf b = {0};
    for (unsigned i = 0; i < 3; i++)
        sim_token_text(&b, i);
    ok(buf_is(&b, "w1 w2 w3"), "token text");
    is_int(sim_prompt_tokens(0), 1, "at least one prompt token");
    is_int(sim_prompt_tokens(4), 1, "4 bytes, 1 token");
    is_int(sim_prompt_tokens(5), 2, "rounded up");
    uint64_t s1 = 42, s2 = 42;
    char u1[37], u2[37];
    sim_uuid(&s1, u1);
    sim_uuid(&s2, u2);
    ok(strcmp(u1, u2) == 0 && strlen(u1) == 36 && u1[14] == '4' && u1[8] == '-',
       "uuid v4, deterministic for a state");
    buf_free(&b);
    struct sim_gen_info g = {.id = "u", .id_len = 1, .model = "m", .created = 5,
                             .prompt_tokens = 1, .completion_tokens = 2};
    sim_body_chat(&b, &g);
    ok(buf_is(&b, "{\"id\":\"u\",\"object\":\"chat.completion\",\"created\":5,\"model\":\"m\","
                  "\"choices\":[{\"index\":0,\"message\":{\"content\":\"w1 w2\",\"role\":"
                  "\"assistant\"},\"finish_reason\":\"stop\",\"logprobs\":null}],\"usage\":"
                  "{\"prompt_tokens\":1,\"completion_tokens\":2,\"total_tokens\":3}}"),
       "chat body byte-exact");
    buf_free(&b);
    sim_sse_usage(&b, &g);
    ok(buf_is(&b, "data: {\"id\":\"u\",\"choices\":[],\"created\":5,\"model\":\"m\","
                  "\"system_fingerprint\":\"fp_44709d6fcb\",\"object\":\"chat.completion.chunk\","
                  "\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2,\"total_tokens\":3}}\n\n"),
       "usage chunk byte-exact");
    buf_free(&b);
}

int main(void)
{
    test_request();
    test_text();
    buf_cache_drain();
    return done_testing();
}
