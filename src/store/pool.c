/* The PostgreSQL pool: connections, the request queue and dispatch.
 *
 * Every connection is non-blocking libpq driven by one uv_poll on its
 * socket (DESIGN-NOTES.md section 2). A connection runs one "step" at a
 * time -- something sent whose results it collects until PQgetResult
 * returns NULL -- because outside pipeline mode libpq needs every result
 * read before the next send. Steps are: preparing a statement, the schema
 * check, a request (with an optional prepare first) and a cleanup
 * ROLLBACK.
 *
 * The public calls never touch a socket: they queue work and wake the
 * dispatcher (a uv_idle, "kick") that runs on the next loop iteration. So
 * a callback is never called from inside the call that queued it, and a
 * connection failure is only ever handled from a loop callback, where
 * calling user code is safe.
 *
 * Connection life: DOWN -(timer)-> CONNECTING -(PQconnectPoll OK)-> INIT
 * (prepare the registry, check the schema) -> IDLE <-> BUSY / LEASED.
 * Any failure: close the poll, PQfinish, fail or requeue what was on it,
 * and go back to DOWN with an exponential back-off with jitter.
 *
 * LISTEN/NOTIFY is not needed yet. It would use one extra connection that
 * is never lent, reading PQnotifies() after PQconsumeInput in
 * conn_collect. */
#include "store/store_int.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"

#define BACKOFF_MIN_MS 100
#define STABLE_MS 1000  /* up this long: a break reconnects at once */
#define MAX_PARAMS 65535 /* protocol limit on bind parameters */
#define CLIENT_MESSAGES "-c client_min_messages=notice" /* see on_notice */

static void conn_next(struct mg__store_conn *c);
static void conn_fail(struct mg__store_conn *c, const char *why);
static void conn_connect(struct mg__store_conn *c);
static void on_io(uv_poll_t *h, int status, int events);
static void on_kick(uv_idle_t *h);
static void on_qtimer(uv_timer_t *h);
static void on_poll_closed(uv_handle_t *h);

/* ---- request lists ---- */

void
mg__store_reqq_push(struct mg__store_reqq *q, struct mg__store_req *r)
{
    if (q->tail == NULL)
        q->tail = &q->head;
    r->next = NULL;
    *q->tail = r;
    q->tail = &r->next;
    q->len++;
}

static void
reqq_push_front(struct mg__store_reqq *q, struct mg__store_req *r)
{
    if (q->tail == NULL || q->head == NULL)
        q->tail = &r->next;
    r->next = q->head;
    q->head = r;
    q->len++;
}

struct mg__store_req *
mg__store_reqq_pop(struct mg__store_reqq *q)
{
    struct mg__store_req *r = q->head;

    if (r == NULL)
        return NULL;
    q->head = r->next;
    if (q->head == NULL)
        q->tail = &q->head;
    q->len--;
    r->next = NULL;
    return r;
}

/* Moves every request of from to the end of to, each with code rc. */
static void
reqq_move_all(struct mg__store_reqq *to, struct mg__store_reqq *from, int rc)
{
    struct mg__store_req *r;

    while ((r = mg__store_reqq_pop(from)) != NULL) {
        r->rc = rc;
        mg__store_reqq_push(to, r);
    }
}

/* Moves every request of from to the end of to, keeping their codes. */
static void
reqq_splice(struct mg__store_reqq *to, struct mg__store_reqq *from)
{
    struct mg__store_req *r;

    while ((r = mg__store_reqq_pop(from)) != NULL)
        mg__store_reqq_push(to, r);
}

/* ---- requests ---- */

static struct mg__store_stmt *
find_stmt(const struct mg_store *s, const char *name)
{
    for (size_t i = 0; i < s->nstmts; i++)
        if (strcmp(s->stmts[i]->name, name) == 0)
            return s->stmts[i];
    return NULL;
}

int
mg__store_check_call(struct mg_store *s, const char *stmt, const char *sql,
                     int nparams, const char *const *values,
                     const int *lengths, struct mg__store_stmt **out)
{
    *out = NULL;
    if (nparams < 0 || nparams > MAX_PARAMS || (nparams > 0 && !values))
        return MG_EINVAL;
    /* Text parameters go as C strings (libpq ignores their lengths): a
     * NUL inside a value would cut it short without a word. */
    for (int i = 0; lengths != NULL && i < nparams; i++)
        if (lengths[i] < 0 || (values[i] != NULL &&
                               memchr(values[i], '\0', (size_t)lengths[i])))
            return MG_EINVAL;
    if (stmt == NULL)
        return sql != NULL ? MG_OK : MG_EINVAL;
    *out = find_stmt(s, stmt);
    if (*out == NULL)
        return MG_ENOTFOUND;
    return (*out)->nparams == nparams ? MG_OK : MG_EINVAL;
}

struct mg__store_req *
mg__store_req_new(enum mg__store_req_kind kind, struct mg__store_stmt *stmt,
                  const char *sql, int nparams, const char *const *values,
                  const int *lengths, bool copy)
{
    size_t size = sizeof(struct mg__store_req), sql_len = 0;
    struct mg__store_req *r;
    char *p;

    if (copy) {
        size += (size_t)nparams * sizeof(char *);
        if (stmt == NULL && sql != NULL)
            size += (sql_len = strlen(sql)) + 1;
        for (int i = 0; i < nparams; i++)
            if (values[i] != NULL)
                size += (lengths ? (size_t)lengths[i] : strlen(values[i])) + 1;
    }
    r = mg_calloc(1, size);
    if (r == NULL)
        return NULL;
    r->kind = kind;
    r->stmt = stmt;
    if (!copy)
        return r;
    /* The pointer array follows the struct, whose size is a multiple of
     * its pointer alignment; the bytes follow the array. */
    r->nparams = nparams;
    r->values = (const char **)(r + 1);
    p = (char *)(r->values + nparams);
    for (int i = 0; i < nparams; i++) {
        size_t n;

        if (values[i] == NULL)
            continue;
        n = lengths ? (size_t)lengths[i] : strlen(values[i]);
        memcpy(p, values[i], n);
        p[n] = '\0';
        r->values[i] = p;
        p += n + 1;
    }
    if (stmt == NULL && sql != NULL) {
        memcpy(p, sql, sql_len + 1);
        r->sql = p;
    }
    return r;
}

