/* The batch statement and its parameters: one array per column, one
 * element per message, so one prepared statement serves any batch size and
 * a batch costs one round trip and one commit. */
#include <string.h>

#include "core/error.h"
#include "intake/intake_int.h"

/* Steps: `holder` finds the accepted message holding the key; `same` is
 * that one when the payload is the same, or a failed/rejected message with
 * the same key and payload (its stored ACK is replayed, nothing is
 * inserted); `live` is the holder when the payload differs (the new one is
 * stored as a duplicate and answered AE 205); `ins` stores everything else,
 * where ON CONFLICT catches two messages with one key in one batch (the
 * later one is retried in the next batch and then is an ordinary
 * duplicate); `logs` writes one sync_logs row per message. The result has
 * one row per message in input order: (ord, what, ack). */
const char mg__intake_batch_sql[] =
    "WITH input AS MATERIALIZED ("
    " SELECT gen_random_uuid() AS new_id, t.* FROM unnest("
    "  $1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],"
    "  $6::text[], $7::text[], $8::text[], $9::text[], $10::text[],"
    "  $11::text[], $12::text[], $13::text[], $14::text[], $15::text[],"
    "  $16::text[], $17::text[], $18::text[], $19::text[], $20::text[],"
    "  $21::text[], $22::text[], $23::text[], $24::text[], $25::bigint[],"
    "  $26::text[], $27::text[])"
    " WITH ORDINALITY AS t(org, listener, app, fac, rapp, rfac, msgdt, mtype,"
    "  trig, struct, ctl, proc, ver, acc_ack, app_ack, hash, raw, charset,"
    "  status, ack_code, ack, dup_ack, error, error_loc, recv_us, pt, sc,"
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
    " WHERE i.status = 'received'"
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
    "  ORDER BY m.received_at LIMIT 1) m"
    " WHERE i.ctl IS NOT NULL"
    "  AND NOT EXISTS (SELECT 1 FROM holder h WHERE h.ord = i.ord)"
    "), live AS ("
    " SELECT ord, id FROM holder WHERE NOT same_payload"
