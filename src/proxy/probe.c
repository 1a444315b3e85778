/* SPDX-License-Identifier: MIT
 * The prober: every --health-interval, each backend that is idle (or
 * ejected) gets one GET /v1/models on a fresh connection.
 *
 * A llama-api-server answers nothing else while it generates without
 * streaming, so a probe is never sent to a backend
 * with requests in flight: traffic is its own evidence of life, and a probe
 * queued behind a generation would both time out and delay the next real
 * request. A probe that times out while the backend became busy meanwhile
 * counts as busy, not dead (llama-nexus does the same). A refused or reset
 * connection, a 5xx, or a timeout on an idle backend ejects it; a good answer
 * brings an ejected backend back (with slow start) and refreshes its
 * model list. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "json.h"
#include "log.h"
#include "probe.h"
#include "proxy.h"
#include "util.h"

#define PROBE_TICK_MS 250
#define PROBE_MAX_RESPONSE 65536
#define PROBE_MAX_TOKENS 2048

struct probe {
    struct list link;
    struct worker *w;
    struct backend *b;    /* referenced */
    struct ev_io io;
    struct ev_timer timer;
    struct buf in;
    size_t sent;
    bool connected;
};

static struct list probes = {&probes, &probes};       /* worker 0 only */
static struct list graveyard = {&graveyard, &graveyard}; /* ended, freed before sleep */
static struct ev_timer tick;
static struct worker *probe_worker;

static const char probe_req[] = "GET /v1/models HTTP/1.1\r\nHost: llamalb-probe\r\n"
                                "User-Agent: llamalb-probe\r\nAccept: application/json\r\n"
                                "Connection: close\r\n\r\n";

static void probe_end(struct probe *p, int verdict /* 1 alive, 0 dead, -1 busy */)
{
    struct worker *w = p->w;
    struct backend *b = p->b;
    log_debug("probe %s: %s", b->spec.name, verdict == 1 ? "alive" : verdict == 0 ? "dead" : "busy");
    if (verdict >= 0)
        reg_probe_result(&w->srv->reg, b, verdict == 1, ev_now(w->loop));
    b->probing = false;
    b->next_probe_ms = ev_now(w->loop) + w->rt->cfg.health_interval;
    ev_timer_stop(w->loop, &p->timer);
    if (p->io.fd != -1) {
        int fd = p->io.fd;
        ev_io_stop(w->loop, &p->io);
        close(fd);
    }
    list_del(&p->link);
    buf_free(&p->in);
    backend_unref(b);
    /* Freed before sleep, not here: an event for this probe may still be in
     * the batch being dispatched (probe_stop runs from another callback). */
    list_add_tail(&graveyard, &p->link);
}

void probe_reap(void)
{
    while (!list_empty(&graveyard)) {
        struct probe *p = list_entry(graveyard.next, struct probe, link);
        list_del(&p->link);
        free(p);
    }
}

/* Reads data[].id from an OpenAI model list. */
static void take_models(struct probe *p, const char *body, size_t len)
{
    struct json_tok *t = xmalloc(PROBE_MAX_TOKENS * sizeof(*t));
    char models[REG_MAX_MODELS][REG_MODEL_MAX + 1];
    const char *names[REG_MAX_MODELS];
    unsigned n = 0;
    if (json_parse(body, len, t, PROBE_MAX_TOKENS) > 0) {
        int data = json_get(body, t, 0, "data");
        if (data >= 0 && t[data].type == JSON_ARRAY) {
            int e = data + 1;
            for (uint32_t i = 0; i < t[data].size && n < REG_MAX_MODELS; i++, e = (int)t[e].next) {
                int id = json_get(body, t, e, "id");
                if (id >= 0 && json_str(body, &t[id], models[n], sizeof(models[n])) > 0) {
                    names[n] = models[n];
                    n++;
                }
            }
            reg_set_probed_models(&p->w->srv->reg, p->b, names, n);
        }
    }
    free(t);
}

