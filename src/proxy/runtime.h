/* SPDX-License-Identifier: MIT
 * The settings the workers run with, and how they change while llamalb
 * runs. A struct runtime is an immutable, reference-counted snapshot: the
 * configuration that can change live (timeouts, limits, aliases, queue and
 * health settings, the admin token, API keys, the access-log destination)
 * and the keyring. The server holds the current one; each worker holds the
 * one it runs with and takes the newest when it is woken, so a reload never
 * stops a request and never frees what a worker still reads. What cannot
 * change without a restart (listen addresses, workers) is logged when a
 * reload finds it different.
 *
 * Changes come from SIGHUP (runtime_reload: the whole configuration,
 * validated first; an invalid one is refused with its file:line and the
 * running one kept), and from files watched by worker 0's loop
 * (runtime_poll): the API key file when it changes, as a Kubernetes Secret
 * mount does in place, and the admin token file every minute. */
#ifndef LLAMALB_RUNTIME_H
#define LLAMALB_RUNTIME_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"

struct keyring;
struct server;
struct worker;

struct runtime {
    atomic_int refs;
    struct cfg cfg;        /* without static backends (the registry has them) */
    struct keyring *keys;  /* NULL: no --api-key-file, every request served */
};

/* Builds the first runtime from the boot configuration (copied). Returns 0,
 * or -1 with <err> set (a key file that does not load). */
int runtime_init(struct server *s, char *err, size_t errlen);
void runtime_deinit(struct server *s);

/* The current runtime, with a reference for the caller. */
struct runtime *runtime_get(struct server *s);
void runtime_unref(struct runtime *rt);

/* Worker side: takes the newest runtime if it changed (on every wake-up). */
void runtime_adopt(struct worker *w);

/* SIGHUP: re-reads the flags and config file and applies everything that
 * can change live. Returns 0, or -1 (logged) with the running one kept. */
int runtime_reload(struct server *s, int argc, char **argv);

/* Watches the key file and the token file (worker 0, about every second). */
void runtime_poll(struct server *s, int64_t now_ms);

/* The access log's file descriptor: reopened in place (logrotate). */
int runtime_open_access_log(struct server *s, const struct cfg *c);

#endif
