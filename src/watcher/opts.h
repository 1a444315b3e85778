/* SPDX-License-Identifier: MIT
 * The watcher's command line: the flag table, parsing, the checks on each
 * value, the defaults and --help. docs/watcher.md ("Flags") is the reference.
 *
 * Contract: opts_parse() fills a struct opts from argv and nothing else. It
 * opens no file, starts nothing and, apart from the messages it prints for
 * --help, --version and a bad flag, has no effect outside <o>: what a flag
 * names (a kubeconfig, a token file, a listen address) is checked by whoever
 * uses it. Every string in <o> points into argv or is a static default, so
 * <o> is valid as long as argv is. */
#ifndef LLAMALB_WATCH_OPTS_H
#define LLAMALB_WATCH_OPTS_H

#include <stddef.h>
#include <stdint.h>

#include "log.h"
#include "model.h"
#include "push.h"

#define OPTS_MAX_NAMESPACES 32 /* --namespace given more often is refused */
#define OPTS_MAX_ALLOW 64      /* --backend-allow ranges */
#define OPTS_MAX_LB 64         /* --lb URLs */
#define OPTS_RUN (-1)          /* opts_parse(): go on and run the watcher */

struct opts {
    /* The API server. */
    const char *kubeconfig;   /* NULL: in-cluster, $KUBECONFIG or ~/.kube/config */
    const char *context;      /* NULL: current-context */
    const char *sa_dir;       /* service-account directory */
    /* What to watch. mc.allow points at allow[]. */
    const char *selector;     /* Services' label selector */
    const char *slice_sel;    /* EndpointSlices' label selector (endpoints mode) */
    const char *namespaces[OPTS_MAX_NAMESPACES];
    size_t nns;               /* 0: all namespaces */
    struct model_cfg mc;      /* mode and annotation keys */
    struct model_cidr allow[OPTS_MAX_ALLOW];
    /* The balancers: lbs[] (each starts with "http"), or lb_service (at
     * least one of the two is set after a successful parse). */
    const char *lbs[OPTS_MAX_LB];
    size_t nlb;
    const char *lb_service;   /* "NS/NAME[:PORT]" as given; see opts_lb_service() */
    enum push_mode push;
    int follow_port;          /* --follow-port: the balancers' public port; 0 = no roles */
    const char *token_file;   /* --admin-token-file, or NULL */
    int64_t resync_ms;        /* >= 100 */
    int64_t full_ms;          /* >= 1000 */
    int64_t debounce_ms;      /* <= 900 */
    /* Watch tuning, copied into every reflector. */
    long watch_timeout_s;     /* 1..294 */
    int64_t stall_ms;         /* >= 100; default (watch_timeout_s + 5) s */
    long max_line;            /* >= 1024 */
    long page_limit;          /* 1..10000 */
    long max_items;           /* 1..10000000 */
    long max_pages;           /* 1..1000000, or 0: the reflector's default */
    int64_t backoff_min_ms, backoff_max_ms; /* >= 10 each */
    /* Other. */
    const char *listen;       /* /healthz, /readyz, /metrics */
    enum log_level log_level;
};

/* Fills <o> with the defaults, then with the flags of argv[1..argc-1].
 * Returns OPTS_RUN when the watcher should run; otherwise the exit status
 * main() should return: 0 after printing --help or --version on stdout, 2
 * after printing what is wrong on stderr (an unknown flag, a value out of
 * range, an operand, or neither --lb nor --lb-service). Can be called again
 * (getopt is restarted). */
int opts_parse(struct opts *o, int argc, char **argv);

/* Splits --lb-service "NS/NAME[:PORT]" into <ns>, <name> (each cut to 253
 * bytes) and <*port> (8081 when absent). Returns 0, or -1 with <*err> set to
 * what is wrong (a static string). */
int opts_lb_service(const char *arg, char ns[254], char name[254], int *port, const char **err);

#endif
