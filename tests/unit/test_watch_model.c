/* SPDX-License-Identifier: MIT
 * The watcher's desired-set rules (src/watcher/model.c, included so its
 * static helpers are reachable): annotations, both modes, endpoint
 * conditions, slice joins, the resync comparison and register diffs. */
#include "../../src/watcher/model.c"

#include <string.h>

#include "../tap.h"
#include "util.h"

static const struct model_cfg cfg_ep = {MODEL_ENDPOINTS, "llamaedge/weight", "llamaedge/models",
                                        "llamaedge/max-inflight", "llamaedge/port"};
static const struct model_cfg cfg_svc = {MODEL_SERVICE, "llamaedge/weight", "llamaedge/models",
                                         "llamaedge/max-inflight", "llamaedge/port"};

static json_t *J(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, 0, &e);
    if (j == NULL)
        tap_note("bad test JSON at %d: %s", e.line, e.text);
    return j;
}

/* Keyed the way the reflector keys them: "ns/name" -> object. */
static json_t *by_key(const char *array_text)
{
    json_t *a = J(array_text), *m = json_object(), *o;
    size_t i;
    json_array_foreach(a, i, o) {
        char k[512];
        model_key(o, k, sizeof(k));
        json_object_set(m, k, o);
    }
    json_decref(a);
    return m;
}

static const char *name_at(json_t *set, size_t i)
{
    return json_string_value(json_object_get(json_array_get(set, i), "name"));
}

static json_int_t int_at(json_t *set, size_t i, const char *k)
{
    return json_integer_value(json_object_get(json_array_get(set, i), k));
}

static bool has_warning(json_t *w, const char *needle)
{
    json_t *v;
    size_t i;
    json_array_foreach(w, i, v)
        if (strstr(json_string_value(v), needle))
            return true;
    return false;
}

static void test_weight(void)
{
    static const struct {
        const char *in;
        int rc;
        unsigned want;
        int line;
    } t[] = {
        {"3", 0, 3, __LINE__},        {" 7 ", 0, 7, __LINE__},     {"0", 0, 0, __LINE__},
        {"1000000", 0, 1000000, __LINE__}, {"1000001", -EINVAL, 0, __LINE__},
        {"", -EINVAL, 0, __LINE__},   {"-1", -EINVAL, 0, __LINE__}, {"3x", -EINVAL, 0, __LINE__},
        {"abc", -EINVAL, 0, __LINE__}, {"99999999999999999999", -EINVAL, 0, __LINE__},
    };
    for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
        unsigned w = 12345;
        int rc = model_parse_weight(t[i].in, &w);
        ok(rc == t[i].rc && (rc != 0 || w == t[i].want), "weight \"%s\" (line %d)", t[i].in,
           t[i].line);
    }
}

static const char *svcs_text =
    "[{\"metadata\":{\"name\":\"llama-3-1b-low\",\"namespace\":\"default\","
    "  \"labels\":{\"llamaedge/target\":\"true\"},\"annotations\":{\"llamaedge/weight\":\"3\"}},"
    " \"spec\":{\"ports\":[{\"protocol\":\"TCP\",\"port\":8080,\"targetPort\":8080}],"
    "  \"clusterIP\":\"10.43.14.226\",\"type\":\"ClusterIP\"}},"
    " {\"metadata\":{\"name\":\"llama-3-3b-high\",\"namespace\":\"default\","
    "  \"annotations\":{\"llamaedge/weight\":\"1\",\"llamaedge/models\":\"llama-3-3b, llama-3b ,,\","
    "   \"llamaedge/max-inflight\":\"2\",\"llamaedge/port\":\"api\"}},"
    " \"spec\":{\"ports\":[{\"name\":\"metrics\",\"port\":9090,\"targetPort\":9090},"
    "   {\"name\":\"api\",\"port\":80,\"targetPort\":\"http\"}],\"clusterIP\":\"10.43.0.7\"}},"
    " {\"metadata\":{\"name\":\"typo\",\"namespace\":\"prod\","
    "  \"annotations\":{\"llamaedge/weight\":\"heavy\",\"llamaedge/port\":\"nope\"}},"
    " \"spec\":{\"ports\":[{\"port\":8081}],\"clusterIP\":\"fd00::5\"}},"
    " {\"metadata\":{\"name\":\"headless\",\"namespace\":\"prod\"},"
    " \"spec\":{\"ports\":[{\"port\":8080}],\"clusterIP\":\"None\"}},"
    " {\"metadata\":{\"name\":\"noann\",\"namespace\":\"prod\"},"
    " \"spec\":{\"ports\":[{\"name\":\"a\",\"port\":1},{\"name\":\"b\",\"port\":2}],"
    "  \"clusterIP\":\"10.43.0.9\"}}]";

