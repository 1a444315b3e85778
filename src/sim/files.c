/* SPDX-License-Identifier: MIT
 * /v1/files and /v1/chunks, kept in memory per instance. The real server
 * stores uploads under archives/ on its own disk, so a file id exists only on
 * the replica that received it; the simulator keeps that
 * property, which is what balancer tests of sticky routing need. */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "json.h"
#include "list.h"
#include "sim.h"
#include "util.h"

#define FILES_MAX_BYTES ((size_t)256 << 20) /* total bytes stored per instance */

/* One uploaded file. Owned by the store's list. */
struct sim_file {
    struct list node;     /* in sim_files.list */
    char id[48];          /* "file_<uuid>" */
    char *name;           /* decoded filename, heap */
    struct buf data;      /* the bytes */
    int64_t created_at;   /* wall seconds */
};

struct sim_files {
    struct list list;      /* the files, newest first */
    size_t bytes;          /* sum of data lengths */
};

struct sim_files *sim_files_new(void)
{
    struct sim_files *fs = xcalloc(1, sizeof(*fs));
    list_init(&fs->list);
    return fs;
}

static void file_free(struct sim_file *f)
{
    free(f->name);
    buf_free(&f->data);
    free(f);
}

void sim_files_free(struct sim_files *fs)
{
    if (fs == NULL)
        return;
    while (!list_empty(&fs->list)) {
        struct sim_file *f = list_entry(fs->list.next, struct sim_file, node);
        list_del(&f->node);
        file_free(f);
    }
    free(fs);
}

static struct sim_file *find(struct sim_files *fs, struct slice id)
{
    for (struct list *it = fs->list.next; it != &fs->list; it = it->next) {
        struct sim_file *f = list_entry(it, struct sim_file, node);
        if (slice_eq_cstr(id, f->id))
            return f;
    }
    return NULL;
}

/* FileObject: id, bytes, created_at, filename, object, purpose. */
static void put_file(struct buf *out, const struct sim_file *f)
{
    buf_printf(out, "{\"id\":\"%s\",\"bytes\":%zu,\"created_at\":%lld,\"filename\":", f->id,
               f->data.len, (long long)f->created_at);
    json_append_str(out, f->name, strlen(f->name));
    buf_append_str(out, ",\"object\":\"file\",\"purpose\":\"assistants\"}");
}

static void fail(struct buf *out, struct sim_files_reply *rep, const char *msg)
{
    rep->status = 500;
    rep->ctype = NULL;
    buf_printf(out, "500 Internal Server Error: %s", msg);
}

static const char *memmem_s(const char *h, size_t hl, const char *n, size_t nl)
{
    return nl == 0 ? h : memmem(h, hl, n, nl);
}

/* Finds the "file" part of a multipart/form-data body. Returns 0 and sets
 * <data> and <name>, or -EINVAL. */
static int multipart_file(struct slice ctype, const char *body, size_t len, struct slice *data,
                          struct slice *name)
{
    char delim[256];
    const char *b = memmem_s(ctype.p, ctype.len, "boundary=", 9);
    if (b == NULL)
        return -EINVAL;
    b += 9;
    size_t blen = ctype.len - (size_t)(b - ctype.p);
    if (blen > 0 && b[0] == '"') {
        b++;
        const char *q = memchr(b, '"', blen - 1);
        blen = q ? (size_t)(q - b) : 0;
    } else {
        const char *semi = memchr(b, ';', blen);
        if (semi != NULL)
            blen = (size_t)(semi - b);
    }
    if (blen == 0 || blen > 200)
        return -EINVAL;
    int dl = snprintf(delim, sizeof(delim), "--%.*s", (int)blen, b);
    const char *p = memmem_s(body, len, delim, (size_t)dl);
    while (p != NULL) {
        const char *end = body + len;
        p += dl;
        if (end - p >= 2 && p[0] == '-' && p[1] == '-')
            return -EINVAL; /* closing delimiter: no file part */
        if (end - p < 2 || p[0] != '\r' || p[1] != '\n')
            return -EINVAL;
        p += 2;
        const char *hend = memmem_s(p, (size_t)(end - p), "\r\n\r\n", 4);
        if (hend == NULL)
            return -EINVAL;
        const char *content = hend + 4;
        /* The part ends at CRLF + delimiter. */
        char term[260];
        int tl = snprintf(term, sizeof(term), "\r\n%s", delim);
        const char *next = memmem_s(content, (size_t)(end - content), term, (size_t)tl);
        if (next == NULL)
            return -EINVAL;
        struct slice hdrs = slice_make(p, (size_t)(hend - p));
        const char *nm = memmem_s(hdrs.p, hdrs.len, "name=\"file\"", 11);
        if (nm != NULL) {
            const char *fn = memmem_s(hdrs.p, hdrs.len, "filename=\"", 10);
            *name = SLICE_LIT("file");
            if (fn != NULL) {
                fn += 10;
                const char *q = memchr(fn, '"', (size_t)(hdrs.p + hdrs.len - fn));
                if (q != NULL && q > fn)
                    *name = slice_make(fn, (size_t)(q - fn));
            }
            *data = slice_make(content, (size_t)(next - content));
            return 0;
        }
        p = next + 2;
    }
    return -EINVAL;
}

