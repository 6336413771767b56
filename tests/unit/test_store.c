/* Unit tests for store: the asynchronous PostgreSQL pool, against a real
 * PostgreSQL (no mocks). MEDGATE_TEST_PGHOST names the socket directory of
 * a running cluster (user postgres, trust); without it the tests start a
 * private cluster with deploy/pg.sh and stop it at the end. Every run uses
 * a fresh database, medgate_test_store_<pid>, set up and inspected with
 * blocking libpq (fine in tests; never on the loop in the product). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <libpq-fe.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/log.h"
#include "store/migrate.h"
#include "store/store.h"

static char pg_host[512];  /* socket directory */
static char pg_dir[256];   /* our own cluster's folder; "" if external */
static char db_name[64];
static char conninfo[1024];

/* ---- blocking helpers (tests only) ---- */

static PGconn *
admin_connect(const char *db)
{
    char ci[1024];
    PGconn *pg;

    snprintf(ci, sizeof(ci), "host=%s user=postgres dbname=%s", pg_host, db);
    pg = PQconnectdb(ci);
    if (PQstatus(pg) != CONNECTION_OK) {
        fprintf(stderr, "admin connect: %s", PQerrorMessage(pg));
        PQfinish(pg);
        return NULL;
    }
    return pg;
}

/* Runs sql on db; returns the first value of the result, or "" (static). */
static const char *
admin_exec(const char *db, const char *sql)
{
    static char value[256];
    PGconn *pg = admin_connect(db);
    PGresult *res;
    ExecStatusType st;

    value[0] = '\0';
    if (pg == NULL)
        fail_msg("cannot connect to %s", db);
    res = PQexec(pg, sql);
    st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        fprintf(stderr, "admin: %s: %s", sql, PQerrorMessage(pg));
        PQclear(res);
        PQfinish(pg);
        fail_msg("admin statement failed");
    }
    if (st == PGRES_TUPLES_OK && PQntuples(res) > 0)
        snprintf(value, sizeof(value), "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    PQfinish(pg);
    return value;
}

static const char *
admin_execf(const char *db, const char *fmt, ...) MG_PRINTF(2, 3);

static const char *
admin_execf(const char *db, const char *fmt, ...)
{
    char sql[2048];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(sql, sizeof(sql), fmt, ap);
    va_end(ap);
    return admin_exec(db, sql);
}

static int
pg_script(const char *verb, char *out, size_t size)
{
    char cmd[1024];
    FILE *f;
    int rc;

    snprintf(cmd, sizeof(cmd), "%s/deploy/pg.sh %s %s", MG_SOURCE_DIR, verb,
             pg_dir);
    f = popen(cmd, "r");
    if (f == NULL)
        return -1;
    if (out != NULL && fgets(out, (int)size, f) != NULL)
        out[strcspn(out, "\n")] = '\0';
    while (fgetc(f) != EOF)
        ;
    rc = pclose(f);
    return rc == 0 ? 0 : -1;
}

static int
group_setup(void **state)
{
    const char *env = getenv("MEDGATE_TEST_PGHOST");

    (void)state;
    mg_log_set_level("error"); /* expected connection failures are noisy */
    if (env != NULL && *env != '\0') {
        snprintf(pg_host, sizeof(pg_host), "%s", env);
    } else {
        snprintf(pg_dir, sizeof(pg_dir), "/tmp/mg-test-store-XXXXXX");
        if (mkdtemp(pg_dir) == NULL ||
            pg_script("start", pg_host, sizeof(pg_host)) < 0) {
            fprintf(stderr, "cannot start PostgreSQL in %s\n", pg_dir);
            return -1;
        }
    }
    snprintf(db_name, sizeof(db_name), "medgate_test_store_%d", (int)getpid());
    admin_execf("postgres", "DROP DATABASE IF EXISTS %s", db_name);
    admin_execf("postgres", "CREATE DATABASE %s", db_name);
    snprintf(conninfo, sizeof(conninfo), "host=%s user=postgres dbname=%s",
             pg_host, db_name);
    return 0;
}

static int
group_teardown(void **state)
{
    char cmd[512];

    (void)state;
    admin_execf("postgres", "DROP DATABASE IF EXISTS %s WITH (FORCE)",
                db_name);
    if (pg_dir[0] != '\0') {
        pg_script("stop", NULL, 0);
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", pg_dir);
        if (system(cmd) != 0)
            return -1;
    }
    return 0;
}

/* ---- loop helpers ---- */

struct fixture {
    uv_loop_t loop;
    struct mg_store *store;
    long live_before;
    bool closed;
};

static void
on_tick(uv_timer_t *t)
{
    (void)t; /* only bounds each uv_run(UV_RUN_ONCE) */
}

/* Runs the loop until pred(arg) or ms elapse; returns pred(arg). */
static bool
run_until(uv_loop_t *loop, bool (*pred)(void *), void *arg, unsigned ms)
{
    uint64_t end = mg_clock_mono_us() + (uint64_t)ms * 1000;
    uv_timer_t tick;
    bool ok;

    uv_timer_init(loop, &tick);
    uv_timer_start(&tick, on_tick, 10, 10);
    while (!(ok = pred(arg)) && mg_clock_mono_us() < end)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return ok;
}

static bool
never(void *arg)
{
    (void)arg;
    return false;
}

static void
run_for(uv_loop_t *loop, unsigned ms)
{
    run_until(loop, never, NULL, ms);
}

static bool
flag_set(void *arg)
{
    return *(bool *)arg;
}

static bool
store_ready(void *arg)
{
    return mg_store_ready(arg);
}

static bool
store_not_ready(void *arg)
{
    return !mg_store_ready(arg);
}

static bool
store_some_up(void *arg)
{
    struct mg_store_stats st;

    mg_store_stats(arg, &st);
    return st.up > 0;
}

static bool
store_all_up(void *arg)
{
    struct mg_store_stats st;

    mg_store_stats(arg, &st);
    return st.up == st.total;
}

static struct mg_store_options
default_options(void)
{
    return (struct mg_store_options){
        .conninfo = conninfo,
        .pool_size = 2,
        .queue_max = 64,
        .reconnect_max_ms = 300,
        .application_name = "medgate-test",
        .statement_timeout_ms = 30000,
    };
}

static void
fixture_open(struct fixture *f, const struct mg_store_options *opts)
{
    memset(f, 0, sizeof(*f));
    f->live_before = mg_alloc_live();
    assert_int_equal(uv_loop_init(&f->loop), 0);
    assert_int_equal(mg_store_open(&f->loop, opts, &f->store), MG_OK);
}

static void
fixture_open_ready(struct fixture *f, const struct mg_store_options *opts)
{
    fixture_open(f, opts);
    assert_true(run_until(&f->loop, store_ready, f->store, 5000));
}

static void
on_store_closed(void *ud)
{
    *(bool *)ud = true;
}

/* Closes the store, drains the loop and checks nothing is left. */
static void
fixture_close(struct fixture *f)
{
    mg_store_close(f->store, on_store_closed, &f->closed);
    assert_true(run_until(&f->loop, flag_set, &f->closed, 5000));
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    /* a cancel thread frees its job when PQcancel returns, which on a
     * loaded machine can be after the store has closed */
    for (int i = 0; i < 1000 && mg_store_cancels_running() > 0; i++)
        usleep(10000);
    assert_int_equal(mg_store_cancels_running(), 0);
    assert_int_equal(mg_alloc_live(), f->live_before);
}

/* ---- result collection ---- */

struct result {
    bool done;
    int calls;
    int rc;
    char value[128];   /* first column of the first row */
    char sqlstate[8];
    char cmd[32];      /* PQcmdStatus */
};

static void
on_result(int rc, PGresult *res, void *ud)
{
    struct result *r = ud;

    r->done = true;
    r->calls++;
    r->rc = rc;
    if (res == NULL)
        return;
    snprintf(r->cmd, sizeof(r->cmd), "%s", PQcmdStatus(res));
    if (rc == MG_OK && PQntuples(res) > 0)
        snprintf(r->value, sizeof(r->value), "%s",
                 PQgetisnull(res, 0, 0) ? "(null)" : PQgetvalue(res, 0, 0));
    if (rc == MG_EDB && PQresultErrorField(res, PG_DIAG_SQLSTATE))
        snprintf(r->sqlstate, sizeof(r->sqlstate), "%s",
                 PQresultErrorField(res, PG_DIAG_SQLSTATE));
}

static bool
result_done(void *arg)
{
    return ((struct result *)arg)->done;
}

/* Runs one statement and waits; checks the callback came from the loop. */
static void
query_wait(struct fixture *f, const char *stmt, const char *sql, int n,
           const char *const *values, const int *lengths, struct result *r)
{
    memset(r, 0, sizeof(*r));
    assert_int_equal(mg_store_query(f->store, stmt, sql, n, values, lengths,
                                    on_result, r),
                     MG_OK);
    assert_false(r->done); /* never synchronous */
    assert_true(run_until(&f->loop, result_done, r, 10000));
    assert_int_equal(r->calls, 1);
}

