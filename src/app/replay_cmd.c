/* `medgate replay`: runs stored inbound HL7 v2 messages through the
 * current parser checks and mapping files again. --dry-run shows what
 * would change without writing; otherwise each message's new outcome is
 * written in its own transaction (status, error, location) with a
 * sync_logs row saying it was a replay. No ACK is sent: the sender already
 * had its answer when the message arrived. A blocking libpq connection is
 * fine here: this is a command, not the event loop. */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/adapter.h"
#include "app/app.h"
#include "core/error.h"
#include "intake/intake.h"
#include "mapping/mapping.h"
#include "store/oneshot.h"

struct replay_opts {
    const char *id;    /* one message, or NULL */
    const char *which; /* "failed" or "all" when id is NULL */
    const char *since; /* received_at >= since, or NULL */
    long limit;
    bool dry_run, diff;
};

struct tally {
    long seen, accepted, still_failed, unchanged, superseded, errors;
    long reapplied; /* adapter rows written again */
    long refused;   /* failed or rejected after the run, changed or not */
    long unconfigured; /* read without their listener's configuration */
    bool stop;      /* the connection is gone: the rest is not tried */
};

/* The stored messages a run considers, each with "superseded": for
 * --failed and --all, a failed or rejected message from a sender that later
 * sent the same MSH-10 again, and that either failed or was rejected too, or
 * was accepted. The sender's latest transmission under a control id is what
 * it means now (a corrected resend), so only that one is replayed:
 * replaying the older one first would accept it and leave the correction
 * refused as a repeat. Superseded rows are counted, not replayed, and never
 * take a place under --limit. --id replays the row it names, whatever came
 * after it. A message without an organization (an unknown sender) holds no
 * key, as in the intake. */
#define CANDIDATES_SQL                                                         \
    "WITH c AS (SELECT m.*, $1::uuid IS NULL"                                  \
    "  AND m.status IN ('failed', 'rejected') AND m.control_id IS NOT NULL"    \
    "  AND EXISTS (SELECT 1 FROM hl7_messages n"                               \
    "   WHERE n.organization_id = m.organization_id"                           \
    "    AND n.sending_application IS NOT DISTINCT FROM m.sending_application" \
    "    AND n.sending_facility IS NOT DISTINCT FROM m.sending_facility"       \
    "    AND n.control_id = m.control_id AND n.direction = 'inbound'"          \
    "    AND n.id <> m.id AND n.duplicate_of IS NULL"                          \
    "    AND (n.status IN ('received', 'processed')"                           \
    "     OR (n.status IN ('failed', 'rejected')"                              \
    "      AND (n.received_at, n.id) > (m.received_at, m.id))))"               \
    "  AS superseded"                                                          \
    " FROM hl7_messages m WHERE m.direction = 'inbound'"                       \
    " AND ($1::uuid IS NULL OR m.id = $1::uuid)"                               \
    " AND (CASE WHEN $1::uuid IS NOT NULL THEN m.status <> 'duplicate'"        \
    "      WHEN $2 = 'failed' THEN m.status = 'failed'"                        \
    "      ELSE m.status IN ('received', 'processed', 'failed', 'rejected')"   \
    "      END)"                                                               \
    " AND ($3::timestamptz IS NULL OR m.received_at >= $3::timestamptz))"

static const char *const select_sql =
    CANDIDATES_SQL
    " SELECT id, listener, organization_id, raw, status, coalesce(error, ''),"
    " coalesce(error_location, ''), coalesce(control_id, ''),"
    " coalesce(processed_at::text, ''), charset,"
    /* ISO 8601 in UTC whatever the session's DateStyle and TimeZone:
     * printed for --since. */
    " to_char(received_at AT TIME ZONE 'UTC',"
    "  'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
    /* One more than the limit: whether the run stopped short, and where
     * the next one starts. */
    " FROM c WHERE NOT superseded ORDER BY received_at, id"
    " LIMIT $4::bigint + 1";

static const char *const superseded_sql =
    CANDIDATES_SQL " SELECT count(*) FROM c WHERE superseded AND $4 <> ''";

/* The organization is the one of the sender the message is matched to
 * today: a message rejected because its sender was not configured has
 * none until it is. */