"), ins AS ("
    " INSERT INTO hl7_messages (id, organization_id, direction, listener,"
    "  sending_application, sending_facility, receiving_application,"
    "  receiving_facility, message_datetime, message_type, trigger_event,"
    "  message_structure, control_id, processing_id, version,"
    "  accept_ack_type, application_ack_type, payload_hash, raw, charset,"
    "  status, ack_code, ack_payload, error, error_location, received_at,"
    "  duplicate_of)"
    " SELECT i.new_id, i.org, 'inbound', i.listener, i.app, i.fac, i.rapp,"
    "  i.rfac, i.msgdt, i.mtype, i.trig, i.struct, i.ctl, i.proc, i.ver,"
    "  i.acc_ack, i.app_ack, decode(i.hash, 'hex'), decode(i.raw, 'hex'),"
    "  i.charset,"
    "  CASE WHEN l.id IS NULL THEN i.status ELSE 'duplicate' END,"
    "  CASE WHEN l.id IS NULL THEN i.ack_code"
    "   WHEN i.ack_code LIKE 'C%' THEN 'CE' ELSE 'AE' END,"
    "  CASE WHEN l.id IS NULL THEN i.ack ELSE i.dup_ack END,"
    "  CASE WHEN l.id IS NULL THEN i.error"
    "   ELSE 'duplicate control id with a different payload' END,"
    "  CASE WHEN l.id IS NULL THEN i.error_loc ELSE 'MSH^1^10' END,"
    "  to_timestamp(i.recv_us / 1e6), l.id"
    " FROM input i LEFT JOIN live l ON l.ord = i.ord"
    " WHERE NOT EXISTS (SELECT 1 FROM same s WHERE s.ord = i.ord)"
    " ON CONFLICT (organization_id, sending_application, sending_facility,"
    "  control_id) WHERE direction = 'inbound' AND duplicate_of IS NULL"
    "  AND status IN ('received', 'processed') AND control_id IS NOT NULL"
    " DO NOTHING"
    " RETURNING id, status, ack_payload"
    /* The patient adapter: the mapped patient.* targets as a JSON patch
     * (absent key: keep, null: clear), matched by medical record number. */
    " ), pt_in AS ( SELECT i.ord, i.org, i.pt::jsonb AS patch FROM"
    " input i JOIN ins n ON n.id = i.new_id WHERE n.status = 'received'"
    " AND i.pt IS NOT NULL), pt_match AS ( SELECT p.ord, m.id FROM pt_in"
    " p CROSS JOIN LATERAL (SELECT t.id FROM patients t WHERE"
    " t.organization_id = p.org AND t.medical_record_number ="
    " p.patch->>'medical_record_number' AND t.merged_into IS NULL"
    " LIMIT 1) m"
    /* LATERAL ... LIMIT 1: one index probe per message whatever plan the
     * prepared statement gets; the update then goes by primary key. */
    " ), pt_upd AS ( UPDATE patients t SET"
    " (first_name, middle_name, last_name, name_prefix, name_suffix,"
    " date_of_birth, gender, phone, email, address_line1,"
    " address_line2, city, state, postal_code, country,"
    " preferred_language, marital_status, deceased, updated_at) ="
    " (SELECT r.first_name, r.middle_name, r.last_name, r.name_prefix,"
    " r.name_suffix, r.date_of_birth, coalesce(r.gender, 'unknown'),"
    " r.phone, r.email, r.address_line1, r.address_line2, r.city,"
    " r.state, r.postal_code, r.country, r.preferred_language,"
    " r.marital_status, coalesce(r.deceased, false), now() FROM"
    " jsonb_populate_record(t, p.patch) r) FROM pt_match m JOIN pt_in p"
    " ON p.ord = m.ord WHERE t.id = m.id"
    " RETURNING t.id, p.ord), pt_new AS ( INSERT INTO patients"
    " (organization_id, medical_record_number, first_name, middle_name,"
    " last_name, name_prefix, name_suffix, date_of_birth, gender,"
    " phone, email, address_line1, address_line2, city, state,"
    " postal_code, country, preferred_language, marital_status,"
    " deceased, source) SELECT DISTINCT ON (p.org,"
    " r.medical_record_number) p.org, r.medical_record_number,"
    " r.first_name, r.middle_name, r.last_name, r.name_prefix,"
    " r.name_suffix, r.date_of_birth, coalesce(r.gender, 'unknown'),"
    " r.phone, r.email, r.address_line1, r.address_line2, r.city,"
    " r.state, r.postal_code, r.country, r.preferred_language,"
    " r.marital_status, coalesce(r.deceased, false), 'hl7v2' FROM pt_in"
    " p CROSS JOIN LATERAL jsonb_populate_record(NULL::patients,"
    " p.patch) r WHERE NOT EXISTS (SELECT 1 FROM pt_upd u WHERE u.ord ="
    " p.ord) ORDER BY p.org, r.medical_record_number, p.ord DESC ON"
    " CONFLICT (organization_id, medical_record_number) WHERE"
    " merged_into IS NULL AND medical_record_number IS NOT NULL DO"
    " NOTHING RETURNING id, organization_id, medical_record_number),"
    " pt_ids AS ( INSERT INTO patient_identifiers (organization_id,"
    " patient_id, system, value, type_code) SELECT p.org,"
    " coalesce(u.id, n.id), coalesce(NULLIF(x.system, ''),"
    " 'urn:medgate:unqualified'), left(x.value, 256), CASE WHEN"
    " x.type_code ~ '^[A-Za-z0-9_-]{1,20}$' THEN x.type_code END FROM"
    " pt_in p LEFT JOIN pt_upd u ON u.ord = p.ord LEFT JOIN pt_new n ON"
    " n.organization_id = p.org AND n.medical_record_number ="
    " p.patch->>'medical_record_number' CROSS JOIN LATERAL"
    " jsonb_to_recordset(coalesce(p.patch->'identifiers', '[]')) AS"
    " x(system text, value text, type_code text) WHERE coalesce(u.id,"
    " n.id) IS NOT NULL AND coalesce(x.value, '') <> '' ON CONFLICT"
    " (organization_id, system, value) DO NOTHING"
    /* The order adapter: NW creates the scan (matched by accession
     * number) with its worklist entry; other order controls update it, and
     * CA/DC/OC cancel it and its worklist entry. */
    " ), sc_in AS ( SELECT p.ord, p.org, i.sc::jsonb AS patch,"
    " coalesce(u.id, n.id) AS patient_id FROM pt_in p JOIN input i ON"
    " i.ord = p.ord LEFT JOIN pt_upd u ON u.ord = p.ord LEFT JOIN"
    " pt_new n ON n.organization_id = p.org AND n.medical_record_number"
    " = p.patch->>'medical_record_number' WHERE i.sc IS NOT NULL),"
    " sc_match AS ( SELECT s.ord, m.id FROM sc_in s CROSS JOIN LATERAL"
    " (SELECT t.id FROM scans t WHERE t.organization_id = s.org AND"
    " t.accession_number = s.patch->>'accession_number' ORDER BY"
    " t.created_at DESC LIMIT 1) m), sc_upd AS ( UPDATE scans t SET"
    " (placer_order_number, filler_order_number,"
    " requested_procedure_id, study_instance_uid, procedure_code,"
    " procedure_code_system, procedure_description, scan_type,"
    " body_part, clinical_indication, priority, ordered_at,"
    " scheduled_at, referring_physician_name, referring_physician_id,"
    " status, updated_at) = (SELECT r.placer_order_number,"
    " r.filler_order_number, r.requested_procedure_id,"
    " r.study_instance_uid, r.procedure_code, r.procedure_code_system,"
    " r.procedure_description, r.scan_type, r.body_part,"
    " r.clinical_indication, coalesce(r.priority, 'routine'),"
    " r.ordered_at, r.scheduled_at, r.referring_physician_name,"
    " r.referring_physician_id, CASE WHEN s.patch->>'control' IN ('CA',"
    " 'DC', 'OC') THEN 'cancelled' ELSE t.status END, now() FROM"
    " jsonb_populate_record(t, s.patch) r) FROM sc_match m JOIN sc_in s"
    " ON s.ord = m.ord WHERE t.id = m.id RETURNING t.id, t.status,"
    " s.ord), sc_new AS ( INSERT INTO scans (organization_id,"
    " patient_id, accession_number, placer_order_number,"
    " filler_order_number, requested_procedure_id, study_instance_uid,"
    " procedure_code, procedure_code_system, procedure_description,"
    " scan_type, body_part, clinical_indication, priority, ordered_at,"
    " scheduled_at, referring_physician_name, referring_physician_id,"
    " source) SELECT DISTINCT ON (s.org, r.accession_number) s.org,"
    " s.patient_id, r.accession_number, r.placer_order_number,"
    " r.filler_order_number, r.requested_procedure_id,"
    " r.study_instance_uid, r.procedure_code, r.procedure_code_system,"
    " r.procedure_description, r.scan_type, r.body_part,"
    " r.clinical_indication, coalesce(r.priority, 'routine'),"
    " r.ordered_at, r.scheduled_at, r.referring_physician_name,"
    " r.referring_physician_id, 'hl7v2' FROM sc_in s CROSS JOIN LATERAL"
    " jsonb_populate_record(NULL::scans, s.patch) r WHERE"
    " s.patch->>'control' = 'NW' AND NOT EXISTS (SELECT 1 FROM sc_match"
    " m WHERE m.ord = s.ord) ORDER BY s.org, r.accession_number, s.ord"
    " DESC RETURNING id, organization_id, priority), sc_queue AS ("
    " INSERT INTO scan_queue (organization_id, scan_id, priority_score)"
    " SELECT organization_id, id, CASE priority WHEN 'stat' THEN 4 WHEN"
    " 'asap' THEN 3 WHEN 'urgent' THEN 2 ELSE 1 END FROM sc_new),"
    " sc_cancel AS ( UPDATE scan_queue q SET status = 'cancelled',"
    " updated_at = now() FROM sc_upd u WHERE q.scan_id = u.id AND"
    " u.status = 'cancelled' AND q.status IN ('waiting', 'assigned')"
    "), logs AS ("
    " INSERT INTO sync_logs (organization_id, direction, protocol, listener,"
    "  sender, message_type, trigger_event, external_id, hl7_message_id,"
    "  status, error, received_at, committed_at, duration_ms)"
    " SELECT i.org, 'inbound', 'mllp', i.listener, i.app || '^' || i.fac,"
    "  i.mtype, i.trig, i.ctl, coalesce(n.id, s.id),"
    "  CASE WHEN s.ord IS NOT NULL OR n.status = 'duplicate' THEN 'duplicate'"
    "   WHEN n.status = 'received' THEN 'committed' ELSE n.status END,"
    "  CASE WHEN s.ord IS NOT NULL"
    "   THEN 'repeated message: the original ACK was sent again'"
    "   WHEN n.status = 'duplicate'"
    "   THEN 'duplicate control id with a different payload'"
    "   ELSE i.error END,"
    "  to_timestamp(i.recv_us / 1e6), clock_timestamp(),"
    "  greatest(0, extract(epoch FROM clock_timestamp()) * 1000"
    "   - i.recv_us / 1e3)"
    " FROM input i LEFT JOIN ins n ON n.id = i.new_id"
    " LEFT JOIN same s ON s.ord = i.ord"
    " WHERE n.id IS NOT NULL OR s.ord IS NOT NULL"
    ")"
    " SELECT i.ord, CASE WHEN s.ord IS NOT NULL THEN 'same'"
    "  WHEN n.id IS NULL THEN 'retry' WHEN n.status = 'duplicate' THEN 'dup'"
    "  ELSE 'new' END, coalesce(s.ack_payload, n.ack_payload)"
    " FROM input i LEFT JOIN same s ON s.ord = i.ord"
    " LEFT JOIN ins n ON n.id = i.new_id ORDER BY i.ord";

