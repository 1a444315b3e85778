/* SPDX-License-Identifier: MIT
 * API keys and their limits (keys.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "keys.h"
#include "metrics.h"
#include "util.h"

/* ---------------------------------------------------------------- usage */

void key_usage_init(struct key_usage_table *t)
{
    memset(t, 0, sizeof(*t));
    pthread_mutex_init(&t->lock, NULL);
    t->v = xcalloc(KEY_USAGE_MAX, sizeof(*t->v));
}

void key_usage_deinit(struct key_usage_table *t)
{
    free(t->v);
    pthread_mutex_destroy(&t->lock);
    memset(t, 0, sizeof(*t));
}

/* The usage entry of <name>, made on first sight (loading only: not on the
 * request path). Past KEY_USAGE_MAX names, the last entry is shared. */
static struct key_usage *usage_of(struct key_usage_table *t, const char *name)
{
    pthread_mutex_lock(&t->lock);
    struct key_usage *u = NULL;
    for (unsigned i = 0; i < t->n && u == NULL; i++)
        if (strcmp(t->v[i].name, name) == 0)
            u = &t->v[i];
    if (u == NULL) {
        if (t->n < KEY_USAGE_MAX - 1) {
            u = &t->v[t->n++];
            snprintf(u->name, sizeof(u->name), "%s", name);
        } else {
            u = &t->v[KEY_USAGE_MAX - 1];
            snprintf(u->name, sizeof(u->name), "(other)");
            if (t->n < KEY_USAGE_MAX)
                t->n = KEY_USAGE_MAX;
        }
    }
    pthread_mutex_unlock(&t->lock);
    return u;
}

/* Moves <u>'s minute windows to <now_ms> (lock held). */
static void roll(struct key_usage *u, int64_t now_ms)
{
    int64_t win = now_ms / 60000;
    if (win == u->window)
        return;
    if (win == u->window + 1) {
        u->req_prev = u->req_cur;
        u->tok_prev = u->tok_cur;
    } else {
        u->req_prev = u->tok_prev = 0;
    }
    u->req_cur = u->tok_cur = 0;
    u->window = win;
}

/* The count over the last 60 s: this minute's, plus the part of the last
 * minute's that still falls in the window (a sliding-window counter). The
 * part is rounded up: rounded down, a key at its limit just before a minute
 * boundary got one more request just after it. */
static uint64_t last_minute(uint64_t prev, uint64_t cur, int64_t now_ms)
{
    uint64_t into = (uint64_t)(now_ms % 60000);
    return cur + (prev * (60000 - into) + 59999) / 60000;
}

static unsigned seconds_left(int64_t now_ms)
{
    return (unsigned)((60000 - now_ms % 60000 + 999) / 1000);
}

enum key_verdict key_admit(struct key_usage_table *t, const struct api_key *key, int64_t now_ms,
                           unsigned *retry_after_s)
{
    struct key_usage *u = key->use;
    enum key_verdict v = KEY_OK;
    pthread_mutex_lock(&t->lock);
    roll(u, now_ms);
    if (key->concurrent != 0 && u->inflight >= key->concurrent) {
        v = KEY_CONCURRENT;
        *retry_after_s = 1;
    } else if (key->rpm != 0 && last_minute(u->req_prev, u->req_cur, now_ms) >= key->rpm) {
        v = KEY_RPM;
        *retry_after_s = seconds_left(now_ms);
    } else if (key->tpm != 0 && last_minute(u->tok_prev, u->tok_cur, now_ms) >= key->tpm) {
        v = KEY_TPM;
        *retry_after_s = seconds_left(now_ms);
    } else {
        u->inflight++;
        u->req_cur++;
        u->requests++;
    }
    if (v != KEY_OK)
        u->refused++;
    pthread_mutex_unlock(&t->lock);
    return v;
}

