/* SPDX-License-Identifier: MIT
 * Pushing the desired set to the balancers (src/watcher/push.c, included so
 * its static helpers are reachable; model.c for the answers' parsers) with no
 * network: test_watch_fake_xfer.h records each admin call and the test
 * answers as a balancer would. The PUT body and its generation, the debounce,
 * versions (a change during a push is sent after it), retries with backoff,
 * 409 and 400 answers (a refused entry held back from that balancer only),
 * resync checks and repairs, register/unregister rounds, targets coming and
 * going, the metrics. */
#include "../../src/watcher/model.c"
#include "../../src/watcher/push.c"

#include "../tap.h"
#include "test_watch_fake_xfer.h"

static json_t *J(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, 0, &e);
    if (j == NULL)
        tap_note("bad test JSON at %d: %s", e.line, e.text);
    return j;
}

static void set_targets(struct push *p, const char *urls)
{
    json_t *u = J(urls);
    push_set_targets(p, u);
    json_decref(u);
}

/* The request in flight to <url> (a prefix of its URL), or NULL. */
static struct fake_req *req_to(const char *url)
{
    for (size_t i = 0; i < fake_nlive; i++)
        if (strncmp(fake_live[i]->url, url, strlen(url)) == 0)
            return fake_live[i];
    return NULL;
}

static json_t *req_json(const struct fake_req *f)
{
    return f && f->x.req_body ? json_loads(f->x.req_body, 0, NULL) : NULL;
}

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

#define SET1                                                                                       \
    "[{\"name\":\"default/a/p1\",\"weight\":1,\"ip\":\"10.0.0.1\",\"port\":8080,"                  \
    "\"models\":[\"m\"],\"max_inflight\":1},"                                                      \
    "{\"name\":\"default/a/p2\",\"weight\":2,\"ip\":\"10.0.0.2\",\"port\":8080}]"

