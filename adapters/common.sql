-- Shared by the adapters: finding and writing a patient. Installed by
-- `medgate migrate` before the adapters' own functions (see adapter.h).
--
-- Errors an adapter raises for the sender to fix use SQLSTATE class MG:
-- MG101 a value the adapter needs is missing, MG102 a value is malformed,
-- MG204 the message names a record that is not known (or another
-- patient's or study's), MG205 it names one record twice. The DETAIL is the
-- mapping target that carried the value ("scan.accession_number"), which
-- the intake turns into the HL7 location of the ERR segment.

-- Serialises the transactions, of every gateway instance sharing the
-- database, that write the record of one key: the patient of an MRN
-- (kind 'mrn'), the patient holding an identifier ('id': system|value;
-- a patient may be found by one), the study of an accession number
-- ('acc'). Row locks cannot
-- do it: the row may not exist yet, or exist only as a merged record,
-- which the unique MRN index leaves out -- an A40 for an MRN nobody held
-- and an order for that MRN on another instance each saw no patient, and
-- two live records of one person were made. Held until the transaction
-- ends. A transaction that takes several takes them in key order
-- (medgate_lock_keys), so that two batches never wait on each other.
CREATE OR REPLACE FUNCTION medgate_lock_key(org uuid, kind text, key text)
RETURNS bigint LANGUAGE sql IMMUTABLE AS $$
    SELECT hashtextextended(kind || '/' || org::text || '/' || key, 0)
$$;

CREATE OR REPLACE FUNCTION medgate_lock(org uuid, kind text, key text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(key, '') <> '' THEN
        PERFORM pg_advisory_xact_lock(medgate_lock_key(org, kind, key));
    END IF;
END $$;

-- The MRN locks, then the identifier locks, then the accession locks, of
-- a batch's messages (or of one message), each kind in key order, as one
-- message takes them.
CREATE OR REPLACE FUNCTION medgate_lock_keys(orgs uuid[], inputs jsonb[])
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(x.key)
       FROM (SELECT DISTINCT c.kind, medgate_lock_key(orgs[k], c.kind, c.v) AS key
               FROM generate_subscripts(inputs, 1) AS k,
                    LATERAL (VALUES
                        ('mrn', inputs[k]->'patient'->>'medical_record_number'),
                        ('mrn', inputs[k]->'merge'->>'prior_medical_record_number'),
                        ('acc', inputs[k]->'scan'->>'accession_number')
                     UNION ALL
                     -- (medgate_identifier_lock_keys: which, and how many)
                     SELECT 'id', v FROM medgate_identifier_lock_keys(
                         inputs[k]->'patient_identifiers') AS v
                     UNION ALL
                     -- An A40's MRG-1, whose record may be found by one
                     -- of them (medgate_patient_merge): the same rule.
                     SELECT 'id', v FROM medgate_identifier_lock_keys(
                         inputs[k]->'merge_prior_identifiers') AS v)
                        AS c(kind, v)
              WHERE coalesce(c.v, '') <> '') AS x
      ORDER BY x.kind DESC, x.key; -- 'mrn', then 'id', then 'acc'
END $$;

-- The time zone in which the organization's HL7 times without an offset
-- are read (organizations.timezone, checked when written: migration 0014).
CREATE OR REPLACE FUNCTION medgate_org_timezone(org uuid)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT o.timezone FROM organizations o WHERE o.id = org),
                    'UTC')
$$;

-- A patch whose times are made instants for timestamptz columns. HL7 lets
-- a sender give only a year or a month (hl7_ts keeps that precision:
-- "2022" or "2022-03"), which PostgreSQL cannot read as a timestamp; they
-- become the first instant of that year or month. A time without an offset
-- (most HL7 senders give none) is a wall-clock time in time zone tz, the
-- organization's: read in the session's zone instead, it would depend on
-- the database server's setting. keys are the patch's timestamp columns.
DROP FUNCTION IF EXISTS medgate_complete_times(jsonb, text[]);
CREATE OR REPLACE FUNCTION medgate_complete_times(p jsonb, keys text[],
                                                  tz text)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    k text;
    v text;