static void test_service_mode(void)
{
    json_t *svcs = by_key(svcs_text), *slices = json_object(), *w = json_array();
    json_t *set = model_desired(&cfg_svc, svcs, slices, w);
    is_int(json_array_size(set), 4, "service mode: headless Service left out");
    ok(strcmp(name_at(set, 0), "default/llama-3-1b-low") == 0, "sorted by namespace/name");
    ok(strcmp(name_at(set, 3), "prod/typo") == 0, "last is prod/typo");
    is_int(int_at(set, 0, "weight"), 3, "weight annotation \"3\"");
    ok(strcmp(json_string_value(json_object_get(json_array_get(set, 0), "ip")),
              "10.43.14.226") == 0, "ip is the ClusterIP");
    is_int(int_at(set, 0, "port"), 8080, "first (only) port");
    ok(json_object_get(json_array_get(set, 0), "max_inflight") == NULL,
       "no max_inflight without the annotation");
    is_int(int_at(set, 1, "port"), 80, "llamaedge/port names the \"api\" port");
    is_int(int_at(set, 1, "max_inflight"), 2, "max-inflight annotation");
    json_t *models = json_object_get(json_array_get(set, 1), "models");
    json_t *want_models = J("[\"llama-3-3b\",\"llama-3b\"]");
    ok(json_equal(models, want_models), "models: trimmed, empties dropped");
    json_decref(want_models);
    is_int(int_at(set, 2, "weight"), 1, "no weight annotation: 1");
    is_int(int_at(set, 2, "port"), 1, "several ports, no annotation: the first");
    is_int(int_at(set, 3, "weight"), 1, "bad weight: 1");
    is_int(int_at(set, 3, "port"), 8081, "unknown port annotation: the first port");
    ok(has_warning(w, "prod/typo: bad weight annotation \"heavy\""), "bad weight is reported");
    ok(has_warning(w, "port annotation \"nope\""), "bad port annotation is reported");
    ok(has_warning(w, "prod/headless: headless"), "headless Service is reported");
    json_decref(set);
    /* By number, too. */
    json_t *s = json_object_get(svcs, "default/llama-3-3b-high");
    json_object_set_new(json_object_get(json_object_get(s, "metadata"), "annotations"),
                        "llamaedge/port", json_string("9090"));
    set = model_desired(&cfg_svc, svcs, slices, NULL);
    is_int(int_at(set, 1, "port"), 9090, "llamaedge/port as a number");
    json_decref(set);
    json_decref(svcs);
    json_decref(slices);
    json_decref(w);
}

