/* Every heap allocation in medgate goes through these (libuv is pointed at
 * them with uv_replace_allocator in main), so tests can count allocations,
 * find leaks and inject failures (STYLE.md section 5). */
#ifndef MG_CORE_ALLOC_H
#define MG_CORE_ALLOC_H

#include <stddef.h>

void *mg_malloc(size_t n);
void *mg_calloc(size_t count, size_t n);
void *mg_realloc(void *p, size_t n);
void mg_free(void *p);
/* A NUL-terminated copy of s (or of its first n bytes); NULL when out of memory. */
char *mg_strdup(const char *s);
char *mg_strndup(const char *s, size_t n);

/* Allocations made and not yet freed (approximate across threads). */
long mg_alloc_live(void);
/* Tests: make the nth allocation from now fail (0 disables). */
void mg_alloc_fail_after(long n);

/* Overwrite a secret so the compiler cannot drop the write. */
void mg_memzero_explicit(void *p, size_t n);

#endif
