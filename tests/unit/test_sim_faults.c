/* SPDX-License-Identifier: MIT
 * Unit tests of faults.c: fault specs from --fault (instance items allowed)
 * and from the X-Sim-Fault request header (added to the instance's), and the
 * answers the request-level faults put in place of the real one. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "../tap.h"
#include "http1.h"
#include "../../src/sim/server.h"

static void test_faults(void)
{
    struct sim_fault f;
    char err[128];
    static const struct {
        const char *spec;
        bool instance;
        int rc;
        int line;
    } cases[] = {
        {"status=503", false, 0, __LINE__},
        {"close-after=3, stall-after=2", false, 0, __LINE__},
        {"hang,garbage,reset", false, 0, __LINE__},
        {"slow-headers=20ms", false, 0, __LINE__},
        {"refuse", true, 0, __LINE__},
        {"refuse", false, -EINVAL, __LINE__},
        {"unhealthy-for=2s", true, 0, __LINE__},
        {"unhealthy-for=2s", false, -EINVAL, __LINE__},
        {"status=99", false, -EINVAL, __LINE__},
        {"status=", false, -EINVAL, __LINE__},
        {"status", false, -EINVAL, __LINE__},
        {"hang=1", false, -EINVAL, __LINE__},
        {"close-after=x", false, -EINVAL, __LINE__},
        {"bogus", false, -EINVAL, __LINE__},
        {"", false, 0, __LINE__},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        sim_fault_init(&f);
        err[0] = '\0';
        int rc = sim_fault_parse(&f, slice_cstr(cases[i].spec), cases[i].instance, err,
                                 sizeof(err));
        is_int(rc, cases[i].rc, "line %d: fault '%s' (%s)", cases[i].line, cases[i].spec, err);
    }
    sim_fault_init(&f);
    sim_fault_parse(&f, slice_cstr("close-after=3, stall-after=2,slow-headers=1s"), false, err,
                    sizeof(err));
    ok(f.close_after == 3 && f.stall_after == 2 && f.slow_headers == 1000 && f.status == 0,
       "fault values");
    sim_fault_init(&f);
    sim_fault_parse(&f, slice_cstr("unhealthy-for=1500ms,refuse"), true, err, sizeof(err));
    ok(f.unhealthy_ms == 1500 && f.refuse, "instance fault values");
}

static void test_accumulate(void)
{
    struct sim_fault f;
    char err[128];
    /* Repeated --fault flags add up: each parse adds to what <f> holds. */
    sim_fault_init(&f);
    is_int(sim_fault_parse(&f, slice_cstr("status=503"), true, err, sizeof(err)), 0, "flag 1");
    is_int(sim_fault_parse(&f, slice_cstr("hang"), true, err, sizeof(err)), 0, "flag 2");
    ok(f.status == 503 && f.hang && f.close_after == -1 && f.stall_after == -1,
       "two flags add up, unset counts stay -1");
    is_int(sim_fault_parse(&f, slice_cstr("status=500"), true, err, sizeof(err)), 0, "flag 3");
    is_int(f.status, 500, "a later value replaces an earlier one");
    sim_fault_parse(&f, slice_cstr("nope"), true, err, sizeof(err));
    ok(strcmp(err, "unknown fault 'nope'") == 0, "unknown item text: %s", err);
    sim_fault_parse(&f, slice_cstr("stall-after"), true, err, sizeof(err));
    ok(strcmp(err, "fault 'stall-after' needs a value") == 0, "missing value text: %s", err);
    sim_fault_parse(&f, slice_cstr("slow-headers=soon"), true, err, sizeof(err));
    ok(strcmp(err, "bad duration in fault 'slow-headers=soon'") == 0, "bad duration text: %s",
       err);
    sim_fault_parse(&f, slice_cstr("close-after=1000001"), true, err, sizeof(err));
    ok(strcmp(err, "bad value in fault 'close-after=1000001'") == 0, "out of range: %s", err);
}

/* Parses <head> and returns the faults of that request on top of <inst>. */
static int from_head(const char *head, const struct sim_fault *inst, struct sim_fault *f,
                     char *err, size_t errlen)
{
    struct http1_msg m;
    memset(&m, 0, sizeof(m));
    int r = http1_parse_request(head, strlen(head), &m, &http1_default_limits);
    if (!ok(r == (int)strlen(head), "head parses"))
        return -1;
    err[0] = '\0';
    int rc = sim_fault_from_headers(f, inst, &m, err, errlen);
    http1_msg_reset(&m);
    return rc;
}