struct txstate {
    bool begun;
    int rc;
    struct mg_store_tx *tx;
};

static void
on_begin(int rc, struct mg_store_tx *tx, void *ud)
{
    struct txstate *t = ud;

    t->begun = true;
    t->rc = rc;
    t->tx = tx;
}

static bool
tx_begun(void *arg)
{
    return ((struct txstate *)arg)->begun;
}

static struct mg_store_tx *
begin_wait(struct fixture *f)
{
    struct txstate t = {0};

    assert_int_equal(mg_store_begin(f->store, on_begin, &t), MG_OK);
    assert_false(t.begun);
    assert_true(run_until(&f->loop, tx_begun, &t, 5000));
    assert_int_equal(t.rc, MG_OK);
    assert_non_null(t.tx);
    return t.tx;
}

static void
tx_query_wait(struct fixture *f, struct mg_store_tx *tx, const char *sql,
              struct result *r)
{
    memset(r, 0, sizeof(*r));
    assert_int_equal(
        mg_store_tx_query(tx, NULL, sql, 0, NULL, NULL, on_result, r), MG_OK);
    assert_true(run_until(&f->loop, result_done, r, 10000));
}

static void
tx_end_wait(struct fixture *f, struct mg_store_tx *tx, bool commit,
            struct result *r)
{
    memset(r, 0, sizeof(*r));
    assert_int_equal(commit ? mg_store_tx_commit(tx, on_result, r)
                            : mg_store_tx_rollback(tx, on_result, r),
                     MG_OK);
    assert_false(r->done);
    assert_true(run_until(&f->loop, result_done, r, 10000));
    assert_int_equal(r->calls, 1);
}

/* ---- tests ---- */

static void
test_store_query_params_and_prepared(void **state)
{
    struct mg_store_options o = default_options();
    struct fixture f;
    struct result r;
    char a[8], b[8];
    const char *vals[2] = {a, b};
    const char *sliced[2] = {"12345", NULL};
    const int lens[2] = {2, 0};

    (void)state;
    /* Registered before open: prepared on connect. */
    fixture_open(&f, &o);
    assert_int_equal(mg_store_prepare(f.store, "add",
                                      "SELECT $1::int + $2::int", 2),
                     MG_OK);
    assert_true(run_until(&f.loop, store_ready, f.store, 5000));

    snprintf(a, sizeof(a), "2");
    snprintf(b, sizeof(b), "3");
    query_wait(&f, "add", NULL, 2, vals, NULL, &r);
    assert_int_equal(r.rc, MG_OK);
    assert_string_equal(r.value, "5");

    /* Plain SQL with parameters: lengths cut values, NULL is SQL NULL. */
    query_wait(&f, NULL, "SELECT $1::text || coalesce($2, '-')", 2, sliced,
               lens, &r);
    assert_int_equal(r.rc, MG_OK);
    assert_string_equal(r.value, "12-");

    /* Registered after open: prepared at first use on each connection. */
    assert_int_equal(mg_store_prepare(f.store, "mul",
                                      "SELECT $1::int * $2::int", 2),
                     MG_OK);
    for (int i = 0; i < 4; i++) {
        snprintf(a, sizeof(a), "%d", i);
        query_wait(&f, "mul", NULL, 2, vals, NULL, &r);
        assert_int_equal(r.rc, MG_OK);
        assert_int_equal(atoi(r.value), i * 3);
    }
    /* A statement without a result set. */
    query_wait(&f, NULL, "SET LOCAL work_mem = '8MB'", 0, NULL, NULL, &r);
    assert_int_equal(r.rc, MG_OK);
    assert_string_equal(r.cmd, "SET");
    fixture_close(&f);
}

static void
test_store_prepare_before_table_exists(void **state)
{
    struct mg_store_options o = default_options();
    struct fixture f;
    struct result r;
    const char *v[1] = {"7"};

    (void)state;
    admin_exec(db_name, "DROP TABLE IF EXISTS t_late");
    fixture_open(&f, &o);
    assert_int_equal(mg_store_prepare(f.store, "late_ins",
                                      "INSERT INTO t_late VALUES ($1::int)",
                                      1),
                     MG_OK);
    /* Its preparation fails at connect; the pool is up anyway. */
    assert_true(run_until(&f.loop, store_ready, f.store, 5000));
    query_wait(&f, "late_ins", NULL, 1, v, NULL, &r);
    assert_int_equal(r.rc, MG_EDB);
    assert_string_equal(r.sqlstate, "42P01");
    /* Once the table exists (a migration ran) it prepares at use. */
    admin_exec(db_name, "CREATE TABLE t_late (id int)");
    query_wait(&f, "late_ins", NULL, 1, v, NULL, &r);
    assert_int_equal(r.rc, MG_OK);
    assert_string_equal(admin_exec(db_name, "SELECT count(*) FROM t_late"),
                        "1");
    fixture_close(&f);
}

struct many {
    int expect;
    int rc;
    long value;
    int *done;
};

static void
on_many(int rc, PGresult *res, void *ud)
{
    struct many *m = ud;

    m->rc = rc;
    if (rc == MG_OK)
        m->value = atol(PQgetvalue(res, 0, 0));
    (*m->done)++;
}

struct count_goal {
    int *n;
    int goal;
};

static bool
count_reached(void *arg)
{
    struct count_goal *g = arg;

    return *g->n >= g->goal;
}

static void
test_store_query_thousand_concurrent(void **state)
{
    struct mg_store_options o = default_options();
    enum { N = 1000 };
    struct many *m = calloc(N, sizeof(*m));
    struct fixture f;
    int done = 0;
    struct count_goal goal = {&done, N};
    struct mg_store_stats st;

    (void)state;
    assert_non_null(m);
    o.pool_size = 4;
    o.queue_max = N;
    fixture_open_ready(&f, &o);
    /* Ready means one connection up; the last check below counts all four,
     * and a slow machine (CI under ASan) may still be connecting one. */
    assert_true(run_until(&f.loop, store_all_up, f.store, 10000));
    assert_int_equal(mg_store_prepare(f.store, "double",
                                      "SELECT $1::int * 2", 1),
                     MG_OK);
    for (int i = 0; i < N; i++) {
        char buf[16]; /* reused: the pool must copy */
        const char *v[1] = {buf};

        snprintf(buf, sizeof(buf), "%d", i);
        m[i].expect = i * 2;
        m[i].rc = 1;
        m[i].done = &done;
        assert_int_equal(mg_store_query(f.store, i % 2 ? "double" : NULL,
                                        "SELECT $1::int * 2", 1, v, NULL,
                                        on_many, &m[i]),
                         MG_OK);
    }
    assert_int_equal(done, 0);
    mg_store_stats(f.store, &st);
    assert_int_equal(st.queue_length, N);
    assert_true(run_until(&f.loop, count_reached, &goal, 60000));
    for (int i = 0; i < N; i++) {
        assert_int_equal(m[i].rc, MG_OK);
        assert_int_equal(m[i].value, m[i].expect);
    }
    assert_int_equal(done, N);
    mg_store_stats(f.store, &st);
    assert_int_equal(st.queue_length, 0);
    assert_int_equal(st.up, 4);
    assert_int_equal(st.errors_total, 0);
    free(m);
    fixture_close(&f);
}

static void
test_store_queue_full_busy(void **state)
{
    struct mg_store_options o = default_options();
    struct result r[10];
    struct fixture f;
    int ok = 0, busy = 0;

    (void)state;
    o.pool_size = 1;
    o.queue_max = 5;
    fixture_open_ready(&f, &o);
    memset(r, 0, sizeof(r));
    for (int i = 0; i < 10; i++)
        assert_int_equal(mg_store_query(f.store, NULL, "SELECT 1", 0, NULL,
                                        NULL, on_result, &r[i]),
                         MG_OK);
    for (int i = 0; i < 10; i++)
        assert_false(r[i].done); /* MG_EBUSY comes from the loop too */
    assert_true(run_until(&f.loop, result_done, &r[9], 5000));
    assert_true(run_until(&f.loop, result_done, &r[4], 5000));
    for (int i = 0; i < 10; i++) {
        assert_int_equal(r[i].calls, 1);
        ok += r[i].rc == MG_OK;
        busy += r[i].rc == MG_EBUSY;
        assert_int_equal(r[i].rc, i < 5 ? MG_OK : MG_EBUSY);
    }
    assert_int_equal(ok, 5);
    assert_int_equal(busy, 5);
    fixture_close(&f);
}

