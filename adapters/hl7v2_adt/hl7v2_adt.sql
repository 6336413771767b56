-- hl7v2.adt: patient administration. Every event creates or updates the
-- patient named by its MRN (with its PID-3 identifiers); a merge also
-- merges the record MRG-1 names into that patient.

-- The merge events: A40, and the v2.3 events that say the same with the
-- same PID/MRG pair -- A18 (merge patient information), A34 (merge patient
-- ID only), A36 (patient ID and account number; the account is not kept)
-- -- which feeds of that generation still send instead of A40.
CREATE OR REPLACE FUNCTION medgate_adt_merges(trigger text)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(trigger IN ('A40', 'A18', 'A34', 'A36'), false)
$$;

CREATE OR REPLACE FUNCTION medgate_adapter_hl7v2_adt(org uuid,
                                                     message_id uuid,
                                                     input jsonb)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    survivor uuid;
BEGIN
    IF medgate_adt_merges(input->'message'->>'trigger') THEN
        -- Both records' MRNs (and the identifiers), in key order, before
        -- either is read.
        PERFORM medgate_lock_keys(ARRAY[org], ARRAY[input]);
    END IF;
    survivor := medgate_patient_upsert(org, input->'patient',
                                       input->'patient_identifiers');
    IF medgate_adt_merges(input->'message'->>'trigger') THEN
        PERFORM medgate_patient_merge(org, survivor, input->'merge',
                                      input->'merge_prior_identifiers');
        -- The merge moved the prior record's identifiers over as old ones,
        -- among them any the prior got first that the survivor's PID-3
        -- lists too (a duplicate record with the same SSN): those are the
        -- survivor's current identifiers.
        UPDATE patient_identifiers t SET use = 'usual', updated_at = now()
          FROM jsonb_to_recordset(coalesce(input->'patient_identifiers',
                                           '[]')) AS x(value text,
               system text, universal_id text, universal_id_type text)
         WHERE t.organization_id = org AND t.patient_id = survivor
           AND t.use = 'old' AND t.value = left(x.value, 256)
           AND t.system = medgate_identifier_system(x.universal_id_type,
                                                    x.universal_id, x.system);
    END IF;
END $$;

-- Merges the record with the prior MRN into survivor: it points to the
-- survivor (and so does anything merged into it before), its identifiers
-- and scans move over, and later messages with its MRN find the survivor
-- (medgate_patient_find). A prior MRN nobody holds gets a retired record of
-- its own, so those later messages land on the survivor too. Merging a
-- record that is already merged into the survivor changes nothing.
--
-- A prior MRN merged earlier into someone else stands for that live
-- record, as in every other message (medgate_patient_find): the sender
-- says the two are one person, so that record is merged into the survivor
-- with all it holds (A into B, then A into C: B into C). A second retired
-- record of the MRN pointing elsewhere would split the person: later
-- messages would go to the newest survivor and the old rows stay with the
-- first. Every retired record points to a live one (a merge re-points what
-- was merged into its prior), so the chain is one step and cannot loop.
CREATE OR REPLACE FUNCTION medgate_patient_merge(org uuid, survivor uuid,
                                                 m jsonb, prior_ids jsonb)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    mrn text := m->>'prior_medical_record_number';
    prior uuid;
    other text;