/* Applies a schema check result to the store. */
static void
schema_result(struct mg_store *s, int rc, const PGresult *res)
{
    const char *state;

    if (rc == MG_OK && PQntuples(res) == 1 &&
        (PQnfields(res) == 1 || PQnfields(res) == 2)) {
        bool was_refused = s->schema_version == MG_STORE_SCHEMA_REFUSED;
        const char *why = PQnfields(res) == 2 && !PQgetisnull(res, 0, 1)
                              ? PQgetvalue(res, 0, 1) : "";

        s->schema_version = atoi(PQgetvalue(res, 0, 0));
        /* Said once, not by every connection and recheck. */
        if (s->schema_version == MG_STORE_SCHEMA_REFUSED &&
            (!was_refused || strncmp(why, s->schema_detail,
                                     sizeof(s->schema_detail) - 1) != 0))
            mg_log(MG_LOG_ERROR, &s->log, "database check refused: %s", why);
        else if (was_refused && s->schema_version != MG_STORE_SCHEMA_REFUSED)
            mg_log(MG_LOG_INFO, &s->log, "database check passes again");
        snprintf(s->schema_detail, sizeof(s->schema_detail), "%s", why);
        return;
    }
    if (rc == MG_OK) { /* an answer of the wrong shape is no answer */
        s->schema_version = MG__STORE_SCHEMA_FAILED;
        mg_log(MG_LOG_WARN, &s->log, "schema check answered %d rows of %d "
               "columns", PQntuples(res), PQnfields(res));
        return;
    }
    if (rc != MG_EDB)
        return; /* no answer: keep what we knew */
    state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    if (state != NULL && strcmp(state, "42P01") == 0) {
        s->schema_version = 0; /* no schema_migrations table yet */
        return;
    }
    /* A check that passed and now only failed to run (a statement or lock
     * timeout while a migration holds a table, say) says nothing about the
     * schema: every instance rechecks on the same timer, and all of them
     * would stop serving together. A missing object (class 42: another
     * build's functions) is an answer. */
    if (s->schema_version > 0 &&
        (state == NULL || strncmp(state, "42", 2) != 0)) {
        mg_log(MG_LOG_WARN, &s->log, "schema recheck failed sqlstate=%s; "
               "keeping the last answer", state ? state : "none");
        return;
    }
    s->schema_version = MG__STORE_SCHEMA_FAILED;
    mg_log(MG_LOG_WARN, &s->log, "schema check failed sqlstate=%s",
           state ? state : "none");
}

static void
log_failure(struct mg_store *s, const struct mg__store_req *r, int rc,
            const PGresult *res)
{
    const char *state = NULL;

    if (rc == MG_EDB && res != NULL)
        state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    /* Statement name and SQLSTATE only: values and messages may hold PHI. */
    mg_log(MG_LOG_DEBUG, &s->log, "request failed stmt=%s rc=%s sqlstate=%s",
           r->stmt ? r->stmt->name : "(sql)", mg_strerror(rc),
           state ? state : "none");
}

/* Calls r's callback with rc and res (borrowed; cleared here), then frees
 * r, or its transaction when r ends one. */
static void
complete(struct mg_store *s, struct mg__store_req *r, int rc, PGresult *res)
{
    struct mg_store_tx *tx = r->tx;
    mg_store_begin_cb begin_cb;
    void *ud = r->ud;

    if (rc < 0 && rc != MG_ECANCELED) {
        s->errors++;
        log_failure(s, r, rc, res);
    }
    switch (r->kind) {
    case MG__STORE_REQ_QUERY:
    case MG__STORE_REQ_TXQUERY:
        if (r->cb != NULL)
            r->cb(rc, rc == MG_OK || rc == MG_EDB ? res : NULL, ud);
        mg_free(r);
        break;
    case MG__STORE_REQ_SCHEMA:
        schema_result(s, rc, res);
        mg_free(r);
        break;
    case MG__STORE_REQ_BEGIN:
        begin_cb = r->begin_cb;
        if (rc != MG_OK) {
            mg__store_tx_free(tx);
            tx = NULL;
        }
        begin_cb(rc, tx, ud);
        break;
    case MG__STORE_REQ_COMMIT:
    case MG__STORE_REQ_ROLLBACK:
        if (r->cb != NULL)
            r->cb(rc, rc == MG_OK || rc == MG_EDB ? res : NULL, ud);
        mg__store_tx_free(tx);
        break;
    }
    PQclear(res);
}

/* Completes every request of q with its own rc. */
static void
complete_all(struct mg_store *s, struct mg__store_reqq *q)
{
    struct mg__store_req *r;

    while ((r = mg__store_reqq_pop(q)) != NULL)
        complete(s, r, r->rc, NULL);
}

void
mg__store_kick(struct mg_store *s)
{
    if (!s->torn_down)
        uv_idle_start(&s->kick, on_kick);
}

void
mg__store_defer(struct mg_store *s, struct mg__store_req *r, int rc)
{
    r->rc = rc;
    mg__store_reqq_push(&s->deferred, r);
    mg__store_kick(s);
}

bool
mg__store_would_queue(const struct mg_store *s)
{
    return !s->down && s->queue.len < s->opts.queue_max;
}

static void
queue_arm(struct mg_store *s)
{
    uint64_t now = uv_now(s->loop), due;

    if (s->opts.queue_timeout_ms == 0 || s->torn_down)
        return;
    if (s->queue.head == NULL) {
        uv_timer_stop(&s->qtimer);
        return;
    }
    due = s->queue.head->deadline;
    uv_timer_start(&s->qtimer, on_qtimer, due > now ? due - now : 0, 0);
}

void
mg__store_submit(struct mg_store *s, struct mg__store_req *r)
{
    if (s->down) {
        mg__store_defer(s, r, MG_EDBDOWN);
        return;
    }
    if (s->queue.len >= s->opts.queue_max) {
        mg__store_defer(s, r, MG_EBUSY);
        return;
    }
    if (s->opts.queue_timeout_ms > 0)
        r->deadline = uv_now(s->loop) + s->opts.queue_timeout_ms;
    mg__store_reqq_push(&s->queue, r);
    /* An armed timer is due no later than this newest deadline. */
    if (!uv_is_active((uv_handle_t *)&s->qtimer))
        queue_arm(s);
    mg__store_kick(s);
}

static void
on_qtimer(uv_timer_t *h)
{
    struct mg_store *s = h->data;
    struct mg__store_reqq expired = {0};
    uint64_t now = uv_now(s->loop);

    while (s->queue.head != NULL && s->queue.head->deadline <= now)
        mg__store_reqq_push(&expired, mg__store_reqq_pop(&s->queue));
    for (struct mg__store_req *r = expired.head; r; r = r->next)
        r->rc = MG_ETIMEDOUT;
    queue_arm(s);
    complete_all(s, &expired);
}

/* ---- connection I/O ---- */

static void
poll_close(struct mg__store_conn *c)
{
    if (c->poll == NULL)
        return;
    c->s->pending_closes++;
    uv_close((uv_handle_t *)&c->poll->h, on_poll_closed);
    c->poll = NULL;
    c->events = 0;
}

/* Watches the current socket afresh. While connecting, libpq may close its
 * socket and open another, possibly with the same number (next address,
 * SSL retry), which an existing epoll registration would silently miss; so
 * every PQconnectPoll step gets a new handle. */
