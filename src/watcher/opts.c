/* SPDX-License-Identifier: MIT
 * The watcher's command line (see opts.h): flag table, parsing, checks,
 * defaults, --help. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "model.h"
#include "opts.h"
#include "push.h"
#include "util.h"

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
    "  --follow-port PORT         with --lb-service: choose the active replica, the others\n"
    "                             forward to it at this public port (PUT /api/role; 0 = off)\n"
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

/* DUR: a number with ms, s or m; a plain number is seconds. Returns 0 or
 * -EINVAL (negative, empty, another unit). */
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

static void set_defaults(struct opts *o)
{
    memset(o, 0, sizeof(*o));
    o->sa_dir = "/var/run/secrets/kubernetes.io/serviceaccount";
    o->selector = "llamaedge/target=true";
    o->slice_sel = MODEL_SLICE_SERVICE_LABEL;
    o->mc = (struct model_cfg){.mode = MODEL_ENDPOINTS, .weight_key = "llamaedge/weight",
                               .models_key = "llamaedge/models",
                               .inflight_key = "llamaedge/max-inflight",
                               .port_key = "llamaedge/port", .allow = o->allow};
    o->push = PUSH_PUT;
    o->resync_ms = 60000;
    o->full_ms = 300000;
    o->debounce_ms = 50;
    o->watch_timeout_s = 290;
    o->stall_ms = -1; /* watch timeout + 5 s, once the timeout is known */
    o->max_line = 1 << 20;
    o->page_limit = 500;
    o->max_items = MODEL_MAX_BACKENDS;
    o->max_pages = 0;
    o->backoff_min_ms = 800;
    o->backoff_max_ms = 30000;
    o->listen = "0.0.0.0:8090";
    o->log_level = LOG_INFO;
}

enum {
    O_KUBECONFIG = 256, O_CONTEXT, O_SADIR, O_SEL, O_NS, O_MODE, O_SLICESEL, O_WANN, O_MANN,
    O_IANN, O_PANN, O_LB, O_LBSVC, O_PUSH, O_TOKEN, O_RESYNC, O_FULL, O_DEBOUNCE, O_WTIMEOUT,
    O_STALL, O_MAXLINE, O_PAGE, O_BMIN, O_BMAX, O_LISTEN, O_LOGLEVEL, O_HELP, O_VERSION,
    O_ALLOW, O_MAXITEMS, O_MAXPAGES, O_FOLLOWPORT,
};

/* The flag table: name, takes a value, -, the switch case below. */
static const struct option flags[] = {
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
    {"follow-port", 1, 0, O_FOLLOWPORT},
    {0, 0, 0, 0}};

