/* Durable HL7 v2 intake with grouped commits (see intake.h).
 *
 * Each submitted frame is prepared at once (parsed, checked, its ACKs built,
 * its row values rendered) and queued. When no commit is in flight the queue
 * goes to PostgreSQL as ONE statement (intake_batch in batch_sql.c) whose
 * parameters are arrays, one element per message: it looks up duplicates,
 * inserts the new hl7_messages rows and every sync_logs row, and returns, per
 * message, the ACK to send. Only when that statement has committed are the
 * ACKs handed back. A data error fails the batch as a whole; the intake then
 * retries its messages one at a time, so one poison message never takes its
 * neighbours down. */
#include "intake/intake.h"

#include <libpq-fe.h>
#include <sodium.h>
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
#include "store/store.h"

struct mg_intake {
    uv_loop_t *loop;
    struct mg_store *store;
    struct mg_intake_opts opts;
    const struct mg_mapping_set *mappings; /* borrowed; may be NULL */
    struct mg__intake_item *head, *tail; /* waiting */
    size_t waiting;
    unsigned inflight;   /* batches sent, not yet answered */
    size_t nflying;      /* messages in them */
    bool freeing;
    uv_idle_t kick; /* flushes on the next loop turn: never call back
                       synchronously, and let a burst of reads gather */
    bool kick_active;
    /* counters */
    unsigned long long outcome[MG__INTAKE_NOUTCOMES];
    unsigned long long batches, batch_messages, failed_batches;
};

/* Batches in flight at once. One would serialise everything behind one
 * backend; a few let PostgreSQL use both cores while a commit is flushing.
 * More would only split the same messages into smaller batches. */
#define MAX_INFLIGHT 3

/* One batch statement in flight. */
struct flight {
    struct mg_intake *in;
    struct mg__intake_item *list;
    size_t n;
};

static const char *const outcome_names[MG__INTAKE_NOUTCOMES] = {
    "stored", "duplicate", "duplicate_conflict", "failed", "rejected",
    "not_stored"};

static void flush(struct mg_intake *in);
static bool may_start_batch(const struct mg_intake *in);

static void
item_free(struct mg__intake_item *it)
{
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
    if (in->opts.batch_max <= 0)
        in->opts.batch_max = 256;
    if (in->opts.queue_max <= 0)
        in->opts.queue_max = 8192;
    rc = mg_store_prepare(store, "intake_batch", mg__intake_batch_sql,
                          MG__INTAKE_NPARAMS);
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
    if (rc == MG_OK)
        in->outcome[it->outcome]++;
    else
        in->outcome[MG__INTAKE_NOT_STORED]++;
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
                 struct mg_str frame, mg_intake_done_cb done, void *arg)
{
    struct mg__intake_item *it;
    int rc;

    it = mg_calloc(1, sizeof(*it));
    if (it == NULL)
        return MG_ENOMEM;
    mg_arena_init(&it->arena, frame.len + 4096, 0);
    it->done = done;
    it->arg = arg;
    rc = mg__intake_prepare(it, li, in->mappings, frame);
    if (rc != MG_OK) {
        item_free(it);
        return rc;
    }
    /* Back-pressure beyond the MLLP pause: refused, not stored, no ACK;
     * flush() answers it in queue order so it is still asynchronous. */
    it->busy = in->waiting >= (size_t)in->opts.queue_max || in->freeing;
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
mg_intake_set_mappings(struct mg_intake *in, const struct mg_mapping_set *set)
{
    in->mappings = set;
}

size_t
mg_intake_pending(const struct mg_intake *in)
{
    return in->waiting + in->nflying;
}

/* Hands out the rows of a committed batch. Items the database could not
 * insert because a concurrent message took the same key in the same batch
 * go back to the queue: next time they are ordinary duplicates. */
static void
deliver(struct mg_intake *in, struct mg__intake_item *list, PGresult *res)
{
    struct mg__intake_item *it, *next, *retry = NULL, **retry_tail = &retry;
    int rows = PQntuples(res), row = 0;
    size_t nretry = 0;

    for (it = list; it != NULL; it = next, row++) {
        next = it->next;
        it->next = NULL;
        if (row >= rows) { /* cannot happen: one row per input element */
            finish(in, it, MG_EDB, NULL, 0);
            continue;
        }
        const char *what = PQgetvalue(res, row, 1);
        if (strcmp(what, "retry") == 0) {
            *retry_tail = it;
            retry_tail = &it->next;
            nretry++;
            continue;
        }
        if (strcmp(what, "same") == 0)
            it->outcome = MG__INTAKE_DUPLICATE;
        else if (strcmp(what, "dup") == 0)
            it->outcome = MG__INTAKE_DUPLICATE_CONFLICT;
        if (PQgetisnull(res, row, 2))
            finish(in, it, MG_OK, NULL, 0); /* e.g. MSH-15 = NE */
        else
            finish(in, it, MG_OK, PQgetvalue(res, row, 2),
                   (size_t)PQgetlength(res, row, 2));
    }
    enqueue_front(in, retry, nretry);
}

/* A message whose mapped rows the database refused (a value that breaks a
 * constraint): it is stored as failed and answered AE instead, without the
 * adapters, so a poison message is never left without an answer. */
static bool
demote(struct mg__intake_item *it, PGresult *res)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    char text[96];

