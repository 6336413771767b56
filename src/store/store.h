/* Asynchronous PostgreSQL pool on the libuv loop (DESIGN-NOTES.md section 2).
 *
 * A fixed number of non-blocking libpq connections, each watched by one
 * uv_poll on its socket, serve a bounded FIFO of requests: one-shot
 * statements, and transactions that lease one connection from BEGIN to
 * COMMIT/ROLLBACK. Connections are opened with PQconnectStartParams and
 * PQconnectPoll (never a blocking call on the loop), prepare every
 * registered statement on each (re)connect, and reconnect by themselves
 * with an exponential back-off (100 ms doubling to reconnect_max_ms, with
 * jitter) when the database goes away.
 *
 * Threads: every function here must be called on the loop thread, and every
 * callback runs on it.
 *
 * Callbacks: a function that returns MG_OK has queued work and will call
 * its callback exactly once, later, from the loop -- never synchronously
 * from inside the call itself, even for failures known at once (MG_EBUSY,
 * MG_EDBDOWN). A function that returns an error has queued nothing and
 * never calls its callback.
 *
 * Parameters: statement parameters are sent in PostgreSQL text format.
 * values[i] is the text of parameter $i+1 (NULL for SQL NULL); when lengths
 * is not NULL it holds the byte length of each value, which then needs no
 * NUL terminator (a value holding a NUL byte within its length is refused
 * with MG_EINVAL: text cannot carry one); when lengths is NULL every value
 * is a C string. The pool copies everything it is given, so callers may
 * pass stack buffers and reuse them as soon as the call returns. Values are
 * never logged (they may be PHI): logs name statements and SQLSTATEs only.
 *
 * Results: the PGresult passed to a result callback is owned by the pool and
 * valid only until the callback returns (it is PQclear'ed right after);
 * copy what you need. It is NULL unless rc is MG_OK or MG_EDB.
 *
 * Codes seen by callbacks:
 *   MG_OK         the statement succeeded; res is its last result.
 *   MG_EDB        the statement failed on the server; res is the error
 *                 result (PQresultErrorField(res, PG_DIAG_SQLSTATE)).
 *   MG_EDBDOWN    no connection could run it, or the connection broke before
 *                 the result arrived. A one-shot data-modifying statement
 *                 that had been sent may or may not have been applied (it
 *                 ran in its own implicit transaction): rely on idempotency.
 *   MG_EINDOUBT   only for COMMIT: it was sent and the connection broke
 *                 before the answer, or no answer came within
 *                 commit_timeout_ms (the pool then sends the server a
 *                 cancel and drops the connection), or the server answered
 *                 it with a WARNING (a synchronous-replication wait
 *                 cancelled: the commit is local only), so the outcome is
 *                 unknown (never report this as "failed" nor as committed;
 *                 DESIGN-NOTES.md section 3).
 *   MG_EBUSY      the wait queue was full (back-pressure).
 *   MG_ETIMEDOUT  the request waited in the queue longer than
 *                 queue_timeout_ms.
 *   MG_ECANCELED  the store is closing.
 */
#ifndef MG_STORE_STORE_H
#define MG_STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>
#include <uv.h>

#include "core/buf.h"
#include "core/compiler.h"

#define MG_STORE_MAX_POOL 64 /* connections per store */

struct mg_store;
struct mg_store_tx;

struct mg_store_options {
    const char *conninfo;          /* libpq "key=value" string or URL;
                                      borrowed, copied by open */
    unsigned pool_size;            /* connections; 0 = 4; at most
                                      MG_STORE_MAX_POOL */
    unsigned queue_max;            /* waiting requests; 0 = 1024 */
    unsigned queue_timeout_ms;     /* max wait in the queue; 0 = no limit */
    unsigned statement_timeout_ms; /* server statement_timeout; 0 = server
                                      default. Sent as the connection
                                      "options", replacing any in conninfo;
                                      with 0, options in conninfo win.
                                      The options also set
                                      client_min_messages=notice, so that
                                      the WARNING of an in-doubt COMMIT
                                      cannot be withheld */
    unsigned connect_timeout_ms;   /* per connection attempt; 0 = 10000 */
    unsigned reconnect_max_ms;     /* back-off cap; 0 = 30000 */
    unsigned commit_timeout_ms;    /* a COMMIT not answered this long after
                                      it was sent ends with MG_EINDOUBT and
                                      its connection is dropped; 0 = no
                                      deadline */
    const char *application_name;  /* NULL = "medgate"; conninfo wins */
    int expected_schema_version;   /* > 0: ready only when
                                      max(schema_migrations.version) equals
                                      it; 0 = no check */
    const char *schema_sql;        /* the check's query, returning one row
                                      with the version as its first column;
                                      NULL = max(version) of
                                      schema_migrations. Copied by open.
                                      It may answer
                                      MG_STORE_SCHEMA_OTHER_BUILD or
                                      MG_STORE_SCHEMA_REFUSED, the latter
                                      with a second column saying why */
};