static void test_headers(void)
{
    struct sim_fault inst, f;
    char err[128];
    sim_fault_init(&inst);
    sim_fault_parse(&inst, slice_cstr("slow-headers=5,unhealthy-for=1s"), true, err,
                    sizeof(err));

    is_int(from_head("GET / HTTP/1.1\r\nHost: a\r\n\r\n", &inst, &f, err, sizeof(err)), 0,
           "no header");
    ok(memcmp(&f, &inst, sizeof(f)) == 0, "no header: the instance's faults");

    is_int(from_head("GET / HTTP/1.1\r\nHost: a\r\nX-Sim-Fault: status=503, close-after=2\r\n\r\n",
                     &inst, &f, err, sizeof(err)),
           0, "header parses");
    ok(f.status == 503 && f.close_after == 2 && f.slow_headers == 5 && f.unhealthy_ms == 1000,
       "header items added to the instance's");
    ok(inst.status == 0 && inst.close_after == -1, "instance faults untouched");

    is_int(from_head("GET / HTTP/1.1\r\nHost: a\r\nx-sim-fault: hang\r\n\r\n", &inst, &f, err,
                     sizeof(err)),
           0, "lowercase header name");
    ok(f.hang, "hang from the header");

    is_int(from_head("GET / HTTP/1.1\r\nHost: a\r\nX-Sim-Fault: refuse\r\n\r\n", &inst, &f, err,
                     sizeof(err)),
           -EINVAL, "instance-only item refused in the header");
    ok(strcmp(err, "unknown fault 'refuse'") == 0, "its error text: %s", err);
    is_int(from_head("GET / HTTP/1.1\r\nHost: a\r\nX-Sim-Fault: unhealthy-for=1s\r\n\r\n", &inst, &f,
                     err, sizeof(err)),
           -EINVAL, "unhealthy-for refused in the header");
    is_int(from_head("GET / HTTP/1.1\r\nHost: a\r\nX-Sim-Fault: bogus\r\n\r\n", &inst, &f, err,
                     sizeof(err)),
           -EINVAL, "unknown item in the header");
}

/* Runs sim_fault_answer() on a fresh connection with faults <spec>; returns
 * its result, the output (status line and body, headers dropped) in <got>. */
static bool answer(const char *spec, char *got, size_t gotlen, struct sim_conn *c)
{
    char err[128];
    memset(c, 0, sizeof(*c));
    c->minor = 1;
    c->keep_alive = true;
    sim_fault_init(&c->fault);
    if (sim_fault_parse(&c->fault, slice_cstr(spec), false, err, sizeof(err)) != 0) {
        c->fault_bad = true;
        snprintf(c->fault_err, sizeof(c->fault_err), "%s", err);
    }
    bool r = sim_fault_answer(c);
    const char *o = c->out.area ? c->out.area + c->out.off : "";
    const char *eol = memchr(o, '\r', c->out.len), *body = memmem(o, c->out.len, "\r\n\r\n", 4);
    size_t n = eol ? (size_t)(eol - o) : c->out.len;
    snprintf(got, gotlen, "%.*s|%.*s", (int)n, o,
             body ? (int)(c->out.len - (size_t)(body + 4 - o)) : 0, body ? body + 4 : "");
    buf_free(&c->out);
    return r;
}

static void test_answers(void)
{
    static struct sim_config cfg;
    struct sim_conn c;
    char got[512];
    sim_config_init(&cfg);
    sim_srv.cfg = &cfg;

    ok(!answer("", got, sizeof(got), &c) && c.out.len == 0, "no fault: not answered");
    ok(!answer("close-after=1,stall-after=2,slow-headers=5", got, sizeof(got), &c),
       "stream and head faults do not answer the request");
    ok(answer("status=503", got, sizeof(got), &c), "status answers");
    ok(strcmp(got, "HTTP/1.1 503 Service Unavailable|503 Service Unavailable: simulated "
                   "fault") == 0,
       "status=503 text: %s", got);
    answer("status=500", got, sizeof(got), &c);
    ok(strcmp(got, "HTTP/1.1 500 Internal Server Error|500 Internal Server Error: Failed to "
                   "get chat completions. Reason: simulated fault") == 0,
       "status=500 is the real chat error: %s", got);
    answer("status=418", got, sizeof(got), &c);
    ok(strcmp(got, "HTTP/1.1 418 <unknown status code>|418 <unknown status code>: simulated "
                   "fault") == 0,
       "unknown status: hyper's phrase: %s", got);
    ok(answer("hang", got, sizeof(got), &c) && c.out.len == 0, "hang takes the request, no bytes");
    ok(answer("garbage", got, sizeof(got), &c) && c.close_after_write &&
           strcmp(got, "SSH-2.0-OpenSSH_9.2 this is not HTTP|") == 0,
       "garbage: not a status line, then close: %s", got);
    ok(answer("reset", got, sizeof(got), &c) && c.rst_after_write && c.close_after_write &&
           strcmp(got, "HTTP/1.1 200 OK|") == 0,
       "reset: a status line, then RST");
    ok(answer("bogus", got, sizeof(got), &c) &&
           strcmp(got, "HTTP/1.1 400 Bad Request|400 Bad Request: X-Sim-Fault: unknown fault "
                       "'bogus'") == 0,
       "a bad X-Sim-Fault is a 400: %s", got);
    ok(answer("hang,status=503", got, sizeof(got), &c) && c.out.len == 0,
       "hang wins over status");
    sim_srv.cfg = NULL;
}

int main(void)
{
    test_faults();
    test_accumulate();
    test_headers();
    test_answers();
    buf_cache_drain();
    return done_testing();
}
