/* Durable HL7 v2 intake with grouped commits (see intake.h).
 *
 * Each submitted frame is prepared at once (parsed, checked, mapped, its
 * ACKs built, its row values rendered) and queued. A batch of the queue
 * goes to PostgreSQL as ONE statement that commits as it ends (intake_batch
 * in batch.c, sent with mg_store_query_commit: one round trip) whose
 * parameters are arrays, one element per message: it looks up duplicates,
 * runs the adapters, stores the new hl7_messages rows with their final
 * status, writes every sync_logs row, and returns, per message, the ACK to
 * send and any adapter error. A message its adapter refused is stored
 * failed; its AE, located in C, is written by a second statement right
 * after the commit. Only when the commit has succeeded are the ACKs handed
 * back.
 * Any other error fails the batch as a whole; the intake then retries its
 * messages one at a time, each alone in flight, so one poison message
 * never takes its neighbours down and they still commit in order. */
#include "intake/intake.h"

#include <libpq-fe.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "core/alloc.h"
#include "core/arena.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/diag.h"
#include "core/error.h"
#include "core/log.h"
#include "hl7v2/hl7v2.h"
#include "intake/intake_int.h"
#include "mapping/mapping.h"
#include "store/store.h"

/* Most batches in flight at once (intake.commits_in_flight). One would
 * serialise everything behind one backend; a few let PostgreSQL use the
 * cores while a commit is flushing. More only split the same messages
 * into smaller batches, each paying the statement's fixed cost. */
#define MAX_INFLIGHT 8

#define REFUSED_LOGS 16

struct mg_intake {
    uv_loop_t *loop;
    struct mg_store *store;
    struct mg_intake_opts opts;
    struct mg_mapping_set *mappings; /* borrowed; may be NULL */
    struct mg__intake_item *head, *tail; /* waiting */
    size_t waiting;
    unsigned inflight;   /* batches sent, not yet answered */
    unsigned long long serial; /* of the last batch taken */
    size_t nflying;      /* messages in them */
    size_t held;         /* bytes the items not yet answered hold */
    bool freeing;
    struct flight *flying[MAX_INFLIGHT]; /* the batches in flight */
    uv_idle_t kick; /* flushes on the next loop turn: never call back
                       synchronously, and let a burst of reads gather */
    bool kick_active;
    /* counters */
    unsigned long long outcome[MG__INTAKE_NOUTCOMES];
    unsigned long long batches, batch_messages, failed_batches;
    unsigned long long batched; /* written by a batch function, committed */
    /* AE/AR answers: 5 in 10 s a listener, so that one flooding sender
     * does not hide another listener's refusals (REFUSED_LOGS listeners;
     * any more share the last) */
    struct {
        const struct mg_conf_listener *listener;
        struct mg_log_limit limit;
    } refused_log[REFUSED_LOGS];
    /* Grouped commits the database refused to write (write_refusal()), in
     * a row since the last one that committed; readiness reads them. */
    unsigned refused_in_a_row;
    uint64_t refused_at_us;  /* monotonic, of the last */
    char refused_state[6];   /* its SQLSTATE */
    int64_t committed_at_us; /* wall clock of the last commit, 0: none */
};


/* One batch transaction in flight. */
struct flight {
    struct mg_intake *in;
    struct mg__intake_item *list;
    size_t n;
    struct mg__intake_batch batch; /* parameters until the statement is sent */
    size_t nfix;                   /* refused messages in the fixup */
};

static const char *const outcome_names[MG__INTAKE_NOUTCOMES] = {
    "stored", "duplicate", "duplicate_conflict", "failed", "rejected",
    "not_stored"};

static void flush(struct mg_intake *in);
static void land(struct mg__intake_item *list);
static bool may_start_batch(const struct mg_intake *in);
static uint64_t key_hash(const struct mg__intake_item *it);
static void batch_ended(struct flight *f, int rc, PGresult *res);

static void
item_free(struct mg__intake_item *it)
{
    mg_mapping_set_free(it->mappings);
    mg_arena_dispose(&it->arena);
    mg_free(it);
}

static void
enqueue_front(struct mg_intake *in, struct mg__intake_item *list,
              size_t n)
{
    struct mg__intake_item *last = list;

    if (list == NULL)
        return;
    while (last->next)
        last = last->next;
    last->next = in->head;
    in->head = list;
    if (in->tail == NULL)
        in->tail = last;
    in->waiting += n;
}