static void
test_store_queue_timeout(void **state)
{
    struct mg_store_options o = default_options();
    struct result slow, waiting;
    struct fixture f;

    (void)state;
    o.pool_size = 1;
    o.queue_timeout_ms = 100;
    fixture_open_ready(&f, &o);
    memset(&slow, 0, sizeof(slow));
    memset(&waiting, 0, sizeof(waiting));
    assert_int_equal(mg_store_query(f.store, NULL, "SELECT pg_sleep(3)", 0,
                                    NULL, NULL, on_result, &slow),
                     MG_OK);
    run_for(&f.loop, 20); /* the slow one leaves the queue */
    assert_int_equal(mg_store_query(f.store, NULL, "SELECT 1", 0, NULL, NULL,
                                    on_result, &waiting),
                     MG_OK);
    /* The slow one runs 3 s: far longer than the 100 ms queue timeout,
     * however slow the machine. */
    assert_true(run_until(&f.loop, result_done, &waiting, 2500));
    assert_int_equal(waiting.rc, MG_ETIMEDOUT);
    assert_false(slow.done);
    assert_true(run_until(&f.loop, result_done, &slow, 10000));
    assert_int_equal(slow.rc, MG_OK);
    fixture_close(&f);
}

static void
test_store_tx_commit_and_rollback(void **state)
{
    struct mg_store_options o = default_options();
    struct mg_store_tx *tx;
    struct fixture f;
    struct result r, r2;
    const char *v[1] = {"42"};

    (void)state;
    admin_exec(db_name, "DROP TABLE IF EXISTS t_tx");
    admin_exec(db_name, "CREATE TABLE t_tx (id int primary key)");
    fixture_open_ready(&f, &o);

    /* Commit: visible to other sessions. Calls may be queued at once. */
    tx = begin_wait(&f);
    memset(&r, 0, sizeof(r));
    memset(&r2, 0, sizeof(r2));
    assert_int_equal(mg_store_tx_query(tx, NULL,
                                       "INSERT INTO t_tx VALUES ($1::int)", 1,
                                       v, NULL, on_result, &r),
                     MG_OK);
    assert_int_equal(mg_store_tx_query(tx, NULL,
                                       "INSERT INTO t_tx VALUES (43)", 0, NULL,
                                       NULL, on_result, &r2),
                     MG_OK);
    /* Not visible before the commit. */
    assert_true(run_until(&f.loop, result_done, &r2, 5000));
    assert_int_equal(r.rc, MG_OK);
    assert_int_equal(r2.rc, MG_OK);
    assert_string_equal(admin_exec(db_name, "SELECT count(*) FROM t_tx"), "0");
    tx_end_wait(&f, tx, true, &r);
    assert_int_equal(r.rc, MG_OK);
    assert_string_equal(r.cmd, "COMMIT");
    assert_string_equal(admin_exec(db_name, "SELECT count(*) FROM t_tx"), "2");

    /* Rollback: not visible. A savepoint undoes part of a transaction. */
    tx = begin_wait(&f);
    tx_query_wait(&f, tx, "INSERT INTO t_tx VALUES (1)", &r);
    assert_int_equal(r.rc, MG_OK);
    tx_end_wait(&f, tx, false, &r);
    assert_int_equal(r.rc, MG_OK);
    query_wait(&f, NULL, "SELECT count(*) FROM t_tx WHERE id = 1", 0, NULL,
               NULL, &r);
    assert_string_equal(r.value, "0");

    tx = begin_wait(&f);
    tx_query_wait(&f, tx, "INSERT INTO t_tx VALUES (2)", &r);
    tx_query_wait(&f, tx, "SAVEPOINT a", &r);
    assert_int_equal(r.rc, MG_OK);
    tx_query_wait(&f, tx, "INSERT INTO t_tx VALUES (2)", &r);
    assert_int_equal(r.rc, MG_EDB);
    assert_string_equal(r.sqlstate, "23505");
    tx_query_wait(&f, tx, "ROLLBACK TO SAVEPOINT a", &r);
    assert_int_equal(r.rc, MG_OK);
    tx_query_wait(&f, tx, "INSERT INTO t_tx VALUES (3)", &r);
    assert_int_equal(r.rc, MG_OK);
    /* Ending twice is refused; no callback for the refused call. */
    memset(&r, 0, sizeof(r));
    assert_int_equal(mg_store_tx_commit(tx, on_result, &r), MG_OK);
    assert_int_equal(mg_store_tx_rollback(tx, on_result, &r2), MG_EINVAL);
    assert_int_equal(mg_store_tx_query(tx, NULL, "SELECT 1", 0, NULL, NULL,
                                       on_result, &r2),
                     MG_EINVAL);
    assert_true(run_until(&f.loop, result_done, &r, 5000));
    assert_int_equal(r.rc, MG_OK);
    assert_string_equal(
        admin_exec(db_name, "SELECT string_agg(id::text, ',' ORDER BY id) "
                            "FROM t_tx"),
        "2,3,42,43");
    fixture_close(&f);
}

static void
test_store_statement_error_sqlstate(void **state)
{
    struct mg_store_options o = default_options();
    struct mg_store_tx *tx;
    struct fixture f;
    struct result r;

    (void)state;
    o.pool_size = 1;
    fixture_open_ready(&f, &o);
    query_wait(&f, NULL, "SELECT 1/0", 0, NULL, NULL, &r);
    assert_int_equal(r.rc, MG_EDB);
    assert_string_equal(r.sqlstate, "22012");
    query_wait(&f, NULL, "SELECT * FROM no_such_table", 0, NULL, NULL, &r);
    assert_int_equal(r.rc, MG_EDB);
    assert_string_equal(r.sqlstate, "42P01");
    /* The connection still serves. */
    query_wait(&f, NULL, "SELECT 'ok'", 0, NULL, NULL, &r);
    assert_int_equal(r.rc, MG_OK);
    assert_string_equal(r.value, "ok");

    /* COMMIT of an aborted transaction rolls back: not MG_OK. */
    tx = begin_wait(&f);
    tx_query_wait(&f, tx, "SELECT 1/0", &r);
    assert_int_equal(r.rc, MG_EDB);
    tx_query_wait(&f, tx, "SELECT 1", &r);
    assert_int_equal(r.rc, MG_EDB);
    assert_string_equal(r.sqlstate, "25P02");
    tx_end_wait(&f, tx, true, &r);
    assert_int_equal(r.rc, MG_EDB);
    assert_string_equal(r.cmd, "ROLLBACK");

    /* A one-shot "BEGIN" must not leak its transaction to the next user:
     * the next statement commits on its own. */
    admin_exec(db_name, "DROP TABLE IF EXISTS t_leak");
    admin_exec(db_name, "CREATE TABLE t_leak (id int)");
    query_wait(&f, NULL, "BEGIN", 0, NULL, NULL, &r);
    assert_int_equal(r.rc, MG_OK);
    query_wait(&f, NULL, "INSERT INTO t_leak VALUES (1)", 0, NULL, NULL, &r);
    assert_int_equal(r.rc, MG_OK);
    assert_string_equal(admin_exec(db_name, "SELECT count(*) FROM t_leak"),
                        "1");
    query_wait(&f, NULL, "SELECT 1; SELECT 2", 0, NULL, NULL, &r);
    assert_int_equal(r.rc, MG_EDB); /* one statement per call */
    fixture_close(&f);
}

static void
test_store_tx_connection_killed(void **state)
{
    struct mg_store_options o = default_options();
    struct mg_store_stats st;
    struct mg_store_tx *tx;
    struct fixture f;
    struct result r;
    char pid[128];

    (void)state;
    admin_exec(db_name, "DROP TABLE IF EXISTS t_kill");
    admin_exec(db_name, "CREATE TABLE t_kill (id int)");
    fixture_open_ready(&f, &o);
    tx = begin_wait(&f);
    tx_query_wait(&f, tx, "INSERT INTO t_kill VALUES (1)", &r);
    tx_query_wait(&f, tx, "SELECT pg_backend_pid()", &r);
    assert_int_equal(r.rc, MG_OK);
    snprintf(pid, sizeof(pid), "%s", r.value);
    assert_string_equal(
        admin_execf("postgres", "SELECT pg_terminate_backend(%s)", pid), "t");

    tx_query_wait(&f, tx, "SELECT 1", &r);
    assert_int_equal(r.rc, MG_EDBDOWN);
    tx_query_wait(&f, tx, "SELECT 2", &r);
    assert_int_equal(r.rc, MG_EDBDOWN);
    tx_end_wait(&f, tx, true, &r);
    assert_int_equal(r.rc, MG_EDBDOWN); /* never sent: not committed */
    assert_string_equal(admin_exec(db_name, "SELECT count(*) FROM t_kill"),
                        "0");

    /* The pool reconnects by itself and serves again. */
    assert_true(run_until(&f.loop, store_ready, f.store, 5000));
    assert_true(run_until(&f.loop, store_all_up, f.store, 5000));
    mg_store_stats(f.store, &st);
    assert_true(st.reconnects_total >= 1);
    assert_true(st.errors_total >= 1);
    for (int i = 0; i < 4; i++) {
        query_wait(&f, NULL, "SELECT 'back'", 0, NULL, NULL, &r);
        assert_int_equal(r.rc, MG_OK);
        assert_string_equal(r.value, "back");
    }
    tx = begin_wait(&f);
    tx_query_wait(&f, tx, "INSERT INTO t_kill VALUES (2)", &r);
    tx_end_wait(&f, tx, true, &r);
    assert_int_equal(r.rc, MG_OK);
    assert_string_equal(admin_exec(db_name, "SELECT count(*) FROM t_kill"),
                        "1");
    fixture_close(&f);
}

