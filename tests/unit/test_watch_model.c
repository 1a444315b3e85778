/* SPDX-License-Identifier: MIT
 * The watcher's desired-set rules (src/watcher/model.c, included so its
 * static helpers are reachable): annotations, both modes, endpoint
 * conditions, slice joins, the resync comparison and register diffs. */
#include "../../src/watcher/model.c"

#include <string.h>

#include "../tap.h"
#include "util.h"

static const struct model_cfg cfg_ep = {.mode = MODEL_ENDPOINTS,
                                        .weight_key = "llamaedge/weight",
                                        .models_key = "llamaedge/models",
                                        .inflight_key = "llamaedge/max-inflight",
                                        .port_key = "llamaedge/port"};
static const struct model_cfg cfg_svc = {.mode = MODEL_SERVICE,
                                         .weight_key = "llamaedge/weight",
                                         .models_key = "llamaedge/models",
                                         .inflight_key = "llamaedge/max-inflight",
                                         .port_key = "llamaedge/port"};

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

#define MANAGED "\"endpointslice.kubernetes.io/managed-by\":\"endpointslice-controller.k8s.io\""

static void test_lb_urls(void)
{
    json_t *slices = by_key(
        "[{\"metadata\":{\"name\":\"llamalb-1\",\"namespace\":\"default\","
        "  \"labels\":{\"kubernetes.io/service-name\":\"llamalb\"," MANAGED "}},"
        " \"addressType\":\"IPv4\","
        " \"endpoints\":[{\"addresses\":[\"10.42.0.5\"],\"conditions\":{\"ready\":true}},"
        "  {\"addresses\":[\"10.42.0.4\"],\"conditions\":{}},"
        "  {\"addresses\":[\"10.42.0.6\"],\"conditions\":{\"ready\":false}},"
        "  {\"addresses\":[\"10.42.0.8\"],\"conditions\":{\"ready\":false,"
        "   \"terminating\":true}}]},"
        " {\"metadata\":{\"name\":\"llamalb-2\",\"namespace\":\"default\","
        "  \"labels\":{\"kubernetes.io/service-name\":\"llamalb\"," MANAGED "},"
        "  \"ownerReferences\":[{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"name\":\"llamalb\","
        "   \"controller\":true,\"blockOwnerDeletion\":true}]},\"addressType\":\"IPv6\","
        " \"endpoints\":[{\"addresses\":[\"fd00::7\"],\"conditions\":{\"ready\":true}},"
        "  {\"addresses\":[\"10.42.0.5\"],\"conditions\":{\"ready\":true}}]},"
        " {\"metadata\":{\"name\":\"other\",\"namespace\":\"default\","
        "  \"labels\":{\"kubernetes.io/service-name\":\"other\"," MANAGED "}},"
        " \"endpoints\":[{\"addresses\":[\"10.42.9.9\"],\"conditions\":{\"ready\":true}}]},"
        /* Hand-made slices carrying the balancer's service-name label: none of
         * them may receive the admin token. */
        " {\"metadata\":{\"name\":\"handmade\",\"namespace\":\"default\","
        "  \"labels\":{\"kubernetes.io/service-name\":\"llamalb\"}},"
        " \"endpoints\":[{\"addresses\":[\"10.66.0.1\"],\"conditions\":{\"ready\":true}}]},"
        " {\"metadata\":{\"name\":\"other-manager\",\"namespace\":\"default\","
        "  \"labels\":{\"kubernetes.io/service-name\":\"llamalb\","
        "   \"endpointslice.kubernetes.io/managed-by\":\"evil.example.com\"}},"
        " \"endpoints\":[{\"addresses\":[\"10.66.0.2\"],\"conditions\":{\"ready\":true}}]},"
        " {\"metadata\":{\"name\":\"wrong-owner\",\"namespace\":\"default\","
        "  \"labels\":{\"kubernetes.io/service-name\":\"llamalb\"," MANAGED "},"
        "  \"ownerReferences\":[{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"name\":\"tenant\","
        "   \"controller\":true}]},"
        " \"endpoints\":[{\"addresses\":[\"10.66.0.3\"],\"conditions\":{\"ready\":true}}]},"
        " {\"metadata\":{\"name\":\"two-owners\",\"namespace\":\"default\","
        "  \"labels\":{\"kubernetes.io/service-name\":\"llamalb\"," MANAGED "},"
        "  \"ownerReferences\":[{\"kind\":\"Service\",\"name\":\"llamalb\"},"
        "   {\"kind\":\"Deployment\",\"name\":\"x\",\"controller\":true}]},"
        " \"endpoints\":[{\"addresses\":[\"10.66.0.4\"],\"conditions\":{\"ready\":true}}]},"
        " {\"metadata\":{\"name\":\"llamalb-elsewhere\",\"namespace\":\"tenant\","
        "  \"labels\":{\"kubernetes.io/service-name\":\"llamalb\"," MANAGED "}},"
        " \"endpoints\":[{\"addresses\":[\"10.66.0.5\"],\"conditions\":{\"ready\":true}}]}]");
    json_t *urls = model_lb_urls(slices, "default", "llamalb", 8081);
    json_t *want = J("[\"http://10.42.0.4:8081\",\"http://10.42.0.5:8081\","
                     "\"http://10.42.0.6:8081\",\"http://[fd00::7]:8081\"]");
    ok(json_equal(urls, want), "lb urls: not terminating (ready or not), deduplicated, sorted, "
                               "IPv6 bracketed; hand-made, foreign-managed, foreign-owned and "
                               "other-namespace slices left out");
    if (!json_equal(urls, want)) {
        char *s = json_dumps(urls, 0);
        note("got %s", s);
        free(s);
    }
    ok(!model_lb_slice_trusted(json_object_get(slices, "default/handmade"), "default", "llamalb"),
       "no managed-by label: not trusted");
    ok(!model_lb_slice_trusted(json_object_get(slices, "default/other-manager"), "default",
                               "llamalb"), "another manager: not trusted");
    ok(!model_lb_slice_trusted(json_object_get(slices, "default/wrong-owner"), "default",
                               "llamalb"), "owned by another Service: not trusted");
    ok(!model_lb_slice_trusted(json_object_get(slices, "default/two-owners"), "default",
                               "llamalb"), "controlled by something else: not trusted");
    ok(model_lb_slice_trusted(json_object_get(slices, "default/llamalb-2"), "default", "llamalb"),
       "controller-managed and owned by the Service: trusted");
    json_decref(urls);
    json_decref(want);
    json_decref(slices);
}