static void
on_kick(uv_idle_t *h)
{
    struct mg_intake *in = h->data;

    uv_idle_stop(h);
    in->kick_active = false;
    flush(in);
}

static void
kick(struct mg_intake *in)
{
    if (in->kick_active || !may_start_batch(in))
        return;
    in->kick_active = true;
    uv_idle_start(&in->kick, on_kick);
}

int
mg_intake_new(uv_loop_t *loop, struct mg_store *store,
              const struct mg_intake_opts *opts, struct mg_intake **out)
{
    struct mg_intake *in = mg_calloc(1, sizeof(*in));
    int rc;

    if (in == NULL)
        return MG_ENOMEM;
    in->loop = loop;
    in->store = store;
    in->opts = *opts;
    for (size_t i = 0; i < REFUSED_LOGS; i++)
        in->refused_log[i].limit = MG_LOG_LIMIT_INIT(5, 10);
    if (in->opts.batch_max <= 0)
        in->opts.batch_max = 256;
    if (in->opts.queue_max <= 0)
        in->opts.queue_max = 8192;
    if (in->opts.commits_in_flight <= 0)
        in->opts.commits_in_flight = 2;
    in->opts.commits_in_flight = MG_MIN(in->opts.commits_in_flight,
                                        MAX_INFLIGHT);
    rc = mg_store_prepare(store, "intake_batch", mg__intake_batch_sql,
                          MG__INTAKE_NPARAMS);
    if (rc == MG_OK)
        rc = mg_store_prepare(store, "intake_fail", mg__intake_fail_sql, 5);
    if (rc != MG_OK) {
        mg_free(in);
        return rc;
    }
    uv_idle_init(loop, &in->kick);
    in->kick.data = in;
    *out = in;
    return MG_OK;
}

static void
on_kick_closed(uv_handle_t *h)
{
    mg_free(h->data);
}

static void
finish(struct mg_intake *in, struct mg__intake_item *it, int rc,
       const char *ack, size_t len)
{
    in->held -= it->mem; /* before the answer, which may read on */
    if (rc == MG_OK) {
        in->outcome[it->outcome]++;
    } else {
        in->outcome[MG__INTAKE_NOT_STORED]++;
        /* Before the answer, which may free the sequence: its later
         * messages are not stored either (take_batch). */
        if (it->seq != NULL && it->seq->refused == 0)
            it->seq->refused = rc;
    }
    it->done(it->arg, rc, ack, len);
    item_free(it);
}

static void
fail_list(struct mg_intake *in, struct mg__intake_item *it, int rc)
{
    struct mg__intake_item *next;

    for (; it != NULL; it = next) {
        next = it->next;
        finish(in, it, rc, it->down_ack.len ? it->down_ack.ptr : NULL,
               it->down_ack.len);
    }
}

void
mg_intake_free(struct mg_intake *in)
{
    struct mg__intake_item *list = in->head;

    in->head = in->tail = NULL;
    in->waiting = 0;
    fail_list(in, list, MG_ECANCELED);
    in->freeing = true;
    if (in->inflight == 0)
        uv_close((uv_handle_t *)&in->kick, on_kick_closed);
}

int
mg_intake_submit(struct mg_intake *in, const struct mg_conf_listener *li,
                 const char *peer_ip, struct mg_intake_seq *seq,
                 struct mg_str frame, mg_intake_done_cb done, void *arg)
{
    struct mg__intake_item *it;
    int rc;

    it = mg_calloc(1, sizeof(*it));
    if (it == NULL)
        return MG_ENOMEM;
    /* Back-pressure beyond the MLLP pause: refused, not stored, answered
     * "resend later" (or not at all); flush() answers it in queue order so
     * it is still asynchronous. Nothing more of it is read. */
    it->busy = in->waiting >= (size_t)in->opts.queue_max || in->freeing;
    mg_arena_init(&it->arena, it->busy ? 4096 : frame.len + 4096, 0);
    it->done = done;
    it->arg = arg;
    it->seq = seq;
    if (it->busy) {
        rc = mg__intake_prepare_busy(it, li, frame);
    } else {
        /* Its adapter's refusal is located with the set it was mapped
         * with, even when a reload replaced that set before the commit. */
        it->mappings = mg_mapping_set_ref(in->mappings);
        rc = mg__intake_prepare(it, li, it->mappings, frame);
    }
    if (rc != MG_OK) {
        item_free(it);
        return rc;
    }
    it->col[COL_PEER] = peer_ip ? mg_arena_strndup(&it->arena, peer_ip,
                                                    strlen(peer_ip))
                                : NULL;
    it->mem = it->arena.used;
    in->held += it->mem;
    memcpy(it->prepared, it->col, sizeof(it->prepared));
    it->prepared_outcome = it->outcome;
    it->key = key_hash(it);
    it->next = NULL;
    if (in->tail)
        in->tail->next = it;
    else
        in->head = it;
    in->tail = it;
    in->waiting++;
    kick(in);
    return MG_OK;
}

