/* Transactions: a transaction leases one connection from BEGIN until its
 * COMMIT or ROLLBACK has run, and its calls wait in their own FIFO, run
 * one after another on that connection by pool.c. If the connection
 * breaks, pool.c fails the waiting calls and marks the transaction broken;
 * later calls fail from the loop with MG_EDBDOWN until the caller ends it.
 *
 * Pipeline mode (libpq 14+) could send a transaction's queued calls in one
 * round trip; the FIFO here is where it would plug in. */
#include "store/store_int.h"

#include "core/alloc.h"
#include "core/error.h"

void
mg__store_tx_free(struct mg_store_tx *tx)
{
    struct mg__store_req *r;

    /* Normally empty: teardown and breaks complete every call first. */
    while ((r = mg__store_reqq_pop(&tx->ops)) != NULL)
        if (r != &tx->end)
            mg_free(r);
    if (tx->prev != NULL)
        tx->prev->next = tx->next;
    else
        tx->s->txs = tx->next;
    if (tx->next != NULL)
        tx->next->prev = tx->prev;
    mg_free(tx);
}

int
mg_store_begin(struct mg_store *s, mg_store_begin_cb cb, void *ud)
{
    struct mg_store_tx *tx;

    if (s->closing)
        return MG_ECANCELED;
    if (cb == NULL)
        return MG_EINVAL;
    tx = mg_calloc(1, sizeof(*tx));
    if (tx == NULL)
        return MG_ENOMEM;
    tx->s = s;
    tx->ops.tail = &tx->ops.head;
    tx->next = s->txs;
    if (s->txs != NULL)
        s->txs->prev = tx;
    s->txs = tx;
    tx->begin.kind = MG__STORE_REQ_BEGIN;
    tx->begin.tx = tx;
    tx->begin.begin_cb = cb;
    tx->begin.ud = ud;
    mg__store_submit(s, &tx->begin);
    return MG_OK;
}

/* Runs r after the transaction's earlier calls, or fails it from the loop
 * when the connection is gone. */
static void
tx_push(struct mg_store_tx *tx, struct mg__store_req *r)
{
    if (tx->broken) {
        mg__store_defer(tx->s, r, MG_EDBDOWN);
        return;
    }
    mg__store_reqq_push(&tx->ops, r);
    mg__store_kick(tx->s);
}

int
mg_store_tx_query(struct mg_store_tx *tx, const char *stmt, const char *sql,
                  int nparams, const char *const *values, const int *lengths,
                  mg_store_result_cb cb, void *ud)
{
    struct mg__store_stmt *st;
    struct mg__store_req *r;
    int rc;

    if (tx->s->closing)
        return MG_ECANCELED;
    if (tx->ending)
        return MG_EINVAL;
    rc = mg__store_check_call(tx->s, stmt, sql, nparams, values, lengths, &st);
    if (rc < 0)
        return rc;
    r = mg__store_req_new(MG__STORE_REQ_TXQUERY, st, sql, nparams, values,
                          lengths, !tx->broken);
    if (r == NULL)
        return MG_ENOMEM;
    r->tx = tx;
    r->cb = cb;
    r->ud = ud;
    tx_push(tx, r);
    return MG_OK;
}

static int
tx_end(struct mg_store_tx *tx, enum mg__store_req_kind kind,
       mg_store_result_cb cb, void *ud)
{
    if (tx->s->closing)
        return MG_ECANCELED;
    if (tx->ending)
        return MG_EINVAL;
    tx->ending = true;
    tx->end.kind = kind;
    tx->end.tx = tx;
    tx->end.cb = cb;
    tx->end.ud = ud;
    tx_push(tx, &tx->end);
    return MG_OK;
}

int
mg_store_tx_commit(struct mg_store_tx *tx, mg_store_result_cb cb, void *ud)
{
    return tx_end(tx, MG__STORE_REQ_COMMIT, cb, ud);
}

int
mg_store_tx_rollback(struct mg_store_tx *tx, mg_store_result_cb cb, void *ud)
{
    return tx_end(tx, MG__STORE_REQ_ROLLBACK, cb, ud);
}
