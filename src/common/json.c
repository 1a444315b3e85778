/* SPDX-License-Identifier: MIT
 * Strict JSON tokenizer: recursive descent over an explicit stack, so depth
 * is bounded by JSON_MAX_DEPTH and never by the C stack. */
#include <errno.h>
#include <string.h>

#include "buf.h"
#include "json.h"
#include "util.h"

struct parser {
    const char *s;
    size_t len, pos;
    struct json_tok *toks;
    unsigned max, n;
};

static void skip_ws(struct parser *p)
{
    while (p->pos < p->len) {
        char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
        p->pos++;
    }
}

static int new_tok(struct parser *p, enum json_type type, size_t start)
{
    if (p->n >= p->max)
        return -E2BIG;
    struct json_tok *t = &p->toks[p->n];
    memset(t, 0, sizeof(*t));
    t->type = type;
    t->start = (uint32_t)start;
    return (int)p->n++;
}

/* Validates one UTF-8 sequence starting at <p->pos>; advances past it. */
static int utf8(struct parser *p)
{
    const unsigned char *u = (const unsigned char *)p->s + p->pos;
    size_t left = p->len - p->pos;
    unsigned char c = u[0];
    size_t n;
    uint32_t cp;
    if (c < 0x80) {
        p->pos++;
        return 0;
    } else if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return -EINVAL;
    }
    if (left < n)
        return -EINVAL;
    for (size_t i = 1; i < n; i++) {
        if ((u[i] & 0xc0) != 0x80)
            return -EINVAL;
        cp = cp << 6 | (u[i] & 0x3f);
    }
    if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return -EINVAL;
    p->pos += n;
    return 0;
}

static int hex4(const char *s, uint32_t *out)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (uint32_t)(c - 'A' + 10);
        else
            return -EINVAL;
    }
    *out = v;
    return 0;
}

static int parse_string(struct parser *p)
{
    int t = new_tok(p, JSON_STRING, p->pos + 1);
    if (t < 0)
        return t;
    p->pos++; /* opening quote */
    while (p->pos < p->len) {
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c == '"') {
            p->toks[t].end = (uint32_t)p->pos;
            p->toks[t].next = p->n;
            p->pos++;
            return t;
        }
        if (c < 0x20)
            return -EINVAL;
        if (c == '\\') {
            p->toks[t].escaped = true;
            if (p->pos + 1 >= p->len)
                return -EINVAL;
            char e = p->s[p->pos + 1];
            if (e == 'u') {
                uint32_t cp, lo;
                if (p->pos + 6 > p->len || hex4(p->s + p->pos + 2, &cp) != 0)
                    return -EINVAL;
                p->pos += 6;
                if (cp >= 0xdc00 && cp <= 0xdfff)
                    return -EINVAL; /* lone low surrogate */
                if (cp >= 0xd800 && cp <= 0xdbff) {
                    if (p->pos + 6 > p->len || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u' ||
                        hex4(p->s + p->pos + 2, &lo) != 0 || lo < 0xdc00 || lo > 0xdfff)
                        return -EINVAL;
                    p->pos += 6;
                }
                continue;
            }
            if (strchr("\"\\/bfnrt", e) == NULL || e == '\0')
                return -EINVAL;
            p->pos += 2;
            continue;
        }
        if (utf8(p) != 0)
            return -EINVAL;
    }
    return -EINVAL;
}

static int parse_number(struct parser *p)
{
    size_t st = p->pos;
    const char *s = p->s;
    if (p->pos < p->len && s[p->pos] == '-')
        p->pos++;
    if (p->pos >= p->len)
        return -EINVAL;
    if (s[p->pos] == '0') {
        p->pos++;
    } else if (s[p->pos] >= '1' && s[p->pos] <= '9') {
        while (p->pos < p->len && s[p->pos] >= '0' && s[p->pos] <= '9')
            p->pos++;
    } else {
        return -EINVAL;
    }
    if (p->pos < p->len && s[p->pos] == '.') {
        p->pos++;
        size_t d = p->pos;
        while (p->pos < p->len && s[p->pos] >= '0' && s[p->pos] <= '9')
            p->pos++;
        if (p->pos == d)
            return -EINVAL;
    }
    if (p->pos < p->len && (s[p->pos] == 'e' || s[p->pos] == 'E')) {
        p->pos++;
        if (p->pos < p->len && (s[p->pos] == '+' || s[p->pos] == '-'))
            p->pos++;
        size_t d = p->pos;
        while (p->pos < p->len && s[p->pos] >= '0' && s[p->pos] <= '9')
            p->pos++;
        if (p->pos == d)
            return -EINVAL;
    }
    int t = new_tok(p, JSON_NUMBER, st);
    if (t < 0)
        return t;
    p->toks[t].end = (uint32_t)p->pos;
    p->toks[t].next = p->n;
    return t;
}