void
mg_intake_set_mappings(struct mg_intake *in, struct mg_mapping_set *set)
{
    in->mappings = set;
}

bool
mg_intake_full(const struct mg_intake *in)
{
    return in->held >= MG_INTAKE_HELD_MAX;
}

size_t
mg_intake_pending(const struct mg_intake *in)
{
    return in->waiting + in->nflying;
}

/* The limit of listener li's refusal lines. */
static struct mg_log_limit *
refused_limit(struct mg_intake *in, const struct mg_conf_listener *li)
{
    size_t i;

    for (i = 0; i < REFUSED_LOGS - 1; i++) {
        if (in->refused_log[i].listener == li)
            break;
        if (in->refused_log[i].listener == NULL) {
            in->refused_log[i].listener = li;
            break;
        }
    }
    return &in->refused_log[i].limit;
}

/* A refused message (stored failed or rejected, or a control id reused
 * with another payload): a WARN line, limited a listener, so that a sender
 * of bad messages shows in the log at the usual production level. The
 * listener, the sender (MSH-3^MSH-4), MSH-10 and the peer as fields; codes
 * and locations, never the error text (it may quote a value). */
static void
log_refusal(struct mg_intake *in, const struct mg__intake_item *it)
{
    struct mg_log_ctx ctx = {.component = "intake", .action = "answering"};
    char sender[160];

    if (it->lost || (it->outcome != MG__INTAKE_FAILED &&
                     it->outcome != MG__INTAKE_REJECTED &&
                     it->outcome != MG__INTAKE_DUPLICATE_CONFLICT))
        return;
    snprintf(sender, sizeof(sender), "%s^%s",
             it->col[COL_APP] ? it->col[COL_APP] : "",
             it->col[COL_FAC] ? it->col[COL_FAC] : "");
    ctx.listener = it->listener ? it->listener->name : NULL;
    ctx.sender = sender;
    ctx.control_id = it->col[COL_CONTROL_ID];
    ctx.peer = it->col[COL_PEER];
    if (it->outcome == MG__INTAKE_DUPLICATE_CONFLICT)
        mg_log_limited(refused_limit(in, it->listener), MG_LOG_WARN, &ctx,
                       "refused: AE 205, the control id (MSH-10) of an "
                       "earlier message with another payload (the new one "
                       "is stored with status duplicate; the sender must "
                       "use a new MSH-10)");
    else
        mg_log_limited(refused_limit(in, it->listener), MG_LOG_WARN, &ctx,
                       "refused: %s at %s (stored %s: hl7_messages.error "
                       "says why)",
                       it->col[COL_ACK_CODE] ? it->col[COL_ACK_CODE]
                                             : "no ACK",
                       it->col[COL_ERROR_LOCATION]
                           ? it->col[COL_ERROR_LOCATION]
                           : "-",
                       it->outcome == MG__INTAKE_FAILED ? "failed"
                                                        : "rejected");
}

/* Hands out the answers of a committed batch. Items the database could not
 * insert because a concurrent message took the same key in the same batch
 * go back to the queue: next time they are ordinary duplicates. */
static void
deliver(struct mg_intake *in, struct mg__intake_item *list)
{
    struct mg__intake_item *it, *next, *retry = NULL, **retry_tail = &retry;
    size_t nretry = 0;

    for (it = list; it != NULL; it = next) {
        next = it->next;
        it->next = NULL;
        if (it->retry) {
            it->retry = false;
            *retry_tail = it;
            retry_tail = &it->next;
            nretry++;
            continue;
        }
        in->batched += it->batched;
        log_refusal(in, it);
        if (it->lost)
            finish(in, it, MG_EINDOUBT, NULL, 0);
        else
            finish(in, it, MG_OK, it->ack, it->ack_len); /* NULL: MSH-15 NE */
    }
    enqueue_front(in, retry, nretry);
}

