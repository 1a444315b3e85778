/* SPDX-License-Identifier: MIT
 * llamalb-watcher: follows labelled Kubernetes Services (and their
 * EndpointSlices) and keeps every balancer replica's backend set equal to
 * what the cluster says. One thread, one libcurl multi handle: the list/watch
 * streams, the admin pushes and the /metrics listener share one poll. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "buf.h"
#include "k8s.h"
#include "log.h"
#include "net.h"
#include "model.h"
#include "push.h"
#include "serve.h"
#include "util.h"
#include "xfer.h"

#define MAX_NAMESPACES 32
#define MAX_ALLOW 64

static const char usage[] =
    "usage: llamalb-watcher [options]\n"
    "Follows Kubernetes Services labelled for llamalb and pushes the backend set to every\n"
    "balancer replica.\n\n"
    "API server:\n"
    "  --kubeconfig FILE          kubeconfig (default: in-cluster when KUBERNETES_SERVICE_HOST\n"
    "                             is set, else $KUBECONFIG, else ~/.kube/config)\n"
    "  --context NAME             kubeconfig context (default current-context)\n"
    "  --sa-dir DIR               service-account dir (default\n"
    "                             /var/run/secrets/kubernetes.io/serviceaccount)\n"
    "What to watch:\n"
    "  --label-selector SEL       Services to follow (default llamaedge/target=true)\n"
    "  --namespace NS             only this namespace (repeatable; default all)\n"
    "  --mode endpoints|service   one backend per ready pod (default) or per ClusterIP\n"
    "  --slice-selector SEL       EndpointSlices to watch in endpoints mode\n"
    "                             (default kubernetes.io/service-name)\n"
    "  --weight-annotation KEY    default llamaedge/weight (absent or bad: 1)\n"
    "  --models-annotation KEY    default llamaedge/models (comma-separated)\n"
    "  --max-inflight-annotation KEY  default llamaedge/max-inflight\n"
    "  --port-annotation KEY      default llamaedge/port (port name or number)\n"
    "  --backend-allow CIDR       addresses the balancers allow (their --backend-allow;\n"
    "                             repeatable); other loopback, link-local, multicast...\n"
    "                             backends are left out, as the balancer would refuse them\n"
    "Balancers:\n"
    "  --lb URL                   admin base URL, e.g. http://127.0.0.1:8081 (repeatable)\n"
    "  --lb-service NS/NAME[:PORT]  every address of the EndpointSlice controller's slices of\n"
    "                             this Service (admin port 8081)\n"
    "  --push put|register        PUT /api/services (default) or register/unregister diffs\n"
    "  --admin-token-file FILE    bearer token for the admin API\n"
    "  --resync DUR               compare each balancer with the desired set (default 60s)\n"
    "  --full-resync DUR          relist everything and push again (default 300s)\n"
    "  --debounce DUR             coalesce changes (default 50ms)\n"
    "Watch tuning:\n"
    "  --watch-timeout SECONDS    timeoutSeconds of each watch (default 290)\n"
    "  --stall-timeout DUR        reopen a watch silent this long (default timeout + 5s)\n"
    "  --max-line BYTES           longest watch event accepted (default 1048576)\n"
    "  --page-limit N             list page size (default 500)\n"
    "  --max-list-items N         objects one list may hold (default 100000)\n"
    "  --max-list-pages N         pages one list may take (default: twice what\n"
    "                             --max-list-items needs, at least 100)\n"
    "  --backoff-min DUR, --backoff-max DUR   retry backoff (default 800ms, 30s)\n"
    "Other:\n"
    "  --listen ADDR              /healthz, /readyz, /metrics (default 0.0.0.0:8090)\n"
    "  --log-level LEVEL          debug, info, warn, error (default info)\n"
    "  --help, --version\n"
    "DUR is a number with ms, s or m (plain numbers are seconds).\n"
    "Prints \"listening on HOST:PORT\" on stdout when ready; SIGTERM/SIGINT stop it.\n";

/* Everything the loop needs; one instance, in main(). */
struct watcher {
    struct k8s_config kc;
    struct model_cfg mc;
    struct k8s_reflector *refl[2 * MAX_NAMESPACES]; /* services and slices, per namespace */
    size_t nrefl;
    struct k8s_reflector *lbrefl;   /* slices of --lb-service, or NULL */
    char lb_ns[254], lb_name[254];
    int lb_port;
    struct push push;
    json_t *warned;                 /* warnings already logged (object used as a set) */
    struct model_state ms;          /* the desired set, cached per Service */
    struct model_cidr allow[MAX_ALLOW];
    json_t *dropped;                /* name -> {reason, detail}: left out right now */
    json_t *drop_counts;            /* reason -> times an entry started being left out */
    struct serve srv;
    bool ready;                     /* every reflector has listed once */
    int64_t resync_ms, full_ms, next_resync, next_full;
    CURLM *multi;
};

