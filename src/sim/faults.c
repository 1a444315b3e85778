/* SPDX-License-Identifier: MIT
 * Injected faults: the comma-separated specs of --fault (every request) and
 * of the X-Sim-Fault request header (one request), parsed into a struct
 * sim_fault, and what those faults do to a request's answer (docs/sim.md,
 * Faults). The instance-only items act elsewhere: refuse when server.c
 * binds, unhealthy-for in sim_fault_answer(). */

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "http1.h"
#include "server.h"
#include "util.h"

void sim_fault_init(struct sim_fault *f)
{
    memset(f, 0, sizeof(*f));
    f->close_after = -1;
    f->stall_after = -1;
}

static bool item_is(struct slice it, const char *name, struct slice *val)
{
    size_t n = strlen(name);
    if (it.len < n || memcmp(it.p, name, n) != 0)
        return false;
    if (it.len == n) {
        *val = slice_make(NULL, 0);
        return true;
    }
    if (it.p[n] != '=')
        return false;
    *val = slice_make(it.p + n + 1, it.len - n - 1);
    return true;
}

int sim_fault_parse(struct sim_fault *f, struct slice spec, bool instance, char *err,
                    size_t errlen)
{
    size_t i = 0;
    while (i <= spec.len) {
        size_t j = i;
        while (j < spec.len && spec.p[j] != ',')
            j++;
        struct slice it = slice_trim(slice_make(spec.p + i, j - i)), v;
        uint64_t u;
        char tmp[32];
        i = j + 1;
        if (it.len == 0)
            continue;
        bool num = false, dur = false;
        int *dst = NULL;
        if (item_is(it, "status", &v)) {
            num = true;
            dst = &f->status;
        } else if (item_is(it, "close-after", &v)) {
            num = true;
            dst = &f->close_after;
        } else if (item_is(it, "stall-after", &v)) {
            num = true;
            dst = &f->stall_after;
        } else if (item_is(it, "slow-headers", &v)) {
            dur = true;
        } else if (item_is(it, "unhealthy-for", &v) && instance) {
            dur = true;
        } else if (item_is(it, "hang", &v) && v.p == NULL) {
            f->hang = true;
            continue;
        } else if (item_is(it, "garbage", &v) && v.p == NULL) {
            f->garbage = true;
            continue;
        } else if (item_is(it, "reset", &v) && v.p == NULL) {
            f->reset = true;
            continue;
        } else if (item_is(it, "refuse", &v) && v.p == NULL && instance) {
            f->refuse = true;
            continue;
        } else {
            snprintf(err, errlen, "unknown fault '%.*s'", (int)MIN(it.len, 40), it.p);
            return -EINVAL;
        }
        if (v.p == NULL || v.len == 0 || v.len >= sizeof(tmp)) {
            snprintf(err, errlen, "fault '%.*s' needs a value", (int)MIN(it.len, 40), it.p);
            return -EINVAL;
        }
        if (num) {
            if (util_parse_u64(v.p, v.len, 0, dst == &f->status ? 599 : 1000000, &u) != 0 ||
                (dst == &f->status && u < 100)) {
                snprintf(err, errlen, "bad value in fault '%.*s'", (int)MIN(it.len, 40), it.p);
                return -EINVAL;
            }
            *dst = (int)u;
        } else if (dur) {
            int64_t ms;
            memcpy(tmp, v.p, v.len);
            tmp[v.len] = '\0';
            if (util_parse_duration_ms(tmp, 1, &ms) != 0 || ms < 0 || ms > 86400000) {
                snprintf(err, errlen, "bad duration in fault '%.*s'", (int)MIN(it.len, 40), it.p);
                return -EINVAL;
            }
            if (it.p[0] == 's')
                f->slow_headers = (int)ms;
            else
                f->unhealthy_ms = ms;
        }
    }
    return 0;
}

int sim_fault_from_headers(struct sim_fault *f, const struct sim_fault *inst,
                           const struct http1_msg *msg, char *err, size_t errlen)
{
    *f = *inst;
    const struct http1_header *h = http1_find(msg, "x-sim-fault");
    if (h == NULL)
        return 0;
    return sim_fault_parse(f, h->value, false, err, errlen);
}

/* ------------------------------------------------------------ effects */

#define OUT_LIT(b, s) buf_append((b), (s), sizeof(s) - 1)

bool sim_fault_answer(struct sim_conn *c)
{
    const struct sim_fault *f = &c->fault;
    if (c->fault_bad) {
        sim_reply_textf(c, 400, "400 Bad Request: X-Sim-Fault: %s", c->fault_err);
    } else if (f->hang) {
        return true; /* BUSY forever: only the client's close ends it */
    } else if (f->garbage) {
        OUT_LIT(&c->out, "SSH-2.0-OpenSSH_9.2 this is not HTTP\r\n\r\n");
        c->close_after_write = true;
    } else if (f->reset) {
        sim_reply_status(c, 200);
        c->close_after_write = true;
        c->rst_after_write = true;
    } else if (sim_srv.cfg->fault.unhealthy_ms > 0 &&
               ev_now(sim_srv.loop) - sim_srv.start_ms < sim_srv.cfg->fault.unhealthy_ms) {
        static const char t[] = "503 Service Unavailable: the simulated server is not ready";
        sim_reply_text(c, 503, t, sizeof(t) - 1);
    } else if (f->status == 500) {
        sim_reply_textf(c, 500, "500 Internal Server Error: Failed to get chat "
                                "completions. Reason: simulated fault");
    } else if (f->status > 0) {
        sim_reply_textf(c, f->status, "%d %s: simulated fault", f->status,
                        sim_reply_reason(f->status));
    } else {
        return false;
    }
    sim_conn_request_done(c);
    return true;
}

bool sim_fault_stream(struct sim_conn *c)
{
    if (c->fault.close_after >= 0 && c->events >= (unsigned)c->fault.close_after) {
        sim_conn_flush(c);
        sim_conn_close(c);
        return true;
    }
    if (c->fault.stall_after >= 0 && c->events >= (unsigned)c->fault.stall_after) {
        c->g.stalled = true;
        sim_conn_flush(c);
        return true;
    }
    return false;
}

bool sim_fault_finish(struct sim_conn *c)
{
    if (c->fault.close_after == 0) {
        sim_slot_release(&sim_srv.sched, &c->g.slot);
        sim_conn_close(c);
        return true;
    }
    if (c->fault.stall_after == 0) {
        /* Never answers; keeps its slot like a hung generation, but lets the
         * rest of the server run. */
        c->g.stalled = true;
        sim_slot_unfreeze(&sim_srv.sched, &c->g.slot);
        return true;
    }
    return false;
}
