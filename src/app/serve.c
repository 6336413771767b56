/* `medgate serve`: builds the process from the configuration (database
 * pool, intake, HTTP server with the admin routes, one MLLP server per
 * listener), runs the loop, and drains on SIGINT/SIGTERM: stop accepting,
 * let in-flight requests and messages finish within the drain deadline,
 * then close everything and leave the loop with no handle open. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "adapters/adapter.h"
#include "admin/admin.h"
#include "app/app.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/log.h"
#include "core/str.h"
#include "http/http.h"
#include "intake/intake.h"
#include "mapping/mapping.h"
#include "mllp/server.h"
#include "security/security.h"
#include "store/migrate.h"
#include "store/store.h"

#define DRAIN_POLL_MS 50
/* While the store's readiness check refuses (schema behind, an organization
 * missing), it runs again this often, so that fixing the database is enough:
 * no restart, no SIGHUP needed. */
#define RECHECK_MS 10000

struct app {
    uv_loop_t loop;
    const struct mg_conf *conf;
    struct mg_store *store;
    struct mg_intake *intake;
    struct mg_http_router *router;
    struct mg_http_server *http;
    struct mg_mllp_server *mllp[MG_CONF_MAX_LISTENERS];
    int nmllp;
    struct mg_admin admin;
    uv_signal_t sigint, sigterm, sighup;
    uv_timer_t drain_timer;
    uv_timer_t mapping_timer;       /* checks the mapping folder for changes */
    uv_timer_t recheck_timer;       /* repeats a refused database check */
    struct mg_mapping_set *mappings; /* the set in service */
    unsigned long long mapping_reloads, mapping_refusals;
    /* the folder holds a refused set (its errors, hashed: each distinct
     * set of errors is logged and counted once, not at every retry) */
    bool mapping_refused;
    uint64_t refused_errors;
    uint64_t drain_deadline_us;
    bool draining, closing;
    struct mg_log_ctx log;
};

static void *
uv_malloc_hook(size_t n)
{
    return mg_malloc(n);
}

static void *
uv_realloc_hook(void *p, size_t n)
{
    return mg_realloc(p, n);
}

static void *
uv_calloc_hook(size_t count, size_t n)
{
    return mg_calloc(count, n);
}

static void
uv_free_hook(void *p)
{
    mg_free(p);
}

/* ---- metrics and readiness sources ---------------------------------- */

static void
store_metrics(void *arg, struct mg_buf *out)
{
    if (mg_store_write_metrics(arg, out) != MG_OK)
        return; /* a partial scrape is still useful; nothing to undo */
}

static bool
store_ready(void *arg, char *reason, size_t size)
{
    return mg_store_status(arg, reason, size);
}

static bool
intake_ready(void *arg, char *reason, size_t size)
{
    return mg_intake_status(arg, reason, size);
}

static void
http_metrics(void *arg, struct mg_buf *out)
{
    struct app *app = arg;

    if (app->http != NULL && mg_http_server_write_metrics(app->http, out) != MG_OK)
        return; /* a partial scrape is still useful; nothing to undo */
}

static void
mllp_metrics(void *arg, struct mg_buf *out)
{
    struct app *app = arg;

    for (int i = 0; i < app->nmllp; i++)
        mg_mllp_server_write_metrics(app->mllp[i], out);
    if (app->intake != NULL)
        mg_intake_write_metrics(app->intake, out);
    mg_buf_appendf(out,
                   "medgate_mapping_reloads_total %llu\n"
                   "medgate_mapping_refused_total %llu\n"
                   "# HELP medgate_mapping_refused_pending 1 while the "
                   "mapping folder holds a set that was refused (the "
                   "previous set serves; a restart would fail)\n"
                   "# TYPE medgate_mapping_refused_pending gauge\n"
                   "medgate_mapping_refused_pending %d\n",
                   app->mapping_reloads, app->mapping_refusals,
                   app->mapping_refused ? 1 : 0);
}

/* ---- mapping files -------------------------------------------------- */

/* The loader's "file:line: key: problem" lines as log lines (ERROR), so
 * that they reach the log in its format (JSON too), at most 50. */