static volatile sig_atomic_t g_stop;
static CURLM *g_multi;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
    if (g_multi)
        curl_multi_wakeup(g_multi);
}

static int parse_dur(const char *s, int64_t *ms)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || v < 0)
        return -EINVAL;
    if (strcmp(end, "ms") == 0)
        *ms = (int64_t)v;
    else if (strcmp(end, "s") == 0 || *end == '\0')
        *ms = (int64_t)(v * 1000);
    else if (strcmp(end, "m") == 0)
        *ms = (int64_t)(v * 60000);
    else
        return -EINVAL;
    return 0;
}

static bool all_synced(const struct watcher *w)
{
    for (size_t i = 0; i < w->nrefl; i++)
        if (!w->refl[i]->synced)
            return false;
    return w->lbrefl == NULL || w->lbrefl->synced;
}

/* A reflector's object changed: the model recomputes only its Service. */
static void on_change(void *data, struct k8s_reflector *r, const char *key, json_t *obj)
{
    struct watcher *w = data;
    if (strcmp(r->resource, "services") == 0)
        model_state_set_service(&w->ms, key, obj);
    else
        model_state_set_slice(&w->ms, key, obj);
}

/* Logs each entry left out once, when it starts being left out (not at
 * every recompute or resync), and counts it by reason. */
static void note_drops(struct watcher *w, json_t *drops)
{
    const char *name;
    json_t *d;
    json_object_foreach(drops, name, d) {
        json_t *was = json_object_get(w->dropped, name);
        if (was != NULL && json_equal(was, d))
            continue;
        const char *reason = json_string_value(json_object_get(d, "reason"));
        log_warn("backend %s left out (%s): the balancer would refuse it: %s", name, reason,
                 json_string_value(json_object_get(d, "detail")));
        json_t *c = json_object_get(w->drop_counts, reason);
        json_object_set_new(w->drop_counts, reason, json_integer(json_integer_value(c) + 1));
    }
    json_decref(w->dropped);
    w->dropped = json_incref(drops);
}

/* Recomputes the desired set (the Services that changed) and hands it to push. */
static void recompute(struct watcher *w, int64_t now)
{
    json_t *warnings = json_array(), *drops = json_object(), *v;
    json_t *desired = model_state_desired(&w->ms, &w->mc, warnings, drops);
    json_t *seen = json_object();
    size_t i;
    json_array_foreach(warnings, i, v) {
        const char *msg = json_string_value(v);
        if (json_object_get(w->warned, msg) == NULL)
            log_warn("%s", msg);
        json_object_set_new(seen, msg, json_true());
    }
    json_decref(w->warned);
    w->warned = seen;
    note_drops(w, drops);
    log_info("desired set: %zu backends (%zu left out)", json_array_size(desired),
             json_object_size(drops));
    push_set_desired(&w->push, desired, now);
    json_decref(warnings);
    json_decref(drops);
}

