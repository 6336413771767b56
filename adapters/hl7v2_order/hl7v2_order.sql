-- hl7v2.order: imaging orders (ORM^O01, OMI^O23). The patient is created or
-- updated as for ADT. ORC-1 says what to do with the scan, found by
-- accession number: NW creates it with its worklist entry (a NW for an
-- accession already known updates it, and so does a NW for a study a
-- result created without an accession), XO and SC change it, CA/DC/OC
-- cancel it and its worklist entry (so do the filler's CR, DR and OD). A change or cancel for an accession
-- nobody ordered is refused (MG204: AE 204 at the accession's field), and
-- so is a cancel of a reported study (MG102 at ORC-1).
--
-- `medgate replay` of a message that was accepted before sets
-- medgate.reapply: the message's fields are written again (a mapping fixed
-- since), but not the events it caused then. Later messages may have
-- moved the order on: an old NW must not reopen an order cancelled since
-- (nor add a worklist entry), an old CA must not cancel an order placed
-- again since, and an old status must not override the current one.
CREATE OR REPLACE FUNCTION medgate_adapter_hl7v2_order(org uuid,
                                                       message_id uuid,
                                                       input jsonb)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    s jsonb := medgate_order_scan(input->'scan', org);
    ctl text := upper(coalesce(input->'order'->>'control', ''));
    acc text := s->>'accession_number';
    rp text := NULLIF(s->>'requested_procedure_id', '');
    uid text := NULLIF(s->>'study_instance_uid', '');
    pid uuid;
    sid uuid;
    prio text;
    old_prio text;
    st text;
    was text;
    reapply boolean := coalesce(current_setting('medgate.reapply', true), '')
                       = 'on';
BEGIN
    -- Only a new order (NW) registers the patient: the PID of a change, a
    -- status or a cancel is the RIS's copy from when the order was placed
    -- (IHE RAD-13: not to update the patient), and would undo an ADT
    -- update made since.
    pid := medgate_patient_upsert(org, input->'patient',
                                  input->'patient_identifiers', ctl <> 'NW');
    IF acc IS NULL OR acc = '' THEN
        RAISE EXCEPTION 'the order names no accession number'
            USING ERRCODE = 'MG101', DETAIL = 'scan.accession_number';
    END IF;
    PERFORM medgate_lock(org, 'acc', acc);
    sid := medgate_scan_of_order(org, acc, rp);
    IF sid IS NOT NULL THEN
        SELECT t.status, t.priority INTO was, old_prio FROM scans t
         WHERE t.id = sid;
    -- The order is known, this requested procedure of it is not: a NW
    -- adds its study (below); a change names a procedure never ordered.
    ELSIF ctl <> 'NW' AND EXISTS (SELECT 1 FROM scans t
                                   WHERE t.organization_id = org
                                     AND t.accession_number = acc) THEN
        RAISE EXCEPTION 'order control %: the order with accession number % '
                        'has no requested procedure %', ctl, acc, rp
            USING ERRCODE = 'MG204', DETAIL = 'scan.requested_procedure_id';
    END IF;
    -- A result that named only its study (the UID, no accession) may have
    -- come first and created the scan (medgate_adapter_hl7v2_result). The
    -- order is for that study: it gives the scan its accession, then goes
    -- on as a NW for a known accession. Inserting a scan instead would
    -- break the unique study UID (AE 207), and the order would never
    -- reach the study. A scan of the UID with another accession is another
    -- order's: not taken (the insert below answers AE 207, as documented).
    IF sid IS NULL AND ctl = 'NW' AND uid IS NOT NULL THEN
        SELECT t.id, t.status, t.priority INTO sid, was, old_prio FROM scans t
         WHERE t.organization_id = org AND t.study_instance_uid = uid
           AND t.accession_number IS NULL;
        IF sid IS NOT NULL THEN
            PERFORM medgate_scan_same_patient(sid, pid,
                                              'scan.study_instance_uid');
            UPDATE scans SET accession_number = acc WHERE id = sid;
        END IF;
    END IF;
    -- A change, status or cancel that does not repeat the OBR-18 its NW
    -- had (an SC of ORC alone, a short OBR): found by its filler number.
    IF sid IS NULL AND ctl <> 'NW' THEN
        sid := medgate_scan_by_filler(org, pid, s);
        IF sid IS NOT NULL THEN
            SELECT t.status, t.priority, coalesce(t.accession_number, acc)
              INTO was, old_prio, acc FROM scans t WHERE t.id = sid;
            PERFORM medgate_lock(org, 'acc', acc); -- the order's own key
        END IF;
    END IF;
    IF sid IS NULL AND ctl <> 'NW' THEN
        RAISE EXCEPTION 'order control %: no order with accession number % '
                        'is known', ctl, acc
            USING ERRCODE = 'MG204', DETAIL = 'scan.accession_number';
    END IF;
    IF sid IS NULL THEN
        -- Another requested procedure of a known order is the same
        -- patient's, as the order's own scan would be.
        IF EXISTS (SELECT 1 FROM scans t
                    WHERE t.organization_id = org AND t.accession_number = acc
                      AND t.patient_id <> pid) THEN
            RAISE EXCEPTION 'the accession number names a study of another '
                            'patient'
                USING ERRCODE = 'MG204', DETAIL = 'scan.accession_number';
        END IF;
        PERFORM medgate_scans_order(ARRAY[org], ARRAY[pid], ARRAY[s],
                                    ARRAY[input->'order']);
        RETURN;
    END IF;
    PERFORM medgate_scan_same_patient(sid, pid, 'scan.accession_number');
    -- A study that was done (completed: its images exist; or reported): a
    -- cancel for it contradicts what the department recorded, and would
    -- take it off the readers' worklist. For the sender to sort out. The
    -- ERR points at what asked for the cancel: ORC-1, or ORC-5 of an SC.
    IF NOT reapply AND was IN ('completed', 'reported') AND medgate_order_status(was, ctl,
            input->'order'->>'status') = 'cancelled' THEN
        RAISE EXCEPTION 'order control %: the study with accession number '
                        '% is % already and cannot be cancelled',
                        ctl, acc, was
            USING ERRCODE = 'MG102',
                  DETAIL = CASE WHEN ctl = 'SC' THEN 'order.status'
                                ELSE 'order.control' END;
    END IF;
    -- ORC-9 is the time of the event ORC-1 names: the order's on a NW, but
    -- a change's or a cancel's own time otherwise, which is no order time.
    IF ctl <> 'NW' THEN
        s := s - 'ordered_at';
    END IF;
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
            CASE WHEN reapply THEN t.status
                 ELSE medgate_order_status(t.status, ctl,
                                           input->'order'->>'status') END,
            now()
           FROM jsonb_populate_record(t, s - 'accession_number') r)
     WHERE t.id = sid;
    SELECT t.status, t.priority INTO st, prio FROM scans t WHERE t.id = sid;
    IF st = 'cancelled' THEN
        UPDATE scan_queue SET status = 'cancelled', updated_at = now()
         WHERE organization_id = org AND scan_id = sid
           AND status IN ('waiting', 'assigned', 'in_progress');
    ELSIF st = 'completed' THEN
        UPDATE scans SET completed_at = coalesce(completed_at, now())
         WHERE id = sid;
    END IF;
    -- A new order (NW) for an accession that was cancelled orders it again,
    -- with a new worklist entry.
    IF ctl = 'NW' AND was = 'cancelled' AND NOT reapply THEN
        UPDATE scans SET status = 'ordered', updated_at = now()
         WHERE id = sid;
        INSERT INTO scan_queue (organization_id, scan_id, priority_score)
        VALUES (org, sid, medgate_priority_score(prio));
    -- A scan that a result created has no worklist entry: its order gets
    -- the one it would have had, had it come first -- waiting, or
    -- completed when the study is reported already (as the final report
    -- leaves it). The scan's status stays: the study was done.
    ELSIF ctl = 'NW' AND NOT reapply
          AND st NOT IN ('entered_in_error', 'cancelled')
          AND NOT EXISTS (SELECT 1 FROM scan_queue q
                           WHERE q.organization_id = org
                             AND q.scan_id = sid) THEN
        INSERT INTO scan_queue (organization_id, scan_id, priority_score,
                                status, completed_at)
        VALUES (org, sid, medgate_priority_score(prio),
                CASE WHEN st = 'reported' THEN 'completed' ELSE 'waiting' END,
                CASE WHEN st = 'reported' THEN now() END);
    -- A new priority (XO: now STAT) reorders the open worklist entry. Only
    -- a change of the scan's priority does, so a score set otherwise (by
    -- hand, or later by triage) is not undone by any order message.
    ELSIF prio IS DISTINCT FROM old_prio THEN
        UPDATE scan_queue SET priority_score = medgate_priority_score(prio),
                              updated_at = now()
         WHERE organization_id = org AND scan_id = sid
           AND status IN ('waiting', 'assigned', 'in_progress');
    END IF;