    if (it->col[COL_PATIENT] == NULL || it->write_ack.len == 0)
        return false;
    snprintf(text, sizeof(text), "the mapped values could not be written "
             "(SQLSTATE %s)", state ? state : "?");
    it->col[COL_PATIENT] = NULL;
    it->col[COL_SCAN] = NULL;
    it->col[COL_STATUS] = "failed";
    it->col[COL_ACK_CODE] = it->write_code;
    it->col[COL_ACK] = it->write_ack.ptr;
    it->col[COL_ERROR] = mg_arena_strndup(&it->arena, text, strlen(text));
    it->col[COL_ERROR_LOCATION] = NULL;
    it->outcome = MG__INTAKE_FAILED;
    return it->col[COL_ERROR] != NULL;
}

/* A failed batch of several: retry each message alone to find the poison
 * one. A failed single message is answered "not stored", unless only its
 * mapped rows failed (see demote). */
static void
isolate(struct mg_intake *in, struct mg__intake_item *list, size_t n, int rc,
        PGresult *res)
{
    struct mg__intake_item *it;

    if (n == 1 && rc == MG_EDB && demote(list, res)) {
        list->solo = true;
        enqueue_front(in, list, 1);
        return;
    }
    if (n == 1 || rc != MG_EDB) {
        fail_list(in, list, rc);
        return;
    }
    for (it = list; it != NULL; it = it->next)
        it->solo = true;
    enqueue_front(in, list, n);
}

static void
on_batch_done(int rc, PGresult *res, void *ud)
{
    struct flight *f = ud;
    struct mg_intake *in = f->in;
    struct mg__intake_item *list = f->list;
    size_t n = f->n;

    mg_free(f);
    in->inflight--;
    in->nflying -= n;
    if (rc == MG_OK) {
        deliver(in, list, res);
    } else {
        in->failed_batches++;
        if (rc == MG_EDB && res != NULL)
            mg_log(MG_LOG_WARN, NULL, "intake batch of %zu failed: "
                   "SQLSTATE %s", n,
                   PQresultErrorField(res, PG_DIAG_SQLSTATE) ?: "?");
        isolate(in, list, n, rc, res);
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

/* Takes the next batch off the queue: up to batch_max messages, or one
 * when the head is being isolated after a failed batch. */
static size_t
take_batch(struct mg_intake *in, struct mg__intake_item **list)
{
    struct mg__intake_item *it = in->head, *last = NULL;
    size_t n = 0;

    if (it != NULL && (it->solo || it->busy)) {
        last = it;
        n = 1;
    } else {
        while (it != NULL && n < (size_t)in->opts.batch_max && !it->solo &&
               !it->busy) {
            last = it;
            it = it->next;
            n++;
        }
    }
    *list = in->head;
    in->head = last->next;
    if (in->head == NULL)
        in->tail = NULL;
    last->next = NULL;
    in->waiting -= n;
    return n;
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
    return in->inflight < MAX_INFLIGHT &&
           in->waiting >= (size_t)MG_MAX(in->opts.batch_max / 8, 1);
}

static void
flush(struct mg_intake *in)
{
    struct mg__intake_item *list;
    struct mg__intake_batch batch;
    struct flight *f;
    size_t n;
    int rc;

    while (in->head != NULL && may_start_batch(in)) {
        n = take_batch(in, &list);
        if (list->busy) { /* refused at submit: queue was full */
            fail_list(in, list, MG_EBUSY);
            continue;
        }
        f = mg_malloc(sizeof(*f));
        rc = f != NULL ? mg__intake_batch_render(&batch, list) : MG_ENOMEM;
        if (rc == MG_OK)
            rc = mg_store_query(in->store, "intake_batch", NULL,
                                MG__INTAKE_NPARAMS, batch.values, NULL,
                                on_batch_done, f);
        if (f != NULL)
            mg__intake_batch_dispose(&batch);
        if (rc != MG_OK) {
            mg_free(f);
            fail_list(in, list, rc);
            continue;
        }
        f->in = in;
        f->list = list;
        f->n = n;
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
                         "medgate_intake_pending %zu\n",
                         in->batches, in->batch_messages, in->failed_batches,
                         mg_intake_pending(in));
}
