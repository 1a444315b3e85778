/* SPDX-License-Identifier: MIT
 * Active probing of backends: GET /v1/models, which tells both that a
 * backend is alive and which models it serves. Runs on worker 0's loop. */
#ifndef LLAMALB_PROBE_H
#define LLAMALB_PROBE_H

struct worker;

/* Starts the periodic prober on <w> (no-op when --health-interval is 0). */
void probe_start(struct worker *w);
/* Stops it and closes probes in flight. */
void probe_stop(struct worker *w);
/* Frees ended probes (before-sleep hook of the probing worker). */
void probe_reap(void);

#endif
