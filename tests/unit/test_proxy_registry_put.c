/* SPDX-License-Identifier: MIT
 * Registry updates on large sets, which match names through hash tables
 * instead of scans: a PUT of 10,000 services and one that reweights half,
 * removes a quarter, moves some and adds new ones must give exactly the set
 * the rules say (names, weights, addresses, order, which backends survive
 * in place), register and unregister by name must keep working at that
 * size and through any mix of changes, and GET /v1/models must still list
 * each model once, in order of first appearance. Sizes are fixed counts;
 * nothing here is timed. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/proxy/lb.h"
#include "../../src/proxy/registry.h"
#include "../tap.h"
#include "buf.h"
#include "util.h"

#define NOW 1000 /* ms: the clock every pick here runs at */
#define BIG 10000

static struct backend_spec spec(const char *prefix, unsigned i, unsigned weight)
{
    struct backend_spec s;
    memset(&s, 0, sizeof(s));
    snprintf(s.name, sizeof(s.name), "%s%u", prefix, i);
    snprintf(s.host, sizeof(s.host), "10.%u.%u.%u", i / 62500, i / 250 % 250, i % 250 + 1);
    s.port = 8000;
    s.weight = weight;
    return s;
}

/* The backend a pin to <name> gets, or NULL: a pin looks its backend up
 * by name, so this checks the name table (weights must be non-zero). */
static struct backend *pinned(struct registry *r, const char *name)
{
    uint64_t rng = 1;
    struct reg_req q = {.pin = name};
    struct backend *b = NULL;
    if (reg_pick(r, &q, &rng, NOW, NULL, &b, NULL) != REG_PICKED)
        return NULL;
    struct reg_outcome o = {0};
    reg_release(r, b, &o, NOW);
    backend_unref(b);
    return strcmp(b->spec.name, name) == 0 ? b : NULL;
}

/* r->v against <want> (name, weight, host, port, source) in order. */
static bool set_is(const struct registry *r, const struct backend_spec *want,
                   const enum reg_source *src, unsigned n)
{
    if (r->n != n) {
        note("  %u backends, want %u", r->n, n);
        return false;
    }
    for (unsigned i = 0; i < n; i++) {
        const struct backend_spec *g = &r->v[i]->spec;
        if (strcmp(g->name, want[i].name) != 0 || g->weight != want[i].weight ||
            strcmp(g->host, want[i].host) != 0 || g->port != want[i].port ||
            r->v[i]->source != src[i]) {
            note("  [%u] got %s w%u %s:%d, want %s w%u %s:%d", i, g->name, g->weight, g->host,
                 g->port, want[i].name, want[i].weight, want[i].host, want[i].port);
            return false;
        }
    }
    return true;
}

/* PUT 10,000, then a PUT that changes half the weights, drains some,
 * moves some to a new address, drops a quarter and adds 3,000 new ones,
 * beside two static backends (one the PUT names, one it does not). */
