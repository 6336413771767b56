/* Texts for our error codes and for negative errno values. */
#include "core/error.h"

#include <string.h>

const char *
mg_strerror(int rc)
{
    switch (rc) {
    case MG_OK:
        return "ok";
    case MG_AGAIN:
        return "incomplete";
#define MG_ERRNO_CASE(name, text)                                              \
    case MG_##name:                                                            \
        return text;
        MG_ERRNO_MAP(MG_ERRNO_CASE)
#undef MG_ERRNO_CASE
    default:
        break;
    }
    if (rc < 0 && rc > MG__EFIRST)
        return strerror(-rc); /* glibc's strerror is thread-safe for reads */
    return "unknown error";
}