static int parse_literal(struct parser *p, const char *lit, enum json_type type)
{
    size_t n = strlen(lit);
    if (p->len - p->pos < n || memcmp(p->s + p->pos, lit, n) != 0)
        return -EINVAL;
    int t = new_tok(p, type, p->pos);
    if (t < 0)
        return t;
    p->pos += n;
    p->toks[t].end = (uint32_t)p->pos;
    p->toks[t].next = p->n;
    return t;
}

/* Containers are parsed iteratively with an explicit stack of open tokens. */
static int parse_value(struct parser *p)
{
    int stack[JSON_MAX_DEPTH];
    int depth = 0;
    bool expect_value = true;

    for (;;) {
        skip_ws(p);
        if (p->pos >= p->len)
            return -EINVAL;
        char c = p->s[p->pos];
        if (expect_value) {
            int t;
            if (c == '{' || c == '[') {
                if (depth == JSON_MAX_DEPTH)
                    return -EINVAL;
                t = new_tok(p, c == '{' ? JSON_OBJECT : JSON_ARRAY, p->pos);
                if (t < 0)
                    return t;
                p->pos++;
                stack[depth++] = t;
                skip_ws(p);
                if (p->pos < p->len && p->s[p->pos] == (c == '{' ? '}' : ']')) {
                    expect_value = false; /* empty container: closed below */
                    continue;
                }
                if (c == '{') {
                    if (p->pos >= p->len || p->s[p->pos] != '"')
                        return -EINVAL;
                    if ((t = parse_string(p)) < 0)
                        return t;
                    skip_ws(p);
                    if (p->pos >= p->len || p->s[p->pos] != ':')
                        return -EINVAL;
                    p->pos++;
                }
                continue;
            }
            if (c == '"')
                t = parse_string(p);
            else if (c == 't')
                t = parse_literal(p, "true", JSON_TRUE);
            else if (c == 'f')
                t = parse_literal(p, "false", JSON_FALSE);
            else if (c == 'n')
                t = parse_literal(p, "null", JSON_NULL);
            else
                t = parse_number(p);
            if (t < 0)
                return t;
            if (depth > 0)
                p->toks[stack[depth - 1]].size++;
            if (depth == 0)
                return 0;
            expect_value = false;
            continue;
        }
        /* after a value: ',' or the closer of the open container */
        struct json_tok *top = &p->toks[stack[depth - 1]];
        char closer = top->type == JSON_OBJECT ? '}' : ']';
        if (c == closer) {
            p->pos++;
            top->end = (uint32_t)p->pos;
            top->next = p->n;
            depth--;
            if (depth == 0)
                return 0;
            p->toks[stack[depth - 1]].size++;
            continue;
        }
        if (c != ',')
            return -EINVAL;
        p->pos++;
        if (top->type == JSON_OBJECT) {
            skip_ws(p);
            if (p->pos >= p->len || p->s[p->pos] != '"')
                return -EINVAL;
            int t = parse_string(p);
            if (t < 0)
                return t;
            skip_ws(p);
            if (p->pos >= p->len || p->s[p->pos] != ':')
                return -EINVAL;
            p->pos++;
        }
        expect_value = true;
    }
}

int json_parse(const char *s, size_t len, struct json_tok *toks, unsigned max)
{
    struct parser p = {.s = s, .len = len, .toks = toks, .max = max};
    if (len >= UINT32_MAX)
        return -E2BIG;
    int r = parse_value(&p);
    if (r < 0)
        return r;
    skip_ws(&p);
    if (p.pos != p.len)
        return -EINVAL;
    return (int)p.n;
}

int json_get(const char *s, const struct json_tok *toks, int obj, const char *key)
{
    if (obj < 0 || toks[obj].type != JSON_OBJECT)
        return -1;
    int k = obj + 1;
    for (uint32_t i = 0; i < toks[obj].size; i++) {
        int v = k + 1;
        if (json_str_eq(s, &toks[k], key))
            return v;
        k = (int)toks[v].next;
    }
    return -1;
}

