/* SPDX-License-Identifier: MIT
 * llamalb: entry point. Parses the configuration, binds the listeners
 * (printing "listening on" lines before serving), starts the workers and
 * turns signals into actions: SIGTERM/SIGINT drain and exit 0, SIGHUP
 * reloads the config file's backends and policy without dropping a request.
 * Signals are confined to this file (a WASI build has none: it drains
 * through POST /api/drain instead). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lb.h"
#include "log.h"
#include "proxy.h"
#include "util.h"

static struct server server;
static int saved_argc;
static char **saved_argv;

void server_start_drain(struct server *s)
{
    if (atomic_exchange(&s->draining, true))
        return;
    atomic_store(&s->stopping, true);
    struct runtime *rt = runtime_get(s);
    int64_t cap = rt->cfg.drain_timeout;
    runtime_unref(rt);
    atomic_store(&s->drain_deadline, util_now_ms() + cap);
    log_info("draining: no new connections; finishing in-flight requests (cap %lld ms)",
             (long long)cap);
    for (unsigned i = 0; i < s->nworkers; i++)
        ev_wake(s->workers[i].loop);
}

/* SIGHUP: everything that can change live is re-read and applied, or the
 * whole reload is refused with the running configuration kept (runtime.c). */
static void reload(struct server *s)
{
    runtime_reload(s, saved_argc, saved_argv);
}

/* Signals, threads, descriptor limits: platform_*() (docs/wasm.md). */
#ifdef __wasi__
#include "main_wasi.c.h"
#else
#include "main_posix.c.h"
#endif

/* The registry with the configured settings and static backends. Returns
 * 0, or -1 with a message on stderr. */
static int setup_registry(struct server *s, unsigned nworkers)
{
    char nerr[NET_ERR_LEN];
    reg_init(&s->reg, nworkers, s->cfg.policy);
    const struct reg_settings rs = {
        .eject_after = s->cfg.eject_after,
        .eject_base_ms = s->cfg.eject_time,
        .eject_max_ms = s->cfg.eject_max_time,
        .default_cap = s->cfg.default_max_inflight,
        .queue_max = s->cfg.queue_max,
        .slow_start_ms = s->cfg.slow_start,
        .reject_unknown_model = s->cfg.reject_unknown_model,
    };
    reg_configure(&s->reg, &rs);
    for (unsigned i = 0; i < s->cfg.nbackends; i++) {
        if (reg_upsert(&s->reg, &s->cfg.backends[i], REG_SOURCE_STATIC, nerr) < 0) {
            fprintf(stderr, "llamalb: %s\n", nerr);
            return -1;
        }
    }
    return 0;
}

/* Listeners: worker 0 binds first (resolving port 0), the others bind
 * the same address with SO_REUSEPORT so the kernel spreads accepts.
 * Fills <lfds>[0..nworkers) and <*afd> (-1 without an admin listener).
 * Returns 0, or -1 with a message on stderr. */
static int bind_listeners(struct server *s, unsigned nworkers, int *lfds, int *afd)
{
    char nerr[NET_ERR_LEN];
    for (unsigned i = 0; i < nworkers; i++) {
        lfds[i] = net_listen(&s->listen_addr, 1024, true, nerr);
        if (lfds[i] < 0) {
            fprintf(stderr, "llamalb: %s\n", nerr);
            return -1;
        }
        if (i == 0)
            net_local_addr(lfds[0], &s->listen_addr);
    }
    *afd = -1;
    if (s->admin_enabled) {
        *afd = net_listen(&s->admin_addr, 128, false, nerr);
        if (*afd < 0) {
            fprintf(stderr, "llamalb: %s\n", nerr);
            return -1;
        }
        net_local_addr(*afd, &s->admin_addr);
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct server *s = &server;
    char err[512], nerr[NET_ERR_LEN];

    platform_signals_block();
    saved_argc = argc;
    saved_argv = argv;
    cfg_defaults(&s->cfg);
    int r = cfg_parse_args(&s->cfg, argc, argv, err, sizeof(err));
    if (r == 1)
        return 0;
    if (r != 0) {
        fprintf(stderr, "llamalb: %s\n", err);
        return 2;
    }
    if (cfg_load_token(&s->cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "llamalb: %s\n", err);
        return 2;
    }
    log_min_level = s->cfg.log_level;
    s->admin_enabled = strcmp(s->cfg.admin_listen, "off") != 0;
    if (net_parse_addr(s->cfg.listen, false, true, &s->listen_addr, nerr) != 0 ||
        (s->admin_enabled &&
         net_parse_addr(s->cfg.admin_listen, false, true, &s->admin_addr, nerr) != 0)) {
        fprintf(stderr, "llamalb: %s\n", nerr);
        return 2;
    }
    if (s->admin_enabled && !net_addr_is_loopback(&s->admin_addr) &&
        s->cfg.admin_token[0] == '\0') {
        fprintf(stderr, "llamalb: the admin listener %s is not loopback: an admin token is "
                        "required (--admin-token-file or LLAMALB_ADMIN_TOKEN)\n",
                s->cfg.admin_listen);
        return 2;
    }
    unsigned nworkers = platform_workers(s->cfg.workers, err, sizeof(err));
    if (nworkers == 0) {
        fprintf(stderr, "llamalb: %s\n", err);
        return 2;
    }
    if (setup_registry(s, nworkers) != 0)
        return 2;
    if (runtime_init(s, err, sizeof(err)) != 0) {
        fprintf(stderr, "llamalb: %s\n", err);
        return 2;
    }
    if (s->cfg.check_only) {
        printf("llamalb: configuration ok (%u backends, policy %s, %u workers)\n",
               s->cfg.nbackends, s->cfg.policy->name, nworkers);
        runtime_deinit(s);
        reg_deinit(&s->reg);
        cfg_free(&s->cfg);
        return 0;
    }
    s->max_conns = s->cfg.max_conns ? s->cfg.max_conns : platform_max_conns();
    s->started_ms = util_now_ms();

    int *lfds = xcalloc(nworkers, sizeof(int)), afd;
    if (bind_listeners(s, nworkers, lfds, &afd) != 0)
        return 1;
    char a1[NET_ADDRSTR_LEN], a2[NET_ADDRSTR_LEN];
    net_addr_str(&s->listen_addr, a1, sizeof(a1));
    net_addr_str(&s->admin_addr, a2, sizeof(a2));
    printf("listening on %s\n", a1);
    if (s->admin_enabled)
        printf("admin listening on %s\n", a2);
    fflush(stdout);

    s->workers = xcalloc(nworkers, sizeof(*s->workers));
    s->nworkers = nworkers;
    for (unsigned i = 0; i < nworkers; i++) {
        if (worker_init(&s->workers[i], s, i, lfds[i], i == 0 ? afd : -1) != 0) {
            fprintf(stderr, "llamalb: cannot start worker %u\n", i);
            return 1;
        }
    }
    free(lfds);
    log_info("llamalb %s: %u workers, policy %s, %u backends, max %u connections",
             LLAMALB_VERSION, nworkers, s->cfg.policy->name, s->cfg.nbackends, s->max_conns);

    platform_run(s);
    for (unsigned i = 0; i < nworkers; i++)
        worker_free(&s->workers[i]);
    free(s->workers);
    runtime_deinit(s);
    reg_deinit(&s->reg);
    cfg_free(&s->cfg);
    log_info("stopped");
    return 0;
}
