/* Key=value (or JSON) log lines on stderr. A line is built in one buffer
 * and written with one write(2), so lines from threads never interleave. */
#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/clock.h"

enum mg_log_level mg_log_min_level = MG_LOG_INFO;
static bool log_json;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

bool
mg_log_set_level(const char *name)
{
    for (size_t i = 0; i < MG_ARRAY_LEN(level_names); i++) {
        if (strcmp(name, level_names[i]) == 0) {
            mg_log_min_level = (enum mg_log_level)i;
            return true;
        }
    }
    return false;
}

void
mg_log_set_json(bool json)
{
    log_json = json;
}

/* Appends text quoted for the chosen format, dropping control characters. */
static size_t
put_quoted(char *out, size_t off, size_t size, const char *s)
{
    if (off < size)
        out[off++] = '"';
    for (; *s && off + 2 < size; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20)
            c = ' ';
        if (c == '"' || c == '\\')
            out[off++] = '\\';
        out[off++] = (char)c;
    }
    if (off < size)
        out[off++] = '"';
    return off;
}

static size_t
put_field(char *out, size_t off, size_t size, const char *key,
          const char *value, bool quote)
{
    int n;

    if (off >= size)
        return off;
    if (log_json)
        n = snprintf(out + off, size - off, ",\"%s\":", key);
    else
        n = snprintf(out + off, size - off, " %s=", key);
    /* A key with no room left for its value's two quotes is left out
     * whole: a cut key (and the NUL snprintf puts after it) would break
     * the line. */
    if (n < 0 || (size_t)n + 2 > size - off)
        return off;
    off += (size_t)n;
    if (quote || log_json)
        return put_quoted(out, off, size, value);
    n = snprintf(out + off, size - off, "%s", value);
    if (n < 0)
        return off;
    /* Cut short, the value ends in snprintf's NUL: leave that out. */
    return (size_t)n < size - off ? off + (size_t)n : size - 1;
}

void
mg_log_write(enum mg_log_level level, const struct mg_log_ctx *ctx,
             const char *fmt, ...)
{
    char line[2048], msg[1024], ts[32], id[24];
    size_t off = 0, size = sizeof(line) - 2;
    va_list ap;
    int n;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    mg_clock_iso_now(ts, sizeof(ts));

    n = log_json ? snprintf(line, size, "{\"ts\":\"%s\",\"level\":\"%s\"", ts,
                            level_names[level])
                 : snprintf(line, size, "ts=%s level=%s", ts,
                            level_names[level]);
    off = n < 0 ? 0 : MG_MIN((size_t)n, size);
    if (ctx != NULL) {
        if (ctx->component)
            off = put_field(line, off, size, "component", ctx->component, false);
        if (ctx->action)
            off = put_field(line, off, size, "action", ctx->action, true);
        if (ctx->conn_id) {
            snprintf(id, sizeof(id), "%llu", (unsigned long long)ctx->conn_id);
            off = put_field(line, off, size, "conn", id, false);
        }
        if (ctx->peer)
            off = put_field(line, off, size, "peer", ctx->peer, false);
        if (ctx->listener)
            off = put_field(line, off, size, "listener", ctx->listener, true);
        if (ctx->sender)
            off = put_field(line, off, size, "sender", ctx->sender, true);
        if (ctx->control_id)
            off = put_field(line, off, size, "msh10", ctx->control_id, true);
    }
    off = put_field(line, off, size, "msg", msg, true);
    /* size keeps two bytes of line free for these, even when full. */
    if (log_json)
        line[off++] = '}';
    line[off++] = '\n';
    /* One write per line; a short write on stderr is not worth a retry loop. */
    if (write(STDERR_FILENO, line, off) < 0)
        return;
}

bool
mg_log_limit_take(struct mg_log_limit *l, uint64_t now_us, uint64_t *dropped)
{
    if (l->in_window == 0 || now_us - l->start_us >= l->window_us) {
        l->start_us = now_us;
        l->in_window = 0;
    }
    if (l->in_window >= l->burst) {
        l->dropped++;
        return false;
    }
    l->in_window++;
    *dropped = l->dropped;
    l->dropped = 0;
    return true;
}

void
mg_log_limited(struct mg_log_limit *l, enum mg_log_level level,
               const struct mg_log_ctx *ctx, const char *fmt, ...)
{
    char msg[896];
    uint64_t dropped;
    va_list ap;

    /* A line below the level takes nothing: at log.level warn, INFO
     * lines that are never written must not use up the WARN lines'. */
    if (level < mg_log_min_level ||
        !mg_log_limit_take(l, mg_clock_mono_us(), &dropped))
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (dropped == 0) /* the usual case: no count that says nothing */
        mg_log_write(level, ctx, "%s", msg);
    else
        mg_log_write(level, ctx, "%s (%llu more like it not logged before "
                     "this one)", msg, (unsigned long long)dropped);
}
