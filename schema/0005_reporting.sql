-- 0005: reports (= FHIR DiagnosticReport) and report templates.

CREATE TABLE report_templates (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- NULL = a template every organization may use.
    organization_id     uuid REFERENCES organizations (id),
    name                text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    description         text,
    scan_type           text CHECK (scan_type ~ '^[A-Z0-9_ ]{1,16}$'),
    body_part           text,
    report_type         text NOT NULL DEFAULT 'radiology'
                        CHECK (report_type IN ('radiology', 'ai', 'addendum',
                                               'other')),
    -- Free text with {{placeholders}}, and/or structured sections.
    template_text       text,
    sections            jsonb NOT NULL DEFAULT '[]'::jsonb
                        CHECK (jsonb_typeof(sections) = 'array'),
    is_default          boolean NOT NULL DEFAULT false,
    is_active           boolean NOT NULL DEFAULT true,
    created_by_user_id  uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT report_templates_organization_id_name_key
        UNIQUE NULLS NOT DISTINCT (organization_id, name)
);

CREATE TRIGGER report_templates_set_updated_at BEFORE UPDATE ON report_templates
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE reports (
    id                          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id             uuid NOT NULL,
    scan_id                     uuid NOT NULL,
    -- Set when the report was produced from (or started as) an AI analysis.
    analysis_id                 uuid,
    template_id                 uuid REFERENCES report_templates (id)
                                ON DELETE SET NULL,
    -- The sender's id for this report (ORU filler order number + OBR set,
    -- DiagnosticReport.identifier): how a corrected report finds its row.
    external_id                 text,
    report_type                 text NOT NULL DEFAULT 'radiology'
                                CHECK (report_type IN ('radiology', 'ai',
                                                       'addendum', 'other')),
    findings_text               text,
    impression                  text,
    recommendations             text,
    report_status               text NOT NULL DEFAULT 'registered'
                                CHECK (report_status IN ('registered',
                                                         'preliminary', 'final',
                                                         'amended', 'corrected',
                                                         'cancelled')),
    reporting_radiologist_id    uuid,
    -- As the sender named the radiologist (OBR-32), when not a user here.
    reporting_radiologist_name  text,
    signed_at                   timestamptz,
    -- Clinically relevant time (OBR-7 observation date/time).
    effective_at                timestamptz,
    -- When this version was issued (OBR-22 results rpt/status chng).
    issued_at                   timestamptz,
    source                      text NOT NULL DEFAULT 'manual'
                                CHECK (source IN ('hl7v2', 'fhir', 'ai',
                                                  'manual')),
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT reports_organization_id_id_key UNIQUE (organization_id, id),
    CONSTRAINT reports_organization_id_external_id_key
        UNIQUE (organization_id, external_id),
    FOREIGN KEY (organization_id, scan_id)
        REFERENCES scans (organization_id, id),
    FOREIGN KEY (organization_id, analysis_id)
        REFERENCES ai_analyses (organization_id, id)
        ON DELETE SET NULL (analysis_id),
    FOREIGN KEY (organization_id, reporting_radiologist_id)
        REFERENCES users (organization_id, id)
        ON DELETE SET NULL (reporting_radiologist_id)
);

CREATE INDEX reports_scan_idx ON reports (scan_id, report_status);
CREATE INDEX reports_analysis_idx ON reports (analysis_id)
    WHERE analysis_id IS NOT NULL;
CREATE INDEX reports_radiologist_idx
    ON reports (reporting_radiologist_id, signed_at)
    WHERE reporting_radiologist_id IS NOT NULL;
CREATE INDEX reports_organization_status_idx
    ON reports (organization_id, report_status, updated_at);

CREATE TRIGGER reports_set_updated_at BEFORE UPDATE ON reports
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
