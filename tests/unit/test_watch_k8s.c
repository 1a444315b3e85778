/* SPDX-License-Identifier: MIT
 * The list+watch reflector (src/watcher/k8s.c, included so its static
 * helpers are reachable) driven with no network: test_watch_fake_xfer.h
 * records each request and the test answers as the API server would. Paged
 * lists and continue tokens, the swap of a complete list, watch events and
 * bookmarks, lines split across reads, 410 Gone as a status and as an ERROR
 * event, an expired continue token, malformed and oversized lines, the list
 * bounds, stalls, backoff, and the set in force surviving every failure. */
#include "../../src/watcher/model.c"
#include "../../src/watcher/k8s.c"

#include "../tap.h"
#include "test_watch_fake_xfer.h"

static int forced_reloads, applied;

void k8s_config_apply(struct k8s_config *c, struct xfer *x)
{
    (void)c;
    (void)x;
    applied++;
}

void k8s_config_reload_token(struct k8s_config *c, int64_t now_ms, bool force)
{
    (void)c;
    (void)now_ms;
    if (force)
        forced_reloads++;
}

static struct k8s_config cfg = {.server = (char *)"https://k8s:6443"};

/* What the reflector told its owner. */
static int changes, deletions;
static char last_key[512];
static void on_change(void *data, struct k8s_reflector *r, const char *key, json_t *obj)
{
    (void)data;
    (void)r;
    changes++;
    if (obj == NULL)
        deletions++;
    snprintf(last_key, sizeof(last_key), "%s", key);
}

static struct k8s_reflector *new_refl(void)
{
    struct k8s_reflector *r =
        k8s_reflector_new(&cfg, "services", "/api/v1/services", "llamaedge/target=true");
    r->on_change = on_change;
    changes = deletions = 0;
    return r;
}

/* A list page: <names> space-separated, resourceVersion <rv>, continue <cont>. */
static char *page(const char *names, const char *rv, const char *cont)
{
    struct buf b = {0};
    buf_printf(&b, "{\"kind\":\"ServiceList\",\"metadata\":{\"resourceVersion\":\"%s\"%s%s%s},"
                   "\"items\":[", rv, cont ? ",\"continue\":\"" : "", cont ? cont : "",
               cont ? "\"" : "");
    char tmp[1024];
    snprintf(tmp, sizeof(tmp), "%s", names);
    int i = 0;
    for (char *save, *n = strtok_r(tmp, " ", &save); n; n = strtok_r(NULL, " ", &save))
        buf_printf(&b, "%s{\"metadata\":{\"namespace\":\"ns\",\"name\":\"%s\"}}", i++ ? "," : "",
                   n);
    buf_append_str(&b, "]}");
    buf_append(&b, "", 1);
    char *s = xstrdup(buf_data(&b));
    buf_free(&b);
    return s;
}

static void answer(struct fake_req *f, long status, char *body_owned)
{
    fake_finish(f, CURLE_OK, status, body_owned);
    free(body_owned);
}

static bool url_has(const struct fake_req *f, const char *needle)
{
    return f != NULL && strstr(f->url, needle) != NULL;
}

/* A reflector listed (items a b c at rv 10) and watching. */
static struct k8s_reflector *watching(void)
{
    struct k8s_reflector *r = new_refl();
    k8s_reflector_tick(r, fake_now);
    answer(fake_first(), 200, page("a b c", "10", NULL));
    return r;
}

