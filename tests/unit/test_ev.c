/* SPDX-License-Identifier: MIT
 * Tests of the event loop, libuv style: every callback is counted exactly,
 * and every test ends with a loop that has no armed timer and no registered
 * fd. Each test gets a fresh loop; alarm() fails the binary if one hangs. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../tap.h"
#include "ev.h"
#include "util.h"

/* A loop must end empty: nothing armed, nothing registered. */
static void check_empty(struct ev_loop *loop, const char *what)
{
    ok(ev_timer_count(loop) == 0 && ev_io_count(loop) == 0, "%s: loop ends with 0 timers, 0 ios",
       what);
}

/* ---------------------------------------------------------------- timers */

#define NT 6
static int order[NT], norder;
static int64_t fired_at[NT];
static struct ev_timer tms[NT];

static void record_cb(struct ev_loop *loop, struct ev_timer *t)
{
    int id = (int)(t - tms);
    fired_at[id] = ev_now(loop);
    order[norder++] = id;
    if (norder == NT)
        ev_loop_stop(loop);
}

static void test_timer_order(void)
{
    struct ev_loop *loop = ev_loop_new();
    static const int ms[NT] = {30, 10, 20, 0, 40, 5};
    norder = 0;
    int64_t start = ev_now(loop);
    memset(tms, 0, sizeof(tms));
    for (int i = 0; i < NT; i++)
        ev_timer_start(loop, &tms[i], ms[i], record_cb, NULL);
    is_int(ev_timer_count(loop), NT, "order: %d timers armed", NT);
    ok(ev_timer_active(&tms[0]), "order: armed timer is active");
    ev_run(loop);
    static const int want[NT] = {3, 5, 1, 2, 0, 4};
    bool good = norder == NT;
    for (int i = 0; i < NT && good; i++)
        good = order[i] == want[i] && fired_at[order[i]] >= start + ms[order[i]];
    ok(good, "order: timers fire by deadline, never early, once each");
    ok(!ev_timer_active(&tms[0]), "order: fired timer is inactive");
    check_empty(loop, "order");
    ev_loop_free(loop);
}

static int rearm_calls;
static void rearm_cb(struct ev_loop *loop, struct ev_timer *t)
{
    if (++rearm_calls < 5)
        ev_timer_start(loop, t, 1, rearm_cb, NULL);
    else
        ev_loop_stop(loop);
}

static void test_timer_rearm(void)
{
    struct ev_loop *loop = ev_loop_new();
    struct ev_timer t = {0};
    rearm_calls = 0;
    ev_timer_start(loop, &t, 1, rearm_cb, NULL);
    ev_run(loop);
    is_int(rearm_calls, 5, "re-arm: a timer re-armed from its callback runs exactly 5 times");
    check_empty(loop, "re-arm");

    /* Re-arming an armed timer moves it in the heap, both ways. */
    norder = 0;
    memset(tms, 0, sizeof(tms));
    for (int i = 0; i < NT; i++)
        ev_timer_start(loop, &tms[i], 10 + 5 * i, record_cb, NULL);
    ev_timer_start(loop, &tms[5], 1, record_cb, NULL);  /* later -> earliest */
    ev_timer_start(loop, &tms[0], 60, record_cb, NULL); /* earliest -> latest */
    is_int(ev_timer_count(loop), NT, "re-arm: moving an armed timer does not add one");
    ev_run(loop);
    ok(norder == NT && order[0] == 5 && order[NT - 1] == 0,
       "re-arm: moved timers fire at their new deadlines");
    check_empty(loop, "re-arm moved");
    ev_loop_free(loop);
}

static int stop_calls;
static struct ev_timer victim, killer, ender;
static void never_cb(struct ev_loop *loop, struct ev_timer *t)
{
    UNUSED(loop);
    UNUSED(t);
    stop_calls += 100;
}
static void killer_cb(struct ev_loop *loop, struct ev_timer *t)
{
    UNUSED(t);
    stop_calls++;
    ev_timer_stop(loop, &victim); /* due at the same time: must not run */
}
static void ender_cb(struct ev_loop *loop, struct ev_timer *t)
{
    UNUSED(t);
    stop_calls++;
    ev_loop_stop(loop);
}