static void
test_store_commit_in_doubt(void **state)
{
    struct mg_store_options o = default_options();
    struct mg_store_tx *tx;
    struct fixture f;
    struct result r;
    char pid[128];

    (void)state;
    /* A deferred trigger makes COMMIT itself slow, so the connection can
     * be killed while the COMMIT is in flight. */
    admin_exec(db_name, "DROP TABLE IF EXISTS t_doubt");
    admin_exec(db_name, "CREATE TABLE t_doubt (id int)");
    admin_exec(db_name,
               "CREATE OR REPLACE FUNCTION slow_commit() RETURNS trigger "
               "LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(3); "
               "RETURN NULL; END $$");
    admin_exec(db_name, "CREATE CONSTRAINT TRIGGER t_doubt_slow AFTER INSERT "
                        "ON t_doubt DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
                        "EXECUTE FUNCTION slow_commit()");
    fixture_open_ready(&f, &o);
    tx = begin_wait(&f);
    tx_query_wait(&f, tx, "SELECT pg_backend_pid()", &r);
    snprintf(pid, sizeof(pid), "%s", r.value);
    tx_query_wait(&f, tx, "INSERT INTO t_doubt VALUES (1)", &r);
    assert_int_equal(r.rc, MG_OK);
    memset(&r, 0, sizeof(r));
    assert_int_equal(mg_store_tx_commit(tx, on_result, &r), MG_OK);
    run_for(&f.loop, 300);
    assert_false(r.done);
    admin_execf("postgres", "SELECT pg_terminate_backend(%s)", pid);
    assert_true(run_until(&f.loop, result_done, &r, 5000));
    assert_int_equal(r.rc, MG_EINDOUBT);
    fixture_close(&f);
}

/* A COMMIT that succeeds with a WARNING -- what PostgreSQL sends when a
 * wait for synchronous replication is cancelled -- is in doubt, never OK.
 * A deferred trigger raises the same kind of warning during COMMIT. A
 * warning during an ordinary statement changes nothing, and the
 * connection serves the next transaction. */
static void
test_store_commit_warning_in_doubt(void **state)
{
    struct mg_store_options o = default_options();
    struct mg_store_tx *tx;
    struct fixture f;
    struct result r;

    (void)state;
    admin_exec(db_name, "DROP TABLE IF EXISTS t_warn");
    admin_exec(db_name, "CREATE TABLE t_warn (id int)");
    admin_exec(db_name,
               "CREATE OR REPLACE FUNCTION warn_commit() RETURNS trigger "
               "LANGUAGE plpgsql AS $$ BEGIN IF NEW.id = 1 THEN "
               "RAISE WARNING 'committed locally only'; END IF; "
               "RETURN NULL; END $$");
    admin_exec(db_name, "CREATE CONSTRAINT TRIGGER t_warn_commit AFTER "
                        "INSERT ON t_warn DEFERRABLE INITIALLY DEFERRED FOR "
                        "EACH ROW EXECUTE FUNCTION warn_commit()");
    fixture_open_ready(&f, &o);
    tx = begin_wait(&f);
    tx_query_wait(&f, tx, "INSERT INTO t_warn VALUES (1)", &r);
    assert_int_equal(r.rc, MG_OK);
    memset(&r, 0, sizeof(r));
    assert_int_equal(mg_store_tx_commit(tx, on_result, &r), MG_OK);
    assert_true(run_until(&f.loop, result_done, &r, 5000));
    assert_int_equal(r.rc, MG_EINDOUBT);
    /* It did commit (locally): in doubt, not failed. */
    assert_string_equal(admin_exec(db_name, "SELECT count(*) FROM t_warn"),
                        "1");

    tx = begin_wait(&f);
    tx_query_wait(&f, tx, "DO $$ BEGIN RAISE WARNING 'in a statement'; "
                          "END $$", &r);
    assert_int_equal(r.rc, MG_OK);
    tx_query_wait(&f, tx, "INSERT INTO t_warn VALUES (2)", &r);
    memset(&r, 0, sizeof(r));
    assert_int_equal(mg_store_tx_commit(tx, on_result, &r), MG_OK);
    assert_true(run_until(&f.loop, result_done, &r, 5000));
    assert_int_equal(r.rc, MG_OK);
    fixture_close(&f);
}

/* The WARNING that makes a COMMIT in doubt must reach the pool even when
 * the database (or role) raises client_min_messages: with "error" it was
 * withheld, and a COMMIT whose synchronous-replication wait was cancelled
 * was reported committed. Checked with and without a statement_timeout
 * (the two ways the pool builds its connection options). */
static void
test_store_commit_warning_not_withheld(void **state)
{
    struct mg_store_options o = default_options();
    struct mg_store_tx *tx;
    struct fixture f;
    struct result r;

    (void)state;
    admin_exec(db_name, "DROP TABLE IF EXISTS t_cmm");
    admin_exec(db_name, "CREATE TABLE t_cmm (id int)");
    admin_exec(db_name,
               "CREATE OR REPLACE FUNCTION warn_commit_cmm() RETURNS trigger "
               "LANGUAGE plpgsql AS $$ BEGIN "
               "RAISE WARNING 'committed locally only'; RETURN NULL; END $$");
    admin_exec(db_name, "CREATE CONSTRAINT TRIGGER t_cmm_commit AFTER INSERT "
                        "ON t_cmm DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
                        "EXECUTE FUNCTION warn_commit_cmm()");
    for (int pass = 0; pass < 2; pass++) {
        o.statement_timeout_ms = pass ? 0 : 30000;
        admin_execf("postgres",
                    "ALTER DATABASE %s SET client_min_messages = error",
                    db_name);
        fixture_open_ready(&f, &o);
        /* Sessions have it from their start: the setting may go now. */
        admin_execf("postgres", "ALTER DATABASE %s RESET client_min_messages",
                    db_name);
        tx = begin_wait(&f);
        tx_query_wait(&f, tx, "INSERT INTO t_cmm VALUES (1)", &r);
        assert_int_equal(r.rc, MG_OK);
        tx_end_wait(&f, tx, true, &r);
        assert_int_equal(r.rc, MG_EINDOUBT);
        fixture_close(&f);
    }
}

/* True when no backend has the pid arg (a string). */
static bool
backend_gone(void *arg)
{
    return strcmp(admin_execf("postgres", "SELECT count(*) FROM "
                              "pg_stat_activity WHERE pid = %s",
                              (const char *)arg),
                  "0") == 0;
}

/* A COMMIT that does not answer -- here a deferred trigger sleeping in it;
 * in production a wait for a synchronous standby that is gone, which
 * statement_timeout does not bound -- ends in doubt at commit_timeout_ms,
 * not when it answers. Its connection is dropped after a cancel, so its
 * backend stops rather than finish later; the pool reconnects and the next
 * transaction commits. The deadline counts from the COMMIT's sending: a
 * slow statement before it, with the COMMIT queued behind, is not cut. */
