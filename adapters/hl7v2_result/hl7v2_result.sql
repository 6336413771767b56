-- hl7v2.result: radiology results (ORU^R01). The report is linked to the
-- scan found by accession number, else by Study Instance UID; a result for
-- a study nobody ordered here creates that scan, so no report is lost. The
-- report is matched by its external id (OBR-3, else the accession), so a
-- corrected or final report replaces the preliminary one; one of another
-- patient is refused (MG204), like a study of another patient. OBX ED
-- attachments are kept as data: URIs in scan_files (with size and SHA-256),
-- RP references as their URI. A final, amended or corrected report marks
-- the scan reported and completes its worklist entry.
CREATE OR REPLACE FUNCTION medgate_adapter_hl7v2_result(org uuid,
                                                        message_id uuid,
                                                        input jsonb)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    s jsonb := coalesce(input->'scan', '{}');
    r jsonb := medgate_complete_times(coalesce(input->'report', '{}'),
                                      '{signed_at,effective_at,issued_at}',
                                      medgate_org_timezone(org));
    acc text := NULLIF(s->>'accession_number', '');
    uid text := NULLIF(s->>'study_instance_uid', '');
    pid uuid;
    sid uuid;
    found_by text := 'scan.accession_number';
    done boolean;
    key text;
    seen text;
    mine text;
    was text;
BEGIN
    -- A result is no registration: the RIS's copy of the demographics may
    -- be stale, and a PID that differs from the record is the classic sign
    -- of a wrong-patient report. A known patient (found by MRN, as a
    -- survivor, or by identifier) is not updated, its new identifiers
    -- are still added; only a new one takes the PID's values.
    pid := medgate_patient_upsert(org, input->'patient',
                                  input->'patient_identifiers', true);
    IF acc IS NULL AND uid IS NULL THEN
        RAISE EXCEPTION 'the result names no accession number and no Study '
                        'Instance UID'
            USING ERRCODE = 'MG101', DETAIL = 'scan.accession_number';
    END IF;
    IF acc IS NOT NULL THEN
        PERFORM medgate_lock(org, 'acc', acc);
    ELSE
        PERFORM medgate_lock(org, 'uid', uid); -- a study named by UID only
    END IF;
    IF acc IS NOT NULL THEN
        sid := medgate_scan_of_order(org, acc,
                                     NULLIF(s->>'requested_procedure_id', ''));
    END IF;
    IF sid IS NULL AND uid IS NOT NULL THEN
        SELECT t.id INTO sid FROM scans t
         WHERE t.organization_id = org AND t.study_instance_uid = uid
         ORDER BY t.created_at DESC LIMIT 1;
        found_by := 'scan.study_instance_uid';
    END IF;
    -- An order with its accession in OBR-18, a result without it.
    IF sid IS NULL THEN
        sid := medgate_scan_by_filler(org, pid, s);
        found_by := 'scan.filler_order_number';
    END IF;
    -- A cancel for a study nobody here knows has nothing to cancel: a
    -- scan made for it would be a completed study with a cancelled report.
    IF sid IS NULL AND r->>'report_status' = 'cancelled' THEN
        RAISE EXCEPTION 'the cancelled result names no known study'
            USING ERRCODE = 'MG204',
                  DETAIL = CASE WHEN acc IS NOT NULL
                                THEN 'scan.accession_number'
                                ELSE 'scan.study_instance_uid' END;
    END IF;
    IF sid IS NULL THEN
        INSERT INTO scans (organization_id, patient_id, accession_number,
            study_instance_uid, placer_order_number, filler_order_number,
            requested_procedure_id, status, source)
        VALUES (org, pid, acc, uid, s->>'placer_order_number',
                s->>'filler_order_number',
                NULLIF(s->>'requested_procedure_id', ''), 'completed',
                'hl7v2')
        RETURNING id INTO sid;
    ELSE
        PERFORM medgate_scan_same_patient(sid, pid, found_by);
        -- The scan found by accession gets the message's study UID when it
        -- has none, unless another scan holds that UID: then accession and
        -- UID name two studies, which is for the sender to sort out.
        IF found_by = 'scan.accession_number' AND uid IS NOT NULL
           AND EXISTS (SELECT 1 FROM scans t
                        WHERE t.id = sid AND t.study_instance_uid IS NULL)
           AND EXISTS (SELECT 1 FROM scans t
                        WHERE t.organization_id = org
                          AND t.study_instance_uid = uid) THEN
            RAISE EXCEPTION 'the Study Instance UID is another study''s than '
                            'the accession number''s'
                USING ERRCODE = 'MG204', DETAIL = 'scan.study_instance_uid';
        END IF;
        UPDATE scans SET study_instance_uid = coalesce(study_instance_uid, uid),
               updated_at = now()
         WHERE id = sid AND study_instance_uid IS NULL AND uid IS NOT NULL;
        -- Found by UID (a result that named only its study made it), the
        -- scan gets the accession it lacked, so that later messages naming
        -- only the accession find it, as an order's NW does.
        IF found_by = 'scan.study_instance_uid' AND acc IS NOT NULL THEN
            UPDATE scans SET accession_number = acc, updated_at = now()
             WHERE id = sid AND accession_number IS NULL;
        END IF;
    END IF;
    -- Two groups of one message with one report id (requested procedures
    -- of one order, say): when they carry the same report (one report
    -- repeated per procedure), the first wrote it and this one only closes
    -- its own study; when they differ, one would overwrite the other, so
    -- the message is refused. The ids of the message's groups so far, with
    -- a digest of their report, are kept in a transaction-local setting,
    -- which a refused message's rollback takes back.
    key := coalesce(r->>'external_id', acc, uid);
    mine := key || E'\t' || md5(concat_ws(E'\x1f', r->>'report_status',
                                          r->>'findings_text',
                                          r->>'impression',
                                          r->>'recommendations'));
    seen := current_setting('medgate.result_ids', true);
    IF seen IS NULL OR split_part(seen, E'\n', 1) <> message_id::text THEN
        seen := message_id::text || E'\n';
    END IF;
    IF position(E'\n' || mine || E'\n' IN seen) > 0 THEN
        PERFORM medgate_report_files(org, sid, input->'scan_files');
        SELECT t.report_status INTO was FROM reports t
         WHERE t.organization_id = org AND t.external_id = key;
        PERFORM medgate_study_reported(org, sid, was);
        RETURN;
    END IF;
    IF position(E'\n' || key || E'\t' IN seen) > 0 THEN
        RAISE EXCEPTION 'an earlier group of the message has the same report '
                        'id and another report: each report needs its own '
                        'id (OBR-3)'
            USING ERRCODE = 'MG205', DETAIL = medgate_report_id_at(sid, key, r);
    END IF;
    PERFORM set_config('medgate.result_ids', seen || mine || E'\n', true);
    -- A version that was not applied (a late one) closes nothing: the
    -- stored version (cancelled, say) stands for the study too.
    done := medgate_report_upsert(org, sid, key, r);
    PERFORM medgate_report_files(org, sid, input->'scan_files');
    IF done THEN
        PERFORM medgate_study_reported(org, sid, r->>'report_status');
    END IF;
