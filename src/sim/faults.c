/* SPDX-License-Identifier: MIT
 * Fault specs: the comma-separated lists of --fault (every request) and of
 * the X-Sim-Fault request header (one request), parsed into a struct
 * sim_fault. What each item does is in docs/sim.md, Faults. */

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "http1.h"
#include "sim.h"
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
