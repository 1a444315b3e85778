/* SPDX-License-Identifier: MIT
 * The event loop: edge-triggered fd readiness, a timer heap, cross-thread
 * wake-ups, and a before-sleep hook. One loop per thread; nothing in it is
 * shared between loops.
 *
 * Objects are never indexed by fd number (docs/design.md, "Portability":
 * WasmEdge hands out large, random descriptors): an fd is registered with a pointer to its
 * struct ev_io, and the backend gives that pointer back.
 *
 * The backend (epoll natively, ev_poll.c.h's poll_oneoff under WASI) is
 * #included by ev.c and exposes only static functions, as redis' ae does. */
#ifndef LLAMALB_EV_H
#define LLAMALB_EV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ev_loop;
struct ev_io;
struct ev_timer;

#define EV_READ 0x1u  /* readable, or peer closed its side */
#define EV_WRITE 0x2u /* writable */
#define EV_ERROR 0x4u /* error or hang-up: the next read/write tells which */
#define EV_RDHUP 0x8u /* the peer closed its side: reads end in EOF, read until it */

typedef void ev_io_cb(struct ev_loop *loop, struct ev_io *io, unsigned events);
typedef void ev_timer_cb(struct ev_loop *loop, struct ev_timer *t);
typedef void ev_hook_cb(struct ev_loop *loop, void *data);

/* An fd watched by a loop. Embedded in its owner; the owner keeps it alive
 * until ev_io_stop() and the next before-sleep hook have run (events already
 * fetched in the current batch may still name it; they are skipped once
 * ev_io_stop() has set fd to -1). */
struct ev_io {
    int fd;          /* -1 when not registered */
    bool level;      /* level-triggered (listeners) instead of edge-triggered */
    ev_io_cb *cb;
    void *data;      /* owner's pointer, free for the callback's use */
};

/* A one-shot timer, embedded in its owner. A zeroed struct is unarmed.
 * Re-arming an armed timer to a later deadline (the common case: a
 * connection's idle deadline pushed back after each request) only records
 * the deadline; the heap keeps the earlier key until that key comes due,
 * and the timer is then re-filed instead of fired (nginx and libev's
 * periodic timers do the same to spare the heap). Timers due in the same
 * iteration fire in filing-key order, not strictly by deadline. */
struct ev_timer {
    int64_t deadline;  /* ms on the loop clock */
    int64_t _key;      /* heap position key: <= deadline */
    size_t _heap_idx;  /* 1-based position in the heap, 0 when unarmed */
    ev_timer_cb *cb;
    void *data;
};

/* Creates a loop able to watch many fds. Returns NULL on failure. */
struct ev_loop *ev_loop_new(void);
void ev_loop_free(struct ev_loop *loop);

/* Runs until ev_loop_stop(). Returns 0, or a negative errno if polling failed. */
int ev_run(struct ev_loop *loop);
/* Makes ev_run() return after the current iteration. Loop thread only. */
void ev_loop_stop(struct ev_loop *loop);

/* The loop's clock in ms, read once per iteration. */
int64_t ev_now(const struct ev_loop *loop);
/* Re-reads the clock (after long work inside a callback). */
void ev_update_now(struct ev_loop *loop);

/* Starts watching <fd> for read and write readiness with callback <cb>.
 * Edge-triggered unless <io>->level is set before the call. Returns 0 or -errno. */
int ev_io_start(struct ev_loop *loop, struct ev_io *io, int fd, ev_io_cb *cb, void *data);
/* Stops watching; does not close the fd. Safe on an io that is not started. */
void ev_io_stop(struct ev_loop *loop, struct ev_io *io);
/* For level-triggered ios: choose which of EV_READ / EV_WRITE to report. */
int ev_io_set_mask(struct ev_loop *loop, struct ev_io *io, unsigned mask);

/* Arms (or re-arms) <t> to fire <ms> from now. */
void ev_timer_start(struct ev_loop *loop, struct ev_timer *t, int64_t ms, ev_timer_cb *cb,
                    void *data);
/* Arms <t> at an absolute loop-clock deadline. */
void ev_timer_at(struct ev_loop *loop, struct ev_timer *t, int64_t deadline, ev_timer_cb *cb,
                 void *data);
/* Disarms <t>; harmless if unarmed. */
void ev_timer_stop(struct ev_loop *loop, struct ev_timer *t);
static inline bool ev_timer_active(const struct ev_timer *t) { return t->_heap_idx != 0; }

/* Sets the hook run after each batch of events and timers, before the loop
 * sleeps: the place where closed objects are freed. */
void ev_set_before_sleep(struct ev_loop *loop, ev_hook_cb *cb, void *data);

/* Sets the hook run on the loop thread after ev_wake() from any thread.
 * Wake-ups coalesce: several ev_wake() calls may run the hook once. */
void ev_set_wake(struct ev_loop *loop, ev_hook_cb *cb, void *data);
/* Thread-safe and async-signal-safe. */
void ev_wake(struct ev_loop *loop);

/* The socket layer's note that a read or write on <fd> came up short
 * (EAGAIN, EOF, fewer bytes than asked): the next readiness in <mask>
 * (EV_READ / EV_WRITE) is a new edge. epoll needs nothing; a level-only
 * poller (poll_oneoff under WASI) re-subscribes the direction it stopped
 * watching after it reported it, which is how it stays edge-triggered
 * without spinning (docs/wasm.md). */
void ev_fd_drained(int fd, unsigned mask);

/* Number of armed timers and registered fds (tests check a loop ends empty). */
size_t ev_timer_count(const struct ev_loop *loop);
size_t ev_io_count(const struct ev_loop *loop);

#endif