END $$;

-- An order's scan values (the mapped scan.*) ready to write: times
-- completed in the organization's time zone, and a modality that is no
-- DICOM modality (a defined term of (0008,0060)) left out. OBR-24 is the
-- diagnostic service section (HL7 table 0074): RAD, IMG or a site's own
-- word there says nothing about the modality, and must not refuse the
-- order (the column's check would: AE 103) nor be stored as one. The
-- shipped modality table maps table 0074's imaging codes (RUS, NMS...).
CREATE OR REPLACE FUNCTION medgate_order_scan(s jsonb, org uuid)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
BEGIN
    s := medgate_complete_times(coalesce(s, '{}'), '{ordered_at,scheduled_at}',
                                medgate_org_timezone(org));
    IF s->>'scan_type' IS NOT NULL AND NOT s->>'scan_type' = ANY ('{ANN,AR,
        ASMT,AU,BDUS,BI,BMD,CFM,CR,CT,CTPROTOCOL,DG,DMS,DOC,DX,ECG,EEG,EMG,
        EOG,EPS,ES,FID,GM,HC,HD,IO,IOL,IVOCT,IVUS,KER,KO,LEN,LS,M3D,MG,MR,NM,
        OAM,OCT,OP,OPM,OPT,OPTBSV,OPTENF,OPV,OSS,OT,PA,PLAN,POS,PR,PT,PX,REG,
        RESP,RF,RG,RTDOSE,RTIMAGE,RTINTENT,RTPLAN,RTRAD,RTRECORD,RTSEGANN,
        RTSTRUCT,RWV,SEG,SM,SMR,SR,SRF,STAIN,TEXTUREMAP,TG,US,VA,XA,
        XAPROTOCOL,XC}'::text[]) THEN
        s := s - 'scan_type';
    END IF;
    RETURN s;
END $$;

-- The worklist's priority_score of a scan priority: stat first.
CREATE OR REPLACE FUNCTION medgate_priority_score(priority text)
RETURNS numeric LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE priority WHEN 'stat' THEN 4 WHEN 'asap' THEN 3
                         WHEN 'urgent' THEN 2 ELSE 1 END
$$;

-- The scan status after an order message (ORC-1 ctl, ORC-5 order_status).
-- A cancelled or entered-in-error scan stays so (only a new order, NW,
-- orders it again). Cancels (HL7 table 0119): CA, DC and OC, and the
-- filler's answers and its own cancels, CR, DR and OD. The order status
-- of ORC-5 (table 0038) is read with SC (status changed), XO (changed:
-- IHE RAD-13 sends "procedure completed" as XO with CM) and NW: with SC,
-- CA/DC cancel; SC, IP and CM move the scan forward only -- ordered,
-- scheduled, in progress, completed, reported -- so a status message that
-- arrives late (scheduled after in progress, anything after the report)
-- moves nothing back. A NW moves it only for IP and CM (the exam is under
-- way, or done: a RIS that sends its orders when the exam ends); SC is
-- every IHE NW's ORC-5 and leaves a new order ordered. Other codes (hold,
-- release, replace: HD, RL, RP, RU...) keep the status.
CREATE OR REPLACE FUNCTION medgate_order_status(current text, ctl text,
                                                order_status text)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN current IN ('cancelled', 'entered_in_error') THEN current
        WHEN ctl IN ('CA', 'DC', 'OC', 'CR', 'DR', 'OD') THEN 'cancelled'
        WHEN ctl NOT IN ('SC', 'XO', 'NW') THEN current
        WHEN ctl = 'SC' AND upper(coalesce(order_status, '')) IN ('CA', 'DC')
            THEN 'cancelled'
        WHEN ctl = 'NW' AND upper(coalesce(order_status, '')) NOT IN ('IP', 'CM')
            THEN current
        ELSE coalesce((SELECT v.status
                         FROM (VALUES ('SC', 'scheduled', 1),
                                      ('IP', 'in_progress', 2),
                                      ('CM', 'completed', 3)) AS v(code, status, rank)
                        WHERE v.code = upper(order_status)
                          AND v.rank > coalesce(array_position(
                                  ARRAY['ordered', 'scheduled', 'in_progress',
                                        'completed', 'reported'], current) - 1,
                                  0)),
                      current)
    END