static void test_timer_stop(void)
{
    struct ev_loop *loop = ev_loop_new();
    struct ev_timer a = {0};
    stop_calls = 0;
    ev_timer_stop(loop, &a);
    ok(ev_timer_count(loop) == 0, "stop: stopping an unarmed timer is harmless");
    ev_timer_start(loop, &a, 1, never_cb, NULL);
    ev_timer_stop(loop, &a);
    ev_timer_stop(loop, &a);
    memset(&victim, 0, sizeof(victim));
    memset(&killer, 0, sizeof(killer));
    memset(&ender, 0, sizeof(ender));
    /* Same deadline for killer and victim; the heap may pick either first,
     * so arm killer strictly earlier to make the order certain. */
    int64_t now = ev_now(loop);
    ev_timer_at(loop, &killer, now + 5, killer_cb, NULL);
    ev_timer_at(loop, &victim, now + 6, never_cb, NULL);
    ev_timer_at(loop, &ender, now + 20, ender_cb, NULL);
    usleep(10000); /* killer and victim are both due in the same round */
    ev_run(loop);
    is_int(stop_calls, 2, "stop: stopped timers never run, killer and ender run once");
    check_empty(loop, "stop");
    ev_loop_free(loop);
}

#define MANY 10000
static struct ev_timer many[MANY];
static int many_calls, many_bad;
static int64_t many_last;
static void many_cb(struct ev_loop *loop, struct ev_timer *t)
{
    if (t->deadline < many_last)
        many_bad++;
    many_last = t->deadline;
    if (++many_calls == (int)(intptr_t)t->data)
        ev_loop_stop(loop);
}

static void test_many_timers(void)
{
    struct ev_loop *loop = ev_loop_new();
    uint64_t rng = 5;
    int expected = 0;
    many_calls = many_bad = 0;
    many_last = 0;
    for (int i = 0; i < MANY; i++)
        ev_timer_start(loop, &many[i], (int64_t)(util_rand64(&rng) % 50), many_cb, NULL);
    for (int i = 0; i < MANY; i += 3)
        ev_timer_stop(loop, &many[i]);
    for (int i = 0; i < MANY; i++)
        expected += ev_timer_active(&many[i]);
    for (int i = 0; i < MANY; i++)
        many[i].data = (void *)(intptr_t)expected;
    is_int(ev_timer_count(loop), expected, "many: %d of %d timers still armed", expected, MANY);
    ev_run(loop);
    ok(many_calls == expected && many_bad == 0,
       "many: %d callbacks, each once, in deadline order", many_calls);
    check_empty(loop, "many");
    ev_loop_free(loop);
}

/* ---------------------------------------------------------------- fds */

struct pair_state {
    struct ev_io io;
    struct ev_timer close_timer; /* armed once all 5 bytes are read */
    int peer;
    int reads, eofs, writes;
    size_t bytes;
    bool done;
};

static void close_cb(struct ev_loop *loop, struct ev_timer *t);

static void pair_cb(struct ev_loop *loop, struct ev_io *io, unsigned events)
{
    struct pair_state *ps = io->data;
    if (events & EV_WRITE)
        ps->writes++;
    if (!(events & EV_READ))
        return;
    ps->reads++;
    for (;;) {
        char b[64];
        ssize_t n = read(io->fd, b, sizeof(b));
        if (n > 0) {
            ps->bytes += (size_t)n;
            continue;
        }
        if (n == 0) { /* peer closed: stop and close our side */
            int fd = io->fd;
            ps->eofs++;
            ev_io_stop(loop, io);
            close(fd);
            ps->done = true;
        }
        break; /* EAGAIN: edge-triggered, wait for the next edge */
    }
    /* Close the peer only after the data was read, so data and EOF are two
     * edges however slowly a loaded machine runs the loop. */
    if (ps->bytes == 5 && !ps->done && !ev_timer_active(&ps->close_timer))
        ev_timer_start(loop, &ps->close_timer, 1, close_cb, NULL);
}

