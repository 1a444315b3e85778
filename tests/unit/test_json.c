/* SPDX-License-Identifier: MIT
 * Tests of the strict JSON reader: JSONTestSuite-style accept/refuse tables,
 * token shapes, json_get / json_str / json_int / json_append_str, and the
 * rule that json_top_string() and json_top_fields() agree with json_parse() +
 * json_get() on valid JSON (json_top_fields() also counting duplicates).
 * Inputs sit at the end of a page followed by a PROT_NONE page, so a read
 * past the end crashes. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../guard.h"
#include "../tap.h"
#include "buf.h"
#include "json.h"
#include "util.h"


#define MAXTOK 4096
static struct json_tok toks[MAXTOK];

/* ---------------------------------------------------------------- accept / refuse */

struct jcase {
    int line;
    const char *text;
    size_t len;
    int want; /* token count, or -EINVAL / -E2BIG */
    const char *why;
};

#define J(text, want, why) {__LINE__, text, sizeof(text) - 1, want, why}

static const struct jcase cases[] = {
    /* valid */
    J("{}", 1, "empty object"),
    J("[]", 1, "empty array"),
    J(" \t\r\n{ } \n", 1, "whitespace around"),
    J("0", 1, "zero"),
    J("-0", 1, "minus zero"),
    J("1.5e-3", 1, "fraction and exponent"),
    J("-1E+2", 1, "upper-case exponent"),
    J("1e400", 1, "huge exponent is syntax, not our problem"),
    J("\"\"", 1, "empty string"),
    J("\"\\/\\b\\f\\n\\r\\t\\\\\\\"\"", 1, "every short escape"),
    J("\"\\u00e9\\ud83d\\ude00\"", 1, "\\u escapes with a surrogate pair"),
    J("\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"", 1, "2, 3 and 4 byte UTF-8"),
    J("\"\xf4\x8f\xbf\xbf\"", 1, "U+10FFFF"),
    J("\"\x7f\"", 1, "DEL is allowed in strings"),
    J("true", 1, "true"),
    J("false", 1, "false"),
    J("null", 1, "null"),
    J("[1,[2,3],{\"a\":4}]", 8, "nested containers"),
    J("{\"a\":1,\"a\":2}", 5, "duplicate keys are syntax-valid"),
    J(" [ 1 , { \"a\" : [ ] } ] ", 5, "whitespace everywhere"),
    J("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stream\":true}",
      12, "chat request"),
    /* invalid */
    J("", -EINVAL, "empty text"),
    J(" ", -EINVAL, "only whitespace"),
    J("[1,]", -EINVAL, "trailing comma in array"),
    J("{\"a\":1,}", -EINVAL, "trailing comma in object"),
    J("[1,,2]", -EINVAL, "double comma"),
    J("[,1]", -EINVAL, "leading comma"),
    J("[1 2]", -EINVAL, "missing comma"),
    J("{\"a\" 1}", -EINVAL, "missing colon"),
    J("{\"a\":}", -EINVAL, "missing value"),
    J("{a:1}", -EINVAL, "unquoted key"),
    J("{'a':1}", -EINVAL, "single quotes"),
    J("{1:1}", -EINVAL, "number key"),
    J("[01]", -EINVAL, "leading zero"),
    J("01", -EINVAL, "leading zero, top level"),
    J("-01", -EINVAL, "negative leading zero"),
    J("00", -EINVAL, "double zero"),
    J("1.", -EINVAL, "no fraction digits"),
    J(".1", -EINVAL, "no integer digits"),
    J("1e", -EINVAL, "no exponent digits"),
    J("1e+", -EINVAL, "no exponent digits after sign"),
    J("+1", -EINVAL, "plus sign"),
    J("-", -EINVAL, "lone minus"),
    J("0x1", -EINVAL, "hex number"),
    J("NaN", -EINVAL, "NaN"),
    J("Infinity", -EINVAL, "Infinity"),
    J("tru", -EINVAL, "truncated true"),
    J("True", -EINVAL, "capital True"),
    J("nul", -EINVAL, "truncated null"),
    J("truex", -EINVAL, "true and junk"),
    J("[1]x", -EINVAL, "trailing junk"),
    J("{}{}", -EINVAL, "two values"),
    J("1 2", -EINVAL, "two numbers"),
    J("[1]\x00", -EINVAL, "trailing NUL"),
    J("/*c*/1", -EINVAL, "comment"),
    J("[", -EINVAL, "unclosed array"),
    J("]", -EINVAL, "lone closer"),
    J("[}", -EINVAL, "mismatched closer"),
    J("{\"a\":1]", -EINVAL, "object closed by ]"),
    J("\"abc", -EINVAL, "unterminated string"),
    J("\"\\\"", -EINVAL, "escaped quote then end"),
    J("\"\\", -EINVAL, "backslash at end"),
    J("\"\\x\"", -EINVAL, "bad escape \\x"),
    J("\"\\'\"", -EINVAL, "bad escape \\'"),
    J("\"\\U0041\"", -EINVAL, "capital \\U"),
    J("\"\\u12\"", -EINVAL, "short \\u"),
    J("\"\\u12", -EINVAL, "short \\u at end"),
    J("\"\\uZZZZ\"", -EINVAL, "non-hex \\u"),
    J("\"\\ud800\"", -EINVAL, "lone high surrogate"),
    J("\"\\udc00\"", -EINVAL, "lone low surrogate"),
    J("\"\\ud800\\u0041\"", -EINVAL, "high surrogate then non-surrogate"),
    J("\"\\ud800\\ud800\"", -EINVAL, "two high surrogates"),
    J("\"\\ud800\\", -EINVAL, "high surrogate then end"),
    J("\"\xff\"", -EINVAL, "byte 0xff"),
    J("\"\x80\"", -EINVAL, "lone continuation byte"),
    J("\"\xc0\xaf\"", -EINVAL, "overlong 2 bytes"),
    J("\"\xc1\xbf\"", -EINVAL, "overlong 2 bytes, C1"),
    J("\"\xe0\x80\xaf\"", -EINVAL, "overlong 3 bytes"),
    J("\"\xf0\x80\x80\xaf\"", -EINVAL, "overlong 4 bytes"),
    J("\"\xed\xa0\x80\"", -EINVAL, "UTF-8 encoded surrogate"),
    J("\"\xf4\x90\x80\x80\"", -EINVAL, "above U+10FFFF"),
    J("\"\xf5\x80\x80\x80\"", -EINVAL, "lead byte 0xf5"),
    J("\"\xe2\x82\"", -EINVAL, "truncated 3-byte sequence"),
    J("\"\xe2\x82", -EINVAL, "truncated sequence at end of text"),
    J("\"\xc3\"", -EINVAL, "truncated 2-byte sequence"),
    J("\"a\x01\"", -EINVAL, "control character"),
    J("\"a\nb\"", -EINVAL, "raw newline in string"),
    J("\"\t\"", -EINVAL, "raw tab in string"),
    J("\"\x00\"", -EINVAL, "raw NUL in string"),
    J("\xef\xbb\xbf{}", -EINVAL, "byte order mark"),
    J("[1,\x0c 2]", -EINVAL, "form feed is not whitespace"),
};

static void test_tables(void)
{
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        const struct jcase *c = &cases[i];
        int n = json_parse(at_guard(c->text, c->len), c->len, toks, MAXTOK);
        if (!ok(n == c->want, "line %d: %s", c->line, c->why))
            note("  got %d, want %d", n, c->want);
    }
}

