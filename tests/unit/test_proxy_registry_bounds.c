/* SPDX-License-Identifier: MIT
 * What the registry bounds and where it does its work (security audit
 * items 3, 8 and 9):
 *  - the set never holds more than REG_MAX_BACKENDS backends, whether
 *    filled by PUTs, registrations or both, and a refused change changes
 *    nothing; a spec and a backend cost what they hold (packed model lists,
 *    not REG_MAX_MODELS fixed 128-byte slots);
 *  - the uploaded-file index: put, get, an id uploaded again, eviction of
 *    the oldest at REG_MAX_FILES, ids it cannot hold;
 *  - no worker wake and no log line while the registry lock is held (the
 *    wake callback and log_msg, replaced here, try the lock);
 *  - metric label values: every control character escaped or replaced, so
 *    the exposition text stays one sample per line.
 * Sizes are fixed counts; nothing here is timed. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/proxy/lb.h"
#include "../../src/proxy/registry.h"
#include "../tap.h"
#include "buf.h"
#include "log.h"
#include "util.h"

#define NOW 1000

/* ------------------------------------------------------------ lock probe */

/* The registry whose lock the wake callback and the logger check. */
static struct registry *watched;
static unsigned calls_locked, wakes, logs;

/* True if the calling thread could take <watched>'s lock, i.e. does not
 * hold it (the lock is not recursive: trylock fails for its holder). */
static bool lock_free(void)
{
    if (watched == NULL)
        return true;
    if (pthread_mutex_trylock(&watched->lock) != 0)
        return false;
    pthread_mutex_unlock(&watched->lock);
    return true;
}

static void wake_cb(void *arg)
{
    (void)arg;
    wakes++;
    calls_locked += !lock_free();
}

/* The test's own logger (libcommon's log.o is not linked: every symbol of
 * it is defined here): counts lines, checks the lock, prints nothing. */
_Atomic enum log_level log_min_level = LOG_DEBUG;

int log_parse_level(const char *s, enum log_level *out)
{
    (void)s;
    (void)out;
    return -EINVAL;
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
    (void)lvl;
    (void)fmt;
    logs++;
    calls_locked += !lock_free();
}

/* ------------------------------------------------------------ helpers */

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

static struct backend *find(struct registry *r, const char *name)
{
    for (unsigned i = 0; i < r->n; i++)
        if (strcmp(r->v[i]->spec.name, name) == 0)
            return r->v[i];
    return NULL;
}

/* ------------------------------------------------------------ item 3 */

static void test_sizes(void)
{
    /* Was 4,420 bytes (32 x 128 model slots inline): a PUT of 100,000
     * services held 440 MB of specs before validating one. */
    ok(sizeof(struct backend_spec) <= 384, "a spec is small (%zu bytes)",
       sizeof(struct backend_spec));
    /* Was 8,900 bytes: the spec and 32 x 128 probed model slots. Now the
     * spec and four histograms of 13 counters (duration, first byte, first
     * token, time between tokens): 1.2 KB, 120 MB at REG_MAX_BACKENDS. */
    ok(sizeof(struct backend) <= 1280, "a backend is small (%zu bytes)", sizeof(struct backend));
}

