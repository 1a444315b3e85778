/* SPDX-License-Identifier: MIT
 * libFuzzer target: the JSON reader. The whole input is the text. On valid
 * JSON: json_top_string agrees with json_parse + json_get for every top-level
 * key and a few fixed ones, and json_top_fields counts every top-level member
 * of those names as a walk of the tokens does (duplicates, escaped names); json_str decodes every string into a buffer of
 * exactly the advertised size (ASan catches a byte too many) and the result
 * survives json_append_str + json_parse + json_str; json_int never misreads.
 * On any input: json_top_string, json_top_fields and json_parse never read
 * past the end. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "json.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            util_bug(__FILE__, __LINE__, #cond);                                                   \
    } while (0)

#define MAXTOK 2048
static struct json_tok toks[MAXTOK], toks2[4];

/* json_top_string must give what json_get finds: the first member named
 * <key>, if it is a string. */
static void check_top(const char *s, size_t len, const char *key)
{
    struct slice v = {0};
    int rc = json_top_string(s, len, key, &v);
    if (toks[0].type != JSON_OBJECT) {
        CHECK(rc == -EINVAL);
        return;
    }
    int g = json_get(s, toks, 0, key);
    if (g >= 0 && toks[g].type == JSON_STRING)
        CHECK(rc == 1 && v.p == s + toks[g].start && v.len == toks[g].end - toks[g].start);
    else
        CHECK(rc == 0);
}

/* json_top_fields must count what json_parse + json_get see: for each key,
 * the top-level members json_str_eq() matches, the type of the one json_get()
 * returns, and its raw slice if it is a string. */
static void check_fields(const char *s, size_t len, const char *const *keys, unsigned nk)
{
    struct json_field f[JSON_TOP_FIELDS_MAX];
    for (unsigned k = 0; k < nk; k++)
        f[k] = (struct json_field){.key = keys[k]};
    int rc = json_top_fields(s, len, f, nk);
    if (toks[0].type != JSON_OBJECT) {
        CHECK(rc == -EINVAL);
        return;
    }
    CHECK(rc == 0);
    for (unsigned k = 0; k < nk; k++) {
        unsigned count = 0;
        int m = 1;
        for (uint32_t i = 0; i < toks[0].size; i++) {
            count += json_str_eq(s, &toks[m], keys[k]);
            m = (int)toks[m + 1].next;
        }
        int g = json_get(s, toks, 0, keys[k]);
        CHECK(f[k].count == count);
        CHECK(f[k].type == (g >= 0 ? toks[g].type : JSON_NONE));
        if (g >= 0 && toks[g].type == JSON_STRING)
            CHECK(f[k].val.p == s + toks[g].start && f[k].val.len == toks[g].end - toks[g].start);
        else
            CHECK(f[k].val.len == 0);
    }
}

/* Decodes string token <t> into an exact-size heap buffer, and round-trips it. */
static void check_string(const char *s, const struct json_tok *t, struct buf *b)
{
    char probe[1];
    size_t raw = t->end - t->start;
    char *out = malloc(raw + 1);
    CHECK(out != NULL);
    int n = json_str(s, t, out, raw + 1); /* decoding never grows the text */
    CHECK(n == -EINVAL || (n >= 0 && (size_t)n <= raw && out[n] == '\0'));
    if (n > 0) {
        char *tight = malloc((size_t)n);
        CHECK(tight != NULL);
        CHECK(json_str(s, t, tight, (size_t)n) == -ENOSPC);
        free(tight);
        CHECK(json_str(s, t, probe, 1) == -ENOSPC);
        b->len = b->off = 0;
        json_append_str(b, out, (size_t)n);
        CHECK(json_parse(buf_data(b), b->len, toks2, 4) == 1 && toks2[0].type == JSON_STRING);
        char *back = malloc((size_t)n + 1);
        CHECK(back != NULL);
        CHECK(json_str(buf_data(b), &toks2[0], back, (size_t)n + 1) == n);
        CHECK(memcmp(back, out, (size_t)n) == 0);
        CHECK(n >= 511 || json_str_eq(buf_data(b), &toks2[0], out)); /* its scratch is 512 */
        free(back);
    }
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    static const char *const keys[] = {"model", "stream", "", "a", "messages", "user", "id"};
    struct slice v;
    int n = json_parse(s, size, toks, MAXTOK);
    CHECK(n == -EINVAL || n == -E2BIG || (n >= 1 && n <= MAXTOK));
    if (n < 0) {
        for (size_t k = 0; k < ARRAY_SIZE(keys); k++) {
            int rc = json_top_string(s, size, keys[k], &v);
            CHECK(rc == -EINVAL || rc == 0 || rc == 1);
            if (rc == 1)
                CHECK(v.p >= s && v.p + v.len <= s + size);
        }
        struct json_field f[ARRAY_SIZE(keys)];
        for (size_t k = 0; k < ARRAY_SIZE(keys); k++)
            f[k] = (struct json_field){.key = keys[k]};
        int rc = json_top_fields(s, size, f, ARRAY_SIZE(keys));
        CHECK(rc == -EINVAL || rc == 0);
        for (size_t k = 0; k < ARRAY_SIZE(keys); k++) {
            CHECK(rc == 0 || (f[k].count == 0 && f[k].type == JSON_NONE));
            CHECK(f[k].val.len == 0 || (f[k].val.p >= s && f[k].val.p + f[k].val.len <= s + size));
            CHECK(f[k].count > 0 || f[k].type == JSON_NONE);
        }
        return 0;
    }
    for (size_t k = 0; k < ARRAY_SIZE(keys); k++)
        check_top(s, size, keys[k]);
    check_fields(s, size, keys, ARRAY_SIZE(keys));
    struct buf b = {0};
    char key[512];
    for (int i = 0; i < n; i++) {
        CHECK(toks[i].next > (uint32_t)i && toks[i].next <= (uint32_t)n);
        CHECK(toks[i].start <= toks[i].end && toks[i].end <= size);
        if (toks[i].type == JSON_STRING)
            check_string(s, &toks[i], &b);
        if (toks[i].type == JSON_NUMBER) {
            int64_t iv;
            if (json_int(s, &toks[i], INT64_MIN, INT64_MAX, &iv) == 0) {
                char tmp[32];
                int l = snprintf(tmp, sizeof(tmp), "%lld", (long long)iv);
                struct slice r = json_raw(s, &toks[i]);
                CHECK((size_t)l == r.len ? memcmp(tmp, r.p, r.len) == 0
                                         : (r.len == 2 && memcmp(r.p, "-0", 2) == 0));
            }
        }
    }
    /* Every top-level key of an object, looked up both ways, and counted. */
    if (toks[0].type == JSON_OBJECT) {
        int k = 1;
        for (uint32_t m = 0; m < toks[0].size; m++) {
            if (json_str(s, &toks[k], key, sizeof(key)) >= 0) {
                const char *one[1] = {key};
                check_top(s, size, key);
                check_fields(s, size, one, 1);
            }
            k = (int)toks[k + 1].next;
        }
    }
    buf_free(&b);
    buf_cache_drain();
    return 0;
}