static const char *const update_sql =
    "WITH upd AS (UPDATE hl7_messages SET status = $2,"
    "  error = NULLIF($3, ''), error_location = NULLIF($4, ''),"
    "  organization_id = coalesce(NULLIF($5, '')::uuid, organization_id),"
    /* A changed outcome changes the answer a repeat of the same bytes
     * gets: the AA of a message now accepted, not the AE it had. */
    "  ack_code = CASE WHEN $6 THEN NULLIF($7, '') ELSE ack_code END,"
    "  ack_payload = CASE WHEN $6 THEN $8 ELSE ack_payload END,"
    "  processed_at = now() WHERE id = $1::uuid RETURNING *)"
    " INSERT INTO sync_logs (organization_id, direction, protocol, listener,"
    "  sender, message_type, trigger_event, external_id, hl7_message_id,"
    "  status, error, received_at, committed_at)"
    " SELECT organization_id, 'inbound', 'mllp', listener,"
    "  sending_application || '^' || sending_facility, message_type,"
    "  trigger_event, control_id, id,"
    "  CASE WHEN $2 = 'received' THEN 'processed' ELSE $2 END,"
    "  'replayed: ' || coalesce(NULLIF($3, ''), 'accepted'), now(), now()"
    " FROM upd";

/* What the message's records hold now, one row per column, for --diff:
 * the patient its MRN leads to (the live holder, or the survivor of a
 * merge), the one its other identifiers match (as the adapters find it
 * when the MRN is not typed MR), their identifiers, the scans of its
 * accession or its study UID and the report of its external id (else the
 * accession, else the UID), for every part of a split message. Run before
 * and after the adapter, in the same transaction. A scan is keyed by the
 * message's accession when it holds that one or none yet, so a scan that
 * was found by its UID and gets the accession shows as changed, not new. */
static const char *const records_sql =
    "WITH d AS (SELECT CASE jsonb_typeof($2::jsonb) WHEN 'array' THEN e.v"
    "  ELSE $2::jsonb END AS doc FROM jsonb_array_elements("
    "  CASE jsonb_typeof($2::jsonb) WHEN 'array' THEN $2::jsonb"
    "  ELSE '[null]' END) AS e(v)),"
    " k AS (SELECT doc->'patient'->>'medical_record_number' AS mrn,"
    "  NULLIF(doc->'scan'->>'accession_number', '') AS acc,"
    "  NULLIF(doc->'scan'->>'study_instance_uid', '') AS uid,"
    "  coalesce(doc->'report'->>'external_id',"
    "   NULLIF(doc->'scan'->>'accession_number', ''),"
    "   NULLIF(doc->'scan'->>'study_instance_uid', '')) AS ext,"
    "  doc->'patient_identifiers' AS ids, doc ? 'report' AS reported FROM d),"
    " p AS (SELECT t.* FROM patients t WHERE t.organization_id = $1::uuid"
    "  AND t.id IN (SELECT medgate_patient_find($1::uuid, k.mrn) FROM k"
    "   UNION SELECT medgate_patient_by_identifiers($1::uuid, k.ids, k.mrn)"
    "   FROM k)),"
    " r AS (SELECT 'patients[' || p.medical_record_number || ']' AS item,"
    "  to_jsonb(p) AS j FROM p"
    " UNION SELECT 'patient_identifiers[' || i.system || '|' || i.value"
    "  || ']', to_jsonb(i) FROM patient_identifiers i JOIN p"
    "  ON i.patient_id = p.id"
    " UNION SELECT 'scans[' || CASE WHEN k.acc IS NOT NULL AND"
    "  coalesce(s.accession_number, k.acc) = k.acc THEN k.acc"
    "  ELSE coalesce(s.accession_number, s.study_instance_uid) END || ']',"
    "  to_jsonb(s) FROM scans s"
    "  JOIN k ON s.accession_number = k.acc OR s.study_instance_uid = k.uid"
    "  WHERE s.organization_id = $1::uuid"
    " UNION SELECT 'reports[' || t.external_id || ']', to_jsonb(t)"
    "  FROM reports t JOIN k ON k.reported AND t.external_id = k.ext"
    "  WHERE t.organization_id = $1::uuid)"
    " SELECT r.item || '.' || c.key, coalesce(c.value #>> '{}', 'null')"
    " FROM r, jsonb_each(r.j) c"
    " WHERE c.key NOT IN ('created_at', 'updated_at') ORDER BY r.item || '.' || c.key COLLATE \"C\"";

/* The message as it is now, locked until the end of its transaction: a
 * replay goes ahead only if nobody (another replay) wrote it since it was
 * selected. */