static const char *slices_text =
    "[{\"metadata\":{\"name\":\"llama-3-1b-low-x7k2p\",\"namespace\":\"default\","
    "  \"labels\":{\"kubernetes.io/service-name\":\"llama-3-1b-low\"}},"
    " \"addressType\":\"IPv4\",\"ports\":[{\"name\":\"\",\"protocol\":\"TCP\",\"port\":18080}],"
    " \"endpoints\":["
    "  {\"addresses\":[\"10.42.0.15\"],\"conditions\":{\"ready\":true,\"serving\":true,"
    "   \"terminating\":false},\"targetRef\":{\"kind\":\"Pod\",\"name\":\"pod-ready\"}},"
    "  {\"addresses\":[\"10.42.0.16\"],\"conditions\":{\"ready\":false,\"serving\":true,"
    "   \"terminating\":true},\"targetRef\":{\"kind\":\"Pod\",\"name\":\"pod-draining\"}},"
    "  {\"addresses\":[\"10.42.0.17\"],\"conditions\":{\"ready\":false,\"serving\":false,"
    "   \"terminating\":true},\"targetRef\":{\"kind\":\"Pod\",\"name\":\"pod-gone\"}},"
    "  {\"addresses\":[\"10.42.0.18\"],\"conditions\":{\"ready\":false},"
    "   \"targetRef\":{\"kind\":\"Pod\",\"name\":\"pod-starting\"}},"
    "  {\"addresses\":[\"10.42.0.19\"],\"conditions\":{}}]},"
    " {\"metadata\":{\"name\":\"llama-3-1b-low-second\",\"namespace\":\"default\","
    "  \"labels\":{\"kubernetes.io/service-name\":\"llama-3-1b-low\"}},"
    " \"addressType\":\"IPv4\",\"ports\":[{\"port\":18080}],"
    " \"endpoints\":[{\"addresses\":[\"10.42.1.2\"],\"conditions\":{\"ready\":true},"
    "   \"targetRef\":{\"kind\":\"Pod\",\"name\":\"pod-other-node\"}},"
    "  {\"addresses\":[\"10.42.0.16\"],\"conditions\":{\"ready\":true},"
    "   \"targetRef\":{\"kind\":\"Pod\",\"name\":\"pod-draining\"}}]},"
    " {\"metadata\":{\"name\":\"llama-3-1b-low-elsewhere\",\"namespace\":\"prod\","
    "  \"labels\":{\"kubernetes.io/service-name\":\"llama-3-1b-low\"}},"
    " \"addressType\":\"IPv4\",\"ports\":[{\"port\":1}],"
    " \"endpoints\":[{\"addresses\":[\"10.9.9.9\"],\"conditions\":{\"ready\":true}}]},"
    " {\"metadata\":{\"name\":\"high-1\",\"namespace\":\"default\","
    "  \"labels\":{\"kubernetes.io/service-name\":\"llama-3-3b-high\"}},"
    " \"addressType\":\"IPv4\",\"ports\":[{\"name\":\"metrics\",\"port\":19090},"
    "   {\"name\":\"api\",\"port\":18081}],"
    " \"endpoints\":[{\"addresses\":[\"10.42.0.30\"],\"conditions\":{\"ready\":true},"
    "   \"targetRef\":{\"kind\":\"Pod\",\"name\":\"high-pod\"}}]},"
    " {\"metadata\":{\"name\":\"high-fqdn\",\"namespace\":\"default\","
    "  \"labels\":{\"kubernetes.io/service-name\":\"llama-3-3b-high\"}},"
    " \"addressType\":\"FQDN\",\"ports\":[{\"port\":1}],"
    " \"endpoints\":[{\"addresses\":[\"x.example\"],\"conditions\":{\"ready\":true}}]}]";

static json_t *find(json_t *set, const char *name)
{
    json_t *b;
    size_t i;
    json_array_foreach(set, i, b)
        if (strcmp(json_string_value(json_object_get(b, "name")), name) == 0)
            return b;
    return NULL;
}

