/* SPDX-License-Identifier: MIT
 * Unit tests of slots.c, the generation scheduler: one slot at a time and
 * the frozen server (blocking), more slots, FIFO order, cancellation. */
#include <string.h>

#include "../tap.h"
#include "../../src/sim/sim.h"

#define N 5

static struct sim_slot e[N];
static int freezes, thaws;

static void on_freeze(void *arg, bool frozen)
{
    is_int(*(int *)arg, 42, "callback argument passed through");
    if (frozen)
        freezes++;
    else
        thaws++;
}

static void reset(struct sim_slots *s, unsigned slots, bool block)
{
    static int arg = 42;
    memset(e, 0, sizeof(e));
    freezes = thaws = 0;
    sim_slots_init(s, slots, block, on_freeze, &arg);
}

static int idx(const struct sim_slot *x)
{
    return x == NULL ? -1 : (int)(x - e);
}

static void test_one_slot_blocking(void)
{
    struct sim_slots s;
    reset(&s, 1, true);
    ok(sim_slot_acquire(&s, &e[0]), "first generation starts at once");
    ok(e[0].active && !sim_slot_queued(&e[0]), "it holds the slot");
    ok(!sim_slot_acquire(&s, &e[1]), "second one waits");
    ok(!sim_slot_acquire(&s, &e[2]), "third one waits");
    ok(!e[1].active && sim_slot_queued(&e[1]), "a waiting entry holds no slot");
    is_int(s.active, 1, "one slot in use");
    is_int(s.queued, 2, "two queued");
    is_int(idx(sim_slot_next(&s)), -1, "nothing to start while the slot is taken");

    ok(sim_slot_freeze(&s, &e[0]), "a non-streaming generation freezes a blocking server");
    ok(s.frozen && s.frozen_by == &e[0] && freezes == 1, "frozen by it, listener told");
    sim_slot_release(&s, &e[0]);
    ok(!s.frozen && thaws == 1, "its end thaws the server");
    is_int(s.active, 0, "slot free");

    is_int(idx(sim_slot_next(&s)), 1, "the oldest waiter starts next");
    ok(e[1].active && !sim_slot_queued(&e[1]), "it now holds the slot");
    is_int(idx(sim_slot_next(&s)), -1, "one slot: the third still waits");
    is_int(s.queued, 1, "one left in the queue");

    /* A frozen server hands out nothing, even with a slot free. */
    sim_slot_freeze(&s, &e[1]);
    sim_slot_release(&s, &e[3]); /* neither queued nor active: no effect */
    ok(s.frozen && s.active == 1 && s.queued == 1, "releasing an idle entry changes nothing");
    sim_slot_unfreeze(&s, &e[2]);
    ok(s.frozen, "only the freezer thaws the server");
    sim_slot_unfreeze(&s, &e[1]);
    ok(!s.frozen && e[1].active, "unfreeze thaws and keeps the slot (stall fault)");
    sim_slot_release(&s, &e[1]);
    is_int(thaws, 2, "no second thaw on release after unfreeze");
    is_int(idx(sim_slot_next(&s)), 2, "then the third");
    sim_slot_release(&s, &e[2]);
    ok(s.active == 0 && s.queued == 0, "all done");
}

static void test_frozen_blocks_next(void)
{
    struct sim_slots s;
    reset(&s, 2, true);
    sim_slot_acquire(&s, &e[0]);
    sim_slot_freeze(&s, &e[0]);
    /* Arrives while frozen (a pipelined request of the freezer itself): a
     * slot is free and nobody waits, so it starts. */
    ok(sim_slot_acquire(&s, &e[1]), "acquire does not look at the frozen state");
    sim_slot_release(&s, &e[1]);
    ok(s.frozen && s.active == 1, "its end leaves the freezer's freeze alone");
    sim_slot_acquire(&s, &e[1]);
    ok(!sim_slot_acquire(&s, &e[2]), "both slots taken: queued");
    sim_slot_release(&s, &e[1]);
    is_int(idx(sim_slot_next(&s)), -1, "frozen: the free slot is not handed out");
    sim_slot_release(&s, &e[0]);
    is_int(idx(sim_slot_next(&s)), 2, "thawed: the waiter starts");
}

static void test_not_blocking(void)
{
    struct sim_slots s;
    reset(&s, 1, false);
    sim_slot_acquire(&s, &e[0]);
    ok(!sim_slot_freeze(&s, &e[0]), "no freeze without blocking");
    ok(!s.frozen && freezes == 0, "not frozen, listener not told");
    sim_slot_release(&s, &e[0]);
    is_int(thaws, 0, "no thaw either");
}

static void test_many_slots_fifo(void)
{
    struct sim_slots s;
    reset(&s, 2, false);
    ok(sim_slot_acquire(&s, &e[0]) && sim_slot_acquire(&s, &e[1]), "two slots: two start");
    for (int i = 2; i < N; i++)
        ok(!sim_slot_acquire(&s, &e[i]), "entry %d waits", i);
    is_int(s.active, 2, "two active");
    is_int(s.queued, 3, "three queued");

    sim_slot_release(&s, &e[3]); /* its client left while it waited */
    ok(!sim_slot_queued(&e[3]) && s.queued == 2, "a cancelled waiter leaves the queue");
    sim_slot_release(&s, &e[1]);
    is_int(idx(sim_slot_next(&s)), 2, "FIFO: 2 first");
    is_int(idx(sim_slot_next(&s)), -1, "then no slot");
    sim_slot_release(&s, &e[0]);
    is_int(idx(sim_slot_next(&s)), 4, "FIFO: then 4 (3 was cancelled)");
    is_int(idx(sim_slot_next(&s)), -1, "queue empty");

    /* A newcomer does not overtake a waiter even when a slot is free. */
    sim_slot_release(&s, &e[2]);
    sim_slot_release(&s, &e[4]);
    memset(e, 0, sizeof(e));
    sim_slot_acquire(&s, &e[0]);
    sim_slot_acquire(&s, &e[1]);
    sim_slot_acquire(&s, &e[2]);
    sim_slot_release(&s, &e[0]);
    ok(!sim_slot_acquire(&s, &e[3]), "a free slot but a waiter: the newcomer queues");
    is_int(idx(sim_slot_next(&s)), 2, "the waiter gets the slot");
    is_int(idx(sim_slot_next(&s)), -1, "the newcomer waits for the next one");
    ok(sim_slot_queued(&e[3]), "newcomer still queued");
}

int main(void)
{
    test_one_slot_blocking();
    test_frozen_blocks_next();
    test_not_blocking();
    test_many_slots_fifo();
    return done_testing();
}