static const char *const lock_sql =
    "SELECT status, coalesce(error, ''), coalesce(processed_at::text, '')"
    " FROM hl7_messages WHERE id = $1::uuid FOR UPDATE";

/* The listener the message came in on, from the configuration; when it is
 * gone from the configuration, one that accepts any sender as the row's
 * organization. */
const struct mg_conf_listener *
mg_app_listener_for(const struct mg_conf *conf, const char *name,
                    const char *org, struct mg_conf_listener *scratch)
{
    const struct mg_conf_listener *li = mg_app_listener(conf, name);

    if (li != NULL)
        return li;
    memset(scratch, 0, sizeof(*scratch));
    scratch->name = (char *)(name != NULL ? name : "");
    scratch->nsenders = 1;
    scratch->senders[0].application = "*";
    scratch->senders[0].facility = "*";
    scratch->senders[0].organization_id = (char *)org;
    return scratch;
}

static void
print_error(char kind, const char *error, const char *location)
{
    if (*location)
        printf("  %c error: %s (at %s)\n", kind, error, location);
    else
        printf("  %c error: %s\n", kind, error);
}

static void
print_change(const struct replay_opts *o, PGresult *r, int row,
             const struct mg_intake_verdict *v)
{
    printf("%s %s: %s -> %s%s%s\n", PQgetvalue(r, row, 0),
           PQgetvalue(r, row, 7), PQgetvalue(r, row, 4), v->status,
           v->error[0] ? ": " : "", v->error);
    if (!o->diff)
        return;
    printf("  - status: %s\n", PQgetvalue(r, row, 4));
    if (*PQgetvalue(r, row, 5))
        print_error('-', PQgetvalue(r, row, 5), PQgetvalue(r, row, 6));
    printf("  + status: %s\n", v->status);
    if (v->error[0])
        print_error('+', v->error, v->location);
}

/* Why a statement failed, for stderr: its SQLSTATE only. PostgreSQL's text
 * (and its DETAIL and CONTEXT) can quote the values of the row, so PHI,
 * and replay's output may end in a journal or a cron mail. */
static const char *
sqlstate(const PGresult *r)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;

    return state ? state : "none (connection lost?)";
}

/* The organization the message is written for: that of the sender it is
 * matched to today, else the one stored with it. */
static const char *
message_org(PGresult *r, int row, const struct mg_intake_verdict *v)
{
    return v->organization_id[0] ? v->organization_id : PQgetvalue(r, row, 2);
}

/* What records_sql gives for the message now, or NULL (said on stderr). */
static PGresult *
records_now(PGconn *c, PGresult *r, int row, const struct mg_intake_verdict *v)
{
    const char *params[2] = {message_org(r, row, v), v->input};
    PGresult *s = PQexecParams(c, records_sql, 2, NULL, params, NULL, NULL, 0);

    if (PQresultStatus(s) == PGRES_TUPLES_OK)
        return s;
    fprintf(stderr, "replay %s: reading its records failed: SQLSTATE %s\n",
            PQgetvalue(r, row, 0), sqlstate(s));
    PQclear(s);
    return NULL;
}

/* One line of print_record_changes, after its header (once, if any). */
static void
record_line(const char **header, char kind, const char *key, const char *a,
            const char *b)
{
    if (*header != NULL) {
        fputs(*header, stdout);
        *header = NULL;
    }
    if (b != NULL)
        printf("  %c %s: %s -> %s\n", kind, key, a, b);
    else
        printf("  %c %s: %s\n", kind, key, a);
}

/* Prints, under --diff, each column of the message's records the adapter
 * changed: "~ scans[ACC9].priority: stat -> urgent", "+ ..." for a value
 * in a new record, "- ..." for one gone; header first, when there is a
 * change and header is not NULL. Both results are sorted by key (bytes). */
static void
print_record_changes(PGresult *before, PGresult *after, const char *header)
{
    int i = 0, j = 0, nb = PQntuples(before), na = PQntuples(after), cmp;

    while (i < nb || j < na) {
        cmp = i == nb ? 1 : j == na ? -1
                          : strcmp(PQgetvalue(before, i, 0),
                                   PQgetvalue(after, j, 0));
        if (cmp < 0) {
            record_line(&header, '-', PQgetvalue(before, i, 0),
                        PQgetvalue(before, i, 1), NULL);
            i++;
        } else if (cmp > 0) {
            if (strcmp(PQgetvalue(after, j, 1), "null") != 0)
                record_line(&header, '+', PQgetvalue(after, j, 0),
                            PQgetvalue(after, j, 1), NULL);
            j++;
        } else {
            if (strcmp(PQgetvalue(before, i, 1), PQgetvalue(after, j, 1)))
                record_line(&header, '~', PQgetvalue(before, i, 0),
                            PQgetvalue(before, i, 1), PQgetvalue(after, j, 1));
            i++;
            j++;
        }
    }
}

