/* SPDX-License-Identifier: MIT
 * The uploaded-file map: which backend holds each uploaded file id, so
 * that later requests for it go there (POST /v1/files, then requests that
 * name the id). Its own lock, files_lock: a /v1/files request has nothing
 * to do with the set. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "registry_int.h"
#include "util.h"

/* Uploaded files: which backend holds each id, so that later requests for
 * it go there. Every /v1/files/{id} request looks an id up, so this is a
 * ring of the REG_MAX_FILES latest uploads (the oldest overwritten first)
 * with an open-addressed index on the id, twice the ring's size so probes
 * stay short: put and get are O(1), where a scan of the ring was up to
 * 65,536 string compares. An id uploaded again moves to the newest entry
 * (its older one is emptied), so a lookup finds the latest copy and an
 * entry is forgotten REG_MAX_FILES uploads after it was made, as before. */
#define FILES_INDEX (2 * REG_MAX_FILES)

struct reg_file {
    uint32_t hash;                  /* low 32 bits of reg_str_hash(id) */
    char id[REG_FILE_ID_MAX + 1];   /* "" = empty */
    char backend[REG_NAME_MAX + 1];
};

struct reg_files {
    struct reg_file ring[REG_MAX_FILES];
    unsigned head;                  /* the next entry to (over)write */
    uint32_t index[FILES_INDEX];    /* ring index + 1; 0 = empty cell */
};

/* The index cell holding <id> (hash <h>), or the empty one where it would
 * go. files_lock held. */
static unsigned files_cell(const struct reg_files *f, const char *id, uint32_t h)
{
    unsigned c = h & (FILES_INDEX - 1);
    for (; f->index[c] != 0; c = (c + 1) & (FILES_INDEX - 1)) {
        const struct reg_file *e = &f->ring[f->index[c] - 1];
        if (e->hash == h && strcmp(e->id, id) == 0)
            break;
    }
    return c;
}

/* Empties index cell <hole>, shifting back the entries probed past it (as
 * the names table does (registry.c): no tombstones). files_lock held. */
static void files_unindex(struct reg_files *f, unsigned hole)
{
    const unsigned mask = FILES_INDEX - 1;
    for (unsigned c = (hole + 1) & mask; f->index[c] != 0; c = (c + 1) & mask) {
        unsigned home = f->ring[f->index[c] - 1].hash & mask;
        if (((c - home) & mask) >= ((c - hole) & mask)) {
            f->index[hole] = f->index[c];
            hole = c;
        }
    }
    f->index[hole] = 0;
}

void reg_file_put(struct registry *r, const char *id, const char *name)
{
    size_t len = strlen(id);
    if (len == 0 || len > REG_FILE_ID_MAX)
        return; /* could never be looked up */
    uint32_t h = (uint32_t)reg_str_hash(id);
    /* The table (21 MB, untouched pages cost nothing) is made on the first
     * upload, outside the lock. */
    pthread_mutex_lock(&r->files_lock);
    struct reg_files *f = r->files, *made = NULL;
    pthread_mutex_unlock(&r->files_lock);
    if (f == NULL)
        made = xcalloc(1, sizeof(*made));
    pthread_mutex_lock(&r->files_lock);
    if (r->files == NULL) {
        r->files = made;
        made = NULL;
    }
    f = r->files;
    unsigned c = files_cell(f, id, h);
    if (f->index[c] != 0) { /* uploaded again: forget the older entry */
        f->ring[f->index[c] - 1].id[0] = '\0';
        files_unindex(f, c);
    }
    struct reg_file *e = &f->ring[f->head];
    if (e->id[0] != '\0') /* the oldest entry goes */
        files_unindex(f, files_cell(f, e->id, e->hash));
    e->hash = h;
    memcpy(e->id, id, len + 1);
    snprintf(e->backend, sizeof(e->backend), "%s", name);
    f->index[files_cell(f, id, h)] = f->head + 1;
    f->head = (f->head + 1) % REG_MAX_FILES;
    pthread_mutex_unlock(&r->files_lock);
    free(made);
}

bool reg_file_get(struct registry *r, const char *id, char *name, size_t len)
{
    bool found = false;
    if (strlen(id) > REG_FILE_ID_MAX)
        return false;
    uint32_t h = (uint32_t)reg_str_hash(id);
    pthread_mutex_lock(&r->files_lock);
    if (r->files != NULL) {
        unsigned slot = r->files->index[files_cell(r->files, id, h)];
        if (slot != 0) {
            snprintf(name, len, "%s", r->files->ring[slot - 1].backend);
            found = true;
        }
    }
    pthread_mutex_unlock(&r->files_lock);
    return found;
}

