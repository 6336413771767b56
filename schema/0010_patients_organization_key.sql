-- patients.organization_id loses its foreign key to organizations, as
-- hl7_messages, sync_logs (0006) and scans (0009) did before it.
--
-- Why: every new patient checked that key, and the check takes a KEY SHARE
-- lock on the one row of the patient's organization. The intake's grouped
-- commits all write patients of the same organization at once, and
-- concurrent lockers of one row go through MultiXacts: that lock was the
-- largest single cost of a mapped ORM^O01 (tests/bench/gateway.sh, ORM^O01,
-- 16 connections on the 2-core development VM: 1,205.5 messages/s with the
-- key, 1,958.9 without it, the same build one run after the other).
--
-- What keeps the organization ids right instead:
-- - the gateway writes only organization ids from its configuration, each
--   checked against organizations at start (as for hl7_messages);
-- - every other row of a patient's tree still has its composite key to the
--   patient -- patient_identifiers, scans (organization_id, patient_id) ->
--   patients (organization_id, id) -- so no child can name another
--   tenant's patient;
-- - an organization is never deleted and its id never changes (the trigger
--   below): one that leaves is deactivated (is_active = false), so an id
--   that was right when a patient was written stays right.
ALTER TABLE patients DROP CONSTRAINT patients_organization_id_fkey;

CREATE FUNCTION medgate_organization_keep() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%: organizations are deactivated (is_active = false), '
                    'never deleted or renumbered',
                    CASE WHEN TG_LEVEL = 'ROW' THEN 'organization ' || OLD.id
                         ELSE 'TRUNCATE organizations' END
        USING ERRCODE = 'restrict_violation',
              HINT = 'patients, scans and messages name it without a '
                     'foreign key (schema/0010_patients_organization_key.sql)';
END $$;

CREATE TRIGGER organizations_keep_delete BEFORE DELETE ON organizations
    FOR EACH ROW EXECUTE FUNCTION medgate_organization_keep();
CREATE TRIGGER organizations_keep_id BEFORE UPDATE OF id ON organizations
    FOR EACH ROW WHEN (NEW.id IS DISTINCT FROM OLD.id)
    EXECUTE FUNCTION medgate_organization_keep();
CREATE TRIGGER organizations_keep_truncate BEFORE TRUNCATE ON organizations
    FOR EACH STATEMENT EXECUTE FUNCTION medgate_organization_keep();
