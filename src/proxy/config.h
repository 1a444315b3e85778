/* SPDX-License-Identifier: MIT
 * Settings of the balancer, from flags and from a config file. Both go
 * through one option table: a config file line is a flag without its
 * leading dashes ("policy least", "backend a=10.0.0.1:8080,weight=3"), so
 * the two can never drift apart. Flags override the file. */
#ifndef LLAMALB_CONFIG_H
#define LLAMALB_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "http1.h"
#include "log.h"
#include "registry.h"

#define CFG_MAX_ALLOW 16
#define CFG_MAX_ALIASES 64

struct cidr {
    struct net_addr net;
    unsigned bits;
};

struct cfg {
    char listen[NET_ADDRSTR_LEN];
    char admin_listen[NET_ADDRSTR_LEN];
    const struct lb_ops *policy;
    unsigned workers;              /* 0 = number of CPUs */
    char config_file[512];
    bool check_only;               /* -t */
    struct backend_spec *backends; /* static backends, owned */
    unsigned nbackends;
    char admin_token_file[512];
    char api_key_file[512];        /* "" = no API keys: every request served */
    char admin_token[256];         /* loaded from the file or LLAMALB_ADMIN_TOKEN */
    struct http1_limits limits;
    int64_t header_timeout;        /* ms: whole request head (absolute) -> 408 */
    int64_t body_timeout;          /* ms: idle between body reads -> 408 */
    int64_t body_deadline;         /* ms: whole body from the end of the head -> 408 */
    int64_t keepalive_timeout;     /* ms: idle client connection between requests */
    int64_t connect_timeout;       /* ms: upstream connect -> next backend or 504 */
    int64_t response_timeout;      /* ms: request sent to first response byte -> 504 */
    int64_t stream_idle_timeout;   /* ms: idle between response bytes -> close */
    int64_t send_timeout;          /* ms: client not reading -> close */
    int64_t slow_client_budget;    /* ms: total wait on the client of a capped backend's response */
    int64_t upstream_idle_timeout; /* ms: pooled upstream connection lifetime when idle */
    int64_t drain_timeout;         /* ms: drain cap */
    int64_t drain_delay;           /* ms: accepting, not ready, before the drain */
    unsigned max_conns;            /* client connections per process; 0 = from RLIMIT_NOFILE */
    unsigned admin_max_conns;      /* admin connections, apart from max_conns */
    uint64_t max_body_memory;      /* bytes of request bodies buffered by the whole process */
    unsigned max_idle_per_backend; /* pooled upstream connections per worker per backend */
    unsigned max_tries;            /* attempts per request, first included */
    bool retry_on_status;          /* retry 502/503/429 before any byte was relayed */
    unsigned eject_after;
    int64_t eject_time, eject_max_time;
    char access_log[512];          /* path, "-" (stdout) or "off" */
    bool access_log_json;          /* --access-log-format json: one JSON object per line */
    enum log_level log_level;      /* --log-level, set by main and by a reload that succeeds */
    struct cidr allow[CFG_MAX_ALLOW]; /* admin registrations allowed into these despite the deny list */
    unsigned nallow;
    /* LLM-aware balancing */
    unsigned default_max_inflight; /* per-backend cap when a backend does not say (1; 0 = none) */
    unsigned queue_max;            /* requests waiting for a slot (1024) */
    int64_t queue_timeout;         /* ms a request may wait for a slot (30s) */
    bool reject_unknown_model;     /* --unknown-model reject: 404 model_not_found */
    bool local_models;             /* GET /v1/models answered from the registry (on) */
    char affinity[64];             /* "" (off), "user" or a header name such as X-Session-Id */
    int64_t slow_start;            /* ms weight ramp for new/recovered backends (0 = off) */
    int64_t health_interval;       /* ms between active probes of a backend (0 = off) */
    int64_t probe_timeout;         /* ms a probe may take */
    unsigned naliases;
    struct { char from[128], to[128]; } aliases[CFG_MAX_ALIASES];
    char drain_hook[128];          /* --drain-hook PATH: GET starts the drain, no token ("" = off) */
    char follow[NET_ADDRSTR_LEN];  /* --follow HOST:PORT: forward to this active replica
                                      ("" = dispatch here; follow.h) */
};

/* Applies --model-alias: the served name for a requested one, else <m>. */
const char *cfg_alias(const struct cfg *c, const char *m);

/* Fills <c> with defaults. */
void cfg_defaults(struct cfg *c);
void cfg_free(struct cfg *c);

/* Parses argv into <c> (config file first when -c is given, then flags).
 * Returns 0, 1 when --help or --version was printed, or -1 with <err> set. */
int cfg_parse_args(struct cfg *c, int argc, char **argv, char *err, size_t errlen);

/* Reads the admin token from the file or the environment, if configured. */
int cfg_load_token(struct cfg *c, char *err, size_t errlen);

/* True if <a> falls in one of the operator's allowed CIDRs. */
bool cfg_allowed(const struct cfg *c, const struct net_addr *a);

void cfg_usage(FILE *f);

#endif
