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