static struct pair_state *pair_ps;
static void write_cb(struct ev_loop *loop, struct ev_timer *t)
{
    UNUSED(loop);
    UNUSED(t);
    ssize_t w = write(pair_ps->peer, "hello", 5);
    UNUSED(w);
}
static void close_cb(struct ev_loop *loop, struct ev_timer *t)
{
    UNUSED(loop);
    UNUSED(t);
    close(pair_ps->peer);
}
static void stop_when_done(struct ev_loop *loop, void *data)
{
    struct pair_state *ps = data;
    if (ps->done)
        ev_loop_stop(loop);
}

static void test_fd_readiness(void)
{
    struct ev_loop *loop = ev_loop_new();
    int sv[2];
    BUG_ON(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0);
    struct pair_state ps = {.peer = sv[1]};
    pair_ps = &ps;
    is_int(ev_io_start(loop, &ps.io, sv[0], pair_cb, &ps), 0, "fd: ev_io_start");
    is_int(ev_io_count(loop), 1, "fd: one io registered (the wake pipe is not counted)");
    struct ev_timer tw = {0};
    ev_timer_start(loop, &tw, 5, write_cb, NULL);
    ev_set_before_sleep(loop, stop_when_done, &ps);
    ev_run(loop);
    ok(ps.bytes == 5 && ps.eofs == 1, "fd: 5 bytes read, then one EOF");
    ok(ps.reads == 2, "fd: exactly two read edges (data, EOF), got %d", ps.reads);
    ok(ps.writes >= 1, "fd: writable edge reported");
    ok(ps.io.fd == -1, "fd: stopped io has fd -1");
    check_empty(loop, "fd");
    ev_io_stop(loop, &ps.io);
    is_int(ev_io_count(loop), 0, "fd: stopping twice is harmless");
    ev_loop_free(loop);
}

/* Two readable ios in one batch; the first callback stops the other, which
 * must then not be called (its event was already fetched). */
static struct ev_io two[2];
static int two_calls;
static void two_cb(struct ev_loop *loop, struct ev_io *io, unsigned events)
{
    UNUSED(events);
    two_calls++;
    struct ev_io *other = io == &two[0] ? &two[1] : &two[0];
    int fo = other->fd, fs = io->fd;
    ev_io_stop(loop, other);
    ev_io_stop(loop, io);
    close(fo);
    close(fs);
    ev_loop_stop(loop);
}

static void test_stop_in_batch(void)
{
    struct ev_loop *loop = ev_loop_new();
    int a[2], b[2];
    BUG_ON(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, a) != 0);
    BUG_ON(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, b) != 0);
    two_calls = 0;
    ev_io_start(loop, &two[0], a[0], two_cb, NULL);
    ev_io_start(loop, &two[1], b[0], two_cb, NULL);
    ev_run(loop); /* both are writable at once: one batch */
    is_int(two_calls, 1, "batch: an io stopped earlier in the batch is skipped");
    check_empty(loop, "batch");
    close(a[1]);
    close(b[1]);
    ev_loop_free(loop);
}

/* A timer that re-arms itself at "now" forever must not starve I/O. */
static int spin_calls;
static bool io_seen;
static void spin_cb(struct ev_loop *loop, struct ev_timer *t)
{
    spin_calls++;
    if (!io_seen)
        ev_timer_start(loop, t, 0, spin_cb, NULL);
}
static void seen_cb(struct ev_loop *loop, struct ev_io *io, unsigned events)
{
    if (!(events & EV_READ))
        return;
    io_seen = true;
    ev_io_stop(loop, io);
    ev_loop_stop(loop);
}

static void test_no_starvation(void)
{
    struct ev_loop *loop = ev_loop_new();
    int sv[2];
    BUG_ON(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0);
    struct ev_io io = {0};
    struct ev_timer t = {0};
    spin_calls = 0;
    io_seen = false;
    ev_io_start(loop, &io, sv[0], seen_cb, NULL);
    ev_timer_start(loop, &t, 0, spin_cb, NULL);
    ssize_t w = write(sv[1], "x", 1);
    UNUSED(w);
    ev_run(loop);
    ok(io_seen && spin_calls > 0 && spin_calls < 1000000,
       "starvation: I/O runs while a timer re-arms at 0 ms (%d timer runs)", spin_calls);
    ev_timer_stop(loop, &t);
    check_empty(loop, "starvation");
    close(sv[0]);
    close(sv[1]);
    ev_loop_free(loop);
}

