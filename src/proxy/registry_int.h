/* SPDX-License-Identifier: MIT
 * The registry's insides, shared by its files only (registry.c, reg_*.c);
 * everyone else uses registry.h. The registry is one module cut along its
 * jobs (see docs/design.md for the architecture):
 *
 *   registry.c    the set and its updates: init, upsert, remove, replace
 *                 (PUT), the names table, snapshots, settings, GET views
 *   reg_spec.c    backend specs: validation, the --backend syntax, packed
 *                 model lists
 *   reg_pick.c    picking: the pick index, scope, candidates, weighted
 *                 draws, session affinity (lb.c keeps the policies)
 *   reg_queue.c   the gateway queue: waiters, hand-off of freed slots,
 *                 wakes after the unlock, queue metrics
 *   reg_health.c  health: release of a slot, passive ejection, active
 *                 probe results, slow start, live speed (EWMAs)
 *   reg_files.c   the uploaded-file map (its own lock)
 *   reg_stats.c   per-model and per-backend statistics and their metrics
 *
 * Locking: every function here named *_locked, and every one that says
 * "lock held", runs under r->lock; none of them takes it. Only the public
 * functions of registry.h take r->lock (or r->files_lock). */
#ifndef LLAMALB_REGISTRY_INT_H
#define LLAMALB_REGISTRY_INT_H

#include "registry.h"

/* ------------------------------------------------------------ registry.c */

/* A cell of the open-addressed names table (r->names). */
struct reg_name_cell {
    uint32_t hash; /* low 32 bits of reg_str_hash(name) */
    unsigned slot; /* v index + 1; 0 = empty */
};

/* FNV-1a of <s>. */
uint64_t reg_str_hash(const char *s);
/* A power of two at least twice <n>: open-addressed tables stay at most
 * half full, so probes stay short. */
unsigned reg_table_size(unsigned n);
/* The v index of the backend named <name>, or -1. Lock held. */
int reg_names_find(const struct registry *r, const char *name);
/* "up", "down" (ejected) or "draining" (weight 0). Lock held. */
const char *reg_state_name(const struct backend *b, int64_t now);

/* ------------------------------------------------------------ reg_spec.c */

/* Bytes of the packed list <m> of <n> names, NULs included. */
size_t reg_models_len(const char *m, unsigned n);
/* A copy of the packed list <m> of <n> names, or NULL when n == 0. */
char *reg_models_dup(const char *m, unsigned n);
/* Packs <names>[0..n) into one block; NULL when n == 0. */
char *reg_models_pack(const char *const *names, unsigned n);
/* The models <b> serves as reg_serves() sees them: its own list, or the
 * probed one when it has none. Returns the count, the packed list in
 * <*list>. Lock held. */
unsigned reg_served(const struct backend *b, const char **list);

/* ------------------------------------------------------------ reg_pick.c */

/* What the pick index needs of one backend of a set being built: its
 * weight and the models it will serve (reg_served of the new state). */
struct ix_member {
    unsigned weight;
    unsigned nmodels;
    const char *models; /* packed; must outlive the index */
};
/* Builds the pick index of a set of <n> backends, allocating, without the
 * lock: an update builds it aside and swaps it in (registry.c). */
struct reg_index *reg_ix_build(const struct ix_member *m, unsigned n);
/* The pick index of the set as it is now (every update installs one).
 * Lock held. */
const struct reg_index *reg_ix_get(struct registry *r);
void reg_ix_free(struct reg_index *ix);
/* Grows the calling thread's candidate scratch space to <n> backends.
 * Called before r->lock is taken (reg_lock_for_pick) by every function
 * that may pick under the lock: a pick never allocates under it. */
void reg_cand_reserve(unsigned n);
/* Records that a set of <n> backends is about to be swapped in: called by
 * every update before it takes r->lock. */
void reg_size_hint(unsigned n);
/* Takes r->lock for a pick (or a kick, which picks): reserves the scratch
 * space for the largest set so far first. */
void reg_lock_for_pick(struct registry *r);
/* Picks for <q> (reg_pick without the queue). Lock held. */
enum reg_pick_rc reg_pick_locked(struct registry *r, const struct reg_req *q, uint64_t *rng,
                                 int64_t now, struct backend **out, const char **why);

/* ------------------------------------------------------------ reg_queue.c */

/* Workers to wake once the registry lock is released: a wake is a write(2)
 * to the worker's pipe, and every worker waits on that lock.
 * reg_kick_locked collects them (each distinct one once), reg_wakes_run
 * calls them after the unlock. The waiters themselves are not touched
 * after the unlock: their worker may take and finish them at once; the
 * wake targets (event loops) live as long as the workers. A kick that
 * meets more distinct wake targets than fit stops there and says so; the
 * caller wakes those and kicks again (reg_kick_unlock): no waiter is left
 * behind, and no lock hold grows with the number of workers. */
#define KICK_WAKES_MAX 64
struct wakes {
    unsigned n;
    struct {
        void (*fn)(void *);
        void *arg;
    } v[KICK_WAKES_MAX];
};

void reg_wakes_run(const struct wakes *wk);
/* Hands freed capacity to the oldest waiters that can use it, and fails at
 * once the waiters that a new pick would refuse (REG_NONE, REG_NO_MODEL).
 * The whole queue is looked at: a waiter whose (model, pin) found every
 * backend full earlier in the same kick is skipped without a pick (the
 * kick only takes capacity), so a kick costs one pick per distinct
 * request shape plus a compare per waiter. Lock held; the workers to wake
 * are added to <wk>. Returns true if it stopped because <wk> was full. */
bool reg_kick_locked(struct registry *r, int64_t now, struct wakes *wk);
/* Kicks the queue if anyone waits, releases r->lock (held on entry), runs
 * the wakes after the unlock, and repeats while a kick stopped early. */
void reg_kick_unlock(struct registry *r, int64_t now);
/* Queues <w> for <q> after a pick found every eligible backend full.
 * Returns REG_QUEUED, or REG_QUEUE_FULL (counted) when there is no waiter
 * or no room. Lock held. */
enum reg_pick_rc reg_enqueue_locked(struct registry *r, const struct reg_req *q,
                                    struct reg_waiter *w, int64_t now);
/* Appends the process-wide queue families (llamalb_queue_*). Takes the
 * lock for the queue's length only. */
void reg_queue_metrics(struct registry *r, struct buf *out);

/* ------------------------------------------------------------ reg_health.c */

/* Slow start: the weight a pick uses for <b> now (x 1000, at least 1).
 * Lock held. */
uint64_t reg_effective_weight(const struct registry *r, const struct backend *b, int64_t now);

/* ------------------------------------------------------------ reg_stats.c */

#define MODEL_KEY_LEN sizeof(((struct model_stats *)0)->name)

/* The name <model>'s stats are kept under (reg_stats.c says how). */
const char *reg_model_key(const char *model, char *out);
/* The stats slot of <model>, appended if new. Lock held (the only writer). */
struct model_stats *reg_model_slot(struct registry *r, const char *model);
/* Counts a finished request's outcome in its model's slot. Lock held. */
void reg_model_outcome_locked(struct registry *r, const struct reg_outcome *o);

#endif
