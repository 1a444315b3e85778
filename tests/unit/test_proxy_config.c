/* SPDX-License-Identifier: MIT
 * config.c: flags and config file lines go through one option table;
 * defaults; units (durations, sizes); ranges; errors name the option, and a
 * config file's errors its file and line (what `llamalb -t` prints); flags
 * override the file; the admin token's length rules. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../tap.h"
#include "../../src/proxy/config.h"
#include "../../src/proxy/lb.h"

static char err[512];

/* Parses a NULL-terminated flag list into a fresh config. */
static int parse(struct cfg *c, const char *const *flags)
{
    char *argv[64];
    int argc = 0;
    argv[argc++] = (char *)"llamalb";
    for (; *flags != NULL; flags++)
        argv[argc++] = (char *)*flags;
    cfg_defaults(c);
    err[0] = '\0';
    return cfg_parse_args(c, argc, argv, err, sizeof(err));
}

static const char *write_file(const char *text)
{
    static char path[64];
    snprintf(path, sizeof(path), "/tmp/llamalb-test-config-%d.conf", (int)getpid());
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

static void test_defaults(void)
{
    struct cfg c;
    ok(parse(&c, (const char *[]){NULL}) == 0, "no flags: valid");
    ok(strcmp(c.listen, "0.0.0.0:8080") == 0 && strcmp(c.admin_listen, "127.0.0.1:8081") == 0,
       "default listeners");
    ok(c.policy == &lb_least, "default policy least");
    is_int(c.limits.max_body, 32u << 20, "default --max-body 32m");
    is_int(c.max_body_memory, 256u << 20, "default --max-body-memory 256m");
    is_int(c.body_deadline, 120000, "default --body-deadline 120s");
    is_int(c.admin_max_conns, 32, "default --admin-max-conns 32");
    is_int(c.slow_client_budget, 30000, "default --slow-client-budget 30s");
    is_int(c.default_max_inflight, 1, "one request at a time per backend by default");
    cfg_free(&c);
}

static void test_units(void)
{
    struct cfg c;
    ok(parse(&c, (const char *[]){"--queue-timeout", "1500ms", "--body-timeout=2m",
                                  "--max-body", "64k", "--max-body-memory", "1g", NULL}) == 0,
       "durations and sizes with units: %s", err);
    is_int(c.queue_timeout, 1500, "1500ms");
    is_int(c.body_timeout, 120000, "2m");
    is_int(c.limits.max_body, 65536, "64k");
    is_int(c.max_body_memory, 1ull << 30, "1g");
    cfg_free(&c);
    ok(parse(&c, (const char *[]){"--max-body", "0", NULL}) == 0 && c.limits.max_body == 0,
       "--max-body 0 (no per-request limit) is accepted");
    cfg_free(&c);
    ok(parse(&c, (const char *[]){"--header-timeout", "5", NULL}) == 0 &&
           c.header_timeout == 5000,
       "a bare duration is seconds");
    cfg_free(&c);
}

static void test_errors(void)
{
    struct cfg c;
    ok(parse(&c, (const char *[]){"--max-body-memory", "100k", NULL}) < 0 &&
           strstr(err, "max-body-memory") != NULL,
       "--max-body-memory under 1m refused, naming the option (%s)", err);
    cfg_free(&c);
    ok(parse(&c, (const char *[]){"--policy", "fastest", NULL}) < 0, "unknown policy refused");
    cfg_free(&c);
    ok(parse(&c, (const char *[]){"--workers", "1000", NULL}) < 0 && strstr(err, "workers"),
       "--workers out of range refused (%s)", err);
    cfg_free(&c);
    ok(parse(&c, (const char *[]){"--no-such-flag", NULL}) < 0 &&
           strstr(err, "unknown option '--no-such-flag'") != NULL,
       "unknown flag named (%s)", err);
    cfg_free(&c);
    ok(parse(&c, (const char *[]){"--queue-timeout", NULL}) < 0 && strstr(err, "needs a value"),
       "a flag without its value (%s)", err);
    cfg_free(&c);
    ok(parse(&c, (const char *[]){"--backend", "a=10.0.0.1:80", "--backend", "a=10.0.0.2:80",
                                  NULL}) < 0 &&
           strstr(err, "given twice") != NULL,
       "a backend given twice (%s)", err);
    cfg_free(&c);
    ok(parse(&c, (const char *[]){"--backend", "a=host.example:80", NULL}) < 0,
       "a backend with a host name is refused (no resolution on the request path)");
    cfg_free(&c);
}

static void test_file(void)
{
    struct cfg c;
    const char *path = write_file("# comment\n"
                                  "policy p2c\n"
                                  "\n"
                                  "queue-timeout 45s\n"
                                  "backend a=10.0.0.1:8080,weight=3,models=m1|m2\n"
                                  "model-alias small=m1\n");
    ok(parse(&c, (const char *[]){"-c", path, NULL}) == 0, "config file parses (%s)", err);
    ok(c.policy == &lb_p2c, "policy from the file");
    is_int(c.queue_timeout, 45000, "queue-timeout from the file");
    is_int(c.nbackends, 1, "one backend from the file");
    ok(c.nbackends == 1 && c.backends[0].weight == 3, "its weight");
    ok(strcmp(cfg_alias(&c, "small"), "m1") == 0, "alias from the file");
    ok(strcmp(cfg_alias(&c, "other"), "other") == 0, "no alias: the name itself");
    cfg_free(&c);

    ok(parse(&c, (const char *[]){"-c", path, "--queue-timeout", "5s", NULL}) == 0 &&
           c.queue_timeout == 5000,
       "a flag overrides the file");
    cfg_free(&c);

    path = write_file("policy least\n"
                      "queue-timeout 45s\n"
                      "queue-timeout forever\n");
    char want[128];
    snprintf(want, sizeof(want), "%s:3:", path);
    ok(parse(&c, (const char *[]){"-c", path, "-t", NULL}) < 0 && strstr(err, want) == err,
       "a bad line is reported as file:line (%s)", err);
    ok(c.check_only, "-t is seen even when the file fails");
    cfg_free(&c);

    path = write_file("listen 127.0.0.1:0\nnot-an-option 1\n");
    snprintf(want, sizeof(want), "%s:2:", path);
    ok(parse(&c, (const char *[]){"-c", path, NULL}) < 0 && strstr(err, want) == err,
       "an unknown option in the file: file:line (%s)", err);
    cfg_free(&c);
    ok(parse(&c, (const char *[]){"-c", "/nonexistent/llamalb.conf", NULL}) < 0 &&
           strstr(err, "/nonexistent/llamalb.conf") != NULL,
       "a missing file is named (%s)", err);
    cfg_free(&c);
    unlink(path);
}

static void test_token(void)
{
    struct cfg c;
    char path[64];
    snprintf(path, sizeof(path), "/tmp/llamalb-test-token-%d", (int)getpid());
    unsetenv("LLAMALB_ADMIN_TOKEN");
    cfg_defaults(&c);
    ok(cfg_load_token(&c, err, sizeof(err)) == 0 && c.admin_token[0] == '\0',
       "no token configured: none");
    setenv("LLAMALB_ADMIN_TOKEN", "short", 1);
    ok(cfg_load_token(&c, err, sizeof(err)) < 0 && strstr(err, "too short"),
       "a 5-byte token is refused (%s)", err);
    char big[300];
    memset(big, 'k', 255);
    big[255] = '\0';
    setenv("LLAMALB_ADMIN_TOKEN", big, 1);
    ok(cfg_load_token(&c, err, sizeof(err)) == 0 && strlen(c.admin_token) == 255,
       "a 255-byte token is taken whole");
    big[255] = 'k';
    big[256] = '\0';
    setenv("LLAMALB_ADMIN_TOKEN", big, 1);
    ok(cfg_load_token(&c, err, sizeof(err)) < 0 && strstr(err, "longer than 255"),
       "a 256-byte token is refused, not cut (%s)", err);
    unsetenv("LLAMALB_ADMIN_TOKEN");
    FILE *f = fopen(path, "w");
    fprintf(f, "%s\n", "0123456789abcdef0123");
    fclose(f);
    snprintf(c.admin_token_file, sizeof(c.admin_token_file), "%s", path);
    ok(cfg_load_token(&c, err, sizeof(err)) == 0 &&
           strcmp(c.admin_token, "0123456789abcdef0123") == 0,
       "a token file's trailing newline is trimmed");
    f = fopen(path, "w");
    for (int i = 0; i < 300; i++)
        fputc('z', f);
    fclose(f);
    ok(cfg_load_token(&c, err, sizeof(err)) < 0 && strstr(err, "longer than 255"),
       "a 300-byte token file is refused (%s)", err);
    unlink(path);
    cfg_free(&c);
}

/* --log-level is kept in the config and applied by the caller: a reload
 * that is refused later (another line invalid) leaves the level alone. */
static void test_log_level(void)
{
    struct cfg c;
    enum log_level before = log_min_level;
    ok(parse(&c, (const char *[]){"--log-level", "debug", NULL}) == 0, "--log-level debug: valid");
    ok(c.log_level == LOG_DEBUG, "kept in the config");
    ok(log_min_level == before, "the running level untouched by parsing");
    cfg_free(&c);
    ok(parse(&c, (const char *[]){"--log-level", "error", "--no-such-flag", NULL}) != 0,
       "a refused configuration with --log-level error");
    ok(log_min_level == before, "leaves the running level alone");
    cfg_free(&c);
    ok(parse(&c, (const char *[]){NULL}) == 0 && c.log_level == LOG_INFO, "default info");
    cfg_free(&c);
}

int main(void)
{
    test_defaults();
    test_units();
    test_errors();
    test_file();
    test_token();
    test_log_level();
    return done_testing();
}