static void test_paged_list(void)
{
    struct k8s_reflector *r = new_refl();
    int64_t next = k8s_reflector_tick(r, fake_now);
    struct fake_req *f = fake_first();
    ok(f != NULL && r->state == K8S_LISTING, "the first tick starts a list");
    ok(f && strcmp(f->url, "https://k8s:6443/api/v1/services?labelSelector=llamaedge%2Ftarget%3D"
                           "true&limit=500") == 0,
       "list URL: escaped selector, limit=500, no watch");
    if (f)
        note("url %s", f->url);
    ok(f && f->timeout_ms == 60000, "a list page gives up after 60 s");
    ok(next > fake_now, "next tick in the future");
    is_int(r->st.lists, 1, "one list counted");

    answer(f, 200, page("a b", "7", "tok 1/x"));
    ok(fake_first() == NULL && r->state == K8S_LISTING, "more pages: no request at once");
    is_int(json_object_size(r->items), 0, "nothing swapped in before the last page");
    ok(!r->synced && changes == 0, "not synced, no change told");
    is_int(k8s_reflector_tick(r, fake_now), fake_now + K8S_PAGE_PAUSE_MS,
           "the next page after the pause");
    ok(fake_first() == NULL, "still no request during the pause");
    fake_now += K8S_PAGE_PAUSE_MS;
    k8s_reflector_tick(r, fake_now);
    f = fake_first();
    ok(url_has(f, "limit=500&continue=tok%201%2Fx"), "page 2 sends the continue token, escaped");
    is_int(r->st.lists, 1, "pages are not lists");

    answer(f, 200, page("c", "12", NULL));
    is_int(json_object_size(r->items), 3, "the complete list swapped in");
    ok(r->synced && r->changed, "synced and changed");
    is_int(changes, 3, "the owner told of every object");
    ok(r->rv && strcmp(r->rv, "12") == 0, "resourceVersion of the last page kept");
    ok(r->cont == NULL && r->pending == NULL, "no list in progress");
    f = fake_first();
    ok(r->state == K8S_WATCHING && f != NULL, "watching right after the list");
    ok(url_has(f, "?labelSelector=llamaedge%2Ftarget%3Dtrue&watch=true&resourceVersion=12&"
                  "allowWatchBookmarks=true&timeoutSeconds=290"),
       "watch URL: from the list's version, bookmarks, timeoutSeconds");
    ok(f && f->timeout_ms == 305000, "libcurl backstop: stall or timeout + 5 s, plus 10 s");
    ok(applied >= 3, "auth and TLS applied to every request");
    k8s_reflector_free(r);
    is_int(fake_nlive, 0, "free cancels the watch");
}

