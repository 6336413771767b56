/* The batch statement and its parameters: one array per column, one
 * element per message, so one prepared statement serves any batch size and
 * a batch costs one round trip and one commit. */
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/compiler.h"
#include "core/error.h"
#include "intake/intake_int.h"

/* The whole batch in one statement, committed on its own (no BEGIN and
 * COMMIT round trips). Steps: `holder` finds the accepted message holding
 * the key, whatever today's verdict on the new one (a repeat of a message
 * accepted before a mapping change still gets its original ACK); `same` is
 * that one when the payload is the same, or a failed/rejected message with
 * the same key and payload (its stored ACK is replayed, nothing is
 * inserted); `live` is the holder when the payload differs (the new one is
 * stored as a duplicate and answered AE 205); `cand` is what this
 * statement stores, where a message that repeats the key of an earlier one
 * of the batch waits for the next batch (then it is an ordinary duplicate):
 * an accepted one would take the key, and failed and rejected rows hold no
 * unique key; `ad` runs the adapters of the accepted ones first, so that
 * `ins` stores each message with its final status (failed when its
 * adapter refused it: it must not hold the key); `logs` writes one
 * sync_logs row per message. A concurrent batch that took a key first
 * makes the INSERT fail on the unique index: the whole statement rolls
 * back, adapters' writes included, and its messages are retried alone. The
 * result has one row per message in input order: (ord, what, ack, id,
 * err_state, err_text, err_target, batched), the err_* columns set when
 * the adapter refused the message (its ack and MSA-1 are then NULL: the
 * AE is built from them and written by mg__intake_fail_sql), batched when
 * a batch function wrote it with others. */
