-- 0014: organizations.timezone must name a time zone PostgreSQL knows.
--
-- The adapters read an HL7 time that carries no offset (most senders give
-- none) as a wall-clock time in the organization's time zone
-- (medgate_org_timezone, adapters/common.sql). A name PostgreSQL does not
-- know would make every such message fail; refused here, when it is
-- written, it is a mistake of whoever wrote it, not of the messages. A
-- CHECK cannot do this (the time zone database is not immutable), so a
-- trigger does: AT TIME ZONE raises 22023 for an unknown name.
CREATE FUNCTION medgate_organization_timezone_known() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM now() AT TIME ZONE NEW.timezone;
    RETURN NEW;
EXCEPTION WHEN invalid_parameter_value THEN
    RAISE EXCEPTION 'time zone "%" is not known (use a name such as UTC or '
                    'Europe/Berlin, see pg_timezone_names)', NEW.timezone
        USING ERRCODE = 'check_violation';
END $$;

CREATE TRIGGER organizations_timezone_known
    BEFORE INSERT OR UPDATE OF timezone ON organizations
    FOR EACH ROW EXECUTE FUNCTION medgate_organization_timezone_known();

-- The rows already there, checked the same way: a name written before this
-- migration that PostgreSQL does not know stops it here, naming the row,
-- rather than failing every message of that organization afterwards.
DO $$
DECLARE
    o record;
BEGIN
    FOR o IN SELECT id, timezone FROM organizations LOOP
        BEGIN
            PERFORM now() AT TIME ZONE o.timezone;
        EXCEPTION WHEN invalid_parameter_value THEN
            RAISE EXCEPTION 'organization % has time zone "%", which '
                            'PostgreSQL does not know: correct it (UPDATE '
                            'organizations SET timezone = ...), then migrate '
                            'again', o.id, o.timezone;
        END;
    END LOOP;
END $$;