static void
test_store_commit_deadline(void **state)
{
    struct mg_store_options o = default_options();
    struct mg_store_stats st;
    struct mg_store_tx *tx;
    struct fixture f;
    struct result r, slow;
    char pid[128];
    uint64_t t0, took_ms;

    (void)state;
    admin_exec(db_name, "DROP TABLE IF EXISTS t_deadline");
    admin_exec(db_name, "CREATE TABLE t_deadline (id int)");
    admin_exec(db_name,
               "CREATE OR REPLACE FUNCTION hang_commit() RETURNS trigger "
               "LANGUAGE plpgsql AS $$ BEGIN IF NEW.id = 1 THEN "
               "PERFORM pg_sleep(60); END IF; RETURN NULL; END $$");
    admin_exec(db_name, "CREATE CONSTRAINT TRIGGER t_deadline_hang AFTER "
                        "INSERT ON t_deadline DEFERRABLE INITIALLY DEFERRED "
                        "FOR EACH ROW EXECUTE FUNCTION hang_commit()");
    o.commit_timeout_ms = 1000;
    fixture_open_ready(&f, &o);
    tx = begin_wait(&f);
    tx_query_wait(&f, tx, "SELECT pg_backend_pid()", &r);
    snprintf(pid, sizeof(pid), "%s", r.value);
    tx_query_wait(&f, tx, "INSERT INTO t_deadline VALUES (1)", &r);
    assert_int_equal(r.rc, MG_OK);
    memset(&r, 0, sizeof(r));
    t0 = mg_clock_mono_us();
    assert_int_equal(mg_store_tx_commit(tx, on_result, &r), MG_OK);
    assert_true(run_until(&f.loop, result_done, &r, 10000));
    took_ms = (mg_clock_mono_us() - t0) / 1000;
    assert_int_equal(r.rc, MG_EINDOUBT);
    assert_int_equal(r.calls, 1);
    if (took_ms < 900 || took_ms > 5000)
        fail_msg("in doubt after %llu ms, deadline 1000 ms",
                 (unsigned long long)took_ms);

    /* Cancelled, not left sleeping for a minute: the backend is gone and
     * the trigger's error rolled the commit back. */
    assert_true(run_until(&f.loop, backend_gone, pid, 5000));
    assert_string_equal(admin_exec(db_name, "SELECT count(*) FROM t_deadline"),
                        "0");

    /* The pool reconnects by itself and serves the next transactions. */
    assert_true(run_until(&f.loop, store_all_up, f.store, 5000));
    mg_store_stats(f.store, &st);
    assert_true(st.reconnects_total >= 1);
    tx = begin_wait(&f);
    tx_query_wait(&f, tx, "INSERT INTO t_deadline VALUES (2)", &r);
    memset(&slow, 0, sizeof(slow));
    assert_int_equal(mg_store_tx_query(tx, NULL, "SELECT pg_sleep(1.5)", 0,
                                       NULL, NULL, on_result, &slow),
                     MG_OK);
    tx_end_wait(&f, tx, true, &r); /* called while the sleep runs */
    assert_int_equal(slow.rc, MG_OK);
    assert_int_equal(r.rc, MG_OK);
    assert_string_equal(admin_exec(db_name, "SELECT count(*) FROM t_deadline"),
                        "1");
    fixture_close(&f);
}

/* A statement that commits on its own (mg_store_query_commit) is a COMMIT
 * as far as its outcome goes: held at its commit past statement_timeout_ms
 * + commit_timeout_ms it ends in doubt (never MG_EDBDOWN), its backend is
 * cancelled; answered, MG_OK means committed. */
static void
test_store_query_commit(void **state)
{
    struct mg_store_options o = default_options();
    struct fixture f;
    struct result r;
    uint64_t t0, took_ms;

    (void)state;
    admin_exec(db_name, "DROP TABLE IF EXISTS t_qcommit");
    admin_exec(db_name, "CREATE TABLE t_qcommit (id int)");
    admin_exec(db_name,
               "CREATE OR REPLACE FUNCTION hang_qcommit() RETURNS trigger "
               "LANGUAGE plpgsql AS $$ BEGIN IF NEW.id = 1 THEN "
               "PERFORM pg_sleep(60); END IF; RETURN NULL; END $$");
    admin_exec(db_name, "CREATE CONSTRAINT TRIGGER t_qcommit_hang AFTER "
                        "INSERT ON t_qcommit DEFERRABLE INITIALLY DEFERRED "
                        "FOR EACH ROW EXECUTE FUNCTION hang_qcommit()");
    o.commit_timeout_ms = 1000;
    o.statement_timeout_ms = 1000;
    fixture_open_ready(&f, &o);
    memset(&r, 0, sizeof(r));
    t0 = mg_clock_mono_us();
    assert_int_equal(mg_store_query_commit(f.store, NULL,
                                           "INSERT INTO t_qcommit VALUES (1)",
                                           0, NULL, NULL, on_result, &r),
                     MG_OK);
    assert_true(run_until(&f.loop, result_done, &r, 10000));
    took_ms = (mg_clock_mono_us() - t0) / 1000;
    assert_int_equal(r.rc, MG_EINDOUBT);
    if (took_ms < 1900 || took_ms > 6000)
        fail_msg("in doubt after %llu ms, deadline 1000 + 1000 ms",
                 (unsigned long long)took_ms);
    assert_true(run_until(&f.loop, store_all_up, f.store, 5000));
    memset(&r, 0, sizeof(r));
    assert_int_equal(mg_store_query_commit(f.store, NULL,
                                           "INSERT INTO t_qcommit VALUES (2)",
                                           0, NULL, NULL, on_result, &r),
                     MG_OK);
    assert_true(run_until(&f.loop, result_done, &r, 10000));
    assert_int_equal(r.rc, MG_OK);
    assert_string_equal(admin_exec(db_name, "SELECT string_agg(id::text, ',')"
                                            " FROM t_qcommit"), "2");
    fixture_close(&f);
}

static void
on_prepare(uv_prepare_t *h)
{
    ++*(int *)h->data; /* one per loop iteration */
}

/* Simulates down-time on any cluster: refuse new sessions to the database
 * and kill the pool's. */
static void
test_store_database_refused_and_back(void **state)
{
    struct mg_store_options o = default_options();
    struct fixture f;
    struct result r;
    char reason[256];
    uv_prepare_t iter;
    int iterations = 0;
    uint64_t t0;

    (void)state;
    fixture_open_ready(&f, &o);
    admin_execf("postgres", "ALTER DATABASE %s ALLOW_CONNECTIONS false",
                db_name);
    admin_execf("postgres",
                "SELECT count(pg_terminate_backend(pid)) FROM "
                "pg_stat_activity WHERE datname = '%s'",
                db_name);
    assert_true(run_until(&f.loop, store_not_ready, f.store, 5000));
    assert_false(mg_store_status(f.store, reason, sizeof(reason)));
    assert_non_null(strstr(reason, "database unreachable: "));

    /* Requests fail promptly while it is down, rather than hanging until
     * a connect timeout (10 s). The bound is loose so that a loaded CI
     * machine under ASan cannot make it flaky. */
    t0 = mg_clock_mono_us();
    query_wait(&f, NULL, "SELECT 1", 0, NULL, NULL, &r);
    assert_int_equal(r.rc, MG_EDBDOWN);
    assert_true(mg_clock_mono_us() - t0 < 2000000);

    /* No busy loop while reconnecting: the tick alone is 10 ms. */
    uv_prepare_init(&f.loop, &iter);
    iter.data = &iterations;
    uv_prepare_start(&iter, on_prepare);
    run_for(&f.loop, 600);
    uv_close((uv_handle_t *)&iter, NULL);
    assert_true(iterations < 200);
    assert_false(mg_store_ready(f.store));

    admin_execf("postgres", "ALTER DATABASE %s ALLOW_CONNECTIONS true",
                db_name);
    assert_true(run_until(&f.loop, store_ready, f.store, 5000));
    query_wait(&f, NULL, "SELECT 'up'", 0, NULL, NULL, &r);
    assert_int_equal(r.rc, MG_OK);
    assert_true(mg_store_status(f.store, reason, sizeof(reason)));
    assert_string_equal(reason, "ready");
    fixture_close(&f);
}

/* The real thing, on our own cluster only: stop PostgreSQL, start it. */
static void
test_store_cluster_stop_and_start(void **state)
{
    struct mg_store_options o = default_options();
    struct fixture f;
    struct result r, inflight;
    char sock[512];

    (void)state;
    if (pg_dir[0] == '\0')
        skip(); /* an external cluster is not ours to stop */
    fixture_open_ready(&f, &o);
    memset(&inflight, 0, sizeof(inflight));
    assert_int_equal(mg_store_query(f.store, NULL, "SELECT pg_sleep(10)", 0,
                                    NULL, NULL, on_result, &inflight),
                     MG_OK);
    run_for(&f.loop, 50);
    assert_int_equal(pg_script("stop", NULL, 0), 0);
    assert_true(run_until(&f.loop, store_not_ready, f.store, 5000));
    assert_true(run_until(&f.loop, result_done, &inflight, 5000));
    assert_int_equal(inflight.rc, MG_EDBDOWN);
    query_wait(&f, NULL, "SELECT 1", 0, NULL, NULL, &r);
    assert_int_equal(r.rc, MG_EDBDOWN);
    run_for(&f.loop, 300);
    assert_int_equal(pg_script("start", sock, sizeof(sock)), 0);
    assert_string_equal(sock, pg_host);
    assert_true(run_until(&f.loop, store_ready, f.store, 10000));
    query_wait(&f, NULL, "SELECT 'again'", 0, NULL, NULL, &r);
    assert_int_equal(r.rc, MG_OK);
    assert_string_equal(r.value, "again");
    fixture_close(&f);
}