const char mg__intake_batch_sql[] =
    "WITH input AS MATERIALIZED ("
    " SELECT gen_random_uuid() AS new_id, t.* FROM unnest("
    "  $1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],"
    "  $6::text[], $7::text[], $8::text[], $9::text[], $10::text[],"
    "  $11::text[], $12::text[], $13::text[], $14::text[], $15::text[],"
    "  $16::text[], $17::text[], $18::text[], $19::text[], $20::text[],"
    "  $21::text[], $22::text[], $23::text[], $24::text[], $25::bigint[],"
    "  $26::text[], $27::text[], $28::boolean[], $29::inet[])"
    " WITH ORDINALITY AS t(org, listener, app, fac, rapp, rfac, msgdt, mtype,"
    "  trig, struct, ctl, proc, ver, acc_ack, app_ack, hash, raw, charset,"
    "  status, ack_code, ack, dup_ack, error, error_loc, recv_us, adapter,"
    "  input, fast, peer,"
    "  ord)"
    "), holder AS ("
    /* The accepted row holding the key, if any: one probe of the unique
     * index per message. LATERAL ... LIMIT 1 keeps it a probe whatever
     * plan the prepared statement gets. */
    " SELECT i.ord, m.id, m.ack_payload,"
    "  m.payload_hash = decode(i.hash, 'hex') AS same_payload"
    " FROM input i CROSS JOIN LATERAL ("
    "  SELECT m.id, m.ack_payload, m.payload_hash FROM hl7_messages m"
    "  WHERE m.organization_id = i.org AND m.sending_application = i.app"
    "   AND m.sending_facility = i.fac AND m.control_id = i.ctl"
    "   AND m.direction = 'inbound' AND m.duplicate_of IS NULL"
    "   AND m.status IN ('received', 'processed')"
    "   AND i.ctl IS NOT NULL LIMIT 1) m"
    "), same AS ("
    " SELECT ord, id, ack_payload FROM holder WHERE same_payload"
    " UNION ALL"
    /* A repeat of a message stored as failed/rejected: its AE/AR again. */
    " SELECT i.ord, m.id, m.ack_payload FROM input i CROSS JOIN LATERAL ("
    "  SELECT m.id, m.ack_payload FROM hl7_messages m"
    "  WHERE m.organization_id = i.org AND m.sending_application = i.app"
    "   AND m.sending_facility = i.fac AND m.control_id = i.ctl"
    "   AND m.direction = 'inbound' AND m.status IN ('failed', 'rejected')"
    "   AND m.payload_hash = decode(i.hash, 'hex')"
    /* A refusal's AE is written after the commit that stored it (the
     * refusal is located in C), its MSA-1 with it: a crash in between
     * leaves neither, and the repeat is then judged again. */
    "   AND NOT (m.status = 'failed' AND m.ack_code IS NULL"
    "    AND m.message_type IS DISTINCT FROM 'ACK')" /* never answered */
    "  ORDER BY m.received_at LIMIT 1) m"
    " WHERE i.ctl IS NOT NULL"
    "  AND NOT EXISTS (SELECT 1 FROM holder h WHERE h.ord = i.ord)"
    "), live AS ("
    " SELECT ord, id FROM holder WHERE NOT same_payload"
    "), cand AS MATERIALIZED ("
    " SELECT i.*, l.id AS live_id FROM input i LEFT JOIN live l ON l.ord = i.ord"
    " WHERE NOT EXISTS (SELECT 1 FROM same s WHERE s.ord = i.ord)"
    "  AND NOT (i.ctl IS NOT NULL AND i.org IS NOT NULL AND EXISTS ("
    "   SELECT 1 FROM input e WHERE e.ord < i.ord AND e.org = i.org"
    "    AND e.app IS NOT DISTINCT FROM i.app"
    "    AND e.fac IS NOT DISTINCT FROM i.fac AND e.ctl = i.ctl"
    "    AND NOT EXISTS (SELECT 1 FROM same s WHERE s.ord = e.ord)"
    "    AND CASE WHEN i.status IN ('received', 'processed')"
    "     THEN e.status IN ('received', 'processed')"
    "     ELSE i.status IN ('failed', 'rejected') AND e.hash = i.hash END))"
    /* The adapters: one call for the batch with every message to accept in
     * message order (medgate_adapt_batch, adapter.c), which writes those
     * marked fast together and the others one after the other, each in
     * its own subtransaction, and returns the errors instead of raising
     * them. */
    "), ad AS MATERIALIZED ("
    " SELECT s.ords[r.k] AS ord, r.err_state, r.err_text, r.err_target,"
    "  r.batched"
    " FROM (SELECT array_agg(c.ord ORDER BY c.ord) AS ords,"
    "  array_agg(c.adapter ORDER BY c.ord) AS adapters,"
    "  array_agg(c.org ORDER BY c.ord) AS orgs,"
    "  array_agg(c.new_id ORDER BY c.ord) AS ids,"
    "  array_agg(c.input::jsonb ORDER BY c.ord) AS inputs,"
    "  array_agg(c.fast ORDER BY c.ord) AS fast"
    "  FROM cand c WHERE c.live_id IS NULL AND c.status = 'received'"
    "  AND c.adapter IS NOT NULL) s"
    " CROSS JOIN LATERAL medgate_adapt_batch(s.adapters, s.orgs, s.ids,"
    "  s.inputs, s.fast) r"
    " WHERE s.ords IS NOT NULL"
    "), ins AS ("
    " INSERT INTO hl7_messages (id, organization_id, direction, listener,"
    "  sending_application, sending_facility, receiving_application,"
    "  receiving_facility, message_datetime, message_type, trigger_event,"
    "  message_structure, control_id, processing_id, version,"
    "  accept_ack_type, application_ack_type, payload_hash, raw, charset,"
    "  status, ack_code, ack_payload, error, error_location, received_at,"
    "  duplicate_of, peer_address)"
    " SELECT c.new_id, c.org, 'inbound', c.listener, c.app, c.fac, c.rapp,"
    "  c.rfac, c.msgdt, c.mtype, c.trig, c.struct, c.ctl, c.proc, c.ver,"
    "  c.acc_ack, c.app_ack, decode(c.hash, 'hex'), decode(c.raw, 'hex'),"
    "  c.charset,"
    "  CASE WHEN c.live_id IS NOT NULL THEN 'duplicate'"
    "   WHEN a.err_state IS NOT NULL THEN 'failed' ELSE c.status END,"
    "  CASE WHEN a.err_state IS NOT NULL THEN NULL"
    "   WHEN c.live_id IS NULL THEN c.ack_code"
    "   WHEN c.ack_code LIKE 'C%' THEN 'CE' ELSE 'AE' END,"
    "  CASE WHEN c.live_id IS NOT NULL THEN c.dup_ack"
    "   WHEN a.err_state IS NOT NULL THEN NULL ELSE c.ack END,"
    "  CASE WHEN c.live_id IS NOT NULL"
    "   THEN 'duplicate control id with a different payload'"
    "   WHEN a.err_state IS NOT NULL"
    "   THEN a.err_text || ' (SQLSTATE ' || a.err_state || ')'"
    "   ELSE c.error END,"
    "  CASE WHEN c.live_id IS NOT NULL THEN 'MSH^1^10'"
    "   WHEN a.err_state IS NOT NULL THEN NULL ELSE c.error_loc END,"
    "  to_timestamp(c.recv_us / 1e6), c.live_id, c.peer"
    " FROM cand c LEFT JOIN ad a ON a.ord = c.ord"
    " RETURNING id, status, ack_payload"
    "), logs AS ("
    " INSERT INTO sync_logs (organization_id, direction, protocol, listener,"
    "  sender, message_type, trigger_event, external_id, hl7_message_id,"
    "  status, error, received_at, committed_at, duration_ms)"
    " SELECT i.org, 'inbound', 'mllp', i.listener, i.app || '^' || i.fac,"
    "  i.mtype, i.trig, i.ctl, coalesce(n.id, s.id),"
    "  CASE WHEN s.ord IS NOT NULL OR n.status = 'duplicate' THEN 'duplicate'"
    "   WHEN a.err_state IS NOT NULL THEN 'failed'"
    "   WHEN n.status = 'received' THEN 'committed' ELSE n.status END,"
    "  CASE WHEN s.ord IS NOT NULL"
    "   THEN 'repeated message: the original ACK was sent again'"
    "   WHEN n.status = 'duplicate'"
    "   THEN 'duplicate control id with a different payload'"
    "   WHEN a.err_state IS NOT NULL"
    "   THEN a.err_text || ' (SQLSTATE ' || a.err_state || ')'"
    "   ELSE i.error END,"
    "  to_timestamp(i.recv_us / 1e6), clock_timestamp(),"
    "  greatest(0, extract(epoch FROM clock_timestamp()) * 1000"
    "   - i.recv_us / 1e3)"
    " FROM input i LEFT JOIN ins n ON n.id = i.new_id"
    " LEFT JOIN same s ON s.ord = i.ord LEFT JOIN ad a ON a.ord = i.ord"
    " WHERE n.id IS NOT NULL OR s.ord IS NOT NULL"
    ")"
    " SELECT i.ord, CASE WHEN s.ord IS NOT NULL THEN 'same'"
    "  WHEN n.id IS NULL THEN 'retry' WHEN n.status = 'duplicate' THEN 'dup'"
    "  ELSE 'new' END, coalesce(s.ack_payload, n.ack_payload), n.id,"
    "  a.err_state, a.err_text, a.err_target, coalesce(a.batched, false)"
    " FROM input i LEFT JOIN same s ON s.ord = i.ord"
    " LEFT JOIN ins n ON n.id = i.new_id LEFT JOIN ad a ON a.ord = i.ord"
    " ORDER BY i.ord";