static void test_watch_events(void)
{
    struct k8s_reflector *r = watching();
    struct fake_req *f = fake_first();
    changes = 0;
    ok(fake_stream(f, 200, "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"namespace\":\"ns\","
                           "\"name\":\"d\",\"resourceVersion\":\"13\",\"managedFields\":[{}],"
                           "\"annotations\":{\"kubectl.kubernetes.io/last-applied-"
                           "configuration\":\"{}\",\"keep\":\"1\"}}}}\n"),
       "ADDED accepted");
    json_t *d = json_object_get(r->items, "ns/d");
    ok(d != NULL && strcmp(r->rv, "13") == 0, "stored, version advanced");
    json_t *md = json_object_get(d, "metadata");
    ok(json_object_get(md, "managedFields") == NULL, "managedFields dropped");
    ok(json_object_get(json_object_get(md, "annotations"),
                       "kubectl.kubernetes.io/last-applied-configuration") == NULL &&
           json_object_get(json_object_get(md, "annotations"), "keep") != NULL,
       "last-applied copy dropped, other annotations kept");
    ok(changes == 1 && strcmp(last_key, "ns/d") == 0, "the owner told which object");

    /* One event in three reads, then two events in one read. */
    ok(fake_stream(f, 200, "{\"type\":\"MODIFIED\",\"object\":{\"metadata\":"), "part 1");
    ok(fake_stream(f, 200, "{\"namespace\":\"ns\",\"name\":\"a\",\"resourceVersion\":\"14\"},"),
       "part 2");
    is_int(r->st.modified, 0, "nothing handled before the newline");
    ok(fake_stream(f, 200, "\"spec\":{\"x\":1}}}\n\n  \n"), "part 3 and blank lines");
    is_int(r->st.modified, 1, "a line split across reads is one event");
    ok(json_object_get(json_object_get(r->items, "ns/a"), "spec") != NULL, "object replaced");
    ok(fake_stream(f, 200, "{\"type\":\"DELETED\",\"object\":{\"metadata\":{\"namespace\":\"ns\","
                           "\"name\":\"b\",\"resourceVersion\":\"15\"}}}\n{\"type\":\"BOOKMARK\","
                           "\"object\":{\"metadata\":{\"resourceVersion\":\"16\"}}}\n"),
       "DELETED and BOOKMARK in one read");
    ok(json_object_get(r->items, "ns/b") == NULL && deletions == 1, "deleted and told");
    ok(strcmp(r->rv, "16") == 0, "a bookmark moves the version");
    is_int(r->st.bookmarks, 1, "bookmark counted");
    is_int(json_object_size(r->items), 3, "a b c d less b");
    ok(fake_stream(f, 200, "{\"type\":\"DELETED\",\"object\":{\"metadata\":{\"namespace\":\"ns\","
                           "\"name\":\"zz\",\"resourceVersion\":\"17\"}}}\n"),
       "DELETED of an unknown object");
    is_int(deletions, 1, "is no change");
    ok(strcmp(r->rv, "17") == 0, "but moves the version");

    /* A clean end (timeoutSeconds): re-watch from the last version, no relist. */
    fake_now += 5000;
    fake_finish(f, CURLE_OK, 200, NULL);
    ok(r->state == K8S_IDLE && r->retry_at == fake_now, "clean end: again at once");
    is_int(r->st.watch_restarts, 1, "restart counted");
    k8s_reflector_tick(r, fake_now);
    f = fake_first();
    ok(url_has(f, "watch=true&resourceVersion=17&"), "re-watch from the last version");
    is_int(r->st.lists, 1, "no relist");

    /* A watch that closes at once without a byte (not even a bookmark) is an
     * error in disguise (docs/watcher.md, "The watch loop", step 4): it backs
     * off, or a server doing that would be asked again in a tight loop. */
    fake_finish(f, CURLE_OK, 200, NULL);
    ok(r->state == K8S_IDLE && r->retry_at >= fake_now + 800 &&
           r->retry_at <= fake_now + 1200,
       "closed at once without data: backs off");
    is_int(r->st.watch_restarts, 2, "still counted as a restart");
    is_int(r->st.lists, 1, "no relist: the version is good");
    fake_now = r->retry_at;
    k8s_reflector_tick(r, fake_now);
    f = fake_first();
    ok(url_has(f, "watch=true&resourceVersion=17&"), "then re-watched from the last version");
    fake_finish(f, CURLE_OK, 200, NULL);
    ok(r->retry_at >= fake_now + 1600, "closed at once again: the backoff grows");
    fake_now = r->retry_at;
    k8s_reflector_tick(r, fake_now);
    f = fake_first();

    /* Bytes in the very millisecond the watch opened, then a close at once:
     * data came, so it is no error (the clock did not move; a comparison of
     * last_byte_ms with watch_start_ms could not tell). */
    ok(fake_stream(f, 200, "{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":"
                           "{\"resourceVersion\":\"18\"}}}\n"),
       "a bookmark at once");
    fake_finish(f, CURLE_OK, 200, NULL);
    ok(r->state == K8S_IDLE && r->retry_at == fake_now, "closed at once after data: again at once");
    k8s_reflector_tick(r, fake_now);
    f = fake_first();
    ok(url_has(f, "resourceVersion=18&"), "from the bookmark's version");

    /* A quiet watch (no byte at all, a server that sends no bookmarks) that
     * ends at its timeoutSeconds is healthy: again at once. */
    fake_now += 290000;
    fake_finish(f, CURLE_OK, 200, NULL);
    ok(r->state == K8S_IDLE && r->retry_at == fake_now,
       "silent until timeoutSeconds: again at once");
    k8s_reflector_tick(r, fake_now);
    ok(url_has(fake_first(), "resourceVersion=18&"), "from the same version");
    k8s_reflector_free(r);
}

