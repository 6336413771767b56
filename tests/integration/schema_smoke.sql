-- Behavioural smoke test of the schema: sample rows through every foreign
-- key, CHECKs that must refuse bad rows, the hl7_messages idempotency rule
-- and the ai_analyses claim/complete/fail cycle.
--
-- Run on a migrated database; everything is rolled back:
--   psql -v ON_ERROR_STOP=1 -f tests/integration/schema_smoke.sql
-- Prints "schema smoke: ok" at the end, or stops at the first failure.

\set QUIET on
\o /dev/null
BEGIN;

-- expect_error(sql, sqlstate): the statement must fail with that SQLSTATE.
CREATE FUNCTION pg_temp.expect_error(stmt text, state text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    BEGIN
        EXECUTE stmt;
    EXCEPTION WHEN OTHERS THEN
        IF SQLSTATE <> state THEN
            RAISE EXCEPTION 'expected % from [%], got % %',
                state, stmt, SQLSTATE, SQLERRM;
        END IF;
        RETURN;
    END;
    RAISE EXCEPTION 'expected % from [%], but it succeeded', state, stmt;
END;
$$;

CREATE FUNCTION pg_temp.check(ok boolean, what text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF ok IS NOT TRUE THEN
        RAISE EXCEPTION 'check failed: %', what;
    END IF;
END;
$$;

INSERT INTO organizations (id, name, identifier) VALUES
    ('00000000-0000-0000-0000-00000000000a', 'Hospital A', 'hosp-a'),
    ('00000000-0000-0000-0000-00000000000b', 'Hospital B', 'hosp-b');

INSERT INTO users (id, organization_id, email, role, first_name, last_name)
VALUES ('00000000-0000-0000-0000-0000000000a1',
        '00000000-0000-0000-0000-00000000000a', 'tech@a.example',
        'technician', 'Tia', 'Tech'),
       ('00000000-0000-0000-0000-0000000000a2',
        '00000000-0000-0000-0000-00000000000a', 'rad@a.example',
        'radiologist', 'Rae', 'Rad'),
       ('00000000-0000-0000-0000-0000000000b1',
        '00000000-0000-0000-0000-00000000000b', 'tech@b.example',
        'technician', 'Ben', 'Tech');

-- Same email in another organization is fine; upper case is not stored.
INSERT INTO users (organization_id, email, role)
VALUES ('00000000-0000-0000-0000-00000000000b', 'rad@a.example', 'radiologist');
SELECT pg_temp.expect_error($$INSERT INTO users (organization_id, email, role)
    VALUES ('00000000-0000-0000-0000-00000000000a', 'rad@a.example',
            'radiologist')$$, '23505');
SELECT pg_temp.expect_error($$INSERT INTO users (organization_id, email, role)
    VALUES ('00000000-0000-0000-0000-00000000000a', 'Big@a.example',
            'admin')$$, '23514');
SELECT pg_temp.expect_error($$INSERT INTO users (organization_id, email, role)
    VALUES ('00000000-0000-0000-0000-00000000000a', 'x@a.example',
            'janitor')$$, '23514');

INSERT INTO api_keys (organization_id, key_id, tag, name, scopes)
VALUES ('00000000-0000-0000-0000-00000000000a', 'k7Q2mX9a',
        decode(repeat('ab', 32), 'hex'), 'ris', '{hl7:write,fhir:read}');
SELECT pg_temp.expect_error($$INSERT INTO api_keys
    (organization_id, key_id, tag, name)
    VALUES ('00000000-0000-0000-0000-00000000000a', 'has_underscore',
            decode(repeat('ab', 32), 'hex'), 'bad')$$, '23514');

INSERT INTO patients (id, organization_id, medical_record_number, first_name,
                      last_name, date_of_birth, gender, source)
VALUES ('00000000-0000-0000-0000-0000000000f1',
        '00000000-0000-0000-0000-00000000000a', 'MRN001', 'Ann', 'Example',
        '1970-01-02', 'female', 'hl7v2');
SELECT pg_temp.check((SELECT patient_number FROM patients
                      WHERE id = '00000000-0000-0000-0000-0000000000f1')
                     ~ '^P[0-9]{10}$', 'patient_number default');
SELECT pg_temp.expect_error($$INSERT INTO patients (organization_id, gender)
    VALUES ('00000000-0000-0000-0000-00000000000a', 'F')$$, '23514');
-- patient_number is unique per organization only.
INSERT INTO patients (organization_id, patient_number)
VALUES ('00000000-0000-0000-0000-00000000000a', 'X1'),
       ('00000000-0000-0000-0000-00000000000b', 'X1');
SELECT pg_temp.expect_error($$INSERT INTO patients
    (organization_id, patient_number)
    VALUES ('00000000-0000-0000-0000-00000000000a', 'X1')$$, '23505');

INSERT INTO patient_identifiers (organization_id, patient_id, system, value,
                                 type_code)
VALUES ('00000000-0000-0000-0000-00000000000a',
        '00000000-0000-0000-0000-0000000000f1', 'urn:oid:1.2.3', 'MRN001', 'MR');
SELECT pg_temp.expect_error($$INSERT INTO patient_identifiers
    (organization_id, patient_id, system, value)
    VALUES ('00000000-0000-0000-0000-00000000000a',
            '00000000-0000-0000-0000-0000000000f1', 'urn:oid:1.2.3',
            'MRN001')$$, '23505');
-- A child row cannot point at another tenant's patient.
SELECT pg_temp.expect_error($$INSERT INTO patient_identifiers
    (organization_id, patient_id, system, value)
    VALUES ('00000000-0000-0000-0000-00000000000b',
            '00000000-0000-0000-0000-0000000000f1', 'urn:oid:1.2.3',
            'MRN009')$$, '23503');

INSERT INTO scans (id, organization_id, patient_id, accession_number,
                   study_instance_uid, scan_type, priority, status,
                   technician_id, source)
VALUES ('00000000-0000-0000-0000-0000000000c1',
        '00000000-0000-0000-0000-00000000000a',
        '00000000-0000-0000-0000-0000000000f1', 'ACC1', '1.2.840.1.1', 'CT',
        'stat', 'ordered', '00000000-0000-0000-0000-0000000000a1', 'hl7v2');
SELECT pg_temp.expect_error($$INSERT INTO scans (organization_id, patient_id,
    priority) VALUES ('00000000-0000-0000-0000-00000000000a',
    '00000000-0000-0000-0000-0000000000f1', 'whenever')$$, '23514');
SELECT pg_temp.expect_error($$INSERT INTO scans (organization_id, patient_id,
    study_instance_uid) VALUES ('00000000-0000-0000-0000-00000000000a',
    '00000000-0000-0000-0000-0000000000f1', '1.2.840.1.1')$$, '23505');
SELECT pg_temp.expect_error($$INSERT INTO scans (organization_id, patient_id,
    study_instance_uid) VALUES ('00000000-0000-0000-0000-00000000000a',
    '00000000-0000-0000-0000-0000000000f1', 'urn:oid:1.2')$$, '23514');
-- Technician of another organization.
SELECT pg_temp.expect_error($$INSERT INTO scans (organization_id, patient_id,
    technician_id) VALUES ('00000000-0000-0000-0000-00000000000a',
    '00000000-0000-0000-0000-0000000000f1',
    '00000000-0000-0000-0000-0000000000b1')$$, '23503');

INSERT INTO scan_series (id, organization_id, scan_id, series_instance_uid,
                         series_number, modality)
VALUES ('00000000-0000-0000-0000-0000000000d1',
        '00000000-0000-0000-0000-00000000000a',
        '00000000-0000-0000-0000-0000000000c1', '1.2.840.1.1.1', 1, 'CT');
INSERT INTO scan_instances (id, organization_id, series_id, sop_instance_uid,
                            sop_class_uid, instance_number)
VALUES ('00000000-0000-0000-0000-0000000000e1',
        '00000000-0000-0000-0000-00000000000a',
        '00000000-0000-0000-0000-0000000000d1', '1.2.840.1.1.1.1',
        '1.2.840.10008.5.1.4.1.1.2', 1);
INSERT INTO scan_files (organization_id, scan_id, instance_id, file_name,
                        storage_uri)
VALUES ('00000000-0000-0000-0000-00000000000a',
        '00000000-0000-0000-0000-0000000000c1',
        '00000000-0000-0000-0000-0000000000e1', 'img1.dcm', 's3://b/img1.dcm');
INSERT INTO scan_queue (organization_id, scan_id, priority_score)
VALUES ('00000000-0000-0000-0000-00000000000a',
        '00000000-0000-0000-0000-0000000000c1', 90);
SELECT pg_temp.expect_error($$INSERT INTO scan_queue (organization_id, scan_id)
    VALUES ('00000000-0000-0000-0000-00000000000a',
            '00000000-0000-0000-0000-0000000000c1')$$, '23505');

-- updated_at follows updates.
UPDATE scans SET created_at = now() - interval '1 day',
                 updated_at = now() - interval '1 day'
 WHERE id = '00000000-0000-0000-0000-0000000000c1';
SELECT pg_temp.check((SELECT updated_at = now() FROM scans
                      WHERE id = '00000000-0000-0000-0000-0000000000c1'),
                     'set_updated_at trigger');

INSERT INTO ai_models (id, name, version, model_type, runner, runner_config)
VALUES ('00000000-0000-0000-0000-000000000101', 'chest-ct', '1.0',
        'detection', 'exec', '{"argv": ["/usr/bin/true"]}');
SELECT pg_temp.expect_error($$INSERT INTO ai_models (name, version,
    model_type, runner) VALUES ('chest-ct', '1.0', 'detection',
    'exec')$$, '23505');

INSERT INTO workflow_rules (id, name, trigger_event, action, model_id,
                            conditions)
VALUES ('00000000-0000-0000-0000-000000000201', 'CT chest to AI',
        'scan_created', 'queue_analysis',
        '00000000-0000-0000-0000-000000000101', '{"scan_type": ["CT"]}');
SELECT pg_temp.expect_error($$INSERT INTO workflow_rules (name,
    trigger_event, action) VALUES ('x', 'scan_created',
    'queue_analysis')$$, '23514');

INSERT INTO ai_analyses (id, organization_id, scan_id, model_id,
                         workflow_rule_id, idempotency_key)
VALUES ('00000000-0000-0000-0000-000000000301',
        '00000000-0000-0000-0000-00000000000a',
        '00000000-0000-0000-0000-0000000000c1',
        '00000000-0000-0000-0000-000000000101',
        '00000000-0000-0000-0000-000000000201', 'rule:1:scan:1');
SELECT pg_temp.expect_error($$INSERT INTO ai_analyses (organization_id,
    scan_id, model_id, idempotency_key) VALUES
    ('00000000-0000-0000-0000-00000000000a',
     '00000000-0000-0000-0000-0000000000c1',
     '00000000-0000-0000-0000-000000000101', 'rule:1:scan:1')$$, '23505');
-- running without a lease is refused.
SELECT pg_temp.expect_error($$UPDATE ai_analyses SET status = 'running'
    WHERE id = '00000000-0000-0000-0000-000000000301'$$, '23514');

-- Claim (DESIGN-NOTES §8), then complete with the fencing token.
WITH c AS (SELECT id FROM ai_analyses
            WHERE queue = 'default' AND status = 'queued' AND run_at <= now()
            ORDER BY priority, run_at, id LIMIT 4 FOR UPDATE SKIP LOCKED)
UPDATE ai_analyses a SET status = 'running', attempts = a.attempts + 1,
       locked_by = 'host:1:boot', locked_until = now() + interval '60 s',
       processing_started_at = now()
  FROM c WHERE a.id = c.id;
SELECT pg_temp.check((SELECT attempts = 1 AND status = 'running'
                      FROM ai_analyses
                      WHERE id = '00000000-0000-0000-0000-000000000301'),
                     'claim');
-- Stale fencing token: no row.
WITH u AS (UPDATE ai_analyses SET status = 'completed', locked_by = NULL,
                  locked_until = NULL
            WHERE id = '00000000-0000-0000-0000-000000000301'
              AND status = 'running' AND locked_by = 'host:1:boot'
              AND attempts = 0 RETURNING 1)
SELECT pg_temp.check((SELECT count(*) = 0 FROM u), 'fencing');
UPDATE ai_analyses SET status = 'completed', locked_by = NULL,
       locked_until = NULL, processing_ended_at = now(),
       confidence_score = 0.9731, overall_result = 'abnormal',
       raw_output = '{"nodules": 1}'
 WHERE id = '00000000-0000-0000-0000-000000000301'
   AND status = 'running' AND locked_by = 'host:1:boot' AND attempts = 1;

INSERT INTO findings (organization_id, analysis_id, scan_id, finding_type,
                      description, coordinates, confidence_percentage,
                      severity, is_primary_finding)
VALUES ('00000000-0000-0000-0000-00000000000a',
        '00000000-0000-0000-0000-000000000301',
        '00000000-0000-0000-0000-0000000000c1', 'nodule', '8 mm nodule',
        '{"bbox": [1, 2, 3, 4]}', 97.31, 'high', true);
SELECT pg_temp.expect_error($$INSERT INTO findings (organization_id,
    analysis_id, scan_id, finding_type, severity) VALUES
    ('00000000-0000-0000-0000-00000000000a',
     '00000000-0000-0000-0000-000000000301',
     '00000000-0000-0000-0000-0000000000c1', 'x', 'severe')$$, '23514');

INSERT INTO report_templates (name, scan_type, template_text)
VALUES ('CT chest', 'CT', 'FINDINGS: {{findings}}');
INSERT INTO reports (organization_id, scan_id, analysis_id, report_type,
                     findings_text, impression, report_status, source,
                     reporting_radiologist_name, external_id)
VALUES ('00000000-0000-0000-0000-00000000000a',
        '00000000-0000-0000-0000-0000000000c1',
        '00000000-0000-0000-0000-000000000301', 'ai', '8 mm nodule',
        'Nodule', 'preliminary', 'ai', NULL, 'ORU-1'),
       ('00000000-0000-0000-0000-00000000000a',
        '00000000-0000-0000-0000-0000000000c1', NULL, 'radiology',
        'Line 1', 'Ok', 'final', 'hl7v2', 'Smith^John', 'ORU-2');
SELECT pg_temp.expect_error($$INSERT INTO reports (organization_id, scan_id,
    report_status) VALUES ('00000000-0000-0000-0000-00000000000a',
    '00000000-0000-0000-0000-0000000000c1', 'P')$$, '23514');

INSERT INTO external_integrations (id, organization_id, name,
                                   integration_type, protocol, endpoint,
                                   auth_type, credentials_ciphertext,
                                   credentials_nonce, credentials_key_version,
                                   remote_application, remote_facility)
VALUES ('00000000-0000-0000-0000-000000000401',
        '00000000-0000-0000-0000-00000000000a', 'ris', 'RIS', 'mllp',
        'ris.a.example:2575', 'none', NULL, NULL, NULL, 'RIS', 'HOSPA');
SELECT pg_temp.expect_error($$INSERT INTO external_integrations
    (organization_id, name, integration_type, protocol,
     credentials_ciphertext) VALUES ('00000000-0000-0000-0000-00000000000a',
     'emr', 'EMR', 'fhir', '\x00')$$, '23514');
SELECT pg_temp.expect_error($$INSERT INTO external_integrations
    (organization_id, name, integration_type, protocol, remote_application,
     remote_facility) VALUES ('00000000-0000-0000-0000-00000000000b', 'ris',
     'RIS', 'mllp', 'RIS', 'HOSPA')$$, '23505');

-- hl7_messages idempotency.
CREATE TEMP TABLE ins (id uuid);
-- The batch writer's statement: two items with the same key in one batch,
-- plus one from another tenant with the same MSH-3/4/10. Only the first
-- of each key is inserted.
WITH i AS (
    INSERT INTO hl7_messages (organization_id, direction, listener,
                              sending_application, sending_facility,
                              message_type, trigger_event, control_id,
                              payload_hash, raw, status, ack_code,
                              ack_payload)
    VALUES ('00000000-0000-0000-0000-00000000000a', 'inbound', 'ris',
            'RIS', 'HOSPA', 'ADT', 'A01', 'MSG0001',
            decode(repeat('01', 32), 'hex'), '\x4d5348', 'processed', 'AA',
            'MSH|...|ACK'),
           ('00000000-0000-0000-0000-00000000000a', 'inbound', 'ris',
            'RIS', 'HOSPA', 'ADT', 'A01', 'MSG0001',
            decode(repeat('01', 32), 'hex'), '\x4d5348', 'processed', 'AA',
            'MSH|...|ACK'),
           ('00000000-0000-0000-0000-00000000000b', 'inbound', 'ris',
            'RIS', 'HOSPA', 'ADT', 'A01', 'MSG0001',
            decode(repeat('01', 32), 'hex'), '\x4d5348', 'processed', 'AA',
            'MSH|...|ACK')
    ON CONFLICT (organization_id, sending_application, sending_facility,
                 control_id)
       WHERE direction = 'inbound' AND duplicate_of IS NULL
         AND status IN ('received', 'processed') AND control_id IS NOT NULL
    DO NOTHING
    RETURNING id)
INSERT INTO ins SELECT id FROM i;
SELECT pg_temp.check((SELECT count(*) = 2 FROM ins), 'one row per key');

-- Unknown sender (organization_id NULL) still deduplicates.
INSERT INTO hl7_messages (direction, sending_application, control_id,
                          payload_hash, raw)
VALUES ('inbound', 'X', 'C1', decode(repeat('02', 32), 'hex'), '\x00')
ON CONFLICT (organization_id, sending_application, sending_facility,
             control_id)
   WHERE direction = 'inbound' AND duplicate_of IS NULL
     AND status IN ('received', 'processed') AND control_id IS NOT NULL
DO NOTHING;
SELECT pg_temp.expect_error($$INSERT INTO hl7_messages (direction,
    sending_application, control_id, payload_hash, raw) VALUES ('inbound',
    'X', 'C1', decode(repeat('03', 32), 'hex'), '\x00')$$, '23505');
-- No MSH-10: never a conflict.
INSERT INTO hl7_messages (direction, payload_hash, raw, status)
VALUES ('inbound', decode(repeat('04', 32), 'hex'), '\x00', 'failed'),
       ('inbound', decode(repeat('04', 32), 'hex'), '\x00', 'failed');
-- Same key, different payload: stored as a duplicate of the key holder.
INSERT INTO hl7_messages (organization_id, direction, sending_application,
                          sending_facility, control_id, payload_hash, raw,
                          status, ack_code, error, duplicate_of)
SELECT organization_id, 'inbound', 'RIS', 'HOSPA', 'MSG0001',
       decode(repeat('05', 32), 'hex'), '\x4d5349', 'duplicate', 'AE',
       'duplicate control id, different payload', id
  FROM hl7_messages
 WHERE organization_id = '00000000-0000-0000-0000-00000000000a'
   AND control_id = 'MSG0001' AND duplicate_of IS NULL;
SELECT pg_temp.expect_error($$INSERT INTO hl7_messages (direction,
    payload_hash, raw, status) VALUES ('inbound',
    decode(repeat('06', 32), 'hex'), '\x00', 'duplicate')$$, '23514');
-- A rejected message does not hold the key: the resend is new.
INSERT INTO hl7_messages (direction, sending_application, control_id,
                          payload_hash, raw, status, ack_code)
VALUES ('inbound', 'Y', 'C9', decode(repeat('07', 32), 'hex'), '\x00',
        'rejected', 'AR'),
       ('inbound', 'Y', 'C9', decode(repeat('07', 32), 'hex'), '\x00',
        'processed', 'AA');
-- Outbound rows never conflict.
INSERT INTO hl7_messages (direction, sending_application, control_id,
                          payload_hash, raw)
VALUES ('outbound', 'MEDGATE', 'O1', decode(repeat('08', 32), 'hex'), '\x00'),
       ('outbound', 'MEDGATE', 'O1', decode(repeat('08', 32), 'hex'), '\x00');

INSERT INTO sync_logs (organization_id, direction, protocol, listener, sender,
                       message_type, trigger_event, external_id,
                       hl7_message_id, entity_type, entity_id, status,
                       correlation_id, committed_at, duration_ms)
SELECT m.organization_id, 'inbound', 'mllp', 'ris', 'RIS^HOSPA', 'ADT',
       'A01', 'MSG0001', m.id, 'patient',
       '00000000-0000-0000-0000-0000000000f1', 'committed', 'c-1', now(), 1.25
  FROM ins JOIN hl7_messages m USING (id);
SELECT pg_temp.expect_error($$INSERT INTO sync_logs (direction, protocol,
    status) VALUES ('inbound', 'smtp', 'received')$$, '23514');

INSERT INTO outbound_deliveries (organization_id, integration_id,
                                 entity_type, entity_id, operation,
                                 idempotency_key, payload, content_type)
VALUES ('00000000-0000-0000-0000-00000000000a',
        '00000000-0000-0000-0000-000000000401', 'report',
        '00000000-0000-0000-0000-0000000000c1', 'hl7v2_message',
        'oru:report:1:v1', 'MSH|^~\&|...', 'x-application/hl7-v2+er7');
SELECT pg_temp.expect_error($$INSERT INTO outbound_deliveries
    (organization_id, integration_id, entity_type, operation,
     idempotency_key) VALUES ('00000000-0000-0000-0000-00000000000a',
     '00000000-0000-0000-0000-000000000401', 'report', 'hl7v2_message',
     'oru:report:1:v1')$$, '23505');
-- An integration of another tenant cannot be used.
SELECT pg_temp.expect_error($$INSERT INTO outbound_deliveries
    (organization_id, integration_id, entity_type, operation,
     idempotency_key) VALUES ('00000000-0000-0000-0000-00000000000b',
     '00000000-0000-0000-0000-000000000401', 'report', 'hl7v2_message',
     'k2')$$, '23503');

INSERT INTO fhir_resources (organization_id, resource_type, id, body,
                            entity_id)
VALUES ('00000000-0000-0000-0000-00000000000a', 'Patient', 'p1',
        '{"resourceType": "Patient", "id": "p1"}',
        '00000000-0000-0000-0000-0000000000f1'),
       ('00000000-0000-0000-0000-00000000000b', 'Patient', 'p1',
        '{"resourceType": "Patient", "id": "p1"}', NULL);
INSERT INTO fhir_resource_history (organization_id, resource_type, id,
                                   version_id, last_updated, body, method)
VALUES ('00000000-0000-0000-0000-00000000000a', 'Patient', 'p1', 1, now(),
        '{"resourceType": "Patient", "id": "p1"}', 'PUT');
INSERT INTO fhir_search_index (organization_id, resource_type, resource_id,
                               param_name, token_system, token_code)
VALUES ('00000000-0000-0000-0000-00000000000a', 'Patient', 'p1',
        'identifier', 'urn:oid:1.2.3', 'MRN001');
SELECT pg_temp.expect_error($$INSERT INTO fhir_resources (organization_id,
    resource_type, id, body) VALUES ('00000000-0000-0000-0000-00000000000a',
    'Patient', 'bad id!', '{}')$$, '23514');
SELECT pg_temp.expect_error($$INSERT INTO fhir_resources (organization_id,
    resource_type, id) VALUES ('00000000-0000-0000-0000-00000000000a',
    'Patient', 'p2')$$, '23514');
SELECT pg_temp.expect_error($$INSERT INTO fhir_search_index (organization_id,
    resource_type, resource_id, param_name) VALUES
    ('00000000-0000-0000-0000-00000000000a', 'Patient', 'p1',
     'identifier')$$, '23514');

INSERT INTO audit_logs (organization_id, user_id, action, resource_type,
                        resource_id, ip_address, chain_id, seq, prev_hash,
                        hash)
VALUES ('00000000-0000-0000-0000-00000000000a',
        '00000000-0000-0000-0000-0000000000a2', 'read', 'Patient', 'p1',
        '192.0.2.1', 'host:1:boot', 1, NULL, decode(repeat('aa', 32), 'hex')),
       ('00000000-0000-0000-0000-00000000000a', NULL, 'search', 'Patient',
        NULL, '2001:db8::1', 'host:1:boot', 2,
        decode(repeat('aa', 32), 'hex'), decode(repeat('bb', 32), 'hex'));
SELECT pg_temp.expect_error($$INSERT INTO audit_logs (action, chain_id, seq,
    prev_hash, hash) VALUES ('read', 'host:1:boot', 2,
    decode(repeat('bb', 32), 'hex'), decode(repeat('cc', 32), 'hex'))$$,
    '23505');
SELECT pg_temp.expect_error($$INSERT INTO audit_logs (action, chain_id, seq,
    hash) VALUES ('read', 'host:1:boot', 3,
    decode(repeat('cc', 32), 'hex'))$$, '23514');
SELECT pg_temp.expect_error($$UPDATE audit_logs SET action = 'x'$$, '42501');

INSERT INTO system_metrics (metric_type, value, labels)
VALUES ('mllp.messages_total', 42, '{"listener": "ris"}');
INSERT INTO system_alerts (alert_type, severity, title, dedup_key)
VALUES ('hl7.duplicate_control_id', 'warning', 'MSH-10 reused', 'dup:RIS');
SELECT pg_temp.expect_error($$INSERT INTO system_alerts (alert_type, title,
    dedup_key) VALUES ('hl7.duplicate_control_id', 'again', 'dup:RIS')$$,
    '23505');
INSERT INTO system_settings (key, value) VALUES ('jobs.lease_seconds', '60');
SELECT pg_temp.expect_error($$INSERT INTO system_settings (key, value)
    VALUES ('jobs.lease_seconds', '30')$$, '23505');
INSERT INTO system_settings (organization_id, key, value)
VALUES ('00000000-0000-0000-0000-00000000000a', 'jobs.lease_seconds', '30');

-- Clinical rows are not deleted from under their children.
SELECT pg_temp.expect_error($$DELETE FROM patients
    WHERE id = '00000000-0000-0000-0000-0000000000f1'$$, '23503');

-- Private catalogue rows (0012): usable by their own organization only; a
-- shared rule names shared rows only; their organization never changes.
INSERT INTO ai_models (id, organization_id, name, version, model_type, runner)
VALUES ('00000000-0000-0000-0000-000000000102',
        '00000000-0000-0000-0000-00000000000b', 'b-private', '1.0',
        'detection', 'exec');
INSERT INTO report_templates (id, organization_id, name, template_text)
VALUES ('00000000-0000-0000-0000-000000000501',
        '00000000-0000-0000-0000-00000000000b', 'B only', 'x');
SELECT pg_temp.expect_error($$INSERT INTO ai_analyses (organization_id,
    scan_id, model_id, idempotency_key) VALUES
    ('00000000-0000-0000-0000-00000000000a',
     '00000000-0000-0000-0000-0000000000c1',
     '00000000-0000-0000-0000-000000000102', 'other-org-model')$$, '23503');
SELECT pg_temp.expect_error($$UPDATE ai_analyses
    SET model_id = '00000000-0000-0000-0000-000000000102'
    WHERE id = '00000000-0000-0000-0000-000000000301'$$, '23503');
SELECT pg_temp.expect_error($$INSERT INTO reports (organization_id, scan_id,
    report_status, template_id) VALUES ('00000000-0000-0000-0000-00000000000a',
    '00000000-0000-0000-0000-0000000000c1', 'final',
    '00000000-0000-0000-0000-000000000501')$$, '23503');
SELECT pg_temp.expect_error($$INSERT INTO workflow_rules (name,
    trigger_event, action, model_id) VALUES ('shared rule, private model',
    'scan_created', 'queue_analysis',
    '00000000-0000-0000-0000-000000000102')$$, '23503');
SELECT pg_temp.expect_error($$INSERT INTO workflow_rules (organization_id,
    name, trigger_event, action, integration_id) VALUES
    ('00000000-0000-0000-0000-00000000000b', 'B results to A''s RIS',
     'report_final', 'deliver', '00000000-0000-0000-0000-000000000401')$$,
    '23503');
SELECT pg_temp.expect_error($$UPDATE ai_models
    SET organization_id = '00000000-0000-0000-0000-00000000000a'
    WHERE id = '00000000-0000-0000-0000-000000000102'$$, '23001');
SELECT pg_temp.expect_error($$UPDATE external_integrations
    SET organization_id = '00000000-0000-0000-0000-00000000000b'
    WHERE id = '00000000-0000-0000-0000-000000000401'$$, '23001');
-- Its own organization's private rows, and shared rows, are fine.
INSERT INTO workflow_rules (organization_id, name, trigger_event, action,
                            model_id)
VALUES ('00000000-0000-0000-0000-00000000000b', 'B private model',
        'scan_created', 'queue_analysis',
        '00000000-0000-0000-0000-000000000102'),
       ('00000000-0000-0000-0000-00000000000b', 'B shared model',
        'scan_created', 'queue_analysis',
        '00000000-0000-0000-0000-000000000101');
INSERT INTO workflow_rules (organization_id, name, trigger_event, action,
                            integration_id)
VALUES ('00000000-0000-0000-0000-00000000000a', 'A results to its RIS',
        'report_final', 'deliver', '00000000-0000-0000-0000-000000000401');
UPDATE ai_models SET description = 'renamed is fine'
 WHERE id = '00000000-0000-0000-0000-000000000102';
-- Nor by deleting a model and inserting another organization's under its
-- id in one statement (a NO ACTION key would allow it), nor a new id.
SELECT pg_temp.expect_error($$WITH d AS (DELETE FROM ai_models
    WHERE id = '00000000-0000-0000-0000-000000000102' RETURNING *)
    INSERT INTO ai_models (id, organization_id, name, version, model_type,
                           runner)
    SELECT id, '00000000-0000-0000-0000-00000000000a', 'taken', '1.0',
           'detection', 'exec' FROM d$$, '23503');
SELECT pg_temp.expect_error($$UPDATE report_templates
    SET id = '00000000-0000-0000-0000-000000000502'
    WHERE id = '00000000-0000-0000-0000-000000000501'$$, '23001');

-- Organizations stay (0010: patients name theirs without a foreign key):
-- not deleted, not renumbered, not truncated; deactivating one is fine.
SELECT pg_temp.expect_error($$DELETE FROM organizations
    WHERE id = '00000000-0000-0000-0000-00000000000b'$$, '23001');
SELECT pg_temp.expect_error($$UPDATE organizations
    SET id = '00000000-0000-0000-0000-00000000000c'
    WHERE id = '00000000-0000-0000-0000-00000000000b'$$, '23001');
SELECT pg_temp.expect_error($$TRUNCATE organizations CASCADE$$, '23001');
UPDATE organizations SET is_active = false, name = 'Hospital B (closed)'
 WHERE id = '00000000-0000-0000-0000-00000000000b';

\o
\pset tuples_only on
SELECT 'schema smoke: ok';

ROLLBACK;
