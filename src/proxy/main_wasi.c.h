/* SPDX-License-Identifier: MIT
 * The wasm32-wasi process around the worker, #included by main.c instead of
 * main_posix.c.h (docs/wasm.md): WASI has no threads and delivers no
 * signals, so there is one worker, run on the main thread; POST /api/drain
 * drains (a Kubernetes preStop httpGet hook); the configuration is read
 * once (no SIGHUP: change backends through the admin API). The host
 * (wasmedge, runwasi's shim) decides about SIGPIPE; sockets are written
 * with sock_send, which never raises it (net_wasi.c.h). */

static void platform_signals_block(void)
{
}

/* --workers: one worker and no threads. Asking for more is an error at
 * start, not silently one. */
static unsigned platform_workers(unsigned configured, char *err, size_t errlen)
{
    if (configured > 1) {
        snprintf(err, errlen,
                 "--workers %u: the WASI build runs one worker (WASI has no threads); "
                 "use --workers 1, or run more replicas",
                 configured);
        return 0;
    }
    return 1;
}

/* WasmEdge offers no getrlimit: the host's descriptor limit applies. */
static unsigned platform_max_conns(void)
{
    return 1024;
}

static void platform_run(struct server *s)
{
    (void)reload; /* SIGHUP's action: no signal reaches a WASI module */
    worker_main(&s->workers[0]);
}