/* What a schema_sql answers when the database holds objects of another
 * build (never a version): not ready until `medgate migrate` runs. */
#define MG_STORE_SCHEMA_OTHER_BUILD (-3)
/* What a schema_sql answers when the database lacks rows the caller's
 * configuration names (its second column says which). */
#define MG_STORE_SCHEMA_REFUSED (-4)

/* Pool counters, for /metrics and tests. */
struct mg_store_stats {
    unsigned total;            /* configured connections */
    unsigned up;               /* connected and serving (in_use + idle) */
    unsigned in_use;           /* running a request or leased to a tx */
    unsigned idle;             /* up and free */
    unsigned queue_length;     /* requests waiting for a connection */
    uint64_t errors_total;     /* requests that ended with a negative code
                                  other than MG_ECANCELED, plus failed
                                  connection attempts and broken
                                  connections */
    uint64_t reconnects_total; /* connection attempts after the first one
                                  of each pool slot */
};

/* Close callback: the store and every transaction handle are already freed
 * when it runs. */
typedef void (*mg_store_close_cb)(void *ud);
/* Result of a statement, COMMIT or ROLLBACK; see "Codes" and "Results". */
typedef void (*mg_store_result_cb)(int rc, PGresult *res, void *ud);
/* Result of mg_store_begin: tx is the open transaction when rc is MG_OK,
 * NULL otherwise. */
typedef void (*mg_store_begin_cb)(int rc, struct mg_store_tx *tx, void *ud);

/* Creates the pool on loop and starts connecting; it returns before any
 * connection is up. Requests made before the first connection attempt has
 * finished wait in the queue; after that, requests made while no
 * connection is up fail with MG_EDBDOWN (from the loop).
 * Returns MG_OK with *out set (the caller owns it and must mg_store_close
 * it), MG_EINVAL (bad options), MG_ECONF (conninfo does not parse) or
 * MG_ENOMEM. Conninfo should name a socket directory or an IP address
 * (or set hostaddr): libpq resolves a DNS host name synchronously, on the
 * loop, at every connection attempt (open logs a warning then). */
MG_MUST_CHECK int mg_store_open(uv_loop_t *loop,
                                const struct mg_store_options *opts,
                                struct mg_store **out);

/* Cancels everything and closes every handle: queued requests, requests in
 * flight and pending transaction calls end with MG_ECANCELED (a COMMIT in
 * flight with MG_EINDOUBT), from the loop, and open transactions are rolled
 * back by the server when their connection closes. Then cb(ud) runs (cb may
 * be NULL) after all memory is freed; store and every struct mg_store_tx
 * are invalid from then on. After mg_store_close, new calls fail with
 * MG_ECANCELED. A second call is ignored. May be called from a callback. */
void mg_store_close(struct mg_store *store, mg_store_close_cb cb, void *ud);

/* Registers a named prepared statement (name and sql are copied). Every
 * connection prepares all registered statements when it (re)connects, and
 * prepares one at first use if it was registered later or failed to
 * prepare then (for instance before migrations created its table). A
 * failed preparation at first use makes that request end with MG_EDB.
 * nparams is the number of $n parameters requests must pass.
 * Returns MG_OK (also when the same name is registered again with the same
 * sql and nparams), MG_EDUP (same name, different statement), MG_EINVAL,
 * MG_ENOMEM or MG_ECANCELED (closing). Synchronous; no callback. */
MG_MUST_CHECK int mg_store_prepare(struct mg_store *store, const char *name,
                                   const char *sql, int nparams);

/* Runs one statement on any free connection, in its own implicit
 * transaction: the prepared statement stmt when it is not NULL (nparams
 * must match its registration), otherwise sql with nparams parameters
 * (one statement per call: parameters forbid several). See "Parameters"
 * for values and lengths.
 * Returns MG_OK (cb will run once, from the loop, with any code listed
 * above), MG_ENOTFOUND (stmt not registered), MG_EINVAL, MG_ENOMEM or
 * MG_ECANCELED (closing); on an error return cb never runs. */
MG_MUST_CHECK int mg_store_query(struct mg_store *store, const char *stmt,
                                 const char *sql, int nparams,
                                 const char *const *values,
                                 const int *lengths, mg_store_result_cb cb,
                                 void *ud);

/* mg_store_query for a statement that commits on its own, in the implicit
 * transaction of one statement (a write that needs no BEGIN ... COMMIT):
 * cb runs once the commit is done, so its MG_OK means committed. Its
 * outcome is its commit, so it is treated as a COMMIT is: once sent, a
 * connection lost, a WARNING with the answer (a wait for a synchronous
 * standby cancelled: committed locally only) or no answer within
 * statement_timeout_ms + commit_timeout_ms make it MG_EINDOUBT, never
 * MG_EDBDOWN or MG_OK. Any WARNING counts, also one the statement itself
 * raised before its commit (a trigger's): the answer cannot tell them
 * apart, and in doubt is the safe side (no ACK; the resend is a repeat).
 * Same returns as mg_store_query. */
