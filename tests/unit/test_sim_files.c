/* SPDX-License-Identifier: MIT
 * Unit tests of files.c: the in-memory /v1/files and /v1/chunks store
 * (multipart upload, list order, content, download, delete, chunking). */
#include <stdio.h>
#include <string.h>

#include "../tap.h"
#include "buf.h"
#include "../../src/sim/sim.h"

static struct sim_files *fs;
static uint64_t rng = 7;
static struct buf out;
static struct sim_files_reply rep;

/* Sends one request to the store; returns the answer body (NUL-terminated
 * copy in a static buffer). */
static const char *req(const char *method, const char *path, const char *ctype,
                       const char *body)
{
    static char copy[4096];
    out.off = out.len = 0;
    memset(&rep, 0, sizeof(rep));
    sim_files_handle(fs, slice_cstr(method), slice_cstr(path), slice_cstr(ctype), body,
                     strlen(body), &rng, &out, &rep);
    snprintf(copy, sizeof(copy), "%.*s", (int)out.len, out.area + out.off);
    return copy;
}

static const char *upload(const char *name, const char *data, char id[64])
{
    char body[1024];
    snprintf(body, sizeof(body),
             "--XyZ\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nassistants\r\n"
             "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"%s\"\r\n"
             "Content-Type: text/plain\r\n\r\n%s\r\n--XyZ--\r\n",
             name, data);
    const char *r = req("POST", "/v1/files", "multipart/form-data; boundary=XyZ", body);
    const char *p = strstr(r, "\"id\":\"");
    id[0] = '\0';
    if (p != NULL)
        sscanf(p + 6, "%63[^\"]", id);
    return r;
}

int main(void)
{
    char id1[64], id2[64], path[160];
    const char *r;
    fs = sim_files_new();

    r = upload("a.txt", "hello big world", id1);
    is_int(rep.status, 200, "upload 200");
    ok(strncmp(id1, "file_", 5) == 0 && strlen(id1) == 41, "file id is file_<uuid>: %s", id1);
    ok(strstr(r, "\"bytes\":15,") && strstr(r, "\"filename\":\"a.txt\",\"object\":\"file\","
                                               "\"purpose\":\"assistants\"}"),
       "file object: %s", r);
    upload("b.txt", "second", id2);

    r = req("GET", "/v1/files", "", "");
    const char *p1 = strstr(r, id1), *p2 = strstr(r, id2);
    ok(p1 && p2 && p2 < p1 && strncmp(r, "{\"object\":\"list\",\"data\":[{", 26) == 0,
       "list: both, newest first: %s", r);

    snprintf(path, sizeof(path), "/v1/files/%s/content", id1);
    r = req("GET", path, "", "");
    ok(strcmp(r, "hello big world") == 0 && strcmp(rep.ctype, "text/plain") == 0,
       "content: the bytes, text/plain");
    snprintf(path, sizeof(path), "/v1/files/download/%s", id1);
    req("GET", path, "", "");
    ok(strcmp(rep.disposition, "attachment; filename=\"a.txt\"") == 0, "download disposition");

    char chunk_req[200];
    snprintf(chunk_req, sizeof(chunk_req), "{\"id\":\"%s\",\"chunk_capacity\":10}", id1);
    r = req("POST", "/v1/chunks", "application/json", chunk_req);
    ok(strstr(r, "\"chunks\":[\"hello big \",\"world\"]}") != NULL,
       "chunks cut at whitespace, at most N bytes: %s", r);

    snprintf(path, sizeof(path), "/v1/files/%s", id1);
    r = req("DELETE", path, "", "");
    ok(strstr(r, "\"deleted\":true}") != NULL, "delete: %s", r);
    r = req("DELETE", path, "", "");
    ok(strstr(r, "\"deleted\":false}") != NULL, "deleted twice: false");
    r = req("GET", path, "", "");
    is_int(rep.status, 500, "gone: 500");
    ok(strcmp(r, "500 Internal Server Error: Failed to find the target file.") == 0 &&
           rep.ctype == NULL,
       "gone: the real plain-text error");
    r = req("GET", "/v1/files", "", "");
    ok(strstr(r, id1) == NULL && strstr(r, id2) != NULL, "list after delete");
    r = req("GET", "/v1/files/nope", "", "");
    ok(strstr(r, "must start with `file_`") != NULL, "bad id text");
    r = req("POST", "/v1/files", "multipart/form-data; boundary=XyZ", "--XyZ--\r\n");
    is_int(rep.status, 500, "upload without a file part");

    sim_files_free(fs);
    buf_free(&out);
    buf_cache_drain();
    return done_testing();
}