static void test_410(void)
{
    /* In-stream ERROR event with code 410. */
    struct k8s_reflector *r = watching();
    struct fake_req *f = fake_first();
    changes = 0;
    fake_now += 5000;
    ok(!fake_stream(f, 200, "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"code\":410,"
                            "\"reason\":\"Expired\",\"message\":\"too old resource version\"}}\n"),
       "ERROR 410 event: the stream is aborted");
    fake_finish(f, CURLE_WRITE_ERROR, 200, NULL);
    ok(r->rv == NULL && r->want_relist, "version dropped, relist wanted");
    ok(r->state == K8S_IDLE && r->retry_at == fake_now, "relist at once");
    is_int(r->st.errors, 1, "ERROR counted");
    is_int(json_object_size(r->items), 3, "the set in force stays meanwhile");
    k8s_reflector_tick(r, fake_now);
    f = fake_first();
    ok(url_has(f, "limit=500") && !url_has(f, "resourceVersion") && !url_has(f, "continue"),
       "a fresh list");
    is_int(r->st.relists, 1, "counted as a relist");
    answer(f, 200, page("a d", "40", NULL));
    ok(json_object_get(r->items, "ns/b") == NULL && json_object_get(r->items, "ns/d") != NULL,
       "missed deletion and addition repaired by the swap");
    is_int(deletions, 2, "b and c told as deleted");
    is_int(changes, 3, "and d as added; a unchanged, not told");

    /* 410 as the watch's HTTP status, right after a relist: backoff first. */
    f = fake_first();
    ok(url_has(f, "resourceVersion=40"), "watching from the new list");
    answer(f, 410, xstrdup("{\"kind\":\"Status\",\"code\":410,\"reason\":\"Expired\"}"));
    ok(r->rv == NULL && r->want_relist, "HTTP 410: relist");
    ok(r->retry_at > fake_now, "within a second of the last relist: waits for the backoff");
    fake_now = r->retry_at;
    k8s_reflector_tick(r, fake_now);
    ok(url_has(fake_first(), "limit=500"), "then lists");

    /* A continue token that expired between pages. */
    answer(fake_first(), 200, page("x", "50", "tok"));
    fake_now += K8S_PAGE_PAUSE_MS;
    k8s_reflector_tick(r, fake_now);
    f = fake_first();
    ok(url_has(f, "continue=tok"), "page 2 asked");
    fake_now += 5000;
    answer(f, 410, xstrdup("{\"kind\":\"Status\",\"code\":410,\"message\":\"continue expired\"}"));
    ok(r->pending == NULL && r->cont == NULL && r->pages == 0, "half-built list thrown away");
    ok(json_object_get(r->items, "ns/x") == NULL && json_object_size(r->items) == 2,
       "the set in force stays");
    k8s_reflector_tick(r, fake_now);
    ok(url_has(fake_first(), "limit=500") && !url_has(fake_first(), "continue"),
       "relist from the first page");
    k8s_reflector_free(r);
}