int json_str(const char *s, const struct json_tok *t, char *out, size_t outlen)
{
    if (t->type != JSON_STRING || outlen == 0)
        return -EINVAL;
    size_t o = 0;
    for (uint32_t i = t->start; i < t->end;) {
        uint32_t cp;
        char c = s[i];
        if (c != '\\') {
            if (o + 1 >= outlen)
                return -ENOSPC;
            out[o++] = c;
            i++;
            continue;
        }
        char e = s[i + 1];
        i += 2;
        switch (e) {
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case 'n': cp = '\n'; break;
        case 'r': cp = '\r'; break;
        case 't': cp = '\t'; break;
        case 'u': {
            hex4(s + i, &cp);
            i += 4;
            if (cp >= 0xd800 && cp <= 0xdbff) {
                uint32_t lo;
                hex4(s + i + 2, &lo);
                i += 6;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            }
            break;
        }
        default: cp = (unsigned char)e; break;
        }
        if (cp == 0)
            return -EINVAL;
        char enc[4];
        size_t n;
        if (cp < 0x80) {
            enc[0] = (char)cp;
            n = 1;
        } else if (cp < 0x800) {
            enc[0] = (char)(0xc0 | cp >> 6);
            enc[1] = (char)(0x80 | (cp & 0x3f));
            n = 2;
        } else if (cp < 0x10000) {
            enc[0] = (char)(0xe0 | cp >> 12);
            enc[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
            enc[2] = (char)(0x80 | (cp & 0x3f));
            n = 3;
        } else {
            enc[0] = (char)(0xf0 | cp >> 18);
            enc[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
            enc[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
            enc[3] = (char)(0x80 | (cp & 0x3f));
            n = 4;
        }
        if (o + n >= outlen)
            return -ENOSPC;
        memcpy(out + o, enc, n);
        o += n;
    }
    out[o] = '\0';
    return (int)o;
}

bool json_str_eq(const char *s, const struct json_tok *t, const char *str)
{
    if (t->type != JSON_STRING)
        return false;
    if (!t->escaped) {
        size_t n = strlen(str);
        return t->end - t->start == n && memcmp(s + t->start, str, n) == 0;
    }
    char tmp[512];
    int n = json_str(s, t, tmp, sizeof(tmp));
    return n >= 0 && strcmp(tmp, str) == 0;
}

int json_int(const char *s, const struct json_tok *t, int64_t min, int64_t max, int64_t *out)
{
    if (t->type != JSON_NUMBER)
        return -EINVAL;
    const char *p = s + t->start;
    size_t n = t->end - t->start;
    bool neg = n > 0 && p[0] == '-';
    uint64_t v;
    /* The negative range reaches one further: -9223372036854775808 is an
     * int64_t. Negate in unsigned arithmetic so that value does not overflow. */
    if (util_parse_u64(p + neg, n - neg, 0, (uint64_t)INT64_MAX + neg, &v) != 0)
        return -EINVAL;
    int64_t iv = neg ? (int64_t)(0 - v) : (int64_t)v;
    if (iv < min || iv > max)
        return -EINVAL;
    *out = iv;
    return 0;
}

void json_append_str(struct buf *out, const char *str, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    char *d = buf_reserve(out, len * 6 + 2);
    size_t o = 0;
    d[o++] = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)str[i];
        if (c == '"' || c == '\\') {
            d[o++] = '\\';
            d[o++] = (char)c;
        } else if (c < 0x20) {
            d[o++] = '\\';
            d[o++] = 'u';
            d[o++] = '0';
            d[o++] = '0';
            d[o++] = hex[c >> 4];
            d[o++] = hex[c & 15];
        } else {
            d[o++] = (char)c;
        }
    }
    d[o++] = '"';
    buf_commit(out, o);
}

/* ---------------------------------------------------------------- fast scan */

/* Skips a string starting at the opening quote; returns the index after the
 * closing quote or len on error. */
static size_t skip_string(const char *s, size_t len, size_t i)
{
    /* memchr to each quote, then count the backslashes before it: a prompt
     * of megabytes is skipped at memchr's speed, not byte by byte. */
    for (i++; i < len;) {
        const char *q = memchr(s + i, '"', len - i);
        if (q == NULL)
            break;
        size_t at = (size_t)(q - s), bs = 0;
        while (at - bs > i && s[at - bs - 1] == '\\')
            bs++;
        if (bs % 2 == 0)
            return at + 1;
        i = at + 1;
    }
    return len + 1;
}

static size_t skip_ws_at(const char *s, size_t len, size_t i)
{
    while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
        i++;
    return i;
}

/* Skips one value of any kind by bracket counting (strings respected). */
static size_t skip_value(const char *s, size_t len, size_t i)
{
    int depth = 0;
    while (i < len) {
        char c = s[i];
        if (c == '"') {
            i = skip_string(s, len, i);
            if (depth == 0)
                return i;
            continue;
        }
        if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            if (depth == 0)
                return i; /* end of the enclosing object: let the caller see it */
            if (--depth == 0)
                return i + 1;
        } else if (depth == 0 && (c == ',')) {
            return i;
        }
        i++;
    }
    return i;
}