static void metric_drops(struct buf *b, const struct watcher *w)
{
    static const char *const reasons[] = {"name", "address", "port", "weight", "max_inflight",
                                          "models", "duplicate", "limit"};
    const char *name;
    json_t *d;
    size_t now[ARRAY_SIZE(reasons)] = {0};
    json_object_foreach(w->dropped, name, d) {
        const char *r = json_string_value(json_object_get(d, "reason"));
        for (size_t i = 0; i < ARRAY_SIZE(reasons); i++)
            if (r && strcmp(r, reasons[i]) == 0)
                now[i]++;
    }
    buf_append_str(b, "# HELP llamalb_watcher_dropped_total Backends left out because the "
                      "balancer would refuse them (counted when they start being left out).\n"
                      "# TYPE llamalb_watcher_dropped_total counter\n");
    for (size_t i = 0; i < ARRAY_SIZE(reasons); i++)
        buf_printf(b, "llamalb_watcher_dropped_total{reason=\"%s\"} %lld\n", reasons[i],
                   (long long)json_integer_value(json_object_get(w->drop_counts, reasons[i])));
    buf_append_str(b, "# HELP llamalb_watcher_dropped Backends left out right now.\n"
                      "# TYPE llamalb_watcher_dropped gauge\n");
    for (size_t i = 0; i < ARRAY_SIZE(reasons); i++)
        buf_printf(b, "llamalb_watcher_dropped{reason=\"%s\"} %zu\n", reasons[i], now[i]);
    buf_printf(b, "# HELP llamalb_watcher_services_computed_total Services whose backends were "
                  "computed (only changed Services are).\n"
                  "# TYPE llamalb_watcher_services_computed_total counter\n"
                  "llamalb_watcher_services_computed_total %" PRIu64 "\n", w->ms.recomputed);
}

static void metric_refl(struct buf *b, const struct watcher *w, const char *name,
                        const char *help, const char *type, size_t off, const char *label)
{
    buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
    for (size_t i = 0; i <= w->nrefl; i++) {
        const struct k8s_reflector *r = i < w->nrefl ? w->refl[i] : w->lbrefl;
        if (r == NULL)
            continue;
        uint64_t v = *(const uint64_t *)((const char *)&r->st + off);
        buf_printf(b, "%s{resource=\"%s\",path=\"%s\"%s} %" PRIu64 "\n", name, r->resource,
                   r->path, label ? label : "", v);
    }
}

static int route(void *data, const char *path, struct buf *out, const char **ctype)
{
    struct watcher *w = data;
    if (strcmp(path, "/healthz") == 0) {
        buf_append_str(out, "ok\n");
        return 200;
    }
    if (strcmp(path, "/readyz") == 0) {
        buf_append_str(out, w->ready ? "ready\n" : "not synced yet\n");
        return w->ready ? 200 : 503;
    }
    if (strcmp(path, "/metrics") != 0) {
        buf_append_str(out, "not found\n");
        return 404;
    }
    *ctype = "text/plain; version=0.0.4; charset=utf-8";
    static const struct {
        const char *type;
        size_t off;
    } ev[] = {
        {"ADDED", offsetof(struct k8s_stats, added)},
        {"MODIFIED", offsetof(struct k8s_stats, modified)},
        {"DELETED", offsetof(struct k8s_stats, deleted)},
        {"BOOKMARK", offsetof(struct k8s_stats, bookmarks)},
        {"ERROR", offsetof(struct k8s_stats, errors)},
    };
    buf_append_str(out, "# HELP llamalb_watcher_events_total Watch events seen, by type.\n"
                        "# TYPE llamalb_watcher_events_total counter\n");
    for (size_t e = 0; e < ARRAY_SIZE(ev); e++)
        for (size_t i = 0; i <= w->nrefl; i++) {
            const struct k8s_reflector *r = i < w->nrefl ? w->refl[i] : w->lbrefl;
            if (r == NULL)
                continue;
            buf_printf(out,
                       "llamalb_watcher_events_total{resource=\"%s\",path=\"%s\",type=\"%s\"} "
                       "%" PRIu64 "\n",
                       r->resource, r->path, ev[e].type,
                       *(const uint64_t *)((const char *)&r->st + ev[e].off));
        }
    metric_refl(out, w, "llamalb_watcher_lists_total", "List requests started (pages excluded).",
                "counter", offsetof(struct k8s_stats, lists), NULL);
    metric_refl(out, w, "llamalb_watcher_relists_total",
                "Relists after the first list (410, malformed stream, full resync).", "counter",
                offsetof(struct k8s_stats, relists), NULL);
    metric_refl(out, w, "llamalb_watcher_watch_restarts_total",
                "Watch streams that ended and were reopened.", "counter",
                offsetof(struct k8s_stats, watch_restarts), NULL);
    metric_refl(out, w, "llamalb_watcher_watch_stalls_total",
                "Watch streams reopened because they went silent.", "counter",
                offsetof(struct k8s_stats, stalls), NULL);
    metric_refl(out, w, "llamalb_watcher_bad_lines_total",
                "Malformed or oversized watch lines dropped.", "counter",
                offsetof(struct k8s_stats, bad_lines), NULL);
    metric_refl(out, w, "llamalb_watcher_api_errors_total",
                "API requests that failed (transport or HTTP status).", "counter",
                offsetof(struct k8s_stats, http_errors), NULL);
    metric_refl(out, w, "llamalb_watcher_list_limit_hits_total",
                "Lists stopped at --max-list-items or --max-list-pages (the previous set kept).",
                "counter", offsetof(struct k8s_stats, limit_hits), NULL);
    metric_drops(out, w);
    buf_printf(out, "# HELP llamalb_watcher_synced 1 once every list has completed.\n"
                    "# TYPE llamalb_watcher_synced gauge\nllamalb_watcher_synced %d\n",
               w->ready ? 1 : 0);
    push_metrics(&w->push, out);
    return 200;
}