BEGIN
    IF mrn IS NULL OR mrn = '' THEN
        RAISE EXCEPTION 'a merge needs the prior patient''s MRN in MRG-1'
            USING ERRCODE = 'MG101',
                  DETAIL = 'merge.prior_medical_record_number';
    END IF;
    SELECT t.id INTO prior FROM patients t
     WHERE t.organization_id = org AND t.medical_record_number = mrn
       AND t.merged_into IS NULL;
    IF prior = survivor THEN
        RAISE EXCEPTION 'MRG-1 names the surviving patient itself'
            USING ERRCODE = 'MG102',
                  DETAIL = 'merge.prior_medical_record_number';
    END IF;
    IF prior IS NULL THEN
        prior := medgate_patient_find(org, mrn);
        -- MRG-1 without an MR-typed identifier (an EMR's enterprise id or
        -- PI alone): the prior MRN fell back to its first repetition, which
        -- no record has as its MRN. The record holding that identifier is
        -- the one to merge, as for any message naming a patient that way
        -- (medgate_patient_by_identifiers); a placeholder under the PI
        -- would leave the duplicate live, its studies with it.
        IF prior IS NULL AND NOT medgate_mrn_typed(mrn, prior_ids) THEN
            prior := medgate_patient_by_identifiers(org, prior_ids, mrn);
        END IF;
        IF prior = survivor THEN
            RETURN; -- merged already: a repeat of this merge
        END IF;
    END IF;
    IF prior IS NULL THEN
        INSERT INTO patients (organization_id, medical_record_number,
                              last_name, merged_into, merged_at, is_active,
                              source)
        VALUES (org, mrn, m->>'prior_last_name', survivor, now(), false,
                'hl7v2');
    ELSE
        -- Only a live prior: one that a concurrent A40 merged into another
        -- record while this waited for its row stands for that record now
        -- (medgate_patient_find), which is merged instead -- or nothing is
        -- left to do when that record is the survivor.
        FOR tries IN 1..10 LOOP
            -- MRG-1's MRN of another assigning authority than the record's
            -- is another person: merging it would move that person's
            -- studies, which cannot be undone.
            other := medgate_mrn_other_authority(org, prior, mrn, prior_ids);
            IF other IS NOT NULL THEN
                RAISE EXCEPTION 'MRG-1''s MRN is held by a patient of another '
                                'assigning authority (%): the same number '
                                'from two authorities is two people', other
                    USING ERRCODE = 'MG204',
                          DETAIL = 'merge.prior_medical_record_number';
            END IF;
            UPDATE patients SET merged_into = survivor, merged_at = now(),
                   is_active = false, updated_at = now()
             WHERE id = prior AND merged_into IS NULL;
            EXIT WHEN FOUND;
            IF tries = 10 THEN
                RAISE EXCEPTION 'the record MRG-1 names kept being merged '
                                'elsewhere while this merge waited';
            END IF;
            prior := medgate_patient_find(org, mrn);
            IF prior IS NULL OR prior = survivor THEN
                PERFORM medgate_patient_identifiers(org, survivor, prior_ids,
                                                    'old');
                RETURN;
            END IF;
        END LOOP;
        UPDATE patients SET merged_into = survivor, updated_at = now()
         WHERE organization_id = org AND merged_into = prior;
        UPDATE patient_identifiers SET patient_id = survivor,
               use = 'old', updated_at = now()
         WHERE organization_id = org AND patient_id = prior;
        UPDATE scans SET patient_id = survivor, updated_at = now()
         WHERE organization_id = org AND patient_id = prior;
        UPDATE patient_medical_history SET patient_id = survivor,
               updated_at = now()
         WHERE organization_id = org AND patient_id = prior;
    END IF;
    PERFORM medgate_patient_identifiers(org, survivor, prior_ids, 'old');
END $$;

-- The set-based side (adapter.h, "batch"): of the messages given, writes
-- the patients of every event but a merge (A40) together, when
-- medgate_patient_plain accepts the patient, and returns their positions;
-- the others are left to the per-message function. The intake only passes
-- messages that share no patient or identifier with any other message of
-- their commit.
CREATE OR REPLACE FUNCTION medgate_adapter_hl7v2_adt_batch(orgs uuid[],
                                                           message_ids uuid[],
                                                           inputs jsonb[])
RETURNS integer[] LANGUAGE plpgsql AS $$
DECLARE
    sel integer[];
BEGIN
    PERFORM medgate_lock_keys(orgs, inputs);
    SELECT array_agg(k ORDER BY k) INTO sel
      FROM generate_subscripts(inputs, 1) AS k
     WHERE NOT medgate_adt_merges(inputs[k]->'message'->>'trigger')
       AND medgate_patient_plain(orgs[k],
                                 inputs[k]->'patient'->>'medical_record_number',
                                 inputs[k]->'patient_identifiers');
    IF sel IS NULL THEN
        RETURN '{}';
    END IF;
    PERFORM medgate_patients_of(orgs, inputs, sel);
    RETURN sel;
END $$;
