/* Helpers shared by the unit tests (header only: each test binary links
 * just its own module). */
#ifndef MG_TESTS_TESTUTIL_H
#define MG_TESTS_TESTUTIL_H

#include <stdio.h>
#include <stdlib.h>

/* The whole file at path, NUL-terminated, from malloc (free it); its
 * length in *len. NULL when it cannot be read. */
static inline char *
mg_test_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *p;
    long n;

    *len = 0;
    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    p = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (p != NULL && fread(p, 1, (size_t)n, f) != (size_t)n) {
        free(p);
        p = NULL;
    }
    fclose(f);
    if (p != NULL) {
        p[n] = '\0';
        *len = (size_t)n;
    }
    return p;
}

#endif
