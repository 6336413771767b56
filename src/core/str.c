/* Helpers over struct mg_str views. */
#include "core/str.h"

#include <ctype.h>

bool
mg_str_ieq(struct mg_str a, struct mg_str b)
{
    if (a.len != b.len)
        return false;
    for (size_t i = 0; i < a.len; i++)
        if (tolower((unsigned char)a.ptr[i]) != tolower((unsigned char)b.ptr[i]))
            return false;
    return true;
}

bool
mg_str_has_prefix(struct mg_str s, struct mg_str prefix)
{
    return s.len >= prefix.len && memcmp(s.ptr, prefix.ptr, prefix.len) == 0;
}

static bool
is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

struct mg_str
mg_str_trim(struct mg_str s)
{
    while (s.len > 0 && is_space(s.ptr[0])) {
        s.ptr++;
        s.len--;
    }
    while (s.len > 0 && is_space(s.ptr[s.len - 1]))
        s.len--;
    return s;
}

bool
mg_str_to_u64(struct mg_str s, unsigned long long *out)
{
    unsigned long long v = 0;

    if (s.len == 0 || s.len > 19)
        return false;
    for (size_t i = 0; i < s.len; i++) {
        if (s.ptr[i] < '0' || s.ptr[i] > '9')
            return false;
        v = v * 10 + (unsigned)(s.ptr[i] - '0');
    }
    *out = v;
    return true;
}

size_t
mg_utf8_char_len(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    unsigned char c = p[0];

    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        return n >= 2 && (p[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        if (n < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80)
            return 0;
        if (c == 0xE0 && p[1] < 0xA0)
            return 0; /* overlong */
        if (c == 0xED && p[1] >= 0xA0)
            return 0; /* surrogate */
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (n < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 ||
            (p[3] & 0xC0) != 0x80)
            return 0;
        if (c == 0xF0 && p[1] < 0x90)
            return 0; /* overlong */
        if (c == 0xF4 && p[1] >= 0x90)
            return 0; /* past U+10FFFF */
        return 4;
    }
    return 0;
}

void
mg_utf8_cut_partial(char *s)
{
    size_t n = strlen(s), back = 0;

    /* a character is at most 4 bytes: look at the last lead byte */
    while (back < n && back < 4 &&
           ((unsigned char)s[n - 1 - back] & 0xC0) == 0x80)
        back++;
    if (back < n && (unsigned char)s[n - 1 - back] >= 0xC0 &&
        mg_utf8_char_len(s + n - 1 - back, back + 1) == 0)
        s[n - 1 - back] = '\0';
}
