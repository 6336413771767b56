/* Region allocator backed by a list of blocks. */
#include "core/arena.h"

#include <stdalign.h>
#include <stdint.h>
#include <string.h>

#include "core/alloc.h"

struct mg_arena_block {
    struct mg_arena_block *next;
    size_t size; /* usable bytes in data */
    size_t off;  /* next free byte */
    alignas(max_align_t) unsigned char data[];
};

void
mg_arena_init(struct mg_arena *a, size_t block_size, size_t max)
{
    a->head = NULL;
    a->block_size = block_size ? block_size : 4096;
    a->used = 0;
    a->max = max;
}

void
mg_arena_dispose(struct mg_arena *a)
{
    struct mg_arena_block *b = a->head, *next;

    while (b != NULL) {
        next = b->next;
        mg_free(b);
        b = next;
    }
    a->head = NULL;
    a->used = 0;
}

void
mg_arena_reset(struct mg_arena *a)
{
    struct mg_arena_block *keep = a->head, *b, *next;

    if (keep == NULL)
        return;
    /* Keep the largest-ever block? Simpler: keep the newest, free the rest. */
    b = keep->next;
    while (b != NULL) {
        next = b->next;
        mg_free(b);
        b = next;
    }
    keep->next = NULL;
    keep->off = 0;
    a->used = 0;
}

void *
mg_arena_alloc(struct mg_arena *a, size_t n)
{
    const size_t align = alignof(max_align_t);
    struct mg_arena_block *b = a->head;
    size_t size;

    /* Leave room for the rounding and the block header: a size near
     * SIZE_MAX would wrap to a tiny block. */
    if (n > SIZE_MAX - sizeof(*b) - align)
        return NULL;
    n = (n + align - 1) & ~(align - 1);
    if (n == 0)
        n = align;
    if (a->max != 0 && (n > a->max || a->used > a->max - n))
        return NULL;
    if (b == NULL || b->size - b->off < n) {
        size = n > a->block_size ? n : a->block_size;
        b = mg_malloc(sizeof(*b) + size);
        if (b == NULL)
            return NULL;
        b->size = size;
        b->off = 0;
        b->next = a->head;
        a->head = b;
    }
    b->off += n;
    a->used += n;
    return b->data + b->off - n;
}

void *
mg_arena_calloc(struct mg_arena *a, size_t n)
{
    void *p = mg_arena_alloc(a, n);

    if (p != NULL)
        memset(p, 0, n);
    return p;
}

char *
mg_arena_strndup(struct mg_arena *a, const char *s, size_t n)
{
    char *p = mg_arena_alloc(a, n + 1);

    if (p == NULL)
        return NULL;
    if (n > 0)
        memcpy(p, s, n);
    p[n] = '\0';
    return p;
}