int json_top_string(const char *s, size_t len, const char *key, struct slice *val)
{
    size_t klen = strlen(key);
    size_t i = skip_ws_at(s, len, 0);
    if (i >= len || s[i] != '{')
        return -EINVAL;
    i++;
    for (;;) {
        i = skip_ws_at(s, len, i);
        if (i >= len)
            return -EINVAL;
        if (s[i] == '}')
            return 0;
        if (s[i] != '"')
            return -EINVAL;
        size_t ks = i + 1, ke = skip_string(s, len, i);
        if (ke > len)
            return -EINVAL;
        bool match;
        if (memchr(s + ks, '\\', ke - 1 - ks) == NULL) {
            match = ke - 1 - ks == klen && memcmp(s + ks, key, klen) == 0;
        } else {
            /* An escaped key ("mod\u0065l") names the same member as the
             * plain one, as json_get() sees it. Validate and compare it
             * with the real string parser, which checks every escape
             * against the end of the text before decoding it. */
            struct json_tok kt;
            struct parser p = {.s = s, .len = len, .pos = i, .toks = &kt, .max = 1};
            if (parse_string(&p) < 0)
                return -EINVAL;
            match = json_str_eq(s, &kt, key);
        }
        i = skip_ws_at(s, len, ke);
        if (i >= len || s[i] != ':')
            return -EINVAL;
        i = skip_ws_at(s, len, i + 1);
        if (i >= len)
            return -EINVAL;
        if (match) {
            /* The first member with this name decides, as in json_get():
             * a later duplicate must not win over a non-string first one. */
            if (s[i] != '"')
                return 0;
            size_t ve = skip_string(s, len, i);
            if (ve > len)
                return -EINVAL;
            *val = slice_make(s + i + 1, ve - i - 2);
            return 1;
        }
        i = skip_value(s, len, i);
        i = skip_ws_at(s, len, i);
        if (i >= len)
            return -EINVAL;
        if (s[i] == ',')
            i++;
        else if (s[i] != '}')
            return -EINVAL;
    }
}

/* ---------------------------------------------------------------- all fields */

static bool is_scalar_char(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           c == '-' || c == '+' || c == '.';
}

/* One bit per open container (1 = object) in a 64-bit word. */
_Static_assert(JSON_MAX_DEPTH <= 64, "container kinds must fit in a uint64_t");

/* Skips the value starting at <s[i]> (not whitespace): returns the index
 * after it, or len + 1 if its framing is broken. Unlike skip_value(), the
 * closing brackets must match the opening ones by kind, depth stops where
 * json_parse() stops (the top-level object is one level), and a value must
 * start like a value: a body that our scan and the backend's parser would
 * split into members differently is refused, not guessed at. Strings go by
 * memchr; scalars are a run of their alphabet, not checked further. */
static size_t skip_member_value(const char *s, size_t len, size_t i)
{
    uint64_t kinds = 0;
    unsigned depth = 0;
    do {
        char c = s[i];
        if (c == '"') {
            i = skip_string(s, len, i);
            if (i > len)
                return len + 1;
        } else if (c == '{' || c == '[') {
            if (depth == JSON_MAX_DEPTH - 1)
                return len + 1;
            kinds = kinds << 1 | (c == '{');
            depth++;
            i++;
        } else if (c == '}' || c == ']') {
            if (depth == 0 || (kinds & 1) != (c == '}'))
                return len + 1;
            kinds >>= 1;
            depth--;
            i++;
        } else if (is_scalar_char(c)) {
            while (i < len && is_scalar_char(s[i]))
                i++;
        } else if (depth > 0 && (c == ',' || c == ':' || c == ' ' || c == '\t' || c == '\n' ||
                                 c == '\r')) {
            i++;
        } else {
            return len + 1;
        }
    } while (depth > 0 && i < len);
    return depth > 0 ? len + 1 : i;
}