static void test_big_put(void)
{
    static struct backend_spec first[BIG], second[BIG], want[BIG + 3000];
    static enum reg_source want_src[BIG + 3000];
    static struct backend *before[BIG];
    struct registry r;
    char err[NET_ERR_LEN];
    reg_init(&r, 2, &lb_least);
    struct backend_spec st = spec("static", 0, 7), st_named = spec("svc", 5000, 9);
    reg_upsert(&r, &st, REG_SOURCE_STATIC, err);
    reg_upsert(&r, &st_named, REG_SOURCE_STATIC, err);

    for (unsigned i = 0; i < BIG; i++)
        first[i] = spec("svc", i, 1 + i % 3);
    is_int(reg_replace(&r, REG_SOURCE_ADMIN, first, BIG, 1, err), BIG + 1,
           "PUT of 10,000 services (one already static): 10,001 backends");
    /* Kept in set order: static0, svc5000 (named by the PUT: updated in
     * place and now the PUT's), then the rest in service order. */
    unsigned n = 0;
    want[n] = st;
    want_src[n++] = REG_SOURCE_STATIC;
    want[n] = first[5000];
    want_src[n++] = REG_SOURCE_ADMIN;
    for (unsigned i = 0; i < BIG; i++)
        if (i != 5000) {
            want[n] = first[i];
            want_src[n++] = REG_SOURCE_ADMIN;
        }
    ok(set_is(&r, want, want_src, n), "the first PUT gives exactly the services, in order");
    for (unsigned i = 0; i < r.n; i++) {
        unsigned k = (unsigned)atoi(r.v[i]->spec.name + 3);
        if (strncmp(r.v[i]->spec.name, "svc", 3) == 0) {
            before[k] = r.v[i];
            backend_ref(before[k]); /* watch what becomes of each */
        }
    }

    /* i % 4 == 3: dropped; odd: weight 5; i % 8 == 0: drained (weight 0);
     * i % 10 == 2: same name, new port (a new backend, the old drains). */
    unsigned m = 0;
    for (unsigned i = 0; i < BIG; i++) {
        if (i % 4 == 3)
            continue;
        second[m] = spec("svc", i, i % 2 ? 5 : i % 8 == 0 ? 0 : 1 + i % 3);
        if (i % 10 == 2)
            second[m].port = 9000;
        m++;
    }
    unsigned kept = m;
    for (unsigned i = 0; i < 2500; i++)
        second[m++] = spec("new", i, 2);
    is_int(reg_replace(&r, REG_SOURCE_ADMIN, second, m, 2, err), 1 + m,
           "the second PUT: the static backend and its %u services", m);

    /* Survivors keep their place in the set, new names come last in
     * service order; the static backend stays where it was. */
    n = 0;
    want[n] = st;
    want_src[n++] = REG_SOURCE_STATIC;
    want[n] = second[5000 - 5000 / 4]; /* svc5000: its index among the kept */
    want_src[n++] = REG_SOURCE_ADMIN;
    for (unsigned k = 0; k < kept; k++)
        if (strcmp(second[k].name, "svc5000") != 0) {
            want[n] = second[k];
            want_src[n++] = REG_SOURCE_ADMIN;
        }
    for (unsigned k = kept; k < m; k++) {
        want[n] = second[k];
        want_src[n++] = REG_SOURCE_ADMIN;
    }
    ok(strcmp(want[1].name, "svc5000") == 0, "(the test's own bookkeeping finds svc5000)");
    ok(set_is(&r, want, want_src, n), "the second PUT gives exactly the expected set, in order");

    unsigned in_place = 0, replaced = 0, retired = 0, wrong = 0;
    for (unsigned i = 0; i < BIG; i++) {
        bool gone = atomic_load(&before[i]->removed);
        if (i % 4 == 3 || i % 10 == 2) {
            retired += gone;
            replaced += i % 4 != 3 && gone;
        } else {
            in_place += !gone;
        }
        wrong += (i % 4 == 3 || i % 10 == 2) != gone;
        backend_unref(before[i]);
    }
    is_int(wrong, 0, "exactly the dropped and moved backends were retired");
    is_int(in_place, 6500, "the 6,500 kept at the same address were updated in place");
    is_int(replaced, 1000, "the 1,000 moved ones were replaced by new backends");
    note("%u retired in all", retired);
    struct backend_spec stale = spec("svc", 1, 1);
    is_int(reg_replace(&r, REG_SOURCE_ADMIN, &stale, 1, 1, err), -ESTALE,
           "an older generation is still refused");
    ok(strcmp(err, "stale generation 1: already at 2") == 0, "with its message (%s)", err);
    is_int(reg_count(&r), 1 + m, "and changes nothing");

    /* Pins reach every backend with a weight, and no dropped one. */
    unsigned found = 0, ghosts = 0, with_weight = 0;
    for (unsigned i = 0; i < r.n; i++)
        if (r.v[i]->spec.weight > 0) {
            with_weight++;
            found += pinned(&r, r.v[i]->spec.name) == r.v[i];
        }
    for (unsigned i = 3; i < BIG; i += 4) {
        char name[32];
        snprintf(name, sizeof(name), "svc%u", i);
        ghosts += pinned(&r, name) != NULL;
    }
    is_int(found, with_weight, "a pin finds each of the %u backends with a weight by name",
           with_weight);
    is_int(ghosts, 0, "a pin to a dropped name finds nothing");
    reg_deinit(&r);
}