static void
log_mapping_errors(struct app *app, const char *text, size_t len)
{
    const char *p = text, *end = text + len, *nl;
    int n = 0;

    for (; p < end; p = nl + 1) {
        nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL)
            nl = end;
        if (nl > p && n++ < 50)
            mg_log(MG_LOG_ERROR, &app->log, "mapping: %.*s", (int)(nl - p), p);
    }
    if (n > 50)
        mg_log(MG_LOG_ERROR, &app->log, "mapping: %d more problems", n - 50);
}

static void
warn_route(const char *line, void *arg)
{
    struct app *app = arg;

    mg_log(MG_LOG_WARN, &app->log, "mapping: %s", line);
}

/* "N routes: a, b, c" of set, and "; gone: x" for the routes of old that
 * set no longer has: what a load put in service, for the log (a deleted
 * file showed only as AR 200 on every message it used to take). */
static void
describe_routes(const struct mg_mapping_set *set,
                const struct mg_mapping_set *old, char *out, size_t size)
{
    size_t n = mg_mapping_set_count(set), off, gone = 0;
    int w;

    w = snprintf(out, size, "%zu route%s", n, n == 1 ? "" : "s");
    off = w < 0 ? 0 : MG_MIN((size_t)w, size - 1);
    for (size_t i = 0; i < n && off < size - 1; i++) {
        w = snprintf(out + off, size - off, "%s%s", i ? ", " : ": ",
                     mg_mapping_route_name(mg_mapping_set_route(set, i)));
        off = w < 0 ? off : MG_MIN(off + (size_t)w, size - 1);
    }
    for (size_t i = 0; old != NULL && i < mg_mapping_set_count(old) &&
                       off < size - 1; i++) {
        const char *name = mg_mapping_route_name(mg_mapping_set_route(old, i));

        if (mg_mapping_route_by_name(set, name) != NULL)
            continue;
        w = snprintf(out + off, size - off, "%s%s", gone++ ? ", " : "; gone: ",
                     name);
        off = w < 0 ? off : MG_MIN(off + (size_t)w, size - 1);
    }
}

/* Loads the mapping folder; a broken set is refused whole and the set in
 * service stays. Its errors are logged (file:line: key: problem) when
 * they are new: a folder still broken at the next retry says nothing
 * more, and medgate_mapping_refused_pending says it is still so. */
static int
load_mappings(struct app *app, const char *why)
{
    struct mg_mapping_set *set;
    char *errors = NULL;
    size_t len = 0;
    FILE *err = open_memstream(&errors, &len);
    int rc = mg_adapters_load_set(app->conf->mappings_dir, &set,
                                  err != NULL ? err : stderr);
    uint64_t hash;
    char routes[512];

    if (err != NULL)
        fclose(err);
    if (rc != MG_OK) {
        hash = mg_fnv1a(MG_FNV1A_BASIS, errors ? errors : "", len);
        if (!app->mapping_refused || hash != app->refused_errors) {
            app->mapping_refusals++;
            log_mapping_errors(app, errors ? errors : "", len);
            mg_log(MG_LOG_ERROR, &app->log, "%s: mapping files in %s "
                   "refused (errors above); %s", why,
                   app->conf->mappings_dir,
                   app->mappings ? "the previous set stays in service (a "
                                   "restart would fail until they are fixed)"
                                 : "no set to serve with");
        }
        app->mapping_refused = true;
        app->refused_errors = hash;
        free(errors);
        return MG_ECONF;
    }
    free(errors);
    (void)mg_app_check_route_listeners(app->conf, set, warn_route, app);
    app->mapping_refused = false;
    if (app->intake != NULL)
        mg_intake_set_mappings(app->intake, set);
    describe_routes(set, app->mappings, routes, sizeof(routes));
    if (app->mappings != NULL) {
        mg_mapping_set_free(app->mappings); /* messages in flight keep theirs */
        app->mapping_reloads++;
        mg_log(MG_LOG_INFO, &app->log, "%s: mapping files reloaded, %s", why,
               routes);
    } else {
        mg_log(MG_LOG_INFO, &app->log, "mapping files in %s loaded, %s",
               app->conf->mappings_dir, routes);
    }
    app->mappings = set;
    return MG_OK;
}

/* Every second: reload when the folder changed, and has not changed again
 * for a tick -- a file half written, or a set caught between an editor's
 * rename and its write (vim, a git checkout), is not loaded. While the
 * folder holds a refused set, try again only every MAPPING_RETRY_MS (an
 * engineer is probably still editing), so the log is not flooded with its
 * errors; a folder back to the set in service clears the refusal. */