END $$;

-- A final, amended or corrected report marks its study reported and
-- completes its worklist entry; another status changes nothing.
CREATE OR REPLACE FUNCTION medgate_study_reported(org uuid, sid uuid,
                                                 report_status text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(report_status, '') NOT IN ('final', 'amended', 'corrected')
    THEN
        RETURN;
    END IF;
    UPDATE scans SET status = 'reported', updated_at = now()
     WHERE id = sid AND status NOT IN ('reported', 'cancelled',
                                       'entered_in_error');
    UPDATE scan_queue SET status = 'completed', completed_at = now(),
           updated_at = now()
     WHERE organization_id = org AND scan_id = sid
       AND status IN ('waiting', 'assigned', 'in_progress');
END $$;

-- Writes the report with its external id (OBR-3, else the accession, else
-- the Study Instance UID) for the scan sid. A new version of a known report
-- is applied as a patch: a column the message maps is replaced (null
-- clears it), one it does not carry is kept -- so a PDF-only follow-up
-- keeps the text. But a version with any text is the whole report: its
-- text sections, signer and issue time replace the old ones, and one it
-- lacks is cleared (a correction that drops the recommendations drops
-- them). A known report of another study is refused (MG204), whatever the
-- version (unless it was cancelled: then it moves): the external id is only the sender's number, and a reused or
-- mistyped one must neither file one person's report under another nor
-- take one study's report away to another study. A registered, partial or
-- preliminary version never replaces a final, amended, corrected or
-- cancelled one; a final one never replaces an amended or corrected one
-- unless it was issued later; and a version issued (OBR-22) before the
-- stored one never replaces it: it is a late or resent earlier
-- version. The signing
-- radiologist is linked when a user here has the id the sender gave
-- (users.practitioner_id), and unlinked when a new signer's id is no
-- user's; the name is kept either way.
-- Returns whether the version was applied (false: a late one, ignored).
-- (It returned nothing before: that version goes first.)
-- The target an error about the report id ext points at: OBR-3
-- (report.external_id) when the message gave one, else the study UID or
-- the accession number the id was taken from.
CREATE OR REPLACE FUNCTION medgate_report_id_at(sid uuid, ext text, r jsonb)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN r->>'external_id' IS NOT NULL THEN 'report.external_id'
        WHEN EXISTS (SELECT 1 FROM scans s WHERE s.id = sid
                       AND s.study_instance_uid = ext)
            THEN 'scan.study_instance_uid'
        ELSE 'scan.accession_number' END
$$;

DROP FUNCTION IF EXISTS medgate_report_upsert(uuid, uuid, text, jsonb);
CREATE OR REPLACE FUNCTION medgate_report_upsert(org uuid, sid uuid,
                                                 ext text, r jsonb)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    radiologist uuid;
    owner uuid;
    was_scan uuid;
    was text;
    was_issued timestamptz;
    p jsonb;
BEGIN
    IF r ?| '{findings_text,impression,recommendations}' THEN
        r := '{"findings_text": null, "impression": null,
               "recommendations": null, "reporting_radiologist_name": null,
               "reporting_radiologist_id": null, "signed_at": null,
               "issued_at": null}' || r;
    END IF;
    p := r - 'reporting_radiologist_id' - 'external_id';
    -- Locked, so that no concurrent version moves the report between this
    -- check and the update below (a concurrent insert comes back here).
    SELECT o.patient_id, t.scan_id, t.report_status, t.issued_at
      INTO owner, was_scan, was, was_issued
      FROM reports t JOIN scans o ON o.id = t.scan_id
     WHERE t.organization_id = org AND t.external_id = ext
       FOR UPDATE OF t;
    -- The ERR points at the field the external id came from: OBR-3
    -- (report.external_id), else the accession or the study UID, which
    -- the scan sid was found by or made with.
    IF owner <> (SELECT s.patient_id FROM scans s WHERE s.id = sid) THEN
        RAISE EXCEPTION 'the report''s id names a report of another patient'
            USING ERRCODE = 'MG204', DETAIL = medgate_report_id_at(sid, ext, r);
    END IF;
    -- (A cancelled report may move: the RIS withdrew it from the study it
    -- was misfiled under, and sends it again for the right one.)
    IF was_scan <> sid AND was <> 'cancelled' THEN
        RAISE EXCEPTION 'the report''s id names the report of another study '
                        'of the patient: each study''s report needs its own '
                        'id (OBR-3)'
            USING ERRCODE = 'MG204', DETAIL = medgate_report_id_at(sid, ext, r);
    END IF;
    IF r ? 'report_status'
       AND coalesce(r->>'report_status', 'registered') IN ('registered',
                                                          'partial',
                                                          'preliminary')
       AND was IN ('final', 'amended', 'corrected', 'cancelled') THEN
        RETURN false;
    END IF;
    -- The original final, resent after its correction, must not undo it:
    -- a final replaces an amended or corrected report only when it says
    -- it was issued later (OBR-22; a correction without one is older
    -- than any final that has one).
    IF r->>'report_status' = 'final' AND was IN ('amended', 'corrected')
       AND NOT coalesce((r->>'issued_at')::timestamptz > was_issued,
                        r->>'issued_at' IS NOT NULL) THEN
        RETURN false;
    END IF;
    IF (r->>'issued_at')::timestamptz < was_issued THEN
        RETURN false;
    END IF;
    IF NULLIF(r->>'reporting_radiologist_id', '') IS NOT NULL THEN
        SELECT u.id INTO radiologist FROM users u
         WHERE u.organization_id = org
           AND u.practitioner_id = r->>'reporting_radiologist_id'
         ORDER BY u.created_at LIMIT 1;
    END IF;
    UPDATE reports t SET
        (scan_id, report_type, findings_text, impression, recommendations,
         report_status, reporting_radiologist_id, reporting_radiologist_name,
         signed_at, effective_at, issued_at, updated_at) =
        (SELECT sid, coalesce(x.report_type, 'radiology'), x.findings_text,
            x.impression, x.recommendations,
            coalesce(x.report_status, 'registered'),
            CASE WHEN r ? 'reporting_radiologist_id' THEN radiologist
                 ELSE t.reporting_radiologist_id END,
            x.reporting_radiologist_name, x.signed_at, x.effective_at,
            x.issued_at, now()
           FROM jsonb_populate_record(t, p) x)
     WHERE t.organization_id = org AND t.external_id = ext;
    IF FOUND THEN
        RETURN true;
    END IF;
    INSERT INTO reports (organization_id, scan_id, external_id, report_type,
        findings_text, impression, recommendations, report_status,
        reporting_radiologist_id, reporting_radiologist_name, signed_at,
        effective_at, issued_at, source)
    SELECT org, sid, ext, coalesce(x.report_type, 'radiology'),
        x.findings_text, x.impression, x.recommendations,
        coalesce(x.report_status, 'registered'), radiologist,
        x.reporting_radiologist_name, x.signed_at, x.effective_at,
        x.issued_at, 'hl7v2'
      FROM jsonb_populate_record(NULL::reports, p) x
    ON CONFLICT (organization_id, external_id) DO NOTHING;
    IF NOT FOUND THEN
        -- A concurrent transaction wrote it first: update that one.
        RETURN medgate_report_upsert(org, sid, ext, r);
    END IF;
    RETURN true;