/* Puts the messages of a batch that wrote nothing back at the front of
 * the queue as they were prepared (what the batch said about them was
 * rolled back with it); with alone, each goes alone in flight next time. */
static void
requeue(struct mg_intake *in, struct mg__intake_item *list, size_t n,
        bool alone)
{
    for (struct mg__intake_item *it = list; it != NULL; it = it->next) {
        memcpy(it->col, it->prepared, sizeof(it->col));
        it->outcome = it->prepared_outcome;
        it->solo |= alone;
    }
    enqueue_front(in, list, n);
}

/* SQLSTATE class 40: a deadlock or a serialization failure, which another
 * transaction (another gateway instance's grouped commit, say) caused at
 * that moment; the same statement again usually goes through. */
static bool
lost_a_race(int rc, const PGresult *res)
{
    const char *state;

    if (rc != MG_EDB || res == NULL)
        return false;
    state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    return state != NULL && strncmp(state, "40", 2) == 0;
}

/* A failed batch of several: retry each message alone to find the poison
 * one. A failed single message is answered "not stored" -- unless again:
 * it lost a race (lost_a_race) for the first time and gets one more try,
 * as the sender's resend would come only after its timeout, on a new
 * connection. */
static void
isolate(struct mg_intake *in, struct mg__intake_item *list, size_t n, int rc,
        bool again)
{
    if (again) {
        list->retried = true;
        requeue(in, list, n, true);
    } else if (n == 1 || rc != MG_EDB) {
        fail_list(in, list, rc);
    } else {
        requeue(in, list, n, true);
    }
}

/* Did a concurrent batch store one of these keys first? The INSERT then
 * met its row in the unique index once it committed, and the statement
 * rolled back whole. */
static bool
key_taken(int rc, const PGresult *res)
{
    const char *state, *name;

    if (rc != MG_EDB || res == NULL)
        return false;
    state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    name = PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME);
    return state != NULL && strcmp(state, "23505") == 0 && name != NULL &&
           strcmp(name, "hl7_messages_idempotency_key") == 0;
}

/* The fixup statement's arrays: id, MSA-1, ACK, error, location of every
 * message an adapter refused. */
enum { FIX_ID, FIX_CODE, FIX_ACK, FIX_ERROR, FIX_LOC, FIX_N };

static int
append_fix(struct mg_buf fix[FIX_N], bool first, const char *id,
           const struct mg__intake_item *it)
{
    const char *v[FIX_N] = {id, it->col[COL_ACK_CODE], it->col[COL_ACK],
                            it->col[COL_ERROR], it->col[COL_ERROR_LOCATION]};
    int rc = MG_OK;

    for (int c = 0; c < FIX_N && rc == MG_OK; c++)
        rc = mg__intake_array_append(&fix[c], v[c], first);
    return rc;
}

/* Reads one row of the batch statement into its item; an adapter error
 * turns the item into a failed message and adds it to the fixup. */
static int
take_row(struct mg_intake *in, struct mg__intake_item *it, PGresult *res,
         int row, struct mg_buf fix[FIX_N], size_t *nfix)
{
    const char *what = PQgetvalue(res, row, 1);
    int rc;

    it->retry = strcmp(what, "retry") == 0;
    it->batched = PQgetvalue(res, row, 7)[0] == 't';
    if (strcmp(what, "same") == 0)
        it->outcome = MG__INTAKE_DUPLICATE;
    else if (strcmp(what, "dup") == 0)
        it->outcome = MG__INTAKE_DUPLICATE_CONFLICT;
    if (!PQgetisnull(res, row, 4)) {
        rc = mg__intake_adapter_failed(it, it->mappings,
                                       PQgetvalue(res, row, 4),
                                       PQgetvalue(res, row, 5),
                                       PQgetisnull(res, row, 6)
                                           ? NULL
                                           : PQgetvalue(res, row, 6));
        if (rc == MG_OK)
            rc = append_fix(fix, *nfix == 0, PQgetvalue(res, row, 3), it);
        if (rc != MG_OK)
            return rc; /* its col[COL_ACK] may still be the prepared AA */
        (*nfix)++;
        it->ack = it->col[COL_ACK];
        it->ack_len = it->ack ? strlen(it->ack) : 0;
        return MG_OK;
    }
    it->ack = NULL;
    it->ack_len = 0;
    if (!PQgetisnull(res, row, 2)) {
        it->ack_len = (size_t)PQgetlength(res, row, 2);
        it->ack = mg_arena_strndup(&it->arena, PQgetvalue(res, row, 2),
                                   it->ack_len);
        if (it->ack == NULL) {
            it->ack_len = 0;
            return MG_ENOMEM;
        }
    }
    return MG_OK;
}