/* Depth: 64 nested containers parse, 65 do not; and nothing recurses. */
static void test_depth(void)
{
    char b[512];
    for (int d = 63; d <= 66; d++) {
        memset(b, '[', (size_t)d);
        memset(b + d, ']', (size_t)d);
        int r = json_parse(at_guard(b, 2 * (size_t)d), 2 * (size_t)d, toks, MAXTOK);
        if (d <= JSON_MAX_DEPTH)
            is_int(r, d, "depth %d accepted, one token per level", d);
        else
            is_int(r, -EINVAL, "depth %d refused", d);
    }
    /* 100000 open brackets: refused without deep recursion. */
    size_t big = 100000;
    char *p = xmalloc(big);
    memset(p, '[', big);
    is_int(json_parse(p, big, toks, MAXTOK), -EINVAL, "100000 open brackets refused");
    free(p);
}

static void test_e2big(void)
{
    static const char t[] = "[1,2,3,4]";
    is_int(json_parse(t, sizeof(t) - 1, toks, 4), -E2BIG, "-E2BIG with 4 tokens for 5");
    is_int(json_parse(t, sizeof(t) - 1, toks, 5), 5, "exactly 5 tokens fit");
    is_int(json_parse("{\"a\":1}", 7, toks, 2), -E2BIG, "-E2BIG inside an object");
    is_int(json_parse("\"a\"", 3, toks, 0), -E2BIG, "-E2BIG with no room at all");
}