#define MAPPING_RETRY_MS 5000

static void
on_mapping_tick(uv_timer_t *t)
{
    struct app *app = t->data;
    static uint64_t refused_at_us, seen;
    uint64_t now;

    if (app->mappings == NULL)
        return;
    if (mg_mapping_dir_stamp(app->conf->mappings_dir, &now) != MG_OK)
        now = 0; /* unreadable: loading it says why */
    if (now == mg_mapping_set_stamp(app->mappings)) {
        if (app->mapping_refused)
            mg_log(MG_LOG_INFO, &app->log, "mapping files in %s are the "
                   "set in service again", app->conf->mappings_dir);
        app->mapping_refused = false;
        refused_at_us = 0;
        seen = now;
        return;
    }
    if (now != seen) {
        seen = now; /* still changing, maybe: load it at the next tick */
        return;
    }
    if (refused_at_us != 0 &&
        mg_clock_mono_us() - refused_at_us < MAPPING_RETRY_MS * 1000u)
        return;
    if (load_mappings(app, "mapping files changed") != MG_OK)
        refused_at_us = mg_clock_mono_us();
    else
        refused_at_us = 0;
}

/* ---- shutdown --------------------------------------------------------- */

static void
on_handle_closed(uv_handle_t *h)
{
    (void)h;
}

static void
on_store_closed(void *ud)
{
    struct app *app = ud;

    app->store = NULL;
}

/* Everything in flight is done (or the deadline passed): close it all. */
static void
close_all(struct app *app)
{
    if (app->closing)
        return;
    app->closing = true;
    for (int i = 0; i < app->nmllp; i++)
        mg_mllp_server_close(app->mllp[i], NULL, NULL);
    if (app->http != NULL)
        mg_http_server_close(app->http, NULL, NULL);
    if (app->intake != NULL)
        mg_intake_free(app->intake);
    if (app->store != NULL)
        mg_store_close(app->store, on_store_closed, app);
    uv_close((uv_handle_t *)&app->sigint, on_handle_closed);
    uv_close((uv_handle_t *)&app->sigterm, on_handle_closed);
    uv_close((uv_handle_t *)&app->sighup, on_handle_closed);
    uv_close((uv_handle_t *)&app->drain_timer, on_handle_closed);
    uv_close((uv_handle_t *)&app->mapping_timer, on_handle_closed);
    uv_close((uv_handle_t *)&app->recheck_timer, on_handle_closed);
}

static bool
drained(const struct app *app)
{
    unsigned open = 0;

    for (int i = 0; i < app->nmllp; i++)
        open += mg_mllp_server_open_connections(app->mllp[i]);
    return open == 0 && mg_intake_pending(app->intake) == 0 &&
           (app->http == NULL ||
            mg_http_server_pending_requests(app->http) == 0);
}

static void
on_drain_tick(uv_timer_t *t)
{
    struct app *app = t->data;

    if (drained(app)) {
        mg_log(MG_LOG_INFO, &app->log, "drained, closing");
        close_all(app);
    } else if (mg_clock_mono_us() >= app->drain_deadline_us) {
        mg_log(MG_LOG_WARN, &app->log, "drain deadline passed with %zu HL7 "
               "message(s) not answered: closing (a commit under way may "
               "still complete; their senders resend and a stored one gets "
               "its original ACK)", mg_intake_pending(app->intake));
        close_all(app);
    }
}

static void
start_drain(struct app *app, const char *why)
{
    if (app->draining) {
        mg_log(MG_LOG_WARN, &app->log, "second %s: closing now", why);
        close_all(app);
        return;
    }
    app->draining = true;
    mg_log(MG_LOG_INFO, &app->log, "%s: draining (deadline %d ms)", why,
           app->conf->shutdown_drain_timeout_ms);
    mg_admin_set_draining(&app->admin);
    if (app->http != NULL)
        mg_http_server_drain(app->http, NULL, NULL);
    for (int i = 0; i < app->nmllp; i++)
        mg_mllp_server_drain(app->mllp[i]);
    app->drain_deadline_us =
        mg_clock_mono_us() +
        (uint64_t)app->conf->shutdown_drain_timeout_ms * 1000u;
    uv_timer_start(&app->drain_timer, on_drain_tick, 0, DRAIN_POLL_MS);
}

