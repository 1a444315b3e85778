/* SPDX-License-Identifier: MIT
 * The registry's closed holes (issue 14): a kick looks at the whole queue
 * (not the first 256 waiters) and at every worker to wake, however many;
 * a waiter whose model or backend left the set is answered at once with
 * what a new request would get; and no update, of any size, nor any pick
 * allocates or frees memory while holding the registry lock (checked by
 * wrapping malloc and pthread_mutex_lock in this binary; not under a
 * sanitizer, which owns malloc itself). */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reg_test.h"
#include "util.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define WRAP_MALLOC 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define WRAP_MALLOC 0
#endif
#endif
#ifndef WRAP_MALLOC
#define WRAP_MALLOC 1
#endif

static struct list ready_list;
static unsigned nwakes;
static void on_wake(void *arg)
{
    UNUSED(arg);
    nwakes++;
}

static void waiter_init(struct reg_waiter *w, void *wake_arg)
{
    memset(w, 0, sizeof(*w));
    w->ready_list = &ready_list;
    w->wake = on_wake;
    w->wake_arg = wake_arg;
}

/* 1. 600 waiters (more than the old 256-waiter scan), each with its own
 *    wake target (more than one kick's wake list): a backend that can take
 *    them all arrives, and every one is handed a slot. */
static void test_whole_queue(void)
{
    enum { N = 600 };
    struct registry r;
    uint64_t rng = 5;
    reg_init(&r, 1, &lb_least);
    struct reg_settings st = default_settings();
    st.queue_max = 1000;
    reg_configure(&r, &st);
    list_init(&ready_list);
    add(&r, "a", 1, 1, 1);
    struct reg_req q = {0};
    struct backend *first = NULL, *none = NULL;
    reg_pick(&r, &q, &rng, 1000, NULL, &first, NULL);
    static struct reg_waiter w[N];
    static char targets[N];
    unsigned queued = 0;
    for (unsigned i = 0; i < N; i++) {
        waiter_init(&w[i], &targets[i]);
        queued += reg_pick(&r, &q, &rng, 1000, &w[i], &none, NULL) == REG_QUEUED;
    }
    is_int(queued, N, "600 requests wait");
    nwakes = 0;
    add(&r, "big", 2, 1, 0); /* no cap: room for everyone */
    unsigned ready = 0;
    for (unsigned i = 0; i < N; i++)
        ready += w[i].state == REG_W_READY && w[i].assigned != NULL;
    is_int(ready, N, "one registration hands a slot to all 600, in rounds of wakes");
    is_int(nwakes, N, "each of the 600 wake targets woken once");
    is_int(reg_queue_length(&r), 0, "the queue is empty");
    for (unsigned i = 0; i < N; i++) {
        struct backend *b = reg_cancel_wait(&r, &w[i]);
        if (b)
            done_with(&r, b);
    }
    done_with(&r, first);
    reg_deinit(&r);
}

/* 2. A queue of many waiters for a full model, behind one that another
 *    backend can serve: the kick still finds it (no scan bound). */