void key_done(struct key_usage_table *t, struct key_usage *u, int64_t now_ms, uint64_t prompt,
              uint64_t completion)
{
    pthread_mutex_lock(&t->lock);
    roll(u, now_ms);
    if (u->inflight > 0)
        u->inflight--;
    u->tok_cur += prompt + completion;
    u->prompt_tokens += prompt;
    u->completion_tokens += completion;
    pthread_mutex_unlock(&t->lock);
}

void key_refused(struct key_usage_table *t, struct key_usage *u)
{
    pthread_mutex_lock(&t->lock);
    u->refused++;
    pthread_mutex_unlock(&t->lock);
}

/* "x-ratelimit-limit-<what>: N", "-remaining-", "-reset-": appended piece
 * by piece, on every answer of a key with limits, where printf's format
 * parsing would be the dearest part. */
static void ratelimit_lines(struct buf *out, const char *what, size_t wlen, unsigned limit,
                            uint64_t used, unsigned reset)
{
    buf_append_lit(out, "x-ratelimit-limit-");
    buf_append(out, what, wlen);
    buf_append_lit(out, ": ");
    buf_append_u64(out, limit);
    buf_append_lit(out, "\r\nx-ratelimit-remaining-");
    buf_append(out, what, wlen);
    buf_append_lit(out, ": ");
    buf_append_u64(out, used >= limit ? 0 : limit - used);
    buf_append_lit(out, "\r\nx-ratelimit-reset-");
    buf_append(out, what, wlen);
    buf_append_lit(out, ": ");
    buf_append_u64(out, reset);
    buf_append_lit(out, "s\r\n");
}

void key_ratelimit_headers(struct key_usage_table *t, const struct api_key *key, int64_t now_ms,
                           struct buf *out)
{
    if (key->rpm == 0 && key->tpm == 0)
        return;
    pthread_mutex_lock(&t->lock);
    roll(key->use, now_ms);
    uint64_t req = last_minute(key->use->req_prev, key->use->req_cur, now_ms);
    uint64_t tok = last_minute(key->use->tok_prev, key->use->tok_cur, now_ms);
    pthread_mutex_unlock(&t->lock);
    unsigned reset = seconds_left(now_ms);
    if (key->rpm != 0)
        ratelimit_lines(out, "requests", 8, key->rpm, req, reset);
    if (key->tpm != 0)
        ratelimit_lines(out, "tokens", 6, key->tpm, tok, reset);
}

/* ---------------------------------------------------------------- keyring */

static uint64_t key_hash(uint64_t seed, const char *p, size_t n)
{
    uint64_t h = seed ^ 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 0x100000001B3ULL;
    return h ^ (h >> 29);
}

const struct api_key *keyring_find(const struct keyring *k, const char *p, size_t n)
{
    if (k == NULL || k->n == 0)
        return NULL;
    uint64_t h = key_hash(k->seed, p, n);
    for (unsigned i = (unsigned)h & (k->nslots - 1);; i = (i + 1) & (k->nslots - 1)) {
        uint32_t s = k->slots[i];
        if (s == 0)
            return NULL;
        const struct api_key *key = &k->keys[s - 1];
        /* The hash only finds the candidate (a seeded hash: an attacker
         * learns nothing of the secrets from where it lands); the secret
         * itself is compared in constant time. */
        if (key->hash == h && util_ct_equal(p, n, key->secret, key->len))
            return key;
    }
}

bool key_allows_model(const struct api_key *key, const char *model)
{
    if (key->models == NULL || model == NULL || model[0] == '\0')
        return true;
    const char *m = key->models;
    for (unsigned i = 0; i < key->nmodels; i++, m += strlen(m) + 1)
        if (strcmp(m, model) == 0)
            return true;
    return false;
}

static void keyring_free(struct keyring *k)
{
    for (unsigned i = 0; i < k->n; i++) {
        /* wipe the secrets before giving the memory back (a line refused
         * before its key was copied has none) */
        if (k->keys[i].secret != NULL)
            memset(k->keys[i].secret, 0, k->keys[i].len);
        free(k->keys[i].secret);
        free(k->keys[i].models);
    }
    free(k->keys);
    free(k->slots);
    free(k);
}