BEGIN
    FOREACH k IN ARRAY keys LOOP
        v := p->>k;
        CONTINUE WHEN v IS NULL;
        IF v ~ '^\d{4}$' THEN
            v := v || '-01-01';
        ELSIF v ~ '^\d{4}-\d{2}$' THEN
            v := v || '-01';
        END IF;
        IF v !~ '[T ][0-9:.]*(Z|[+-]\d{2}(:?\d{2})?)$' THEN
            p := jsonb_set(p, ARRAY[k], to_jsonb(v::timestamp AT TIME ZONE tz));
        END IF;
    END LOOP;
    RETURN p;
END $$;

-- A patient patch (the mapped patient.* targets) ready to apply: death
-- times made instants in time zone tz, and a death time (PID-29) that
-- comes without PID-30 (no deceased key) marks the patient deceased -- on
-- an update as on a create, where the patient's deceased = false would
-- otherwise break the check "deceased OR deceased_at IS NULL". For the
-- same check, PID-30 N without PID-29 clears a stored death time: the
-- patient is not deceased.
-- The name and the address are each one value (HL7 v2: a field sent is
-- the field's whole value): when a message gives any part of one, the
-- parts it leaves out are cleared, so JONES^MARY after
-- SMITH^JOHN^QUINCY^JR does not become Mary Quincy Jones Jr, and a new
-- street does not keep the old flat number. A message that gives no part
-- of one leaves it as it is.
DROP FUNCTION IF EXISTS medgate_patient_patch(jsonb);
CREATE OR REPLACE FUNCTION medgate_patient_patch(p jsonb, tz text)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF p ?| '{last_name,first_name,middle_name,name_suffix,name_prefix}' THEN
        p := '{"last_name": null, "first_name": null, "middle_name": null,
               "name_suffix": null, "name_prefix": null}'::jsonb || p;
    END IF;
    IF p ?| '{address_line1,address_line2,city,state,postal_code,country}' THEN
        p := '{"address_line1": null, "address_line2": null, "city": null,
               "state": null, "postal_code": null, "country": null}'::jsonb
             || p;
    END IF;
    -- PID-30 is Y or N (table 0136); a sender's U (unknown) or any other
    -- word says nothing, and leaves the column as it is rather than refuse
    -- the registration over a field this cannot read.
    IF p->>'deceased' !~* '^(true|false|t|f|yes|no|y|n|on|off|1|0)$' THEN
        p := p - 'deceased';
    END IF;
    p := medgate_complete_times(p, '{deceased_at}', tz);
    IF p->>'deceased_at' IS NOT NULL AND NOT p ? 'deceased' THEN
        p := p || '{"deceased": "true"}';
    ELSIF p->>'deceased' = 'false' AND NOT p ? 'deceased_at' THEN
        p := p || '{"deceased_at": null}';
    END IF;
    RETURN p;
END $$;

-- The survivor of the record most recently merged with this medical
-- record number (merged_into points to a live record: a merge re-points
-- what was merged into its prior), NULL when no merged record has it.
CREATE OR REPLACE FUNCTION medgate_patient_survivor(org uuid, mrn text)
RETURNS uuid LANGUAGE sql STABLE AS $$
    SELECT t.merged_into FROM patients t
     WHERE t.organization_id = org AND t.medical_record_number = mrn
       AND t.merged_into IS NOT NULL
     ORDER BY t.merged_at DESC LIMIT 1
$$;

-- The live patient for a medical record number: the record holding it, or
-- the survivor of a record that was merged (ADT^A40), so messages that
-- still carry a retired MRN land on the survivor.
CREATE OR REPLACE FUNCTION medgate_patient_find(org uuid, mrn text)
RETURNS uuid LANGUAGE plpgsql STABLE AS $$
DECLARE
    pid uuid;
BEGIN
    SELECT t.id INTO pid FROM patients t
     WHERE t.organization_id = org AND t.medical_record_number = mrn
       AND t.merged_into IS NULL;
    IF FOUND THEN
        RETURN pid;
    END IF;
    RETURN medgate_patient_survivor(org, mrn);
END $$;

-- Whether the message's MRN is one of its identifiers typed MR (PID-3
-- with CX.5 MR). When it is not, the MRN is only PID-3.1 of some other
-- type (an SSN, a visit number), and the patient may be found by that
-- identifier instead (medgate_patient_by_identifiers).
-- (A jsonpath, not a subquery: an sql function holding a subquery is
-- never inlined, and the set-based choice calls this for every message.)
CREATE OR REPLACE FUNCTION medgate_mrn_typed(mrn text, ids jsonb)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT jsonb_path_exists(coalesce(ids, '[]'),
        '$[*] ? (@.value == $m && @.type_code like_regex "^[Mm][Rr]$")',
        jsonb_build_object('m', mrn))