static void test_bad_streams(void)
{
    static const char *const bad[] = {
        "not json\n",
        "{\"type\":\"ADDED\"}\n",
        "{\"type\":\"ADDED\",\"object\":[]}\n",
        "{\"type\":\"TELEPORTED\",\"object\":{\"metadata\":{\"namespace\":\"ns\",\"name\":\"q\"}}}\n",
        "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"namespace\":\"ns\"}}}\n",
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        struct k8s_reflector *r = watching();
        struct fake_req *f = fake_first();
        fake_now += 5000;
        ok(!fake_stream(f, 200, bad[i]), "bad line %zu aborts the stream", i);
        fake_finish(f, CURLE_WRITE_ERROR, 200, NULL);
        ok(r->want_relist && r->rv == NULL && r->st.bad_lines == 1, "counted, relist");
        is_int(json_object_size(r->items), 3, "set in force kept");
        k8s_reflector_free(r);
    }

    /* A line longer than max_line, in pieces, never buffered past the limit. */
    struct k8s_reflector *r = watching();
    r->max_line = 1024;
    struct fake_req *f = fake_first();
    char chunk[600];
    memset(chunk, 'x', sizeof(chunk) - 1);
    chunk[sizeof(chunk) - 1] = '\0';
    ok(fake_stream(f, 200, chunk), "599 bytes: kept");
    ok(!fake_stream(f, 200, chunk), "1198 bytes without a newline: aborted");
    ok(r->line.len == 0 && r->st.bad_lines == 1, "buffer freed, counted");
    fake_now += 5000;
    fake_finish(f, CURLE_WRITE_ERROR, 200, NULL);
    ok(r->want_relist && r->state == K8S_IDLE, "oversized line: relist");
    k8s_reflector_free(r);

    /* Another ERROR code: backoff, then watch again from the same version. */
    r = watching();
    f = fake_first();
    ok(!fake_stream(f, 200, "{\"type\":\"ERROR\",\"object\":{\"code\":500,\"message\":\"x\"}}\n"),
       "ERROR 500 aborts");
    fake_finish(f, CURLE_WRITE_ERROR, 200, NULL);
    ok(!r->want_relist && r->rv && strcmp(r->rv, "10") == 0, "no relist, version kept");
    ok(r->retry_at >= fake_now + 800, "backoff");
    fake_now = r->retry_at;
    k8s_reflector_tick(r, fake_now);
    ok(url_has(fake_first(), "watch=true&resourceVersion=10"), "re-watch");

    /* 401: the token file is read again at once; backoff; re-watch. */
    int before = forced_reloads;
    f = fake_first();
    ok(fake_stream(f, 401, "{\"kind\":\"Status\",\"message\":\"Unauthorized\"}"),
       "an error status body is collected, not parsed as events");
    is_int(r->st.bad_lines, 0, "not a bad line");
    fake_finish(f, CURLE_OK, 401, NULL);
    is_int(forced_reloads, before + 1, "401 re-reads the token");
    ok(r->st.http_errors == 1 && !r->want_relist && r->state == K8S_IDLE, "an error, no relist");

    /* Transport failure on a list: backoff, the set in force kept. */
    k8s_reflector_relist(r);
    ok(r->want_relist && r->rv == NULL && r->state == K8S_IDLE, "relist() asks for a list");
    k8s_reflector_tick(r, fake_now);
    fake_finish(fake_first(), CURLE_COULDNT_CONNECT, 0, NULL);
    ok(r->state == K8S_IDLE && r->retry_at > fake_now && json_object_size(r->items) == 3,
       "refused: backoff, set kept");
    k8s_reflector_relist(r);
    fake_now = r->retry_at;
    k8s_reflector_tick(r, fake_now);
    answer(fake_first(), 200, xstrdup("<html>"));
    ok(r->state == K8S_IDLE && json_object_size(r->items) == 3, "a list that is not JSON fails");
    fake_now = r->retry_at;
    k8s_reflector_tick(r, fake_now);
    answer(fake_first(), 200, xstrdup("{\"items\":[]}"));
    ok(r->state == K8S_IDLE && json_object_size(r->items) == 3 && r->pending == NULL,
       "a list without resourceVersion fails");
    k8s_reflector_relist(r);
    ok(r->state == K8S_IDLE, "relist() while idle");
    fake_now = r->retry_at;
    k8s_reflector_tick(r, fake_now);
    k8s_reflector_relist(r);
    ok(r->state == K8S_LISTING && fake_nlive == 1, "relist() during a list is a no-op");
    k8s_reflector_free(r);
}