void keyring_unref(struct keyring *k)
{
    if (k != NULL && atomic_fetch_sub(&k->refs, 1) == 1)
        keyring_free(k);
}

static int parse_uint(const char *v, unsigned *out)
{
    uint64_t n;
    if (util_parse_u64(v, strlen(v), 0, UINT32_MAX, &n) != 0)
        return -1;
    *out = (unsigned)n;
    return 0;
}

/* Reads "models=a|b|c" into the key's packed list. */
static int parse_models(struct api_key *key, const char *v)
{
    size_t n = strlen(v);
    if (n == 0)
        return -1;
    key->models = xmalloc(n + 1);
    memcpy(key->models, v, n + 1);
    key->nmodels = 1;
    for (char *p = key->models; *p; p++)
        if (*p == '|') {
            *p = '\0';
            key->nmodels++;
        }
    const char *m = key->models;
    for (unsigned i = 0; i < key->nmodels; i++, m += strlen(m) + 1)
        if (m[0] == '\0' || strlen(m) > 127)
            return -1;
    return 0;
}

/* Parses one line's key and settings into <key>. Returns NULL or why not. */
static const char *parse_line(char *line, unsigned lineno, struct api_key *key)
{
    char *save = NULL, *tok = strtok_r(line, " \t", &save);
    size_t n = strlen(tok);
    if (n < 8 || n > 255)
        return "a key must be 8 to 255 characters";
    for (size_t i = 0; i < n; i++)
        if (tok[i] < 0x21 || tok[i] > 0x7e)
            return "a key must be printable ASCII without spaces";
    key->secret = xmalloc(n);
    memcpy(key->secret, tok, n);
    key->len = n;
    snprintf(key->name, sizeof(key->name), "key-%u", lineno);
    while ((tok = strtok_r(NULL, " \t", &save)) != NULL) {
        char *eq = strchr(tok, '=');
        if (eq == NULL)
            return "settings are name=, models=, rpm=, tpm=, concurrent=";
        *eq = '\0';
        const char *v = eq + 1;
        if (strcmp(tok, "name") == 0) {
            size_t k = strlen(v);
            if (k == 0 || k > KEY_NAME_MAX)
                return "name= must be 1 to 63 characters";
            for (size_t i = 0; i < k; i++)
                if (!((v[i] >= 'a' && v[i] <= 'z') || (v[i] >= 'A' && v[i] <= 'Z') ||
                      (v[i] >= '0' && v[i] <= '9') || strchr("-_.:@/", v[i]) != NULL))
                    return "name= takes letters, digits and - _ . : @ /";
            memcpy(key->name, v, k + 1);
        } else if (strcmp(tok, "models") == 0) {
            if (key->models != NULL || parse_models(key, v) != 0)
                return "models= takes names of 1 to 127 bytes separated by |";
        } else if (strcmp(tok, "rpm") == 0) {
            if (parse_uint(v, &key->rpm) != 0)
                return "rpm= takes a whole number";
        } else if (strcmp(tok, "tpm") == 0) {
            if (parse_uint(v, &key->tpm) != 0)
                return "tpm= takes a whole number";
        } else if (strcmp(tok, "concurrent") == 0) {
            if (parse_uint(v, &key->concurrent) != 0)
                return "concurrent= takes a whole number";
        } else {
            return "settings are name=, models=, rpm=, tpm=, concurrent=";
        }
    }
    return NULL;
}

/* Fills the hash slots; returns a duplicate's index + 1, or 0. */
static unsigned index_keys(struct keyring *k)
{
    k->nslots = 16;
    while (k->nslots < k->n * 2)
        k->nslots *= 2;
    k->slots = xcalloc(k->nslots, sizeof(*k->slots));
    for (unsigned j = 0; j < k->n; j++) {
        struct api_key *key = &k->keys[j];
        key->hash = key_hash(k->seed, key->secret, key->len);
        unsigned i = (unsigned)key->hash & (k->nslots - 1);
        for (; k->slots[i] != 0; i = (i + 1) & (k->nslots - 1)) {
            const struct api_key *o = &k->keys[k->slots[i] - 1];
            if (o->len == key->len && memcmp(o->secret, key->secret, key->len) == 0)
                return j + 1;
        }
        k->slots[i] = j + 1;
    }
    return 0;
}