MG_MUST_CHECK int mg_store_query_commit(struct mg_store *store,
                                        const char *stmt, const char *sql,
                                        int nparams,
                                        const char *const *values,
                                        const int *lengths,
                                        mg_store_result_cb cb, void *ud);

/* Leases a connection and sends BEGIN. It waits in the same queue as
 * mg_store_query and can fail the same ways. On MG_OK the callback gets the
 * transaction handle, which the caller must end with mg_store_tx_commit or
 * mg_store_tx_rollback (the connection serves nobody else until then).
 * Returns MG_OK, MG_EINVAL, MG_ENOMEM or MG_ECANCELED; on an error return
 * cb never runs. */
MG_MUST_CHECK int mg_store_begin(struct mg_store *store, mg_store_begin_cb cb,
                                 void *ud);

/* Runs a statement inside tx, like mg_store_query. Calls on one
 * transaction run one after another in call order; they may be made before
 * the previous ones have finished. Savepoints are plain statements
 * ("SAVEPOINT a", "ROLLBACK TO SAVEPOINT a"). If the connection broke, the
 * call ends with MG_EDBDOWN (the transaction is lost; end it with
 * mg_store_tx_rollback). A failed statement leaves the transaction aborted
 * (PostgreSQL semantics) until a ROLLBACK TO SAVEPOINT.
 * Returns MG_OK, MG_ENOTFOUND, MG_EINVAL (also after commit/rollback was
 * called), MG_ENOMEM or MG_ECANCELED; on an error return cb never runs. */
MG_MUST_CHECK int mg_store_tx_query(struct mg_store_tx *tx, const char *stmt,
                                    const char *sql, int nparams,
                                    const char *const *values,
                                    const int *lengths, mg_store_result_cb cb,
                                    void *ud);

/* Ends tx with COMMIT once its earlier calls have run, and releases the
 * connection. cb gets MG_OK (committed), MG_EDB (the commit failed, or the
 * transaction was already aborted by an earlier error: res then has
 * command status "ROLLBACK" and no SQLSTATE), MG_EDBDOWN (the connection
 * broke before COMMIT was sent: not committed), MG_EINDOUBT (it broke after,
 * no answer came within commit_timeout_ms of sending it, or the server
 * answered with a WARNING: unknown) or MG_ECANCELED. The handle is freed
 * after cb returns, whatever the code. Returns MG_OK, MG_EINVAL (commit or
 * rollback already called) or MG_ECANCELED (closing; the store frees the
 * handle); on an error return cb never runs. cb may be NULL. */
MG_MUST_CHECK int mg_store_tx_commit(struct mg_store_tx *tx,
                                     mg_store_result_cb cb, void *ud);

/* Like mg_store_tx_commit with ROLLBACK. MG_EDBDOWN means the connection
 * had broken; the transaction was not committed either way. */
MG_MUST_CHECK int mg_store_tx_rollback(struct mg_store_tx *tx,
                                       mg_store_result_cb cb, void *ud);

/* True when at least one connection is up and, if an expected schema
 * version was configured, the last schema check returned exactly it.
 * While a configured check says otherwise, the store runs nothing: every
 * request (query, transaction) fails with MG_ESCHEMA (MG_EREFUSED when the
 * check refused, MG_STORE_SCHEMA_REFUSED), so that no work is done against
 * a database the check refused. */
bool mg_store_ready(const struct mg_store *store);

/* Writes why the store is not ready ("database unreachable: ...",
 * "schema version 3, expected 4", "connecting", "database check refused:
 * <the check's second column>") or "ready" into reason
 * (NUL-terminated, truncated to size; reason may be NULL when size is 0).
 * Returns mg_store_ready(store). */
bool mg_store_status(const struct mg_store *store, char *reason, size_t size);

/* Runs the schema check again on a free connection (after migrations), so
 * that mg_store_ready reflects the new version. Returns MG_OK (the check is
 * queued; nothing is called back), MG_ENOMEM or MG_ECANCELED. */
MG_MUST_CHECK int mg_store_recheck_schema(struct mg_store *store);

/* Fills *st with the current counters. */
void mg_store_stats(const struct mg_store *store, struct mg_store_stats *st);

/* Appends the pool metrics in Prometheus text format to out:
 * medgate_db_connections{state="in_use"|"idle"|"down"} (they add up to
 * medgate_db_pool_size), medgate_db_queue_length, medgate_db_errors_total,
 * medgate_db_reconnects_total and medgate_db_up (1 when ready).
 * Returns MG_OK, MG_ETOOBIG or MG_ENOMEM (out may then hold part of it). */
MG_MUST_CHECK int mg_store_write_metrics(const struct mg_store *store,
                                         struct mg_buf *out);

/* How many cancel requests for abandoned COMMITs are still being sent:
 * each runs on a detached thread that may outlive the store (a shutdown
 * does not wait for a host that does not answer). Tests wait for 0
 * before they count allocations. */
int mg_store_cancels_running(void);

#endif