static void test_endpoints_mode(void)
{
    json_t *svcs = by_key(svcs_text), *slices = by_key(slices_text), *w = json_array();
    json_t *set = model_desired(&cfg_ep, svcs, slices, w);
    json_t *b;
    b = find(set, "default/llama-3-1b-low/pod-ready");
    ok(b && json_integer_value(json_object_get(b, "weight")) == 3, "ready pod: Service weight");
    ok(b && json_integer_value(json_object_get(b, "port")) == 18080, "port from the slice");
    ok(b && strcmp(json_string_value(json_object_get(b, "ip")), "10.42.0.15") == 0,
       "ip is the pod address");
    b = find(set, "default/llama-3-1b-low/pod-draining");
    ok(b && json_integer_value(json_object_get(b, "weight")) == 3,
       "pod ready in another slice wins over its draining entry");
    ok(find(set, "default/llama-3-1b-low/pod-gone") == NULL, "terminating, not serving: gone");
    ok(find(set, "default/llama-3-1b-low/pod-starting") == NULL, "ready=false: left out");
    b = find(set, "default/llama-3-1b-low/10.42.0.19");
    ok(b != NULL, "no conditions: ready; no targetRef: named by address");
    ok(find(set, "default/llama-3-1b-low/pod-other-node") != NULL, "second slice joined");
    ok(find(set, "prod/llama-3-1b-low/10.9.9.9") == NULL, "slice of a Service not watched: out");
    b = find(set, "default/llama-3-3b-high/high-pod");
    ok(b && json_integer_value(json_object_get(b, "port")) == 18081,
       "slice port chosen by the Service port's name");
    ok(b && json_integer_value(json_object_get(b, "max_inflight")) == 2, "annotations carried");
    ok(has_warning(w, "FQDN EndpointSlice high-fqdn"), "FQDN slice reported");
    is_int(json_array_size(set), 5, "five backends in all");
    for (size_t i = 1; i < json_array_size(set); i++)
        ok(strcmp(name_at(set, i - 1), name_at(set, i)) < 0, "sorted at %zu", i);
    json_decref(set);

    /* Drain: remove the second slice; pod-draining is now only terminating. */
    json_object_del(slices, "default/llama-3-1b-low-second");
    set = model_desired(&cfg_ep, svcs, slices, NULL);
    b = find(set, "default/llama-3-1b-low/pod-draining");
    ok(b && json_integer_value(json_object_get(b, "weight")) == 0,
       "serving && terminating: weight 0 (drain)");
    json_decref(set);
    /* A Service without slices has no backends in endpoints mode. */
    json_object_clear(slices);
    set = model_desired(&cfg_ep, svcs, slices, NULL);
    is_int(json_array_size(set), 0, "no slices, no backends");
    json_decref(set);
    json_decref(svcs);
    json_decref(slices);
    json_decref(w);
}

static void test_same_set(void)
{
    json_t *d = J("[{\"name\":\"a\",\"weight\":3,\"ip\":\"10.0.0.1\",\"port\":80,\"models\":[]},"
                  " {\"name\":\"b\",\"weight\":1,\"ip\":\"10.0.0.2\",\"port\":80,"
                  "  \"models\":[\"m\"],\"max_inflight\":2}]");
    json_t *a = J("[{\"name\":\"b\",\"weight\":1,\"ip\":\"10.0.0.2\",\"port\":80,\"models\":[\"m\"],"
                  "  \"max_inflight\":2,\"source\":\"admin\",\"state\":\"up\"},"
                  " {\"name\":\"a\",\"weight\":3,\"ip\":\"10.0.0.1\",\"port\":80,"
                  "  \"models\":[\"probed\"],\"max_inflight\":1},"
                  " {\"name\":\"static1\",\"weight\":1,\"ip\":\"10.0.0.3\",\"port\":80,"
                  "  \"source\":\"static\"}]");
    ok(model_same_set(d, a), "same set: order, extra fields, static and probed models ignored");
    json_object_set_new(json_array_get(a, 0), "max_inflight", json_integer(1));
    ok(!model_same_set(d, a), "max_inflight differs");
    json_object_set_new(json_array_get(a, 0), "max_inflight", json_integer(2));
    json_object_set_new(json_array_get(a, 1), "weight", json_integer(0));
    ok(!model_same_set(d, a), "weight differs");
    json_array_remove(a, 1);
    ok(!model_same_set(d, a), "backend missing");
    json_t *empty = json_array();
    ok(model_same_set(empty, empty), "empty equals empty");
    ok(!model_same_set(empty, d), "extra backends differ");
    json_decref(d);
    json_decref(a);
    json_decref(empty);
}