static void test_bounds(void)
{
    /* A list holding more than max_items: stopped, the old set kept. */
    struct k8s_reflector *r = watching();
    r->max_items = 3;
    k8s_reflector_relist(r);
    fake_now += 5000;
    k8s_reflector_tick(r, fake_now);
    answer(fake_first(), 200, page("a b c d", "20", NULL));
    is_int(r->st.limit_hits, 1, "list over max_items stopped");
    ok(json_object_size(r->items) == 3 && json_object_get(r->items, "ns/d") == NULL,
       "the previous set stays (never a truncated one)");
    ok(r->pending == NULL && r->state == K8S_IDLE && r->retry_at > fake_now, "retried with backoff");
    /* A watch ADDED past the bound: relist; MODIFIED of a known one is fine. */
    fake_now = r->retry_at;
    k8s_reflector_tick(r, fake_now);
    answer(fake_first(), 200, page("a b c", "21", NULL));
    struct fake_req *f = fake_first();
    ok(fake_stream(f, 200, "{\"type\":\"MODIFIED\",\"object\":{\"metadata\":{\"namespace\":\"ns\","
                           "\"name\":\"a\",\"resourceVersion\":\"22\"}}}\n"),
       "MODIFIED at the bound: fine");
    ok(!fake_stream(f, 200, "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"namespace\":\"ns\","
                            "\"name\":\"e\",\"resourceVersion\":\"23\"}}}\n"),
       "ADDED past the bound: aborted");
    ok(r->st.limit_hits == 2 && json_object_get(r->items, "ns/e") == NULL, "counted, not stored");
    fake_finish(f, CURLE_WRITE_ERROR, 200, NULL);
    ok(r->want_relist, "relist");
    k8s_reflector_free(r);

    /* An endless continue chain: stopped after max_pages. */
    r = new_refl();
    r->max_pages = 3;
    for (int i = 0; i < 3; i++) {
        k8s_reflector_tick(r, fake_now);
        answer(fake_first(), 200, page("p", "1", "more"));
        fake_now += K8S_PAGE_PAUSE_MS;
    }
    is_int(r->st.limit_hits, 1, "page 3 still says continue: stopped");
    ok(!r->synced && json_object_size(r->items) == 0 && r->pending == NULL && r->cont == NULL,
       "nothing swapped in");
    k8s_reflector_free(r);

    r = new_refl();
    is_int(max_pages(r), 402, "default: twice the pages 100000 objects need at 500 a page");
    r->max_items = 10;
    is_int(max_pages(r), 100, "at least 100");
    r->max_pages = 7;
    is_int(max_pages(r), 7, "--max-list-pages wins");
    k8s_reflector_free(r);
}

static void test_stall_and_backoff(void)
{
    struct k8s_reflector *r = watching();
    r->stall_ms = 10000;
    struct fake_req *f = fake_first();
    fake_now += 4000;
    fake_stream(f, 200, "{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{\"resourceVersion\":"
                        "\"11\"}}}\n");
    is_int(k8s_reflector_tick(r, fake_now), fake_now + 10000, "next check: last byte + stall");
    unsigned c = fake_cancelled;
    fake_now += 9999;
    k8s_reflector_tick(r, fake_now);
    ok(r->state == K8S_WATCHING, "a bookmark keeps a quiet watch alive");
    fake_now += 1;
    k8s_reflector_tick(r, fake_now);
    ok(r->state == K8S_IDLE && fake_cancelled == c + 1 && fake_nlive == 0, "silent: closed");
    ok(r->st.stalls == 1 && r->st.watch_restarts == 1, "counted");
    ok(r->retry_at > fake_now && r->retry_at <= fake_now + 300, "reopened after a quarter backoff");
    fake_now = r->retry_at;
    k8s_reflector_tick(r, fake_now);
    ok(url_has(fake_first(), "resourceVersion=11"), "from the last version");
    k8s_reflector_free(r);

    struct k8s_backoff b = {.min_ms = 800, .max_ms = 30000};
    int64_t t = 5000000, want = 800;
    bool in_range = true, grows = true;
    for (int i = 0; i < 8; i++) {
        int64_t d = k8s_backoff_next(&b, t);
        if (b.cur_ms != want)
            grows = false;
        if (d < b.cur_ms || d > MIN(b.cur_ms + b.cur_ms / 2, 30000))
            in_range = false;
        want = MIN(want * 2, 30000);
        t += 1000;
    }
    ok(grows, "800 ms doubling, capped at 30 s");
    ok(in_range, "each delay is the base plus up to half of it, capped");
    k8s_backoff_next(&b, t + 120001);
    is_int(b.cur_ms, 800, "reset 120 s after the last delay");
}

int main(void)
{
    test_paged_list();
    test_watch_events();
    test_410();
    test_bad_streams();
    test_bounds();
    test_stall_and_backoff();
    is_int(fake_nlive, 0, "no request left in flight");
    return done_testing();
}