static int
conn_watch(struct mg__store_conn *c, int events)
{
    struct mg__store_poll *p;
    int rc;

    poll_close(c);
    p = mg_malloc(sizeof(*p));
    if (p == NULL)
        return MG_ENOMEM;
    rc = uv_poll_init(c->s->loop, &p->h, PQsocket(c->pg));
    if (rc < 0) {
        mg_free(p);
        return rc;
    }
    p->c = c;
    p->h.data = p;
    c->poll = p;
    c->events = events;
    return uv_poll_start(&p->h, events, on_io);
}

static int
conn_want(struct mg__store_conn *c, int events)
{
    if (c->events == events)
        return 0;
    c->events = events;
    return uv_poll_start(&c->poll->h, events, on_io);
}

/* Sends what libpq has buffered. WRITABLE is polled only while output is
 * left, or the loop would spin; READABLE always, to see the server close. */
static int
conn_flush(struct mg__store_conn *c)
{
    int r = PQflush(c->pg);

    if (r < 0)
        return -1;
    return conn_want(c, r ? UV_READABLE | UV_WRITABLE : UV_READABLE);
}

/* The first line of a libpq error, for the log and /readyz. A statement's
 * own error can still lead it when the connection is lost in the same
 * cycle, and its text quotes values ('invalid input syntax for type date:
 * "..."'): such a line stops before its first quote. */
static void
first_line(char *out, size_t size, const char *msg)
{
    size_t n = strcspn(msg, "\n");

    if (strncmp(msg, "ERROR:", 6) == 0 || strncmp(msg, "FATAL:", 6) == 0)
        n = MG_MIN(n, strcspn(msg, "\""));
    snprintf(out, size, "%.*s", (int)n, msg);
}

/* Closes the poll handle before PQfinish closes the socket under it. */
static void
conn_drop(struct mg__store_conn *c)
{
    uint64_t bit = (uint64_t)1 << c->idx;

    poll_close(c);
    if (c->pg != NULL)
        PQfinish(c->pg);
    c->pg = NULL;
    PQclear(c->res);
    PQclear(c->err);
    c->res = c->err = NULL;
    for (size_t i = 0; i < c->s->nstmts; i++)
        c->s->stmts[i]->prepared_on &= ~bit;
    c->preparing = NULL;
    c->schema_checked = false;
    c->cleaned = false;
    c->commit_warned = false;
    c->step = MG__STORE_STEP_NONE;
}

static unsigned
count_up(const struct mg_store *s)
{
    unsigned n = 0;

    for (unsigned i = 0; i < s->opts.pool_size; i++)
        n += mg__store_conn_is_up(&s->conns[i]);
    return n;
}

/* Full jitter on the upper half: spreads the pool's reconnects without
 * ever retrying much sooner than the schedule. */
static uint64_t
backoff_ms(const struct mg_store *s, unsigned failures)
{
    uint64_t d = BACKOFF_MIN_MS;

    while (--failures > 0 && d < s->opts.reconnect_max_ms)
        d *= 2;
    d = MG_MIN(d, (uint64_t)s->opts.reconnect_max_ms);
    return d / 2 + randombytes_uniform((uint32_t)(d / 2 + 1));
}

/* Whether r's outcome is a commit: a COMMIT, or a statement that commits
 * on its own. Once sent, such a request can only end committed, failed
 * with an error, or in doubt. */
static bool
req_commits(const struct mg__store_req *r)
{
    return r->kind == MG__STORE_REQ_COMMIT || r->commits;
}

/* How long r may go unanswered once sent: commit_timeout_ms for a
 * COMMIT; for a statement that commits, its own run first, which
 * statement_timeout_ms bounds (0: unbounded, so only the commit counts). */
static uint64_t
commit_deadline_ms(const struct mg_store *s, const struct mg__store_req *r)
{
    uint64_t ms = s->opts.commit_timeout_ms;

    return r->commits ? ms + s->opts.statement_timeout_ms : ms;
}

/* A cancel request for the backend of a dropped connection. PQcancel opens
 * a connection of its own and waits for the server to close it, which a
 * host that does not answer could stretch to minutes: it runs on a thread
 * of its own, detached, never on the loop, and not on libuv's thread pool
 * either (uv_run waits for pool work, so a shutdown would wait for it
 * too). The job owns its PGcancel and nothing of the store, which may be
 * freed before the job ends; mg_log writes each line with one write(2). */
struct cancel_job {
    PGcancel *cancel;      /* owned */
    struct mg_log_ctx log; /* the connection's, by value: literals only */
};

/* Cancel threads not yet ended (they may outlive the store). */
static atomic_int cancels_running;

int
mg_store_cancels_running(void)
{
    return atomic_load(&cancels_running);
}

static void *
cancel_thread(void *arg)
{
    struct cancel_job *j = arg;
    char err[256], why[160];

    if (PQcancel(j->cancel, err, sizeof(err)) == 1) {
        mg_log(MG_LOG_DEBUG, &j->log, "cancel of the abandoned COMMIT sent");
    } else {
        first_line(why, sizeof(why), err);
        mg_log(MG_LOG_WARN, &j->log, "cancel of the abandoned COMMIT not "
               "sent (%s): its backend may wait on", why);
    }
    PQfreeCancel(j->cancel);
    mg_free(j);
    atomic_fetch_sub(&cancels_running, 1);
    return NULL;
}

/* Asks the server to cancel what c's backend runs, best effort: without
 * it a backend waiting for a standby would wait on after we hang up, with
 * its transaction's locks held. */
static void
cancel_backend(struct mg__store_conn *c)
{
    struct cancel_job *j = mg_calloc(1, sizeof(*j));
    pthread_attr_t attr;
    pthread_t t;
    int rc = -1;

    if (j != NULL)
        j->cancel = PQgetCancel(c->pg);
    if (j != NULL && j->cancel != NULL) {
        j->log = c->log;
        atomic_fetch_add(&cancels_running, 1);
        if (pthread_attr_init(&attr) == 0) {
            (void)pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
            rc = pthread_create(&t, &attr, cancel_thread, j);
            pthread_attr_destroy(&attr);
        }
        if (rc != 0)
            atomic_fetch_sub(&cancels_running, 1);
    }
    if (rc == 0)
        return;
    if (j != NULL && j->cancel != NULL)
        PQfreeCancel(j->cancel);
    mg_free(j);
    mg_log(MG_LOG_WARN, &c->log, "cancel of the abandoned COMMIT not sent "
           "(no memory or thread): its backend may wait on");
}

/* True while c waits for the answer to a COMMIT it has sent. */
static bool
commit_waiting(const struct mg__store_conn *c)
{
    return c->step == MG__STORE_STEP_REQ && c->cur != NULL &&
           req_commits(c->cur) && c->cur->sent;
}

/* The COMMIT on c did not answer within commit_timeout_ms. PostgreSQL
 * bounds no wait of a COMMIT (it switches statement_timeout off first):
 * one waiting for a synchronous standby that is gone would hold this
 * connection, and leave the messages of its batch unanswered, for ever.
 * Its outcome is unknown, so it ends in doubt (conn_fail); the connection
 * is dropped and replaced by the usual reconnect, after a cancel asks the
 * server to stop waiting (such a commit then stays local). */
