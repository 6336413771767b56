/* Finding the line of a key in JSON text (see jsonpos.h for why). */
#include "core/jsonpos.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- walking the structure -------------------------------------------- */

static const char *
skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    return p;
}

/* p at '"': just past the closing quote (or at the end of a broken text). */
static const char *
skip_string(const char *p)
{
    for (p++; *p && *p != '"'; p++)
        if (*p == '\\' && p[1])
            p++;
    return *p ? p + 1 : p;
}

/* p at a value: just past it. Objects and arrays by bracket depth (the
 * text parsed already, so brackets balance outside strings). */
static const char *
skip_value(const char *p)
{
    int depth = 0;

    p = skip_ws(p);
    if (*p == '"')
        return skip_string(p);
    if (*p != '{' && *p != '[') {
        while (*p && *p != ',' && *p != '}' && *p != ']' && *p != ' ' &&
               *p != '\n' && *p != '\r' && *p != '\t')
            p++;
        return p;
    }
    do {
        if (*p == '"') {
            p = skip_string(p);
            continue;
        }
        depth += (*p == '{' || *p == '[') - (*p == '}' || *p == ']');
        p++;
    } while (*p && depth > 0);
    return p;
}

/* In the object at obj ('{'), the member named name (as written, between
 * its quotes): where its name starts, its value in *value; NULL if none. */
static const char *
member(const char *obj, const char *name, const char **value)
{
    size_t n = strlen(name);
    const char *p = obj + 1, *key, *end;

    for (;;) {
        p = skip_ws(p);
        if (*p != '"')
            return NULL;
        key = p;
        end = skip_string(p);
        p = skip_ws(end);
        if (*p != ':')
            return NULL;
        p = skip_ws(p + 1);
        if ((size_t)(end - key) == n + 2 && memcmp(key + 1, name, n) == 0) {
            *value = p;
            return key;
        }
        p = skip_ws(skip_value(p));
        if (*p != ',')
            return NULL;
        p++;
    }
}

/* In the array at arr ('['), where element k (0-based) starts, or NULL. */
static const char *
element(const char *arr, unsigned long k)
{
    const char *p = arr + 1;

    for (unsigned long i = 0;; i++) {
        p = skip_ws(p);
        if (*p == ']' || *p == '\0')
            return NULL;
        if (i == k)
            return p;
        p = skip_ws(skip_value(p));
        if (*p != ',')
            return NULL;
        p++;
    }
}

/* "[12]" is array index 12. */
static bool
as_index(const char *key, unsigned long *k)
{
    char *end;

    if (key[0] != '[' || key[1] < '0' || key[1] > '9')
        return false;
    *k = strtoul(key + 1, &end, 10);
    return end[0] == ']' && end[1] == '\0';
}

/* ---- the textual fallback ---------------------------------------------- */

/* Where the quoted name (n bytes at name) occurs at or after at, or NULL. */
static const char *
find_quoted(const char *at, const char *name, size_t n)
{
    char needle[260];

    if (n > 255)
        return NULL;
    needle[0] = '"';
    memcpy(needle + 1, name, n);
    needle[n + 1] = '"';
    needle[n + 2] = '\0';
    return strstr(at, needle);
}

static int
count_lines(const char *text, const char *end)
{
    int line = 1;

    for (const char *q = text; q < end; q++)
        line += *q == '\n';
    return line;
}

int
mg_jsonpos_line(const char *text, const char *const *keys, size_t nkeys)
{
    const char *at, *value, *hit;
    unsigned long k;
    size_t i;

    if (text == NULL)
        return 0;
    at = value = skip_ws(text);
    /* The structure first: each key a member of the object found so far,
     * each "[k]" an element of the array. */
    for (i = 0; i < nkeys; i++) {
        if (as_index(keys[i], &k)) {
            hit = *value == '[' ? element(value, k) : NULL;
            if (hit != NULL)
                value = hit; /* an element is its value */
        } else {
            hit = *value == '{' ? member(value, keys[i], &value) : NULL;
        }
        if (hit == NULL)
            break;
        at = hit;
    }
    /* A key the structure does not have where the caller thinks (a path
     * that names an array's items without an index): each of the rest
     * after the one before, in the text. */
    for (; i < nkeys; i++) {
        if (as_index(keys[i], &k))
            continue;
        hit = find_quoted(at, keys[i], strlen(keys[i]));
        if (hit == NULL)
            break;
        at = hit;
    }
    return count_lines(text, at);
}

int
mg_jsonpos_line_dotted(const char *text, const char *dotted)
{
    const char *keys[32], *p = dotted, *dot, *br;
    char buf[512], *w = buf;
    size_t nkeys = 0, n;

    /* "a.b[1].c" as the keys a, b, [1], c (copied into buf). */
    while (*p && nkeys + 2 <= sizeof(keys) / sizeof(keys[0])) {
        dot = strchr(p, '.');
        n = dot ? (size_t)(dot - p) : strlen(p);
        br = memchr(p, '[', n);
        if ((size_t)(w - buf) + n + 2 > sizeof(buf))
            break;
        memcpy(w, p, br ? (size_t)(br - p) : n);
        w[br ? br - p : (ptrdiff_t)n] = '\0';
        keys[nkeys++] = w;
        w += (br ? (size_t)(br - p) : n) + 1;
        if (br != NULL) {
            memcpy(w, br, n - (size_t)(br - p));
            w[n - (size_t)(br - p)] = '\0';
            keys[nkeys++] = w;
            w += n - (size_t)(br - p) + 1;
        }
        p = dot ? dot + 1 : p + n;
    }
    return mg_jsonpos_line(text, keys, nkeys);
}
