/* SPDX-License-Identifier: MIT
 * llamalb-sim's entry point: the command line (docs/sim.md lists every flag). */

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "sim.h"
#include "util.h"

static const char usage[] =
    "usage: llamalb-sim [options]\n"
    "A llama-api-server 0.28.1 simulator (docs/sim.md).\n"
    "\n"
    "  --listen ADDR            HOST:PORT to listen on (default 0.0.0.0:8080; port 0 = any)\n"
    "  --model-name NAME        model that answers every request (default \"default\")\n"
    "  --id NAME                value of the X-Sim-Id header (default: the model name)\n"
    "  --request-log FILE       append \"X-Request-Id route\" for every request read\n"
    "  --slots N                simultaneous generations (default 1); the rest wait FIFO\n"
    "  --ttft-ms N              time to first token in ms (default 0)\n"
    "  --tokens-per-sec N       token rate after the first (default 0 = no delay)\n"
    "  --jitter PCT             +-PCT% random spread on every delay (default 0)\n"
    "  --seed N                 PRNG seed for jitter and ids (default: random)\n"
    "  --completion-tokens N    length when the request sets none (default 16)\n"
    "  --max-tokens-cap N       upper bound on a requested length (default 100000)\n"
    "  --embedding-dim N        floats per embedding (default 8)\n"
    "  --no-embeddings          /v1/embeddings fails like a chat-only server\n"
    "  --include-usage          end streams with a usage chunk unless the request says no\n"
    "  --block-during-generation / --no-block-during-generation\n"
    "                           answer nothing else while a non-streaming generation\n"
    "                           runs (default: on with one slot, off with more)\n"
    "  --api-key KEY            check Authorization like the real server (env API_KEY)\n"
    "  --fault SPEC             inject faults into every request (repeatable), e.g.\n"
    "                           status=503, close-after=3, stall-after=2, hang, garbage,\n"
    "                           reset, slow-headers=50ms, refuse, unhealthy-for=5s\n"
    "  --log-level LEVEL        debug, info, warn or error (default warn)\n"
    "  --help                   this text\n"
    "  --version                the version\n"
    "\n"
    "Per request, the header X-Sim-Fault takes the same SPEC (not refuse/unhealthy-for).\n"
    "Prints \"listening on HOST:PORT\" on stdout when ready; SIGTERM/SIGINT stop it.\n";

static int die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int die(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "llamalb-sim: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    return 2;
}

static int num(const char *opt, const char *v, uint64_t min, uint64_t max, uint64_t *out)
{
    if (util_parse_u64(v, strlen(v), min, max, out) != 0)
        return die("bad value '%s' for %s", v, opt);
    return 0;
}

int main(int argc, char **argv)
{
    struct sim_config cfg;
    bool id_set = false;
    uint64_t u;
    char err[160];

    sim_config_init(&cfg);
    log_min_level = LOG_WARN;
    const char *env_key = getenv("API_KEY");
    if (env_key != NULL && env_key[0] != '\0')
        cfg.api_key = env_key;

    for (int i = 1; i < argc; i++) {
        char *opt = argv[i], *val = NULL;
        char *eq = strncmp(opt, "--", 2) == 0 ? strchr(opt, '=') : NULL;
        if (eq != NULL) {
            *eq = '\0';
            val = eq + 1;
        }
        /* Flags without a value. */
        if (strcmp(opt, "--help") == 0 || strcmp(opt, "-h") == 0) {
            fputs(usage, stdout);
            return 0;
        } else if (strcmp(opt, "--version") == 0) {
            puts("llamalb-sim " LLAMALB_VERSION);
            return 0;
        } else if (strcmp(opt, "--include-usage") == 0) {
            cfg.include_usage = true;
            continue;
        } else if (strcmp(opt, "--no-embeddings") == 0) {
            cfg.embeddings = false;
            continue;
        } else if (strcmp(opt, "--block-during-generation") == 0) {
            cfg.block = 1;
            continue;
        } else if (strcmp(opt, "--no-block-during-generation") == 0) {
            cfg.block = 0;
            continue;
        }
        if (val == NULL) {
            if (i + 1 >= argc)
                return die("%s needs a value", opt);
            val = argv[++i];
        }
        int rc = 0;
        if (strcmp(opt, "--listen") == 0) {
            cfg.listen = val;
        } else if (strcmp(opt, "--model-name") == 0 || strcmp(opt, "-m") == 0) {
            if (strlen(val) == 0 || strlen(val) >= sizeof(cfg.model))
                return die("bad model name '%s'", val);
            snprintf(cfg.model, sizeof(cfg.model), "%s", val);
        } else if (strcmp(opt, "--id") == 0) {
            if (strlen(val) == 0 || strlen(val) >= sizeof(cfg.id) || strpbrk(val, "\r\n"))
                return die("bad id '%s'", val);
            snprintf(cfg.id, sizeof(cfg.id), "%s", val);
            id_set = true;
        } else if (strcmp(opt, "--slots") == 0) {
            rc = num(opt, val, 1, 100000, &u);
            cfg.slots = (unsigned)u;
        } else if (strcmp(opt, "--ttft-ms") == 0) {
            rc = num(opt, val, 0, 3600000, &u);
            cfg.ttft_ms = (int64_t)u;
        } else if (strcmp(opt, "--tokens-per-sec") == 0) {
            char *end;
            errno = 0;
            double d = strtod(val, &end);
            if (errno != 0 || *end != '\0' || end == val || !(d >= 0 && d <= 1e7))
                return die("bad value '%s' for %s", val, opt);
            cfg.tokens_per_sec = d;
        } else if (strcmp(opt, "--seed") == 0) {
            rc = num(opt, val, 0, UINT64_MAX, &u);
            cfg.seed = u;
        } else if (strcmp(opt, "--jitter") == 0) {
            size_t n = strlen(val);
            if (n > 0 && val[n - 1] == '%')
                val[n - 1] = '\0';
            rc = num(opt, val, 0, 100, &u);
            cfg.jitter_pct = (unsigned)u;
        } else if (strcmp(opt, "--completion-tokens") == 0) {
            rc = num(opt, val, 0, 10000000, &u);
            cfg.completion_tokens = (unsigned)u;
        } else if (strcmp(opt, "--max-tokens-cap") == 0) {
            rc = num(opt, val, 1, 10000000, &u);
            cfg.max_tokens_cap = (unsigned)u;
        } else if (strcmp(opt, "--embedding-dim") == 0) {
            rc = num(opt, val, 1, 65536, &u);
            cfg.embedding_dim = (unsigned)u;
        } else if (strcmp(opt, "--api-key") == 0) {
            cfg.api_key = val[0] ? val : NULL;
        } else if (strcmp(opt, "--request-log") == 0) {
            cfg.request_log = val[0] ? val : NULL;
        } else if (strcmp(opt, "--fault") == 0) {
            if (sim_fault_parse(&cfg.fault, slice_cstr(val), true, err, sizeof(err)) != 0)
                return die("--fault: %s", err);
        } else if (strcmp(opt, "--log-level") == 0) {
            enum log_level lvl;
            if (log_parse_level(val, &lvl) != 0)
                return die("bad log level '%s'", val);
            log_min_level = lvl;
        } else {
            fputs(usage, stderr);
            return die("unknown option '%s'", opt);
        }
        if (rc != 0)
            return rc;
    }
    if (!id_set)
        snprintf(cfg.id, sizeof(cfg.id), "%s", cfg.model);
    if (cfg.completion_tokens > cfg.max_tokens_cap)
        cfg.completion_tokens = cfg.max_tokens_cap;
    return sim_run(&cfg);
}