/* Runs the message's adapter inside the open transaction; an adapter that
 * refuses it makes the verdict failed, with the error and location the
 * intake would store. MG_OK, or MG_EDB when the call itself failed (the
 * transaction is then aborted). */
static int
run_adapter(PGconn *c, PGresult *r, int row, const struct mg_conf_listener *li,
            const struct mg_mapping_set *set, struct mg_str raw,
            struct mg_intake_verdict *v)
{
    const char *params[4] = {v->adapter, message_org(r, row, v),
                             PQgetvalue(r, row, 0), v->input};
    PGresult *a = PQexecParams(c, "SELECT * FROM medgate_adapt($1, $2::uuid,"
                               " $3::uuid, $4::jsonb)", 4, NULL, params, NULL,
                               NULL, 0);
    int rc = MG_OK;

    if (PQresultStatus(a) != PGRES_TUPLES_OK || PQntuples(a) != 1) {
        fprintf(stderr, "replay %s: adapter call failed: SQLSTATE %s\n",
                PQgetvalue(r, row, 0), sqlstate(a));
        rc = MG_EDB;
    } else if (!PQgetisnull(a, 0, 0)) {
        rc = mg_intake_refusal(li, set, raw, PQgetvalue(a, 0, 0),
                               PQgetvalue(a, 0, 1),
                               PQgetisnull(a, 0, 2) ? NULL
                                                    : PQgetvalue(a, 0, 2),
                               v);
    }
    PQclear(a);
    return rc;
}

/* Records the outcome on the message with a sync_logs row, in the open
 * transaction, and commits. MG_OK; MG_EDUP when a later message under the
 * same key was accepted meanwhile (rolled back, counted as superseded);
 * MG_EDB. */
static int
write_outcome(PGconn *c, const char *id, const char *status, bool changed,
              const struct mg_intake_verdict *v, struct tally *t)
{
    const char *params[8] = {id, status, v->error, v->location,
                             v->organization_id, changed ? "t" : "f",
                             v->ack_code, v->ack};
    PGresult *r;
    const char *state;
    int rc = MG_OK;

    r = PQexecParams(c, update_sql, 8, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        if (state != NULL && strcmp(state, "23505") == 0) {
            printf("  left as it was: a later message from the same sender "
                   "with the same MSH-10 was accepted meanwhile\n");
            t->superseded++;
            rc = MG_EDUP;
        } else {
            fprintf(stderr, "replay %s: recording the outcome failed: "
                    "SQLSTATE %s\n", id, sqlstate(r));
            t->errors++;
            rc = MG_EDB;
        }
        PQclear(r);
        PQclear(PQexec(c, "ROLLBACK"));
        return rc;
    }
    PQclear(r);
    r = PQexec(c, "COMMIT");
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        fprintf(stderr, "replay %s: commit failed: SQLSTATE %s\n", id,
                sqlstate(r));
        t->errors++;
        rc = MG_EDB;
    }
    PQclear(r);
    return rc;
}

/* Why --id replayed nothing: no such inbound message, or a duplicate row
 * (a reused control id, AE 205, or a repeat), which holds no message of
 * its own to replay. It printed only "0 message(s)", as for a typo. */
static void
explain_unreplayed(PGconn *c, const char *id)
{
    const char *params[1] = {id};
    PGresult *r = PQexecParams(c, "SELECT status FROM hl7_messages"
                               " WHERE id = $1::uuid AND direction = 'inbound'",
                               1, NULL, params, NULL, NULL, 0);

    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 0)
        fprintf(stderr, "replay: no inbound message has id %s\n", id);
    else if (PQresultStatus(r) == PGRES_TUPLES_OK &&
             strcmp(PQgetvalue(r, 0, 0), "duplicate") == 0)
        fprintf(stderr, "replay: message %s is a duplicate row: its control "
                "id (MSH-10) was an earlier message's (kept for inspection; "
                "with another payload it was answered AE 205). It is not "
                "replayed: the sender must send it under a new MSH-10\n",
                id);
    PQclear(r);
}