/* Token shapes: start/end/size/next of a nested document. */
static void test_shapes(void)
{
    static const char t[] = "{\"a\":[1,{\"b\":null}],\"c\":\"x\\ny\",\"d\":-2}";
    int n = json_parse(t, sizeof(t) - 1, toks, MAXTOK);
    is_int(n, 11, "shape: token count");
    ok(toks[0].type == JSON_OBJECT && toks[0].size == 3 && toks[0].next == 11 &&
           toks[0].start == 0 && toks[0].end == sizeof(t) - 1,
       "shape: top object");
    ok(toks[2].type == JSON_ARRAY && toks[2].size == 2 && toks[2].next == 7, "shape: array");
    ok(toks[4].type == JSON_OBJECT && toks[4].size == 1 && toks[4].next == 7, "shape: inner obj");
    ok(toks[8].type == JSON_STRING && toks[8].escaped && toks[1].escaped == false,
       "shape: escaped flag");
    ok(slice_eq_cstr(json_raw(t, &toks[8]), "x\\ny"), "shape: raw string without quotes");
    int a = json_get(t, toks, 0, "a"), d = json_get(t, toks, 0, "d");
    is_int(a, 2, "json_get a");
    is_int(d, 10, "json_get d");
    is_int(json_get(t, toks, 0, "b"), -1, "json_get does not look into nested objects");
    is_int(json_get(t, toks, 4, "b"), 6, "json_get in a nested object");
    is_int(json_get(t, toks, 2, "a"), -1, "json_get on an array");
    is_int(json_get(t, toks, -1, "a"), -1, "json_get on -1");
    int64_t v = 0;
    ok(json_int(t, &toks[d], -10, 10, &v) == 0 && v == -2, "json_int -2");
    ok(json_str_eq(t, &toks[8], "x\ny"), "json_str_eq decodes escapes");
    ok(!json_str_eq(t, &toks[8], "x\\ny"), "json_str_eq does not compare raw");
    ok(!json_str_eq(t, &toks[3], "1"), "json_str_eq on a number is false");
}

/* ---------------------------------------------------------------- json_str, json_int */

static void test_str(void)
{
    static const struct {
        int line;
        const char *text;
        const char *want; /* NULL: -EINVAL */
    } c[] = {
        {__LINE__, "\"abc\"", "abc"},
        {__LINE__, "\"\"", ""},
        {__LINE__, "\"a\\\"b\\\\c\\/d\"", "a\"b\\c/d"},
        {__LINE__, "\"\\b\\f\\n\\r\\t\"", "\b\f\n\r\t"},
        {__LINE__, "\"\\u0041\\u00e9\\u20ac\"", "A\xc3\xa9\xe2\x82\xac"},
        {__LINE__, "\"\\ud83d\\ude00\"", "\xf0\x9f\x98\x80"},
        {__LINE__, "\"\\udbff\\udfff\"", "\xf4\x8f\xbf\xbf"},
        {__LINE__, "\"\\u0000\"", NULL},
        {__LINE__, "\"a\\u0000b\"", NULL},
    };
    for (size_t i = 0; i < ARRAY_SIZE(c); i++) {
        size_t len = strlen(c[i].text);
        const char *s = at_guard(c[i].text, len);
        int n = json_parse(s, len, toks, MAXTOK);
        char out[64];
        int r = n == 1 ? json_str(s, &toks[0], out, sizeof(out)) : -999;
        if (c[i].want)
            ok(r == (int)strlen(c[i].want) && strcmp(out, c[i].want) == 0, "line %d: json_str",
               c[i].line);
        else
            is_int(r, -EINVAL, "line %d: json_str refuses NUL", c[i].line);
    }
    /* Output capacity: every size from 1 to exact, with <out> at the guard. */
    static const char t[] = "\"a\\u00e9\\ud83d\\ude00z\"";
    json_parse(t, sizeof(t) - 1, toks, MAXTOK);
    int bad = 0;
    for (size_t cap = 1; cap <= 9; cap++) {
        char *out = guard_end - cap;
        int r = json_str(t, &toks[0], out, cap);
        /* decoded: a(1) é(2) 😀(4) z(1) = 8 bytes + NUL */
        if (cap < 9 ? r != -ENOSPC : (r != 8 || strcmp(out, "a\xc3\xa9\xf0\x9f\x98\x80z") != 0))
            bad++;
    }
    ok(bad == 0, "json_str: -ENOSPC below 9 bytes, never writes past <outlen>");
    is_int(json_str(t, &toks[0], guard_end - 1, 0), -EINVAL, "json_str with outlen 0");
    json_parse("1", 1, toks, MAXTOK);
    char o[8];
    is_int(json_str("1", &toks[0], o, sizeof(o)), -EINVAL, "json_str on a number");
}

