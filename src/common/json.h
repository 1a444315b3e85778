/* SPDX-License-Identifier: MIT
 * A small strict JSON reader (RFC 8259) that tokenizes into a caller array,
 * jsmn-style: no allocation, nothing but libc, so it compiles into the
 * wasm32-wasi balancer (docs/design.md, "Portability"). Tokens point into
 * the input.
 *
 * Each token records where its subtree ends (<next>), so walking an object's
 * members or an array's elements skips nested values in O(1). Strictness:
 * one top-level value, no trailing bytes but whitespace, no trailing commas,
 * no comments, no leading zeros, escapes and UTF-8 validated, control
 * characters in strings refused, depth bounded. */
#ifndef LLAMALB_JSON_H
#define LLAMALB_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "slice.h"

enum json_type {
    JSON_NONE = 0,
    JSON_OBJECT,
    JSON_ARRAY,
    JSON_STRING,
    JSON_NUMBER,
    JSON_TRUE,
    JSON_FALSE,
    JSON_NULL,
};

struct json_tok {
    enum json_type type;
    uint32_t start; /* offset of the first byte (strings: after the quote) */
    uint32_t end;   /* offset after the last byte (strings: before the quote) */
    uint32_t size;  /* objects: members; arrays: elements */
    uint32_t next;  /* index of the token after this whole subtree */
    bool escaped;   /* strings: contains backslash escapes */
};

#define JSON_MAX_DEPTH 64

/* Tokenizes <s>/<len> into <toks> (capacity <max>). Returns the token count,
 * -EINVAL for malformed input, -E2BIG when <max> tokens are not enough. */
int json_parse(const char *s, size_t len, struct json_tok *toks, unsigned max);

/* Index of the value of <key> in object token <obj>, or -1. */
int json_get(const char *s, const struct json_tok *toks, int obj, const char *key);

/* The raw bytes of a token (strings without quotes, escapes not decoded). */
static inline struct slice json_raw(const char *s, const struct json_tok *t)
{
    return slice_make(s + t->start, t->end - t->start);
}

/* True if string token <t> equals <str> (escapes decoded). */
bool json_str_eq(const char *s, const struct json_tok *t, const char *str);

/* Decodes string token <t> into <out> (capacity <outlen>, NUL-terminated).
 * Returns the decoded length, or -ENOSPC / -EINVAL (not a string, or it
 * contains a NUL character). */
int json_str(const char *s, const struct json_tok *t, char *out, size_t outlen);

/* Integer value of number token <t> if it is an integer in [min, max]:
 * returns 0 and sets <*out>, else -EINVAL. */
int json_int(const char *s, const struct json_tok *t, int64_t min, int64_t max, int64_t *out);

/* Appends <str>/<len> to <out> as a JSON string literal with quotes
 * (escaping ", \ and control characters). <out> is a struct buf. */
struct buf;
void json_append_str(struct buf *out, const char *str, size_t len);

/* Finds the top-level string member <key> of the JSON object in <s>/<len>
 * without tokenizing everything: values of other members are skipped, not
 * copied or validated beyond their framing. Returns 1 and sets <*val> to the
 * raw string contents, 0 if the top-level object has no such string member,
 * -EINVAL if the text is not an object. On valid JSON it agrees with
 * json_parse() + json_get(): escaped keys ("mod\u0065l") match after
 * decoding, and the first member with the name decides (0 if its value is
 * not a string, even when a later duplicate is). Costs one pass over the
 * bytes up to the key (the body may be megabytes of prompt after it). */
int json_top_string(const char *s, size_t len, const char *key, struct slice *val);

/* One requested top-level member for json_top_fields(). */
struct json_field {
    const char *key;     /* in: the member name, matched after decoding escapes */
    unsigned count;      /* out: top-level members with that name (0, 1, or a duplicate) */
    enum json_type type; /* out: type of the first such member's value; JSON_NONE if count is 0 */
    struct slice val;    /* out: raw contents of that value if it is a string, as
                          * json_top_string() gives them; else empty */
};

#define JSON_TOP_FIELDS_MAX 16

/* Looks up <nf> (at most JSON_TOP_FIELDS_MAX) top-level members of the JSON
 * object in <s>/<len> in one pass over the whole text, and counts every
 * occurrence of each: a request that names "model" twice is routed by one
 * and served by the other (most parsers take the last member, json_get()
 * the first), so the caller refuses count > 1 rather than pick one.
 *
 * Returns 0 with every field filled, -EINVAL if the text is not an object
 * (framing: key strings, ':' and ',' between members, brackets matched by
 * kind and depth-bounded as json_parse() does, nothing but whitespace after
 * the closing brace; values are otherwise not validated), -E2BIG if <nf> is
 * too large. After -EINVAL every field reads count 0, JSON_NONE.
 *
 * On valid JSON it agrees with json_parse() + json_get(): count is the
 * number of top-level members whose decoded name equals key ("mod\u0065l"
 * is "model"; names inside nested values never count), type and val are
 * those of the member json_get() returns. Strings are skipped at memchr
 * speed, as in json_top_string(), but the scan always reaches the end. */
int json_top_fields(const char *s, size_t len, struct json_field *f, unsigned nf);

/* Decodes a string value found by json_top_string() or json_top_fields()
 * (<v> points into <s>) into <out>, as json_str() does for a token: the
 * decoded length, or -ENOSPC / -EINVAL. */
int json_decode_slice(const char *s, struct slice v, char *out, size_t outlen);

#endif