static void
commit_expired(struct mg__store_conn *c)
{
    unsigned ms = (unsigned)commit_deadline_ms(c->s, c->cur);

    mg_log(MG_LOG_ERROR, &c->log, "COMMIT did not answer within %u %s; its "
           "outcome is unknown (a synchronous standby that is down? see "
           "synchronous_standby_names and pg_stat_replication): reported in "
           "doubt (its messages get no ACK; senders resend), cancelling "
           "backend pid %d and replacing the connection "
           "(database.commit_timeout_ms)",
           ms % 1000 ? ms : ms / 1000, ms % 1000 ? "ms" : "s",
           PQbackendPID(c->pg));
    cancel_backend(c);
    conn_fail(c, "COMMIT did not answer in time");
}

/* The back-off wait, the connect timeout and the COMMIT deadline, one at a
 * time by state. */
static void
on_timer(uv_timer_t *h)
{
    struct mg__store_conn *c = h->data;

    if (c->s->closing)
        return;
    if (c->state == MG__STORE_DOWN)
        conn_connect(c);
    else if (c->state == MG__STORE_CONNECTING)
        conn_fail(c, "connect timeout");
    else if (commit_waiting(c))
        commit_expired(c);
}

/* The request on a broken connection: a one-shot that never left is
 * retried; anything sent is lost (a COMMIT is in doubt). */
static void
fail_cur(struct mg__store_conn *c, struct mg__store_reqq *failed)
{
    struct mg__store_req *r = c->cur;
    bool retry = r->kind == MG__STORE_REQ_QUERY ||
                 r->kind == MG__STORE_REQ_SCHEMA;

    c->cur = NULL;
    if (retry && !r->sent) {
        reqq_push_front(&c->s->queue, r);
        return;
    }
    r->rc = req_commits(r) && r->sent ? MG_EINDOUBT : MG_EDBDOWN;
    mg__store_reqq_push(failed, r);
}

/* The transaction on a broken connection: it is lost. */
static void
break_tx(struct mg__store_conn *c, struct mg__store_reqq *failed, int rc)
{
    struct mg_store_tx *tx = c->tx;

    c->tx = NULL;
    tx->c = NULL;
    tx->broken = true;
    reqq_move_all(failed, &tx->ops, rc);
}

static void
schedule_reconnect(struct mg__store_conn *c, bool was_up)
{
    struct mg_store *s = c->s;
    uint64_t delay = 0;

    if (was_up && uv_now(s->loop) - c->up_since >= STABLE_MS)
        c->failures = 0;
    else
        delay = backoff_ms(s, ++c->failures);
    uv_timer_start(&c->timer, on_timer, delay, 0);
}

/* Tears the connection down, reports what was on it, and schedules the
 * next attempt. State first, callbacks last: user code may call back in. */
static void
conn_fail(struct mg__store_conn *c, const char *why)
{
    struct mg_store *s = c->s;
    struct mg__store_reqq failed = {0};
    bool was_up = mg__store_conn_is_up(c);

    first_line(s->last_error, sizeof(s->last_error), why);
    s->errors++;
    if (was_up || c->failures == 0)
        mg_log(MG_LOG_WARN, &c->log, "%s: %s",
               was_up ? "connection lost" : "connect failed", s->last_error);
    else
        mg_log(MG_LOG_DEBUG, &c->log, "connect failed: %s", s->last_error);
    uv_timer_stop(&c->timer);
    conn_drop(c);
    if (c->cur != NULL)
        fail_cur(c, &failed);
    if (c->tx != NULL)
        break_tx(c, &failed, MG_EDBDOWN);
    c->state = MG__STORE_DOWN;
    if (!s->closing)
        schedule_reconnect(c, was_up);
    if (count_up(s) == 0) {
        /* Nothing can serve: fail fast instead of holding requests for the
         * whole back-off. */
        if (!s->down && s->ever_up)
            mg_log(MG_LOG_ERROR, &s->log, "database down: %s",
                   s->last_error);
        s->down = true;
        reqq_move_all(&failed, &s->queue, MG_EDBDOWN);
        queue_arm(s);
    } else if (s->queue.head != NULL) {
        mg__store_kick(s); /* a retried request may fit elsewhere */
    }
    complete_all(s, &failed);
}

static void
on_notice(void *arg, const PGresult *res)
{
    struct mg__store_conn *c = arg;
    const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

    /* The text may quote data: severity and SQLSTATE only. */
    if (c->cur != NULL && req_commits(c->cur) && sev != NULL &&
        strcmp(sev, "WARNING") == 0) {
        c->commit_warned = true;
        mg_log(MG_LOG_WARN, &c->log, "COMMIT answered with a warning "
               "(sqlstate %s): its outcome counts as in doubt",
               state ? state : "none");
        return;
    }
    mg_log(MG_LOG_DEBUG, &c->log, "notice severity=%s sqlstate=%s",
           sev ? sev : "none", state ? state : "none");
}

static void
conn_connect(struct mg__store_conn *c)
{
    struct mg_store *s = c->s;

    if (c->attempts++ > 0)
        s->reconnects++;
    c->pg = PQconnectStartParams(s->keys, s->vals, 1);
    if (c->pg == NULL) {
        conn_fail(c, "out of memory");
        return;
    }
    if (PQstatus(c->pg) == CONNECTION_BAD) {
        conn_fail(c, PQerrorMessage(c->pg));
        return;
    }
    PQsetNoticeReceiver(c->pg, on_notice, c); /* not libpq's stderr print */
    c->state = MG__STORE_CONNECTING;
    /* PQconnectPoll ignores connect_timeout: our own timer bounds it. */
    uv_timer_start(&c->timer, on_timer, s->opts.connect_timeout_ms, 0);
    /* Per the libpq docs, start as if PQconnectPoll had said WRITING. */
    if (conn_watch(c, UV_WRITABLE) < 0)
        conn_fail(c, "cannot watch socket");
}

/* Starts the next INIT step: prepare a registered statement, check the
 * schema, or declare the connection up. */
static void
init_continue(struct mg__store_conn *c)
{
    struct mg_store *s = c->s;
    int ok;

    while (c->init_next < s->nstmts) {
        struct mg__store_stmt *st = s->stmts[c->init_next++];

        if (st->prepared_on & ((uint64_t)1 << c->idx))
            continue;
        c->preparing = st;
        c->step = MG__STORE_STEP_PREPARE;
        if (!PQsendPrepare(c->pg, st->name, st->sql, st->nparams, NULL) ||
            conn_flush(c) < 0)
            conn_fail(c, PQerrorMessage(c->pg));
        return;
    }
    if (s->opts.expected_schema_version > 0 && !c->schema_checked) {
        c->schema_checked = true;
        c->step = MG__STORE_STEP_SCHEMA;
        ok = PQsendQueryParams(c->pg, s->schema_sql, 0, NULL, NULL,
                               NULL, NULL, 0);
        if (!ok || conn_flush(c) < 0)
            conn_fail(c, PQerrorMessage(c->pg));
        return;
    }
    c->state = MG__STORE_IDLE;
    c->up_since = uv_now(s->loop);
    if (!s->ever_up || s->down)
        mg_log(MG_LOG_INFO, &s->log, "database up");
    s->ever_up = true;
    s->down = false;
    mg_log(MG_LOG_DEBUG, &c->log, "connection up");
    conn_next(c);
}

