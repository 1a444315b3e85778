/* SPDX-License-Identifier: MIT
 * The watcher's command line (src/watcher/opts.c, included so parse_dur()
 * is reachable; model.c for --backend-allow): defaults, each flag's range,
 * durations, the derived stall timeout, --lb-service splitting. */
#include "../../src/watcher/model.c"
#include "../../src/watcher/opts.c"

#include <fcntl.h>
#include <unistd.h>

#include "../tap.h"

/* Runs opts_parse() on a NULL-terminated list of arguments after argv[0].
 * stdout and stderr go to /dev/null meanwhile (--help, error messages), so
 * they do not mix with the TAP stream. */
static int parse(struct opts *o, ...)
{
    char *argv[80];
    int argc = 0;
    va_list ap;
    argv[argc++] = "llamalb-watcher";
    va_start(ap, o);
    for (char *a; argc < 79 && (a = va_arg(ap, char *)) != NULL;)
        argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;
    fflush(stdout);
    int out = dup(1), err = dup(2), null = open("/dev/null", O_WRONLY);
    dup2(null, 1);
    dup2(null, 2);
    int rc = opts_parse(o, argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(out, 1);
    dup2(err, 2);
    close(out);
    close(err);
    close(null);
    return rc;
}

static void test_defaults(void)
{
    static struct opts o;
    is_int(parse(&o, "--lb", "http://127.0.0.1:8081", NULL), OPTS_RUN, "one --lb is enough");
    is_int(o.nlb, 1, "one balancer");
    ok(strcmp(o.lbs[0], "http://127.0.0.1:8081") == 0, "its URL as given");
    ok(strcmp(o.selector, "llamaedge/target=true") == 0, "default label selector");
    ok(strcmp(o.slice_sel, "kubernetes.io/service-name") == 0, "default slice selector");
    ok(strcmp(o.sa_dir, "/var/run/secrets/kubernetes.io/serviceaccount") == 0, "default sa dir");
    ok(o.kubeconfig == NULL && o.context == NULL && o.token_file == NULL, "no files by default");
    is_int(o.mc.mode, MODEL_ENDPOINTS, "endpoints mode by default");
    ok(strcmp(o.mc.weight_key, "llamaedge/weight") == 0 &&
           strcmp(o.mc.models_key, "llamaedge/models") == 0 &&
           strcmp(o.mc.inflight_key, "llamaedge/max-inflight") == 0 &&
           strcmp(o.mc.port_key, "llamaedge/port") == 0,
       "default annotation keys");
    ok(o.mc.allow == o.allow && o.mc.nallow == 0, "no --backend-allow ranges");
    is_int(o.push, PUSH_PUT, "PUT by default");
    is_int(o.resync_ms, 60000, "resync 60 s");
    is_int(o.full_ms, 300000, "full resync 300 s");
    is_int(o.debounce_ms, 50, "debounce 50 ms");
    is_int(o.watch_timeout_s, 290, "watch timeout 290 s");
    is_int(o.stall_ms, 295000, "stall timeout: watch timeout + 5 s");
    is_int(o.max_line, 1048576, "max line 1 MiB");
    is_int(o.page_limit, 500, "pages of 500");
    is_int(o.max_items, MODEL_MAX_BACKENDS, "max list items: the balancer's limit");
    is_int(o.max_pages, 0, "max list pages: the reflector's default");
    is_int(o.backoff_min_ms, 800, "backoff from 800 ms");
    is_int(o.backoff_max_ms, 30000, "backoff to 30 s");
    ok(strcmp(o.listen, "0.0.0.0:8090") == 0, "listen 0.0.0.0:8090");
    is_int(o.log_level, LOG_INFO, "log level info");
}

static void test_required_and_bad(void)
{
    static struct opts o;
    is_int(parse(&o, NULL), 2, "neither --lb nor --lb-service: exit 2");
    is_int(parse(&o, "--lb-service", "ns/lb", NULL), OPTS_RUN, "--lb-service alone is enough");
    is_int(parse(&o, "--lb", "ftp://x", NULL), 2, "--lb must be http(s)");
    is_int(parse(&o, "--lb", "http://x", "extra", NULL), 2, "an operand is refused");
    is_int(parse(&o, "--lb", "http://x", "--nope", NULL), 2, "an unknown flag is refused");
    is_int(parse(&o, "--lb", "http://x", "--mode", "pods", NULL), 2, "unknown --mode");
    is_int(parse(&o, "--lb", "http://x", "--push", "patch", NULL), 2, "unknown --push");
    is_int(parse(&o, "--lb", "http://x", "--log-level", "loud", NULL), 2, "unknown --log-level");
    is_int(parse(&o, "--help", NULL), 0, "--help: exit 0");
    is_int(parse(&o, "--version", NULL), 0, "--version: exit 0");
}

static void test_values(void)
{
    static struct opts o;
    int rc = parse(&o, "--lb", "http://a", "--lb", "https://b", "--mode", "service", "--push",
                   "register", "--namespace", "x", "--namespace", "y", "--label-selector", "app=1",
                   "--weight-annotation", "w", "--models-annotation", "m",
                   "--max-inflight-annotation", "i", "--port-annotation", "p", "--backend-allow",
                   "127.0.0.0/8", "--backend-allow", "::1", "--log-level", "debug", "--listen",
                   "127.0.0.1:0", "--admin-token-file", "/t", "--kubeconfig", "/k", "--context",
                   "c", "--sa-dir", "/sa", "--slice-selector", "s=1", NULL);
    is_int(rc, OPTS_RUN, "a full command line parses");
    is_int(o.nlb, 2, "two balancers");
    is_int(o.mc.mode, MODEL_SERVICE, "--mode service");
    is_int(o.push, PUSH_REGISTER, "--push register");
    is_int(o.nns, 2, "two namespaces");
    ok(strcmp(o.namespaces[1], "y") == 0, "in order");
    ok(strcmp(o.selector, "app=1") == 0 && strcmp(o.slice_sel, "s=1") == 0, "selectors");
    ok(strcmp(o.mc.weight_key, "w") == 0 && strcmp(o.mc.models_key, "m") == 0 &&
           strcmp(o.mc.inflight_key, "i") == 0 && strcmp(o.mc.port_key, "p") == 0,
       "annotation keys");
    is_int(o.mc.nallow, 2, "two allowed ranges");
    ok(o.mc.allow == o.allow && o.allow[0].family == AF_INET && o.allow[0].bits == 8 &&
           o.allow[1].family == AF_INET6 && o.allow[1].bits == 128,
       "ranges parsed into the opts");
    is_int(o.log_level, LOG_DEBUG, "--log-level debug");
    ok(strcmp(o.listen, "127.0.0.1:0") == 0 && strcmp(o.token_file, "/t") == 0 &&
           strcmp(o.kubeconfig, "/k") == 0 && strcmp(o.context, "c") == 0 &&
           strcmp(o.sa_dir, "/sa") == 0,
       "strings as given");
    is_int(parse(&o, "--lb", "http://a", "--backend-allow", "10.0.0.0/33", NULL), 2,
           "a bad --backend-allow range");

    const char *many[2 * OPTS_MAX_NAMESPACES + 8];
    size_t n = 0;
    many[n++] = "llamalb-watcher";
    many[n++] = "--lb";
    many[n++] = "http://a";
    for (int i = 0; i <= OPTS_MAX_NAMESPACES; i++) {
        many[n++] = "--namespace";
        many[n++] = "ns";
    }
    int out = dup(2), null = open("/dev/null", O_WRONLY);
    dup2(null, 2);
    rc = opts_parse(&o, (int)n, (char **)many);
    dup2(out, 2);
    close(out);
    close(null);
    is_int(rc, 2, "more than %d --namespace", OPTS_MAX_NAMESPACES);
}

static void test_durations_and_ranges(void)
{
    static struct opts o;
    int64_t ms = -1;
    ok(parse_dur("1500ms", &ms) == 0 && ms == 1500, "1500ms");
    ok(parse_dur("2s", &ms) == 0 && ms == 2000, "2s");
    ok(parse_dur("3", &ms) == 0 && ms == 3000, "a plain number is seconds");
    ok(parse_dur("1.5m", &ms) == 0 && ms == 90000, "1.5m");
    ok(parse_dur("1h", &ms) < 0, "no hours");
    ok(parse_dur("-1s", &ms) < 0, "not negative");
    ok(parse_dur("s", &ms) < 0, "a number is needed");

    parse(&o, "--lb", "http://a", "--watch-timeout", "100", NULL);
    is_int(o.stall_ms, 105000, "stall default follows --watch-timeout");
    parse(&o, "--lb", "http://a", "--watch-timeout", "100", "--stall-timeout", "2s", NULL);
    is_int(o.stall_ms, 2000, "--stall-timeout wins");
    is_int(parse(&o, "--lb", "http://a", "--watch-timeout", "294", NULL), OPTS_RUN, "294 s ok");
    is_int(parse(&o, "--lb", "http://a", "--watch-timeout", "295", NULL), 2, "295 s refused");
    is_int(parse(&o, "--lb", "http://a", "--watch-timeout", "0", NULL), 2, "0 s refused");
    is_int(parse(&o, "--lb", "http://a", "--resync", "99ms", NULL), 2, "resync under 100 ms");
    is_int(parse(&o, "--lb", "http://a", "--resync", "100ms", NULL), OPTS_RUN, "resync 100 ms");
    is_int(o.resync_ms, 100, "stored in ms");
    is_int(parse(&o, "--lb", "http://a", "--full-resync", "999ms", NULL), 2, "full under 1 s");
    is_int(parse(&o, "--lb", "http://a", "--debounce", "901ms", NULL), 2, "debounce over 900 ms");
    is_int(parse(&o, "--lb", "http://a", "--debounce", "0", NULL), OPTS_RUN, "debounce 0");
    is_int(o.debounce_ms, 0, "no debounce");
    is_int(parse(&o, "--lb", "http://a", "--stall-timeout", "99ms", NULL), 2, "stall < 100 ms");
    is_int(parse(&o, "--lb", "http://a", "--backoff-min", "9ms", NULL), 2, "backoff-min < 10 ms");
    is_int(parse(&o, "--lb", "http://a", "--backoff-min", "10ms", "--backoff-max", "2m", NULL),
           OPTS_RUN, "backoff bounds");
    ok(o.backoff_min_ms == 10 && o.backoff_max_ms == 120000, "stored in ms");
    is_int(parse(&o, "--lb", "http://a", "--max-line", "1023", NULL), 2, "max-line < 1024");
    is_int(parse(&o, "--lb", "http://a", "--page-limit", "10001", NULL), 2, "page > 10000");
    is_int(parse(&o, "--lb", "http://a", "--page-limit", "0", NULL), 2, "page 0");
    is_int(parse(&o, "--lb", "http://a", "--max-list-items", "0", NULL), 2, "max items 0");
    is_int(parse(&o, "--lb", "http://a", "--max-list-items", "10000001", NULL), 2,
           "max items over 10^7");
    is_int(parse(&o, "--lb", "http://a", "--max-list-pages", "0", NULL), 2, "max pages 0");
    is_int(parse(&o, "--lb", "http://a", "--max-list-pages", "7", "--max-list-items", "9", NULL),
           OPTS_RUN, "list bounds");
    ok(o.max_pages == 7 && o.max_items == 9, "stored");
}

static void test_lb_service(void)
{
    char ns[254], name[254];
    int port = 0;
    const char *err = NULL;
    ok(opts_lb_service("llamalb/lb", ns, name, &port, &err) == 0, "NS/NAME");
    ok(strcmp(ns, "llamalb") == 0 && strcmp(name, "lb") == 0 && port == 8081,
       "admin port 8081 by default");
    ok(opts_lb_service("a/b:9000", ns, name, &port, &err) == 0, "NS/NAME:PORT");
    ok(strcmp(ns, "a") == 0 && strcmp(name, "b") == 0 && port == 9000, "port taken");
    ok(opts_lb_service("lb", ns, name, &port, &err) < 0 && strstr(err, "NAMESPACE/NAME"),
       "no namespace");
    ok(opts_lb_service("/lb", ns, name, &port, &err) < 0, "empty namespace");
    ok(opts_lb_service("a:1/b", ns, name, &port, &err) < 0, "a colon before the slash");
    err = NULL;
    ok(opts_lb_service("a/b:0", ns, name, &port, &err) < 0 && strstr(err, "bad port"),
       "port 0");
    ok(opts_lb_service("a/b:x", ns, name, &port, &err) < 0, "port not a number");
    char longname[400];
    memset(longname, 'n', sizeof(longname));
    longname[0] = 'a';
    longname[1] = '/';
    longname[sizeof(longname) - 1] = '\0';
    ok(opts_lb_service(longname, ns, name, &port, &err) == 0 && strlen(name) == 253,
       "a long name is cut to 253 bytes");
}

int main(void)
{
    test_defaults();
    test_required_and_bad();
    test_values();
    test_durations_and_ranges();
    test_lb_service();
    return done_testing();
}