static struct k8s_reflector *add_refl(struct watcher *w, const char *resource, const char *ns,
                                      const char *sel)
{
    char path[512];
    const char *base = strcmp(resource, "services") == 0 ? "/api/v1" : "/apis/discovery.k8s.io/v1";
    if (ns)
        snprintf(path, sizeof(path), "%s/namespaces/%s/%s", base, ns, resource);
    else
        snprintf(path, sizeof(path), "%s/%s", base, resource);
    return k8s_reflector_new(&w->kc, resource, path, sel);
}

static char *read_token(const char *path)
{
    FILE *f = fopen(path, "r");
    char tmp[4096];
    if (f == NULL)
        return NULL;
    size_t n = fread(tmp, 1, sizeof(tmp) - 1, f);
    fclose(f);
    tmp[n] = '\0';
    while (n > 0 && (tmp[n - 1] == '\n' || tmp[n - 1] == '\r' || tmp[n - 1] == ' '))
        tmp[--n] = '\0';
    return xstrdup(tmp);
}

enum {
    O_KUBECONFIG = 256, O_CONTEXT, O_SADIR, O_SEL, O_NS, O_MODE, O_SLICESEL, O_WANN, O_MANN,
    O_IANN, O_PANN, O_LB, O_LBSVC, O_PUSH, O_TOKEN, O_RESYNC, O_FULL, O_DEBOUNCE, O_WTIMEOUT,
    O_STALL, O_MAXLINE, O_PAGE, O_BMIN, O_BMAX, O_LISTEN, O_LOGLEVEL, O_HELP, O_VERSION,
    O_ALLOW, O_MAXITEMS, O_MAXPAGES,
};

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"kubeconfig", 1, 0, O_KUBECONFIG}, {"context", 1, 0, O_CONTEXT},
        {"sa-dir", 1, 0, O_SADIR}, {"label-selector", 1, 0, O_SEL}, {"namespace", 1, 0, O_NS},
        {"mode", 1, 0, O_MODE}, {"slice-selector", 1, 0, O_SLICESEL},
        {"weight-annotation", 1, 0, O_WANN}, {"models-annotation", 1, 0, O_MANN},
        {"max-inflight-annotation", 1, 0, O_IANN}, {"port-annotation", 1, 0, O_PANN},
        {"lb", 1, 0, O_LB}, {"lb-service", 1, 0, O_LBSVC}, {"push", 1, 0, O_PUSH},
        {"admin-token-file", 1, 0, O_TOKEN}, {"resync", 1, 0, O_RESYNC},
        {"full-resync", 1, 0, O_FULL}, {"debounce", 1, 0, O_DEBOUNCE},
        {"watch-timeout", 1, 0, O_WTIMEOUT}, {"stall-timeout", 1, 0, O_STALL},
        {"max-line", 1, 0, O_MAXLINE}, {"page-limit", 1, 0, O_PAGE},
        {"backoff-min", 1, 0, O_BMIN}, {"backoff-max", 1, 0, O_BMAX},
        {"listen", 1, 0, O_LISTEN}, {"log-level", 1, 0, O_LOGLEVEL}, {"help", 0, 0, O_HELP},
        {"version", 0, 0, O_VERSION}, {"backend-allow", 1, 0, O_ALLOW},
        {"max-list-items", 1, 0, O_MAXITEMS}, {"max-list-pages", 1, 0, O_MAXPAGES},
        {0, 0, 0, 0}};
    static struct watcher w;
    const char *kubeconfig = NULL, *context = NULL;
    const char *sa_dir = "/var/run/secrets/kubernetes.io/serviceaccount";
    const char *selector = "llamaedge/target=true", *slice_sel = MODEL_SLICE_SERVICE_LABEL;
    const char *namespaces[MAX_NAMESPACES], *lbs[64], *lb_service = NULL, *token_file = NULL;
    const char *listen = "0.0.0.0:8090";
    size_t nns = 0, nlb = 0;
    enum push_mode pmode = PUSH_PUT;
    int64_t debounce = 50, stall = -1, bmin = 800, bmax = 30000;
    long wtimeout = 290, maxline = 1 << 20, page = 500, maxitems = MODEL_MAX_BACKENDS,
         maxpages = 0;
    char err[512];
    int c;

    log_min_level = LOG_INFO;
    w.mc = (struct model_cfg){.mode = MODEL_ENDPOINTS, .weight_key = "llamaedge/weight",
                              .models_key = "llamaedge/models",
                              .inflight_key = "llamaedge/max-inflight",
                              .port_key = "llamaedge/port", .allow = w.allow};
    w.resync_ms = 60000;
    w.full_ms = 300000;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        int64_t d;
        switch (c) {
        case O_KUBECONFIG: kubeconfig = optarg; break;
        case O_CONTEXT: context = optarg; break;
        case O_SADIR: sa_dir = optarg; break;
        case O_SEL: selector = optarg; break;
        case O_SLICESEL: slice_sel = optarg; break;
        case O_NS:
            if (nns == MAX_NAMESPACES) {
                fprintf(stderr, "llamalb-watcher: at most %d --namespace\n", MAX_NAMESPACES);
                return 2;
            }
            namespaces[nns++] = optarg;
            break;
        case O_MODE:
            if (strcmp(optarg, "endpoints") == 0)
                w.mc.mode = MODEL_ENDPOINTS;
            else if (strcmp(optarg, "service") == 0)
                w.mc.mode = MODEL_SERVICE;
            else
                goto bad;
            break;
        case O_WANN: w.mc.weight_key = optarg; break;
        case O_MANN: w.mc.models_key = optarg; break;
        case O_IANN: w.mc.inflight_key = optarg; break;
        case O_PANN: w.mc.port_key = optarg; break;
        case O_LB:
            if (nlb == ARRAY_SIZE(lbs) || strncmp(optarg, "http", 4) != 0)
                goto bad;
            lbs[nlb++] = optarg;
            break;
        case O_LBSVC: lb_service = optarg; break;
        case O_PUSH:
            if (strcmp(optarg, "put") == 0)
                pmode = PUSH_PUT;
            else if (strcmp(optarg, "register") == 0)
                pmode = PUSH_REGISTER;
            else
                goto bad;
            break;
        case O_TOKEN: token_file = optarg; break;
        case O_RESYNC: if (parse_dur(optarg, &w.resync_ms) < 0 || w.resync_ms < 100) goto bad; break;
        case O_FULL: if (parse_dur(optarg, &w.full_ms) < 0 || w.full_ms < 1000) goto bad; break;
        case O_DEBOUNCE: if (parse_dur(optarg, &debounce) < 0 || debounce > 900) goto bad; break;
        case O_STALL: if (parse_dur(optarg, &stall) < 0 || stall < 100) goto bad; break;
        case O_BMIN: if (parse_dur(optarg, &d) < 0 || d < 10) goto bad; bmin = d; break;
        case O_BMAX: if (parse_dur(optarg, &d) < 0 || d < 10) goto bad; bmax = d; break;
        case O_WTIMEOUT:
            wtimeout = strtol(optarg, NULL, 10);
            if (wtimeout < 1 || wtimeout >= 295)
                goto bad;
            break;
        case O_MAXLINE:
            maxline = strtol(optarg, NULL, 10);
            if (maxline < 1024)
                goto bad;
            break;
        case O_PAGE:
            page = strtol(optarg, NULL, 10);
            if (page < 1 || page > 10000)
                goto bad;
            break;
        case O_ALLOW:
            if (w.mc.nallow == MAX_ALLOW || model_parse_cidr(optarg, &w.allow[w.mc.nallow]) < 0)
                goto bad;
            w.mc.nallow++;
            break;
        case O_MAXITEMS:
            maxitems = strtol(optarg, NULL, 10);
            if (maxitems < 1 || maxitems > 10000000)
                goto bad;
            break;
        case O_MAXPAGES:
            maxpages = strtol(optarg, NULL, 10);
            if (maxpages < 1 || maxpages > 1000000)
                goto bad;
            break;
        case O_LISTEN: listen = optarg; break;
        case O_LOGLEVEL: if (log_parse_level(optarg, &log_min_level) < 0) goto bad; break;
        case O_HELP: fputs(usage, stdout); return 0;
        case O_VERSION: puts("llamalb-watcher " LLAMALB_VERSION); return 0;
        default:
        bad:
            fprintf(stderr, "llamalb-watcher: bad option %s%s%s (see --help)\n", argv[optind - 1],
                    optarg ? " " : "", optarg ? optarg : "");
            return 2;
        }
    }
    if (optind < argc || (nlb == 0 && lb_service == NULL)) {
        fprintf(stderr, "llamalb-watcher: give --lb URL or --lb-service NS/NAME (see --help)\n");
        return 2;
    }
    if (stall < 0)
        stall = (wtimeout + 5) * 1000;

    /* The API server. */
    int r;
    const char *in_cluster = getenv("KUBERNETES_SERVICE_HOST");
    if (kubeconfig == NULL && in_cluster != NULL && *in_cluster)
        r = k8s_config_incluster(&w.kc, sa_dir, err, sizeof(err));
    else
        r = k8s_config_kubeconfig(&w.kc, kubeconfig, context, err, sizeof(err));
    if (r < 0) {
        fprintf(stderr, "llamalb-watcher: %s\n", err);
        return 1;
    }
    char *token = NULL;
    if (token_file != NULL && (token = read_token(token_file)) == NULL) {
        fprintf(stderr, "llamalb-watcher: --admin-token-file %s: %s\n", token_file,
                strerror(errno));
        return 1;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "llamalb-watcher: curl_global_init failed\n");
        return 1;
    }
    srandom((unsigned)time(NULL) ^ (unsigned)getpid());
    w.multi = g_multi = curl_multi_init();
    xfer_init(w.multi);
    push_init(&w.push, pmode, token);
    free(token);
    w.push.debounce_ms = debounce;
    w.warned = json_object();
    w.dropped = json_object();
    w.drop_counts = json_object();
    model_state_init(&w.ms);

    /* One services reflector (and one slices reflector in endpoints mode) per
     * namespace, or one for all namespaces. */
    for (size_t i = 0; i < (nns ? nns : 1); i++) {
        const char *ns = nns ? namespaces[i] : NULL;
        w.refl[w.nrefl++] = add_refl(&w, "services", ns, selector);
        if (w.mc.mode == MODEL_ENDPOINTS)
            w.refl[w.nrefl++] = add_refl(&w, "endpointslices", ns, slice_sel);
    }
    if (lb_service != NULL) {
        const char *slash = strchr(lb_service, '/'), *colon = strrchr(lb_service, ':');
        w.lb_port = 8081;
        if (slash == NULL || slash == lb_service || (colon && colon < slash)) {
            fprintf(stderr, "llamalb-watcher: --lb-service wants NAMESPACE/NAME[:PORT]\n");
            return 2;
        }
        snprintf(w.lb_ns, sizeof(w.lb_ns), "%.*s", (int)(slash - lb_service), lb_service);
        snprintf(w.lb_name, sizeof(w.lb_name), "%.*s",
                 (int)(colon ? colon - slash - 1 : (long)strlen(slash + 1)), slash + 1);
        if (colon && (w.lb_port = atoi(colon + 1)) <= 0) {
            fprintf(stderr, "llamalb-watcher: --lb-service: bad port\n");
            return 2;
        }
        /* Only the EndpointSlice controller's slices of that Service: the
         * admin token goes to these addresses. The selector narrows the
         * watch; model_lb_urls() checks every slice again (ownerReferences
         * included), whatever the server sends. */
        char sel[400];
        snprintf(sel, sizeof(sel), MODEL_SLICE_SERVICE_LABEL "=%s," MODEL_SLICE_MANAGER_LABEL
                 "=" MODEL_SLICE_CONTROLLER, w.lb_name);
        w.lbrefl = add_refl(&w, "endpointslices", w.lb_ns, sel);
    } else {
        json_t *urls = json_array();
        for (size_t i = 0; i < nlb; i++)
            json_array_append_new(urls, json_string(lbs[i]));
        push_set_targets(&w.push, urls);
        json_decref(urls);
    }
    for (size_t i = 0; i <= w.nrefl; i++) {
        struct k8s_reflector *rf = i < w.nrefl ? w.refl[i] : w.lbrefl;
        if (rf == NULL)
            continue;
        rf->timeout_s = (int)wtimeout;
        rf->stall_ms = stall;
        rf->max_line = (size_t)maxline;
        rf->page_limit = (int)page;
        rf->max_items = (size_t)maxitems;
        rf->max_pages = (int)maxpages;
        if (rf != w.lbrefl) {
            rf->on_change = on_change;
            rf->change_data = &w;
        }
        rf->backoff.min_ms = bmin;
        rf->backoff.max_ms = bmax;
    }

    char bound[NET_ADDRSTR_LEN];
    if (serve_listen(&w.srv, listen, route, &w, bound, sizeof(bound), err, sizeof(err)) < 0) {
        fprintf(stderr, "llamalb-watcher: %s\n", err);
        return 1;
    }
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    log_info("watching %s (%s mode, selector %s) at %s; %s", nns ? "some namespaces" :
             "all namespaces", w.mc.mode == MODEL_SERVICE ? "service" : "endpoints", selector,
             w.kc.server, pmode == PUSH_PUT ? "PUT /api/services" : "register/unregister");
    printf("listening on %s\n", bound);
    fflush(stdout);

    int64_t now = k8s_now_ms();
    w.next_resync = now + w.resync_ms;
    w.next_full = now + w.full_ms;
    while (!g_stop) {
        now = k8s_now_ms();
        int64_t next = now + 1000;
        bool changed = false;
        for (size_t i = 0; i <= w.nrefl; i++) {
            struct k8s_reflector *rf = i < w.nrefl ? w.refl[i] : w.lbrefl;
            if (rf == NULL)
                continue;
            next = MIN(next, k8s_reflector_tick(rf, now));
            if (rf->changed && rf != w.lbrefl)
                changed = true;
        }
        if (w.lbrefl && w.lbrefl->changed) {
            w.lbrefl->changed = false;
            json_t *urls = model_lb_urls(w.lbrefl->items, w.lb_ns, w.lb_name, w.lb_port);
            push_set_targets(&w.push, urls);
            json_decref(urls);
        }
        if (all_synced(&w)) {
            if (!w.ready)
                log_info("initial lists complete");
            w.ready = true;
            if (changed) {
                for (size_t i = 0; i < w.nrefl; i++)
                    w.refl[i]->changed = false;
                recompute(&w, now);
            }
        }
        if (now >= w.next_resync) {
            w.next_resync = now + w.resync_ms;
            push_resync(&w.push);
        }
        if (now >= w.next_full) {
            w.next_full = now + w.full_ms;
            log_info("full resync: relisting and pushing everything again");
            for (size_t i = 0; i <= w.nrefl; i++) {
                struct k8s_reflector *rf = i < w.nrefl ? w.refl[i] : w.lbrefl;
                if (rf)
                    k8s_reflector_relist(rf);
            }
            push_repush(&w.push, now);
        }
        next = MIN(next, push_tick(&w.push, now));
        next = MIN(next, MIN(w.next_resync, w.next_full));

        struct curl_waitfd fds[1 + SERVE_MAX_CONNS];
        unsigned nfds = serve_fds(&w.srv, fds);
        int timeout = (int)MAX(0, MIN(next - now, 1000));
        int numfds = 0, running = 0;
        curl_multi_poll(w.multi, fds, nfds, timeout, &numfds);
        curl_multi_perform(w.multi, &running);
        xfer_dispatch();
        serve_handle(&w.srv, fds, nfds, k8s_now_ms());
    }
    log_info("stopping");
    for (size_t i = 0; i < w.nrefl; i++)
        k8s_reflector_free(w.refl[i]);
    k8s_reflector_free(w.lbrefl);
    push_deinit(&w.push);
    serve_close(&w.srv);
    json_decref(w.warned);
    json_decref(w.dropped);
    json_decref(w.drop_counts);
    model_state_deinit(&w.ms);
    k8s_config_deinit(&w.kc);
    curl_multi_cleanup(w.multi);
    curl_global_cleanup();
    return 0;
}
