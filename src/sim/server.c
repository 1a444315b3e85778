/* SPDX-License-Identifier: MIT
 * The simulator's process: the configuration defaults, the listener (or,
 * for the refuse fault, a socket bound but never listening), signals, and
 * the event loop's before-sleep pass, which starts the generations the
 * scheduler hands out, replays work deferred while the server was frozen,
 * and frees closed connections. sim_run() owns everything in sim_srv from
 * start to exit; one thread. */

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "net.h"
#include "server.h"
#include "util.h"

struct sim_server sim_srv;

static volatile sig_atomic_t stop_requested;

void sim_config_init(struct sim_config *c)
{
    memset(c, 0, sizeof(*c));
    c->listen = "0.0.0.0:8080";
    snprintf(c->model, sizeof(c->model), "default");
    c->slots = 1;
    c->completion_tokens = 16;
    c->max_tokens_cap = 100000;
    c->embedding_dim = 8;
    c->embeddings = true;
    c->block = -1;
    sim_fault_init(&c->fault);
}

/* ---------------------------------------------------------------- loop */

/* Told by the scheduler of each freeze and thaw: stop or resume accepting. */
static void listener_freeze(void *arg, bool frozen)
{
    UNUSED(arg);
    ev_io_set_mask(sim_srv.loop, &sim_srv.lio, frozen ? 0 : EV_READ);
}

/* Replays the work of the oldest connection on the deferred list. */
static void replay_deferred(void)
{
    struct sim_conn *c = list_entry(sim_srv.deferred.next, struct sim_conn, defer_node);
    list_del(&c->defer_node);
    if (c->closed)
        return;
    unsigned ev = c->pending_ev;
    bool tick = c->pending_tick;
    c->pending_ev = 0;
    c->pending_tick = false;
    if (ev & EV_READ)
        c->can_read = true;
    if (ev & EV_WRITE)
        c->can_write = true;
    if (tick)
        sim_gen_timer_cb(sim_srv.loop, &c->g.timer);
    else
        sim_conn_run(c);
}

static void before_sleep(struct ev_loop *loop, void *data)
{
    UNUSED(loop);
    UNUSED(data);
    bool progress = true;
    while (progress && !sim_srv.sched.frozen) {
        progress = false;
        struct sim_slot *e;
        while ((e = sim_slot_next(&sim_srv.sched)) != NULL) {
            sim_gen_start(list_entry(e, struct sim_conn, g.slot));
            progress = true;
        }
        while (!sim_srv.sched.frozen && !list_empty(&sim_srv.deferred)) {
            replay_deferred();
            progress = true;
        }
    }
    /* A closed connection still on the deferred list (the server froze
     * again before the list was drained) is freed on a later pass. */
    struct list *it = sim_srv.to_free.next, *next;
    for (; it != &sim_srv.to_free; it = next) {
        next = it->next;
        struct sim_conn *c = list_entry(it, struct sim_conn, free_node);
        if (!list_linked(&c->defer_node))
            sim_conn_free(c);
    }
}

static void wake_cb(struct ev_loop *loop, void *data)
{
    UNUSED(data);
    if (stop_requested)
        ev_loop_stop(loop);
}

static void on_signal(int sig)
{
    UNUSED(sig);
    stop_requested = 1;
    if (sim_srv.loop != NULL)
        ev_wake(sim_srv.loop);
}

/* ---------------------------------------------------------------- setup */

/* "Refuse" fault: a socket bound to the address but never listening, so
 * connects fail with ECONNREFUSED while the port stays taken. */
