/* SPDX-License-Identifier: MIT
 * Intrusive circular doubly-linked list (the Linux kernel's shape). A list
 * head is a struct list whose next/prev point at itself when empty; call
 * list_init() on it (a zeroed head is NOT empty-valid). Entries embed a
 * struct list; list_entry() gets back the container. */
#ifndef LLAMALB_LIST_H
#define LLAMALB_LIST_H

#include <stdbool.h>
#include <stddef.h>

struct list {
    struct list *next, *prev;
};

#define list_entry(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

static inline void list_init(struct list *h) { h->next = h->prev = h; }
static inline bool list_empty(const struct list *h) { return h->next == h; }
/* True if <e> (initialized with list_init or removed with list_del) is linked. */
static inline bool list_linked(const struct list *e) { return e->next != NULL && e->next != e; }

static inline void list_add_head(struct list *h, struct list *e)
{
    e->next = h->next;
    e->prev = h;
    h->next->prev = e;
    h->next = e;
}

static inline void list_add_tail(struct list *h, struct list *e)
{
    e->prev = h->prev;
    e->next = h;
    h->prev->next = e;
    h->prev = e;
}

/* Unlinks <e> and leaves it self-linked (so list_linked() is false). */
static inline void list_del(struct list *e)
{
    e->prev->next = e->next;
    e->next->prev = e->prev;
    e->next = e->prev = e;
}

#endif