/* Counts the messages the run left out as superseded, and says why. */
static void
count_superseded(PGconn *c, const char *const params[4], struct tally *t)
{
    PGresult *r = PQexecParams(c, superseded_sql, 4, NULL, params, NULL, NULL,
                               0);
    long n;

    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "replay: counting superseded messages failed: "
                "SQLSTATE %s\n", sqlstate(r));
        t->errors++;
    } else if ((n = atol(PQgetvalue(r, 0, 0))) > 0) {
        printf("%ld older message(s) left as they were: the same sender sent "
               "the same MSH-10 again later, and only the latest is replayed "
               "(--id replays one of them)\n", n);
        t->superseded += n;
    }
    PQclear(r);
}

static void
tally_outcome(struct tally *t, bool changed, const char *status)
{
    if (strcmp(status, "received") != 0)
        t->refused++;
    if (!changed)
        t->unchanged++;
    else if (strcmp(status, "received") == 0)
        t->accepted++;
    else
        t->still_failed++;
}

/* Locks the message and checks that it is still as selected (status,
 * error, when a replay last wrote it). MG_EDUP when it changed or went
 * away meanwhile: another replay wrote it, and replaying it again would
 * run its adapter twice. MG_EDB when the lock failed (said on stderr). */
static int
still_as_read(PGconn *c, PGresult *r, int row, struct tally *t)
{
    const char *id = PQgetvalue(r, row, 0);
    PGresult *l = PQexecParams(c, lock_sql, 1, NULL, &id, NULL, NULL, 0);
    int rc = MG_OK;

    if (PQresultStatus(l) != PGRES_TUPLES_OK) {
        fprintf(stderr, "replay %s: locking it failed: SQLSTATE %s\n", id,
                sqlstate(l));
        t->errors++;
        t->stop = PQstatus(c) != CONNECTION_OK;
        rc = MG_EDB;
    } else if (PQntuples(l) != 1 ||
               strcmp(PQgetvalue(l, 0, 0), PQgetvalue(r, row, 4)) != 0 ||
               strcmp(PQgetvalue(l, 0, 1), PQgetvalue(r, row, 5)) != 0 ||
               strcmp(PQgetvalue(l, 0, 2), PQgetvalue(r, row, 8)) != 0) {
        printf("%s %s: left as it was: changed since this run read it "
               "(another replay?)\n", id, PQgetvalue(r, row, 7));
        t->superseded++;
        rc = MG_EDUP;
    }
    PQclear(l);
    return rc;
}

/* A message whose listener is not in the configuration (no --config, or
 * a listener since removed) is judged as if any sender were configured on
 * it; its bytes without MSH-18 are read in the character set stored with
 * it, the one the listener assumed when it came in. Said once a run: the
 * senders' character sets and the ACK mode of the configuration are not
 * known. */
static void
without_listener(PGresult *r, int row, struct mg_conf_listener *scratch,
                 struct tally *t)
{
    if (!PQgetisnull(r, row, 9))
        scratch->default_charset = PQgetvalue(r, row, 9);
    if (t->unconfigured++ == 0)
        fprintf(stderr, "replay: listener %s is not in the configuration "
                "(--config FILE): its messages are judged as from a "
                "configured sender, read in the character set stored with "
                "each\n", *scratch->name ? scratch->name : "(none)");
}

/* Opens the message's transaction. A replay of a message that was
 * accepted before writes its values again, not the events it caused
 * (medgate.reapply, read by the order adapter): later messages may have
 * moved its records on. False when the database is gone: the run stops. */
static bool
begin(PGconn *c, PGresult *r, int row, struct tally *t)
{
    const char *was = PQgetvalue(r, row, 4);
    bool reapply = strcmp(was, "received") == 0 ||
                   strcmp(was, "processed") == 0;
    PGresult *b = PQexec(c, reapply ? "BEGIN; SET LOCAL medgate.reapply = 'on'"
                                    : "BEGIN");
    bool ok = PQresultStatus(b) == PGRES_COMMAND_OK;

    if (!ok) {
        fprintf(stderr, "replay %s: starting its transaction failed: "
                "SQLSTATE %s\n", PQgetvalue(r, row, 0), sqlstate(b));
        t->errors++;
        t->stop = PQstatus(c) != CONNECTION_OK;
        PQclear(PQexec(c, "ROLLBACK"));
    }
    PQclear(b);
    return ok;
}

