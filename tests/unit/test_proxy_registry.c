/* SPDX-License-Identifier: MIT
 * The set and its updates (src/proxy/registry.c) and specs
 * (src/proxy/reg_spec.c): the --backend syntax, removal with a request in
 * flight (reference counts end at zero), drained backends, PUT and its
 * generations, the policy switch. Bounds are in
 * test_proxy_registry_bounds.c, PUT at scale in test_proxy_registry_put.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "reg_test.h"
#include "util.h"

static void test_spec_parse(void)
{
    struct backend_spec s;
    char err[NET_ERR_LEN];
    ok(reg_spec_parse("low=127.0.0.1:8080,weight=3,models=a|b,max-inflight=2", &s, err) == 0,
       "full --backend syntax parses");
    ok(s.weight == 3 && s.nmodels == 2 && s.max_inflight == 2 && s.max_inflight_set &&
           s.port == 8080 && strcmp(reg_model_next(s.models), "b") == 0,
       "fields are taken");
    reg_spec_free(&s);
    ok(reg_spec_parse("x=[::1]:9000", &s, err) == 0 && strcmp(s.host, "::1") == 0, "IPv6 backend");
    reg_spec_free(&s);
    ok(reg_spec_parse("x=host.example:80", &s, err) != 0, "names are not resolved: refused");
    ok(reg_spec_parse("x=1.2.3.4:0", &s, err) != 0, "port 0 refused");
    ok(reg_spec_parse("x=1.2.3.4:80,weight=-1", &s, err) != 0, "negative weight refused");
    ok(reg_spec_parse("x=1.2.3.4:80,bogus=1", &s, err) != 0, "unknown option refused");
    ok(reg_spec_parse("bad name=1.2.3.4:80", &s, err) != 0, "bad name refused");
}

static void test_drain_and_remove(void)
{
    struct registry r;
    uint64_t rng = 17;
    char err[NET_ERR_LEN];
    reg_init(&r, 1, &lb_wrr);
    add(&r, "a", 1, 1, 0);
    add(&r, "b", 2, 1, 0);
    struct reg_req q = {0};
    struct backend *held = pick(&r, &q, &rng);
    char name[REG_NAME_MAX + 1];
    snprintf(name, sizeof(name), "%s", held->spec.name);
    ok(reg_remove(&r, name) == 0, "remove a backend with a request in flight");
    ok(atomic_load(&held->removed), "it is marked removed");
    for (int i = 0; i < 10; i++) {
        struct backend *b = pick(&r, &q, &rng);
        ok(b != held, "removed backend gets no new request (%d)", i);
        done_with(&r, b);
    }
    done_with(&r, held); /* frees it: ASan would report a use after free or leak */
    struct backend_spec s = spec("a", 1, 0);
    reg_upsert(&r, &s, REG_SOURCE_ADMIN, err);
    s = spec("b", 2, 0);
    reg_upsert(&r, &s, REG_SOURCE_ADMIN, err);
    ok(pick(&r, &q, &rng) == NULL, "weight 0 everywhere: nothing eligible (drained)");
    ok(reg_remove(&r, "nope") != 0, "removing an unknown name fails");
    struct backend_spec set[2] = {spec("x", 5, 1), spec("y", 6, 2)};
    is_int(reg_replace(&r, REG_SOURCE_ADMIN, set, 2, 5, err), 2, "PUT replaces the set");
    is_int(reg_replace(&r, REG_SOURCE_ADMIN, set, 2, 4, err), -ESTALE, "older generation refused");
    reg_deinit(&r);
}


/* SIGHUP's policy switch: the next pick uses the new policy. */
static void test_set_policy(void)
{
    struct registry r;
    uint64_t rng = 37;
    reg_init(&r, 1, &lb_random);
    add(&r, "a", 1, 3, 0);
    add(&r, "b", 2, 1, 0);
    reg_set_policy(&r, &lb_wrr);
    struct reg_req q = {0};
    char seq[9] = {0};
    for (int i = 0; i < 8; i++) {
        struct backend *b = pick(&r, &q, &rng);
        seq[i] = b->spec.name[0];
        done_with(&r, b);
    }
    ok(strcmp(seq, "aabaaaba") == 0, "after reg_set_policy(wrr), picks interleave (got %s)", seq);
    reg_deinit(&r);
}

int main(void)
{
    test_spec_parse();
    test_drain_and_remove();
    test_set_policy();
    buf_cache_drain();
    reg_thread_exit();
    return done_testing();
}