/* Appends one element of a PostgreSQL array literal. */
static int
append_element(struct mg_buf *b, const char *v, bool first)
{
    int rc = first ? MG_OK : mg_buf_appendc(b, ',');

    if (rc != MG_OK)
        return rc;
    if (v == NULL)
        return mg_buf_appendz(b, "NULL");
    rc = mg_buf_appendc(b, '"');
    for (const char *p = v; rc == MG_OK && *p; p++) {
        if (*p == '"' || *p == '\\')
            rc = mg_buf_appendc(b, '\\');
        if (rc == MG_OK)
            rc = mg_buf_appendc(b, *p);
    }
    return rc == MG_OK ? mg_buf_appendc(b, '"') : rc;
}

int
mg__intake_batch_render(struct mg__intake_batch *b,
                        const struct mg__intake_item *list)
{
    int rc = MG_OK;

    for (int c = 0; c < MG__INTAKE_NPARAMS; c++) {
        mg_buf_init(&b->arrays[c], 0);
        b->values[c] = NULL;
    }
    for (int c = 0; c < MG__INTAKE_NPARAMS && rc == MG_OK; c++) {
        rc = mg_buf_appendc(&b->arrays[c], '{');
        for (const struct mg__intake_item *it = list; it && rc == MG_OK;
             it = it->next)
            rc = append_element(&b->arrays[c], it->col[c], it == list);
        if (rc == MG_OK)
            rc = mg_buf_appendc(&b->arrays[c], '}');
        b->values[c] = b->arrays[c].ptr;
    }
    return rc;
}

void
mg__intake_batch_dispose(struct mg__intake_batch *b)
{
    for (int c = 0; c < MG__INTAKE_NPARAMS; c++)
        mg_buf_dispose(&b->arrays[c]);
}