static void test_late_waiter_found(void)
{
    enum { N = 1000 };
    struct registry r;
    uint64_t rng = 7;
    reg_init(&r, 1, &lb_least);
    struct reg_settings st = default_settings();
    st.queue_max = N + 1;
    reg_configure(&r, &st);
    list_init(&ready_list);
    char err[NET_ERR_LEN];
    struct backend_spec s = spec("m1", 1, 1);
    const char *m1[] = {"m1"}, *m2[] = {"m2"};
    reg_spec_set_models(&s, m1, 1, err);
    s.max_inflight = 1;
    s.max_inflight_set = true;
    reg_upsert(&r, &s, REG_SOURCE_ADMIN, err);
    reg_spec_free(&s);
    s = spec("m2", 2, 1);
    reg_spec_set_models(&s, m2, 1, err);
    s.max_inflight = 1;
    s.max_inflight_set = true;
    reg_upsert(&r, &s, REG_SOURCE_ADMIN, err);
    reg_spec_free(&s);
    struct reg_req q1 = {.model = "m1"}, q2 = {.model = "m2"};
    struct backend *b1 = NULL, *b2 = NULL, *none = NULL;
    reg_pick(&r, &q1, &rng, 1000, NULL, &b1, NULL);
    reg_pick(&r, &q2, &rng, 1000, NULL, &b2, NULL);
    static struct reg_waiter w[N + 1];
    for (unsigned i = 0; i < N; i++) {
        waiter_init(&w[i], NULL);
        reg_pick(&r, &q1, &rng, 1000, &w[i], &none, NULL);
    }
    waiter_init(&w[N], NULL);
    is_int(reg_pick(&r, &q2, &rng, 1000, &w[N], &none, NULL), REG_QUEUED,
           "a request for m2 waits behind 1000 for m1");
    done_with(&r, b2);
    is_int(w[N].state, REG_W_READY, "m2's slot goes to the 1001st waiter");
    is_int(w[0].state, REG_W_QUEUED, "m1's waiters still wait");
    for (unsigned i = 0; i <= N; i++) {
        struct backend *b = reg_cancel_wait(&r, &w[i]);
        if (b)
            done_with(&r, b);
    }
    done_with(&r, b1);
    reg_deinit(&r);
}

/* 3. Waiters whose model or backends leave the set fail at once. */
static void test_fail_fast(void)
{
    struct registry r;
    uint64_t rng = 9;
    reg_init(&r, 1, &lb_least);
    struct reg_settings st = default_settings();
    st.reject_unknown_model = true;
    reg_configure(&r, &st);
    list_init(&ready_list);
    char err[NET_ERR_LEN];
    const char *m[] = {"llama"};
    struct backend_spec s = spec("a", 1, 1);
    reg_spec_set_models(&s, m, 1, err);
    s.max_inflight = 1;
    s.max_inflight_set = true;
    reg_upsert(&r, &s, REG_SOURCE_ADMIN, err);
    reg_spec_free(&s);
    add(&r, "other", 2, 1, 1); /* serves no named model */
    struct reg_req q = {.model = "llama"};
    struct backend *b = NULL, *none = NULL;
    reg_pick(&r, &q, &rng, 1000, NULL, &b, NULL);
    struct reg_waiter w;
    waiter_init(&w, NULL);
    is_int(reg_pick(&r, &q, &rng, 1000, &w, &none, NULL), REG_QUEUED, "a request for llama waits");
    nwakes = 0;
    is_int(reg_remove(&r, "a"), 0, "llama's only backend is unregistered");
    ok(w.state == REG_W_READY && w.assigned == NULL && nwakes == 1,
       "the waiter is woken at once, refused (state %d)", w.state);
    ok(reg_cancel_wait(&r, &w) == NULL, "and holds no slot");
    is_int(reg_pick(&r, &q, &rng, 1000, &w, &none, NULL), REG_NO_MODEL,
           "its worker's new pick answers model_not_found");
    done_with(&r, b);

    /* Unknown models allowed: the set emptied by a PUT answers no_backend. */
    st.reject_unknown_model = false;
    reg_configure(&r, &st);
    struct reg_req any = {0};
    struct backend *o = NULL;
    reg_pick(&r, &any, &rng, 1000, NULL, &o, NULL);
    waiter_init(&w, NULL);
    is_int(reg_pick(&r, &any, &rng, 1000, &w, &none, NULL), REG_QUEUED, "a request waits for 'other'");
    is_int(reg_replace(&r, REG_SOURCE_ADMIN, NULL, 0, 0, err), 0, "a PUT empties the set");
    ok(w.state == REG_W_READY && w.assigned == NULL, "the waiter is woken at once, refused");
    reg_cancel_wait(&r, &w);
    is_int(reg_pick(&r, &any, &rng, 1000, &w, &none, NULL), REG_NONE,
           "its worker's new pick answers no_backend");
    done_with(&r, o);
    reg_deinit(&r);
}