struct keyring *keyring_load(const char *path, struct key_usage_table *t, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    struct keyring *k = xcalloc(1, sizeof(*k));
    atomic_init(&k->refs, 1);
    util_random_bytes(&k->seed, sizeof(k->seed));
    unsigned cap = 0, lineno = 0, *lines = NULL;
    char line[4096];
    const char *why = NULL;
    while (why == NULL && fgets(line, sizeof(line), f) != NULL) {
        lineno++;
        size_t n = strlen(line);
        if (n == sizeof(line) - 1 && line[n - 1] != '\n') {
            why = "line too long";
            break;
        }
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' ' ||
                         line[n - 1] == '\t'))
            line[--n] = '\0';
        char *p = line + strspn(line, " \t");
        if (*p == '\0' || *p == '#')
            continue;
        if (k->n == KEYS_MAX) {
            why = "more than 10000 keys";
            break;
        }
        if (k->n == cap) {
            cap = cap ? cap * 2 : 16;
            k->keys = xrealloc(k->keys, cap * sizeof(*k->keys));
            lines = xrealloc(lines, cap * sizeof(*lines));
        }
        memset(&k->keys[k->n], 0, sizeof(k->keys[0]));
        lines[k->n] = lineno;
        why = parse_line(p, lineno, &k->keys[k->n]);
        k->n++; /* freed with the ring even when refused */
    }
    fclose(f);
    unsigned dup = why == NULL ? index_keys(k) : 0;
    if (dup != 0) {
        lineno = lines[dup - 1];
        why = "the same key is listed twice";
    }
    free(lines);
    if (why != NULL) {
        snprintf(err, errlen, "%s:%u: %s", path, lineno, why);
        keyring_free(k);
        return NULL;
    }
    for (unsigned j = 0; j < k->n; j++)
        k->keys[j].use = usage_of(t, k->keys[j].name);
    return k;
}

/* ---------------------------------------------------------------- metrics */

void key_write_metrics(struct key_usage_table *t, struct buf *out)
{
    static const struct metric_family fam[] = {
        {"llamalb_key_requests_total", "Requests admitted, by API key name.", METRIC_COUNTER},
        {"llamalb_key_refused_total", "Requests refused by a key's limits (429).",
         METRIC_COUNTER},
        {"llamalb_key_prompt_tokens_total", "Prompt tokens of answered requests (usage).",
         METRIC_COUNTER},
        {"llamalb_key_completion_tokens_total",
         "Completion tokens of answered requests (usage).", METRIC_COUNTER},
        {"llamalb_key_inflight", "Requests of the key in progress.", METRIC_GAUGE},
    };
    pthread_mutex_lock(&t->lock);
    unsigned n = t->n;
    struct key_usage *copy = n ? xmalloc(n * sizeof(*copy)) : NULL;
    if (n)
        memcpy(copy, t->v, n * sizeof(*copy));
    pthread_mutex_unlock(&t->lock);
    for (size_t f = 0; f < ARRAY_SIZE(fam) && n > 0; f++) {
        metric_head(out, &fam[f]);
        for (unsigned i = 0; i < n; i++) {
            const struct key_usage *u = &copy[i];
            uint64_t v = f == 0   ? u->requests
                         : f == 1 ? u->refused
                         : f == 2 ? u->prompt_tokens
                         : f == 3 ? u->completion_tokens
                                  : u->inflight;
            char esc[METRIC_LABEL_LEN(KEY_NAME_MAX + 8)];
            struct metric_label l = {"key", metric_label_escape(esc, sizeof(esc), u->name)};
            metric_u64(out, fam[f].name, NULL, &l, 1, v);
        }
    }
    free(copy);
}
