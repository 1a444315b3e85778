/* SPDX-License-Identifier: MIT
 * A stand-in for src/watcher/xfer.c and the loop clock, for the unit tests
 * of the watcher modules that make requests (k8s.c, push.c): no libcurl, no
 * network. xfer_new() records the request; the test plays the server by
 * feeding the one in flight stream bytes (fake_stream()) and ending it
 * (fake_finish()), which runs the module's callbacks exactly as
 * xfer_dispatch() would. k8s_now_ms() is the settable fake_now.
 *
 * Included once, after the module under test, by tests/unit/test_watch_*.c. */
#ifndef LLAMALB_TEST_WATCH_FAKE_XFER_H
#define LLAMALB_TEST_WATCH_FAKE_XFER_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "util.h"
#include "../../src/watcher/xfer.h"

#define FAKE_MAX 64

struct fake_req {
    struct xfer x;          /* first: the module holds &fake_req.x */
    char method[16];
    char url[4096];
    char auth[4200];        /* the Authorization header line, or "" */
    long timeout_ms;
    bool live;              /* started, not yet finished or cancelled */
};

static int64_t fake_now = 1000000;
static struct fake_req *fake_live[FAKE_MAX]; /* requests in flight, in start order */
static size_t fake_nlive;
static unsigned fake_started, fake_cancelled;

int64_t k8s_now_ms(void)
{
    return fake_now;
}

struct xfer *xfer_new(const char *method, const char *url, const char *body, size_t max_body,
                      xfer_done_cb *on_done, void *data)
{
    struct fake_req *f = xcalloc(1, sizeof(*f));
    snprintf(f->method, sizeof(f->method), "%s", method);
    snprintf(f->url, sizeof(f->url), "%s", url);
    f->x.max_body = max_body;
    f->x.on_done = on_done;
    f->x.data = data;
    f->x.req_body = body ? xstrdup(body) : NULL;
    return &f->x;
}

void xfer_header(struct xfer *x, const char *line)
{
    struct fake_req *f = (struct fake_req *)x;
    if (strncmp(line, "Authorization:", 14) == 0)
        snprintf(f->auth, sizeof(f->auth), "%s", line);
}

void xfer_timeout(struct xfer *x, long ms)
{
    ((struct fake_req *)x)->timeout_ms = ms;
}

void xfer_escape(struct buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            buf_append(b, s, 1);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            buf_append(b, e, 3);
        }
    }
}

const char *xfer_strerror(CURLcode rc)
{
    return rc == CURLE_COULDNT_CONNECT ? "Couldn't connect to server" : "transport error";
}

static void fake_free(struct fake_req *f)
{
    buf_free(&f->x.body);
    free(f->x.req_body);
    free(f);
}

static void fake_unlink(struct fake_req *f)
{
    for (size_t i = 0; i < fake_nlive; i++)
        if (fake_live[i] == f) {
            memmove(&fake_live[i], &fake_live[i + 1], (fake_nlive - i - 1) * sizeof(*fake_live));
            fake_nlive--;
            break;
        }
    f->live = false;
}

int xfer_start(struct xfer *x)
{
    struct fake_req *f = (struct fake_req *)x;
    if (fake_nlive == FAKE_MAX) {
        fake_free(f);
        return -5;
    }
    f->live = true;
    fake_live[fake_nlive++] = f;
    fake_started++;
    return 0;
}

void xfer_cancel(struct xfer *x)
{
    if (x == NULL)
        return;
    struct fake_req *f = (struct fake_req *)x;
    fake_unlink(f);
    fake_cancelled++;
    fake_free(f);
}

/* The oldest request in flight, or NULL. */
static inline struct fake_req *fake_first(void)
{
    return fake_nlive ? fake_live[0] : NULL;
}

/* Body bytes of request <f> arriving with HTTP <status>: the streaming
 * callback if it has one (its answer returned), else collected as xfer.c
 * does (false once over max_body). */
static bool fake_stream(struct fake_req *f, long status, const char *p)
{
    size_t n = strlen(p);
    if (f->x.on_data != NULL)
        return f->x.on_data(&f->x, status, p, n);
    if (f->x.body.len + n > f->x.max_body) {
        f->x.too_big = true;
        return false;
    }
    buf_append(&f->x.body, p, n);
    return true;
}

/* Request <f> ends with curl result <rc> and HTTP <status> after <body>
 * (NULL: nothing more): its done callback runs, then it is freed. */
static void fake_finish(struct fake_req *f, CURLcode rc, long status, const char *body)
{
    if (f == NULL) {
        printf("# fake_finish: no such request in flight\n");
        return;
    }
    if (body != NULL && !fake_stream(f, status, body))
        rc = CURLE_WRITE_ERROR;
    fake_unlink(f);
    if (f->x.on_done != NULL)
        f->x.on_done(&f->x, rc, status);
    fake_free(f);
}

#endif