/* ---------------------------------------------------------------- wake-ups, hooks */

#define POSTS 2000
static atomic_int posted;
static int consumed, wake_calls;
static void wake_hook(struct ev_loop *loop, void *data)
{
    UNUSED(data);
    wake_calls++;
    consumed = atomic_load(&posted);
    if (consumed == POSTS)
        ev_loop_stop(loop);
}
static void *poster(void *arg)
{
    struct ev_loop *loop = arg;
    for (int i = 0; i < POSTS; i++) {
        atomic_fetch_add(&posted, 1);
        ev_wake(loop);
        if (i % 100 == 0)
            usleep(100);
    }
    return NULL;
}
static void timeout_cb(struct ev_loop *loop, struct ev_timer *t)
{
    UNUSED(t);
    ev_loop_stop(loop);
}

static void test_wake(void)
{
    struct ev_loop *loop = ev_loop_new();
    struct ev_timer guard = {0};
    pthread_t th;
    atomic_store(&posted, 0);
    consumed = wake_calls = 0;
    ev_set_wake(loop, wake_hook, NULL);
    ev_timer_start(loop, &guard, 5000, timeout_cb, NULL);
    BUG_ON(pthread_create(&th, NULL, poster, loop) != 0);
    ev_run(loop);
    pthread_join(th, NULL);
    ok(consumed == POSTS, "wake: all %d posts seen on the loop thread", POSTS);
    ok(wake_calls >= 1 && wake_calls <= POSTS, "wake: %d hook runs for %d wakes (coalesced)",
       wake_calls, POSTS);
    ok(ev_timer_active(&guard), "wake: the loop stopped by wake-up, not by the guard timer");
    ev_timer_stop(loop, &guard);
    check_empty(loop, "wake");
    ev_loop_free(loop);
}

static int hook_calls;
static void hook_cb(struct ev_loop *loop, void *data)
{
    int *stop_at = data;
    if (++hook_calls == *stop_at)
        ev_loop_stop(loop);
}
static void tick_cb(struct ev_loop *loop, struct ev_timer *t)
{
    ev_timer_start(loop, t, 1, tick_cb, NULL);
}

static void test_before_sleep(void)
{
    struct ev_loop *loop = ev_loop_new();
    struct ev_timer t = {0};
    int stop_at = 5;
    hook_calls = 0;
    ev_set_before_sleep(loop, hook_cb, &stop_at);
    ev_timer_start(loop, &t, 1, tick_cb, NULL);
    int r = ev_run(loop);
    is_int(r, 0, "hook: ev_run returns 0");
    /* Once before each sleep; the call that stops the loop is followed by
     * the one ev_run makes on the way out, where closed objects are freed. */
    is_int(hook_calls, stop_at + 1, "hook: runs once per iteration and once at exit");
    ev_timer_stop(loop, &t);
    check_empty(loop, "hook");
    ev_set_before_sleep(loop, NULL, NULL);
    ev_loop_free(loop);
}

/* A call that fails synchronously never calls its callback (libuv rule). */
static int sync_fail_calls;
static void sync_fail_cb(struct ev_loop *loop, struct ev_io *io, unsigned events)
{
    UNUSED(loop);
    UNUSED(io);
    UNUSED(events);
    sync_fail_calls++;
}

static void test_io_start_fails(void)
{
    struct ev_loop *loop = ev_loop_new();
    struct ev_io io = {0};
    struct ev_timer t = {0};
    int r = ev_io_start(loop, &io, 1000000, sync_fail_cb, NULL);
    ok(r == -EBADF && io.fd == -1 && ev_io_count(loop) == 0,
       "io start on a bad fd: -EBADF, io left stopped, not counted");
    ev_timer_start(loop, &t, 5, timeout_cb, NULL);
    ev_run(loop);
    is_int(sync_fail_calls, 0, "io start failure: the callback never runs");
    check_empty(loop, "io start failure");
    ev_loop_free(loop);
}