static void
conn_connected(struct mg__store_conn *c)
{
    uv_timer_stop(&c->timer);
    if (PQsetnonblocking(c->pg, 1) != 0) {
        conn_fail(c, PQerrorMessage(c->pg));
        return;
    }
    c->state = MG__STORE_INIT;
    c->init_next = 0;
    if (conn_want(c, UV_READABLE) < 0) {
        conn_fail(c, "cannot watch socket");
        return;
    }
    init_continue(c);
}

static void
connect_continue(struct mg__store_conn *c)
{
    switch (PQconnectPoll(c->pg)) {
    case PGRES_POLLING_READING:
        if (conn_watch(c, UV_READABLE) < 0)
            conn_fail(c, "cannot watch socket");
        break;
    case PGRES_POLLING_WRITING:
        if (conn_watch(c, UV_WRITABLE) < 0)
            conn_fail(c, "cannot watch socket");
        break;
    case PGRES_POLLING_OK:
        conn_connected(c);
        break;
    default:
        conn_fail(c, PQerrorMessage(c->pg));
        break;
    }
}

/* ---- running requests ---- */

static const char *
req_sql(const struct mg_store *s, const struct mg__store_req *r)
{
    switch (r->kind) {
    case MG__STORE_REQ_BEGIN:
        return "BEGIN";
    case MG__STORE_REQ_COMMIT:
        return "COMMIT";
    case MG__STORE_REQ_ROLLBACK:
        return "ROLLBACK";
    case MG__STORE_REQ_SCHEMA:
        return s->schema_sql;
    default:
        return r->sql;
    }
}

static void
conn_send_req(struct mg__store_conn *c)
{
    struct mg__store_req *r = c->cur;
    int ok;

    c->step = MG__STORE_STEP_REQ;
    if (r->stmt != NULL)
        ok = PQsendQueryPrepared(c->pg, r->stmt->name, r->nparams, r->values,
                                 NULL, NULL, 0);
    else
        ok = PQsendQueryParams(c->pg, req_sql(c->s, r), r->nparams, NULL,
                               r->values, NULL, NULL, 0);
    if (!ok) {
        conn_fail(c, PQerrorMessage(c->pg)); /* unsent: r->sent is false */
        return;
    }
    r->sent = true;
    if (req_commits(r) && c->s->opts.commit_timeout_ms > 0)
        uv_timer_start(&c->timer, on_timer, commit_deadline_ms(c->s, r), 0);
    if (conn_flush(c) < 0)
        conn_fail(c, PQerrorMessage(c->pg));
}

/* Runs r on c, preparing its statement first if c has not yet. */
static void
conn_start(struct mg__store_conn *c, struct mg__store_req *r)
{
    struct mg__store_stmt *st = r->stmt;

    c->cur = r;
    if (st == NULL || (st->prepared_on & ((uint64_t)1 << c->idx))) {
        conn_send_req(c);
        return;
    }
    c->preparing = st;
    c->step = MG__STORE_STEP_REQ_PREPARE;
    if (!PQsendPrepare(c->pg, st->name, st->sql, st->nparams, NULL) ||
        conn_flush(c) < 0)
        conn_fail(c, PQerrorMessage(c->pg));
}

/* Ends the session's transaction if a one-shot statement left one open
 * ("BEGIN" sent as a query): the next user must get a clean session. */
static bool
conn_cleanup(struct mg__store_conn *c)
{
    PGTransactionStatusType ts = PQtransactionStatus(c->pg);

    if (ts == PQTRANS_IDLE) {
        c->cleaned = false;
        return false;
    }
    if (ts == PQTRANS_UNKNOWN || c->cleaned) {
        conn_fail(c, "session state unknown");
        return true;
    }
    mg_log(MG_LOG_WARN, &c->log, "rolling back a transaction left open");
    c->cleaned = true;
    c->step = MG__STORE_STEP_CLEANUP;
    if (!PQsendQueryParams(c->pg, "ROLLBACK", 0, NULL, NULL, NULL, NULL, 0) ||
        conn_flush(c) < 0)
        conn_fail(c, PQerrorMessage(c->pg));
    return true;
}

/* Gives a free connection its next work: the lessee's next call, or the
 * head of the queue. */
static void
conn_next(struct mg__store_conn *c)
{
    struct mg_store *s = c->s;
    struct mg__store_req *r;

    if (s->closing || c->step != MG__STORE_STEP_NONE || c->cur != NULL)
        return;
    if (c->state == MG__STORE_LEASED) {
        if (c->tx->ops.head != NULL)
            conn_start(c, mg__store_reqq_pop(&c->tx->ops));
        return;
    }
    if (c->state != MG__STORE_IDLE && c->state != MG__STORE_BUSY)
        return;
    if (conn_cleanup(c))
        return;
    r = mg__store_reqq_pop(&s->queue);
    /* A refused check: nothing runs but the checks that may lift it. The
     * reason goes with the refusal (an organization deactivated is no
     * schema to migrate). */
    while (r != NULL && r->kind != MG__STORE_REQ_SCHEMA &&
           !mg__store_schema_ok(s)) {
        mg__store_defer(s, r, s->schema_version == MG_STORE_SCHEMA_REFUSED
                                  ? MG_EREFUSED : MG_ESCHEMA);
        r = mg__store_reqq_pop(&s->queue);
    }
    if (r == NULL) {
        c->state = MG__STORE_IDLE;
        return;
    }
    if (r->kind == MG__STORE_REQ_BEGIN) {
        c->state = MG__STORE_LEASED;
        c->tx = r->tx;
        r->tx->c = c;
    } else {
        c->state = MG__STORE_BUSY;
    }
    conn_start(c, r);
}

/* Hands the connection back from its transaction. */
static void
conn_release(struct mg__store_conn *c)
{
    c->tx->c = NULL;
    c->tx = NULL;
    c->state = MG__STORE_BUSY; /* conn_next makes it IDLE or busy again */
}

static int
req_code(const struct mg__store_req *r, int rc, PGresult *res, bool warned)
{
    if (rc != MG_OK || !req_commits(r))
        return rc;
    /* COMMIT of an aborted transaction answers "ROLLBACK" without error. */
    if (r->kind == MG__STORE_REQ_COMMIT &&
        strcmp(PQcmdStatus(res), "ROLLBACK") == 0)
        return MG_EDB;
    /* A COMMIT that succeeds with a WARNING did not do all it should: the
     * one PostgreSQL sends is "canceling wait for synchronous replication"
     * (statement_timeout or a cancel while waiting for the standby), the
     * transaction committed locally but may be lost on failover. Never
     * report that as committed. */
    return warned ? MG_EINDOUBT : MG_OK;
}