static void test_put(void)
{
    struct push p;
    push_init(&p, PUSH_PUT, "s3cret");
    set_targets(&p, "[\"http://a:8081/\", \"http://b:8081\"]");
    is_int(p.n, 2, "two balancers");
    ok(strcmp(p.t[0]->url, "http://a:8081") == 0, "trailing slash dropped");
    push_tick(&p, fake_now);
    is_int(fake_nlive, 0, "nothing pushed before the first set");

    uint64_t before = wall_ms();
    push_set_desired(&p, J(SET1), fake_now);
    is_int(push_tick(&p, fake_now), fake_now + 50, "debounced 50 ms");
    is_int(fake_nlive, 0, "nothing sent inside the window");
    fake_now += 50;
    push_tick(&p, fake_now);
    is_int(fake_nlive, 2, "then one PUT per balancer");
    struct fake_req *a = req_to("http://a:8081"), *b = req_to("http://b:8081");
    ok(a && strcmp(a->method, "PUT") == 0 && strcmp(a->url, "http://a:8081/api/services") == 0,
       "PUT /api/services");
    ok(a && strcmp(a->auth, "Authorization: Bearer s3cret") == 0, "with the admin token");
    ok(a && a->timeout_ms == 5000, "5 s timeout");
    json_t *body = req_json(a), *want = J(SET1);
    ok(json_equal(json_object_get(body, "services"), want), "services: the set as given");
    json_int_t gen = json_integer_value(json_object_get(body, "generation"));
    ok(gen >= (json_int_t)before && gen <= (json_int_t)wall_ms(), "generation: wall-clock ms");
    is_int(json_object_size(body), 2, "generation and services, nothing else");
    json_decref(body);
    json_decref(want);

    fake_finish(a, CURLE_OK, 200, "{}");
    fake_finish(b, CURLE_OK, 200, "{}");
    ok(p.t[0]->ok == 1 && p.t[1]->ok == 1 && p.t[0]->done_ver == p.ver, "both acknowledged");
    ok(p.t[0]->last_sync > 0, "last sync recorded");
    push_tick(&p, fake_now);
    is_int(fake_nlive, 0, "nothing more to send");
    push_set_desired(&p, J(SET1), fake_now);
    ok(p.debounce_at == 0, "the same set again is ignored");

    /* A change arriving while a push is in flight is sent right after it. */
    push_set_desired(&p, J("[]"), fake_now);
    fake_now += 50;
    push_tick(&p, fake_now);
    a = req_to("http://a:8081");
    b = req_to("http://b:8081");
    body = req_json(a);
    ok((json_int_t)json_integer_value(json_object_get(body, "generation")) > gen,
       "each new set a larger generation");
    json_decref(body);
    push_set_desired(&p, J(SET1), fake_now);
    fake_now += 50;
    push_tick(&p, fake_now);
    is_int(fake_nlive, 2, "one request per balancer at a time");
    fake_finish(a, CURLE_OK, 200, "{}");
    fake_finish(b, CURLE_OK, 200, "{}");
    ok(p.t[0]->done_ver != p.ver, "acknowledged an older version: still behind");
    push_tick(&p, fake_now);
    a = req_to("http://a:8081");
    body = req_json(a);
    want = J(SET1);
    ok(json_equal(json_object_get(body, "services"), want), "the newer set follows at once");
    json_decref(body);
    json_decref(want);

    /* A balancer failing: its own backoff, 0.5 s doubling to 10 s. */
    fake_finish(req_to("http://b:8081"), CURLE_OK, 200, "{}");
    fake_finish(a, CURLE_OK, 503, "busy");
    ok(p.t[0]->failed == 1 && p.t[0]->retry_at == fake_now + 500, "503: retry in 0.5 s");
    is_int(push_tick(&p, fake_now), fake_now + 500, "next tick when the retry is due");
    is_int(fake_nlive, 0, "not before");
    int64_t waits[6];
    for (int i = 0; i < 6; i++) {
        fake_now = p.t[0]->retry_at;
        push_tick(&p, fake_now);
        a = req_to("http://a:8081");
        fake_finish(a, CURLE_COULDNT_CONNECT, 0, NULL);
        waits[i] = p.t[0]->retry_at - fake_now;
    }
    ok(waits[0] == 1000 && waits[1] == 2000 && waits[4] == 10000 && waits[5] == 10000,
       "doubling, capped at 10 s");
    ok(p.t[1]->done_ver == p.ver && p.t[1]->failed == 0, "the other balancer unaffected");
    fake_now = p.t[0]->retry_at;
    push_tick(&p, fake_now);
    fake_finish(req_to("http://a:8081"), CURLE_OK, 200, "{}");
    ok(p.t[0]->backoff_ms == 0 && p.t[0]->done_ver == p.ver, "success resets the backoff");

    /* Targets come and go: a new one is filled at once, a gone one cancelled. */
    push_repush(&p, fake_now);
    push_tick(&p, fake_now);
    unsigned c = fake_cancelled;
    set_targets(&p, "[\"http://b:8081\", \"http://c:8081\"]");
    ok(p.n == 2 && fake_cancelled == c + 1, "a left: its request cancelled");
    push_tick(&p, fake_now);
    ok(req_to("http://c:8081") != NULL, "c joined: pushed at once");
    push_deinit(&p);
    is_int(fake_nlive, 0, "deinit cancels everything");
}

