/* SPDX-License-Identifier: MIT
 * One HTTP request on the watcher's libcurl multi handle: the API server's
 * lists and watch streams and the balancers' admin calls all go through it,
 * so a single curl_multi_poll() in main.c drives every socket. */
#ifndef LLAMALB_WATCH_XFER_H
#define LLAMALB_WATCH_XFER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>

#include "buf.h"

struct xfer;

/* Streaming body data (status already known as <status>). Returning false
 * aborts the transfer; its done callback then sees CURLE_WRITE_ERROR. */
typedef bool xfer_data_cb(struct xfer *x, long status, const char *p, size_t n);
/* The transfer ended: <rc> is curl's result, <status> the HTTP status (0 if
 * none arrived). <x>->body holds the body unless a data callback took it. The
 * xfer is freed right after this returns. */
typedef void xfer_done_cb(struct xfer *x, CURLcode rc, long status);

/* Owned by the multi dispatcher from xfer_start() until its done callback
 * returns (or xfer_cancel()); owners keep a pointer and drop it there. */
struct xfer {
    CURL *easy;
    struct curl_slist *hdrs;
    struct buf body;        /* response body when no data callback is set */
    size_t max_body;        /* bytes; a longer body aborts the transfer */
    bool too_big;           /* set when max_body was hit */
    char *req_body;         /* owned copy of the request body, or NULL */
    xfer_data_cb *on_data;  /* NULL: collect the body into .body */
    xfer_done_cb *on_done;
    void *data;             /* owner's pointer */
};

/* Sets the multi handle every xfer goes to. Call once at start-up. */
void xfer_init(CURLM *multi);

/* A new request for <url> (copied) with method <method> ("GET", "PUT", ...)
 * and, if <body> is not NULL, that JSON body (copied). Not started yet: the
 * caller may set more curl options on ->easy and headers via xfer_header(). */
struct xfer *xfer_new(const char *method, const char *url, const char *body, size_t max_body,
                      xfer_done_cb *on_done, void *data);
/* Adds one request header line (copied). */
void xfer_header(struct xfer *x, const char *line);
/* Gives up on <x> after <ms> in all (CURLOPT_TIMEOUT_MS); set before starting. */
void xfer_timeout(struct xfer *x, long ms);
/* Appends <s> to <b> percent-encoded for a URL query (every byte but
 * A-Z a-z 0-9 - . _ ~ as %XX, as curl_easy_escape() does); NULL appends nothing. */
void xfer_escape(struct buf *b, const char *s);
/* A one-line description of a transport failure (curl_easy_strerror()). */
const char *xfer_strerror(CURLcode rc);
/* Hands <x> to the multi handle. Returns 0 or -EIO (then <x> is freed and
 * its callback never runs). */
int xfer_start(struct xfer *x);
/* Stops <x> and frees it without calling its done callback. */
void xfer_cancel(struct xfer *x);
/* Runs the done callbacks of finished transfers. Call after each poll. */
void xfer_dispatch(void);

#endif
