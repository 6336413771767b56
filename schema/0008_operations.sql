-- 0008: operations: audit trail (hash-chained), metrics, alerts, settings.

-- Every PHI read and every change. Each writer instance appends to its own
-- chain (chain_id = instance id): hash = BLAKE2b-256(key = log key,
-- prev_hash || u64be(seq) || canonical(row)), DESIGN-NOTES §9. seq starts
-- at 1, whose prev_hash is NULL. bigint identity key: written at the rate of
-- PHI reads, appended in order.
CREATE TABLE audit_logs (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    timestamp        timestamptz NOT NULL DEFAULT now(),
    organization_id  uuid REFERENCES organizations (id),
    user_id          uuid REFERENCES users (id),
    api_key_id       uuid REFERENCES api_keys (id),
    -- 'read', 'search', 'create', 'update', 'delete', 'login', 'replay', ...
    action           text NOT NULL CHECK (action ~ '^[a-z][a-z0-9_.-]{0,63}$'),
    outcome          text NOT NULL DEFAULT 'success'
                     CHECK (outcome IN ('success', 'failure', 'denied')),
    resource_type    text,
    resource_id      text,
    ip_address       inet,
    user_agent       text,
    correlation_id   text,
    details          jsonb NOT NULL DEFAULT '{}'::jsonb
                     CHECK (jsonb_typeof(details) = 'object'),
    chain_id         text NOT NULL CHECK (length(chain_id) BETWEEN 1 AND 128),
    seq              bigint NOT NULL CHECK (seq >= 1),
    prev_hash        bytea,
    hash             bytea NOT NULL CHECK (octet_length(hash) = 32),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT audit_logs_chain_id_seq_key UNIQUE (chain_id, seq),
    CONSTRAINT audit_logs_prev_hash_check
        CHECK (CASE WHEN seq = 1 THEN prev_hash IS NULL
                    ELSE prev_hash IS NOT NULL
                         AND octet_length(prev_hash) = 32 END)
);

CREATE INDEX audit_logs_timestamp_user_idx ON audit_logs (timestamp, user_id);
CREATE INDEX audit_logs_organization_timestamp_idx
    ON audit_logs (organization_id, timestamp);
CREATE INDEX audit_logs_resource_idx
    ON audit_logs (resource_type, resource_id, timestamp)
    WHERE resource_id IS NOT NULL;
CREATE INDEX audit_logs_api_key_idx ON audit_logs (api_key_id, timestamp)
    WHERE api_key_id IS NOT NULL;
CREATE INDEX audit_logs_user_idx ON audit_logs (user_id, timestamp)
    WHERE user_id IS NOT NULL;

-- Audit rows are never changed (retention may delete whole old ranges).
-- The hash chain is what proves it; this trigger stops accidents.
CREATE FUNCTION audit_logs_forbid_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_logs rows are append-only'
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER audit_logs_append_only BEFORE UPDATE ON audit_logs
    FOR EACH ROW EXECUTE FUNCTION audit_logs_forbid_update();

CREATE TRIGGER audit_logs_set_updated_at BEFORE UPDATE ON audit_logs
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- Periodic samples (queue depths, latencies, throughput) for the admin
-- dashboard; /metrics itself is served from memory.
CREATE TABLE system_metrics (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organization_id  uuid REFERENCES organizations (id),
    metric_type      text NOT NULL CHECK (metric_type ~ '^[a-z][a-z0-9_.:]{0,127}$'),
    value            double precision NOT NULL,
    unit             text,
    labels           jsonb NOT NULL DEFAULT '{}'::jsonb
                     CHECK (jsonb_typeof(labels) = 'object'),
    -- Instance that recorded it (host:pid:boot-id).
    instance_id      text,
    recorded_at      timestamptz NOT NULL DEFAULT now(),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX system_metrics_type_recorded_at_idx
    ON system_metrics (metric_type, recorded_at);
CREATE INDEX system_metrics_recorded_at_idx ON system_metrics (recorded_at);

CREATE TRIGGER system_metrics_set_updated_at BEFORE UPDATE ON system_metrics
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- Conditions an operator must see: dead letters, a partner down, a
-- duplicate MSH-10 with a different payload, a broken audit chain ...
CREATE TABLE system_alerts (
    id                    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id       uuid REFERENCES organizations (id),
    alert_type            text NOT NULL CHECK (alert_type ~ '^[a-z][a-z0-9_.]{0,63}$'),
    severity              text NOT NULL DEFAULT 'warning'
                          CHECK (severity IN ('info', 'warning', 'error',
                                              'critical')),
    title                 text NOT NULL,
    message               text,
    -- Component that raised it ('mllp', 'outbound', 'jobs', 'audit' ...).
    source                text,
    details               jsonb NOT NULL DEFAULT '{}'::jsonb
                          CHECK (jsonb_typeof(details) = 'object'),
    -- While an alert with this key is open, raising it again bumps
    -- occurrences instead of adding a row.
    dedup_key             text,
    occurrences           integer NOT NULL DEFAULT 1 CHECK (occurrences >= 1),
    last_seen_at          timestamptz NOT NULL DEFAULT now(),
    status                text NOT NULL DEFAULT 'open'
                          CHECK (status IN ('open', 'acknowledged', 'resolved')),
    acknowledged_by       uuid REFERENCES users (id) ON DELETE SET NULL,
    acknowledged_at       timestamptz,
    resolved_at           timestamptz,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    CHECK (status <> 'resolved' OR resolved_at IS NOT NULL)
);

CREATE UNIQUE INDEX system_alerts_open_dedup_key
    ON system_alerts (dedup_key) WHERE status <> 'resolved';
CREATE INDEX system_alerts_status_idx
    ON system_alerts (status, severity, created_at);
CREATE INDEX system_alerts_organization_idx
    ON system_alerts (organization_id, created_at);

CREATE TRIGGER system_alerts_set_updated_at BEFORE UPDATE ON system_alerts
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- Runtime settings editable without a restart (the configuration file
-- stays the source of start-up settings). organization_id NULL = global.
CREATE TABLE system_settings (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id     uuid REFERENCES organizations (id),
    key                 text NOT NULL CHECK (key ~ '^[a-z][a-z0-9_.]{0,127}$'),
    value               jsonb NOT NULL,
    description         text,
    updated_by_user_id  uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT system_settings_organization_id_key_key
        UNIQUE NULLS NOT DISTINCT (organization_id, key)
);

CREATE TRIGGER system_settings_set_updated_at BEFORE UPDATE ON system_settings
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