static void test_models_packed(void)
{
    struct backend_spec s = spec("m", 1, 1);
    char err[NET_ERR_LEN];
    const char *two[] = {"alpha", "beta"};
    is_int(reg_spec_set_models(&s, two, 2, err), 0, "two models set");
    ok(s.nmodels == 2 && strcmp(s.models, "alpha") == 0 &&
           strcmp(reg_model_next(s.models), "beta") == 0,
       "packed: names back to back");

    const char *many[REG_MAX_MODELS + 1];
    for (unsigned i = 0; i <= REG_MAX_MODELS; i++)
        many[i] = "x";
    is_int(reg_spec_set_models(&s, many, REG_MAX_MODELS + 1, err), -EINVAL,
           "33 models refused");
    is_int(reg_spec_set_models(&s, many, REG_MAX_MODELS, err), 0, "32 models taken");
    char longname[REG_MODEL_MAX + 2];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    const char *bad[] = {longname};
    is_int(reg_spec_set_models(&s, bad, 1, err), -EINVAL, "a 128-byte model name refused");
    longname[REG_MODEL_MAX] = '\0';
    is_int(reg_spec_set_models(&s, bad, 1, err), 0, "a 127-byte one taken");
    const char *empty[] = {""};
    is_int(reg_spec_set_models(&s, empty, 1, err), -EINVAL, "an empty model name refused");
    reg_spec_free(&s);
    ok(s.models == NULL && s.nmodels == 0, "reg_spec_free empties the list");

    /* A backend keeps its own copy: the spec's block may go at once. */
    struct registry r;
    reg_init(&r, 1, &lb_least);
    s = spec("m", 1, 1);
    reg_spec_set_models(&s, two, 2, err);
    is_int(reg_upsert(&r, &s, REG_SOURCE_ADMIN, err), 0, "registered with two models");
    reg_spec_free(&s);
    ok(reg_serves(r.v[0], "alpha") && reg_serves(r.v[0], "beta") && !reg_serves(r.v[0], "gamma"),
       "the backend serves its own copy of the list");
    const char *one[] = {"gamma"};
    s = spec("m", 1, 2);
    reg_spec_set_models(&s, one, 1, err);
    struct backend *before = r.v[0];
    is_int(reg_upsert(&r, &s, REG_SOURCE_ADMIN, err), 1, "updated in place");
    reg_spec_free(&s);
    ok(r.v[0] == before && reg_serves(before, "gamma") && !reg_serves(before, "alpha") &&
           before->spec.weight == 2,
       "the update replaced the model list and the weight");
    const char *probed[] = {"p1", "", "p2"};
    s = spec("m", 2, 1);
    reg_upsert(&r, &s, REG_SOURCE_ADMIN, err);
    reg_set_probed_models(&r, r.v[1], probed, 3);
    ok(r.v[1]->nprobed == 2 && reg_serves(r.v[1], "p1") && reg_serves(r.v[1], "p2"),
       "probed lists are packed too (empty names skipped)");
    struct buf out = {0};
    reg_dump_json(&r, &out, NOW);
    buf_append(&out, "", 1);
    ok(strstr(buf_data(&out), "\"models\":[\"gamma\"]") != NULL &&
           strstr(buf_data(&out), "\"models\":[\"p1\",\"p2\"]") != NULL,
       "GET /api/services lists them");
    buf_free(&out);
    reg_deinit(&r);

    /* --backend syntax. */
    ok(reg_spec_parse("x=1.2.3.4:80,models=a|bb|ccc", &s, err) == 0 && s.nmodels == 3 &&
           strcmp(reg_model_next(reg_model_next(s.models)), "ccc") == 0,
       "reg_spec_parse packs models=A|B|C");
    reg_spec_free(&s);
}

static void test_backend_limit(void)
{
    struct registry r;
    char err[NET_ERR_LEN];
    reg_init(&r, 1, &lb_least);
    const unsigned max = REG_MAX_BACKENDS;
    struct backend_spec *v = xcalloc(max + 1, sizeof(*v));
    for (unsigned i = 0; i <= max; i++)
        v[i] = spec("s", i, 1);

    is_int(reg_replace(&r, REG_SOURCE_ADMIN, v, max + 1, 0, err), -ENOSPC,
           "a PUT of REG_MAX_BACKENDS + 1 services is refused");
    is_int(reg_count(&r), 0, "... and changes nothing");

    struct backend_spec st = spec("static", 0, 1);
    is_int(reg_upsert(&r, &st, REG_SOURCE_STATIC, err), 0, "one static backend");
    is_int(reg_replace(&r, REG_SOURCE_ADMIN, v, max, 0, err), -ENOSPC,
           "REG_MAX_BACKENDS services beside a static backend: refused");
    ok(strstr(err, "at most") != NULL, "with a message (%s)", err);
    is_int(reg_count(&r), 1, "... and the set is unchanged");

    /* A static backend named by a service is that service: it fits. */
    struct backend_spec keep = v[max - 1];
    v[max - 1] = spec("static", 0, 3);
    is_int(reg_replace(&r, REG_SOURCE_ADMIN, v, max, 0, err), (int)max,
           "REG_MAX_BACKENDS services, one of them the static backend: taken");
    v[max - 1] = keep;
    is_int(reg_count(&r), max, "the set is full");

    struct backend_spec extra = spec("extra", 1, 1);
    is_int(reg_upsert(&r, &extra, REG_SOURCE_ADMIN, err), -ENOSPC,
           "registering one more into a full set: -ENOSPC");
    ok(find(&r, "extra") == NULL && reg_count(&r) == max, "... and nothing changed");
    struct backend_spec again = spec("s", 5, 7);
    is_int(reg_upsert(&r, &again, REG_SOURCE_ADMIN, err), 1,
           "updating a backend of a full set still works");

    /* A smaller PUT makes room again. */
    is_int(reg_replace(&r, REG_SOURCE_ADMIN, v, 10, 0, err), 10, "a PUT of 10 services");
    is_int(reg_upsert(&r, &extra, REG_SOURCE_ADMIN, err), 0, "then a registration fits");
    free(v);
    reg_deinit(&r);
}