static void test_int(void)
{
    static const struct {
        int line;
        const char *text;
        int64_t min, max;
        int rc;
        int64_t want;
    } c[] = {
        {__LINE__, "42", 0, 100, 0, 42},
        {__LINE__, "-7", -10, 10, 0, -7},
        {__LINE__, "-0", -10, 10, 0, 0},
        {__LINE__, "101", 0, 100, -EINVAL, 0},
        {__LINE__, "-11", -10, 10, -EINVAL, 0},
        {__LINE__, "1.0", 0, 10, -EINVAL, 0},
        {__LINE__, "1e2", 0, 1000, -EINVAL, 0},
        {__LINE__, "9223372036854775807", INT64_MIN, INT64_MAX, 0, INT64_MAX},
        {__LINE__, "9223372036854775808", INT64_MIN, INT64_MAX, -EINVAL, 0},
        {__LINE__, "-9223372036854775808", INT64_MIN, INT64_MAX, 0, INT64_MIN},
        {__LINE__, "-9223372036854775809", INT64_MIN, INT64_MAX, -EINVAL, 0},
        {__LINE__, "99999999999999999999999", INT64_MIN, INT64_MAX, -EINVAL, 0},
        {__LINE__, "\"1\"", 0, 10, -EINVAL, 0},
    };
    for (size_t i = 0; i < ARRAY_SIZE(c); i++) {
        size_t len = strlen(c[i].text);
        const char *s = at_guard(c[i].text, len);
        int64_t v = 0;
        int n = json_parse(s, len, toks, MAXTOK);
        int r = n == 1 ? json_int(s, &toks[0], c[i].min, c[i].max, &v) : -999;
        ok(r == c[i].rc && (r != 0 || v == c[i].want), "line %d: json_int %s", c[i].line,
           c[i].text);
    }
}

/* json_append_str -> json_parse -> json_str gives the bytes back, for every
 * byte 1..255 that keeps the input valid UTF-8, and random UTF-8 strings. */
static void test_append_roundtrip(void)
{
    uint64_t rng = 12345;
    int bad = 0, n = 0;
    struct buf b = {0};
    char in[256], out[2048];
    for (int round = 0; round < 2000; round++) {
        size_t len = 0, want = util_rand64(&rng) % 60;
        while (len < want) {
            unsigned r = (unsigned)(util_rand64(&rng) % 8);
            if (r < 3) { /* ASCII, control characters included, no NUL */
                in[len++] = (char)(1 + util_rand64(&rng) % 127);
            } else if (r == 3) {
                in[len++] = "\"\\/\b\f\n\r\t"[util_rand64(&rng) % 8];
            } else if (r == 4) {
                memcpy(in + len, "\xc3\xa9", 2);
                len += 2;
            } else if (r == 5) {
                memcpy(in + len, "\xe2\x82\xac", 3);
                len += 3;
            } else if (r == 6) {
                memcpy(in + len, "\xf0\x9f\x98\x80", 4);
                len += 4;
            } else {
                in[len++] = 0x7f;
            }
        }
        b.len = 0;
        b.off = 0;
        json_append_str(&b, in, len);
        int t = json_parse(buf_data(&b), b.len, toks, MAXTOK);
        int r = t == 1 && toks[0].type == JSON_STRING
                    ? json_str(buf_data(&b), &toks[0], out, sizeof(out))
                    : -999;
        n++;
        if (r != (int)len || memcmp(out, in, len) != 0) {
            if (bad++ == 0)
                note("  round %d: parse %d str %d len %zu", round, t, r, len);
        }
    }
    ok(bad == 0, "json_append_str round trip: %d strings, %d wrong", n, bad);
    b.len = 0;
    json_append_str(&b, "a\"b\\c\x01", 6);
    ok(b.len == 15 && memcmp(buf_data(&b), "\"a\\\"b\\\\c\\u0001\"", 15) == 0,
       "json_append_str escapes quote, backslash and control bytes");
    buf_free(&b);
}

/* ---------------------------------------------------------------- json_top_string */

/* Returns true if json_top_string agrees with json_parse + json_get on <s>:
 * valid JSON object: 1 with the same raw slice when the first member named
 * <key> is a string, else 0; valid JSON not an object: -EINVAL. Invalid JSON
 * is only required not to crash. */
static bool top_agrees(const char *s0, size_t len, const char *key)
{
    const char *s = at_guard(s0, len);
    struct slice v = {0};
    int rc = json_top_string(s, len, key, &v);
    int n = json_parse(s, len, toks, MAXTOK);
    if (n < 0)
        return true;
    if (toks[0].type != JSON_OBJECT)
        return rc == -EINVAL;
    int g = json_get(s, toks, 0, key);
    if (g >= 0 && toks[g].type == JSON_STRING)
        return rc == 1 && v.p == s + toks[g].start && v.len == toks[g].end - toks[g].start;
    return rc == 0;
}