/* An adapter refused a message of the batch, which the batch statement
 * stored as failed: the AE built for it (ERR pointing at the field), its
 * error text and location, written after that commit and before the AE
 * is sent. */
const char mg__intake_fail_sql[] =
    "UPDATE hl7_messages m SET ack_code = f.code,"
    " ack_payload = f.ack, error = f.error, error_location = f.loc"
    " FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[],"
    " $5::text[]) AS f(id, code, ack, error, loc) WHERE m.id = f.id"
    /* Only a row still waiting for it: a replay may have taken the
     * message up meanwhile, and its outcome stands. */
    " AND m.status = 'failed' AND m.ack_code IS NULL";

int
mg__intake_array_append(struct mg_buf *b, const char *v, bool first)
{
    int rc = mg_buf_appendc(b, first ? '{' : ',');

    if (rc != MG_OK)
        return rc;
    if (v == NULL)
        return mg_buf_appendz(b, "NULL");
    rc = mg_buf_appendc(b, '"');
    /* Whole runs between the characters that need a backslash: a raw
     * message is about 1,200 hex digits, and one append per character
     * made mg_buf_appendc and mg_buf_reserve the gateway's top functions
     * in perf at 16 connections. */
    while (rc == MG_OK && *v) {
        size_t run = strcspn(v, "\"\\");

        rc = mg_buf_append(b, v, run);
        v += run;
        if (rc == MG_OK && *v) {
            char esc[2] = {'\\', *v++};

            rc = mg_buf_append(b, esc, 2);
        }
    }
    return rc == MG_OK ? mg_buf_appendc(b, '"') : rc;
}