static void
test_store_schema_version(void **state)
{
    struct mg_store_options o = default_options();
    struct fixture f;
    char reason[128];

    (void)state;
    admin_exec(db_name, "DROP TABLE IF EXISTS schema_migrations");
    o.expected_schema_version = 1;
    fixture_open(&f, &o);
    assert_true(run_until(&f.loop, store_some_up, f.store, 5000));
    assert_false(mg_store_status(f.store, reason, sizeof(reason)));
    assert_string_equal(reason, "schema version 0, expected 1 (run medgate migrate)");
    fixture_close(&f);

    admin_exec(db_name, "CREATE TABLE schema_migrations (version int primary "
                        "key, name text, checksum text, applied_at "
                        "timestamptz default now())");
    admin_exec(db_name, "INSERT INTO schema_migrations (version, name) "
                        "VALUES (1, 'one'), (2, 'two')");
    o.expected_schema_version = 2;
    fixture_open_ready(&f, &o);
    assert_true(mg_store_status(f.store, reason, sizeof(reason)));
    assert_string_equal(reason, "ready");
    fixture_close(&f);

    o.expected_schema_version = 3;
    fixture_open(&f, &o);
    assert_true(run_until(&f.loop, store_some_up, f.store, 5000));
    assert_false(mg_store_ready(f.store));
    assert_false(mg_store_status(f.store, reason, sizeof(reason)));
    assert_string_equal(reason, "schema version 2, expected 3 (run medgate migrate)");
    /* After a migration, a recheck makes it ready without reconnecting. */
    admin_exec(db_name, "INSERT INTO schema_migrations (version, name) "
                        "VALUES (3, 'three')");
    assert_int_equal(mg_store_recheck_schema(f.store), MG_OK);
    assert_true(run_until(&f.loop, store_ready, f.store, 5000));
    fixture_close(&f);
}

/* A check that refuses (MG_STORE_SCHEMA_REFUSED and its reason): not
 * ready, the reason in the status, and no work runs -- a query and a
 * transaction fail with MG_EREFUSED (not MG_ESCHEMA: nothing to migrate)
 * -- until a recheck passes. */
static void
test_store_refused_check_runs_nothing(void **state)
{
    struct mg_store_options o = default_options();
    struct txstate t = {0};
    struct fixture f;
    struct result r;
    char reason[160];

    (void)state;
    admin_exec(db_name, "DROP TABLE IF EXISTS mg_allow");
    o.expected_schema_version = 2;
    o.schema_sql = "SELECT CASE WHEN to_regclass('mg_allow') IS NULL THEN -4"
                   " ELSE 2 END, 'table mg_allow is missing'";
    fixture_open(&f, &o);
    assert_true(run_until(&f.loop, store_some_up, f.store, 5000));
    assert_false(mg_store_status(f.store, reason, sizeof(reason)));
    assert_string_equal(reason,
                        "database check refused: table mg_allow is missing");
    query_wait(&f, NULL, "SELECT 'ran'", 0, NULL, NULL, &r);
    assert_int_equal(r.rc, MG_EREFUSED);
    assert_int_equal(mg_store_begin(f.store, on_begin, &t), MG_OK);
    assert_true(run_until(&f.loop, tx_begun, &t, 5000));
    assert_int_equal(t.rc, MG_EREFUSED);
    assert_null(t.tx);

    admin_exec(db_name, "CREATE TABLE mg_allow ()");
    assert_int_equal(mg_store_recheck_schema(f.store), MG_OK);
    assert_true(run_until(&f.loop, store_ready, f.store, 5000));
    query_wait(&f, NULL, "SELECT 'ran'", 0, NULL, NULL, &r);
    assert_int_equal(r.rc, MG_OK);
    assert_string_equal(r.value, "ran");
    fixture_close(&f);
    admin_exec(db_name, "DROP TABLE mg_allow");
}

static void
test_store_close_cancels(void **state)
{
    struct mg_store_options o = default_options();
    struct result slow, queued[3], after;
    struct txstate t = {0};
    struct fixture f;

    (void)state;
    o.pool_size = 2;
    fixture_open_ready(&f, &o);
    memset(&slow, 0, sizeof(slow));
    memset(queued, 0, sizeof(queued));
    assert_int_equal(mg_store_begin(f.store, on_begin, &t), MG_OK);
    assert_true(run_until(&f.loop, tx_begun, &t, 5000));
    assert_int_equal(mg_store_query(f.store, NULL, "SELECT pg_sleep(5)", 0,
                                    NULL, NULL, on_result, &slow),
                     MG_OK);
    run_for(&f.loop, 30);
    for (int i = 0; i < 3; i++)
        assert_int_equal(mg_store_query(f.store, NULL, "SELECT 1", 0, NULL,
                                        NULL, on_result, &queued[i]),
                         MG_OK);
    mg_store_close(f.store, on_store_closed, &f.closed);
    assert_int_equal(mg_store_query(f.store, NULL, "SELECT 1", 0, NULL, NULL,
                                    on_result, &after),
                     MG_ECANCELED);
    assert_int_equal(mg_store_tx_query(t.tx, NULL, "SELECT 1", 0, NULL, NULL,
                                       on_result, &after),
                     MG_ECANCELED);
    assert_false(slow.done);
    assert_true(run_until(&f.loop, flag_set, &f.closed, 5000));
    assert_int_equal(slow.rc, MG_ECANCELED);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(queued[i].calls, 1);
        assert_int_equal(queued[i].rc, MG_ECANCELED);
    }
    assert_int_equal(uv_run(&f.loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&f.loop), 0);
    assert_int_equal(mg_alloc_live(), f.live_before);
}

static void
test_store_metrics(void **state)
{
    static const char *const want[] = {
        "medgate_db_pool_size 2\n",
        "medgate_db_connections{state=\"in_use\"} 0\n",
        "medgate_db_connections{state=\"idle\"} 2\n",
        "medgate_db_connections{state=\"down\"} 0\n",
        "medgate_db_queue_length 0\n",
        "medgate_db_errors_total 1\n",
        "medgate_db_reconnects_total 0\n",
        "medgate_db_up 1\n",
        "# TYPE medgate_db_errors_total counter\n",
        "# TYPE medgate_db_connections gauge\n",
    };
    struct mg_store_options o = default_options();
    struct fixture f;
    struct result r;
    struct mg_buf b;

    (void)state;
    fixture_open_ready(&f, &o);
    assert_true(run_until(&f.loop, store_ready, f.store, 5000));
    query_wait(&f, NULL, "SELECT 1/0", 0, NULL, NULL, &r);
    query_wait(&f, NULL, "SELECT 1", 0, NULL, NULL, &r);
    assert_true(run_until(&f.loop, store_all_up, f.store, 5000));
    mg_buf_init(&b, 4096);
    assert_int_equal(mg_store_write_metrics(f.store, &b), MG_OK);
    for (size_t i = 0; i < MG_ARRAY_LEN(want); i++)
        if (strstr(b.ptr, want[i]) == NULL)
            fail_msg("metrics lack \"%s\" in:\n%s", want[i], b.ptr);
    mg_buf_dispose(&b);
    fixture_close(&f);
}

static void
test_store_bad_arguments(void **state)
{
    struct mg_store_options o = default_options();
    struct mg_store *s = NULL;
    struct fixture f;
    struct result r;
    const char *v[1] = {"1"};
    const int neg[1] = {-1};

    (void)state;
    o.pool_size = MG_STORE_MAX_POOL + 1;
    fixture_open(&f, &(struct mg_store_options){.conninfo = conninfo});
    assert_int_equal(mg_store_open(&f.loop, &o, &s), MG_EINVAL);
    o = default_options();
    o.conninfo = "this is not a conninfo";
    assert_int_equal(mg_store_open(&f.loop, &o, &s), MG_ECONF);
    assert_null(s);

    assert_int_equal(mg_store_prepare(f.store, "one", "SELECT $1::int", 1),
                     MG_OK);
    assert_int_equal(mg_store_prepare(f.store, "one", "SELECT $1::int", 1),
                     MG_OK);
    assert_int_equal(mg_store_prepare(f.store, "one", "SELECT 2", 0), MG_EDUP);
    assert_int_equal(mg_store_query(f.store, "nope", NULL, 0, NULL, NULL,
                                    on_result, &r),
                     MG_ENOTFOUND);
    assert_int_equal(mg_store_query(f.store, "one", NULL, 0, NULL, NULL,
                                    on_result, &r),
                     MG_EINVAL);
    assert_int_equal(mg_store_query(f.store, NULL, NULL, 0, NULL, NULL,
                                    on_result, &r),
                     MG_EINVAL);
    assert_int_equal(mg_store_query(f.store, "one", NULL, 1, v, neg,
                                    on_result, &r),
                     MG_EINVAL);
    /* A store closed before it ever connected leaves nothing behind. */
    fixture_close(&f);
}

/* A text parameter cannot hold a NUL byte, and libpq sends text values up
 * to their first NUL whatever the lengths say: a value given with a length
 * that spans a NUL was stored cut short, reported MG_OK. It is refused. */