$$;

-- The live patient that holds one of the identifiers ids (same system and
-- value), when exactly one does and it holds the one the message took as
-- its MRN (the identifier whose value is mrn); NULL otherwise. Several
-- patients: the message makes its own patient, as before (a guess
-- between two people would file one person's data under another). One
-- patient that holds only another of the identifiers is no match either:
-- a new MRN that is merely untyped (v2.3 senders often leave CX.5 empty)
-- or typed otherwise than MR, next to an SSN the patient shares (twins,
-- a newborn under its mother's number, a placeholder 000000000), is a new
-- person, not the holder of the SSN. Only identifiers with an assigning
-- authority count, and not account or visit numbers (AN, VN): a bare
-- number, or an encounter's, is no proof of who the person is.
DROP FUNCTION IF EXISTS medgate_patient_by_identifiers(uuid, jsonb);
CREATE OR REPLACE FUNCTION medgate_patient_by_identifiers(org uuid,
                                                          ids jsonb,
                                                          mrn text)
RETURNS uuid LANGUAGE plpgsql STABLE AS $$
DECLARE
    found uuid[];
    holds_mrn boolean;
BEGIN
    SELECT array_agg(DISTINCT p.id), bool_or(x.value = mrn)
      INTO found, holds_mrn
      FROM jsonb_to_recordset(coalesce(ids, '[]')) AS x(value text,
           system text, universal_id text, universal_id_type text)
      JOIN patient_identifiers i
        ON i.organization_id = org AND i.value = left(x.value, 256)
       AND i.system = medgate_identifier_system(x.universal_id_type,
                                                x.universal_id, x.system)
      JOIN patients p ON p.id = i.patient_id AND p.merged_into IS NULL
     WHERE coalesce(x.value, '') <> ''
       AND i.system <> 'urn:medgate:unqualified'
       AND upper(coalesce(i.type_code, '')) NOT IN ('AN', 'VN');
    RETURN CASE WHEN cardinality(found) = 1 AND holds_mrn THEN found[1] END;
END $$;

-- The assigning authority under which patient pid holds its MRN, when
-- the message's MR identifier of that value (in ids) names another one:
-- the same number from two authorities (two hospitals of one organization,
-- a clinic's own numbers) is two people, and matching by the number alone
-- would file one person's data under the other. NULL when they agree, or
-- when either side does not say (no MR identifier of that value, or one
-- without an authority). Agreeing means the same system, or a namespace
-- (CX.4.1) of one equal to the other's system or namespace: a sender that
-- gives the OID once and the namespace alone another time is one
-- authority.
CREATE OR REPLACE FUNCTION medgate_mrn_other_authority(org uuid, pid uuid,
                                                       mrn text, ids jsonb)
RETURNS text LANGUAGE plpgsql STABLE AS $$
DECLARE
    m record;
    named boolean := false;
BEGIN
    IF pid IS NULL THEN
        RETURN NULL;
    END IF;
    -- Every MR identifier of that value the message names (a message may
    -- list the MRN under two authorities): one the patient holds is enough.
    FOR m IN SELECT medgate_identifier_system(x.universal_id_type,
                                              x.universal_id, x.system) AS sys,
                    NULLIF(x.system, '') AS ns
               FROM jsonb_to_recordset(coalesce(ids, '[]')) AS x(value text,
                    system text, universal_id text, universal_id_type text,
                    type_code text)
              WHERE x.value = mrn AND upper(coalesce(x.type_code, '')) = 'MR'
    LOOP
        IF m.sys = 'urn:medgate:unqualified' THEN
            RETURN NULL; -- says no authority: cannot differ
        END IF;
        named := true;
        IF EXISTS (SELECT 1 FROM patient_identifiers t
                    WHERE t.organization_id = org AND t.patient_id = pid
                      AND t.value = mrn
                      AND (t.system IN (m.sys, m.ns)
                           OR t.assigner IN (m.sys, m.ns))) THEN
            RETURN NULL;
        END IF;
    END LOOP;
    IF NOT named THEN
        RETURN NULL;
    END IF;
    -- The authority the patient holds the MRN under, if it says one (a
    -- row without an authority says nothing either way).
    RETURN (SELECT t.system FROM patient_identifiers t
             WHERE t.organization_id = org AND t.patient_id = pid
               AND t.value = mrn AND upper(coalesce(t.type_code, '')) = 'MR'
               AND t.system <> 'urn:medgate:unqualified'
             ORDER BY t.created_at LIMIT 1);
END $$;

-- Applies a patient patch (the mapped patient.* targets: a key that is
-- absent keeps the column, a null clears it) to the patient with its
-- medical record number, creating the patient when there is none, and adds
-- its identifiers (every PID-3 repetition). Returns the patient's id.
-- One message at a time: plain single-row statements, which cost a lone
-- message less than the set-based medgate_patients_upsert below (one
-- connection: 548 against 452 messages/s, about 0.4 ms a message,
-- measured with tests/bench/gateway.sh); both write the same columns.
-- With keep_known, a patient that exists already (by MRN, as a survivor,
-- or by identifier) keeps its columns: only a new one takes the patch
-- (results, and orders that change or cancel: no registration). A message
-- that found its patient through a merged record (an MRN retired by an
-- A40) keeps the survivor's columns too: it describes the retired record,
-- late or from a sender that did not see the merge, and the survivor's
-- name and birth date come from its own registration. Its identifiers are
-- still added. (It took three arguments before:
-- that version goes, so that a call with three is not ambiguous.)
DROP FUNCTION IF EXISTS medgate_patient_upsert(uuid, jsonb, jsonb);
CREATE OR REPLACE FUNCTION medgate_patient_upsert(org uuid, p jsonb,
                                                  ids jsonb,
                                                  keep_known boolean
                                                      DEFAULT false)
RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
    mrn text := p->>'medical_record_number';
    pid uuid;
    other text;
    tries int := 0;
BEGIN
    p := medgate_patient_patch(p, medgate_org_timezone(org));
    IF mrn IS NULL OR mrn = '' THEN
        RAISE EXCEPTION 'the message names no medical record number'
            USING ERRCODE = 'MG101',
                  DETAIL = 'patient.medical_record_number';
    END IF;
    -- The MRN and the identifiers, before either is looked up: a patient
    -- being created elsewhere with one of them is then seen.
    PERFORM medgate_lock_keys(ARRAY[org], ARRAY[jsonb_build_object(
        'patient', jsonb_build_object('medical_record_number', mrn),
        'patient_identifiers', ids)]);
    SELECT t.id INTO pid FROM patients t
     WHERE t.organization_id = org AND t.medical_record_number = mrn
       AND t.merged_into IS NULL;
    IF pid IS NULL THEN
        pid := medgate_patient_survivor(org, mrn);
        keep_known := keep_known OR pid IS NOT NULL; -- a retired MRN's
    END IF;
    -- Matched by identifier: no patient has the MRN, which is no MR-typed
    -- identifier (an SSN in PID-3.1, say), but one patient holds one of
    -- the message's identifiers. That patient is updated; its MRN stays.
    IF pid IS NULL AND NOT medgate_mrn_typed(mrn, ids) THEN
        pid := medgate_patient_by_identifiers(org, ids, mrn);
    END IF;
    IF pid IS NULL THEN
        INSERT INTO patients (organization_id, medical_record_number,
            first_name, middle_name, last_name, name_prefix, name_suffix,
            date_of_birth, gender, phone, email, address_line1,
            address_line2, city, state, postal_code, country,
            preferred_language, marital_status, deceased, deceased_at,
            source)
        SELECT org, mrn, r.first_name, r.middle_name, r.last_name,
            r.name_prefix, r.name_suffix, r.date_of_birth,
            coalesce(r.gender, 'unknown'), r.phone, r.email,
            r.address_line1, r.address_line2, r.city, r.state,
            r.postal_code, r.country, r.preferred_language,
            r.marital_status,
            coalesce(r.deceased, r.deceased_at IS NOT NULL), r.deceased_at,
            'hl7v2'
          FROM jsonb_populate_record(NULL::patients, p) r
        ON CONFLICT (organization_id, medical_record_number)
            WHERE merged_into IS NULL AND medical_record_number IS NOT NULL
            DO NOTHING
        RETURNING id INTO pid;
        -- Nothing inserted: a concurrent transaction created the patient
        -- first, so it is an update after all.
        IF pid IS NULL THEN
            pid := medgate_patient_find(org, mrn);
        ELSE
            PERFORM medgate_patient_identifiers(org, pid, ids, 'usual');
            RETURN pid;
        END IF;
    END IF;
    -- Only a live record: an A40 (of another connection or instance) that
    -- merged it while this waited for its row makes the survivor the
    -- patient, which the next statement sees. Without the check the
    -- message's data, and its scan, would go to the retired record.
    LOOP
        -- Checked for whichever patient this is now: the one found, the one
        -- a concurrent insert of the same MRN made, or a survivor.
        other := medgate_mrn_other_authority(org, pid, mrn, ids);
        IF other IS NOT NULL THEN
            RAISE EXCEPTION 'the MRN is held by a patient of another '
                            'assigning authority (%): the same number from '
                            'two authorities is two people', other
                USING ERRCODE = 'MG204',
                      DETAIL = 'patient.medical_record_number';
        END IF;
        UPDATE patients t SET
            (first_name, middle_name, last_name, name_prefix, name_suffix,
             date_of_birth, gender, phone, email, address_line1,
             address_line2, city, state, postal_code, country,
             preferred_language, marital_status, deceased, deceased_at,
             updated_at) =
            (SELECT r.first_name, r.middle_name, r.last_name, r.name_prefix,
                r.name_suffix, r.date_of_birth, coalesce(r.gender, 'unknown'),
                r.phone, r.email, r.address_line1, r.address_line2, r.city,
                r.state, r.postal_code, r.country, r.preferred_language,
                r.marital_status,
                coalesce(r.deceased, r.deceased_at IS NOT NULL),
                r.deceased_at, now()
               FROM jsonb_populate_record(t, CASE WHEN keep_known
                                                  THEN '{}'::jsonb
                                                  ELSE p - 'medical_record_number'
                                             END) r)
         WHERE t.id = pid AND t.merged_into IS NULL;
        EXIT WHEN FOUND;
        SELECT t.merged_into INTO pid FROM patients t WHERE t.id = pid;
        keep_known := true; -- merged meanwhile: now a survivor's
        tries := tries + 1;
        IF pid IS NULL OR tries > 10 THEN
            RAISE EXCEPTION 'the patient record went away, or kept being '
                            'merged, while the message was written';
        END IF;
    END LOOP;
    PERFORM medgate_patient_identifiers(org, pid, ids, 'usual');
    RETURN pid;
END $$;

-- The set-based form of medgate_patient_upsert, for many messages at once
-- (one statement per table, whatever their number). Element k updates the
-- patient targets[k] (NULL: the live patient holding the patch's medical
-- record number) or, when there is none, creates it; then the identifiers
-- are added. Returns the patients' ids in order; an id is NULL where a
-- concurrent transaction created the same patient first, or merged the
-- target into another while this waited for its row (nothing was written
-- for it: look it up and call again). The caller makes sure the
-- elements name distinct patients, each with a medical record number, and
-- that an MRN held only by a merged record comes with its survivor as the
-- target (medgate_patient_find).
CREATE OR REPLACE FUNCTION medgate_patients_upsert(orgs uuid[], pats jsonb[],
                                                   idents jsonb[],
                                                   targets uuid[])
RETURNS uuid[] LANGUAGE plpgsql
-- Generic plans: planning it again for every batch would cost more than
-- running it. Every lookup of a table is a key probe whatever the plan
-- (the update takes its rows by id = ANY, never by a join a planner could
-- turn into a scan of all patients).
SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    pids uuid[];
BEGIN
    WITH m AS MATERIALIZED (
        SELECT k, orgs[k] AS org, p, p->>'medical_record_number' AS mrn,
            coalesce(targets[k], (SELECT t.id FROM patients t
                WHERE t.organization_id = orgs[k]
                  AND t.medical_record_number = p->>'medical_record_number'
                  AND t.merged_into IS NULL)) AS target
          FROM generate_subscripts(orgs, 1) AS k,
               medgate_patient_patch(pats[k], medgate_org_timezone(orgs[k])) AS p
    ), upd AS (
        UPDATE patients t SET
            (first_name, middle_name, last_name, name_prefix, name_suffix,
             date_of_birth, gender, phone, email, address_line1,
             address_line2, city, state, postal_code, country,
             preferred_language, marital_status, deceased, deceased_at,
             updated_at) =
            (SELECT r.first_name, r.middle_name, r.last_name, r.name_prefix,
                r.name_suffix, r.date_of_birth, coalesce(r.gender, 'unknown'),
                r.phone, r.email, r.address_line1, r.address_line2, r.city,
                r.state, r.postal_code, r.country, r.preferred_language,
                r.marital_status,
                coalesce(r.deceased, r.deceased_at IS NOT NULL),
                r.deceased_at, now()
               FROM m, jsonb_populate_record(t, m.p - 'medical_record_number') r
              WHERE m.target = t.id)
         WHERE t.id = ANY (ARRAY(SELECT target FROM m
                                  WHERE target IS NOT NULL))
           AND t.merged_into IS NULL
        RETURNING t.id
    ), ins AS (
        INSERT INTO patients (organization_id, medical_record_number,
            first_name, middle_name, last_name, name_prefix, name_suffix,
            date_of_birth, gender, phone, email, address_line1,
            address_line2, city, state, postal_code, country,
            preferred_language, marital_status, deceased, deceased_at,
            source)
        SELECT m.org, m.mrn, r.first_name, r.middle_name, r.last_name,
            r.name_prefix, r.name_suffix, r.date_of_birth,
            coalesce(r.gender, 'unknown'), r.phone, r.email,
            r.address_line1, r.address_line2, r.city, r.state,
            r.postal_code, r.country, r.preferred_language,
            r.marital_status,
            coalesce(r.deceased, r.deceased_at IS NOT NULL), r.deceased_at,
            'hl7v2'
          FROM m, jsonb_populate_record(NULL::patients, m.p) r
         WHERE m.target IS NULL
         ORDER BY m.k
        ON CONFLICT (organization_id, medical_record_number)
            WHERE merged_into IS NULL AND medical_record_number IS NOT NULL
            DO NOTHING
        RETURNING id, organization_id, medical_record_number
    )
    -- A target is the patient when it was updated: one merged while this
    -- waited for its row is not (NULL).
    SELECT array_agg(CASE WHEN m.target IS NOT NULL THEN u.id ELSE i.id END
                     ORDER BY m.k) INTO pids
      FROM m LEFT JOIN upd u ON u.id = m.target
             LEFT JOIN ins i ON m.target IS NULL
                            AND i.organization_id = m.org
                            AND i.medical_record_number = m.mrn;
    PERFORM medgate_patients_identifiers(orgs, pids, idents, 'usual');
    RETURN pids;
END $$;

-- Adds identifiers (the group items of PID-3 or MRG-1: value, system,
-- universal_id, universal_id_type, type_code, ...) to a patient. The
-- system is urn:oid:<universal id> for an ISO universal id, else the
-- assigning authority's namespace, else urn:medgate:unqualified. An
-- identifier that already belongs to someone stays where it is.
CREATE OR REPLACE FUNCTION medgate_patient_identifiers(org uuid, pid uuid,
                                                       ids jsonb,
                                                       how text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM medgate_patients_identifiers(ARRAY[org], ARRAY[pid], ARRAY[ids],
                                         how);
END $$;

-- The system of an identifier (CX.4): urn:oid:<universal id> for an ISO
-- universal id, else the assigning authority's namespace, else
-- urn:medgate:unqualified. An sql function, inlined where it is used.
CREATE OR REPLACE FUNCTION medgate_identifier_system(universal_id_type text,
                                                     universal_id text,
                                                     namespace text)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN universal_id_type = 'ISO' AND universal_id <> ''
                THEN 'urn:oid:' || universal_id
                ELSE coalesce(NULLIF(namespace, ''), 'urn:medgate:unqualified')
           END
$$;

-- The identifier key of a group item (PID-3 or MRG-1), as
-- medgate_patient_by_identifiers compares it: system and value. (sql, so
-- that it is inlined into medgate_lock_keys.)
CREATE OR REPLACE FUNCTION medgate_identifier_key(item jsonb)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN coalesce(item->>'value', '') <> ''
        THEN medgate_identifier_system(item->>'universal_id_type',
                                       item->>'universal_id', item->>'system')
             || '|' || left(item->>'value', 256) END
$$;

-- The identifier lock keys of a list of group items (PID-3 or MRG-1):
-- not one without an authority, nor an account or visit number, which
-- find nobody (medgate_patient_by_identifiers); and at most 8 a list, so
-- that an identity feed's 30 identifiers a patient cannot fill
-- PostgreSQL's lock table (an advisory lock takes a slot of it; see
-- max_locks_per_transaction). The MRN's own identifier is no exception:
-- another message may name the patient by it under another MRN. (sql, so
-- that it is inlined into medgate_lock_keys.)
CREATE OR REPLACE FUNCTION medgate_identifier_lock_keys(ids jsonb)
RETURNS SETOF text LANGUAGE sql IMMUTABLE AS $$
    SELECT medgate_identifier_key(i)
      FROM jsonb_array_elements(CASE jsonb_typeof(ids) WHEN 'array' THEN ids
                                ELSE '[]' END) AS i
     WHERE medgate_identifier_key(i) NOT LIKE 'urn:medgate:unqualified|%'
       AND upper(coalesce(i->>'type_code', '')) NOT IN ('AN', 'VN')
     LIMIT 8
$$;

-- medgate_patient_identifiers for many patients: idents[k] are the
-- identifiers of patient pids[k] (skipped where pids[k] is NULL); when two
-- patients give the same identifier, the earlier element keeps it.
CREATE OR REPLACE FUNCTION medgate_patients_identifiers(orgs uuid[],
                                                        pids uuid[],
                                                        idents jsonb[],
                                                        how text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    -- plpgsql, not sql: its plan is cached for the session, where an sql
    -- function that cannot be inlined is planned again at every call.
    INSERT INTO patient_identifiers (organization_id, patient_id, system,
        value, type_code, assigner, assigning_facility, use, period_start,
        period_end)
    SELECT orgs[k], pids[k],
        medgate_identifier_system(x.universal_id_type, x.universal_id,
                                  x.system),
        left(x.value, 256),
        CASE WHEN x.type_code ~ '^[A-Za-z0-9_-]{1,20}$' THEN x.type_code END,
        x.assigner, x.assigning_facility, how,
        -- CX.7 and CX.8 (hl7_ts: a partial date such as "2020" stays as
        -- it was sent, and a time may follow the day): the day, when the
        -- sender gave one; no period otherwise, never a refused message.
        CASE WHEN x.period_start ~ '^\d{4}-\d{2}-\d{2}'
             THEN left(x.period_start, 10)::date END,
        CASE WHEN x.period_end ~ '^\d{4}-\d{2}-\d{2}'
             THEN left(x.period_end, 10)::date END
      FROM generate_subscripts(orgs, 1) AS k,
           jsonb_to_recordset(coalesce(idents[k], '[]')) AS x(value text,
           system text, universal_id text, universal_id_type text,
           type_code text, assigner text, assigning_facility text,
           period_start text, period_end text)
     WHERE pids[k] IS NOT NULL AND coalesce(x.value, '') <> ''
     ORDER BY k
    ON CONFLICT (organization_id, system, value) DO NOTHING;
END $$;

-- The patients of the messages at positions sel of a batch (the patient
-- and patient_identifiers of their input documents), written together by
-- medgate_patients_upsert; their ids in the order of sel. Raises MG001
-- when a concurrent transaction created one of them first, or merged one:
-- the caller's messages then go one by one (medgate_adapt_batch).
CREATE OR REPLACE FUNCTION medgate_patients_of(orgs uuid[], inputs jsonb[],
                                               sel integer[])
RETURNS uuid[] LANGUAGE plpgsql AS $$
DECLARE
    pids uuid[] := medgate_patients_upsert(
        ARRAY(SELECT orgs[k] FROM unnest(sel) k),
        ARRAY(SELECT inputs[k]->'patient' FROM unnest(sel) k),
        ARRAY(SELECT inputs[k]->'patient_identifiers' FROM unnest(sel) k),
        NULL);
BEGIN
    IF array_position(pids, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'a patient of the batch was created or merged '
                        'concurrently'
            USING ERRCODE = 'MG001';
    END IF;
    RETURN pids;
END $$;

-- Whether the patient of a message can be written by the set-based
-- functions: it has a medical record number that is new, or live and held
-- by a patient no merged record leads to. An MRN held only by a merged
-- record (which medgate_patient_find redirects) goes one by one; so does
-- the survivor's own MRN: the intake sees no shared record between a
-- message for the retired MRN and one for the survivor's, and written
-- together the survivor's would go first, whatever their order. A new MRN
-- that is no MR-typed identifier and whose message names a known
-- patient's identifier goes one by one too (medgate_patient_upsert finds
-- that patient; the set-based insert would make a new one).
DROP FUNCTION IF EXISTS medgate_patient_plain(uuid, text);
CREATE OR REPLACE FUNCTION medgate_patient_plain(org uuid, mrn text,
                                                 ids jsonb)
RETURNS boolean LANGUAGE plpgsql STABLE AS $$
DECLARE
    pid uuid;
BEGIN
    -- plpgsql, not sql: a cached plan instead of one per call.
    IF coalesce(mrn, '') = '' THEN
        RETURN false;
    END IF;
    SELECT t.id INTO pid FROM patients t
     WHERE t.organization_id = org AND t.medical_record_number = mrn
       AND t.merged_into IS NULL;
    IF FOUND THEN
        -- (one of another assigning authority goes one by one, to be
        -- refused there: medgate_patient_upsert)
        RETURN NOT EXISTS (SELECT 1 FROM patients t
                            WHERE t.organization_id = org
                              AND t.merged_into = pid)
               AND medgate_mrn_other_authority(org, pid, mrn, ids) IS NULL;
    END IF;
    IF EXISTS (SELECT 1 FROM patients t
                WHERE t.organization_id = org
                  AND t.medical_record_number = mrn
                  AND t.merged_into IS NOT NULL) THEN
        RETURN false;
    END IF;
    RETURN medgate_mrn_typed(mrn, ids)
           OR medgate_patient_by_identifiers(org, ids, mrn) IS NULL;
END $$;

-- The scan of accession number acc that is requested procedure rp (when
-- the message names one: OBR-19, IPC-2). One order, one accession, may
-- request several procedures (IHE: an Imaging Service Request holds 1..n
-- Requested Procedures, each its own study with its own UID), sent as one
-- ORC/OBR group each: the procedure is part of the key, or the second
-- group overwrote the first study (AA, the first procedure gone). A scan
-- of acc without a requested procedure id (an order placed without it)
-- is taken too, after one with rp; NULL when acc has only other
-- procedures. Without rp, the latest scan of acc without a requested
-- procedure id, else the latest of acc.
CREATE OR REPLACE FUNCTION medgate_scan_of_order(org uuid, acc text, rp text)
RETURNS uuid LANGUAGE sql STABLE AS $$
    SELECT t.id FROM scans t
     WHERE t.organization_id = org AND t.accession_number = acc
       AND (rp IS NULL OR t.requested_procedure_id IS NULL
            OR t.requested_procedure_id = rp)
     ORDER BY t.requested_procedure_id IS NOT DISTINCT FROM rp DESC,
              t.created_at DESC
     LIMIT 1
$$;

-- The scan of patient pid whose filler order number is the message's
-- (s: its mapped scan.*), when the message's accession number is that
-- filler number or it has none: the order came with its accession in
-- OBR-18 (IHE), a later message of the same order without it, so what
-- the message calls its accession fell back to the filler order number
-- (ORC-3, OBR-3). That order is the study, not an unknown one. (Only
-- then: a message that names an accession of its own is for that study.)
-- NULL when the message has no filler order number.
CREATE OR REPLACE FUNCTION medgate_scan_by_filler(org uuid, pid uuid,
                                                  s jsonb)
RETURNS uuid LANGUAGE sql STABLE AS $$
    SELECT t.id FROM scans t
     WHERE t.organization_id = org AND t.patient_id = pid
       AND s->>'filler_order_number' <> ''
       AND t.filler_order_number = s->>'filler_order_number'
       AND coalesce(NULLIF(s->>'accession_number', ''),
                    s->>'filler_order_number') = s->>'filler_order_number'
     ORDER BY t.created_at DESC LIMIT 1
$$;

-- Refuses a message that names a study of another patient: a result or an
-- order change must never be filed under the wrong person. The patient of
-- the scan and the message's patient are the same record here (a merge
-- moves the scans to the survivor, and an old MRN finds the survivor).
-- target is the mapping target the scan was found by, where the ERR points:
-- scan.accession_number or scan.study_instance_uid.
-- (It took two arguments before: that version goes, so nothing can call it.)
DROP FUNCTION IF EXISTS medgate_scan_same_patient(uuid, uuid);
CREATE OR REPLACE FUNCTION medgate_scan_same_patient(sid uuid, pid uuid,
                                                     target text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM scans WHERE id = sid AND patient_id <> pid) THEN
        RAISE EXCEPTION '% names a study of another patient',
                        CASE target WHEN 'scan.study_instance_uid'
                             THEN 'the Study Instance UID'
                             ELSE 'the accession number' END
            USING ERRCODE = 'MG204', DETAIL = target;
    END IF;
END $$;
