/* Allocation wrappers with a live counter and failure injection for tests. */
#include "core/alloc.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static atomic_long live;
static atomic_long fail_countdown;

static int
should_fail(void)
{
    long n = atomic_load_explicit(&fail_countdown, memory_order_relaxed);

    if (n <= 0)
        return 0;
    return atomic_fetch_sub(&fail_countdown, 1) == 1;
}

void *
mg_malloc(size_t n)
{
    void *p;

    if (should_fail())
        return NULL;
    p = malloc(n ? n : 1);
    if (p != NULL)
        atomic_fetch_add_explicit(&live, 1, memory_order_relaxed);
    return p;
}

void *
mg_calloc(size_t count, size_t n)
{
    void *p;

    if (should_fail())
        return NULL;
    p = calloc(count ? count : 1, n ? n : 1);
    if (p != NULL)
        atomic_fetch_add_explicit(&live, 1, memory_order_relaxed);
    return p;
}

void *
mg_realloc(void *p, size_t n)
{
    void *q;

    if (p == NULL)
        return mg_malloc(n);
    if (should_fail())
        return NULL;
    q = realloc(p, n ? n : 1);
    return q;
}

void
mg_free(void *p)
{
    if (p == NULL)
        return;
    atomic_fetch_sub_explicit(&live, 1, memory_order_relaxed);
    free(p);
}

char *
mg_strndup(const char *s, size_t n)
{
    char *p = mg_malloc(n + 1);

    if (p == NULL)
        return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *
mg_strdup(const char *s)
{
    return mg_strndup(s, strlen(s));
}

long
mg_alloc_live(void)
{
    return atomic_load(&live);
}

void
mg_alloc_fail_after(long n)
{
    atomic_store(&fail_countdown, n);
}

void
mg_memzero_explicit(void *p, size_t n)
{
    volatile unsigned char *v = p;

    while (n--)
        *v++ = 0;
}
