/* Finding the line of a key in JSON text (see jsonpos.h for why). */
#include "core/jsonpos.h"

#include <stdio.h>
#include <string.h>

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
    const char *at = text, *hit;

    if (text == NULL)
        return 0;
    for (size_t i = 0; i < nkeys; i++) {
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
    const char *at = text, *p = dotted, *dot, *br, *hit;
    size_t n;

    if (text == NULL)
        return 0;
    while (*p) {
        dot = strchr(p, '.');
        n = dot ? (size_t)(dot - p) : strlen(p);
        br = memchr(p, '[', n);
        hit = find_quoted(at, p, br ? (size_t)(br - p) : n);
        if (hit == NULL)
            break;
        at = hit;
        p = dot ? dot + 1 : p + n;
    }
    return count_lines(text, at);
}