static void upload(struct sim_files *fs, struct slice ctype, const char *body, size_t len,
                   uint64_t *rng, struct buf *out, struct sim_files_reply *rep)
{
    struct slice data, name;
    if (multipart_file(ctype, body, len, &data, &name) != 0) {
        fail(out, rep, "Failed to upload the target file. The `file` part is missing.");
        return;
    }
    if (fs->bytes + data.len > FILES_MAX_BYTES) {
        fail(out, rep, "Failed to upload the target file. The store is full.");
        return;
    }
    struct sim_file *f = xcalloc(1, sizeof(*f));
    char u[37];
    sim_uuid(rng, u);
    snprintf(f->id, sizeof(f->id), "file_%s", u);
    f->name = xstrndup(name.p, name.len);
    buf_append(&f->data, data.p, data.len);
    f->created_at = util_wall_s();
    list_add_head(&fs->list, &f->node);
    fs->bytes += data.len;
    put_file(out, f);
}

static void chunks(struct sim_files *fs, const char *body, size_t len, struct buf *out,
                   struct sim_files_reply *rep)
{
    struct json_tok t[64];
    int n = json_parse(body, len, t, 64);
    if (n < 0 || t[0].type != JSON_OBJECT) {
        fail(out, rep, "Failed to deserialize the chunks request.");
        return;
    }
    int id = json_get(body, t, 0, "id"), cap = json_get(body, t, 0, "chunk_capacity");
    int64_t capacity = 100;
    if (cap >= 0 && json_int(body, &t[cap], 1, 1 << 20, &capacity) != 0) {
        fail(out, rep, "Invalid `chunk_capacity`.");
        return;
    }
    struct sim_file *f =
        id >= 0 && t[id].type == JSON_STRING ? find(fs, json_raw(body, &t[id])) : NULL;
    if (f == NULL) {
        fail(out, rep, "Failed to find the target file.");
        return;
    }
    /* Cuts at whitespace when possible, like a text splitter would. */
    buf_printf(out, "{\"id\":\"%s\",\"filename\":", f->id);
    json_append_str(out, f->name, strlen(f->name));
    buf_append_str(out, ",\"chunks\":[");
    const char *p = buf_data(&f->data);
    size_t left = f->data.len, k = 0;
    while (left > 0) {
        size_t take = MIN(left, (size_t)capacity);
        if (take < left) {
            size_t s = take;
            while (s > 0 && p[s - 1] != ' ' && p[s - 1] != '\n')
                s--;
            if (s > 0)
                take = s;
        }
        if (k++ > 0)
            buf_append_str(out, ",");
        json_append_str(out, p, take);
        p += take;
        left -= take;
    }
    buf_append_str(out, "]}");
}

void sim_files_handle(struct sim_files *fs, struct slice method, struct slice path,
                      struct slice ctype, const char *body, size_t len, uint64_t *rng,
                      struct buf *out, struct sim_files_reply *rep)
{
    rep->status = 200;
    rep->ctype = "application/json";
    rep->disposition[0] = '\0';
    bool get = slice_eq_cstr(method, "GET"), del = slice_eq_cstr(method, "DELETE");

    if (slice_eq_cstr(path, "/v1/chunks")) {
        chunks(fs, body, len, out, rep);
        return;
    }
    if (slice_eq_cstr(path, "/v1/files")) {
        if (slice_eq_cstr(method, "POST")) {
            upload(fs, ctype, body, len, rng, out, rep);
        } else if (get) {
            buf_append_str(out, "{\"object\":\"list\",\"data\":[");
            for (struct list *it = fs->list.next; it != &fs->list; it = it->next) {
                put_file(out, list_entry(it, struct sim_file, node));
                if (it->next != &fs->list)
                    buf_append_str(out, ",");
            }
            buf_append_str(out, "]}");
        } else {
            fail(out, rep, "Invalid HTTP Method.");
        }
        return;
    }
    /* /v1/files/{id}, /v1/files/{id}/content, /v1/files/download/{id} */
    struct slice rest = slice_make(path.p + 10, path.len - 10);
    bool download = slice_starts_with(rest, "download/"), content = false;
    if (download) {
        rest.p += 9;
        rest.len -= 9;
    } else if (rest.len > 8 && memcmp(rest.p + rest.len - 8, "/content", 8) == 0) {
        content = true;
        rest.len -= 8;
    }
    if (!slice_starts_with(rest, "file_")) {
        fail(out, rep, "Invalid file id. The id must start with `file_`.");
        return;
    }
    struct sim_file *f = find(fs, rest);
    if (del && !download && !content) {
        buf_append_str(out, "{\"id\":");
        json_append_str(out, rest.p, rest.len);
        buf_printf(out, ",\"object\":\"file\",\"deleted\":%s}", f ? "true" : "false");
        if (f != NULL) {
            list_del(&f->node);
            fs->bytes -= f->data.len;
            file_free(f);
        }
        return;
    }
    if (!get) {
        fail(out, rep, "Invalid HTTP Method.");
        return;
    }
    if (f == NULL) {
        fail(out, rep, "Failed to find the target file.");
        return;
    }
    if (download) {
        rep->ctype = "application/octet-stream";
        snprintf(rep->disposition, sizeof(rep->disposition), "attachment; filename=\"%.200s\"",
                 f->name);
        buf_append(out, buf_data(&f->data), f->data.len);
    } else if (content) {
        rep->ctype = "text/plain";
        buf_append(out, buf_data(&f->data), f->data.len);
    } else {
        put_file(out, f);
    }
}
