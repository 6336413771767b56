/* A region allocator: many small allocations, freed together. Each inbound
 * message gets one and releases it as a whole (nginx and h2o pools). */
#ifndef MG_CORE_ARENA_H
#define MG_CORE_ARENA_H

#include <stddef.h>

#include "core/str.h"

struct mg_arena_block;

struct mg_arena {
    /* private */
    struct mg_arena_block *head; /* newest block first */
    size_t block_size;           /* default size of a new block */
    size_t used;                 /* bytes handed out, all blocks */
    size_t max;                  /* allocations past this fail; 0 = none */
};

/* Initialises an empty arena; no allocation until the first use. */
void mg_arena_init(struct mg_arena *a, size_t block_size, size_t max);
/* Frees every block. */
void mg_arena_dispose(struct mg_arena *a);
/* Frees all but the first block and rewinds it, for reuse. */
void mg_arena_reset(struct mg_arena *a);
/* Aligned memory that lives until dispose/reset; NULL when out of memory or
 * past max. */
void *mg_arena_alloc(struct mg_arena *a, size_t n);
void *mg_arena_calloc(struct mg_arena *a, size_t n);
/* A NUL-terminated copy of s in the arena. */
char *mg_arena_strndup(struct mg_arena *a, const char *s, size_t n);
static inline char *
mg_arena_strdup_str(struct mg_arena *a, struct mg_str s)
{
    return mg_arena_strndup(a, s.ptr, s.len);
}

#endif