static void test_409_and_400(void)
{
    struct push p;
    push_init(&p, PUSH_PUT, NULL);
    set_targets(&p, "[\"http://a:8081\", \"http://b:8081\"]");
    push_set_desired(&p, J(SET1), fake_now);
    fake_now += 50;
    push_tick(&p, fake_now);
    struct fake_req *a = req_to("http://a:8081");
    ok(a && a->auth[0] == '\0', "no token: no Authorization header");

    /* 409: another writer is ahead; go past it. */
    uint64_t ahead = p.generation + 1000000;
    char msg[200];
    snprintf(msg, sizeof(msg), "{\"error\":\"stale generation 5: already at %llu\"}",
             (unsigned long long)ahead);
    fake_finish(a, CURLE_OK, 409, msg);
    is_int(p.generation, ahead, "generation jumps to the balancer's");
    fake_finish(req_to("http://b:8081"), CURLE_OK, 200, "{}");
    fake_now = p.t[0]->retry_at;
    push_tick(&p, fake_now);
    json_t *body = req_json(req_to("http://a:8081"));
    is_int(json_integer_value(json_object_get(body, "generation")), ahead,
           "pushed again at that generation");
    json_decref(body);
    ok(req_to("http://b:8081") != NULL, "and to every balancer (a new version)");
    fake_finish(req_to("http://a:8081"), CURLE_OK, 200, "{}");
    fake_finish(req_to("http://b:8081"), CURLE_OK, 200, "{}");

    /* 400 naming services[1]: that entry held back from that balancer only. */
    push_set_desired(&p, J("[{\"name\":\"x\",\"weight\":1,\"ip\":\"10.0.0.9\",\"port\":1},"
                           "{\"name\":\"y\",\"weight\":1,\"ip\":\"10.0.0.10\",\"port\":2}]"),
                     fake_now);
    fake_now += 50;
    push_tick(&p, fake_now);
    fake_finish(req_to("http://a:8081"), CURLE_OK, 400,
                "{\"error\":\"services[1]: address is the balancer's own listener\"}");
    fake_finish(req_to("http://b:8081"), CURLE_OK, 200, "{}");
    ok(json_object_get(p.t[0]->refused, "y") != NULL, "y refused by a");
    ok(p.t[0]->retry_at == 0 && p.t[0]->done_ver == 0, "the rest is sent at once");
    push_tick(&p, fake_now);
    body = req_json(req_to("http://a:8081"));
    json_t *svc = json_object_get(body, "services");
    ok(json_array_size(svc) == 1 &&
           strcmp(json_string_value(json_object_get(json_array_get(svc, 0), "name")), "x") == 0,
       "a gets the set without y");
    json_decref(body);
    ok(req_to("http://b:8081") == NULL && json_object_size(p.t[1]->refused) == 0,
       "b kept the whole set");
    struct buf m = {0};
    push_metrics(&p, &m);
    buf_append(&m, "", 1);
    ok(strstr(buf_data(&m), "llamalb_watcher_refused_backends{balancer=\"http://a:8081\"} 1\n") &&
           strstr(buf_data(&m), "llamalb_watcher_refused_backends{balancer=\"http://b:8081\"} 0\n"),
       "refused_backends per balancer");
    buf_free(&m);
    /* A 400 that names no entry: an ordinary failure, with backoff. */
    fake_finish(req_to("http://a:8081"), CURLE_OK, 400, "{\"error\":\"bad JSON\"}");
    ok(p.t[0]->retry_at == fake_now + 500 && json_object_size(p.t[0]->refused) == 1,
       "a 400 naming no entry backs off");
    fake_now = p.t[0]->retry_at;
    push_tick(&p, fake_now);
    fake_finish(req_to("http://a:8081"), CURLE_OK, 200, "{}");
    /* y changes: tried again. */
    push_set_desired(&p, J("[{\"name\":\"x\",\"weight\":1,\"ip\":\"10.0.0.9\",\"port\":1},"
                           "{\"name\":\"y\",\"weight\":3,\"ip\":\"10.0.0.10\",\"port\":2}]"),
                     fake_now);
    fake_now += 50;
    push_tick(&p, fake_now);
    body = req_json(req_to("http://a:8081"));
    is_int(json_array_size(json_object_get(body, "services")), 2, "a changed entry is tried again");
    json_decref(body);
    fake_finish(req_to("http://b:8081"), CURLE_OK, 200, "{}");
    /* Refused again in its new form: set aside again (the stored copy
     * replaced), and the rest sent at once, not the same set with backoff
     * until the next full resync. */
    fake_finish(req_to("http://a:8081"), CURLE_OK, 400, "{\"error\":\"services[1]: no\"}");
    ok(p.t[0]->retry_at == 0 && p.t[0]->done_ver == 0, "changed y refused again: the rest at once");
    is_int(json_integer_value(json_object_get(json_object_get(p.t[0]->refused, "y"), "weight")), 3,
           "the refused copy is the new y");
    is_int(json_object_size(p.t[0]->refused), 1, "still one entry held back");
    push_tick(&p, fake_now);
    body = req_json(req_to("http://a:8081"));
    svc = json_object_get(body, "services");
    ok(json_array_size(svc) == 1 &&
           strcmp(json_string_value(json_object_get(json_array_get(svc, 0), "name")), "x") == 0,
       "a gets the set without the new y");
    json_decref(body);
    fake_finish(req_to("http://a:8081"), CURLE_OK, 200, "{}");
    ok(p.t[0]->retry_at == 0 && p.t[0]->done_ver == p.ver, "a is up to date again");
    /* x changes meanwhile: a gets it at once, y still held back. */
    push_set_desired(&p, J("[{\"name\":\"x\",\"weight\":7,\"ip\":\"10.0.0.9\",\"port\":1},"
                           "{\"name\":\"y\",\"weight\":3,\"ip\":\"10.0.0.10\",\"port\":2}]"),
                     fake_now);
    fake_now += 50;
    push_tick(&p, fake_now);
    body = req_json(req_to("http://a:8081"));
    svc = json_object_get(body, "services");
    ok(json_array_size(svc) == 1 &&
           json_integer_value(json_object_get(json_array_get(svc, 0), "weight")) == 7,
       "later updates reach a, without y");
    json_decref(body);
    fake_finish(req_to("http://a:8081"), CURLE_OK, 200, "{}");
    fake_finish(req_to("http://b:8081"), CURLE_OK, 200, "{}");
    push_repush(&p, fake_now);
    ok(json_object_size(p.t[0]->refused) == 0, "a full resync forgets the refusals");
    push_tick(&p, fake_now);
    body = req_json(req_to("http://a:8081"));
    is_int(json_array_size(json_object_get(body, "services")), 2, "and sends everything");
    json_decref(body);
    ok(req_to("http://b:8081") != NULL, "to every balancer");
    fake_finish(req_to("http://a:8081"), CURLE_OK, 400, "{\"error\":\"services[1]: no\"}");
    fake_finish(req_to("http://b:8081"), CURLE_OK, 200, "{}");
    ok(p.t[0]->retry_at == 0 && json_object_get(p.t[0]->refused, "y") != NULL,
       "y set aside once more, the rest sent at once");
    push_deinit(&p);
}

