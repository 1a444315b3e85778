/* SPDX-License-Identifier: MIT
 * Health and live speed. Passive: every finished request tells whether its
 * backend answered; eject_after consecutive failures eject it for
 * eject_base_ms, doubling on repeats up to eject_max_ms. Active: a probe's
 * verdict (probe.c) clears an ejection or ejects at once, and its model
 * list replaces the probed one. A backend back from ejection, or new,
 * ramps its weight up over slow_start_ms. Speed: EWMAs of time to first
 * byte, time between streamed events and events per response, which the
 * "least" policy breaks ties with (lb.c). Ejection never empties the pool:
 * candidates() in reg_pick.c falls back to ejected backends. */
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "registry_int.h"
#include "util.h"

uint64_t reg_effective_weight(const struct registry *r, const struct backend *b, int64_t now)
{
    /* A share of the weight growing linearly from 10 % to 100 %. */
    uint64_t w = (uint64_t)b->spec.weight * 1000;
    if (r->slow_start_ms > 0 && now < b->ramp_start + r->slow_start_ms) {
        int64_t t = now > b->ramp_start ? now - b->ramp_start : 0;
        uint64_t permille = 100 + (uint64_t)(900 * t / r->slow_start_ms);
        w = w * permille / 1000;
    }
    return w ? w : 1;
}

static void ewma(double *v, double sample, unsigned samples)
{
    *v = samples == 0 ? sample : *v * 0.8 + sample * 0.2;
}

/* Ejects <b> from now on (doubling the last ejection's length, up to the
 * maximum) and returns for how long, in ms. Slow start begins when the
 * ejection ends. Lock held. */
static int64_t eject_locked(struct registry *r, struct backend *b, int64_t now)
{
    b->down_for = b->down_for ? MIN(b->down_for * 2, r->eject_max_ms) : r->eject_base_ms;
    b->down_until = now + b->down_for;
    b->ramp_start = b->down_until;
    b->consecutive_failures = 0;
    atomic_fetch_add(&b->stats.ejections, 1);
    return b->down_for;
}

/* What one finished (or given back) request says about <b>: its speed,
 * and its health. Returns the ejection's length in ms, or -1 when it
 * was not ejected. Lock held. */
static int64_t outcome_locked(struct registry *r, struct backend *b, const struct reg_outcome *o,
                              int64_t now)
{
    if (o->ttft_us > 0 && !o->failed) {
        ewma(&b->ewma_ttft_us, (double)o->ttft_us, b->samples);
        ewma(&b->ewma_tbt_us, (double)o->tbt_us, b->samples);
        ewma(&b->ewma_events, o->events ? (double)o->events : 1.0, b->samples);
        b->samples++;
    }
    if (!o->failed) {
        /* Only a real answer proves health: a client that left, a slot
         * given back unused or a stale-connection retry says nothing. */
        if (o->counted) {
            b->consecutive_failures = 0;
            if (b->down_until <= now)
                b->down_for = 0;
        }
    } else if (r->eject_after != 0 && ++b->consecutive_failures >= r->eject_after &&
               b->down_until <= now) {
        return eject_locked(r, b, now);
    }
    return -1;
}

void reg_release(struct registry *r, struct backend *b, const struct reg_outcome *o,
                 int64_t now_ms)
{
    /* The slot is given back under the lock, right before the queue is
     * kicked: a newcomer on another thread cannot take it in between and
     * jump ahead of the waiters. */
    reg_lock_for_pick(r);
    atomic_fetch_sub(&b->inflight, 1);
    if (o->counted)
        reg_model_outcome_locked(r, o);
    int64_t ejected_for = outcome_locked(r, b, o, now_ms); /* logged after the unlock */
    reg_kick_unlock(r, now_ms);
    /* The caller's reference keeps b (and its name, which never changes). */
    if (ejected_for >= 0)
        log_warn("backend %s ejected for %lld ms after repeated failures", b->spec.name,
                 (long long)ejected_for);
}

void reg_note_unreachable(struct registry *r, struct backend *b)
{
    /* One more failure ejects it (at its next release): a refused or
     * unreachable backend is down for certain. */
    pthread_mutex_lock(&r->lock);
    b->consecutive_failures = r->eject_after ? r->eject_after - 1 : 0;
    pthread_mutex_unlock(&r->lock);
}

/* reg_set_probed_models is an update of the set: registry.c. */

void reg_probe_result(struct registry *r, struct backend *b, bool alive, int64_t now_ms)
{
    bool back = false; /* what to log, after the unlock */
    int64_t ejected_for = -1;
    reg_lock_for_pick(r);
    if (alive) {
        b->consecutive_failures = 0;
        if (b->down_until > now_ms) {
            back = true;
            b->down_until = 0;
            b->ramp_start = now_ms;
        }
    } else if (b->down_until <= now_ms && r->eject_after != 0) {
        ejected_for = eject_locked(r, b, now_ms);
    }
    reg_kick_unlock(r, now_ms); /* a backend back in rotation frees capacity */
    /* The prober's reference keeps b (and its name, which never changes). */
    if (back)
        log_info("backend %s answers probes again: back in rotation", b->spec.name);
    if (ejected_for >= 0)
        log_warn("backend %s failed its health probe: ejected for %lld ms", b->spec.name,
                 (long long)ejected_for);
}