END $$;

-- The MIME type for an HL7 ED/RP type of data (table 0191) and subtype
-- (table 0291).
CREATE OR REPLACE FUNCTION medgate_mime_type(kind text, subtype text)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE upper(coalesce(subtype, ''))
        WHEN 'PDF' THEN 'application/pdf'
        WHEN 'RTF' THEN 'application/rtf'
        WHEN 'XML' THEN 'application/xml'
        WHEN 'HTML' THEN 'text/html'
        WHEN 'JPEG' THEN 'image/jpeg'
        WHEN 'JPG' THEN 'image/jpeg'
        WHEN 'PNG' THEN 'image/png'
        WHEN 'GIF' THEN 'image/gif'
        WHEN 'TIFF' THEN 'image/tiff'
        WHEN 'DICOM' THEN 'application/dicom'
        ELSE CASE upper(coalesce(kind, ''))
            WHEN 'TEXT' THEN 'text/plain'
            WHEN 'TX' THEN 'text/plain'
            ELSE 'application/octet-stream' END
    END
$$;

-- Keeps the attachments of a result (the scan_files group items: OBX
-- value_type ED with its data, or RP with a URI). The same content (or
-- URI) on the same scan is kept once, so a re-sent result adds nothing.
CREATE OR REPLACE FUNCTION medgate_report_files(org uuid, sid uuid,
                                                files jsonb)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    f jsonb;
    n int := 0;
    bytes bytea;
    mime text;
    uri text;
    fname text;