static int bind_only(const struct net_addr *a, char *err)
{
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    if (fd == -1) {
        snprintf(err, NET_ERR_LEN, "socket: %s", strerror(errno));
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)&a->ss, a->len) == -1) {
        snprintf(err, NET_ERR_LEN, "bind: %s", strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* The PRNG state for --seed N (0 = random). */
static uint64_t seed_rng(uint64_t seed)
{
    uint64_t rng;
    if (seed != 0) {
        /* splitmix64 of the seed: small seeds still give a well-mixed state. */
        uint64_t z = seed + 0x9e3779b97f4a7c15ULL;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        rng = z ^ (z >> 31);
    } else {
        util_random_bytes(&rng, sizeof(rng));
    }
    return rng != 0 ? rng : 0x853c49e6748fea9bULL;
}

static void set_signals(void)
{
    struct sigaction sa = {0};
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
}

/* Closes and frees every connection, then the rest of sim_srv. */
static void teardown(void)
{
    while (!list_empty(&sim_srv.all)) {
        struct sim_conn *c = list_entry(sim_srv.all.next, struct sim_conn, all_node);
        sim_conn_close(c);
        sim_conn_free(c);
    }
    ev_io_stop(sim_srv.loop, &sim_srv.lio);
    close(sim_srv.lfd);
    sim_files_free(sim_srv.files);
    ev_loop_free(sim_srv.loop);
    sim_srv.loop = NULL;
    buf_free(&sim_srv.scratch);
    buf_cache_drain();
}

int sim_run(const struct sim_config *cfg)
{
    char err[NET_ERR_LEN], addr[NET_ADDRSTR_LEN];
    struct net_addr a, local;
    int rc = 0;

    memset(&sim_srv, 0, sizeof(sim_srv));
    sim_srv.lio.fd = -1;
    sim_srv.cfg = cfg;
    list_init(&sim_srv.deferred);
    list_init(&sim_srv.all);
    list_init(&sim_srv.to_free);
    sim_slots_init(&sim_srv.sched, cfg->slots,
                   cfg->block < 0 ? cfg->slots == 1 : cfg->block == 1, listener_freeze, NULL);
    sim_srv.rng = seed_rng(cfg->seed);

    if (net_parse_addr(cfg->listen, false, true, &a, err) != 0) {
        fprintf(stderr, "llamalb-sim: %s\n", err);
        return 2;
    }
    set_signals();
    sim_srv.loop = ev_loop_new();
    if (sim_srv.loop == NULL) {
        fprintf(stderr, "llamalb-sim: cannot create the event loop\n");
        return 1;
    }
    ev_set_wake(sim_srv.loop, wake_cb, NULL);
    ev_set_before_sleep(sim_srv.loop, before_sleep, NULL);

    sim_srv.lfd = cfg->fault.refuse ? bind_only(&a, err) : net_listen(&a, 4096, false, err);
    if (sim_srv.lfd < 0) {
        fprintf(stderr, "llamalb-sim: %s\n", err);
        ev_loop_free(sim_srv.loop);
        return 1;
    }
    net_local_addr(sim_srv.lfd, &local);
    sim_srv.port = net_addr_port(&local);
    net_addr_str(&local, addr, sizeof(addr));
    sim_srv.start_ms = ev_now(sim_srv.loop);
    sim_srv.start_wall = util_wall_s();
    sim_srv.files = sim_files_new();
    if (!cfg->fault.refuse) {
        sim_srv.lio.level = true;
        if (ev_io_start(sim_srv.loop, &sim_srv.lio, sim_srv.lfd, sim_conn_accept_cb, NULL) != 0 ||
            ev_io_set_mask(sim_srv.loop, &sim_srv.lio, EV_READ) != 0) {
            fprintf(stderr, "llamalb-sim: cannot watch the listener\n");
            teardown();
            return 1;
        }
    }
    printf("listening on %s\n", addr);
    fflush(stdout);
    log_info("llamalb-sim %s: model %s, %u slot(s), ttft %lld ms, %g tokens/s%s%s", cfg->id,
             cfg->model, cfg->slots, (long long)cfg->ttft_ms, cfg->tokens_per_sec,
             sim_srv.sched.block ? ", blocking" : "",
             cfg->fault.refuse ? ", refusing connections" : "");
    if (!stop_requested && ev_run(sim_srv.loop) != 0)
        rc = 1;
    log_info("llamalb-sim %s: stopping after %llu requests", cfg->id,
             (unsigned long long)sim_srv.requests);
    teardown();
    return rc;
}