/* Runs the store's readiness check again (schema version, this build's
 * adapters, the listeners' organizations): on SIGHUP, and every
 * RECHECK_MS from the timer, also while it passes -- another instance's
 * `medgate migrate` of a newer build, or an organization deactivated, must
 * take this one out of service without a restart. */
static void
recheck_store(struct app *app, bool always)
{
    struct mg_store_stats st;

    if (app->store == NULL || (!always && mg_store_ready(app->store)))
        return;
    mg_store_stats(app->store, &st);
    if (st.up > 0 && mg_store_recheck_schema(app->store) != MG_OK)
        mg_log(MG_LOG_WARN, &app->log, "database recheck not queued");
}

static void
on_recheck_tick(uv_timer_t *t)
{
    struct app *app = t->data;
    char reason[256];

    recheck_store(app, true);
    /* A change of readiness reaches the log without a /readyz probe. */
    if (!app->draining)
        (void)mg_admin_check_ready(&app->admin, reason, sizeof(reason));
}

/* An option SIGHUP cannot apply changed in the file: say so. */
static void
warn_needs_restart(const char *key, void *arg)
{
    struct app *app = arg;

    if (strcmp(key, "log.level") != 0)
        mg_log(MG_LOG_WARN, &app->log, "SIGHUP: %s changed in %s; it takes "
               "effect at the next restart", key, app->conf->path);
}

/* SIGHUP: the log level of the configuration file, if it still loads;
 * every other option changed in it is named as waiting for a restart. */
static void
reload_log_level(struct app *app)
{
    struct mg_conf fresh;

    mg_conf_defaults(&fresh);
    if (mg_conf_load(&fresh, app->conf->path, stderr) != MG_OK ||
        !mg_log_set_level(fresh.log_level))
        mg_log(MG_LOG_ERROR, &app->log, "SIGHUP: %s has errors; keeping the "
               "running configuration", app->conf->path);
    else {
        mg_log(MG_LOG_INFO, &app->log, "SIGHUP: reloaded log level %s",
               fresh.log_level);
        mg_conf_diff(app->conf, &fresh, warn_needs_restart, app);
    }
    mg_conf_dispose(&fresh);
}

static void
on_signal(uv_signal_t *h, int signum)
{
    struct app *app = h->data;

    if (signum != SIGHUP) {
        start_drain(app, signum == SIGINT ? "SIGINT" : "SIGTERM");
        return;
    }
    /* Reload what can change without dropping connections: the log level
     * (from the file, when there is one), the mappings, and the database
     * check behind /readyz. */
    if (app->conf->path == NULL)
        mg_log(MG_LOG_INFO, &app->log, "SIGHUP: no configuration file; "
               "reloading the mappings and rechecking the database");
    else
        reload_log_level(app);
    (void)load_mappings(app, "SIGHUP");
    recheck_store(app, true);
}

/* ---- start-up --------------------------------------------------------- */

/* Appends the listeners' organization ids, with where each is configured,
 * as SQL VALUES rows; the ids are UUIDs (checked at load) and names are
 * quoted. */
static int
append_organizations(const struct mg_conf *c, struct mg_buf *b)
{
    int rc = MG_OK, n = 0;

    for (int i = 0; i < c->nlisteners && rc == MG_OK; i++) {
        const struct mg_conf_listener *li = &c->listeners[i];

        for (int j = 0; j < li->nsenders && rc == MG_OK; j++) {
            rc = mg_buf_appendf(b, "%s('%s'::uuid, '", n++ ? ", " : "",
                                li->senders[j].organization_id);
            for (const char *p = li->name; rc == MG_OK && *p; p++)
                rc = *p == '\'' ? mg_buf_appendz(b, "''")
                                : mg_buf_appendc(b, *p);
            if (rc == MG_OK)
                rc = mg_buf_appendz(b, "')");
        }
    }
    if (rc == MG_OK && n == 0)
        rc = mg_buf_appendz(b, "(NULL::uuid, NULL)");
    return rc;
}

/* The readiness check of the store (store.h, schema_sql): the schema of
 * this build (migration version, the adapters' SQL) and every organization
 * the listeners name, active. patients, scans and messages carry no
 * foreign key to organizations (schema/0010), so this check is what keeps
 * a mistyped id out of them: while it refuses, the store runs nothing and
 * messages are not acknowledged. */