static void test_resync_check(void)
{
    struct push p;
    push_init(&p, PUSH_PUT, NULL);
    set_targets(&p, "[\"http://a:8081\"]");
    push_set_desired(&p, J(SET1), fake_now);
    fake_now += 50;
    push_tick(&p, fake_now);
    fake_finish(req_to("http://a:8081"), CURLE_OK, 200, "{}");

    push_resync(&p);
    push_tick(&p, fake_now);
    struct fake_req *g = req_to("http://a:8081");
    ok(g && strcmp(g->method, "GET") == 0 && strcmp(g->url, "http://a:8081/api/services") == 0,
       "resync: GET /api/services");
    fake_finish(g, CURLE_OK, 200,
                "[{\"name\":\"default/a/p2\",\"weight\":2,\"ip\":\"10.0.0.2\",\"port\":8080,"
                "\"source\":\"api\"},{\"name\":\"default/a/p1\",\"weight\":1,\"ip\":\"10.0.0.1\","
                "\"port\":8080,\"models\":[\"m\"],\"max_inflight\":1,\"healthy\":true},"
                "{\"name\":\"static1\",\"weight\":1,\"ip\":\"10.9.9.9\",\"port\":1,"
                "\"source\":\"static\"}]");
    ok(p.t[0]->checks_ok == 1 && p.t[0]->repairs == 0, "same set: nothing to do");
    push_tick(&p, fake_now);
    is_int(fake_nlive, 0, "no PUT");

    push_resync(&p);
    push_tick(&p, fake_now);
    fake_finish(req_to("http://a:8081"), CURLE_OK, 200, "[]");
    ok(p.t[0]->repairs == 1 && p.t[0]->done_ver == 0, "a restarted, empty balancer: repair");
    push_tick(&p, fake_now);
    struct fake_req *put = req_to("http://a:8081");
    ok(put && strcmp(put->method, "PUT") == 0, "pushed again");
    fake_finish(put, CURLE_OK, 200, "{}");

    push_resync(&p);
    push_tick(&p, fake_now);
    fake_finish(req_to("http://a:8081"), CURLE_OK, 200, "{\"not\":\"an array\"}");
    ok(p.t[0]->done_ver == 0 && p.t[0]->retry_at > fake_now, "an odd answer: backoff, then push");
    push_deinit(&p);
}