/* Judges the stored bytes again and runs the adapter in a transaction: a
 * dry run rolls it back; a real run keeps the adapter's rows (a changed
 * mapping re-applied) and records a changed outcome. */
static void
replay_row(PGconn *c, const struct mg_conf *conf,
           const struct mg_mapping_set *set, const struct replay_opts *o,
           PGresult *r, int row, struct tally *t)
{
    const char *id = PQgetvalue(r, row, 0), *was = PQgetvalue(r, row, 4);
    struct mg_conf_listener scratch;
    struct mg_intake_verdict v;
    const struct mg_conf_listener *li;
    unsigned char *raw;
    PGresult *before = NULL, *after = NULL; /* records, for --diff */
    bool changed, adapted = false;
    size_t n = 0;

    t->seen++;
    li = mg_app_listener_for(conf, PQgetvalue(r, row, 1),
                             PQgetvalue(r, row, 2), &scratch);
    if (li == &scratch)
        without_listener(r, row, &scratch, t);
    raw = PQunescapeBytea((const unsigned char *)PQgetvalue(r, row, 3), &n);
    memset(&v, 0, sizeof(v));
    if (raw == NULL ||
        mg_intake_judge(li, set, mg_str_n((const char *)raw, n), &v) !=
            MG_OK) {
        fprintf(stderr, "replay %s: out of memory\n", id);
        t->errors++;
        free(v.input);
        free(v.ack);
        PQfreemem(raw);
        return;
    }
    if (!begin(c, r, row, t))
        goto out_free;
    if (still_as_read(c, r, row, t) != MG_OK)
        goto out_rollback;
    if (v.input != NULL && strcmp(v.status, "received") == 0) {
        if (!*message_org(r, row, &v)) {
            printf("%s %s: left as it was: no organization (its sender is "
                   "not configured on listener %s)\n", id,
                   PQgetvalue(r, row, 7), li->name);
            t->unchanged++;
            t->refused++; /* still rejected */
            goto out_rollback;
        }
        if (o->diff && (before = records_now(c, r, row, &v)) == NULL) {
            t->errors++;
            goto out_rollback;
        }
        if (run_adapter(c, r, row, li, set, mg_str_n((const char *)raw, n),
                        &v) != MG_OK) {
            t->errors++;
            goto out_rollback;
        }
        adapted = strcmp(v.status, "received") == 0;
        if (adapted && o->diff && (after = records_now(c, r, row, &v)) == NULL) {
            t->errors++;
            goto out_rollback;
        }
    }
    /* "processed" is "received" plus later work: the same outcome. */
    changed = strcmp(v.error, PQgetvalue(r, row, 5)) != 0 ||
              strcmp(v.location, PQgetvalue(r, row, 6)) != 0 ||
              (strcmp(v.status, was) != 0 &&
               !(strcmp(was, "processed") == 0 &&
                 strcmp(v.status, "received") == 0));
    if (changed)
        print_change(o, r, row, &v);
    if (after != NULL) {
        char header[200];

        snprintf(header, sizeof(header), "%s %s: %s, its records would "
                 "change:\n", id, PQgetvalue(r, row, 7), was);
        print_record_changes(before, after, changed ? NULL : header);
    }
    PQclear(before);
    PQclear(after);
    before = after = NULL;
    if (o->dry_run || (!changed && !adapted)) {
        tally_outcome(t, changed, v.status);
        t->reapplied += o->dry_run && adapted; /* would be */
        goto out_rollback;
    }
    /* Counted once written: a superseded message is neither accepted nor
     * written again. */
    if (write_outcome(c, id, changed ? v.status : was, changed, &v, t) ==
        MG_OK) {
        tally_outcome(t, changed, v.status);
        t->reapplied += adapted;
    }
    free(v.input);
    free(v.ack);
    PQfreemem(raw);
    return;
out_rollback:
    PQclear(before);
    PQclear(after);
    PQclear(PQexec(c, "ROLLBACK"));
out_free:
    free(v.input);
    free(v.ack);
    PQfreemem(raw);
}

/* Every selected row up to the limit, oldest first; stops when the
 * database connection is gone. The row past the limit says where the next
 * run starts. */