$$;

-- New orders for many messages at once: scans[k] (the mapped scan.*
-- values, times completed) becomes a scan of patient pids[k] with its
-- worklist entry, in one statement per table; controls[k] (the mapped
-- order.*) gives its status: ordered, or in progress or completed when
-- the NW's ORC-5 says the exam is under way or done.
DROP FUNCTION IF EXISTS medgate_scans_order(uuid[], uuid[], jsonb[]);
CREATE OR REPLACE FUNCTION medgate_scans_order(orgs uuid[], pids uuid[],
                                               scans jsonb[],
                                               controls jsonb[])
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    WITH made AS (
        INSERT INTO scans (organization_id, patient_id, accession_number,
            placer_order_number, filler_order_number,
            requested_procedure_id, study_instance_uid, procedure_code,
            procedure_code_system, procedure_description, scan_type,
            body_part, clinical_indication, priority, ordered_at,
            scheduled_at, referring_physician_name, referring_physician_id,
            status, completed_at, source)
        SELECT orgs[k], pids[k], r.accession_number, r.placer_order_number,
            r.filler_order_number, r.requested_procedure_id,
            r.study_instance_uid, r.procedure_code, r.procedure_code_system,
            r.procedure_description, r.scan_type, r.body_part,
            r.clinical_indication, coalesce(r.priority, 'routine'),
            r.ordered_at, r.scheduled_at, r.referring_physician_name,
            r.referring_physician_id, st.status,
            CASE WHEN st.status = 'completed' THEN now() END, 'hl7v2'
          FROM generate_subscripts(orgs, 1) AS k,
               jsonb_populate_record(NULL::scans, scans[k]) r,
               medgate_order_status('ordered', 'NW',
                                    controls[k]->>'status') AS st(status)
         ORDER BY k
        RETURNING organization_id, id, priority
    )
    INSERT INTO scan_queue (organization_id, scan_id, priority_score)
    SELECT organization_id, id, medgate_priority_score(priority) FROM made;
