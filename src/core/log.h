/* Structured diagnostic logging: one line per event, key=value, never PHI
 * (ids, codes and locations only; STYLE.md section 6). The level is checked
 * before any formatting. Lines go to stderr, which systemd/journald collects. */
#ifndef MG_CORE_LOG_H
#define MG_CORE_LOG_H

#include <stdbool.h>
#include <stdint.h>

#include "core/compiler.h"

enum mg_log_level {
    MG_LOG_DEBUG,
    MG_LOG_INFO,
    MG_LOG_WARN,
    MG_LOG_ERROR,
};

/* Context set once per connection or message and written with every line. */
struct mg_log_ctx {
    const char *component;  /* "http", "mllp", "store", ... */
    const char *action;     /* nginx-style: what we were doing */
    uint64_t conn_id;       /* 0 = none */
    const char *peer;       /* "ip:port" or NULL */
    const char *control_id; /* MSH-10 or NULL */
    const char *listener;   /* an MLLP listener's name or NULL */
    const char *sender;     /* MSH-3^MSH-4 or NULL */
};

extern enum mg_log_level mg_log_min_level;

/* Sets the minimum level from a name ("debug", "info", "warn", "error").
 * Returns false for an unknown name. */
bool mg_log_set_level(const char *name);
/* Writes as JSON lines instead of key=value when json is true. */
void mg_log_set_json(bool json);

#define mg_log(level, ctx, ...)                                                \
    do {                                                                       \
        if ((level) >= mg_log_min_level)                                       \
            mg_log_write((level), (ctx), __VA_ARGS__);                         \
    } while (0)

void mg_log_write(enum mg_log_level level, const struct mg_log_ctx *ctx,
                  const char *fmt, ...) MG_PRINTF(3, 4);

/* The lines of one kind of event that a peer can repeat at will (every
 * message while the database is down, every oversized frame) are limited:
 * at most burst lines a window, the others counted and said in the next
 * line let through. Without it one sender in a retry loop writes tens of
 * thousands of lines a second, fills the disk and makes journald drop the
 * lines that matter. One limit per kind of event and place (a listener). */
struct mg_log_limit {
    uint64_t window_us;
    unsigned burst;
    uint64_t start_us;  /* of the current window */
    unsigned in_window; /* lines let through in it */
    uint64_t dropped;   /* left out since the last line let through */
};

#define MG_LOG_LIMIT_INIT(burst, seconds)                                          ((struct mg_log_limit){(uint64_t)(seconds)*1000000u, (burst), 0, 0, 0})

/* Whether the next line of the event is written (now_us: a monotonic
 * clock). When it is, *dropped is how many were left out before it, and
 * the count starts again. */
bool mg_log_limit_take(struct mg_log_limit *l, uint64_t now_us,
                       uint64_t *dropped);

/* mg_log for an event under limit l: the line is written when the limit
 * lets it through, ending "(N more like it not logged before this one)"
 * when N lines were left out before it. */
void mg_log_limited(struct mg_log_limit *l, enum mg_log_level level,
                    const struct mg_log_ctx *ctx, const char *fmt, ...)
    MG_PRINTF(4, 5);

#endif