BEGIN
    FOR f IN SELECT * FROM jsonb_array_elements(coalesce(files, '[]')) LOOP
        n := n + 1;
        bytes := NULL;
        IF f->>'value_type' = 'RP' THEN
            uri := NULLIF(f->>'storage_uri', '');
            CONTINUE WHEN uri IS NULL;
            mime := medgate_mime_type(f->>'rp_type_of_data',
                                      f->>'rp_subtype');
        ELSE
            CONTINUE WHEN coalesce(f->>'ed_data', '') = '';
            mime := medgate_mime_type(f->>'ed_type_of_data',
                                      f->>'ed_subtype');
            IF upper(coalesce(f->>'ed_encoding', 'A')) NOT IN ('A', 'HEX',
                                                               'BASE64') THEN
                RAISE EXCEPTION 'attachment %: encoding % is not an HL7 '
                                'encoding (A, Hex or Base64)', n,
                                f->>'ed_encoding'
                    USING ERRCODE = 'MG102',
                          DETAIL = format('scan_files[%s].ed_encoding', n);
            END IF;
            BEGIN
                bytes := CASE upper(coalesce(f->>'ed_encoding', 'A'))
                    WHEN 'BASE64' THEN decode(f->>'ed_data', 'base64')
                    WHEN 'HEX' THEN decode(f->>'ed_data', 'hex')
                    WHEN 'A' THEN convert_to(f->>'ed_data', 'UTF8')
                END;
            EXCEPTION WHEN invalid_parameter_value THEN
                bytes := NULL;
            END;
            IF bytes IS NULL THEN
                RAISE EXCEPTION 'attachment %: the data does not decode as '
                                'encoding %', n, f->>'ed_encoding'
                    USING ERRCODE = 'MG102',
                          DETAIL = format('scan_files[%s].ed_data', n);
            END IF;
            uri := 'data:' || mime || ';base64,'
                   || translate(encode(bytes, 'base64'), E'\n', '');
        END IF;
        fname := coalesce(NULLIF(f->>'observation_text', ''),
                         NULLIF(f->>'observation_code', ''), 'attachment')
                || ' ' || n;
        INSERT INTO scan_files (organization_id, scan_id, file_name,
                                storage_uri, file_type, mime_type,
                                file_size_bytes, sha256)
        SELECT org, sid, left(fname, 200), uri,
               CASE WHEN mime LIKE 'image/%' THEN 'image' ELSE 'document' END,
               mime, octet_length(bytes),
               CASE WHEN bytes IS NOT NULL THEN sha256(bytes) END
         WHERE NOT EXISTS (SELECT 1 FROM scan_files x
                            WHERE x.scan_id = sid
                              AND (x.storage_uri = uri
                                   OR x.sha256 = sha256(bytes)));
    END LOOP;
END $$;