static void test_register(void)
{
    struct push p;
    push_init(&p, PUSH_REGISTER, "t");
    set_targets(&p, "[\"http://a:8081\"]");
    push_set_desired(&p, J("[{\"name\":\"a\",\"weight\":1,\"ip\":\"10.0.0.1\",\"port\":80,"
                           "\"models\":[\"m\"],\"max_inflight\":1},"
                           "{\"name\":\"b\",\"weight\":5,\"ip\":\"10.0.0.2\",\"port\":80},"
                           "{\"name\":\"d\",\"weight\":1,\"ip\":\"10.0.0.4\",\"port\":80}]"),
                     fake_now);
    fake_now += 50;
    push_tick(&p, fake_now);
    struct fake_req *f = req_to("http://a:8081");
    ok(f && strcmp(f->method, "GET") == 0, "register mode reads the balancer's set first");
    fake_finish(f, CURLE_OK, 200,
                "[{\"name\":\"b\",\"weight\":1,\"ip\":\"10.0.0.2\",\"port\":80},"
                "{\"name\":\"c\",\"weight\":1,\"ip\":\"10.0.0.3\",\"port\":80},"
                "{\"name\":\"d\",\"weight\":1,\"ip\":\"10.0.0.4\",\"port\":80},"
                "{\"name\":\"s\",\"weight\":1,\"ip\":\"10.0.0.5\",\"port\":80,\"source\":\"static\"}]");
    f = req_to("http://a:8081");
    ok(f && strcmp(f->method, "POST") == 0 && strcmp(f->url, "http://a:8081/api/register") == 0,
       "POST /api/register");
    ok(f && strcmp(f->auth, "Authorization: Bearer t") == 0, "with the token");
    json_t *body = req_json(f);
    ok(json_object_size(body) == 4 &&
           strcmp(json_string_value(json_object_get(body, "name")), "a") == 0 &&
           json_integer_value(json_object_get(body, "weight")) == 1 &&
           strcmp(json_string_value(json_object_get(body, "ip")), "10.0.0.1") == 0 &&
           json_integer_value(json_object_get(body, "port")) == 80,
       "missing a: name, weight, ip, port only");
    json_decref(body);
    fake_finish(f, CURLE_OK, 200, "{}");
    f = req_to("http://a:8081");
    body = req_json(f);
    ok(strcmp(json_string_value(json_object_get(body, "name")), "b") == 0 &&
           json_integer_value(json_object_get(body, "weight")) == 5,
       "changed b registered again");
    json_decref(body);
    fake_finish(f, CURLE_OK, 500, "no");
    is_int(p.t[0]->call_failures, 1, "a refused call is counted");
    f = req_to("http://a:8081");
    ok(f && strcmp(f->method, "DELETE") == 0 &&
           strcmp(f->url, "http://a:8081/api/unregister/c") == 0,
       "the round goes on: DELETE /api/unregister/c (static s untouched)");
    fake_finish(f, CURLE_OK, 404, "gone");
    ok(req_to("http://a:8081") == NULL, "round over: d unchanged, nothing more");
    ok(p.t[0]->failed == 1 && p.t[0]->ok == 0 && p.t[0]->done_ver == p.ver,
       "a round with a refusal: failed, retried at the next resync, not at once");
    push_tick(&p, fake_now);
    is_int(fake_nlive, 0, "no hot loop");

    push_resync(&p);
    push_tick(&p, fake_now);
    fake_finish(req_to("http://a:8081"), CURLE_OK, 200,
                "[{\"name\":\"a\",\"weight\":1,\"ip\":\"10.0.0.1\",\"port\":80},"
                "{\"name\":\"b\",\"weight\":1,\"ip\":\"10.0.0.2\",\"port\":80},"
                "{\"name\":\"d\",\"weight\":1,\"ip\":\"10.0.0.4\",\"port\":80}]");
    f = req_to("http://a:8081");
    body = req_json(f);
    ok(f && strcmp(json_string_value(json_object_get(body, "name")), "b") == 0,
       "the resync diffs again: only b is sent");
    json_decref(body);
    fake_finish(f, CURLE_OK, 200, "{}");
    ok(p.t[0]->ok == 1 && p.t[0]->backoff_ms == 0, "round done");

    /* No answer at all: the balancer is away; the round ends, backoff. */
    push_set_desired(&p, J("[]"), fake_now);
    fake_now += 50;
    push_tick(&p, fake_now);
    fake_finish(req_to("http://a:8081"), CURLE_OK, 200,
                "[{\"name\":\"a\",\"weight\":1,\"ip\":\"10.0.0.1\",\"port\":80},"
                "{\"name\":\"b\",\"weight\":5,\"ip\":\"10.0.0.2\",\"port\":80}]");
    f = req_to("http://a:8081");
    ok(f && strcmp(f->url, "http://a:8081/api/unregister/a") == 0, "unregister a");
    fake_finish(f, CURLE_COULDNT_CONNECT, 0, NULL);
    ok(req_to("http://a:8081") == NULL && p.t[0]->retry_at == fake_now + 500 &&
           p.t[0]->done_ver != p.ver,
       "no answer: round ended, retried with backoff");
    fake_now += 500;
    push_tick(&p, fake_now);
    f = req_to("http://a:8081");
    ok(f && strcmp(f->method, "GET") == 0, "the retry starts with a fresh GET");
    fake_finish(f, CURLE_OK, 200, "[]");
    ok(p.t[0]->done_ver == p.ver && p.t[0]->ok == 2, "nothing to do: done");

    struct buf m = {0};
    push_metrics(&p, &m);
    buf_append(&m, "", 1);
    const char *t = buf_data(&m);
    ok(strstr(t, "llamalb_watcher_pushes_total{balancer=\"http://a:8081\",result=\"ok\"} 2\n") &&
           strstr(t, "llamalb_watcher_pushes_total{balancer=\"http://a:8081\",result=\"failed\"} "
                     "2\n") &&
           strstr(t, "llamalb_watcher_admin_call_failures_total{balancer=\"http://a:8081\"} 1\n") &&
           strstr(t, "llamalb_watcher_balancers 1\n") &&
           strstr(t, "llamalb_watcher_backends_desired 0\n"),
       "metrics");
    buf_free(&m);
    push_deinit(&p);
}

int main(void)
{
    test_put();
    test_409_and_400();
    test_resync_check();
    test_register();
    is_int(fake_nlive, 0, "no request left in flight");
    return done_testing();
}
