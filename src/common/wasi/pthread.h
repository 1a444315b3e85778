/* SPDX-License-Identifier: MIT
 * <pthread.h> for the wasm32-wasi build, which has one thread (Debian's
 * wasi-libc has no pthread.h: docs/wasm.md). Only mk/wasm.mk puts this
 * directory on the include path. The mutexes that guard state shared by
 * worker threads (the registry's lock and the like) become no-ops that
 * compile away; the native build is untouched. Nothing here starts a
 * thread: src/proxy/main_wasi.c.h runs the one worker on the main thread. */
#ifndef LLAMALB_WASI_PTHREAD_H
#define LLAMALB_WASI_PTHREAD_H

#ifndef __wasi__
#error "src/common/wasi/pthread.h is for the wasm32-wasi build only"
#endif

/* wasi-libc's <sys/types.h> (musl's) already has the pthread types. */
#include <stddef.h>
#include <sys/types.h>

#define PTHREAD_MUTEX_INITIALIZER {{{0}}}

static inline int pthread_mutex_init(pthread_mutex_t *m, const pthread_mutexattr_t *a)
{
    (void)m;
    (void)a;
    return 0;
}
static inline int pthread_mutex_destroy(pthread_mutex_t *m)
{
    (void)m;
    return 0;
}
static inline int pthread_mutex_lock(pthread_mutex_t *m)
{
    (void)m;
    return 0;
}
static inline int pthread_mutex_trylock(pthread_mutex_t *m)
{
    (void)m;
    return 0;
}
static inline int pthread_mutex_unlock(pthread_mutex_t *m)
{
    (void)m;
    return 0;
}
static inline pthread_t pthread_self(void)
{
    return NULL;
}

/* Thread-specific data exists for its exit destructors (reg_pick.c's
 * scratch space); the one thread never exits before the process does. */
#define PTHREAD_ONCE_INIT 0

static inline int pthread_once(pthread_once_t *o, void (*fn)(void))
{
    if (*o == 0) {
        *o = 1;
        fn();
    }
    return 0;
}
static inline int pthread_key_create(pthread_key_t *k, void (*dtor)(void *))
{
    (void)dtor;
    *k = 0;
    return 0;
}
static inline int pthread_setspecific(pthread_key_t k, const void *v)
{
    (void)k;
    (void)v;
    return 0;
}

#endif