static void
replay_rows(PGconn *c, const struct mg_conf *conf,
            const struct mg_mapping_set *set, const struct replay_opts *o,
            PGresult *r, struct tally *t)
{
    int n = PQntuples(r), i;

    for (i = 0; i < n && i < o->limit && !t->stop; i++) {
        replay_row(c, conf, set, o, r, i, t);
        if (t->stop || PQstatus(c) != CONNECTION_OK) {
            fprintf(stderr, "replay: the database connection was lost; "
                    "%d selected message(s) not tried\n",
                    (int)(n < o->limit ? n : o->limit) - 1 - i);
            t->errors += t->errors == 0;
            t->stop = true;
        }
    }
    if (o->dry_run && i > 1)
        printf("(a dry run judges each message against the records as they "
               "are: the effects of the messages before it in this run are "
               "rolled back, not seen)\n");
    if (n > o->limit && !t->stop)
        printf("stopped at --limit %ld: more messages match; the next was "
               "received at %s (%s): run again with --since '%s'\n",
               o->limit, PQgetvalue(r, n - 1, 10), PQgetvalue(r, n - 1, 0),
               PQgetvalue(r, n - 1, 10));
}

static int
parse_args(int argc, char **argv, struct replay_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->limit = 10000;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--dry-run") == 0)
            o->dry_run = true;
        else if (strcmp(a, "--diff") == 0)
            o->diff = true;
        else if (strcmp(a, "--failed") == 0)
            o->which = "failed";
        else if (strcmp(a, "--all") == 0)
            o->which = "all";
        else if (strcmp(a, "--id") == 0 && v && ++i)
            o->id = v;
        else if (strcmp(a, "--since") == 0 && v && ++i)
            o->since = v;
        else if (strcmp(a, "--limit") == 0 && v && ++i)
            o->limit = atol(v);
        else
            return MG_EINVAL;
    }
    return (o->id != NULL) != (o->which != NULL) && o->limit > 0 ? MG_OK
                                                                 : MG_EINVAL;
}

int
mg_app_replay(const struct mg_conf *conf, int argc, char **argv)
{
    struct mg_mapping_set *set;
    struct replay_opts o;
    struct tally t = {0};
    const char *params[4];
    char limit[24];
    PGresult *r;
    PGconn *c;

    if (parse_args(argc, argv, &o) != MG_OK) {
        fprintf(stderr, "usage: medgate replay (--id UUID | --failed | --all)"
                        " [--since TIME] [--limit N] [--dry-run] [--diff]\n");
        return 2;
    }
    if (mg_adapters_load_set(conf->mappings_dir, &set, stderr) != MG_OK) {
        fprintf(stderr, "replay: the mapping files in %s have errors\n",
                conf->mappings_dir);
        return 3;
    }
    c = mg_store_connect_once(conf->database_url, "replay", stderr);
    if (c == NULL) {
        mg_mapping_set_free(set);
        return 3;
    }
    snprintf(limit, sizeof(limit), "%ld", o.limit);
    params[0] = o.id;
    params[1] = o.which ? o.which : "";
    params[2] = o.since;
    params[3] = limit;
    r = PQexecParams(c, select_sql, 4, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK &&
        strncmp(sqlstate(r), "22", 2) == 0) {
        /* data exception: a value of the command line PostgreSQL cannot
         * read, the user's to fix (its text quotes what was given) */
        fprintf(stderr, "replay: --id must be a UUID and --since a time: %s",
                PQerrorMessage(c));
        PQclear(r);
        PQfinish(c);
        mg_mapping_set_free(set);
        return 2;
    }
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "replay: %s", PQerrorMessage(c));
        t.errors++;
    } else {
        replay_rows(c, conf, set, &o, r, &t);
    }
    PQclear(r);
    if (!t.stop)
        count_superseded(c, params, &t);
    if (o.id != NULL && t.seen == 0 && t.superseded == 0 && t.errors == 0)
        explain_unreplayed(c, o.id);
    PQfinish(c);
    mg_mapping_set_free(set);
    printf("%s %ld message(s): %ld now accepted, %ld failed or rejected, "
           "%ld unchanged, %ld superseded, %ld errors; %ld written again "
           "through their adapter\n",
           o.dry_run ? "would replay" : "replayed", t.seen, t.accepted,
           t.still_failed, t.unchanged, t.superseded, t.errors, t.reapplied);
    if (t.errors)
        return 3;
    return t.refused > 0 || (o.id != NULL && t.seen == 0) ? 1 : 0;
}