/* A whole response has arrived (the probe asked for Connection: close). */
static void probe_done_reading(struct probe *p)
{
    struct http1_msg m = {0};
    struct http1_limits lim = http1_default_limits;
    int hl = http1_parse_response(buf_data(&p->in), p->in.len, &m, &lim, false);
    if (hl <= 0) {
        probe_end(p, 0);
        return;
    }
    if (m.status == 200) {
        const char *body = buf_data(&p->in) + hl;
        size_t blen = p->in.len - (size_t)hl;
        if (m.framing == HTTP1_BODY_LENGTH && blen >= m.content_length)
            take_models(p, body, (size_t)m.content_length);
        else if (m.framing == HTTP1_BODY_CLOSE)
            take_models(p, body, blen);
        /* Chunked model lists are rare; the backend is alive all the same. */
    }
    /* A well-formed answer proves the server is up, unless it says it is
     * not (5xx: starting, overloaded, broken). A 404 from a server without
     * /v1/models is still a live server. */
    probe_end(p, m.status < 500 ? 1 : 0);
}

static void probe_io_cb(struct ev_loop *loop, struct ev_io *io, unsigned events)
{
    struct probe *p = io->data;
    UNUSED(loop);
    if (!p->connected) {
        if (!(events & (EV_WRITE | EV_ERROR)))
            return;
        if (net_connect_result(io->fd) != 0) {
            probe_end(p, 0);
            return;
        }
        p->connected = true;
    }
    while (p->sent < sizeof(probe_req) - 1) {
        ssize_t w = write(io->fd, probe_req + p->sent, sizeof(probe_req) - 1 - p->sent);
        if (w == -1) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return;
            probe_end(p, 0);
            return;
        }
        p->sent += (size_t)w;
    }
    for (;;) {
        if (p->in.len >= PROBE_MAX_RESPONSE) {
            probe_done_reading(p);
            return;
        }
        char *d = buf_reserve(&p->in, 4096);
        ssize_t r = read(io->fd, d, MIN(buf_room(&p->in), PROBE_MAX_RESPONSE - p->in.len));
        if (r > 0) {
            buf_commit(&p->in, (size_t)r);
            continue;
        }
        if (r == 0) {
            probe_done_reading(p);
            return;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN)
            return;
        probe_end(p, p->in.len > 0 ? 1 : 0);
        return;
    }
}

static void probe_timeout_cb(struct ev_loop *loop, struct ev_timer *t)
{
    struct probe *p = t->data;
    UNUSED(loop);
    /* Busy generating is not dead: only an idle backend that stays silent
     * fails its probe. */
    bool busy = atomic_load(&p->b->inflight) > 0;
    if (busy)
        log_debug("backend %s: probe timed out while busy; not counted", p->b->spec.name);
    probe_end(p, busy ? -1 : 0);
}

static void probe_begin(struct worker *w, struct backend *b)
{
    log_debug("probe %s (in flight %u)", b->spec.name, atomic_load(&b->inflight));
    int fd = net_connect(&b->addr);
    if (fd < 0) {
        reg_probe_result(&w->srv->reg, b, false, ev_now(w->loop));
        b->next_probe_ms = ev_now(w->loop) + w->rt->cfg.health_interval;
        return;
    }
    struct probe *p = xcalloc(1, sizeof(*p));
    p->w = w;
    p->b = b;
    backend_ref(b);
    b->probing = true;
    list_add_tail(&probes, &p->link);
    if (ev_io_start(w->loop, &p->io, fd, probe_io_cb, p) != 0) {
        close(fd);
        p->io.fd = -1;
        probe_end(p, -1);
        return;
    }
    ev_timer_start(w->loop, &p->timer, w->rt->cfg.probe_timeout, probe_timeout_cb, p);
}

static void tick_cb(struct ev_loop *loop, struct ev_timer *t)
{
    struct worker *w = t->data;
    struct backend **v;
    int64_t now = ev_now(loop);
    unsigned n = reg_snapshot(&w->srv->reg, &v);
    for (unsigned i = 0; i < n; i++) {
        struct backend *b = v[i];
        bool idle = atomic_load(&b->inflight) == 0;
        bool down = b->down_until > now; /* racy read: a hint for scheduling only */
        if (!b->probing && b->next_probe_ms <= now && (idle || down) && !w->draining)
            probe_begin(w, b);
        backend_unref(b);
    }
    free(v);
    if (!w->draining)
        ev_timer_start(loop, &tick, PROBE_TICK_MS, tick_cb, w);
}

void probe_start(struct worker *w)
{
    if (w->rt->cfg.health_interval == 0)
        return;
    probe_worker = w;
    ev_timer_start(w->loop, &tick, 10, tick_cb, w);
}

void probe_stop(struct worker *w)
{
    if (probe_worker != w)
        return;
    ev_timer_stop(w->loop, &tick);
    while (!list_empty(&probes))
        probe_end(list_entry(probes.next, struct probe, link), -1);
}
