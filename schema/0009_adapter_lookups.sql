-- Lookups the adapters (adapters/*.sql) make for every message.
--
-- medgate_patient_find: after the live record (patients_organization_mrn_key)
-- it looks for a merged record holding the MRN, so a message carrying a
-- retired MRN lands on the survivor. Without this index that probe is a
-- bitmap over every patient of the organization; with it, a probe of an
-- index that holds only merged records.
CREATE INDEX patients_merged_mrn_idx
    ON patients (organization_id, medical_record_number)
    WHERE merged_into IS NOT NULL;

-- scans.organization_id needs no foreign key of its own: the composite key
-- (organization_id, patient_id) -> patients (organization_id, id) already
-- implies the organization exists. The redundant check cost a lookup and a
-- KEY SHARE lock on the one organization row for every new scan.
ALTER TABLE scans DROP CONSTRAINT scans_organization_id_fkey;