/* The fixup of the refused messages ran (after the batch's commit). Its
 * failure changes no answer: those messages are stored as failed either
 * way, only without their AE, so a repeat is judged again. */
static void
on_fixed(int rc, PGresult *res, void *ud)
{
    struct flight *f = ud;

    (void)res;
    if (rc != MG_OK && f->nfix > 0)
        mg_log(MG_LOG_WARN, NULL, "intake: the AE of %zu refused message(s) "
               "was not stored (%s); they stay failed", f->nfix,
               mg_strerror(rc));
    batch_ended(f, MG_OK, NULL);
}

/* The batch statement's rows, one per message in order, after its commit:
 * the answers. Messages an adapter refused get their AE built here, and
 * stored by the fixup before any answer goes out. */
static void
on_rows(int rc, PGresult *res, void *ud)
{
    struct flight *f = ud;
    struct mg_buf fix[FIX_N];
    const char *values[FIX_N];
    size_t nfix = 0;
    int row = 0, frc = MG_OK;

    if (rc == MG_OK && (size_t)PQntuples(res) != f->n)
        rc = MG_EINDOUBT; /* cannot happen: one row per input element */
    if (rc != MG_OK) {
        batch_ended(f, rc, res);
        return;
    }
    for (int c = 0; c < FIX_N; c++)
        mg_buf_init(&fix[c], 0);
    /* Committed: every message gets its answer. One whose answer cannot
     * be built (out of memory) gets none, as if its commit were in doubt:
     * its connection closes and the sender's resend is judged again. */
    for (struct mg__intake_item *it = f->list; it; it = it->next)
        if (take_row(f->in, it, res, row++, fix, &nfix) != MG_OK) {
            it->lost = true;
            it->retry = false;
            frc = MG_ENOMEM; /* the fixup's arrays may be ragged: none */
        }
    for (int c = 0; c < FIX_N && frc == MG_OK && nfix > 0; c++)
        frc = mg__intake_array_close(&fix[c], &values[c]);
    f->nfix = nfix;
    /* It commits too: a deadline, as for the batch (a standby lost in
     * between would otherwise hold these answers for ever). */
    if (frc == MG_OK && nfix > 0)
        frc = mg_store_query_commit(f->in->store, "intake_fail", NULL, FIX_N,
                                    values, NULL, on_fixed, f);
    for (int c = 0; c < FIX_N; c++)
        mg_buf_dispose(&fix[c]);
    if (nfix > 0 && frc == MG_OK)
        return; /* on_fixed answers */
    if (frc != MG_OK)
        on_fixed(frc, NULL, f);
    else
        batch_ended(f, MG_OK, res);
}

static const struct mg_log_ctx intake_log = {.component = "intake",
                                             .action = "committing"};

/* What an on-call engineer should read into a failed grouped commit's
 * SQLSTATE (its class, for most). */
static const char *
sqlstate_words(const char *state)
{
    static const char *const words[][2] = {
        {"57014", "statement timeout or cancel: a lock held elsewhere, or "
                  "database.statement_timeout_ms too short"},
        {"40P01", "deadlock with another transaction"},
        {"40001", "serialization failure"},
        {"53", "the database server is out of a resource (disk, memory, "
               "connections)"},
        {"25006", "the database is read-only: a standby (after a failover, "
                  "or the host name points at a replica), or "
                  "default_transaction_read_only"},
        {"25", "invalid transaction state"},
        {"58", "an I/O or system error on the database server (its disk?)"},
        {"08", "connection to the database lost"},
        {"57P", "the database server is shutting down or restarting"},
        {"42", "the schema does not match this build (run medgate migrate)"},
        {"23", "a constraint refused a row"},
        {"22", "a value the database cannot take"}};

    for (size_t i = 0; state && i < MG_ARRAY_LEN(words); i++)
        if (strncmp(state, words[i][0], strlen(words[i][0])) == 0)
            return words[i][1];
    return "see the database server's log";
}

