/* Error codes. Functions return MG_OK (0), MG_AGAIN (+1: incomplete, feed
 * more; not an error), a negative errno from the system or libuv, or one of
 * our own codes below, all <= -10000 so they never collide with errno.
 * mg_strerror() names any of them. */
#ifndef MG_CORE_ERROR_H
#define MG_CORE_ERROR_H

#define MG_OK 0
#define MG_AGAIN 1

/* X(name, text): our own failures, in one list like libuv's UV_ERRNO_MAP. */
#define MG_ERRNO_MAP(X)                                                        \
    X(ENOMEM, "out of memory")                                                 \
    X(EINVAL, "invalid argument")                                              \
    X(ETOOBIG, "too large")                                                    \
    X(EFRAME, "bad framing")                                                   \
    X(EPARSE, "parse error")                                                   \
    X(ENOTFOUND, "not found")                                                  \
    X(EUNSUPPORTED, "not supported")                                           \
    X(ETIMEDOUT, "timed out")                                                  \
    X(EDB, "database error")                                                   \
    X(EDBDOWN, "database unavailable")                                         \
    X(EBUSY, "too busy")                                                       \
    X(ECLOSED, "closed")                                                       \
    X(EDUP, "duplicate")                                                       \
    X(ECONF, "configuration error")                                            \
    X(EIO, "input/output error")                                               \
    X(ESCHEMA, "database schema mismatch")                                     \
    X(EREFUSED, "database check refused")                                      \
    X(EMAPPING, "mapping error")                                               \
    X(ECANCELED, "canceled")                                                   \
    X(EINDOUBT, "commit outcome unknown")

enum mg_errno {
    MG__EFIRST = -10000,
#define MG_ERRNO_ENUM(name, text) MG_##name,
    MG_ERRNO_MAP(MG_ERRNO_ENUM)
#undef MG_ERRNO_ENUM
    MG__ELAST
};

/* A static, human-readable text for rc: MG_OK, MG_AGAIN, our codes, or a
 * negative errno / libuv code. Never NULL. Any thread. */
const char *mg_strerror(int rc);

#endif