static void test_addresses(void)
{
    static const char *const denied[] = {
        "127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1", "::ffff:7f00:1", "169.254.169.254",
        "::ffff:169.254.169.254", "fe80::1", "febf::1", "0.0.0.0", "::", "::ffff:0.0.0.0",
        "224.0.0.1", "239.1.2.3", "255.255.255.255", "ff02::1", "10.0.0.1 ", "1.2.3", "x",
        "fe80::1%eth0", "",
    };
    static const char *const allowed[] = {"10.0.0.1", "192.168.1.1", "fd00::1", "2001:db8::1",
                                          "::ffff:10.0.0.1", "169.253.0.1", "fec0::1"};
    for (size_t i = 0; i < ARRAY_SIZE(denied); i++)
        ok(model_addr_denied(&cfg_ep, denied[i]) != NULL, "address \"%s\" refused (%s)", denied[i],
           model_addr_denied(&cfg_ep, denied[i]) ? model_addr_denied(&cfg_ep, denied[i]) : "-");
    for (size_t i = 0; i < ARRAY_SIZE(allowed); i++)
        ok(model_addr_denied(&cfg_ep, allowed[i]) == NULL, "address %s taken", allowed[i]);
    ok(model_addr_denied(&cfg_ep, NULL) != NULL, "no address refused");

    struct model_cidr allow[2];
    ok(model_parse_cidr("127.0.0.0/8", &allow[0]) == 0, "cidr 127.0.0.0/8");
    ok(model_parse_cidr("fe80::/10", &allow[1]) == 0, "cidr fe80::/10");
    ok(model_parse_cidr("10.0.0.0/33", &allow[0]) < 0 && model_parse_cidr("/8", &allow[0]) < 0 &&
       model_parse_cidr("x/8", &allow[0]) < 0 && model_parse_cidr("10.0.0.0/", &allow[0]) < 0,
       "bad cidrs refused");
    model_parse_cidr("127.0.0.0/8", &allow[0]);
    struct model_cfg c = cfg_ep;
    c.allow = allow;
    c.nallow = 2;
    ok(model_addr_denied(&c, "127.0.0.1") == NULL, "--backend-allow 127.0.0.0/8 takes 127.0.0.1");
    ok(model_addr_denied(&c, "::ffff:127.0.0.1") == NULL, "... and ::ffff:127.0.0.1");
    ok(model_addr_denied(&c, "febf::2") == NULL, "fe80::/10 allowed");
    ok(model_addr_denied(&c, "::1") != NULL, "::1 still refused");
    ok(model_addr_denied(&c, "169.254.0.1") != NULL, "169.254.0.1 still refused");
}

