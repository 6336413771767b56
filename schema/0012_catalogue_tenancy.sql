-- 0012: a private catalogue row is used only by its own organization.
--
-- ai_models, report_templates and workflow_rules hold rows shared by every
-- organization (organization_id NULL) and rows private to one; every
-- external_integrations row is private. The rows that name them --
-- ai_analyses.model_id, ai_analyses.workflow_rule_id, reports.template_id,
-- workflow_rules.model_id, workflow_rules.integration_id -- had a plain
-- foreign key on id, so one organization's analysis could run another's
-- private model, and a rule could deliver one organization's results
-- through another's integration (to its EMR). A foreign key cannot say
-- "shared, or the same organization", so triggers do:
-- - the named row must be shared, or belong to the naming row's
--   organization; a shared rule (organization_id NULL) may name shared
--   rows only;
-- - a catalogue row never changes organization or id (create a new row
--   instead), so what was right when a row named it stays right, without
--   locking the catalogue row on every insert;
-- - the two keys on ai_models that were NO ACTION become RESTRICT: NO
--   ACTION lets one statement delete a model and insert another
--   organization's row under the same id (the key is checked at the end of
--   the statement, when the id exists again), which would hand the naming
--   rows to that organization. The other keys cascade or set NULL, which
--   leave nothing naming the new row.
-- The plain foreign keys stay: they still say the row exists.

CREATE FUNCTION medgate_catalogue_row_owned() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    -- TG_ARGV[0]: the catalogue table; TG_ARGV[1]: the column naming it.
    named uuid := (to_jsonb(NEW) ->> TG_ARGV[1])::uuid;
    owner uuid;
BEGIN
    IF named IS NULL THEN
        RETURN NEW;
    END IF;
    EXECUTE format('SELECT organization_id FROM %I WHERE id = $1',
                   TG_ARGV[0])
        INTO owner USING named;
    -- A missing row is the foreign key's to report.
    IF owner IS NOT NULL AND owner IS DISTINCT FROM NEW.organization_id THEN
        RAISE EXCEPTION '%.% names % row % of another organization',
                        TG_TABLE_NAME, TG_ARGV[1], TG_ARGV[0], named
            USING ERRCODE = 'foreign_key_violation',
                  HINT = 'use a row of the same organization or a shared one '
                         '(organization_id NULL)';
    END IF;
    RETURN NEW;
END $$;

CREATE FUNCTION medgate_catalogue_keep_owner() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% row %: organization_id and id never change '
                    '(rows of other organizations may name it)',
                    TG_TABLE_NAME, OLD.id
        USING ERRCODE = 'restrict_violation',
              HINT = 'create a new row for the other organization';
END $$;

ALTER TABLE ai_analyses
    DROP CONSTRAINT ai_analyses_model_id_fkey,
    ADD CONSTRAINT ai_analyses_model_id_fkey FOREIGN KEY (model_id)
        REFERENCES ai_models (id) ON DELETE RESTRICT ON UPDATE RESTRICT;
ALTER TABLE workflow_rules
    DROP CONSTRAINT workflow_rules_model_id_fkey,
    ADD CONSTRAINT workflow_rules_model_id_fkey FOREIGN KEY (model_id)
        REFERENCES ai_models (id) ON DELETE RESTRICT ON UPDATE RESTRICT;

-- WHEN: a row that names nothing (a report without a template, the
-- result adapter's every report) pays no trigger call.
CREATE TRIGGER ai_analyses_model_owned
    BEFORE INSERT OR UPDATE OF organization_id, model_id ON ai_analyses
    FOR EACH ROW WHEN (NEW.model_id IS NOT NULL)
    EXECUTE FUNCTION medgate_catalogue_row_owned('ai_models', 'model_id');
CREATE TRIGGER ai_analyses_workflow_rule_owned
    BEFORE INSERT OR UPDATE OF organization_id, workflow_rule_id ON ai_analyses
    FOR EACH ROW WHEN (NEW.workflow_rule_id IS NOT NULL)
    EXECUTE FUNCTION medgate_catalogue_row_owned('workflow_rules', 'workflow_rule_id');
CREATE TRIGGER reports_template_owned
    BEFORE INSERT OR UPDATE OF organization_id, template_id ON reports
    FOR EACH ROW WHEN (NEW.template_id IS NOT NULL)
    EXECUTE FUNCTION medgate_catalogue_row_owned('report_templates', 'template_id');
CREATE TRIGGER workflow_rules_model_owned
    BEFORE INSERT OR UPDATE OF organization_id, model_id ON workflow_rules
    FOR EACH ROW WHEN (NEW.model_id IS NOT NULL)
    EXECUTE FUNCTION medgate_catalogue_row_owned('ai_models', 'model_id');
CREATE TRIGGER workflow_rules_integration_owned
    BEFORE INSERT OR UPDATE OF organization_id, integration_id ON workflow_rules
    FOR EACH ROW WHEN (NEW.integration_id IS NOT NULL)
    EXECUTE FUNCTION medgate_catalogue_row_owned('external_integrations', 'integration_id');

CREATE TRIGGER ai_models_keep_owner
    BEFORE UPDATE OF id, organization_id ON ai_models
    FOR EACH ROW WHEN (NEW.organization_id IS DISTINCT FROM OLD.organization_id
                       OR NEW.id IS DISTINCT FROM OLD.id)
    EXECUTE FUNCTION medgate_catalogue_keep_owner();
CREATE TRIGGER report_templates_keep_owner
    BEFORE UPDATE OF id, organization_id ON report_templates
    FOR EACH ROW WHEN (NEW.organization_id IS DISTINCT FROM OLD.organization_id
                       OR NEW.id IS DISTINCT FROM OLD.id)
    EXECUTE FUNCTION medgate_catalogue_keep_owner();
CREATE TRIGGER workflow_rules_keep_owner
    BEFORE UPDATE OF id, organization_id ON workflow_rules
    FOR EACH ROW WHEN (NEW.organization_id IS DISTINCT FROM OLD.organization_id
                       OR NEW.id IS DISTINCT FROM OLD.id)
    EXECUTE FUNCTION medgate_catalogue_keep_owner();
CREATE TRIGGER external_integrations_keep_owner
    BEFORE UPDATE OF id, organization_id ON external_integrations
    FOR EACH ROW WHEN (NEW.organization_id IS DISTINCT FROM OLD.organization_id
                       OR NEW.id IS DISTINCT FROM OLD.id)
    EXECUTE FUNCTION medgate_catalogue_keep_owner();