static void
finish_req(struct mg__store_conn *c, int rc, PGresult *res)
{
    struct mg__store_req *r = c->cur;

    c->cur = NULL;
    if (req_commits(r))
        uv_timer_stop(&c->timer); /* answered before its deadline */
    rc = req_code(r, rc, res, c->commit_warned);
    c->commit_warned = false;
    if (r->kind == MG__STORE_REQ_COMMIT || r->kind == MG__STORE_REQ_ROLLBACK ||
        (r->kind == MG__STORE_REQ_BEGIN && rc != MG_OK))
        conn_release(c);
    complete(c->s, r, rc, res);
    conn_next(c);
}

static void
prepare_done(struct mg__store_conn *c, PGresult *res, bool ok)
{
    struct mg__store_stmt *st = c->preparing;

    c->preparing = NULL;
    if (ok) {
        st->prepared_on |= (uint64_t)1 << c->idx;
        return;
    }
    /* Not fatal: the table may not exist before migrations. It is
     * prepared again at first use. */
    mg_log(MG_LOG_WARN, &c->log, "prepare failed stmt=%s sqlstate=%s",
           st->name, PQresultErrorField(res, PG_DIAG_SQLSTATE)
                         ? PQresultErrorField(res, PG_DIAG_SQLSTATE)
                         : "none");
}

/* All results of the current step are in (PQgetResult gave NULL). */
static void
step_done(struct mg__store_conn *c)
{
    enum mg__store_step step = c->step;
    PGresult *res = c->err ? c->err : c->res;
    bool ok = c->err == NULL && res != NULL;

    /* An error together with a dead connection means the step broke
     * before its answer (ReadyForQuery) arrived. */
    if (c->err != NULL && PQstatus(c->pg) == CONNECTION_BAD) {
        conn_fail(c, PQerrorMessage(c->pg));
        return;
    }
    if (c->err != NULL)
        PQclear(c->res);
    c->res = c->err = NULL;
    c->step = MG__STORE_STEP_NONE;
    switch (step) {
    case MG__STORE_STEP_PREPARE:
        prepare_done(c, res, ok);
        PQclear(res);
        init_continue(c);
        break;
    case MG__STORE_STEP_SCHEMA:
        schema_result(c->s, ok ? MG_OK : MG_EDB, res);
        PQclear(res);
        init_continue(c);
        break;
    case MG__STORE_STEP_REQ_PREPARE:
        prepare_done(c, res, ok);
        if (ok) {
            PQclear(res);
            conn_send_req(c);
        } else {
            finish_req(c, MG_EDB, res);
        }
        break;
    case MG__STORE_STEP_REQ:
        finish_req(c, ok ? MG_OK : MG_EDB, res);
        break;
    default:
        PQclear(res);
        conn_next(c);
        break;
    }
}

/* Reads every result libpq has complete. Keeps the last result, or the
 * first error: in the extended protocol an error may follow a success
 * (the implicit commit happens at Sync). */
static void
conn_collect(struct mg__store_conn *c)
{
    while (c->pg != NULL && c->step != MG__STORE_STEP_NONE &&
           !PQisBusy(c->pg)) {
        PGresult *r = PQgetResult(c->pg);
        ExecStatusType st;

        if (r == NULL) {
            step_done(c);
            continue;
        }
        st = PQresultStatus(r);
        if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT ||
            st == PGRES_COPY_BOTH) {
            /* COPY needs its own protocol; drop the session rather than
             * leave it stuck in copy mode. */
            PQclear(r);
            conn_fail(c, "COPY is not supported");
            return;
        }
        if (st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE ||
            st == PGRES_NONFATAL_ERROR) {
            if (c->err == NULL) {
                c->err = r;
                continue;
            }
        } else {
            PQclear(c->res);
            c->res = r;
            continue;
        }
        PQclear(r);
    }
    if (c->pg != NULL && PQstatus(c->pg) == CONNECTION_BAD)
        conn_fail(c, PQerrorMessage(c->pg));
}

static void
on_io(uv_poll_t *h, int status, int events)
{
    struct mg__store_conn *c = ((struct mg__store_poll *)h->data)->c;
    bool read_failed = false;

    if (c->state == MG__STORE_CONNECTING) {
        connect_continue(c); /* PQconnectPoll reports socket errors */
        return;
    }
    if (status < 0) {
        conn_fail(c, uv_strerror(status));
        return;
    }
    if ((events & UV_WRITABLE) && conn_flush(c) < 0) {
        conn_fail(c, PQerrorMessage(c->pg));
        return;
    }
    /* PQisBusy never reads: consume first, and flush again after, as the
     * server may be waiting for us to read before it reads more. A failed
     * read still leaves complete results to collect first. */
    if (events & UV_READABLE) {
        read_failed = !PQconsumeInput(c->pg);
        if (!read_failed && conn_flush(c) < 0) {
            conn_fail(c, PQerrorMessage(c->pg));
            return;
        }
    }
    conn_collect(c);
    /* Unread input would wake us again at once: never leave it. */
    if (read_failed && c->pg != NULL)
        conn_fail(c, PQerrorMessage(c->pg));
}

/* ---- dispatcher, open and close ---- */

static void teardown(struct mg_store *s);

static void
on_kick(uv_idle_t *h)
{
    struct mg_store *s = h->data;
    struct mg__store_reqq due = {0};

    uv_idle_stop(h);
    if (s->closing) {
        teardown(s);
        return;
    }
    reqq_splice(&due, &s->deferred);
    complete_all(s, &due);
    for (unsigned i = 0; i < s->opts.pool_size && !s->closing; i++)
        conn_next(&s->conns[i]);
}

static void
finish(struct mg_store *s)
{
    mg_store_close_cb cb = s->close_cb;
    void *ud = s->close_ud;

    while (s->txs != NULL)
        mg__store_tx_free(s->txs);
    for (size_t i = 0; i < s->nstmts; i++) {
        mg_free(s->stmts[i]->name);
        mg_free(s->stmts[i]->sql);
        mg_free(s->stmts[i]);
    }
    mg_free(s->stmts);
    mg_free(s->conns);
    mg_free(s->conninfo);
    mg_free(s->app_name);
    mg_free(s->schema_sql);
    mg_free(s);
    if (cb != NULL)
        cb(ud);
}

static void
handle_closed(struct mg_store *s)
{
    if (--s->pending_closes == 0 && s->torn_down)
        finish(s);
}

static void
on_poll_closed(uv_handle_t *h)
{
    struct mg__store_poll *p = h->data;
    struct mg_store *s = p->c->s;

    mg_free(p);
    handle_closed(s);
}

static void
on_conn_timer_closed(uv_handle_t *h)
{
    handle_closed(((struct mg__store_conn *)h->data)->s);
}