static void test_register_ops(void)
{
    json_t *d = J("[{\"name\":\"a\",\"weight\":3,\"ip\":\"10.0.0.1\",\"port\":80,\"models\":[\"m\"],"
                  "  \"max_inflight\":2},"
                  " {\"name\":\"b\",\"weight\":1,\"ip\":\"10.0.0.2\",\"port\":80,\"models\":[]},"
                  " {\"name\":\"c\",\"weight\":1,\"ip\":\"10.0.0.3\",\"port\":80,\"models\":[]}]");
    json_t *a = J("[{\"name\":\"a\",\"weight\":3,\"ip\":\"10.0.0.1\",\"port\":80},"
                  " {\"name\":\"b\",\"weight\":5,\"ip\":\"10.0.0.2\",\"port\":80},"
                  " {\"name\":\"z\",\"weight\":1,\"ip\":\"10.0.0.9\",\"port\":80},"
                  " {\"name\":\"s\",\"weight\":1,\"ip\":\"10.0.0.8\",\"port\":80,"
                  "  \"source\":\"static\"}]");
    json_t *ops = model_register_ops(d, a);
    json_t *want = J("[{\"op\":\"register\",\"service\":{\"name\":\"b\",\"weight\":1,"
                     "  \"ip\":\"10.0.0.2\",\"port\":80}},"
                     " {\"op\":\"register\",\"service\":{\"name\":\"c\",\"weight\":1,"
                     "  \"ip\":\"10.0.0.3\",\"port\":80}},"
                     " {\"op\":\"unregister\",\"name\":\"z\"}]");
    ok(json_equal(ops, want), "register diff: changed and new first, then stale; static kept");
    if (!json_equal(ops, want)) {
        char *s = json_dumps(ops, 0);
        note("got %s", s);
        free(s);
    }
    json_decref(ops);
    ops = model_register_ops(d, NULL);
    is_int(json_array_size(ops), 3, "unknown balancer state: register everything");
    ok(json_object_size(json_object_get(json_array_get(ops, 0), "service")) == 4,
       "only name, weight, ip, port are sent (the demo's balancer)");
    json_decref(ops);
    json_decref(d);
    json_decref(a);
    json_decref(want);
}

static void test_lb_urls(void)
{
    json_t *slices = by_key(
        "[{\"metadata\":{\"name\":\"llamalb-1\",\"namespace\":\"default\","
        "  \"labels\":{\"kubernetes.io/service-name\":\"llamalb\"}},\"addressType\":\"IPv4\","
        " \"endpoints\":[{\"addresses\":[\"10.42.0.5\"],\"conditions\":{\"ready\":true}},"
        "  {\"addresses\":[\"10.42.0.4\"],\"conditions\":{}},"
        "  {\"addresses\":[\"10.42.0.6\"],\"conditions\":{\"ready\":false}},"
        "  {\"addresses\":[\"10.42.0.8\"],\"conditions\":{\"ready\":false,"
        "   \"terminating\":true}}]},"
        " {\"metadata\":{\"name\":\"llamalb-2\",\"namespace\":\"default\","
        "  \"labels\":{\"kubernetes.io/service-name\":\"llamalb\"}},\"addressType\":\"IPv6\","
        " \"endpoints\":[{\"addresses\":[\"fd00::7\"],\"conditions\":{\"ready\":true}},"
        "  {\"addresses\":[\"10.42.0.5\"],\"conditions\":{\"ready\":true}}]},"
        " {\"metadata\":{\"name\":\"other\",\"namespace\":\"default\","
        "  \"labels\":{\"kubernetes.io/service-name\":\"other\"}},"
        " \"endpoints\":[{\"addresses\":[\"10.42.9.9\"],\"conditions\":{\"ready\":true}}]}]");
    json_t *urls = model_lb_urls(slices, "default", "llamalb", 8081);
    json_t *want = J("[\"http://10.42.0.4:8081\",\"http://10.42.0.5:8081\","
                     "\"http://10.42.0.6:8081\",\"http://[fd00::7]:8081\"]");
    ok(json_equal(urls, want), "lb urls: not terminating (ready or not), deduplicated, sorted, "
                               "IPv6 bracketed");
    json_decref(urls);
    json_decref(want);
    json_decref(slices);
}

static void test_key(void)
{
    char k[16];
    json_t *o = J("{\"metadata\":{\"name\":\"n\",\"namespace\":\"ns\"}}");
    ok(model_key(o, k, sizeof(k)) && strcmp(k, "ns/n") == 0, "key ns/name");
    json_decref(o);
    o = J("{\"metadata\":{\"namespace\":\"ns\"}}");
    ok(!model_key(o, k, sizeof(k)) && k[0] == '\0', "no name, no key");
    json_decref(o);
    o = J("{\"metadata\":{\"name\":\"a-very-long-name\",\"namespace\":\"ns\"}}");
    ok(!model_key(o, k, sizeof(k)), "a key that does not fit is refused");
    json_decref(o);
}

int main(void)
{
    test_weight();
    test_service_mode();
    test_endpoints_mode();
    test_same_set();
    test_register_ops();
    test_lb_urls();
    test_key();
    return done_testing();
}
