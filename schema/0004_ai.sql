-- 0004: AI models, analyses (which are also the job-queue rows) and findings.

CREATE TABLE ai_models (
    id                    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- NULL = a model every organization may use.
    organization_id       uuid REFERENCES organizations (id),
    name                  text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    version               text NOT NULL CHECK (length(version) BETWEEN 1 AND 64),
    model_type            text NOT NULL
                          CHECK (model_type IN ('classification', 'detection',
                                                'segmentation', 'triage',
                                                'measurement', 'report_generation',
                                                'other')),
    description           text,
    vendor                text,
    supported_modalities  text[] NOT NULL DEFAULT '{}',
    supported_body_parts  text[] NOT NULL DEFAULT '{}',
    -- exec: a program reading the job JSON on stdin, results JSON on stdout;
    -- http: a POST to an inference server (DESIGN.md §2.3).
    runner                text NOT NULL CHECK (runner IN ('exec', 'http')),
    -- exec: {"argv": [...], "env": {...}}; http: {"url": ..., "headers": ...}.
    runner_config         jsonb NOT NULL DEFAULT '{}'::jsonb
                          CHECK (jsonb_typeof(runner_config) = 'object'),
    timeout_seconds       integer NOT NULL DEFAULT 300
                          CHECK (timeout_seconds BETWEEN 1 AND 86400),
    max_concurrency       integer NOT NULL DEFAULT 1
                          CHECK (max_concurrency >= 1),
    -- Scores below this are reported as inconclusive.
    confidence_threshold  numeric(5, 4) CHECK (confidence_threshold BETWEEN 0 AND 1),
    performance_metrics   jsonb NOT NULL DEFAULT '{}'::jsonb,
    status                text NOT NULL DEFAULT 'active'
                          CHECK (status IN ('active', 'inactive', 'testing',
                                            'deprecated')),
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ai_models_organization_id_name_version_key
        UNIQUE NULLS NOT DISTINCT (organization_id, name, version)
);

CREATE TRIGGER ai_models_set_updated_at BEFORE UPDATE ON ai_models
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- One inference run of one model on one scan. The row is also the job in
-- the queue (DESIGN-NOTES §8, with status names of our own):
--   queued    ready to claim once run_at <= now()
--   running   claimed: locked_by/locked_until form the lease, attempts is
--             the fencing token
--   completed results stored
--   failed    permanent error (runner reported the input unusable, ...)
--   dead      retries exhausted; kept with last_error, can be replayed
--   cancelled scan cancelled or operator cancelled
CREATE TABLE ai_analyses (
    id                     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id        uuid NOT NULL,
    scan_id                uuid NOT NULL,
    model_id               uuid NOT NULL REFERENCES ai_models (id),
    -- The rule that queued it (FK added in 0006 with workflow_rules).
    workflow_rule_id       uuid,
    status                 text NOT NULL DEFAULT 'queued'
                           CHECK (status IN ('queued', 'running', 'completed',
                                             'failed', 'dead', 'cancelled')),
    -- Job-queue columns.
    queue                  text NOT NULL DEFAULT 'default'
                           CHECK (queue ~ '^[a-z0-9_]{1,32}$'),
    priority               smallint NOT NULL DEFAULT 100,
    run_at                 timestamptz NOT NULL DEFAULT now(),
    attempts               integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts           integer NOT NULL DEFAULT 5 CHECK (max_attempts >= 1),
    locked_by              text,
    locked_until           timestamptz,
    last_error             text,
    -- At most one job per key, e.g. 'rule:<rule id>:scan:<scan id>'.
    idempotency_key        text UNIQUE,
    -- Results.
    input                  jsonb,
    processing_started_at  timestamptz,
    processing_ended_at    timestamptz,
    processing_time_ms     integer CHECK (processing_time_ms >= 0),
    confidence_score       numeric(5, 4) CHECK (confidence_score BETWEEN 0 AND 1),
    overall_result         text,
    result_summary         text,
    raw_output             jsonb,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ai_analyses_organization_id_id_key UNIQUE (organization_id, id),
    -- A running job always holds a lease; no other state holds one.
    CONSTRAINT ai_analyses_lease_check
        CHECK ((status = 'running') = (locked_by IS NOT NULL
                                       AND locked_until IS NOT NULL)),
    FOREIGN KEY (organization_id, scan_id)
        REFERENCES scans (organization_id, id)
) WITH (autovacuum_vacuum_scale_factor = 0.02,
        autovacuum_analyze_scale_factor = 0.02);

CREATE INDEX ai_analyses_scan_status_idx ON ai_analyses (scan_id, status);
-- Claim: WHERE queue = $1 AND status = 'queued' AND run_at <= now()
-- ORDER BY priority, run_at, id LIMIT n FOR UPDATE SKIP LOCKED.
CREATE INDEX ai_analyses_ready_idx
    ON ai_analyses (queue, priority, run_at, id) WHERE status = 'queued';
-- Reaper: WHERE status = 'running' AND locked_until < now().
CREATE INDEX ai_analyses_lease_idx
    ON ai_analyses (locked_until) WHERE status = 'running';
CREATE INDEX ai_analyses_model_idx ON ai_analyses (model_id);
CREATE INDEX ai_analyses_organization_created_idx
    ON ai_analyses (organization_id, created_at);

CREATE TRIGGER ai_analyses_set_updated_at BEFORE UPDATE ON ai_analyses
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- What a model found. Coordinates are model-specific JSON (bounding box,
-- polygon, mask reference), always in the image space of scan_instances.
CREATE TABLE findings (
    id                     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id        uuid NOT NULL,
    analysis_id            uuid NOT NULL,
    scan_id                uuid NOT NULL,
    instance_id            uuid,
    finding_type           text NOT NULL,
    -- Coded finding (SNOMED CT, RadLex) for DiagnosticReport.conclusionCode.
    code                   text,
    code_system            text,
    description            text,
    location_description   text,
    body_part              text,
    coordinates            jsonb,
    measurements           jsonb,
    confidence_percentage  numeric(5, 2)
                           CHECK (confidence_percentage BETWEEN 0 AND 100),
    severity               text NOT NULL DEFAULT 'low'
                           CHECK (severity IN ('normal', 'low', 'medium', 'high',
                                               'critical')),
    is_primary_finding     boolean NOT NULL DEFAULT false,
    is_confirmed           boolean NOT NULL DEFAULT false,
    confirmed_by_user_id   uuid,
    confirmed_at           timestamptz,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    CHECK (is_confirmed OR confirmed_at IS NULL),
    FOREIGN KEY (organization_id, analysis_id)
        REFERENCES ai_analyses (organization_id, id) ON DELETE CASCADE,
    FOREIGN KEY (organization_id, scan_id)
        REFERENCES scans (organization_id, id),
    FOREIGN KEY (organization_id, instance_id)
        REFERENCES scan_instances (organization_id, id)
        ON DELETE SET NULL (instance_id),
    FOREIGN KEY (organization_id, confirmed_by_user_id)
        REFERENCES users (organization_id, id)
        ON DELETE SET NULL (confirmed_by_user_id)
);

CREATE INDEX findings_analysis_severity_idx ON findings (analysis_id, severity);
CREATE INDEX findings_scan_idx ON findings (scan_id);
CREATE INDEX findings_instance_idx ON findings (instance_id)
    WHERE instance_id IS NOT NULL;

CREATE TRIGGER findings_set_updated_at BEFORE UPDATE ON findings
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