/* One switch over the flag table: each case stores a value or refuses it. */
int opts_parse(struct opts *o, int argc, char **argv)
{
    int c;

    set_defaults(o);
    optind = 0; /* glibc: restart the scan (the first call starts at argv[1] all the same) */
    while ((c = getopt_long(argc, argv, "", flags, NULL)) != -1) {
        int64_t d;
        switch (c) {
        case O_KUBECONFIG: o->kubeconfig = optarg; break;
        case O_CONTEXT: o->context = optarg; break;
        case O_SADIR: o->sa_dir = optarg; break;
        case O_SEL: o->selector = optarg; break;
        case O_SLICESEL: o->slice_sel = optarg; break;
        case O_NS:
            if (o->nns == OPTS_MAX_NAMESPACES) {
                fprintf(stderr, "llamalb-watcher: at most %d --namespace\n",
                        OPTS_MAX_NAMESPACES);
                return 2;
            }
            o->namespaces[o->nns++] = optarg;
            break;
        case O_MODE:
            if (strcmp(optarg, "endpoints") == 0)
                o->mc.mode = MODEL_ENDPOINTS;
            else if (strcmp(optarg, "service") == 0)
                o->mc.mode = MODEL_SERVICE;
            else
                goto bad;
            break;
        case O_WANN: o->mc.weight_key = optarg; break;
        case O_MANN: o->mc.models_key = optarg; break;
        case O_IANN: o->mc.inflight_key = optarg; break;
        case O_PANN: o->mc.port_key = optarg; break;
        case O_LB:
            if (o->nlb == ARRAY_SIZE(o->lbs) || strncmp(optarg, "http", 4) != 0)
                goto bad;
            o->lbs[o->nlb++] = optarg;
            break;
        case O_LBSVC: o->lb_service = optarg; break;
        case O_PUSH:
            if (strcmp(optarg, "put") == 0)
                o->push = PUSH_PUT;
            else if (strcmp(optarg, "register") == 0)
                o->push = PUSH_REGISTER;
            else
                goto bad;
            break;
        case O_TOKEN: o->token_file = optarg; break;
        case O_RESYNC: if (parse_dur(optarg, &o->resync_ms) < 0 || o->resync_ms < 100) goto bad; break;
        case O_FULL: if (parse_dur(optarg, &o->full_ms) < 0 || o->full_ms < 1000) goto bad; break;
        case O_DEBOUNCE: if (parse_dur(optarg, &o->debounce_ms) < 0 || o->debounce_ms > 900) goto bad; break;
        case O_STALL: if (parse_dur(optarg, &o->stall_ms) < 0 || o->stall_ms < 100) goto bad; break;
        case O_BMIN: if (parse_dur(optarg, &d) < 0 || d < 10) goto bad; o->backoff_min_ms = d; break;
        case O_BMAX: if (parse_dur(optarg, &d) < 0 || d < 10) goto bad; o->backoff_max_ms = d; break;
        case O_WTIMEOUT:
            o->watch_timeout_s = strtol(optarg, NULL, 10);
            if (o->watch_timeout_s < 1 || o->watch_timeout_s >= 295)
                goto bad;
            break;
        case O_MAXLINE:
            o->max_line = strtol(optarg, NULL, 10);
            if (o->max_line < 1024)
                goto bad;
            break;
        case O_FOLLOWPORT: /* replicas (role.h) */
            o->follow_port = (int)strtol(optarg, NULL, 10);
            if (o->follow_port < 0 || o->follow_port > 65535)
                goto bad;
            break;
        case O_PAGE:
            o->page_limit = strtol(optarg, NULL, 10);
            if (o->page_limit < 1 || o->page_limit > 10000)
                goto bad;
            break;
        case O_ALLOW:
            if (o->mc.nallow == OPTS_MAX_ALLOW ||
                model_parse_cidr(optarg, &o->allow[o->mc.nallow]) < 0)
                goto bad;
            o->mc.nallow++;
            break;
        case O_MAXITEMS:
            o->max_items = strtol(optarg, NULL, 10);
            if (o->max_items < 1 || o->max_items > 10000000)
                goto bad;
            break;
        case O_MAXPAGES:
            o->max_pages = strtol(optarg, NULL, 10);
            if (o->max_pages < 1 || o->max_pages > 1000000)
                goto bad;
            break;
        case O_LISTEN: o->listen = optarg; break;
        case O_LOGLEVEL: if (log_parse_level(optarg, &o->log_level) < 0) goto bad; break;
        case O_HELP: fputs(usage, stdout); return 0;
        case O_VERSION: puts("llamalb-watcher " LLAMALB_VERSION); return 0;
        default:
        bad:
            fprintf(stderr, "llamalb-watcher: bad option %s%s%s (see --help)\n", argv[optind - 1],
                    optarg ? " " : "", optarg ? optarg : "");
            return 2;
        }
    }
    if (optind < argc || (o->nlb == 0 && o->lb_service == NULL)) {
        fprintf(stderr, "llamalb-watcher: give --lb URL or --lb-service NS/NAME (see --help)\n");
        return 2;
    }
    if (o->stall_ms < 0)
        o->stall_ms = (o->watch_timeout_s + 5) * 1000;
    return OPTS_RUN;
}

int opts_lb_service(const char *arg, char ns[254], char name[254], int *port, const char **err)
{
    const char *slash = strchr(arg, '/'), *colon = strrchr(arg, ':');
    *port = 8081;
    if (slash == NULL || slash == arg || (colon && colon < slash)) {
        *err = "--lb-service wants NAMESPACE/NAME[:PORT]";
        return -1;
    }
    snprintf(ns, 254, "%.*s", (int)(slash - arg), arg);
    snprintf(name, 254, "%.*s", (int)(colon ? colon - slash - 1 : (long)strlen(slash + 1)),
             slash + 1);
    if (colon && (*port = atoi(colon + 1)) <= 0) {
        *err = "--lb-service: bad port";
        return -1;
    }
    return 0;
}