static void test_check_backend(void)
{
    static const struct {
        const char *json, *why;
    } t[] = {
        {"{\"name\":\"a/b:c_d-e.f\",\"weight\":0,\"ip\":\"10.0.0.1\",\"port\":1,\"models\":[]}",
         NULL},
        {"{\"name\":\"\",\"weight\":1,\"ip\":\"10.0.0.1\",\"port\":1}", "name"},
        {"{\"name\":\"a b\",\"weight\":1,\"ip\":\"10.0.0.1\",\"port\":1}", "name"},
        {"{\"name\":\"a\\u00e9\",\"weight\":1,\"ip\":\"10.0.0.1\",\"port\":1}", "name"},
        {"{\"weight\":1,\"ip\":\"10.0.0.1\",\"port\":1}", "name"},
        {"{\"name\":\"a\",\"weight\":1,\"ip\":\"::ffff:127.0.0.1\",\"port\":1}", "address"},
        {"{\"name\":\"a\",\"weight\":1,\"ip\":\"10.0.0.1\",\"port\":0}", "port"},
        {"{\"name\":\"a\",\"weight\":1,\"ip\":\"10.0.0.1\",\"port\":65536}", "port"},
        {"{\"name\":\"a\",\"weight\":1000001,\"ip\":\"10.0.0.1\",\"port\":1}", "weight"},
        {"{\"name\":\"a\",\"weight\":-1,\"ip\":\"10.0.0.1\",\"port\":1}", "weight"},
        {"{\"name\":\"a\",\"weight\":1,\"ip\":\"10.0.0.1\",\"port\":1,\"max_inflight\":1000001}",
         "max_inflight"},
        {"{\"name\":\"a\",\"weight\":1,\"ip\":\"10.0.0.1\",\"port\":1,\"models\":[\"\"]}", "models"},
        {"{\"name\":\"a\",\"weight\":1,\"ip\":\"10.0.0.1\",\"port\":1,\"models\":[1]}", "models"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
        json_t *b = J(t[i].json);
        const char *why = model_check_backend(&cfg_ep, b);
        ok(t[i].why ? why && strcmp(why, t[i].why) == 0 : why == NULL, "check %s: %s", t[i].json,
           why ? why : "ok");
        json_decref(b);
    }
    /* Lengths at the edges: 253 characters pass, 254 do not; 32 models of
     * 127 bytes pass, a 33rd or a 128-byte one do not. */
    char name[300];
    memset(name, 'n', sizeof(name));
    json_t *b = J("{\"name\":\"\",\"weight\":1,\"ip\":\"10.0.0.1\",\"port\":1,\"models\":[]}");
    json_object_set_new(b, "name", json_stringn(name, 253));
    ok(model_check_backend(&cfg_ep, b) == NULL, "253-character name taken");
    json_object_set_new(b, "name", json_stringn(name, 254));
    ok(model_check_backend(&cfg_ep, b) != NULL, "254-character name refused");
    json_object_set_new(b, "name", json_string("a"));
    json_t *models = json_object_get(b, "models");
    for (int i = 0; i < 32; i++)
        json_array_append_new(models, json_stringn(name, 127));
    ok(model_check_backend(&cfg_ep, b) == NULL, "32 models of 127 bytes taken");
    json_array_append_new(models, json_string("m"));
    ok(model_check_backend(&cfg_ep, b) != NULL, "33 models refused");
    json_array_clear(models);
    json_array_append_new(models, json_stringn(name, 128));
    ok(model_check_backend(&cfg_ep, b) != NULL, "a 128-byte model refused");
    json_decref(b);
}

static const char *reason(json_t *drops, const char *name)
{
    const char *r = json_string_value(json_object_get(json_object_get(drops, name), "reason"));
    return r ? r : "";
}

/* One Service with good, overlong, loopback, mapped and link-local
 * endpoints: the good ones stay, the rest is dropped with a reason. */
static void test_drops(void)
{
    char pod[300], text[4096];
    memset(pod, 'p', 250); /* a valid pod name; t1/mixed/ + it is over 253 */
    pod[250] = '\0';
    snprintf(text, sizeof(text),
             "[{\"metadata\":{\"name\":\"mixed-1\",\"namespace\":\"t1\","
             "  \"labels\":{\"kubernetes.io/service-name\":\"mixed\"}},"
             " \"addressType\":\"IPv4\",\"ports\":[{\"port\":8080}],\"endpoints\":["
             "  {\"addresses\":[\"10.1.0.1\"],\"targetRef\":{\"name\":\"good\"}},"
             "  {\"addresses\":[\"10.1.0.2\"],\"targetRef\":{\"name\":\"%s\"}},"
             "  {\"addresses\":[\"127.0.0.1\"],\"targetRef\":{\"name\":\"lo\"}},"
             "  {\"addresses\":[\"::ffff:127.0.0.1\"],\"targetRef\":{\"name\":\"mapped\"}},"
             "  {\"addresses\":[\"169.254.169.254\"],\"targetRef\":{\"name\":\"meta\"}},"
             "  {\"addresses\":[\"fe80::1\"],\"targetRef\":{\"name\":\"ll6\"}},"
             "  {\"addresses\":[\"10.1.0.3\"],\"targetRef\":{\"name\":\"bad name\"}}]},"
             " {\"metadata\":{\"name\":\"badport\",\"namespace\":\"t1\","
             "  \"labels\":{\"kubernetes.io/service-name\":\"other\"}},"
             " \"addressType\":\"IPv4\",\"ports\":[{\"port\":8080}],\"endpoints\":["
             "  {\"addresses\":[\"10.2.0.1\"],\"targetRef\":{\"name\":\"fine\"}}]}]",
             pod);
    json_t *svcs = by_key("[{\"metadata\":{\"name\":\"mixed\",\"namespace\":\"t1\"},"
                          "  \"spec\":{\"ports\":[{\"port\":80}]}},"
                          " {\"metadata\":{\"name\":\"other\",\"namespace\":\"t1\"},"
                          "  \"spec\":{\"ports\":[{\"port\":80}]}}]");
    json_t *slices = by_key(text), *drops = json_object(), *v;
    struct model_state st;
    const char *k;
    model_state_init(&st);
    json_object_foreach(svcs, k, v)
        model_state_set_service(&st, k, v);
    json_object_foreach(slices, k, v)
        model_state_set_slice(&st, k, v);
    json_t *set = model_state_desired(&st, &cfg_ep, NULL, drops);
    is_int(json_array_size(set), 2, "two good backends reach the set");
    ok(find(set, "t1/mixed/good") && find(set, "t1/other/fine"), "the good ones, of both Services");
    is_int(json_object_size(drops), 6, "six dropped");
    static const char *const want[][2] = {
        {"t1/mixed/lo", "address"}, {"t1/mixed/mapped", "address"}, {"t1/mixed/meta", "address"},
        {"t1/mixed/ll6", "address"}, {"t1/mixed/bad name", "name"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(want); i++)
        ok(strcmp(reason(drops, want[i][0]), want[i][1]) == 0,
           "%s dropped for its %s", want[i][0], want[i][1]);
    bool long_dropped = false;
    json_object_foreach(drops, k, v)
        if (strlen(k) > MODEL_NAME_MAX && strcmp(reason(drops, k), "name") == 0)
            long_dropped = true;
    ok(long_dropped, "an overlong ns/svc/pod name is dropped for its name");
    note("address detail: %s", json_string_value(json_object_get(
                                   json_object_get(drops, "t1/mixed/mapped"), "detail")));
    json_decref(set);

    /* The limit: the first max_backends names stay, the rest is dropped. */
    st.max_backends = 1;
    set = model_state_desired(&st, &cfg_ep, NULL, drops);
    is_int(json_array_size(set), 1, "limit: one backend kept");
    ok(strcmp(name_at(set, 0), "t1/mixed/good") == 0, "limit keeps the first by name");
    ok(strcmp(reason(drops, "t1/other/fine"), "limit") == 0,
       "limit: the rest dropped as \"limit\"");
    json_decref(set);
    model_state_deinit(&st);
    json_decref(svcs);
    json_decref(slices);
    json_decref(drops);
}

/* A change to one Service (or one of its slices) computes that Service
 * again, not every Service. */
static void test_incremental(void)
{
    json_t *svcs = by_key(svcs_text), *slices = by_key(slices_text), *v;
    struct model_state st;
    const char *k;
    model_state_init(&st);
    json_object_foreach(svcs, k, v)
        model_state_set_service(&st, k, v);
    json_object_foreach(slices, k, v)
        model_state_set_slice(&st, k, v);
    json_t *full = model_desired(&cfg_ep, svcs, slices, NULL);
    json_t *set = model_state_desired(&st, &cfg_ep, NULL, NULL);
    ok(json_equal(set, full), "cached state gives the same set as a full computation");
    json_decref(set);
    uint64_t before = st.recomputed;
    set = model_state_desired(&st, &cfg_ep, NULL, NULL);
    is_int((long long)(st.recomputed - before), 0, "nothing changed: nothing computed");
    json_decref(set);

    json_t *sl = json_deep_copy(json_object_get(slices, "default/high-1"));
    json_object_set_new(json_array_get(json_object_get(sl, "endpoints"), 0), "conditions",
                        J("{\"ready\":false}"));
    model_state_set_slice(&st, "default/high-1", sl);
    before = st.recomputed;
    set = model_state_desired(&st, &cfg_ep, NULL, NULL);
    is_int((long long)(st.recomputed - before), 1, "one slice changed: one Service computed");
    ok(find(set, "default/llama-3-3b-high/high-pod") == NULL, "... and the change applies");
    ok(find(set, "default/llama-3-1b-low/pod-ready") != NULL, "... the others stay (cached)");
    json_decref(set);

    /* Relabelled to another Service: both are computed again. */
    json_object_set_new(json_object_get(json_object_get(sl, "metadata"), "labels"),
                        "kubernetes.io/service-name", json_string("llama-3-1b-low"));
    json_object_set_new(json_array_get(json_object_get(sl, "endpoints"), 0), "conditions",
                        J("{\"ready\":true}"));
    model_state_set_slice(&st, "default/high-1", sl);
    before = st.recomputed;
    set = model_state_desired(&st, &cfg_ep, NULL, NULL);
    is_int((long long)(st.recomputed - before), 2, "slice moved: old and new Service computed");
    ok(find(set, "default/llama-3-1b-low/high-pod") != NULL, "... it now belongs to the new one");
    json_decref(set);
    json_decref(sl);

    model_state_set_service(&st, "default/llama-3-1b-low", NULL);
    before = st.recomputed;
    set = model_state_desired(&st, &cfg_ep, NULL, NULL);
    is_int((long long)(st.recomputed - before), 1, "Service deleted: one computed");
    ok(find(set, "default/llama-3-1b-low/pod-ready") == NULL, "... its backends are gone");
    json_decref(set);
    model_state_set_slice(&st, "default/high-1", NULL);
    model_state_set_slice(&st, "default/llama-3-1b-low-x7k2p", NULL);
    set = model_state_desired(&st, &cfg_ep, NULL, NULL);
    ok(find(set, "default/llama-3-3b-high/high-pod") == NULL, "slice deleted: its backends go");
    json_decref(set);
    model_state_deinit(&st);
    json_decref(full);
    json_decref(svcs);
    json_decref(slices);
}

/* A slice object without metadata.name (the model must not hand a NULL to
 * %s): the warning names it by its key. */
static void test_fqdn_without_name(void)
{
    json_t *svcs = by_key(svcs_text), *w = json_array();
    json_t *slices = J("{\"default/nameless\":{\"metadata\":{\"namespace\":\"default\","
                       "  \"labels\":{\"kubernetes.io/service-name\":\"llama-3-3b-high\"}},"
                       " \"addressType\":\"FQDN\",\"ports\":[{\"port\":1}],"
                       " \"endpoints\":[{\"addresses\":[\"x.example\"]}]}}");
    json_t *set = model_desired(&cfg_ep, svcs, slices, w);
    ok(has_warning(w, "FQDN EndpointSlice nameless skipped"), "FQDN slice without a name: "
                                                               "named by its key");
    ok(!has_warning(w, "(null)"), "no (null) in any warning");
    json_decref(set);
    json_decref(svcs);
    json_decref(slices);
    json_decref(w);
}

/* Balancer answers are bytes, not C strings: parsing stops at their end. */
static void test_answers(void)
{
    static const char body[] = "{\"error\":{\"message\":\"stale generation 5: already at 123999";
    uint64_t g = 0;
    size_t cut = sizeof(body) - 1 - 3; /* the body ends at "123"; "999" is not part of it */
    ok(model_conflict_generation(body, cut, &g) && g == 123, "409: generation read up to the "
                                                             "body's end (%llu)",
       (unsigned long long)g);
    ok(model_conflict_generation(body, sizeof(body) - 1, &g) && g == 123999, "409: generation");
    ok(!model_conflict_generation(body, cut - 3, &g), "409: no digits before the end: none");
    ok(!model_conflict_generation("already at 99999999999999999999999", 34, &g),
       "409: an overflowing number is refused");
    ok(!model_conflict_generation(NULL, 0, &g), "409: no body");
    static const char bad[] = "{\"error\":{\"message\":\"services[17]: invalid port\"}}";
    is_int(model_refused_index(bad, sizeof(bad) - 1), 17, "400: the blamed entry's index");
    is_int(model_refused_index(bad, 31), -1, "400: an index cut by the body's end is none");
    is_int(model_refused_index("services[]", 10), -1, "400: no digits, no index");
    is_int(model_refused_index("duplicate backend name", 22), -1, "400: no index");
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
    test_addresses();
    test_check_backend();
    test_drops();
    test_incremental();
    test_fqdn_without_name();
    test_answers();
    test_key();
    return done_testing();
}