/* A failure that says the database takes no writes at all, whatever is
 * sent: read-only (class 25: a standby), out of disk or memory (53), an
 * I/O error (58). A lock wait, a deadlock or a refused row is not. */
static bool
write_refusal(const char *state)
{
    return state != NULL && (strncmp(state, "25", 2) == 0 ||
                             strncmp(state, "53", 2) == 0 ||
                             strncmp(state, "58", 2) == 0);
}

/* Readiness keeps up with the commits: refused ones in a row, or one that
 * went through. */
static void
note_commit(struct mg_intake *in, int rc, const PGresult *res)
{
    const char *state = rc == MG_EDB && res != NULL
                            ? PQresultErrorField(res, PG_DIAG_SQLSTATE)
                            : NULL;

    if (rc == MG_OK) {
        in->refused_in_a_row = 0;
        in->committed_at_us = mg_clock_wall_us();
    } else if (write_refusal(state)) {
        in->refused_in_a_row++;
        in->refused_at_us = mg_clock_mono_us();
        snprintf(in->refused_state, sizeof(in->refused_state), "%s", state);
    }
}

bool
mg_intake_status(const struct mg_intake *in, char *reason, size_t size)
{
    uint64_t since = mg_clock_mono_us() - in->refused_at_us;

    if (in->refused_in_a_row < MG_INTAKE_REFUSED_NOT_READY ||
        since > (uint64_t)MG_INTAKE_REFUSED_HOLD_MS * 1000)
        return true;
    if (size > 0)
        /* No counts or times in it: a reason that changes logs a new
         * "not ready" line (admin.c), and probes come every second. */
        snprintf(reason, size, "the database refuses writes: grouped "
                 "commits in a row failed with SQLSTATE %s (%s)",
                 in->refused_state, sqlstate_words(in->refused_state));
    return false;
}

/* The end of a batch transaction: committed (rc MG_OK) or not. */
static void
batch_ended(struct flight *f, int rc, PGresult *res)
{
    struct mg_intake *in = f->in;
    struct mg__intake_item *list = f->list;
    size_t n = f->n;

    for (int k = 0; k < MAX_INFLIGHT; k++)
        if (in->flying[k] == f)
            in->flying[k] = NULL;
    mg_free(f);
    in->inflight--;
    in->nflying -= n;
    land(list); /* before any answer: an answer may free its sequence */
    note_commit(in, rc, res);
    if (rc == MG_OK) {
        deliver(in, list);
    } else if (key_taken(rc, res)) {
        requeue(in, list, n, false); /* the copy is a repeat next time */
    } else {
        /* one more try for a lone message that lost a race, once */
        bool again = n == 1 && !list->retried && lost_a_race(rc, res);

        in->failed_batches++;
        if (rc == MG_EDB && res != NULL) {
            const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

            mg_log(MG_LOG_WARN, &intake_log, "grouped commit of %zu "
                   "message(s) failed: SQLSTATE %s (%s); %s", n,
                   state ? state : "?", sqlstate_words(state),
                   n > 1 ? "they are tried again one at a time"
                   : again ? "tried again once"
                           : "not stored: no ACK, the sender resends");
        }
        isolate(in, list, n, rc, again);
    }
    if (in->freeing) {
        fail_list(in, in->head, MG_ECANCELED);
        in->head = in->tail = NULL;
        in->waiting = 0;
        if (in->inflight == 0)
            uv_close((uv_handle_t *)&in->kick, on_kick_closed);
        return;
    }
    flush(in);
}

/* May it join the batch being taken? Not while an earlier message of its
 * sequence is in another batch in flight: that one must commit first. */
static bool
in_turn(const struct mg_intake *in, const struct mg__intake_item *it)
{
    const struct mg_intake_seq *q = it->seq;

    return q == NULL || q->flying == 0 || q->batch == in->serial;
}

static void
take_off(struct mg_intake *in, struct mg__intake_item *it)
{
    if (it->seq != NULL && !it->busy) {
        it->seq->flying++;
        it->seq->batch = in->serial;
    }
}

/* The messages of list are no longer in flight. */
static void
land(struct mg__intake_item *list)
{
    for (struct mg__intake_item *it = list; it != NULL; it = it->next)
        if (it->seq != NULL && !it->busy)
            it->seq->flying--;
}