static void
test_store_value_with_nul_refused(void **state)
{
    struct mg_store_options o = default_options();
    const char raw[] = {'a', 'b', '\0', 'c', 'd'};
    const char *v[1] = {raw};
    const int len[1] = {5}, len2[1] = {2};
    struct mg_store_tx *tx;
    struct fixture f;
    struct result r;

    (void)state;
    fixture_open_ready(&f, &o);
    memset(&r, 0, sizeof(r));
    assert_int_equal(mg_store_query(f.store, NULL, "SELECT length($1)", 1, v,
                                    len, on_result, &r),
                     MG_EINVAL);
    run_for(&f.loop, 50);
    assert_false(r.done);
    tx = begin_wait(&f);
    assert_int_equal(mg_store_tx_query(tx, NULL, "SELECT length($1)", 1, v,
                                       len, on_result, &r),
                     MG_EINVAL);
    tx_end_wait(&f, tx, false, &r);
    assert_int_equal(r.rc, MG_OK);
    /* A length that stops before the NUL is a whole value. */
    query_wait(&f, NULL, "SELECT length($1)", 1, v, len2, &r);
    assert_int_equal(r.rc, MG_OK);
    assert_string_equal(r.value, "2");
    fixture_close(&f);
}

static void
test_store_unreachable_at_start(void **state)
{
    struct mg_store_options o = default_options();
    struct fixture f;
    struct result r;
    char ci[600], reason[256];

    (void)state;
    snprintf(ci, sizeof(ci), "host=%s/nowhere user=postgres dbname=x",
             pg_host);
    o.conninfo = ci;
    fixture_open(&f, &o);
    /* Queued before the first attempt finished, then failed promptly. */
    memset(&r, 0, sizeof(r));
    assert_int_equal(mg_store_query(f.store, NULL, "SELECT 1", 0, NULL, NULL,
                                    on_result, &r),
                     MG_OK);
    assert_true(run_until(&f.loop, result_done, &r, 5000));
    assert_int_equal(r.rc, MG_EDBDOWN);
    assert_false(mg_store_status(f.store, reason, sizeof(reason)));
    assert_non_null(strstr(reason, "database unreachable: "));
    fixture_close(&f);
}

/* The pool's socket to 127.0.0.1:port, found among this process's file
 * descriptors; -1 if none. */
static int
pool_socket_to(int port)
{
    for (int fd = 3; fd < 1024; fd++) {
        struct sockaddr_in peer;
        socklen_t len = sizeof(peer);

        if (getpeername(fd, (struct sockaddr *)&peer, &len) == 0 &&
            peer.sin_family == AF_INET && ntohs(peer.sin_port) == port)
            return fd;
    }
    return -1;
}

static int
sockopt(int fd, int level, int name)
{
    int v = -1;
    socklen_t len = sizeof(v);

    assert_int_equal(getsockopt(fd, level, name, &v, &len), 0);
    return v;
}

/* Over TCP the pool's sockets probe an idle peer after 30 s and give up on
 * unacknowledged data after 30 s (a vanished database host is noticed in
 * under a minute); a URL's own settings win. The "server" is a bare
 * listening socket: the kernel completes the handshake, nothing answers. */
static void
test_store_tcp_keepalive(void **state)
{
    struct sockaddr_in addr = {.sin_family = AF_INET};
    socklen_t len = sizeof(addr);
    struct mg_store_options o = default_options();
    struct fixture f;
    char ci[128];
    int srv, port, fd;

    (void)state;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    srv = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(srv >= 0);
    assert_int_equal(bind(srv, (struct sockaddr *)&addr, sizeof(addr)), 0);
    assert_int_equal(listen(srv, 8), 0);
    assert_int_equal(getsockname(srv, (struct sockaddr *)&addr, &len), 0);
    port = ntohs(addr.sin_port);
    o.pool_size = 1;
    for (int pass = 0; pass < 2; pass++) {
        snprintf(ci, sizeof(ci), "host=127.0.0.1 port=%d user=postgres "
                 "dbname=x%s", port, pass ? " keepalives_idle=5" : "");
        o.conninfo = ci;
        fixture_open(&f, &o);
        run_for(&f.loop, 300);
        fd = pool_socket_to(port);
        assert_true(fd >= 0);
        assert_int_equal(sockopt(fd, SOL_SOCKET, SO_KEEPALIVE), 1);
        assert_int_equal(sockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE),
                         pass ? 5 : 30);
        assert_int_equal(sockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL), 10);
        assert_int_equal(sockopt(fd, IPPROTO_TCP, TCP_KEEPCNT), 3);
        assert_int_equal(sockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT), 30000);
        fixture_close(&f);
    }
    close(srv);
}

/* ---- migrations (mg_migrate_run, blocking) ---- */

struct mig_file {
    const char *name, *text;
};

static char mig_db[64]; /* the last migrate_files database, for checks */
static const char *mig_options = ""; /* conninfo options of the next run */

/* Runs mg_migrate_run over a new folder of files on a new database
 * (mig_db, dropped by the next call or drop_mig_db); err's text in out. */
static int
migrate_files(const struct mig_file *files, size_t n, char *out, size_t size)
{
    char dir[] = "/tmp/mg-test-mig-XXXXXX", path[512], ci[1024];
    FILE *f, *err;
    int rc;

    snprintf(mig_db, sizeof(mig_db), "medgate_test_mig_%d", (int)getpid());
    admin_execf("postgres", "DROP DATABASE IF EXISTS %s", mig_db);
    admin_execf("postgres", "CREATE DATABASE %s", mig_db);
    assert_non_null(mkdtemp(dir));
    for (size_t i = 0; i < n; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, files[i].name);
        f = fopen(path, "w");
        assert_non_null(f);
        fputs(files[i].text, f);
        fclose(f);
    }
    snprintf(ci, sizeof(ci), "host=%s user=postgres dbname=%s %s", pg_host,
             mig_db, mig_options);
    memset(out, 0, size);
    err = fmemopen(out, size - 1, "w");
    rc = mg_migrate_run(ci, dir, NULL, err);
    fclose(err);
    for (size_t i = 0; i < n; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, files[i].name);
        unlink(path);
    }
    rmdir(dir);
    return rc;
}

static void
drop_mig_db(void)
{
    admin_execf("postgres", "DROP DATABASE IF EXISTS %s", mig_db);
}

/* A COMMIT (or another transaction-control statement) in a migration
 * ended the transaction the runner applies it in: the statements before
 * it stayed even when a later one failed, and the schema_migrations row
 * was written outside it. Such a file is refused, by file and line, before
 * any migration (not even an earlier, innocent one) is applied. */
static void
test_migrate_refuses_transaction_control(void **state)
{
    static const struct {
        const char *stmt, *want;
    } bad[] = {
        {"COMMIT;", "COMMIT"},
        {"commit work;", "COMMIT"},
        {"COMMIT", "COMMIT"}, /* the file's last: needs no ';' */
        {"BEGIN;", "BEGIN"},
        {"begin transaction isolation level serializable;", "BEGIN"},
        {"START TRANSACTION;", "START TRANSACTION"},
        {"END;", "END"},
        {"ROLLBACK;", "ROLLBACK"},
        {"ABORT;", "ABORT"},
        {"PREPARE TRANSACTION 'x';", "PREPARE TRANSACTION"},
        {"  /* first words count */ COMMIT;", "COMMIT"},
        /* A routine's BEGIN ATOMIC ... END (with a CASE ... END) and a
         * parameter named begin leave the next statement a statement. */
        {"CREATE FUNCTION mig_f() RETURNS int LANGUAGE sql BEGIN ATOMIC "
         "SELECT CASE WHEN true THEN 1 END; END; COMMIT;", "COMMIT"},
        {"CREATE FUNCTION mig_f(begin int) RETURNS int LANGUAGE sql "
         "AS 'SELECT 1'; COMMIT;", "COMMIT"},
    };
    char text[512], out[1024], want[128];

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        /* The same file with CRLF line ends: still line 3. */
        for (int crlf = 0; crlf < 2; crlf++) {
            const char *nl = crlf ? "\r\n" : "\n";
            struct mig_file files[] = {
                {"0001_innocent.sql", "CREATE TABLE mig_first (x int);\n"},
                {"0002_bad.sql", text},
            };
            bool last = strchr(bad[i].stmt, ';') == NULL; /* ends the file */
            int rc;

            snprintf(text, sizeof(text),
                     "CREATE TABLE mig_a (x int);%s-- the next one's bad%s"
                     "%s%s%s%s", nl, nl, bad[i].stmt, last ? "" : nl,
                     last ? "" : "CREATE TABLE mig_b (x int);",
                     last ? "" : nl);
            rc = migrate_files(files, 2, out, sizeof(out));
            snprintf(want, sizeof(want), "0002_bad.sql:3: transaction "
                     "control (%s)", bad[i].want);
            if (rc != MG_ECONF || strstr(out, want) == NULL)
                fail_msg("%s: rc %d, got \"%s\"", bad[i].stmt, rc, out);
            assert_string_equal(admin_exec(mig_db, "SELECT "
                                "to_regclass('mig_first') IS NULL AND "
                                "to_regclass('mig_a') IS NULL"), "t");
        }
    }
    drop_mig_db();
}