static void test_clock(void)
{
    struct ev_loop *loop = ev_loop_new();
    int64_t a = ev_now(loop);
    usleep(3000);
    ok(ev_now(loop) == a, "clock: ev_now is cached between iterations");
    ev_update_now(loop);
    ok(ev_now(loop) >= a + 2, "clock: ev_update_now re-reads it");
    ev_loop_free(loop);
    ev_loop_free(NULL);
    ok(1, "ev_loop_free(NULL) is a no-op");
}

/* Pushing an armed timer back only records the new deadline (ev.h); the
 * heap re-files it when the old key comes due. It must still fire once, at
 * the new deadline, and a stop after a push must still cancel it. */
static int push_calls;
static int64_t push_fired_at;
static void push_cb(struct ev_loop *loop, struct ev_timer *t)
{
    UNUSED(t);
    push_calls++;
    push_fired_at = ev_now(loop);
}

static void stop_loop_cb(struct ev_loop *loop, struct ev_timer *t)
{
    UNUSED(t);
    ev_loop_stop(loop);
}

static int push_ticks;
static void push_again_cb(struct ev_loop *loop, struct ev_timer *t)
{
    struct ev_timer *pushed = t->data;
    /* Each tick pushes the timer 30 ms further: its filed key keeps coming
     * due and it must be re-filed, never fired. */
    ev_timer_start(loop, pushed, 30, push_cb, NULL);
    if (++push_ticks < 100) /* bounded */
        ev_timer_start(loop, t, 10, push_again_cb, pushed);
}

static void test_timer_pushback(void)
{
    struct ev_loop *loop = ev_loop_new();
    struct ev_timer a = {0}, stopper = {0};
    push_calls = 0;
    int64_t t0 = ev_now(loop);
    ev_timer_start(loop, &a, 10, push_cb, NULL);
    ev_timer_start(loop, &a, 40, push_cb, NULL); /* pushed back before its key */
    ev_timer_start(loop, &stopper, 80, stop_loop_cb, NULL);
    ev_run(loop);
    ok(push_calls == 1 && push_fired_at - t0 >= 40,
       "push back: fires once, not before the new deadline (%d calls, after %lld ms)", push_calls,
       (long long)(push_fired_at - t0));
    check_empty(loop, "push back");

    /* Pushed back, then stopped: the stale key must not fire it. */
    push_calls = 0;
    ev_timer_start(loop, &a, 10, push_cb, NULL);
    ev_timer_start(loop, &a, 30, push_cb, NULL);
    ev_timer_stop(loop, &a);
    ev_timer_start(loop, &stopper, 50, stop_loop_cb, NULL);
    ev_run(loop);
    is_int(push_calls, 0, "push back then stop: never fires");
    check_empty(loop, "push back then stop");

    /* Repeatedly pushed while its filed key keeps coming due. */
    struct ev_timer ticker = {0};
    push_calls = push_ticks = 0;
    ev_timer_start(loop, &a, 30, push_cb, NULL);
    ev_timer_start(loop, &ticker, 10, push_again_cb, &a);
    ev_timer_start(loop, &stopper, 60, stop_loop_cb, NULL);
    ev_run(loop);
    ev_timer_stop(loop, &ticker);
    ev_timer_stop(loop, &a);
    ok(push_calls == 0 && push_ticks >= 3,
       "push back: a timer pushed on every tick never fires (%d ticks, %d fired)", push_ticks,
       push_calls);
    check_empty(loop, "push back ticking");
    ev_loop_free(loop);
}

int main(void)
{
    alarm(30);
    test_timer_order();
    test_timer_rearm();
    test_timer_pushback();
    test_timer_stop();
    test_many_timers();
    test_fd_readiness();
    test_stop_in_batch();
    test_no_starvation();
    test_wake();
    test_before_sleep();
    test_io_start_fails();
    test_clock();
    return done_testing();
}