/* ------------------------------------------------------------ item 9: files */

static void test_files(void)
{
    struct registry r;
    char name[REG_NAME_MAX + 1], id[32];
    reg_init(&r, 1, &lb_least);
    ok(!reg_file_get(&r, "file-1", name, sizeof(name)), "nothing known before an upload");
    reg_file_put(&r, "file-1", "alpha");
    ok(reg_file_get(&r, "file-1", name, sizeof(name)) && strcmp(name, "alpha") == 0,
       "put then get");
    reg_file_put(&r, "file-1", "beta");
    ok(reg_file_get(&r, "file-1", name, sizeof(name)) && strcmp(name, "beta") == 0,
       "an id uploaded again follows its latest copy");
    ok(!reg_file_get(&r, "file-2", name, sizeof(name)), "an unknown id is not found");

    char longid[REG_FILE_ID_MAX + 2];
    memset(longid, 'f', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = '\0';
    reg_file_put(&r, longid, "alpha");
    ok(!reg_file_get(&r, longid, name, sizeof(name)), "a 64-byte id is not remembered");
    longid[REG_FILE_ID_MAX] = '\0';
    reg_file_put(&r, longid, "gamma");
    ok(reg_file_get(&r, longid, name, sizeof(name)) && strcmp(name, "gamma") == 0,
       "a 63-byte id is");

    /* Fill to the bound: REG_MAX_FILES - 2 more ids make exactly
     * REG_MAX_FILES entries (file-1 and the 63-byte id are two of them). */
    for (unsigned i = 0; i < REG_MAX_FILES - 2; i++) {
        snprintf(id, sizeof(id), "id-%u", i);
        reg_file_put(&r, id, i % 2 ? "odd" : "even");
    }
    bool all = reg_file_get(&r, "file-1", name, sizeof(name)) && strcmp(name, "beta") == 0;
    for (unsigned i = 0; i < REG_MAX_FILES - 2 && all; i++) {
        snprintf(id, sizeof(id), "id-%u", i);
        all = reg_file_get(&r, id, name, sizeof(name)) &&
              strcmp(name, i % 2 ? "odd" : "even") == 0;
    }
    ok(all, "REG_MAX_FILES ids all found, each with its backend");

    /* One more: the oldest entry (file-1, as uploaded the second time) goes. */
    reg_file_put(&r, "id-new", "new");
    ok(!reg_file_get(&r, "file-1", name, sizeof(name)), "past the bound the oldest is forgotten");
    ok(reg_file_get(&r, longid, name, sizeof(name)), "the next oldest is still there");
    /* Uploading the next oldest again saves it from the next eviction. */
    reg_file_put(&r, longid, "delta");
    reg_file_put(&r, "id-new2", "new");
    ok(reg_file_get(&r, longid, name, sizeof(name)) && strcmp(name, "delta") == 0,
       "an id uploaded again is as new as its latest upload");
    ok(!reg_file_get(&r, "id-0", name, sizeof(name)) &&
           reg_file_get(&r, "id-1", name, sizeof(name)),
       "the oldest others went, one per upload");

    /* Many more ids than the bound: only the latest REG_MAX_FILES stay. */
    const unsigned many = 3 * REG_MAX_FILES + 123;
    for (unsigned i = 0; i < many; i++) {
        snprintf(id, sizeof(id), "many-%u", i);
        reg_file_put(&r, id, "m");
    }
    unsigned found = 0, wrong = 0;
    for (unsigned i = 0; i < many; i++) {
        snprintf(id, sizeof(id), "many-%u", i);
        bool f = reg_file_get(&r, id, name, sizeof(name));
        found += f;
        wrong += f != (i >= many - REG_MAX_FILES);
    }
    is_int(found, REG_MAX_FILES, "after %u uploads, REG_MAX_FILES are remembered", many);
    is_int(wrong, 0, "exactly the latest ones");
    ok(!reg_file_get(&r, "id-new", name, sizeof(name)) &&
           !reg_file_get(&r, longid, name, sizeof(name)),
       "and none of the earlier ids");
    reg_deinit(&r);
}

/* ------------------------------------------------------------ item 9: lock */

static void test_no_syscall_under_lock(void)
{
    struct registry r;
    char err[NET_ERR_LEN];
    uint64_t rng = 7;
    reg_init(&r, 1, &lb_least);
    reg_configure(&r, &(struct reg_settings){.eject_after = 1, .eject_base_ms = 30000,
                                             .eject_max_ms = 300000, .default_cap = 1,
                                             .queue_max = 1024});
    watched = &r;
    calls_locked = wakes = logs = 0;
    struct backend_spec s = spec("q", 1, 1);
    s.max_inflight = 1;
    s.max_inflight_set = true;
    reg_upsert(&r, &s, REG_SOURCE_ADMIN, err);

    struct list ready;
    list_init(&ready);
    struct reg_waiter w;
    memset(&w, 0, sizeof(w));
    w.ready_list = &ready;
    w.wake = wake_cb;
    w.wake_arg = &r;
    struct reg_req q = {0};
    struct backend *held = NULL, *b = NULL;
    is_int(reg_pick(&r, &q, &rng, NOW, NULL, &held, NULL), REG_PICKED, "the one slot taken");

    /* 1: a release hands the slot to the waiter (kick) and, failing,
     * ejects the backend (a log line). */
    is_int(reg_pick(&r, &q, &rng, NOW, &w, &b, NULL), REG_QUEUED, "a waiter queued");
    is_int(reg_queue_length(&r), 1, "reg_queue_length counts it");
    struct reg_outcome fail = {.failed = true, .counted = true};
    reg_release(&r, held, &fail, NOW);
    backend_unref(held);
    ok(wakes == 1 && logs == 1, "release: one wake, one ejection log line (%u, %u)", wakes, logs);
    is_int(reg_queue_length(&r), 0, "the queue is empty");
    held = reg_cancel_wait(&r, &w);
    ok(held != NULL, "the waiter got the slot");

    /* 2: a registration that adds capacity wakes a waiter. */
    is_int(reg_pick(&r, &q, &rng, NOW, &w, &b, NULL), REG_QUEUED, "queued again");
    struct backend_spec s2 = spec("q", 2, 1);
    reg_upsert(&r, &s2, REG_SOURCE_ADMIN, err);
    is_int(wakes, 2, "register: woken");
    struct backend *b2 = reg_cancel_wait(&r, &w);

    /* 3: a PUT that raises a cap wakes a waiter; reg_kick does too. */
    is_int(reg_pick(&r, &q, &rng, NOW, &w, &b, NULL), REG_QUEUED, "queued again");
    struct backend_spec set[2] = {s, s2};
    set[0].max_inflight = 2;
    reg_replace(&r, REG_SOURCE_ADMIN, set, 2, 0, err);
    is_int(wakes, 3, "PUT: woken");
    struct backend *b3 = reg_cancel_wait(&r, &w);

    /* 4: a probe result brings the ejected backend back (a log line) and
     * kicks; a failed one ejects (a log line). */
    reg_probe_result(&r, r.v[0], true, NOW);
    reg_probe_result(&r, r.v[1], false, NOW);
    is_int(logs, 3, "probe results: two more log lines");

    /* 5: probed models and reg_kick, with a waiter queued. */
    is_int(reg_pick(&r, &q, &rng, NOW + 1, &w, &b, NULL), REG_QUEUED, "queued again");
    const char *names[] = {"m"};
    reg_set_probed_models(&r, r.v[0], names, 1);
    reg_kick(&r, NOW + 1);
    reg_release(&r, held, &(struct reg_outcome){.counted = false}, NOW + 1);
    backend_unref(held);
    ok(wakes >= 4, "a slot freed: woken (%u wakes in all)", wakes);
    struct backend *b4 = reg_cancel_wait(&r, &w);

    is_int(calls_locked, 0, "no wake and no log line ran under the registry lock");
    watched = NULL;
    struct backend *got[] = {b2, b3, b4};
    for (unsigned i = 0; i < 3; i++) {
        if (got[i] == NULL)
            continue;
        reg_release(&r, got[i], &(struct reg_outcome){0}, NOW + 1);
        backend_unref(got[i]);
    }
    reg_deinit(&r);
}

/* ------------------------------------------------------------ item 8 */

/* Checks one exposition line: NAME{label="value",...} VALUE or a comment,
 * no control characters, only the escapes the format defines. Decodes the
 * value of label <want_label> into <val> (if present). */
static bool line_ok(const char *l, size_t len, const char *want_label, char *val, size_t vlen)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)l[i] < 0x20 || l[i] == 0x7f)
            return false;
    if (len == 0)
        return false;
    if (l[0] == '#')
        return true;
    size_t i = 0;
    while (i < len && l[i] != '{' && l[i] != ' ')
        i++;
    if (i == 0 || i == len)
        return false;
    if (l[i] == '{') {
        i++;
        for (;;) {
            size_t k = i;
            while (i < len && l[i] != '=')
                i++;
            if (i + 1 >= len || l[i + 1] != '"')
                return false;
            bool want = want_label != NULL && i - k == strlen(want_label) &&
                        strncmp(l + k, want_label, i - k) == 0;
            i += 2;
            size_t o = 0;
            for (; i < len && l[i] != '"'; i++) {
                char c = l[i];
                if (c == '\\') {
                    if (++i >= len)
                        return false;
                    if (l[i] == 'n')
                        c = '\n';
                    else if (l[i] == '\\' || l[i] == '"')
                        c = l[i];
                    else
                        return false; /* the format has no other escape */
                }
                if (want && o + 1 < vlen)
                    val[o++] = c;
            }
            if (want)
                val[o] = '\0';
            if (i >= len)
                return false;
            i++; /* the closing quote */
            if (i < len && l[i] == ',') {
                i++;
                continue;
            }
            if (i >= len || l[i] != '}')
                return false;
            i++;
            break;
        }
    }
    if (i >= len || l[i] != ' ')
        return false;
    char *end;
    strtod(l + i + 1, &end);
    return end == l + len;
}

