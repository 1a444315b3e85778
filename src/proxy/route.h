/* SPDX-License-Identifier: MIT
 * Routing: what a request asks for and where it goes. From the head (local
 * /v1/models, uploads, file ids in the path, the affinity header) and the
 * body (the top-level "model", "user", a file id), read the way the backend
 * will read them; then a backend is picked by the registry's policy, or the
 * request waits in the gateway queue until a slot frees (the hand-off is
 * atomic under the registry lock, and the worker is woken to continue). */
#ifndef LLAMALB_ROUTE_H
#define LLAMALB_ROUTE_H

#include <stdbool.h>

#include "http1.h"

struct conn;

/* With API keys on (keys.h): finds the request's key in its Authorization
 * header and keeps it (and a reference to its keyring) in the exchange.
 * Returns false when the request has no valid key (the caller answers
 * 401). Always true with keys off. */
bool route_authorize(struct conn *c, const struct http1_msg *m);
/* What the head says about routing. Runs while the header slices are valid. */
void route_classify_head(struct conn *c, const struct http1_msg *m);
/* The request is complete: read the body's routing fields (400 for a body
 * routing and the backend would read differently), answer /v1/models
 * locally, or dispatch. */
void route_request(struct conn *c);
/* Picks a backend and starts the request on it, or queues it when every
 * eligible backend is at its cap; answers 503/404/502 when none can take it. */
void route_dispatch(struct conn *c);
/* A queued request was handed a backend (its worker, after reg_take_ready). */
void route_dequeued(struct conn *c);
/* The queue deadline passed (503 queue_timeout, unless a slot just came). */
void route_queue_timeout(struct conn *c);
/* Leaves the gateway queue; a slot handed over meanwhile goes back. */
void route_leave_queue(struct conn *c);
/* The registry's view of the request: model, pin, affinity, backends tried. */
struct reg_req;
void route_fill_req(struct conn *c, struct reg_req *q);
/* Drops the request's per-model in-flight count and its tried backends. */
void route_forget(struct conn *c);

#endif