static bool
same_str(const char *a, const char *b)
{
    return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* The message's key (organization, MSH-3, MSH-4, MSH-10) hashed, 0 when
 * it has none (no organization or no control id). */
static uint64_t
key_hash(const struct mg__intake_item *it)
{
    static const int cols[] = {COL_ORG, COL_APP, COL_FAC, COL_CONTROL_ID};
    uint64_t h = MG_FNV1A_BASIS;

    if (it->col[COL_ORG] == NULL || it->col[COL_CONTROL_ID] == NULL)
        return 0;
    for (size_t i = 0; i < MG_ARRAY_LEN(cols); i++) {
        const char *v = it->col[cols[i]] ? it->col[cols[i]] : "";

        /* 0xff between the parts: no byte of UTF-8 text */
        h = mg_fnv1a(mg_fnv1a(h, v, strlen(v)), "\xff", 1);
    }
    return h ? h : 1;
}

/* Whether it repeats the key of a message already in the batch (list).
 * Then the batch ends before it: the statement would hold it back for the
 * next batch, and the messages behind it on its connection would commit
 * before it (an A08 applied, then the A01 it updates). */
static bool
repeats_key(const struct mg__intake_item *list,
            const struct mg__intake_item *it)
{
    if (it->key == 0)
        return false;
    for (; list != NULL; list = list->next)
        if (list->key == it->key &&
            same_str(list->col[COL_CONTROL_ID], it->col[COL_CONTROL_ID]) &&
            same_str(list->col[COL_ORG], it->col[COL_ORG]) &&
            same_str(list->col[COL_APP], it->col[COL_APP]) &&
            same_str(list->col[COL_FAC], it->col[COL_FAC]))
            return true;
    return false;
}

/* Whether it repeats the key of a message in a batch in flight. It must
 * wait for that batch: started alongside, its statement would not see the
 * other's row (a failed copy stored twice) or would wait on its key and
 * roll back with all its adapters' work (an accepted one). Once that batch
 * has landed, it is an ordinary repeat. */
static bool
key_in_flight(const struct mg_intake *in, const struct mg__intake_item *it)
{
    for (int k = 0; k < MAX_INFLIGHT; k++)
        if (in->flying[k] != NULL && repeats_key(in->flying[k]->list, it))
            return true;
    return false;
}

/* The most bytes of raw message (hex) and adapter input one grouped
 * statement carries. PostgreSQL refuses a value over 1 GB, which 32 frames
 * of 16 MB in one array passed: the batch failed and each message went
 * again alone, one at a time, while nothing else could start. */
#define BATCH_BYTES_MAX (64u << 20)

/* Takes the next batch off the queue, in queue order: up to batch_max
 * messages whose turn it is (others stay queued), or one message alone --
 * one refused at submit, or one being isolated after its batch failed,
 * which starts only when nothing else is in flight. Messages met on the
 * way whose sequence had one not stored go to *refused. Returns how many
 * are in *list. */
static size_t
take_batch(struct mg_intake *in, struct mg__intake_item **list,
           struct mg__intake_item **refused)
{
    struct mg__intake_item **p = &in->head, *it, *kept = NULL;
    struct mg__intake_item **tail = list, **rtail = refused;
    size_t n = 0, nrefused = 0, bytes = 0;
    bool alone = false;

    in->serial++;
    *list = *refused = NULL;
    while (!alone && (it = *p) != NULL && n < (size_t)in->opts.batch_max) {
        if (it->seq != NULL && it->seq->refused != 0) {
            *p = it->next;
            it->next = NULL;
            *rtail = it;
            rtail = &it->next;
            nrefused++;
            continue;
        }
        alone = it->solo || it->busy;
        if (alone && (n > 0 || (it->solo && in->inflight > 0)))
            break;
        if (!it->busy && !in_turn(in, it)) {
            kept = it;
            p = &it->next;
            continue;
        }
        /* A repeated key ends the batch; key_in_flight also keeps the
         * next batch from starting before this one has landed. */
        if (!alone && (repeats_key(*list, it) || key_in_flight(in, it)))
            break;
        if (n > 0 && bytes + it->bytes > BATCH_BYTES_MAX)
            break; /* the rest makes the next batch */
        bytes += it->bytes;
        *p = it->next;
        it->next = NULL;
        *tail = it;
        tail = &it->next;
        take_off(in, it);
        n++;
    }
    if (*p == NULL)
        in->tail = kept;
    in->waiting -= n + nrefused;
    return n;
}

/* Answers the messages of list, each with the error an earlier message of
 * its sequence got. */
static void
refuse(struct mg_intake *in, struct mg__intake_item *list)
{
    struct mg__intake_item *next;

    for (; list != NULL; list = next) {
        next = list->next;
        finish(in, list, list->seq->refused, NULL, 0);
    }
}

/* Another batch starts at once when none is in flight (no added latency
 * for a lone sender); while one is, new messages wait for it to finish so
 * they commit together, unless enough are waiting to fill a batch of their
 * own. Starting a batch per message would trade one large commit for many
 * small ones and make PostgreSQL do more work per message. */
static bool
may_start_batch(const struct mg_intake *in)
{
    if (in->inflight == 0)
        return true;
    return in->inflight < (unsigned)in->opts.commits_in_flight &&
           in->waiting >= (size_t)MG_MAX(in->opts.batch_max / 8, 1);
}

static void
flush(struct mg_intake *in)
{
    struct mg__intake_item *list, *refused;
    struct flight *f;
    size_t n;
    int rc;

    while (in->head != NULL && may_start_batch(in)) {
        n = take_batch(in, &list, &refused);
        if (refused != NULL) {
            refuse(in, refused);
            if (n == 0)
                continue; /* what it left may be in turn now */
        }
        if (n == 0)
            break; /* nothing whose turn it is */
        if (list->busy) { /* refused at submit: queue was full */
            fail_list(in, list, MG_EBUSY);
            continue;
        }
        f = mg_calloc(1, sizeof(*f));
        rc = f != NULL ? mg__intake_batch_render(&f->batch, list) : MG_ENOMEM;
        if (rc == MG_OK)
            rc = mg_store_query_commit(in->store, "intake_batch", NULL,
                                       MG__INTAKE_NPARAMS, f->batch.values,
                                       NULL, on_rows, f);
        if (f != NULL)
            mg__intake_batch_dispose(&f->batch); /* the store copied it */
        if (rc != MG_OK) {
            mg_free(f);
            land(list);
            fail_list(in, list, rc);
            continue;
        }
        f->in = in;
        f->list = list;
        f->n = n;
        for (int k = 0; k < MAX_INFLIGHT; k++)
            if (in->flying[k] == NULL) {
                in->flying[k] = f;
                break;
            }
        in->inflight++;
        in->nflying += n;
        in->batches++;
        in->batch_messages += n;
    }
}

void
mg_intake_write_metrics(const struct mg_intake *in, struct mg_buf *out)
{
    for (int i = 0; i < MG__INTAKE_NOUTCOMES; i++)
        (void)mg_buf_appendf(out,
                             "medgate_intake_messages_total{outcome=\"%s\"} "
                             "%llu\n",
                             outcome_names[i], in->outcome[i]);
    (void)mg_buf_appendf(out,
                         "medgate_intake_batches_total %llu\n"
                         "medgate_intake_batch_messages_total %llu\n"
                         "medgate_intake_failed_batches_total %llu\n"
                         "medgate_intake_batched_messages_total %llu\n"
                         "medgate_intake_pending %zu\n"
                         "medgate_intake_held_bytes %zu\n"
                         "# HELP medgate_intake_last_commit_timestamp_seconds "
                         "When a grouped commit last went through (0: none "
                         "yet). Alert when it stops moving while "
                         "medgate_intake_pending is above 0.\n"
                         "# TYPE medgate_intake_last_commit_timestamp_seconds "
                         "gauge\n"
                         "medgate_intake_last_commit_timestamp_seconds "
                         "%.3f\n"
                         "# HELP medgate_intake_write_refusals_in_a_row "
                         "Grouped commits the database refused to write "
                         "(read-only, out of disk, I/O error) since the "
                         "last that went through.\n"
                         "# TYPE medgate_intake_write_refusals_in_a_row "
                         "gauge\n"
                         "medgate_intake_write_refusals_in_a_row %u\n",
                         in->batches, in->batch_messages, in->failed_batches,
                         in->batched,
                         mg_intake_pending(in), in->held,
                         (double)in->committed_at_us / 1e6,
                         in->refused_in_a_row);
}
