-- hl7v2.order: imaging orders (ORM^O01, OMI^O23). The patient is created or
-- updated as for ADT. ORC-1 says what to do with the scan, found by
-- accession number: NW creates it with its worklist entry (a NW for an
-- accession already known updates it), XO and SC change it, CA/DC/OC
-- cancel it and its worklist entry. A change or cancel for an accession
-- nobody ordered is refused (MG204: AE 204 at the accession's field).
CREATE OR REPLACE FUNCTION medgate_adapter_hl7v2_order(org uuid,
                                                       message_id uuid,
                                                       input jsonb)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    s jsonb := medgate_complete_times(coalesce(input->'scan', '{}'),
                                      '{ordered_at,scheduled_at}');
    ctl text := upper(coalesce(input->'order'->>'control', ''));
    acc text := s->>'accession_number';
    pid uuid;
    sid uuid;
    prio text;
    st text;
    was text;
BEGIN
    pid := medgate_patient_upsert(org, input->'patient',
                                  input->'patient_identifiers');
    IF acc IS NULL OR acc = '' THEN
        RAISE EXCEPTION 'the order names no accession number'
            USING ERRCODE = 'MG101', DETAIL = 'scan.accession_number';
    END IF;
    SELECT t.id, t.status INTO sid, was FROM scans t
     WHERE t.organization_id = org AND t.accession_number = acc
     ORDER BY t.created_at DESC LIMIT 1;
    IF sid IS NULL AND ctl <> 'NW' THEN
        RAISE EXCEPTION 'order control %: no order with accession number % '
                        'is known', ctl, acc
            USING ERRCODE = 'MG204', DETAIL = 'scan.accession_number';
    END IF;
    IF sid IS NULL THEN
        INSERT INTO scans (organization_id, patient_id, accession_number,
            placer_order_number, filler_order_number,
            requested_procedure_id, study_instance_uid, procedure_code,
            procedure_code_system, procedure_description, scan_type,
            body_part, clinical_indication, priority, ordered_at,
            scheduled_at, referring_physician_name, referring_physician_id,
            source)
        SELECT org, pid, acc, r.placer_order_number, r.filler_order_number,
            r.requested_procedure_id, r.study_instance_uid,
            r.procedure_code, r.procedure_code_system,
            r.procedure_description, r.scan_type, r.body_part,
            r.clinical_indication, coalesce(r.priority, 'routine'),
            r.ordered_at, r.scheduled_at, r.referring_physician_name,
            r.referring_physician_id, 'hl7v2'
          FROM jsonb_populate_record(NULL::scans, s) r
        RETURNING id, priority INTO sid, prio;
        INSERT INTO scan_queue (organization_id, scan_id, priority_score)
        VALUES (org, sid, CASE prio WHEN 'stat' THEN 4 WHEN 'asap' THEN 3
                                    WHEN 'urgent' THEN 2 ELSE 1 END);
        RETURN;
    END IF;
    PERFORM medgate_scan_same_patient(sid, pid);
    UPDATE scans t SET
        (placer_order_number, filler_order_number, requested_procedure_id,
         study_instance_uid, procedure_code, procedure_code_system,
         procedure_description, scan_type, body_part, clinical_indication,
         priority, ordered_at, scheduled_at, referring_physician_name,
         referring_physician_id, status, updated_at) =
        (SELECT r.placer_order_number, r.filler_order_number,
            r.requested_procedure_id, r.study_instance_uid,
            r.procedure_code, r.procedure_code_system,
            r.procedure_description, r.scan_type, r.body_part,
            r.clinical_indication, coalesce(r.priority, 'routine'),
            r.ordered_at, r.scheduled_at, r.referring_physician_name,
            r.referring_physician_id,
            medgate_order_status(t.status, ctl, input->'order'->>'status'),
            now()
           FROM jsonb_populate_record(t, s - 'accession_number') r)
     WHERE t.id = sid;
    SELECT t.status, t.priority INTO st, prio FROM scans t WHERE t.id = sid;
    IF st = 'cancelled' THEN
        UPDATE scan_queue SET status = 'cancelled', updated_at = now()
         WHERE organization_id = org AND scan_id = sid
           AND status IN ('waiting', 'assigned');
    ELSIF st = 'completed' THEN
        UPDATE scans SET completed_at = coalesce(completed_at, now())
         WHERE id = sid;
    END IF;
    -- A new order (NW) for an accession that was cancelled orders it again,
    -- with a new worklist entry.
    IF ctl = 'NW' AND was = 'cancelled' THEN
        UPDATE scans SET status = 'ordered', updated_at = now()
         WHERE id = sid;
        INSERT INTO scan_queue (organization_id, scan_id, priority_score)
        VALUES (org, sid, CASE prio WHEN 'stat' THEN 4 WHEN 'asap' THEN 3
                                    WHEN 'urgent' THEN 2 ELSE 1 END);
    END IF;
END $$;

-- The scan status after an order message: cancelled for CA/DC/OC; for SC
-- (status changed) the order status of ORC-5 (HL7 table 0038); otherwise
-- as it was.
CREATE OR REPLACE FUNCTION medgate_order_status(current text, ctl text,
                                                order_status text)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN ctl IN ('CA', 'DC', 'OC') THEN 'cancelled'
        WHEN ctl = 'SC' THEN CASE upper(coalesce(order_status, ''))
            WHEN 'SC' THEN 'scheduled'
            WHEN 'IP' THEN 'in_progress'
            WHEN 'CM' THEN 'completed'
            WHEN 'CA' THEN 'cancelled'
            WHEN 'DC' THEN 'cancelled'
            ELSE current END
        ELSE current
    END
$$;