static void
on_store_handle_closed(uv_handle_t *h)
{
    handle_closed(h->data);
}

/* Stops every connection and collects what was on it. */
static void
teardown_conn(struct mg__store_conn *c, struct mg__store_reqq *done)
{
    struct mg__store_req *r = c->cur;

    if (r != NULL) {
        c->cur = NULL;
        r->rc = req_commits(r) && r->sent ? MG_EINDOUBT : MG_ECANCELED;
        mg__store_reqq_push(done, r);
    }
    if (c->tx != NULL)
        break_tx(c, done, MG_ECANCELED);
    conn_drop(c);
    c->state = MG__STORE_CLOSED;
    c->s->pending_closes++;
    uv_close((uv_handle_t *)&c->timer, on_conn_timer_closed);
}

static void
teardown(struct mg_store *s)
{
    struct mg__store_reqq done = {0};

    s->torn_down = true;
    reqq_splice(&done, &s->deferred); /* they keep their own codes */
    reqq_move_all(&done, &s->queue, MG_ECANCELED);
    for (unsigned i = 0; i < s->opts.pool_size; i++)
        teardown_conn(&s->conns[i], &done);
    s->pending_closes += 2;
    uv_close((uv_handle_t *)&s->kick, on_store_handle_closed);
    uv_close((uv_handle_t *)&s->qtimer, on_store_handle_closed);
    /* The last close callback frees the store, after these have run. */
    complete_all(s, &done);
}

void
mg_store_close(struct mg_store *s, mg_store_close_cb cb, void *ud)
{
    if (s->closing)
        return;
    s->closing = true;
    s->close_cb = cb;
    s->close_ud = ud;
    mg_log(MG_LOG_DEBUG, &s->log, "closing");
    mg__store_kick(s);
}

/* The value of keyword in parsed connection options, NULL when unset or
 * empty. */
static const char *
conninfo_value(const PQconninfoOption *opts, const char *keyword)
{
    for (const PQconninfoOption *o = opts; o->keyword != NULL; o++)
        if (strcmp(o->keyword, keyword) == 0)
            return o->val != NULL && *o->val != '\0' ? o->val : NULL;
    return NULL;
}

/* Whether pred holds for one of the comma-separated entries of list (host
 * or hostaddr). A socket directory ("/run/...", "@abstract") or an empty
 * entry is never asked about. */
static bool
any_network_host(const char *list, bool (*pred)(const char *one))
{
    char one[256];

    while (list != NULL && *list != '\0') {
        size_t n = strcspn(list, ",");

        snprintf(one, sizeof(one), "%.*s", (int)n, list);
        if (one[0] != '\0' && one[0] != '/' && one[0] != '@' && pred(one))
            return true;
        list += n + (list[n] == ',');
    }
    return false;
}

/* A host entry that needs a DNS lookup: not an IP address. */
static bool
needs_dns(const char *one)
{
    unsigned char addr[sizeof(struct in6_addr)];

    return inet_pton(AF_INET, one, addr) != 1 &&
           inet_pton(AF_INET6, one, addr) != 1;
}

/* A host entry on another machine: not loopback. */
static bool
not_loopback(const char *one)
{
    return strcmp(one, "localhost") != 0 && strncmp(one, "127.", 4) != 0 &&
           strcmp(one, "::1") != 0;
}

/* PQconnectStartParams resolves host names with a blocking getaddrinfo:
 * say so once, loudly, rather than stall the loop silently. */
static void
warn_dns(struct mg_store *s, const PQconninfoOption *opts)
{
    if (conninfo_value(opts, "hostaddr") == NULL &&
        any_network_host(conninfo_value(opts, "host"), needs_dns))
        mg_log(MG_LOG_WARN, &s->log,
               "database host needs DNS, which blocks the loop at each "
               "connect: set hostaddr");
}

/* Messages carry PHI: over a network, libpq's default sslmode (prefer)
 * takes a plaintext answer from anyone in the path and checks no server
 * certificate. Said once at start; the gateway connects all the same. */
static void
warn_tls(struct mg_store *s, const PQconninfoOption *opts)
{
    const char *host = conninfo_value(opts, "host");
    const char *hostaddr = conninfo_value(opts, "hostaddr");
    const char *mode = conninfo_value(opts, "sslmode");

    /* What libpq takes from the environment at connect, which
     * PQconninfoParse does not apply. */
    if (host == NULL)
        host = getenv("PGHOST");
    if (hostaddr == NULL)
        hostaddr = getenv("PGHOSTADDR");
    if (mode == NULL)
        mode = getenv("PGSSLMODE");
    if (mode == NULL || *mode == '\0')
        mode = "prefer";
    if ((any_network_host(host, not_loopback) ||
         any_network_host(hostaddr, not_loopback)) &&
        strcmp(mode, "verify-full") != 0 && strcmp(mode, "verify-ca") != 0)
        mg_log(MG_LOG_WARN, &s->log,
               "the database is reached over the network with sslmode=%s: "
               "messages (PHI) may travel unencrypted or to an unverified "
               "server; set sslmode=verify-full in database.url",
               strcmp(mode, "prefer") == 0 || strcmp(mode, "allow") == 0 ||
                       strcmp(mode, "disable") == 0 ||
                       strcmp(mode, "require") == 0
                   ? mode
                   : "(unknown)");
}