static int
check_sql(const struct mg_conf *c, int version, struct mg_buf *b)
{
    char sum[MG_ADAPTERS_CHECKSUM_HEX + 1];
    int rc;

    mg_adapters_checksum(sum);
    rc = mg_buf_appendf(b,
        "SELECT CASE WHEN medgate_adapters_checksum() <> '%s' THEN %d"
        " WHEN v.version <> %d THEN v.version"
        " WHEN o.missing IS NOT NULL THEN %d ELSE v.version END, o.missing"
        " FROM (SELECT coalesce(max(version), 0) AS version"
        " FROM schema_migrations) v, (SELECT string_agg(format("
        "'organization %%s of listener %%s is not an active organization',"
        " c.id, c.listener), '; ' ORDER BY c.listener, c.id) AS missing"
        " FROM (VALUES ", sum, MG_STORE_SCHEMA_OTHER_BUILD, version,
        MG_STORE_SCHEMA_REFUSED);
    if (rc == MG_OK)
        rc = append_organizations(c, b);
    if (rc == MG_OK)
        rc = mg_buf_appendz(b, ") AS c(id, listener) WHERE c.id IS NOT NULL"
            " AND NOT EXISTS (SELECT 1 FROM organizations g"
            " WHERE g.id = c.id AND g.is_active)) o");
    return rc;
}

static int
open_store(struct app *app)
{
    const struct mg_conf *c = app->conf;
    struct mg_store_options o;
    struct mg_buf check;
    int version = 0, rc;

    rc = mg_migrate_latest(c->schema_dir, &version, stderr);
    if (rc != MG_OK)
        return rc;
    memset(&o, 0, sizeof(o));
    o.conninfo = c->database_url;
    o.pool_size = (unsigned)c->database_pool_size;
    o.queue_max = (unsigned)c->database_queue_max;
    o.statement_timeout_ms = (unsigned)c->database_statement_timeout_ms;
    o.reconnect_max_ms = (unsigned)c->database_reconnect_max_ms;
    o.commit_timeout_ms = (unsigned)c->database_commit_timeout_ms;
    o.application_name = "medgate";
    o.expected_schema_version = version;
    /* Ready only with the adapters' SQL of this build installed (a
     * missing function fails the check outright) and the configured
     * organizations present. */
    mg_buf_init(&check, 0);
    rc = check_sql(c, version, &check);
    o.schema_sql = check.ptr;
    if (rc == MG_OK)
        rc = mg_store_open(&app->loop, &o, &app->store);
    mg_buf_dispose(&check);
    return rc;
}

static int
open_http(struct app *app)
{
    const struct mg_conf *c = app->conf;
    struct mg_http_server_opts o;
    int rc;

    memset(&o, 0, sizeof(o));
    o.bind = c->http_bind;
    o.port = c->http_port;
    o.max_connections = (unsigned)c->http_max_connections;
    o.limits.max_header_bytes = (size_t)c->http_max_header_bytes;
    o.limits.max_body_bytes = (size_t)c->http_max_body_bytes;
    o.header_timeout_ms = (unsigned)c->http_header_timeout_ms;
    o.body_timeout_ms = (unsigned)c->http_body_timeout_ms;
    o.idle_timeout_ms = (unsigned)c->http_idle_timeout_ms;
    rc = mg_http_server_open(&app->loop, &o, app->router, &app->http);
    if (rc != MG_OK) {
        mg_log(MG_LOG_ERROR, &app->log, "HTTP listen on %s:%d failed: %s",
               c->http_bind, c->http_port, mg_strerror(rc));
        return rc;
    }
    mg_log(MG_LOG_INFO, &app->log, "HTTP listening on %s:%d", c->http_bind,
           mg_http_server_port(app->http));
    return MG_OK;
}

