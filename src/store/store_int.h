/* Internals of the PostgreSQL pool, shared by pool.c (connections,
 * requests, dispatch), tx.c (transactions) and status.c (health, metrics).
 * Only files of src/store/ include this. */
#ifndef MG_STORE_STORE_INT_H
#define MG_STORE_STORE_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "core/log.h"
#include "store/store.h"

#define MG__STORE_SCHEMA_SQL                                                   \
    "SELECT coalesce(max(version), 0) FROM schema_migrations"

/* schema_version values that are not versions. */
#define MG__STORE_SCHEMA_UNKNOWN (-1) /* not checked yet */
#define MG__STORE_SCHEMA_FAILED (-2)  /* the check query failed */

enum mg__store_req_kind {
    MG__STORE_REQ_QUERY,    /* one-shot statement */
    MG__STORE_REQ_SCHEMA,   /* schema check asked by mg_store_recheck_schema */
    MG__STORE_REQ_BEGIN,    /* leases a connection for a transaction */
    MG__STORE_REQ_TXQUERY,  /* statement inside a transaction */
    MG__STORE_REQ_COMMIT,   /* ends a transaction */
    MG__STORE_REQ_ROLLBACK, /* ends a transaction */
};

/* A registered prepared statement. Never removed before the store is freed,
 * so requests may point at it. */
struct mg__store_stmt {
    char *name;           /* owned */
    char *sql;            /* owned */
    int nparams;
    uint64_t prepared_on; /* bit i: prepared on connection i */
};

/* One unit of work and its callback. One-shot and transaction statements
 * are one allocation holding their parameter copies; BEGIN, COMMIT and
 * ROLLBACK are embedded in their struct mg_store_tx. */
struct mg__store_req {
    struct mg__store_req *next;
    enum mg__store_req_kind kind;
    struct mg_store_tx *tx;       /* BEGIN, TXQUERY, COMMIT, ROLLBACK */
    struct mg__store_stmt *stmt;  /* prepared statement, or NULL */
    const char *sql;              /* used when stmt is NULL; borrowed from
                                     this allocation or a literal */
    int nparams;
    const char **values;          /* nparams copies, in this allocation */
    uint64_t deadline;            /* uv_now() ms to leave the queue; 0 none */
    mg_store_result_cb cb;        /* all kinds but BEGIN; may be NULL */
    mg_store_begin_cb begin_cb;   /* BEGIN */
    void *ud;
    int rc;                       /* code of a completion waiting in a list */
    bool sent;                    /* bytes may have reached the server */
    bool commits;                 /* QUERY that commits on its own (an
                                     implicit transaction): its outcome is
                                     its commit, as for a COMMIT */
};

/* A FIFO of requests. */
struct mg__store_reqq {
    struct mg__store_req *head;
    struct mg__store_req **tail; /* &head when empty; NULL = never used */
    unsigned len;
};

struct mg_store_tx {
    struct mg_store *s;
    struct mg__store_conn *c;   /* leased connection; NULL before BEGIN
                                   is sent and after a break */
    struct mg__store_req begin; /* the BEGIN request */
    struct mg__store_req end;   /* COMMIT or ROLLBACK, once called */
    struct mg__store_reqq ops;  /* calls waiting for the connection */
    bool broken;                /* the connection broke: calls fail */
    bool ending;                /* commit or rollback was called */
    struct mg_store_tx *prev;   /* store's list of live transactions */
    struct mg_store_tx *next;
};

enum mg__store_conn_state {
    MG__STORE_DOWN,       /* waiting for the back-off timer */
    MG__STORE_CONNECTING, /* PQconnectPoll in progress */
    MG__STORE_INIT,       /* preparing statements, checking the schema */
    MG__STORE_IDLE,       /* up, free */
    MG__STORE_BUSY,       /* up, running a one-shot request */
    MG__STORE_LEASED,     /* up, owned by a transaction */
    MG__STORE_CLOSED,     /* the store is closing */
};

struct mg__store_poll {
    uv_poll_t h;
    struct mg__store_conn *c;
};

/* What a connection has sent and waits for the results of. */
enum mg__store_step {
    MG__STORE_STEP_NONE,
    MG__STORE_STEP_PREPARE,     /* INIT: preparing a registered statement */
    MG__STORE_STEP_SCHEMA,      /* INIT: schema version check */
    MG__STORE_STEP_REQ_PREPARE, /* preparing cur->stmt before running cur */
    MG__STORE_STEP_REQ,         /* running cur */
    MG__STORE_STEP_CLEANUP,     /* ROLLBACK of a transaction left open */
};