static void test_top_string(void)
{
    static const struct {
        int line;
        const char *text;
        const char *key;
    } c[] = {
        {__LINE__, "{\"model\":\"m\"}", "model"},
        {__LINE__, " { \"model\" : \"m\" } ", "model"},
        {__LINE__, "{\"stream\":true,\"model\":\"llama\"}", "model"},
        {__LINE__, "{\"model\":\"a\\\"b\"}", "model"},
        {__LINE__, "{\"model\":1}", "model"},
        {__LINE__, "{\"model\":null,\"model\":\"late\"}", "model"},
        {__LINE__, "{\"model\":\"first\",\"model\":\"late\"}", "model"},
        {__LINE__, "{\"a\":{\"model\":\"inner\"}}", "model"},
        {__LINE__, "{\"a\":[\"model\",\"model\"],\"b\":\"}\"}", "model"},
        {__LINE__, "{\"x\":\"} ] , \\\" \\\\\",\"model\":\"m\"}", "model"},
        {__LINE__, "{\"mod\\u0065l\":\"escaped key\"}", "model"},
        {__LINE__, "{\"model\\u0000\":\"nul key\"}", "model"},
        {__LINE__, "{\"m\\\"odel\":\"q\"}", "m\"odel"},
        {__LINE__, "{\"\\u006dodel\":1,\"model\":\"second\"}", "model"},
        {__LINE__, "{\"model\":\"\"}", "model"},
        {__LINE__, "{\"\":\"empty key\"}", ""},
        {__LINE__, "{}", "model"},
        {__LINE__, "[\"model\"]", "model"},
        {__LINE__, "\"model\"", "model"},
        {__LINE__, "{\"model\":[1,{\"a\":\"]\"}],\"stream\":\"s\"}", "stream"},
        {__LINE__, "{\"a\":-1.5e3,\"b\":true,\"c\":false,\"d\":null,\"model\":\"m\"}", "model"},
        {__LINE__, "{\"modelx\":\"no\",\"mode\":\"no\"}", "model"},
    };
    int bad = 0;
    for (size_t i = 0; i < ARRAY_SIZE(c); i++)
        if (!ok(top_agrees(c[i].text, strlen(c[i].text), c[i].key),
                "line %d: json_top_string agrees", c[i].line))
            bad++;

    /* The key after a huge nested value: 60 levels of arrays and objects,
     * 100 KiB of strings with brackets, quotes and escapes inside. */
    struct buf b = {0};
    buf_append_str(&b, "{\"messages\":");
    for (int i = 0; i < 30; i++)
        buf_append_str(&b, "[{\"content\":\"]}[{\\\"\\\\\",\"x\":");
    buf_append_str(&b, "\"");
    for (int i = 0; i < 5000; i++)
        buf_append_str(&b, "} ] \\\" \\\\ , { [ ");
    buf_append_str(&b, "\"");
    for (int i = 0; i < 30; i++)
        buf_append_str(&b, "}]");
    buf_append_str(&b, ",\"model\":\"after\"}");
    ok(json_parse(buf_data(&b), b.len, toks, MAXTOK) > 0, "huge nested value is valid JSON");
    ok(top_agrees(buf_data(&b), b.len, "model"), "key after a huge nested value agrees");
    struct slice v;
    ok(json_top_string(buf_data(&b), b.len, "model", &v) == 1 && slice_eq_cstr(v, "after"),
       "key after a huge nested value is found");
    buf_free(&b);

    /* Random objects from a small grammar, many keys. */
    static const char *const keys[] = {"\"model\"", "\"mod\\u0065l\"", "\"stream\"", "\"m\"",
                                       "\"\"", "\"model \"", "\"\\\"model\""};
    static const char *const vals[] = {"\"x\"", "\"y\\\"z\"", "1", "-0.5e2", "true", "null",
                                       "[]", "{}", "[\"model\",{\"model\":\"in\"}]",
                                       "{\"model\":[1,2,\"]\"]}", "\"\\u00e9\""};
    static const char *const probe[] = {"model", "stream", "m", "", "\"model", "model "};
    uint64_t rng = 777;
    int rbad = 0, rn = 0;
    for (int round = 0; round < 3000; round++) {
        b.len = b.off = 0;
        buf_append_str(&b, "{");
        int members = (int)(util_rand64(&rng) % 6);
        for (int m = 0; m < members; m++) {
            if (m)
                buf_append_str(&b, util_rand64(&rng) % 2 ? "," : " ,\n");
            buf_append_str(&b, keys[util_rand64(&rng) % ARRAY_SIZE(keys)]);
            buf_append_str(&b, util_rand64(&rng) % 2 ? ":" : " : ");
            buf_append_str(&b, vals[util_rand64(&rng) % ARRAY_SIZE(vals)]);
        }
        buf_append_str(&b, "}");
        for (size_t k = 0; k < ARRAY_SIZE(probe); k++) {
            rn++;
            if (!top_agrees(buf_data(&b), b.len, probe[k]) && rbad++ < 3)
                note("  disagree on key '%s': %.*s", probe[k], (int)b.len, buf_data(&b));
        }
    }
    ok(rbad == 0, "json_top_string vs json_get: %d random checks, %d disagree", rn, rbad);
    buf_free(&b);

    /* An escaped key is validated before it is compared: a bad escape is
     * -EINVAL, never a guess, and a short \u at the end is not over-read. */
    static const char badkey[] = "{\"a\\x\":1,\"model\":\"m\"}";
    ok(json_top_string(at_guard(badkey, sizeof(badkey) - 1), sizeof(badkey) - 1, "model", &v) ==
           -EINVAL,
       "json_top_string: bad escape in a key is -EINVAL");
    static const char shortu[] = "{\"\\u\"";
    ok(json_top_string(at_guard(shortu, sizeof(shortu) - 1), sizeof(shortu) - 1, "model", &v) ==
           -EINVAL,
       "json_top_string: short \\u in a key at the end of the text");

    /* Truncations of a valid request never crash and never read past the end. */
    static const char req[] = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":"
                              "\"hi \\\"there\\\" \\u00e9\"}],\"stream\":true}";
    for (size_t n = 0; n <= sizeof(req) - 1; n++) {
        const char *s = at_guard(req, n);
        struct slice sv;
        json_top_string(s, n, "stream", &sv);
        json_top_string(s, n, "model", &sv);
        json_parse(s, n, toks, MAXTOK);
    }
    ok(1, "every truncation of a request scanned without over-read");
}