/* The runner reads strings as the scanner does, whatever the session's
 * default: with standard_conforming_strings off, 'x\'' is a whole string
 * to the server and the COMMIT after it a statement, which committed the
 * table before the failing SELECT. */
static void
test_migrate_strings_read_as_scanned(void **state)
{
    struct mig_file files[] = {
        {"0001_tricky.sql", "CREATE TABLE mig_a (x int);\n"
                            "SELECT 'x\\'';COMMIT;--';\n"
                            "SELECT 1/0;\n"},
    };
    char out[1024];
    int rc;

    (void)state;
    mig_options = "options='-c standard_conforming_strings=off'";
    rc = migrate_files(files, 1, out, sizeof(out));
    mig_options = "";
    assert_int_equal(rc, MG_EDB); /* the division by zero */
    assert_string_equal(admin_exec(mig_db, "SELECT to_regclass('mig_a') IS "
                                           "NULL AND NOT EXISTS (SELECT 1 "
                                           "FROM schema_migrations)"), "t");
    drop_mig_db();
}

/* The words are only transaction control as a statement's first words:
 * inside comments, string literals, quoted identifiers, dollar-quoted
 * bodies (plpgsql's BEGIN ... END), CASE ... END, a SQL-standard
 * BEGIN ATOMIC ... END body, and identifiers they are not, and the file
 * applies. ROLLBACK TO a savepoint stays inside the transaction. */
static void
test_migrate_accepts_the_words_elsewhere(void **state)
{
    /* Each line would be refused, or would hide a COMMIT from the
     * scanner, if that construct were not skipped as the server does. */
    static const char text[] =
        "-- it's a line comment: COMMIT;\n"
        "SELECT 1;\n"
        "SELECT ';\nCOMMIT;';\n"
        "/* a block comment /* nested: COMMIT; */ still one; END; */\n"
        "CREATE TABLE mig_words (\"commit\" text, end_date date, "
        "begin_at int);\n"
        "SELECT 1 AS \"it's\";\n"
        "SELECT ';\nCOMMIT;';\n"
        "SELECT E'\\' ; COMMIT; --';\n"
        "SELECT 'C:\\';\n"
        "SELECT ';\nCOMMIT;';\n"
        "INSERT INTO mig_words VALUES ('x'';\nCOMMIT;', NULL, 1),\n"
        "  (E'it''s \\' ; COMMIT; --', NULL, 2), ('C:\\', NULL, 3);\n"
        "DO $$\n"
        "BEGIN\n"
        "  PERFORM 1;\n"
        "END\n"
        "$$;\n"
        "DO $do$\n"
        "BEGIN\n"
        "  PERFORM 'x $$ ; COMMIT; $$';\n"
        "END $do$;\n"
        "CREATE FUNCTION mig_abs(x int) RETURNS int LANGUAGE plpgsql AS $$\n"
        "BEGIN\n"
        "  IF x > 0 THEN\n"
        "    RETURN x;\n"
        "  END IF;\n"
        "  BEGIN\n"
        "    RETURN -x;\n"
        "  END;\n"
        "END\n"
        "$$;\n"
        "CREATE FUNCTION mig_tag() RETURNS text LANGUAGE plpgsql AS $fn$\n"
        "BEGIN RETURN 'x $$ ; COMMIT; $$'; END $fn$;\n"
        "CREATE OR REPLACE FUNCTION mig_sign(x int) RETURNS text\n"
        "LANGUAGE sql\n"
        "BEGIN ATOMIC\n"
        "  SELECT CASE WHEN x > 0 THEN 'pos' ELSE 'neg' END;\n"
        "END;\n"
        "SAVEPOINT before_nothing;\n"
        "ROLLBACK TO SAVEPOINT before_nothing;\n"
        "ROLLBACK WORK TO before_nothing;\n"
        "SELECT CASE WHEN begin_at > 1 THEN 1 END FROM mig_words;\n"
        "UPDATE mig_words SET end_date = now() WHERE \"commit\" > ''\n";
    const struct mig_file files[] = {{"0001_words.sql", text}};
    char out[1024];
    int rc;

    (void)state;
    rc = migrate_files(files, 1, out, sizeof(out));
    if (rc != MG_OK)
        fail_msg("rc %d: %s", rc, out);
    assert_string_equal(admin_exec(mig_db, "SELECT mig_abs(-3) || "
                                   "mig_tag() || mig_sign(2)"),
                        "3x $$ ; COMMIT; $$pos");
    assert_string_equal(admin_exec(mig_db, "SELECT string_agg(\"commit\", "
                                   "'|' ORDER BY begin_at) FROM mig_words"),
                        "x';\nCOMMIT;|it's ' ; COMMIT; --|C:\\");
    assert_string_equal(admin_exec(mig_db, "SELECT count(*) FROM "
                                   "schema_migrations"), "1");
    drop_mig_db();
}

/* The project's own SQL passes: schema/ as it is, then adapters/ (common
 * first) as further migrations, all applied on one database. */
static void
test_migrate_accepts_the_project_sql(void **state)
{
    char dir[] = "/tmp/mg-test-mig-XXXXXX", cmd[2048], ci[1024], out[4096];
    FILE *err;
    int rc;

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(cmd, sizeof(cmd),
             "cp %1$s/schema/*.sql %2$s/ && n=900 && for f in "
             "%1$s/adapters/common.sql %1$s/adapters/*/*.sql; do "
             "n=$((n+1)); cp \"$f\" %2$s/0${n}_$(basename \"$f\"); done",
             MG_SOURCE_DIR, dir);
    assert_int_equal(system(cmd), 0);
    snprintf(mig_db, sizeof(mig_db), "medgate_test_mig_%d", (int)getpid());
    admin_execf("postgres", "DROP DATABASE IF EXISTS %s", mig_db);
    admin_execf("postgres", "CREATE DATABASE %s", mig_db);
    snprintf(ci, sizeof(ci), "host=%s user=postgres dbname=%s", pg_host,
             mig_db);
    memset(out, 0, sizeof(out));
    err = fmemopen(out, sizeof(out) - 1, "w");
    rc = mg_migrate_run(ci, dir, NULL, err);
    fclose(err);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    if (rc != MG_OK)
        fail_msg("rc %d: %s", rc, out);
    assert_int_not_equal(atoi(admin_exec(mig_db, "SELECT count(*) FROM "
                                         "schema_migrations WHERE version "
                                         "> 900")), 0);
    drop_mig_db();
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_store_query_params_and_prepared),
        cmocka_unit_test(test_store_prepare_before_table_exists),
        cmocka_unit_test(test_store_query_thousand_concurrent),
        cmocka_unit_test(test_store_queue_full_busy),
        cmocka_unit_test(test_store_queue_timeout),
        cmocka_unit_test(test_store_tx_commit_and_rollback),
        cmocka_unit_test(test_store_statement_error_sqlstate),
        cmocka_unit_test(test_store_tx_connection_killed),
        cmocka_unit_test(test_store_commit_in_doubt),
        cmocka_unit_test(test_store_commit_warning_in_doubt),
        cmocka_unit_test(test_store_commit_warning_not_withheld),
        cmocka_unit_test(test_store_commit_deadline),
        cmocka_unit_test(test_store_query_commit),
        cmocka_unit_test(test_store_database_refused_and_back),
        cmocka_unit_test(test_store_cluster_stop_and_start),
        cmocka_unit_test(test_store_schema_version),
        cmocka_unit_test(test_store_refused_check_runs_nothing),
        cmocka_unit_test(test_store_close_cancels),
        cmocka_unit_test(test_store_metrics),
        cmocka_unit_test(test_store_bad_arguments),
        cmocka_unit_test(test_store_value_with_nul_refused),
        cmocka_unit_test(test_store_unreachable_at_start),
        cmocka_unit_test(test_store_tcp_keepalive),
        cmocka_unit_test(test_migrate_refuses_transaction_control),
        cmocka_unit_test(test_migrate_accepts_the_words_elsewhere),
        cmocka_unit_test(test_migrate_strings_read_as_scanned),
        cmocka_unit_test(test_migrate_accepts_the_project_sql),
    };

    if (getenv("CMOCKA_TEST_FILTER") != NULL) /* cmocka 1.x reads no env */
        cmocka_set_test_filter(getenv("CMOCKA_TEST_FILTER"));
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