#if WRAP_MALLOC
/* Allocation calls made while this thread holds a registry lock. */
static struct registry *watched;
static __thread int held;
static unsigned long under_lock;

void *__libc_malloc(size_t);
void *__libc_calloc(size_t, size_t);
void *__libc_realloc(void *, size_t);
void __libc_free(void *);

void *malloc(size_t n)
{
    under_lock += held > 0;
    return __libc_malloc(n);
}
void *calloc(size_t a, size_t b)
{
    under_lock += held > 0;
    return __libc_calloc(a, b);
}
void *realloc(void *p, size_t n)
{
    under_lock += held > 0;
    return __libc_realloc(p, n);
}
void free(void *p)
{
    under_lock += held > 0 && p != NULL;
    __libc_free(p);
}

int pthread_mutex_lock(pthread_mutex_t *m)
{
    static int (*real)(pthread_mutex_t *);
    if (real == NULL)
        real = (int (*)(pthread_mutex_t *))dlsym(RTLD_NEXT, "pthread_mutex_lock");
    int rc = real(m);
    if (watched != NULL && m == &watched->lock)
        held++;
    return rc;
}
int pthread_mutex_unlock(pthread_mutex_t *m)
{
    static int (*real)(pthread_mutex_t *);
    if (real == NULL)
        real = (int (*)(pthread_mutex_t *))dlsym(RTLD_NEXT, "pthread_mutex_unlock");
    if (watched != NULL && m == &watched->lock)
        held--;
    return real(m);
}

/* 4. Updates of any size and picks: nothing allocated or freed under the
 *    lock. */
static void test_no_alloc_under_lock(void)
{
    enum { N = 10000 };
    struct registry r;
    uint64_t rng = 11;
    char err[NET_ERR_LEN];
    reg_init(&r, 2, &lb_least);
    list_init(&ready_list);
    struct backend_spec *v = calloc(N, sizeof(*v));
    const char *models[] = {"m0", "m1", "m2"};
    for (unsigned i = 0; i < N; i++) {
        char name[32];
        snprintf(name, sizeof(name), "svc-%u", i);
        v[i] = spec(name, (int)(i % 60000) + 1, 1 + i % 5);
        reg_spec_set_models(&v[i], &models[i % 3], 1, err);
    }
    watched = &r;
    under_lock = 0;
    int n = reg_replace(&r, REG_SOURCE_ADMIN, v, N, 1, err);
    is_int(n, N, "a first PUT of 10,000 services");
    is_int(under_lock, 0, "... allocated nothing under the registry lock");
    for (unsigned i = 0; i < N; i += 2)
        v[i].weight += 1; /* half of them change */
    snprintf(v[0].host, sizeof(v[0].host), "10.1.0.1"); /* one moves: a new backend */
    reg_replace(&r, REG_SOURCE_ADMIN, v, N - 100, 2, err); /* 100 leave */
    is_int(under_lock, 0, "a PUT updating, moving and removing: none either");
    add(&r, "one-more", 9, 1, 1);
    add(&r, "svc-5", 6, 7, 1); /* in place */
    reg_remove(&r, "svc-7");
    const char *probed[] = {"p1", "p2"};
    reg_set_probed_models(&r, r.v[3], probed, 2);
    is_int(under_lock, 0, "register, update, unregister, probed models: none");
    struct reg_req q = {.model = "m1"};
    struct backend *b = pick(&r, &q, &rng);
    struct reg_req all = {0};
    struct backend *c = pick(&r, &all, &rng);
    ok(b != NULL && c != NULL, "picks work");
    done_with(&r, b);
    done_with(&r, c);
    is_int(under_lock, 0, "picks and releases on a grown set: none");
    watched = NULL;
    reg_specs_free(v, N);
    reg_deinit(&r);
}
#endif

int main(void)
{
    test_whole_queue();
    test_late_waiter_found();
    test_fail_fast();
#if WRAP_MALLOC
    test_no_alloc_under_lock();
#else
    note("malloc is the sanitizer's: the no-allocation check runs in the plain build");
#endif
    return done_testing();
}