struct owned_key {
    uint64_t key;
    struct mg__intake_item *it;
};

static int
cmp_key(const void *a, const void *b)
{
    uint64_t x = ((const struct owned_key *)a)->key;
    uint64_t y = ((const struct owned_key *)b)->key;

    return x < y ? -1 : x > y;
}

/* COL_FAST for every message of list: "t" when none of its records is
 * named by another message of the list (they may then be written together,
 * in any order), else "f". A message with more records than it could list
 * might share any, so then none is fast. */
static int
mark_fast(struct mg__intake_item *list)
{
    struct owned_key *k;
    size_t n = 0, total = 0;
    bool overflow = false;

    for (struct mg__intake_item *it = list; it; it = it->next) {
        overflow |= it->nkeys > MG__INTAKE_MAX_KEYS;
        total += MG_MIN(it->nkeys, (size_t)MG__INTAKE_MAX_KEYS);
        /* The batch functions take one document a message, not parts. */
        it->col[COL_FAST] = it->col[COL_ADAPTER] != NULL && !it->parts
                                ? "t" : "f";
    }
    if (overflow || list->next == NULL) { /* one message: nothing to share */
        for (struct mg__intake_item *it = list; it; it = it->next)
            it->col[COL_FAST] = "f";
        return MG_OK;
    }
    k = mg_malloc(MG_MAX(total, (size_t)1) * sizeof(*k));
    if (k == NULL)
        return MG_ENOMEM;
    for (struct mg__intake_item *it = list; it; it = it->next)
        for (size_t i = 0; i < it->nkeys; i++)
            k[n++] = (struct owned_key){it->keys[i], it};
    qsort(k, n, sizeof(*k), cmp_key);
    for (size_t i = 1; i < n; i++)
        if (k[i].key == k[i - 1].key && k[i].it != k[i - 1].it)
            k[i].it->col[COL_FAST] = k[i - 1].it->col[COL_FAST] = "f";
    mg_free(k);
    return MG_OK;
}

int
mg__intake_batch_render(struct mg__intake_batch *b,
                        struct mg__intake_item *list)
{
    int rc = mark_fast(list);

    for (int c = 0; c < MG__INTAKE_NPARAMS; c++) {
        mg_buf_init(&b->arrays[c], 0);
        b->values[c] = NULL;
    }
    for (int c = 0; c < MG__INTAKE_NPARAMS && rc == MG_OK; c++) {
        for (const struct mg__intake_item *it = list; it && rc == MG_OK;
             it = it->next)
            rc = mg__intake_array_append(&b->arrays[c], it->col[c],
                                         it == list);
        if (rc == MG_OK)
            rc = mg__intake_array_close(&b->arrays[c], &b->values[c]);
    }
    return rc;
}

int
mg__intake_array_close(struct mg_buf *b, const char **out)
{
    int rc = b->len == 0 ? mg_buf_appendz(b, "{}") : mg_buf_appendc(b, '}');

    *out = rc == MG_OK ? b->ptr : NULL;
    return rc;
}

void
mg__intake_batch_dispose(struct mg__intake_batch *b)
{
    for (int c = 0; c < MG__INTAKE_NPARAMS; c++)
        mg_buf_dispose(&b->arrays[c]);
}