/* Errors in a PUT come in service order, exactly as the pairwise checks
 * reported them: an invalid service before a later duplicate, and the
 * duplicate named at its second occurrence. */
static void test_put_errors(void)
{
    static struct backend_spec set[BIG];
    struct registry r;
    char err[NET_ERR_LEN];
    reg_init(&r, 1, &lb_least);
    for (unsigned i = 0; i < BIG; i++)
        set[i] = spec("svc", i, 1);
    strcpy(set[9000].name, "svc17");
    is_int(reg_replace(&r, REG_SOURCE_ADMIN, set, BIG, 0, err), -EINVAL, "a duplicate: 400");
    ok(strcmp(err, "duplicate backend name 'svc17'") == 0, "named (%s)", err);
    set[8000].port = 0;
    is_int(reg_replace(&r, REG_SOURCE_ADMIN, set, BIG, 0, err), -EINVAL, "an invalid port first");
    ok(strcmp(err, "invalid port 0: must be 1-65535") == 0, "reported first (%s)", err);
    is_int(reg_count(&r), 0, "refused PUTs change nothing");
    reg_deinit(&r);
}

/* Register and unregister by name at 10,000, then a long random mix of
 * both on a small set, where the name table is small enough for probes to
 * wrap around and deletions to shift entries back: after every change,
 * every name in the set is found and no other one. */
static void test_register_unregister(void)
{
    struct registry r;
    char err[NET_ERR_LEN];
    reg_init(&r, 1, &lb_least);
    int added = 0, updated = 0;
    for (unsigned i = 0; i < BIG; i++) {
        struct backend_spec s = spec("b", i, 1);
        added += reg_upsert(&r, &s, REG_SOURCE_ADMIN, err) == 0;
    }
    for (unsigned i = 0; i < BIG; i += 2) {
        struct backend_spec s = spec("b", i, 3);
        updated += reg_upsert(&r, &s, REG_SOURCE_ADMIN, err) == 1;
    }
    is_int(added, BIG, "10,000 registers of new names add");
    is_int(updated, BIG / 2, "5,000 registers of known names update");
    is_int(reg_count(&r), BIG, "and add nothing");
    int removed = 0, missing = 0;
    for (unsigned i = 0; i < BIG; i += 3) {
        char name[32];
        snprintf(name, sizeof(name), "b%u", i);
        removed += reg_remove(&r, name) == 0;
        missing += reg_remove(&r, name) == -ENOENT;
    }
    is_int(removed, 3334, "every third one unregistered");
    is_int(missing, 3334, "and unregistering it again finds nothing");
    bool order = r.n == BIG - 3334, weights = true, found = true;
    for (unsigned i = 0, k = 0; i < BIG && order; i++) {
        if (i % 3 == 0)
            continue;
        char name[32];
        snprintf(name, sizeof(name), "b%u", i);
        order &= strcmp(r.v[k]->spec.name, name) == 0;
        weights &= r.v[k]->spec.weight == (i % 2 ? 1u : 3u);
        found &= pinned(&r, name) == r.v[k];
        k++;
    }
    ok(order, "the rest keep their order");
    ok(weights, "and their weights");
    ok(found, "and each is found by name");
    reg_deinit(&r);

    /* A model of the set (present[i]) against the registry through 20,000
     * random changes to 40 names. */
    reg_init(&r, 1, &lb_least);
    bool present[40] = {false}, agree = true;
    uint64_t rng = 42;
    unsigned changes = 0;
    for (int step = 0; step < 20000 && agree; step++) {
        unsigned i = (unsigned)(util_rand64(&rng) % 40);
        struct backend_spec s = spec("n", i, 1);
        if (util_rand64(&rng) % 2) {
            agree &= reg_upsert(&r, &s, REG_SOURCE_ADMIN, err) == (present[i] ? 1 : 0);
            present[i] = true;
        } else {
            agree &= reg_remove(&r, s.name) == (present[i] ? 0 : -ENOENT);
            present[i] = false;
        }
        changes++;
        for (unsigned k = 0; k < 40 && agree; k++) {
            char name[32];
            snprintf(name, sizeof(name), "n%u", k);
            struct backend *b = pinned(&r, name);
            agree &= present[k] ? b != NULL : b == NULL;
        }
    }
    ok(agree, "20,000 random registers and unregisters: the names found are the set's (%u)",
       changes);
    reg_deinit(&r);
}