struct mg__store_conn {
    struct mg_store *s;
    unsigned idx;                    /* bit in mg__store_stmt.prepared_on */
    enum mg__store_conn_state state;
    enum mg__store_step step;
    PGconn *pg;                      /* owned; NULL while DOWN */
    struct mg__store_poll *poll;     /* owned; NULL when not watching */
    int events;                      /* UV_READABLE/UV_WRITABLE polled */
    uv_timer_t timer;                /* back-off wait, connect timeout or
                                        the deadline of a COMMIT sent */
    unsigned failures;               /* attempts failed since last stable */
    unsigned attempts;               /* connection attempts so far */
    uint64_t up_since;               /* uv_now() ms when it came up */
    size_t init_next;                /* INIT: next statement to prepare */
    bool schema_checked;             /* INIT: check done on this session */
    bool cleaned;                    /* a CLEANUP ROLLBACK was just sent */
    bool commit_warned;              /* a WARNING came with the COMMIT */
    struct mg__store_stmt *preparing; /* PREPARE / REQ_PREPARE statement */
    struct mg__store_req *cur;       /* REQ_PREPARE / REQ request */
    struct mg_store_tx *tx;          /* lessee while LEASED */
    PGresult *res;                   /* last result of the step; owned */
    PGresult *err;                   /* first error result; owned */
    struct mg_log_ctx log;
};

struct mg_store {
    uv_loop_t *loop;
    struct mg_store_options opts;    /* defaults applied; strings below */
    char *conninfo;                  /* owned copy */
    char *app_name;                  /* owned copy */
    char *schema_sql;                /* owned copy */
    char pg_options[96];             /* "-c client_min_messages=notice
                                        -c statement_timeout=N" or "" */
    const char *keys[10];            /* PQconnectStartParams arrays */
    const char *vals[10];
    struct mg__store_conn *conns;    /* owned, opts.pool_size of them */
    struct mg__store_stmt **stmts;   /* owned registry */
    size_t nstmts, stmts_cap;
    struct mg__store_reqq queue;     /* waiting for a connection */
    struct mg__store_reqq deferred;  /* completions due from the loop */
    uv_idle_t kick;                  /* runs dispatch, deferred, teardown */
    uv_timer_t qtimer;               /* queue deadlines */
    struct mg_store_tx *txs;         /* live transactions */
    bool down;                       /* nothing up after a failure: new
                                        requests fail with MG_EDBDOWN */
    bool ever_up;
    bool closing, torn_down;
    unsigned pending_closes;         /* uv_close calls not yet called back */
    mg_store_close_cb close_cb;
    void *close_ud;
    int schema_version;              /* last check, or MG__STORE_SCHEMA_* */
    char schema_detail[256];         /* the check's second column, or "" */
    char last_error[160];            /* last connection failure, one line */
    uint64_t errors, reconnects;
    struct mg_log_ctx log;
};

/* status.c */
/* True unless a configured schema check answered something other than the
 * expected version (not yet checked counts as true: no connection is idle
 * before its check has run). */
bool mg__store_schema_ok(const struct mg_store *s);

/* pool.c */
/* Allocates a request; copies sql and the parameters when copy is true
 * (the request will wait), else keeps only the callback fields. */
struct mg__store_req *mg__store_req_new(enum mg__store_req_kind kind,
                                        struct mg__store_stmt *stmt,
                                        const char *sql, int nparams,
                                        const char *const *values,
                                        const int *lengths, bool copy);
/* Checks a statement call and finds its registered statement. */
int mg__store_check_call(struct mg_store *s, const char *stmt,
                         const char *sql, int nparams,
                         const char *const *values, const int *lengths,
                         struct mg__store_stmt **out);
/* Queues r for a free connection, or completes it from the loop with
 * MG_EDBDOWN or MG_EBUSY. Takes ownership of r. */
void mg__store_submit(struct mg_store *s, struct mg__store_req *r);
/* Completes r with rc from the loop (never synchronously). */
void mg__store_defer(struct mg_store *s, struct mg__store_req *r, int rc);
/* Wakes the dispatcher on the next loop iteration. */
void mg__store_kick(struct mg_store *s);
/* True when the store would accept a request into its queue now. */
bool mg__store_would_queue(const struct mg_store *s);

void mg__store_reqq_push(struct mg__store_reqq *q, struct mg__store_req *r);
struct mg__store_req *mg__store_reqq_pop(struct mg__store_reqq *q);

/* tx.c */
/* Unlinks and frees a transaction handle (not its requests). */
void mg__store_tx_free(struct mg_store_tx *tx);

static inline bool
mg__store_conn_is_up(const struct mg__store_conn *c)
{
    return c->state == MG__STORE_IDLE || c->state == MG__STORE_BUSY ||
           c->state == MG__STORE_LEASED;
}

#endif