/* ---------------------------------------------------------------- json_top_fields */

/* Returns true if json_top_fields agrees with json_parse + json_get on <s>
 * for <keys>: valid JSON object: each count is the number of top-level
 * members json_str_eq() matches, type and raw string value those of the
 * member json_get() returns; valid JSON not an object: -EINVAL. Invalid
 * JSON: -EINVAL or 0, and slices inside the text. */
static bool fields_agree(const char *s0, size_t len, const char *const *keys, unsigned nk)
{
    const char *s = at_guard(s0, len);
    struct json_field f[JSON_TOP_FIELDS_MAX];
    for (unsigned k = 0; k < nk; k++)
        f[k] = (struct json_field){.key = keys[k], .count = 99, .type = JSON_ARRAY};
    int rc = json_top_fields(s, len, f, nk);
    int n = json_parse(s, len, toks, MAXTOK);
    if (n < 0) {
        for (unsigned k = 0; rc == 0 && k < nk; k++)
            if (f[k].val.len && (f[k].val.p < s || f[k].val.p + f[k].val.len > s + len))
                return false;
        return rc == 0 || rc == -EINVAL;
    }
    if (toks[0].type != JSON_OBJECT)
        return rc == -EINVAL && f[0].count == 0;
    if (rc != 0)
        return false;
    for (unsigned k = 0; k < nk; k++) {
        unsigned count = 0;
        int m = 1;
        for (uint32_t i = 0; i < toks[0].size; i++) {
            count += json_str_eq(s, &toks[m], keys[k]);
            m = (int)toks[m + 1].next;
        }
        int g = json_get(s, toks, 0, keys[k]);
        if (f[k].count != count || f[k].type != (g >= 0 ? toks[g].type : JSON_NONE))
            return false;
        if (g >= 0 && toks[g].type == JSON_STRING) {
            if (f[k].val.p != s + toks[g].start || f[k].val.len != toks[g].end - toks[g].start)
                return false;
        } else if (f[k].val.len != 0) {
            return false;
        }
    }
    return true;
}

