/* Health and metrics of the pool: readiness for /health, counters and the
 * Prometheus text for /metrics. Read-only views of pool.c's state. */
#include "store/store_int.h"

#include <stdio.h>

#include "core/error.h"

void
mg_store_stats(const struct mg_store *s, struct mg_store_stats *st)
{
    *st = (struct mg_store_stats){0};
    st->total = s->opts.pool_size;
    for (unsigned i = 0; i < s->opts.pool_size; i++) {
        enum mg__store_conn_state state = s->conns[i].state;

        st->idle += state == MG__STORE_IDLE;
        st->in_use += state == MG__STORE_BUSY || state == MG__STORE_LEASED;
    }
    st->up = st->idle + st->in_use;
    st->queue_length = s->queue.len;
    st->errors_total = s->errors;
    st->reconnects_total = s->reconnects;
}

/* The last check answered what was expected (or none is configured). */
static bool
schema_matches(const struct mg_store *s)
{
    return s->opts.expected_schema_version == 0 ||
           s->schema_version == s->opts.expected_schema_version;
}

bool
mg__store_schema_ok(const struct mg_store *s)
{
    return schema_matches(s) || s->schema_version == MG__STORE_SCHEMA_UNKNOWN;
}

bool
mg_store_ready(const struct mg_store *s)
{
    struct mg_store_stats st;

    if (s->closing)
        return false;
    mg_store_stats(s, &st);
    return st.up > 0 && schema_matches(s);
}

bool
mg_store_status(const struct mg_store *s, char *reason, size_t size)
{
    struct mg_store_stats st;
    bool ready = mg_store_ready(s);

    if (size == 0)
        return ready;
    mg_store_stats(s, &st);
    if (ready)
        snprintf(reason, size, "ready");
    else if (s->closing)
        snprintf(reason, size, "closing");
    else if (st.up == 0 && s->down)
        snprintf(reason, size, "database unreachable: %s", s->last_error);
    else if (st.up == 0)
        snprintf(reason, size, "connecting");
    else if (s->schema_version == MG__STORE_SCHEMA_FAILED)
        snprintf(reason, size, "schema check failed, expected version %d "
                 "(run medgate migrate)", s->opts.expected_schema_version);
    else if (s->schema_version == MG_STORE_SCHEMA_OTHER_BUILD)
        snprintf(reason, size, "schema objects of another build "
                 "(run medgate migrate)");
    else if (s->schema_version == MG_STORE_SCHEMA_REFUSED)
        snprintf(reason, size, "database check refused: %s",
                 s->schema_detail[0] ? s->schema_detail : "(no reason given)");
    else
        snprintf(reason, size, "schema version %d, expected %d (%s)",
                 s->schema_version, s->opts.expected_schema_version,
                 s->schema_version < s->opts.expected_schema_version
                     ? "run medgate migrate"
                     : "a newer medgate migrated the database: run that "
                       "version");
    return ready;
}

int
mg_store_write_metrics(const struct mg_store *s, struct mg_buf *out)
{
    struct mg_store_stats st;

    mg_store_stats(s, &st);
    return mg_buf_appendf(
        out,
        "# HELP medgate_db_pool_size Configured database connections.\n"
        "# TYPE medgate_db_pool_size gauge\n"
        "medgate_db_pool_size %u\n"
        "# HELP medgate_db_connections Database connections by state.\n"
        "# TYPE medgate_db_connections gauge\n"
        "medgate_db_connections{state=\"in_use\"} %u\n"
        "medgate_db_connections{state=\"idle\"} %u\n"
        "medgate_db_connections{state=\"down\"} %u\n"
        "# HELP medgate_db_queue_length Requests waiting for a connection.\n"
        "# TYPE medgate_db_queue_length gauge\n"
        "medgate_db_queue_length %u\n"
        "# HELP medgate_db_errors_total Failed database requests and "
        "connections.\n"
        "# TYPE medgate_db_errors_total counter\n"
        "medgate_db_errors_total %llu\n"
        "# HELP medgate_db_reconnects_total Database reconnection attempts.\n"
        "# TYPE medgate_db_reconnects_total counter\n"
        "medgate_db_reconnects_total %llu\n"
        "# HELP medgate_db_up 1 when the database is reachable and its "
        "schema is the expected one.\n"
        "# TYPE medgate_db_up gauge\n"
        "medgate_db_up %d\n",
        st.total, st.in_use, st.idle, st.total - st.up, st.queue_length,
        (unsigned long long)st.errors_total,
        (unsigned long long)st.reconnects_total, mg_store_ready(s) ? 1 : 0);
}