static int
open_mllp(struct app *app)
{
    const struct mg_conf *c = app->conf;
    struct mg_intake_opts io = {c->intake_batch_max, c->database_queue_max,
                               c->intake_commits_in_flight};
    int rc;

    rc = mg_intake_new(&app->loop, app->store, &io, &app->intake);
    if (rc == MG_OK)
        mg_intake_set_mappings(app->intake, app->mappings);
    for (int i = 0; rc == MG_OK && i < c->nlisteners; i++) {
        const struct mg_conf_listener *li = &c->listeners[i];
        rc = mg_mllp_server_open(&app->loop, li, app->intake,
                                 &app->mllp[app->nmllp]);
        if (rc != MG_OK) {
            mg_log(MG_LOG_ERROR, &app->log, "MLLP listener %s on %s:%d "
                   "failed: %s", li->name, li->bind, li->port,
                   mg_strerror(rc));
            break;
        }
        mg_log(MG_LOG_INFO, &app->log, "MLLP listener %s on %s:%d", li->name,
               li->bind, mg_mllp_server_port(app->mllp[app->nmllp]));
        app->nmllp++;
    }
    return rc;
}

static int
start(struct app *app)
{
    int rc;

    rc = load_mappings(app, "start");
    if (rc == MG_OK) {
        uv_timer_start(&app->mapping_timer, on_mapping_tick, 1000, 1000);
        uv_unref((uv_handle_t *)&app->mapping_timer);
        /* The first tick soon: a gateway that never gets ready (schema
         * behind, organization inactive) says why in the log at once. */
        uv_timer_start(&app->recheck_timer, on_recheck_tick, 1000,
                       RECHECK_MS);
        uv_unref((uv_handle_t *)&app->recheck_timer);
        rc = mg_http_router_new(&app->router);
    }
    if (rc == MG_OK)
        rc = mg_admin_init(&app->admin, app->router);
    if (rc == MG_OK)
        rc = open_store(app);
    if (rc == MG_OK)
        rc = mg_admin_add_ready(&app->admin, store_ready, app->store);
    if (rc == MG_OK)
        rc = mg_admin_add_metrics(&app->admin, http_metrics, app);
    if (rc == MG_OK)
        rc = mg_admin_add_metrics(&app->admin, store_metrics, app->store);
    if (rc == MG_OK)
        rc = mg_admin_add_metrics(&app->admin, mllp_metrics, app);
    if (rc == MG_OK)
        rc = open_mllp(app);
    if (rc == MG_OK && app->intake != NULL)
        rc = mg_admin_add_ready(&app->admin, intake_ready, app->intake);
    if (rc == MG_OK)
        rc = open_http(app);
    return rc;
}

static void
init_handles(struct app *app)
{
    uv_signal_init(&app->loop, &app->sigint);
    uv_signal_init(&app->loop, &app->sigterm);
    uv_signal_init(&app->loop, &app->sighup);
    uv_timer_init(&app->loop, &app->drain_timer);
    uv_timer_init(&app->loop, &app->mapping_timer);
    uv_timer_init(&app->loop, &app->recheck_timer);
    app->mapping_timer.data = app->recheck_timer.data = app;
    app->sigint.data = app->sigterm.data = app->sighup.data = app;
    app->drain_timer.data = app;
    uv_signal_start(&app->sigint, on_signal, SIGINT);
    uv_signal_start(&app->sigterm, on_signal, SIGTERM);
    uv_signal_start(&app->sighup, on_signal, SIGHUP);
}

int
mg_app_serve(const struct mg_conf *conf)
{
    static struct app app; /* one per process; signals point at it */
    int rc;

    if (mg_security_init() != MG_OK)
        return 1;
    uv_replace_allocator(uv_malloc_hook, uv_realloc_hook, uv_calloc_hook,
                         uv_free_hook);
    signal(SIGPIPE, SIG_IGN);
    memset(&app, 0, sizeof(app));
    app.conf = conf;
    app.log.component = "main";
    uv_loop_init(&app.loop);
    init_handles(&app);
    rc = start(&app);
    if (rc != MG_OK) {
        mg_log(MG_LOG_ERROR, &app.log, "start-up failed: %s", mg_strerror(rc));
        close_all(&app);
    } else {
        mg_log(MG_LOG_INFO, &app.log, "medgate " MG_VERSION " serving");
    }
    uv_run(&app.loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&app.loop) != 0)
        mg_log(MG_LOG_WARN, &app.log, "loop closed with handles still open");
    if (app.router != NULL)
        mg_http_router_free(app.router);
    if (app.mappings != NULL)
        mg_mapping_set_free(app.mappings);
    mg_log(MG_LOG_INFO, &app.log, "stopped");
    return rc == MG_OK ? 0 : 1;
}