static void test_metric_labels(void)
{
    struct registry r;
    char err[NET_ERR_LEN];
    reg_init(&r, 1, &lb_least);
    struct backend_spec s = spec("ok-name.1/a:b_c", 0, 1);
    reg_upsert(&r, &s, REG_SOURCE_ADMIN, err);
    struct backend_spec bad = spec("x\"y", 1, 1);
    is_int(reg_upsert(&r, &bad, REG_SOURCE_ADMIN, err), -EINVAL,
           "backend names cannot hold a quote (labels are escaped all the same)");

    const char *nasty = "q\"uote\\back\nline\x01soh\ttab\rcr\x7f" "del";
    reg_model_inflight(&r, nasty, +1);
    reg_model_inflight(&r, nasty, -1);
    /* A longer name than a slot holds, cut inside a 3-byte character:
     * the same slot each time, and no broken UTF-8 in the label. */
    char longm[200];
    memset(longm, 'l', sizeof(longm));
    memcpy(longm + 125, "\xe2\x82\xac", 3); /* euro sign across byte 127 */
    longm[sizeof(longm) - 1] = '\0';
    reg_model_inflight(&r, longm, +1);
    reg_model_inflight(&r, longm, +1);
    reg_model_inflight(&r, longm, -1);
    reg_model_inflight(&r, longm, -1);
    is_int(atomic_load(&r.nmodel_stats), 2, "two model slots: the long name found its own");

    struct buf out = {0};
    reg_dump_metrics(&r, &out, NOW);
    const char *p = buf_data(&out), *end = p + out.len;
    unsigned lines = 0, bad_lines = 0, nasty_lines = 0, long_lines = 0;
    bool decoded_ok = true;
    const char *want = "q\"uote\\back\nline?soh?tab?cr?del";
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL) {
            bad_lines++; /* the text must end with a line feed */
            break;
        }
        char val[512] = "";
        lines++;
        if (!line_ok(p, (size_t)(nl - p), "model", val, sizeof(val))) {
            bad_lines++;
            if (bad_lines <= 3)
                note("  bad line: %.*s", (int)(nl - p), p);
        } else if (val[0] == 'q') {
            nasty_lines++;
            decoded_ok &= strcmp(val, want) == 0;
        } else if (val[0] == 'l') {
            long_lines++;
            decoded_ok &= strlen(val) == 125 && strspn(val, "l") == 125;
        }
        p = nl + 1;
    }
    ok(lines > 50, "metrics written (%u lines)", lines);
    is_int(bad_lines, 0, "every line is a valid sample or comment, one per line");
    /* Per model: 8 counters and gauges, and 3 histograms (queue wait, time
     * to first token, time between tokens) of REG_LAT_BUCKETS + 1 buckets,
     * a _sum and a _count each. */
    const unsigned per_model = 8 + 3 * (REG_LAT_BUCKETS + 3);
    is_int(nasty_lines, per_model, "the model with a quote, backslash, newline and controls: "
                                   "every sample of the model");
    is_int(long_lines, per_model, "the long model name: every sample, one series each");
    ok(decoded_ok, "label values decode to the name: \\\\ \\\" \\n escaped, other controls '?'");
    buf_free(&out);
    reg_deinit(&r);
}

int main(void)
{
    test_sizes();
    test_models_packed();
    test_files();
    test_no_syscall_under_lock();
    test_metric_labels();
    test_backend_limit();
    buf_cache_drain();
    reg_thread_exit();
    return done_testing();
}
