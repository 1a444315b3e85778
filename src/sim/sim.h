/* SPDX-License-Identifier: MIT
 * llamalb-sim: a llama-api-server 0.28.1 simulator. Same routes, JSON field
 * order, SSE framing and error texts as the real server (docs/sim.md),
 * the same one-generation-at-a-time behaviour, plus knobs for latency, token
 * rate, slots and injected faults. Used by tests, benchmarks and the demo.
 *
 * Module map (one job per file):
 *   main.c    the command line
 *   faults.c  fault specs (--fault, X-Sim-Fault) and what they do to a request
 *   slots.c   the generation scheduler: slots, FIFO, the frozen server
 *   api.c     request fields, every JSON body and error text, SSE events
 *   files.c   /v1/files and /v1/chunks, in memory
 *   server.c, conn.c, routes.c, gen.c, reply.c: the server on its event
 *             loop; their shared state and contracts are in server.h
 * This header has what needs no event loop, so unit tests can call it.
 * docs/sim.md is the user's manual. */
#ifndef LLAMALB_SIM_H
#define LLAMALB_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "list.h"
#include "slice.h"

struct buf;
struct http1_msg;

#define SIM_NAME_MAX 128 /* bytes of --model-name and --id, NUL included */

/* A set of injected faults, from --fault (whole instance) or the X-Sim-Fault
 * request header (one request). A zeroed struct means "no fault"; the *_after
 * counts use -1 for "not set" once sim_fault_init() has run. */
struct sim_fault {
    int status;         /* answer this status (plain text) instead of serving; 0 = off */
    int close_after;    /* streams: close after N events, no terminating chunk; -1 = off */
    int stall_after;    /* streams: send nothing more after N events; -1 = off */
    bool hang;          /* read the request, never answer */
    bool garbage;       /* send bytes that are not a status line, then close */
    bool reset;         /* send the status line, then reset the connection (RST) */
    int slow_headers;   /* ms between the bytes of the response head; 0 = off */
    bool refuse;        /* instance only: bind but never listen (ECONNREFUSED) */
    int64_t unhealthy_ms; /* instance only: answer 503 to everything for this long; 0 = off */
};

/* Everything the command line sets. Owned by main(); sim_run() reads it. */
struct sim_config {
    const char *listen;       /* "HOST:PORT", port 0 = any */
    char model[SIM_NAME_MAX]; /* --model-name: the answering model, always */
    char id[SIM_NAME_MAX];    /* --id: X-Sim-Id header value (default: model) */
    unsigned slots;           /* simultaneous generations, >= 1 */
    int64_t ttft_ms;          /* time to first token, ms */
    double tokens_per_sec;    /* 0 = no delay between tokens */
    uint64_t seed;            /* PRNG seed for jitter and ids; 0 = random */
    unsigned jitter_pct;      /* +- percent applied to every delay, 0-100 */
    unsigned completion_tokens; /* default length when the request sets none */
    unsigned max_tokens_cap;  /* upper bound on any requested length */
    unsigned embedding_dim;   /* floats per embedding vector */
    bool embeddings;          /* false: /v1/embeddings fails like a chat-only server */
    bool include_usage;       /* --include-usage: usage chunk default for streams */
    int block;                /* -1 = auto (slots == 1), 0 = off, 1 = on */
    const char *api_key;      /* --api-key / env API_KEY; NULL = no check */
    const char *request_log;  /* --request-log: one line per request read, NULL = none */
    struct sim_fault fault;   /* --fault: applies to every request */
};

/* Fills <c> with the defaults of docs/sim.md. */
void sim_config_init(struct sim_config *c);

/* Resets <f> to "no fault". */
void sim_fault_init(struct sim_fault *f);

/* Parses a comma-separated fault list such as "status=503" or
 * "close-after=3,slow-headers=20" into <f> (items add to what <f> holds).
 * <instance> allows the instance-only items (refuse, unhealthy-for). Returns
 * 0, or -EINVAL with a message in <err> (<errlen> bytes). */
int sim_fault_parse(struct sim_fault *f, struct slice spec, bool instance, char *err,
                    size_t errlen);

/* The faults of one request: the instance's <inst> plus, if the parsed
 * request <msg> has an X-Sim-Fault header, that header's spec (instance-only
 * items refused). Returns 0, or -EINVAL with the parse error in <err> (<f>
 * then holds the instance faults plus the items parsed before the error). */
int sim_fault_from_headers(struct sim_fault *f, const struct sim_fault *inst,
                           const struct http1_msg *msg, char *err, size_t errlen);

/* Runs the server until SIGTERM/SIGINT. Prints "listening on HOST:PORT" on
 * stdout first. Returns the process exit status. */
int sim_run(const struct sim_config *c);

/* ---------------------------------------------------------------- slots.c
 *
 * The generation scheduler: <slots> generations run at once, the others wait
 * in arrival order (FIFO). With <block> on, a running non-streaming
 * generation may "freeze" the server (the real server's only thread is busy
 * computing it): while frozen, sim_slot_next() hands out nothing and the
 * server defers all other work. Pure bookkeeping, no I/O or clock; the
 * caller owns the sim_slot entries (embedded in its generations) and must
 * sim_slot_release() each one before freeing it. One thread only. */

/* One generation's place in the scheduler. Zeroed = neither queued nor
 * active. */
struct sim_slot {
    struct list node; /* in sim_slots.waitq while queued */
    bool active;      /* holds one of the slots */
};