static void test_top_fields(void)
{
    static const char *const keys[] = {"model", "user", "id"};
    static const struct {
        int line;
        const char *text;
        int rc;
        unsigned model, user, id; /* counts */
    } c[] = {
        {__LINE__, "{\"model\":\"m\"}", 0, 1, 0, 0},
        {__LINE__, "{\"model\":\"a\",\"model\":\"b\"}", 0, 2, 0, 0},
        {__LINE__, "{\"model\":\"a\",\"mod\\u0065l\":\"b\"}", 0, 2, 0, 0},
        {__LINE__, "{\"\\u006d\\u006f\\u0064\\u0065\\u006c\":\"a\",\"x\":1,\"model\":\"b\"}", 0, 2,
         0, 0},
        {__LINE__, "{\"model\":null,\"model\":\"late\"}", 0, 2, 0, 0},
        {__LINE__, "{\"model\":\"a\",\"user\":\"u\",\"id\":\"i\",\"user\":\"v\",\"id\":7}", 0, 1, 2,
         2},
        {__LINE__, "{\"model\":\"a\",\"messages\":[{\"model\":\"b\"}],\"x\":{\"model\":\"c\"}}", 0,
         1, 0, 0},
        {__LINE__, "{\"a\":[\"model\",\"model\"],\"b\":\"\\\"model\\\":\\\"x\\\"\"}", 0, 0, 0, 0},
        {__LINE__, "{\"model\":{\"model\":\"x\"},\"user\":[1,2]}", 0, 1, 1, 0},
        {__LINE__, "{\"model\":1,\"user\":true,\"id\":false}", 0, 1, 1, 1},
        {__LINE__, "{\"model \":\"a\",\"Model\":\"b\",\"mode\":\"c\",\"modelx\":\"d\"}", 0, 0, 0, 0},
        {__LINE__, "{\"model\\u0000\":\"nul\",\"model\":\"m\"}", 0, 1, 0, 0},
        {__LINE__, " {\n\"model\" :\t\"a\" ,\r\n\"model\":\"b\" } \n", 0, 2, 0, 0},
        {__LINE__, "{}", 0, 0, 0, 0},
        /* not an object, or framing broken: -EINVAL whatever came before */
        {__LINE__, "[\"model\"]", -EINVAL, 0, 0, 0},
        {__LINE__, "\"model\"", -EINVAL, 0, 0, 0},
        {__LINE__, "", -EINVAL, 0, 0, 0},
        {__LINE__, "{\"model\":\"a\"} {\"model\":\"b\"}", -EINVAL, 0, 0, 0},
        {__LINE__, "{\"model\":\"a\"}x", -EINVAL, 0, 0, 0},
        {__LINE__, "{\"model\":\"a\",}", -EINVAL, 0, 0, 0},
        {__LINE__, "{\"model\":\"a\"", -EINVAL, 0, 0, 0},
        {__LINE__, "{\"model\":\"a", -EINVAL, 0, 0, 0},
        {__LINE__, "{\"model\":}", -EINVAL, 0, 0, 0},
        {__LINE__, "{\"model\" \"a\"}", -EINVAL, 0, 0, 0},
        {__LINE__, "{\"model\":\"a\" \"model\":\"b\"}", -EINVAL, 0, 0, 0},
        {__LINE__, "{\"x\":[1},\"model\":\"b\"]}", -EINVAL, 0, 0, 0},
        {__LINE__, "{\"x\":{\"a\":1],\"model\":\"b\"}", -EINVAL, 0, 0, 0},
        {__LINE__, "{\"x\":1 2,\"model\":\"b\"}", -EINVAL, 0, 0, 0},
        {__LINE__, "{\"x\":]\"model\":\"b\"}", -EINVAL, 0, 0, 0},
        {__LINE__, "{\"m\\x\":1,\"model\":\"b\"}", -EINVAL, 0, 0, 0},
        {__LINE__, "{\"\\u\"", -EINVAL, 0, 0, 0},
        {__LINE__, "{model:\"a\"}", -EINVAL, 0, 0, 0},
    };
    for (size_t i = 0; i < ARRAY_SIZE(c); i++) {
        size_t len = strlen(c[i].text);
        const char *s = at_guard(c[i].text, len);
        struct json_field f[3] = {{.key = "model"}, {.key = "user"}, {.key = "id"}};
        int rc = json_top_fields(s, len, f, 3);
        ok(rc == c[i].rc && f[0].count == c[i].model && f[1].count == c[i].user &&
               f[2].count == c[i].id && fields_agree(c[i].text, len, keys, 3),
           "line %d: json_top_fields %d, counts %u %u %u", c[i].line, c[i].rc, c[i].model,
           c[i].user, c[i].id);
    }

    /* Values: the first member decides, as json_get(), and the raw slice is
     * json_top_string()'s. */
    static const char dup[] = "{\"model\":\"first\",\"user\":1,\"model\":\"second\"}";
    struct json_field f[3] = {{.key = "model"}, {.key = "user"}, {.key = "id"}};
    struct slice v;
    const char *g = at_guard(dup, sizeof(dup) - 1);
    ok(json_top_fields(g, sizeof(dup) - 1, f, 3) == 0 &&
           f[0].count == 2 && f[0].type == JSON_STRING && slice_eq_cstr(f[0].val, "first") &&
           f[1].count == 1 && f[1].type == JSON_NUMBER && f[1].val.len == 0 &&
           f[2].count == 0 && f[2].type == JSON_NONE,
       "json_top_fields: first value, its type, absent key");
    ok(json_top_string(g, sizeof(dup) - 1, "model", &v) == 1 && v.p == f[0].val.p &&
           v.len == f[0].val.len,
       "json_top_fields: the same slice as json_top_string");
    ok(json_top_fields("{}", 2, f, JSON_TOP_FIELDS_MAX + 1) == -E2BIG,
       "json_top_fields: more than JSON_TOP_FIELDS_MAX fields is -E2BIG");
    ok(json_top_fields("{}", 2, f, 0) == 0, "json_top_fields: no fields");
    f[0].count = 5;
    ok(json_top_fields("{\"model\":\"a\",", 13, f, 3) == -EINVAL && f[0].count == 0 &&
           f[0].type == JSON_NONE,
       "json_top_fields: an error leaves every field empty");

    /* Depth as json_parse() counts it: the object plus 63 levels passes. */
    struct buf b = {0};
    for (int extra = 0; extra < 2; extra++) {
        b.len = b.off = 0;
        buf_append_str(&b, "{\"a\":");
        for (int d = 0; d < JSON_MAX_DEPTH - 1 + extra; d++)
            buf_append_str(&b, "[");
        for (int d = 0; d < JSON_MAX_DEPTH - 1 + extra; d++)
            buf_append_str(&b, "]");
        buf_append_str(&b, ",\"model\":\"m\"}");
        ok(fields_agree(buf_data(&b), b.len, keys, 3) &&
               json_top_fields(buf_data(&b), b.len, f, 3) == (extra ? -EINVAL : 0),
           "json_top_fields: %d nested levels %s", JSON_MAX_DEPTH - 1 + extra,
           extra ? "refused, as json_parse" : "pass");
    }

    /* A large body: 7 MiB of prompt with brackets, quotes and escapes
     * between two "model" members, and nested "model" keys. The duplicate
     * at the end is found. */
    b.len = b.off = 0;
    buf_append_str(&b, "{\"model\":\"a\",\"messages\":[");
    for (int i = 0; i < 64; i++) {
        buf_append_str(&b, i ? ",{\"model\":\"in\",\"content\":\"" : "{\"model\":\"in\",\"content\":\"");
        for (int k = 0; k < 4096; k++)
            buf_append_str(&b, "} ] \\\" \\\\ {\\\"model\\\":\\\"x\\\"}");
        buf_append_str(&b, "\"}");
    }
    buf_append_str(&b, "],\"stream\":true,\"mod\\u0065l\":\"b\"}");
    ok(b.len > (4u << 20), "large body: %zu bytes", b.len);
    ok(json_top_fields(buf_data(&b), b.len, f, 3) == 0 && f[0].count == 2 &&
           slice_eq_cstr(f[0].val, "a") && f[1].count == 0,
       "large body: the escaped duplicate after 7 MiB is counted, nested ones are not");
    ok(json_parse(buf_data(&b), b.len, toks, MAXTOK) > 0 && fields_agree(buf_data(&b), b.len, keys, 3),
       "large body: agrees with json_parse + json_get");
    buf_free(&b);

    /* Random objects from a small grammar, as for json_top_string. */
    static const char *const rkeys[] = {"\"model\"", "\"mod\\u0065l\"", "\"user\"", "\"id\"",
                                        "\"\\u0069d\"", "\"\"", "\"model \"", "\"\\\"model\""};
    static const char *const rvals[] = {"\"x\"", "\"y\\\"z\"", "1", "-0.5e2", "true", "null",
                                        "[]", "{}", "[\"model\",{\"model\":\"in\"}]",
                                        "{\"id\":[1,2,\"]\"]}", "\"\\u00e9\"", "[[{}],{\"a\":[]}]"};
    static const char *const probe[] = {"model", "user", "id", "", "\"model", "model "};
    uint64_t rng = 4242;
    int rbad = 0, rn = 0;
    for (int round = 0; round < 3000; round++) {
        b.len = b.off = 0;
        buf_append_str(&b, "{");
        int members = (int)(util_rand64(&rng) % 7);
        for (int m = 0; m < members; m++) {
            if (m)
                buf_append_str(&b, util_rand64(&rng) % 2 ? "," : " ,\n");
            buf_append_str(&b, rkeys[util_rand64(&rng) % ARRAY_SIZE(rkeys)]);
            buf_append_str(&b, util_rand64(&rng) % 2 ? ":" : " : ");
            buf_append_str(&b, rvals[util_rand64(&rng) % ARRAY_SIZE(rvals)]);
        }
        buf_append_str(&b, "}");
        rn++;
        if (!fields_agree(buf_data(&b), b.len, probe, ARRAY_SIZE(probe)) && rbad++ < 3)
            note("  disagree: %.*s", (int)b.len, buf_data(&b));
        /* and every truncation of it: never a read past the end */
        for (size_t n = 0; n < b.len; n += 1 + b.len / 16) {
            rn++;
            if (!fields_agree(buf_data(&b), n, probe, ARRAY_SIZE(probe)) && rbad++ < 3)
                note("  disagree at %zu: %.*s", n, (int)n, buf_data(&b));
        }
    }
    ok(rbad == 0, "json_top_fields vs json_get: %d random texts, %d disagree", rn, rbad);
    buf_free(&b);

    /* Every truncation of a request: -EINVAL, never a read past the end. */
    static const char req[] = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":"
                              "\"hi \\\"there\\\" \\u00e9\"}],\"mod\\u0065l\":\"n\"}";
    int trunc_bad = 0;
    for (size_t n = 0; n < sizeof(req) - 1; n++)
        trunc_bad += json_top_fields(at_guard(req, n), n, f, 3) != -EINVAL;
    ok(trunc_bad == 0 && json_top_fields(at_guard(req, sizeof(req) - 1), sizeof(req) - 1, f, 3) == 0 &&
           f[0].count == 2,
       "json_top_fields: every truncation is -EINVAL, the whole request has 2 models");
}

int main(void)
{
    guard_init(8 << 20); /* test_top_fields: a body of 7 MiB */
    test_tables();
    test_depth();
    test_e2big();
    test_shapes();
    test_str();
    test_int();
    test_append_roundtrip();
    test_top_string();
    test_top_fields();
    buf_cache_drain();
    return done_testing();
}
