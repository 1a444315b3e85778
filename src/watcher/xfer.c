/* SPDX-License-Identifier: MIT
 * libcurl easy handles on one multi handle (see xfer.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "buf.h"
#include "util.h"
#include "xfer.h"

static CURLM *g_multi;

void xfer_init(CURLM *multi)
{
    g_multi = multi;
}

static size_t on_write(char *p, size_t size, size_t nmemb, void *ud)
{
    struct xfer *x = ud;
    size_t n = size * nmemb;
    long status = 0;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
    if (x->on_data != NULL)
        return x->on_data(x, status, p, n) ? n : 0;
    if (x->body.len + n > x->max_body) {
        x->too_big = true;
        return 0;
    }
    buf_append(&x->body, p, n);
    return n;
}

static void xfer_free(struct xfer *x)
{
    curl_easy_cleanup(x->easy);
    curl_slist_free_all(x->hdrs);
    buf_free(&x->body);
    free(x->req_body);
    free(x);
}

struct xfer *xfer_new(const char *method, const char *url, const char *body, size_t max_body,
                      xfer_done_cb *on_done, void *data)
{
    struct xfer *x = xcalloc(1, sizeof(*x));
    x->easy = curl_easy_init();
    if (x->easy == NULL) {
        free(x);
        return NULL;
    }
    x->max_body = max_body;
    x->on_done = on_done;
    x->data = data;
    curl_easy_setopt(x->easy, CURLOPT_URL, url);
    curl_easy_setopt(x->easy, CURLOPT_PRIVATE, x);
    curl_easy_setopt(x->easy, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(x->easy, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(x->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(x->easy, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(x->easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(x->easy, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(x->easy, CURLOPT_USERAGENT, "llamalb-watcher/" LLAMALB_VERSION);
    if (strcmp(method, "GET") != 0)
        curl_easy_setopt(x->easy, CURLOPT_CUSTOMREQUEST, method);
    if (body != NULL) {
        x->req_body = xstrdup(body);
        curl_easy_setopt(x->easy, CURLOPT_POSTFIELDS, x->req_body);
        curl_easy_setopt(x->easy, CURLOPT_POSTFIELDSIZE, (long)strlen(x->req_body));
        xfer_header(x, "Content-Type: application/json");
    }
    /* No "Expect: 100-continue" round trip for the small admin bodies. */
    xfer_header(x, "Expect:");
    return x;
}

void xfer_header(struct xfer *x, const char *line)
{
    x->hdrs = curl_slist_append(x->hdrs, line);
}

void xfer_timeout(struct xfer *x, long ms)
{
    curl_easy_setopt(x->easy, CURLOPT_TIMEOUT_MS, ms);
}

void xfer_escape(struct buf *b, const char *s)
{
    if (s == NULL)
        return;
    char *esc = curl_easy_escape(NULL, s, 0);
    if (esc != NULL)
        buf_append_str(b, esc);
    curl_free(esc);
}

const char *xfer_strerror(CURLcode rc)
{
    return curl_easy_strerror(rc);
}

int xfer_start(struct xfer *x)
{
    curl_easy_setopt(x->easy, CURLOPT_HTTPHEADER, x->hdrs);
    if (curl_multi_add_handle(g_multi, x->easy) != CURLM_OK) {
        xfer_free(x);
        return -EIO;
    }
    return 0;
}

void xfer_cancel(struct xfer *x)
{
    if (x == NULL)
        return;
    curl_multi_remove_handle(g_multi, x->easy);
    xfer_free(x);
}

void xfer_dispatch(void)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(g_multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE)
            continue;
        struct xfer *x = NULL;
        long status = 0;
        CURLcode rc = m->data.result;
        CURL *e = m->easy_handle;
        curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&x);
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
        curl_multi_remove_handle(g_multi, e);
        if (x->on_done != NULL)
            x->on_done(x, rc, status);
        xfer_free(x);
    }
}
