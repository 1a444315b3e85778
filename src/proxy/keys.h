/* SPDX-License-Identifier: MIT
 * API keys on the public port (--api-key-file). Off by default: without a
 * key file every request is served, as the original demo did.
 *
 * The file holds one key per line, then optional settings:
 *
 *     # KEY                         settings (all optional)
 *     sk-team-a-3f9c0d2e8b71a6c4    name=team-a models=llama-3-1b|llama-3-3b rpm=60 tpm=20000 concurrent=2
 *     sk-batch-77d1e0c9a4b25f38     name=batch concurrent=1
 *
 * A request must carry `Authorization: Bearer KEY` (what OpenAI SDKs send);
 * without a valid key it gets 401 before its body is read. Keys are found
 * by a seeded hash and then compared in constant time; they are never
 * logged, only their name (a label in metrics, a field in the access log).
 *
 * Limits (requests per minute, tokens per minute, requests at once) hold
 * per replica, per key *name*: keys that share a name share the limits, and
 * the counts survive a reload of the file. Tokens are the answers' `usage`
 * (prompt + completion), counted when a response ends; a request is refused
 * with 429 while the last minute's tokens are at the limit.
 *
 * A keyring is immutable once loaded and reference-counted: a request keeps
 * the one it was admitted with while a reload swaps in another. */
#ifndef LLAMALB_KEYS_H
#define LLAMALB_KEYS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct buf;

#define KEY_NAME_MAX 63
#define KEYS_MAX 10000
#define KEY_USAGE_MAX 4096 /* distinct key names counted; more share "(other)" */

/* What a key name has used: shared by every keyring (reloads keep it). */
struct key_usage {
    char name[KEY_NAME_MAX + 1];
    unsigned inflight;
    int64_t window;            /* the minute (ms / 60000) the *_cur counts are for */
    uint64_t req_cur, req_prev;
    uint64_t tok_cur, tok_prev;
    /* for /metrics */
    uint64_t requests, refused, prompt_tokens, completion_tokens;
};

struct key_usage_table {
    pthread_mutex_t lock;
    struct key_usage *v;       /* KEY_USAGE_MAX entries, allocated once */
    unsigned n;
};

struct api_key {
    char *secret;
    size_t len;
    uint64_t hash;
    char name[KEY_NAME_MAX + 1];
    char *models;              /* packed NUL-separated names, NULL = every model */
    unsigned nmodels;
    unsigned rpm, tpm, concurrent; /* 0 = no limit */
    struct key_usage *use;
};

struct keyring {
    atomic_int refs;
    uint64_t seed;
    unsigned n, nslots;
    struct api_key *keys;
    uint32_t *slots;           /* open addressing: index + 1 into keys, 0 = empty */
};

/* Why a request was refused. */
enum key_verdict { KEY_OK = 0, KEY_RPM, KEY_TPM, KEY_CONCURRENT };

void key_usage_init(struct key_usage_table *t);
void key_usage_deinit(struct key_usage_table *t);

/* Loads <path>. Returns a keyring (one reference) or NULL with <err> set to
 * "PATH:LINE: reason". */
struct keyring *keyring_load(const char *path, struct key_usage_table *t, char *err, size_t errlen);
static inline void keyring_ref(struct keyring *k) { atomic_fetch_add(&k->refs, 1); }
void keyring_unref(struct keyring *k);

/* The key whose secret is <p>/<n>, or NULL. Constant time in the secret. */
const struct api_key *keyring_find(const struct keyring *k, const char *p, size_t n);
/* True if <key> may use <model> ("" or NULL: a request naming no model). */
bool key_allows_model(const struct api_key *key, const char *model);

/* Admits one request of <key> at <now_ms>, or says which limit it hit and
 * in how many seconds to retry. Counts the request when admitted. */
enum key_verdict key_admit(struct key_usage_table *t, const struct api_key *key, int64_t now_ms,
                           unsigned *retry_after_s);
/* A request admitted by key_admit ended, having used <prompt> + <completion> tokens. */
void key_done(struct key_usage_table *t, struct key_usage *u, int64_t now_ms, uint64_t prompt,
              uint64_t completion);
/* Counts a refused request of <u>. */
void key_refused(struct key_usage_table *t, struct key_usage *u);
/* The x-ratelimit-* headers for <key> now (empty if it has no limit). */
void key_ratelimit_headers(struct key_usage_table *t, const struct api_key *key, int64_t now_ms,
                           struct buf *out);

/* Per key name: requests, refusals, tokens, in flight. */
void key_write_metrics(struct key_usage_table *t, struct buf *out);

#endif