struct sim_slots {
    unsigned slots;         /* slots in all, >= 1 */
    bool block;             /* sim_slot_freeze() freezes (else it does nothing) */
    unsigned active;        /* slots in use */
    unsigned queued;        /* entries in <waitq> */
    bool frozen;
    const struct sim_slot *frozen_by;
    struct list waitq;      /* waiting entries, oldest first */
    void (*on_freeze)(void *arg, bool frozen); /* told of every freeze and thaw */
    void *arg;
};

void sim_slots_init(struct sim_slots *s, unsigned slots, bool block,
                    void (*on_freeze)(void *arg, bool frozen), void *arg);

/* A new generation asks for a slot. Takes one and returns true if one is
 * free and nobody waits; else queues <e> at the tail and returns false. */
bool sim_slot_acquire(struct sim_slots *s, struct sim_slot *e);

/* The oldest waiting entry, now holding a slot, or NULL when nothing waits,
 * every slot is taken, or the server is frozen. The caller starts it. */
struct sim_slot *sim_slot_next(struct sim_slots *s);

/* <e> is done or cancelled: leaves its slot or the queue (whichever it is
 * in; nothing if neither) and thaws the server if <e> froze it. */
void sim_slot_release(struct sim_slots *s, struct sim_slot *e);

/* <e>, holding a slot, computes a non-streaming answer: with <block> on,
 * freezes the server until sim_slot_release() or sim_slot_unfreeze() of <e>.
 * Returns whether it froze. */
bool sim_slot_freeze(struct sim_slots *s, struct sim_slot *e);

/* Thaws the server if <e> froze it (e keeps its slot). */
void sim_slot_unfreeze(struct sim_slots *s, const struct sim_slot *e);

static inline bool sim_slot_queued(const struct sim_slot *e) { return list_linked(&e->node); }

/* ------------------------------------------------------------------ api.c */

/* What a generation request asked for, read from its JSON body. */
struct sim_req {
    int64_t max_tokens;   /* requested length, -1 = not given */
    bool stream;          /* "stream": true */
    int include_usage;    /* stream_options.include_usage: -1 absent, 0, 1 */
    char user[256];       /* "user", decoded and cut to 255 bytes; "" = absent */
    unsigned prompt_tokens; /* estimated from the prompt bytes, >= 1 */
    unsigned n_inputs;    /* embeddings: number of input strings */
};

enum sim_api {
    SIM_API_CHAT = 0,
    SIM_API_COMPLETIONS,
    SIM_API_EMBEDDINGS,
    SIM_API_RESPONSES,
};

/* Parses the body <body>/<len> of an <api> request into <r>. On success
 * returns 0. On a body the real server refuses, appends the real server's
 * 400 text to <err> and returns -EINVAL. <body> must outlive the slices
 * left in <r>. */
int sim_parse_request(enum sim_api api, const char *body, size_t len, struct sim_req *r,
                      struct buf *err);

/* Estimated prompt tokens for <n> prompt bytes: ceil(n / 4), at least 1. */
unsigned sim_prompt_tokens(size_t n);

/* Appends the text of token <i> (0-based) of a generation: "w1", " w2", ... so
 * the concatenation of tokens 0..n-1 is "w1 w2 ... wn". */
void sim_token_text(struct buf *out, unsigned i);

/* Writes a random (version 4) UUID from the PRNG <state> into <out> (37 bytes). */
void sim_uuid(uint64_t *state, char out[37]);

/* The parts every generated body shares. */
struct sim_gen_info {
    const char *id;        /* response id, decoded (JSON-escaped on output) */
    size_t id_len;
    const char *model;     /* --model-name */
    int64_t created;       /* wall-clock seconds */
    unsigned prompt_tokens;
    unsigned completion_tokens;
};

/* Non-streaming bodies, appended to <out>. */
void sim_body_chat(struct buf *out, const struct sim_gen_info *g);
void sim_body_completion(struct buf *out, const struct sim_gen_info *g);
void sim_body_embeddings(struct buf *out, const struct sim_gen_info *g, unsigned n_inputs,
                         unsigned dim);
void sim_body_response(struct buf *out, const struct sim_gen_info *g);
void sim_body_models(struct buf *out, const char *model, int64_t created);
void sim_body_info(struct buf *out, const char *model, int port);

/* One SSE event (without HTTP chunk framing): a content chunk for token <i>,
 * the usage chunk, or the [DONE] line. */
void sim_sse_token(struct buf *out, const struct sim_gen_info *g, unsigned i);
void sim_sse_usage(struct buf *out, const struct sim_gen_info *g);
void sim_sse_done(struct buf *out);

/* Appends <s>/<len> with JSON whitespace outside strings removed: the compact
 * re-serialization the real server prints after "json_value: ". */
void sim_json_compact(struct buf *out, const char *s, size_t len);

/* ---------------------------------------------------------------- files.c */

/* The in-memory /v1/files store of one instance. */
struct sim_files;

struct sim_files *sim_files_new(void);
void sim_files_free(struct sim_files *fs);

/* How sim_files_handle() wants its answer sent. */
struct sim_files_reply {
    int status;             /* HTTP status */
    const char *ctype;      /* Content-Type, NULL = none (plain-text errors) */
    char disposition[300];  /* Content-Disposition value, "" = none */
};

/* Handles one /v1/files* or /v1/chunks request. <path> is the request path
 * without the query, <ctype> the request's Content-Type value (may be
 * empty), <body>/<len> the request body. Appends the answer body to <out>
 * and fills <rep>. <rng> feeds the file ids. */
void sim_files_handle(struct sim_files *fs, struct slice method, struct slice path,
                      struct slice ctype, const char *body, size_t len, uint64_t *rng,
                      struct buf *out, struct sim_files_reply *rep);

#endif