static int
copy_options(struct mg_store *s, const struct mg_store_options *o)
{
    PQconninfoOption *parsed;
    char *errmsg = NULL;
    int n = 0;

    if (o->conninfo == NULL || o->pool_size > MG_STORE_MAX_POOL ||
        o->expected_schema_version < 0)
        return MG_EINVAL;
    parsed = PQconninfoParse(o->conninfo, &errmsg);
    if (parsed == NULL) {
        /* libpq's text can quote part of the string, and so of a password:
         * the log says which kind of problem without it. */
        if (errmsg != NULL)
            mg_log(MG_LOG_ERROR, &s->log, "the database URL does not parse "
                   "(check its syntax and percent-encoding)");
        PQfreemem(errmsg);
        return MG_ECONF;
    }
    warn_dns(s, parsed);
    warn_tls(s, parsed);
    PQconninfoFree(parsed);
    s->opts = *o;
    s->opts.pool_size = o->pool_size ? o->pool_size : 4;
    s->opts.queue_max = o->queue_max ? o->queue_max : 1024;
    s->opts.connect_timeout_ms = o->connect_timeout_ms ? o->connect_timeout_ms
                                                       : 10000;
    s->opts.reconnect_max_ms = MG_MAX(o->reconnect_max_ms ? o->reconnect_max_ms
                                                          : 30000,
                                      BACKOFF_MIN_MS);
    s->conninfo = mg_strdup(o->conninfo);
    s->app_name = mg_strdup(o->application_name ? o->application_name
                                                : "medgate");
    s->schema_sql = mg_strdup(o->schema_sql ? o->schema_sql
                                            : MG__STORE_SCHEMA_SQL);
    if (s->conninfo == NULL || s->app_name == NULL || s->schema_sql == NULL)
        return MG_ENOMEM;
    s->opts.schema_sql = s->schema_sql;
    s->opts.conninfo = s->conninfo;
    s->opts.application_name = s->app_name;
    /* Entries before the expanded dbname may be overridden by the
     * conninfo; those after it override it (libpq-connect docs). */
    s->keys[n] = "application_name", s->vals[n++] = s->app_name;
    /* Over TCP, a database host that vanishes (power, network) must be
     * noticed in under a minute, not after the kernel's two hours of
     * keepalive silence or fifteen minutes of retransmissions while a
     * COMMIT waits: probes after 30 s idle, every 10 s, 3 missed = dead;
     * sent data unacknowledged for 30 s = dead. libpq ignores these on a
     * unix socket. */
    s->keys[n] = "keepalives", s->vals[n++] = "1";
    s->keys[n] = "keepalives_idle", s->vals[n++] = "30";
    s->keys[n] = "keepalives_interval", s->vals[n++] = "10";
    s->keys[n] = "keepalives_count", s->vals[n++] = "3";
    s->keys[n] = "tcp_user_timeout", s->vals[n++] = "30000";
    /* A COMMIT is known to be in doubt only by the WARNING that comes with
     * it (on_notice), which a database or role setting of
     * client_min_messages = error would silently withhold: ask for the
     * server default. Startup options win over those settings. */
    if (o->statement_timeout_ms == 0)
        s->keys[n] = "options", s->vals[n++] = CLIENT_MESSAGES;
    s->keys[n] = "dbname", s->vals[n++] = s->conninfo;
    if (o->statement_timeout_ms > 0) {
        snprintf(s->pg_options, sizeof(s->pg_options),
                 CLIENT_MESSAGES " -c statement_timeout=%u",
                 o->statement_timeout_ms);
        s->keys[n] = "options", s->vals[n++] = s->pg_options;
    }
    s->keys[n] = NULL, s->vals[n] = NULL;
    return MG_OK;
}

static void
store_free_early(struct mg_store *s)
{
    mg_free(s->conns);
    mg_free(s->conninfo);
    mg_free(s->app_name);
    mg_free(s->schema_sql);
    mg_free(s);
}

int
mg_store_open(uv_loop_t *loop, const struct mg_store_options *opts,
              struct mg_store **out)
{
    struct mg_store *s;
    int rc;

    if (sodium_init() < 0)
        return MG_EIO; /* jitter needs randombytes */
    s = mg_calloc(1, sizeof(*s));
    if (s == NULL)
        return MG_ENOMEM;
    s->loop = loop;
    s->log.component = "store";
    s->schema_version = MG__STORE_SCHEMA_UNKNOWN;
    s->queue.tail = &s->queue.head;
    s->deferred.tail = &s->deferred.head;
    rc = copy_options(s, opts);
    if (rc == MG_OK) {
        s->conns = mg_calloc(s->opts.pool_size, sizeof(*s->conns));
        rc = s->conns ? MG_OK : MG_ENOMEM;
    }
    if (rc < 0) {
        store_free_early(s);
        return rc;
    }
    /* Idle and timer init cannot fail on a valid loop. */
    uv_idle_init(loop, &s->kick);
    s->kick.data = s;
    uv_timer_init(loop, &s->qtimer);
    s->qtimer.data = s;
    for (unsigned i = 0; i < s->opts.pool_size; i++) {
        struct mg__store_conn *c = &s->conns[i];

        c->s = s;
        c->idx = i;
        c->log = s->log;
        c->log.conn_id = i + 1;
        uv_timer_init(loop, &c->timer);
        c->timer.data = c;
        uv_timer_start(&c->timer, on_timer, 0, 0);
    }
    *out = s;
    return MG_OK;
}

int
mg_store_prepare(struct mg_store *s, const char *name, const char *sql,
                 int nparams)
{
    struct mg__store_stmt *st;

    if (name == NULL || *name == '\0' || sql == NULL || nparams < 0 ||
        nparams > MAX_PARAMS)
        return MG_EINVAL;
    if (s->closing)
        return MG_ECANCELED;
    st = find_stmt(s, name);
    if (st != NULL)
        return strcmp(st->sql, sql) == 0 && st->nparams == nparams ? MG_OK
                                                                   : MG_EDUP;
    if (s->nstmts == s->stmts_cap) {
        size_t cap = s->stmts_cap ? s->stmts_cap * 2 : 16;
        void *p = mg_realloc(s->stmts, cap * sizeof(*s->stmts));

        if (p == NULL)
            return MG_ENOMEM;
        s->stmts = p;
        s->stmts_cap = cap;
    }
    st = mg_calloc(1, sizeof(*st));
    if (st == NULL)
        return MG_ENOMEM;
    st->name = mg_strdup(name);
    st->sql = mg_strdup(sql);
    if (st->name == NULL || st->sql == NULL) {
        mg_free(st->name);
        mg_free(st->sql);
        mg_free(st);
        return MG_ENOMEM;
    }
    st->nparams = nparams;
    s->stmts[s->nstmts++] = st;
    return MG_OK;
}

static int
query(struct mg_store *s, const char *stmt, const char *sql, int nparams,
      const char *const *values, const int *lengths, bool commits,
      mg_store_result_cb cb, void *ud)
{
    struct mg__store_stmt *st;
    struct mg__store_req *r;
    int rc;

    if (s->closing)
        return MG_ECANCELED;
    rc = mg__store_check_call(s, stmt, sql, nparams, values, lengths, &st);
    if (rc < 0)
        return rc;
    r = mg__store_req_new(MG__STORE_REQ_QUERY, st, sql, nparams, values,
                          lengths, mg__store_would_queue(s));
    if (r == NULL)
        return MG_ENOMEM;
    r->cb = cb;
    r->ud = ud;
    r->commits = commits;
    mg__store_submit(s, r);
    return MG_OK;
}

int
mg_store_query(struct mg_store *s, const char *stmt, const char *sql,
               int nparams, const char *const *values, const int *lengths,
               mg_store_result_cb cb, void *ud)
{
    return query(s, stmt, sql, nparams, values, lengths, false, cb, ud);
}

int
mg_store_query_commit(struct mg_store *s, const char *stmt, const char *sql,
                      int nparams, const char *const *values,
                      const int *lengths, mg_store_result_cb cb, void *ud)
{
    return query(s, stmt, sql, nparams, values, lengths, true, cb, ud);
}

int
mg_store_recheck_schema(struct mg_store *s)
{
    struct mg__store_req *r;

    if (s->closing)
        return MG_ECANCELED;
    if (s->opts.expected_schema_version == 0)
        return MG_OK;
    r = mg__store_req_new(MG__STORE_REQ_SCHEMA, NULL, NULL, 0, NULL, NULL,
                          false);
    if (r == NULL)
        return MG_ENOMEM;
    mg__store_submit(s, r);
    return MG_OK;
}
