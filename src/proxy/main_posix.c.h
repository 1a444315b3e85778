/* SPDX-License-Identifier: MIT
 * The POSIX process around the workers, #included by main.c: signals
 * (blocked in every thread, taken by one signal thread: SIGTERM/SIGINT
 * drain, SIGHUP reloads), one thread per worker, RLIMIT_NOFILE.
 * main_wasi.c.h is the same interface for the wasm32-wasi build. */
#include <signal.h>
#include <sys/resource.h>

static sigset_t platform_signals;

static void *signal_thread(void *arg)
{
    sigset_t *set = arg;
    for (;;) {
        int sig;
        if (sigwait(set, &sig) != 0)
            continue;
        if (sig == SIGHUP)
            reload(&server);
        else /* SIGTERM waits --drain-delay for the endpoints to go; ^C does not */
            server_shutdown(&server, sig == SIGTERM);
    }
    return NULL;
}

/* Blocks the signals before anything can deliver them: a SIGTERM that
 * arrives while the listeners are being set up must drain, not kill.
 * Every thread inherits the mask; the signal thread takes them. A peer's
 * reset must not kill the process either: SIGPIPE is ignored. */
static void platform_signals_block(void)
{
    sigemptyset(&platform_signals);
    sigaddset(&platform_signals, SIGTERM);
    sigaddset(&platform_signals, SIGINT);
    sigaddset(&platform_signals, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &platform_signals, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* --workers: 0 means one per CPU. Returns the count (never 0 here). */
static unsigned platform_workers(unsigned configured, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    if (configured != 0)
        return configured;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)MIN(n, 64) : 1;
}

static unsigned platform_max_conns(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        /* Raise the soft limit to the hard one, as nginx' worker_rlimit_nofile. */
        if (rl.rlim_cur < rl.rlim_max) {
            rl.rlim_cur = rl.rlim_max;
            setrlimit(RLIMIT_NOFILE, &rl);
            getrlimit(RLIMIT_NOFILE, &rl);
        }
        /* Each client connection may need an upstream one too. */
        rlim_t n = rl.rlim_cur > 64 ? (rl.rlim_cur - 64) / 2 : 16;
        return n > 1000000 ? 1000000 : (unsigned)n;
    }
    return 1024;
}

/* Runs the workers, one thread each, until they have all stopped. */
static void platform_run(struct server *s)
{
    pthread_t st;
    pthread_create(&st, NULL, signal_thread, &platform_signals);
    for (unsigned i = 0; i < s->nworkers; i++)
        pthread_create(&s->workers[i].thread, NULL, worker_main, &s->workers[i]);
    for (unsigned i = 0; i < s->nworkers; i++)
        pthread_join(s->workers[i].thread, NULL);
    /* No signal may reach reload()/drain once the loops are gone. */
    pthread_cancel(st);
    pthread_join(st, NULL);
}
