/* A view of bytes in someone else's buffer: lives as long as that buffer and
 * is never assumed NUL-terminated (nginx ngx_str_t). */
#ifndef MG_CORE_STR_H
#define MG_CORE_STR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct mg_str {
    const char *ptr;
    size_t len;
};

#define MG_STR(lit) ((struct mg_str){(lit), sizeof(lit) - 1})
#define MG_STR_NULL ((struct mg_str){NULL, 0})

static inline struct mg_str
mg_str_from(const char *s)
{
    return (struct mg_str){s, s ? strlen(s) : 0};
}

static inline struct mg_str
mg_str_n(const char *s, size_t n)
{
    return (struct mg_str){s, n};
}

static inline bool
mg_str_eq(struct mg_str a, struct mg_str b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

/* a equals the NUL-terminated z. */
static inline bool
mg_str_eqz(struct mg_str a, const char *z)
{
    return mg_str_eq(a, mg_str_from(z));
}

/* ASCII case-insensitive equality. */
bool mg_str_ieq(struct mg_str a, struct mg_str b);
bool mg_str_has_prefix(struct mg_str s, struct mg_str prefix);
/* s without leading and trailing spaces, tabs, CR and LF. */
struct mg_str mg_str_trim(struct mg_str s);
/* Parse a non-negative decimal number that fills all of s. */
bool mg_str_to_u64(struct mg_str s, unsigned long long *out);

/* The length of the well-formed UTF-8 character at p (1 for ASCII, 2-4
 * otherwise; no overlong forms, surrogates or code points above
 * U+10FFFF), reading at most n > 0 bytes; 0 when there is none. */
size_t mg_utf8_char_len(const char *p, size_t n);

/* Ends the NUL-terminated s before a UTF-8 character that a cut (snprintf
 * into a fixed buffer) left incomplete, so the text stays valid UTF-8
 * wherever it goes (an ERR segment, a text column). */
void mg_utf8_cut_partial(char *s);

/* FNV-1a (64 bits) of n bytes at p, continuing from h: MG_FNV1A_BASIS to
 * start. For in-memory keys, not for anything stored. */
#define MG_FNV1A_BASIS 14695981039346656037ULL
static inline uint64_t
mg_fnv1a(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = (const unsigned char *)p;

    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ULL;
    return h;
}

#endif
