/* SPDX-License-Identifier: MIT
 * The gateway queue (src/proxy/reg_queue.c): a full backend queues, a
 * bounded queue refuses, the oldest waiter gets a freed slot (FIFO
 * hand-off, one wake), cancellation, and the llamalb_queue_* counters
 * and families (queued, refused, timed out, time waited). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "reg_test.h"
#include "util.h"

static struct list ready_list;
static int wakes;
static void on_wake(void *arg)
{
    UNUSED(arg);
    wakes++;
}

static void test_queue(void)
{
    struct registry r;
    uint64_t rng = 3;
    reg_init(&r, 1, &lb_least);
    list_init(&ready_list);
    add(&r, "a", 1, 1, 1);
    struct reg_req q = {0};
    struct backend *first = NULL;
    enum reg_pick_rc rc = reg_pick(&r, &q, &rng, 1000, NULL, &first, NULL);
    is_int(rc, REG_PICKED, "first request gets the only slot");
    struct backend *none = NULL;
    rc = reg_pick(&r, &q, &rng, 1000, NULL, &none, NULL);
    is_int(rc, REG_QUEUE_FULL, "a full backend and no waiter: refused");
    struct reg_waiter w[3];
    memset(w, 0, sizeof(w));
    for (int i = 0; i < 3; i++) {
        w[i].ready_list = &ready_list;
        w[i].wake = on_wake;
        rc = reg_pick(&r, &q, &rng, 1000 + i, &w[i], &none, NULL);
        is_int(rc, REG_QUEUED, "request %d waits in the queue", i + 2);
    }
    is_int(r.nwaiting, 3, "three waiters");
    /* A newcomer cannot jump the queue: nothing is free. */
    struct reg_waiter late = {.ready_list = &ready_list, .wake = on_wake};
    r.queue_max = 3;
    rc = reg_pick(&r, &q, &rng, 1010, &late, &none, NULL);
    is_int(rc, REG_QUEUE_FULL, "queue at its bound refuses the next request");
    /* Cancel the middle one, then free the slot: the oldest gets it. */
    ok(reg_cancel_wait(&r, &w[1]) == NULL, "cancelling a queued waiter returns no slot");
    done_with(&r, first);
    is_int(wakes, 1, "freeing the slot wakes exactly one waiter");
    is_int(w[0].state, REG_W_READY, "the oldest waiter got the slot");
    is_int(w[2].state, REG_W_QUEUED, "the younger waiter still waits");
    ok(w[0].assigned != NULL && strcmp(w[0].assigned->spec.name, "a") == 0,
       "the hand-off carries the backend");
    struct list got;
    list_init(&got);
    reg_take_ready(&r, &ready_list, &got);
    ok(!list_empty(&got) && got.next == &w[0].link, "the worker takes its ready waiter");
    list_del(&w[0].link);
    struct backend *b0 = w[0].assigned;
    /* The slot is held by the hand-off: a cancel of a READY waiter returns it. */
    struct backend *back = reg_cancel_wait(&r, &w[2]);
    ok(back == NULL, "w2 was still queued: nothing to give back");
    done_with(&r, b0);
    is_int(r.nwaiting, 0, "queue empty");
    is_int(atomic_load(&b0->inflight), 0, "no slot leaked");
    reg_deinit(&r);
}


/* The counters behind llamalb_queue_*: queued, refused, timed out, the
 * time waited, and the families written from them. */
static void test_queue_metrics(void)
{
    struct registry r;
    uint64_t rng = 23;
    reg_init(&r, 1, &lb_least);
    struct reg_settings st = default_settings();
    st.queue_max = 1;
    reg_configure(&r, &st);
    list_init(&ready_list);
    add(&r, "a", 1, 1, 1);
    struct reg_req q = {0};
    struct backend *held = NULL, *none = NULL;
    reg_pick(&r, &q, &rng, 1000, NULL, &held, NULL);
    struct reg_waiter w = {.ready_list = &ready_list, .wake = on_wake};
    struct reg_waiter w2 = {.ready_list = &ready_list, .wake = on_wake};
    is_int(reg_pick(&r, &q, &rng, 1000, &w, &none, NULL), REG_QUEUED, "one waits");
    is_int(reg_pick(&r, &q, &rng, 1000, &w2, &none, NULL), REG_QUEUE_FULL,
           "queue_max 1 (reg_configure): the next is refused");
    /* The waiter gives up: cancelled with nothing assigned, a timeout. */
    ok(reg_cancel_wait(&r, &w) == NULL, "the timed-out waiter had no slot");
    reg_note_queue_timeout(&r);
    is_int(reg_pick(&r, &q, &rng, 1000, &w, &none, NULL), REG_QUEUED, "another waits");
    struct reg_outcome o = {0};
    reg_release(&r, held, &o, 1250); /* hands the slot over after 250 ms */
    backend_unref(held);
    is_int(w.state, REG_W_READY, "the slot went to the waiter");
    struct list got;
    list_init(&got);
    reg_take_ready(&r, &ready_list, &got);
    list_del(&w.link);
    struct buf out = {0};
    reg_write_metrics(&r, &out, 1250);
    buf_append(&out, "", 1);
    const char *m = buf_data(&out);
    ok(strstr(m, "# HELP llamalb_queue_length Requests waiting for a free backend.\n"
                 "# TYPE llamalb_queue_length gauge\nllamalb_queue_length 0\n"
                 "# HELP llamalb_queued_total Requests that had to wait for a free backend.\n"
                 "# TYPE llamalb_queued_total counter\nllamalb_queued_total 2\n"
                 "# HELP llamalb_queue_rejected_total Requests refused: queue full.\n"
                 "# TYPE llamalb_queue_rejected_total counter\nllamalb_queue_rejected_total 1\n"
                 "# HELP llamalb_queue_timeouts_total Requests that waited too long.\n"
                 "# TYPE llamalb_queue_timeouts_total counter\nllamalb_queue_timeouts_total 1\n"
                 "# HELP llamalb_queue_wait_seconds Time queued requests waited for a backend.\n"
                 "# TYPE llamalb_queue_wait_seconds histogram\n") == m,
       "the queue families come first, then the backends'");
    if (strncmp(m, "# HELP llamalb_queue_length", 27) != 0)
        note("%s", m);
    ok(strstr(m, "llamalb_queue_wait_seconds_bucket{le=\"0.1\"} 0\n"
                 "llamalb_queue_wait_seconds_bucket{le=\"0.25\"} 1\n") != NULL &&
           strstr(m, "llamalb_queue_wait_seconds_sum 0.250000\n"
                     "llamalb_queue_wait_seconds_count 1\n"
                     "# HELP llamalb_backend_up ") != NULL,
       "the wait, a histogram, then the backends' families");
    ok(strstr(m, "llamalb_model_queued_total{model=\"(none)\"} 1\n") != NULL &&
           strstr(m, "llamalb_model_queue_wait_seconds_bucket{model=\"(none)\",le=\"0.25\"} 1\n") != NULL &&
           strstr(m, "llamalb_model_queue_wait_seconds_sum{model=\"(none)\"} 0.250000\n") != NULL,
       "the hand-off is counted for its model");
    buf_free(&out);
    done_with(&r, w.assigned);
    reg_deinit(&r);
}

int main(void)
{
    test_queue();
    test_queue_metrics();
    buf_cache_drain();
    reg_thread_exit();
    return done_testing();
}
