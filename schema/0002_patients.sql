-- 0002: patients, their identifiers and medical history.

-- Internal patient numbers are handed out by the database when an adapter
-- (HL7 ADT, FHIR Patient create) does not supply one.
CREATE SEQUENCE patient_number_seq;

CREATE TABLE patients (
    id                       uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id          uuid NOT NULL REFERENCES organizations (id),
    patient_number           text NOT NULL
                             DEFAULT 'P' || lpad(nextval('patient_number_seq')::text, 10, '0'),
    -- The organization's primary MRN (PID-3 repetition with CX.5 = MR, as
    -- the route chooses). All identifiers are in patient_identifiers.
    medical_record_number    text,
    -- Keyed BLAKE2b-256 of the MRN for pseudonymous matching (AI jobs,
    -- exports) without revealing the MRN.
    patient_id_hash          bytea CHECK (octet_length(patient_id_hash) = 32),
    first_name               text,
    middle_name              text,
    last_name                text,
    name_prefix              text,
    name_suffix              text,
    date_of_birth            date,
    gender                   text NOT NULL DEFAULT 'unknown'
                             CHECK (gender IN ('male', 'female', 'other', 'unknown')),
    phone                    text,
    email                    text,
    address_line1            text,
    address_line2            text,
    city                     text,
    state                    text,
    postal_code              text,
    country                  text,
    marital_status           text,
    preferred_language       text,
    emergency_contact_name   text,
    emergency_contact_phone  text,
    insurance_provider       text,
    insurance_policy_number  text,
    deceased                 boolean NOT NULL DEFAULT false,
    deceased_at              timestamptz,
    is_active                boolean NOT NULL DEFAULT true,
    -- ADT^A40 / FHIR Patient.link replaced-by: this record was merged into
    -- the surviving record merged_into (same organization).
    merged_into              uuid,
    merged_at                timestamptz,
    source                   text NOT NULL DEFAULT 'manual'
                             CHECK (source IN ('hl7v2', 'fhir', 'manual', 'import')),
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT patients_organization_id_patient_number_key
        UNIQUE (organization_id, patient_number),
    CONSTRAINT patients_organization_id_id_key UNIQUE (organization_id, id),
    CHECK (merged_into IS NULL OR merged_into <> id),
    CHECK ((merged_into IS NULL) = (merged_at IS NULL)),
    CHECK (deceased OR deceased_at IS NULL),
    FOREIGN KEY (organization_id, merged_into)
        REFERENCES patients (organization_id, id)
);

CREATE INDEX patients_medical_record_number_idx
    ON patients (medical_record_number);
-- The HL7 v2 patient adapter matches and upserts by MRN within a tenant;
-- merged (retired) records keep their MRN without holding the key.
CREATE UNIQUE INDEX patients_organization_mrn_key
    ON patients (organization_id, medical_record_number)
    WHERE merged_into IS NULL AND medical_record_number IS NOT NULL;
CREATE INDEX patients_patient_id_hash_idx
    ON patients (organization_id, patient_id_hash)
    WHERE patient_id_hash IS NOT NULL;
-- Demographic search (FHIR family/birthdate, admin lookups).
CREATE INDEX patients_name_idx
    ON patients (organization_id, last_name, first_name);
CREATE INDEX patients_date_of_birth_idx
    ON patients (organization_id, date_of_birth);
CREATE INDEX patients_merged_into_idx
    ON patients (merged_into) WHERE merged_into IS NOT NULL;

CREATE TRIGGER patients_set_updated_at BEFORE UPDATE ON patients
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- Every identifier a patient is known by: PID-3 repetitions (CX) and FHIR
-- Patient.identifier. (organization_id, system, value) is how inbound
-- messages find their patient.
CREATE TABLE patient_identifiers (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id  uuid NOT NULL,
    patient_id       uuid NOT NULL,
    -- Identifier.system: URI/OID of the assigning authority (CX.4), or a
    -- per-sender default system when CX.4 is empty.
    system           text NOT NULL CHECK (length(system) BETWEEN 1 AND 512),
    value            text NOT NULL CHECK (length(value) BETWEEN 1 AND 256),
    -- HL7 table 0203 (MR, PI, PT, AN, SS, DL, PPN, ...).
    type_code        text CHECK (type_code ~ '^[A-Za-z0-9_-]{1,20}$'),
    assigner         text,
    assigning_facility text,
    use              text NOT NULL DEFAULT 'usual'
                     CHECK (use IN ('usual', 'official', 'temp', 'secondary', 'old')),
    period_start     date,
    period_end       date,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT patient_identifiers_organization_id_system_value_key
        UNIQUE (organization_id, system, value),
    FOREIGN KEY (organization_id, patient_id)
        REFERENCES patients (organization_id, id) ON DELETE CASCADE
);

CREATE INDEX patient_identifiers_patient_idx
    ON patient_identifiers (organization_id, patient_id);
-- FHIR token search without a system (identifier=value).
CREATE INDEX patient_identifiers_value_idx
    ON patient_identifiers (organization_id, value);

CREATE TRIGGER patient_identifiers_set_updated_at
    BEFORE UPDATE ON patient_identifiers
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- Conditions, allergies and procedures relevant to reading the images.
CREATE TABLE patient_medical_history (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id      uuid NOT NULL,
    patient_id           uuid NOT NULL,
    entry_type           text NOT NULL DEFAULT 'condition'
                         CHECK (entry_type IN ('condition', 'allergy', 'procedure',
                                               'medication', 'family_history',
                                               'other')),
    condition_name       text NOT NULL,
    condition_code       text,
    code_system          text,
    diagnosis_date       date,
    status               text NOT NULL DEFAULT 'active'
                         CHECK (status IN ('active', 'resolved', 'inactive',
                                           'unknown')),
    severity             text CHECK (severity IN ('mild', 'moderate', 'severe')),
    notes                text,
    recorded_by_user_id  uuid,
    source               text NOT NULL DEFAULT 'manual'
                         CHECK (source IN ('hl7v2', 'fhir', 'manual', 'import')),
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (organization_id, patient_id)
        REFERENCES patients (organization_id, id) ON DELETE CASCADE,
    FOREIGN KEY (organization_id, recorded_by_user_id)
        REFERENCES users (organization_id, id)
        ON DELETE SET NULL (recorded_by_user_id)
);

CREATE INDEX patient_medical_history_patient_idx
    ON patient_medical_history (organization_id, patient_id);

CREATE TRIGGER patient_medical_history_set_updated_at
    BEFORE UPDATE ON patient_medical_history
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