END $$;

-- The set-based side (adapter.h, "batch"): of the messages given, writes
-- the plain new orders together -- ORC-1 NW with an accession number that
-- no scan has yet and no Study Instance UID a scan has (a result may have
-- created the study: the per-message function fills that scan in), for a
-- patient medgate_patient_plain accepts -- and returns their positions;
-- the others are left to the per-message function. The intake only passes
-- messages that share no patient, study or identifier with any other
-- message of their commit.
CREATE OR REPLACE FUNCTION medgate_adapter_hl7v2_order_batch(orgs uuid[],
                                                             message_ids uuid[],
                                                             inputs jsonb[])
RETURNS integer[] LANGUAGE plpgsql AS $$
DECLARE
    sel integer[];
    pids uuid[];
BEGIN
    PERFORM medgate_lock_keys(orgs, inputs);
    SELECT array_agg(k ORDER BY k) INTO sel
      FROM generate_subscripts(inputs, 1) AS k,
           LATERAL (SELECT inputs[k]->'scan'->>'accession_number',
                           inputs[k]->'scan'->>'study_instance_uid')
               AS a(acc, uid)
     WHERE upper(inputs[k]->'order'->>'control') = 'NW'
       AND coalesce(a.acc, '') <> ''
       AND medgate_patient_plain(orgs[k],
                                 inputs[k]->'patient'->>'medical_record_number',
                                 inputs[k]->'patient_identifiers')
       AND NOT EXISTS (SELECT 1 FROM scans t
                        WHERE t.organization_id = orgs[k]
                          AND t.accession_number = a.acc)
       AND NOT EXISTS (SELECT 1 FROM scans t
                        WHERE t.organization_id = orgs[k]
                          AND t.study_instance_uid = a.uid);
    IF sel IS NULL THEN
        RETURN '{}';
    END IF;
    pids := medgate_patients_of(orgs, inputs, sel);
    -- The patients' rows are held now. An order for one of them that a
    -- concurrent transaction (another gateway instance) committed while
    -- this waited is visible to this new statement: its accession is known
    -- after all, and the batch goes one by one (the per-message function
    -- updates that scan instead of making a second one).
    IF EXISTS (SELECT 1 FROM unnest(sel) AS k, scans t
                WHERE t.organization_id = orgs[k]
                  AND t.accession_number
                      = inputs[k]->'scan'->>'accession_number') THEN
        RAISE EXCEPTION 'an order of the batch was written concurrently'
            USING ERRCODE = 'MG001';
    END IF;
    PERFORM medgate_scans_order(
        ARRAY(SELECT orgs[k] FROM unnest(sel) k), pids,
        ARRAY(SELECT medgate_order_scan(inputs[k]->'scan', orgs[k])
                FROM unnest(sel) k),
        ARRAY(SELECT inputs[k]->'order' FROM unnest(sel) k));
    RETURN sel;
END $$;
