/* SPDX-License-Identifier: MIT
 * The generation scheduler: --slots slots handed out in arrival order, and
 * the "frozen" state of a server that computes a non-streaming answer on its
 * only thread (docs/sim.md, Scheduling). Pure bookkeeping: no I/O, no clock,
 * no allocation. The server asks it whether a generation may start, starts
 * what sim_slot_next() hands back, and tells it when a generation ends. */

#include "sim.h"

void sim_slots_init(struct sim_slots *s, unsigned slots, bool block,
                    void (*on_freeze)(void *arg, bool frozen), void *arg)
{
    s->slots = slots;
    s->block = block;
    s->active = 0;
    s->queued = 0;
    s->frozen = false;
    s->frozen_by = NULL;
    list_init(&s->waitq);
    s->on_freeze = on_freeze;
    s->arg = arg;
}

static void thaw(struct sim_slots *s)
{
    if (!s->frozen)
        return;
    s->frozen = false;
    s->frozen_by = NULL;
    if (s->on_freeze != NULL)
        s->on_freeze(s->arg, false);
}

bool sim_slot_acquire(struct sim_slots *s, struct sim_slot *e)
{
    if (s->active < s->slots && list_empty(&s->waitq)) {
        e->active = true;
        s->active++;
        return true;
    }
    list_add_tail(&s->waitq, &e->node);
    s->queued++;
    return false;
}

struct sim_slot *sim_slot_next(struct sim_slots *s)
{
    if (s->frozen || list_empty(&s->waitq) || s->active >= s->slots)
        return NULL;
    struct sim_slot *e = list_entry(s->waitq.next, struct sim_slot, node);
    list_del(&e->node);
    s->queued--;
    e->active = true;
    s->active++;
    return e;
}

void sim_slot_release(struct sim_slots *s, struct sim_slot *e)
{
    if (e->active) {
        e->active = false;
        s->active--;
    }
    if (sim_slot_queued(e)) {
        list_del(&e->node);
        s->queued--;
    }
    if (s->frozen_by == e)
        thaw(s);
}

bool sim_slot_freeze(struct sim_slots *s, struct sim_slot *e)
{
    if (!s->block)
        return false;
    s->frozen = true;
    s->frozen_by = e;
    if (s->on_freeze != NULL)
        s->on_freeze(s->arg, true);
    return true;
}

void sim_slot_unfreeze(struct sim_slots *s, const struct sim_slot *e)
{
    if (s->frozen_by == e)
        thaw(s);
}