static enum json_type type_at(char c)
{
    switch (c) {
    case '"': return JSON_STRING;
    case '{': return JSON_OBJECT;
    case '[': return JSON_ARRAY;
    case 't': return JSON_TRUE;
    case 'f': return JSON_FALSE;
    case 'n': return JSON_NULL;
    default: return JSON_NUMBER;
    }
}

static int top_fields_fail(struct json_field *f, unsigned nf, int err)
{
    for (unsigned k = 0; k < nf; k++) {
        f[k].count = 0;
        f[k].type = JSON_NONE;
        f[k].val = slice_make(NULL, 0);
    }
    return err;
}

int json_top_fields(const char *s, size_t len, struct json_field *f, unsigned nf)
{
    size_t klen[JSON_TOP_FIELDS_MAX];
    if (nf > JSON_TOP_FIELDS_MAX)
        return top_fields_fail(f, 0, -E2BIG);
    for (unsigned k = 0; k < nf; k++)
        klen[k] = strlen(f[k].key);
    top_fields_fail(f, nf, 0);

    size_t i = skip_ws_at(s, len, 0);
    if (i >= len || s[i] != '{')
        return top_fields_fail(f, nf, -EINVAL);
    i = skip_ws_at(s, len, i + 1);
    if (i < len && s[i] == '}') {
        i++;
    } else {
        for (;;) {
            if (i >= len || s[i] != '"')
                return top_fields_fail(f, nf, -EINVAL);
            size_t ks = i + 1, ke = skip_string(s, len, i);
            if (ke > len)
                return top_fields_fail(f, nf, -EINVAL);
            /* Which requested field this member names, if any. Escaped
             * names are validated and decoded once by the real string
             * parser, then compared as json_str_eq() (what json_get()
             * uses) would: decoded, within the same 512-byte scratch. */
            int hit = -1;
            if (memchr(s + ks, '\\', ke - 1 - ks) == NULL) {
                for (unsigned k = 0; k < nf && hit < 0; k++)
                    if (ke - 1 - ks == klen[k] && memcmp(s + ks, f[k].key, klen[k]) == 0)
                        hit = (int)k;
            } else {
                struct json_tok kt;
                struct parser p = {.s = s, .len = len, .pos = i, .toks = &kt, .max = 1};
                char name[512];
                if (parse_string(&p) < 0)
                    return top_fields_fail(f, nf, -EINVAL);
                if (json_str(s, &kt, name, sizeof(name)) >= 0)
                    for (unsigned k = 0; k < nf && hit < 0; k++)
                        if (strcmp(name, f[k].key) == 0)
                            hit = (int)k;
            }
            i = skip_ws_at(s, len, ke);
            if (i >= len || s[i] != ':')
                return top_fields_fail(f, nf, -EINVAL);
            i = skip_ws_at(s, len, i + 1);
            if (i >= len)
                return top_fields_fail(f, nf, -EINVAL);
            size_t vs = i;
            i = skip_member_value(s, len, i);
            if (i > len)
                return top_fields_fail(f, nf, -EINVAL);
            /* Every requested name may appear several times; only the
             * first decides type and value, as in json_get(). */
            if (hit >= 0 && f[hit].count++ == 0) {
                f[hit].type = type_at(s[vs]);
                if (f[hit].type == JSON_STRING)
                    f[hit].val = slice_make(s + vs + 1, i - vs - 2);
            }
            i = skip_ws_at(s, len, i);
            if (i < len && s[i] == '}') {
                i++;
                break;
            }
            if (i >= len || s[i] != ',')
                return top_fields_fail(f, nf, -EINVAL);
            i = skip_ws_at(s, len, i + 1);
        }
    }
    /* Nothing after the object: "{...} {...}" is two texts, and a parser
     * that reads a stream would serve the second. */
    if (skip_ws_at(s, len, i) != len)
        return top_fields_fail(f, nf, -EINVAL);
    return 0;
}

int json_decode_slice(const char *s, struct slice v, char *out, size_t outlen)
{
    struct json_tok t = {.type = JSON_STRING,
                         .start = (uint32_t)(v.p - s),
                         .end = (uint32_t)(v.p - s + v.len),
                         .escaped = memchr(v.p, '\\', v.len) != NULL};
    return json_str(s, &t, out, outlen);
}