/* GET /v1/models against the rule it always followed: each model of the
 * healthy backends once, in order of first appearance (a backend's own
 * list first, else its probed one). */
static void test_models_list(void)
{
    struct registry r;
    char err[NET_ERR_LEN];
    reg_init(&r, 1, &lb_least);
    for (unsigned i = 0; i < 3000; i++) {
        struct backend_spec s = spec("m", i, i % 7 == 0 ? 0 : 1);
        char names[3][32];
        const char *ptrs[3];
        for (unsigned k = 0; k < 3; k++) {
            snprintf(names[k], sizeof(names[k]), "model-%u", (i * 7 + k * 13) % 500);
            ptrs[k] = names[k];
        }
        /* i % 11 == 0: none, probed below */
        reg_spec_set_models(&s, ptrs, i % 11 == 0 ? 0 : 1 + i % 3, err);
        reg_upsert(&r, &s, REG_SOURCE_ADMIN, err);
        reg_spec_free(&s);
    }
    const char *probed[2] = {"probed-only", "model-3"};
    for (unsigned i = 0; i < 3000; i += 11)
        reg_set_probed_models(&r, r.v[i], probed, 2);
    for (unsigned i = 5; i < 3000; i += 13)
        r.v[i]->down_until = NOW + 1000; /* ejected: left out */

    /* The expected list, the slow way. */
    static char want[4000][128];
    unsigned nwant = 0;
    for (unsigned i = 0; i < r.n; i++) {
        const struct backend *b = r.v[i];
        if (b->spec.weight == 0 || b->down_until > NOW)
            continue;
        unsigned nm = b->spec.nmodels ? b->spec.nmodels : b->nprobed;
        const char *id = b->spec.nmodels ? b->spec.models : b->probed;
        for (unsigned m = 0; m < nm; m++, id = reg_model_next(id)) {
            bool seen = false;
            for (unsigned k = 0; k < nwant && !seen; k++)
                seen = strcmp(want[k], id) == 0;
            if (!seen)
                strcpy(want[nwant++], id);
        }
    }
    struct buf out = {0};
    reg_models_json(&r, &out, NOW);
    buf_append(&out, "", 1);
    const char *p = buf_data(&out);
    unsigned got = 0;
    bool same = true;
    for (const char *q = strstr(p, "{\"id\":\""); q != NULL; q = strstr(q, "{\"id\":\"")) {
        q += 7;
        size_t len = strcspn(q, "\"");
        same &= got < nwant && strlen(want[got]) == len && strncmp(want[got], q, len) == 0;
        got++;
    }
    is_int(got, nwant, "/v1/models lists %u models", nwant);
    ok(same, "each once, in order of first appearance among healthy backends");
    ok(strncmp(p, "{\"object\":\"list\",\"data\":[{\"id\":", 31) == 0, "in OpenAI's list format");
    buf_free(&out);
    reg_deinit(&r);
}

int main(void)
{
    test_big_put();
    test_put_errors();
    test_register_unregister();
    test_models_list();
    buf_cache_drain();
    reg_thread_exit();
    return done_testing();
}
