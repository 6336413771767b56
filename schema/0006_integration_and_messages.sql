-- 0006: integrations, workflow rules, raw HL7 v2 messages, the sync log and
-- outbound deliveries.

-- A partner system: where deliveries go and how inbound senders are
-- recognised. Credentials are encrypted by the gateway before they reach
-- the database (DESIGN-NOTES §9): XChaCha20-Poly1305 with a subkey of the
-- master key chosen by credentials_key_version.
CREATE TABLE external_integrations (
    id                       uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id          uuid NOT NULL REFERENCES organizations (id),
    name                     text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    integration_type         text NOT NULL
                             CHECK (integration_type IN ('PACS', 'RIS', 'EMR', 'AI')),
    protocol                 text NOT NULL
                             CHECK (protocol IN ('fhir', 'mllp', 'http',
                                                 'dicomweb', 'hl7v2-file')),
    -- FHIR base URL, http(s) URL, or host:port for MLLP.
    endpoint                 text,
    auth_type                text NOT NULL DEFAULT 'none'
                             CHECK (auth_type IN ('none', 'basic', 'bearer',
                                                  'oauth2_client_credentials',
                                                  'api_key', 'mtls')),
    credentials_ciphertext   bytea,
    credentials_nonce        bytea CHECK (octet_length(credentials_nonce) = 24),
    credentials_key_version  integer CHECK (credentials_key_version >= 1),
    -- Inbound HL7 senders: MSH-3 / MSH-4 as they arrive; routes use them
    -- to find the organization of a message.
    remote_application       text,
    remote_facility          text,
    settings                 jsonb NOT NULL DEFAULT '{}'::jsonb
                             CHECK (jsonb_typeof(settings) = 'object'),
    is_active                boolean NOT NULL DEFAULT true,
    last_success_at          timestamptz,
    last_failure_at          timestamptz,
    last_error               text,
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT external_integrations_organization_id_name_key
        UNIQUE (organization_id, name),
    CONSTRAINT external_integrations_organization_id_id_key
        UNIQUE (organization_id, id),
    -- All three credential columns, or none.
    CONSTRAINT external_integrations_credentials_check
        CHECK ((credentials_ciphertext IS NULL) = (credentials_nonce IS NULL)
               AND (credentials_ciphertext IS NULL)
                   = (credentials_key_version IS NULL)),
    CHECK (remote_facility IS NULL OR remote_application IS NOT NULL)
);

-- One organization per inbound sender identity across the deployment.
CREATE UNIQUE INDEX external_integrations_remote_sender_key
    ON external_integrations (remote_application, remote_facility)
    NULLS NOT DISTINCT
    WHERE remote_application IS NOT NULL;

CREATE TRIGGER external_integrations_set_updated_at
    BEFORE UPDATE ON external_integrations
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- What happens when a scan or report appears or changes (DESIGN.md §2.3):
-- a matching rule queues an analysis or a delivery in the same transaction.
CREATE TABLE workflow_rules (
    id                       uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- NULL = applies to every organization.
    organization_id          uuid REFERENCES organizations (id),
    name                     text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    description              text,
    -- Lower runs first; the first matching rule per action wins unless
    -- conditions say otherwise (the jobs module documents evaluation).
    rule_order               integer NOT NULL DEFAULT 100,
    trigger_event            text NOT NULL
                             CHECK (trigger_event IN ('scan_created', 'scan_updated',
                                                      'scan_completed',
                                                      'analysis_completed',
                                                      'report_preliminary',
                                                      'report_final')),
    -- e.g. {"scan_type": ["CT"], "body_part": ["CHEST"], "priority": ["stat"]}
    conditions               jsonb NOT NULL DEFAULT '{}'::jsonb
                             CHECK (jsonb_typeof(conditions) = 'object'),
    action                   text NOT NULL
                             CHECK (action IN ('queue_analysis', 'deliver',
                                               'notify', 'assign_worklist')),
    model_id                 uuid REFERENCES ai_models (id),
    integration_id           uuid REFERENCES external_integrations (id)
                             ON DELETE CASCADE,
    analysis_priority        smallint NOT NULL DEFAULT 100,
    parameters               jsonb NOT NULL DEFAULT '{}'::jsonb
                             CHECK (jsonb_typeof(parameters) = 'object'),
    note                     text,
    is_active                boolean NOT NULL DEFAULT true,
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now(),
    CHECK (action <> 'queue_analysis' OR model_id IS NOT NULL),
    CHECK (action <> 'deliver' OR integration_id IS NOT NULL)
);

CREATE INDEX workflow_rules_lookup_idx
    ON workflow_rules (trigger_event, organization_id, rule_order)
    WHERE is_active;

CREATE TRIGGER workflow_rules_set_updated_at BEFORE UPDATE ON workflow_rules
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

ALTER TABLE ai_analyses
    ADD CONSTRAINT ai_analyses_workflow_rule_id_fkey
    FOREIGN KEY (workflow_rule_id) REFERENCES workflow_rules (id)
    ON DELETE SET NULL;

CREATE INDEX ai_analyses_workflow_rule_idx ON ai_analyses (workflow_rule_id)
    WHERE workflow_rule_id IS NOT NULL;

-- Raw HL7 v2 messages, exactly as received (and, later, as sent).
--
-- Idempotency (docs/schema.md, "hl7_messages"): one "key holder" row per
-- (organization_id, MSH-3, MSH-4, MSH-10) among inbound rows that are not
-- duplicates and not rejected. The intake writes
--   INSERT ... ON CONFLICT (organization_id, sending_application,
--       sending_facility, control_id)
--     WHERE direction = 'inbound' AND duplicate_of IS NULL
--       AND status IN ('received', 'processed') AND control_id IS NOT NULL
--   DO NOTHING RETURNING id
-- and for a key that already exists compares payload_hash: same hash ->
-- replay ack_payload, store nothing new; different hash -> store a row with
-- status 'duplicate' and duplicate_of = the key holder.
-- A note on intake tables. hl7_messages and sync_logs take a row (or two)
-- per message at thousands of messages a second. They carry no foreign key
-- to organizations: every insert would take a KEY SHARE lock on the same
-- organization row, which concurrent transactions turn into MultiXacts, and
-- that serialises the grouped commits. The gateway only writes organization
-- ids from its configuration (checked at start); sync_logs is a log whose
-- rows must outlive the rows they name, so it has no foreign keys at all.
CREATE TABLE hl7_messages (
    id                     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- NULL: the sender is not (yet) known to any organization.
    organization_id        uuid, -- no FK: see the note on intake tables
    direction              text NOT NULL
                           CHECK (direction IN ('inbound', 'outbound')),
    -- Configured listener name (inbound) or integration name (outbound).
    listener               text,
    peer_address           inet,
    -- MSH-3.1 .. MSH-6.1 (HD namespace id), unescaped, as the hl7v2
    -- parser returns them; '' when empty.
    sending_application    text NOT NULL DEFAULT '',
    sending_facility       text NOT NULL DEFAULT '',
    receiving_application  text NOT NULL DEFAULT '',
    receiving_facility     text NOT NULL DEFAULT '',
    -- No CHECKs on the MSH-derived text: a malformed message must still be
    -- stored (status failed/rejected) with whatever it said.
    message_datetime       text,
    message_type           text,
    trigger_event          text,
    message_structure      text,
    -- MSH-10; NULL when empty (such a message cannot be deduplicated).
    control_id             text,
    processing_id          text,
    version                text,
    accept_ack_type        text,
    application_ack_type   text,
    -- BLAKE2b-256 of raw.
    payload_hash           bytea NOT NULL CHECK (octet_length(payload_hash) = 32),
    raw                    bytea NOT NULL,
    -- MSH-18 as sent, or the charset the listener assumed.
    charset                text,
    status                 text NOT NULL DEFAULT 'received'
                           CHECK (status IN ('received', 'processed', 'failed',
                                             'duplicate', 'rejected')),
    ack_code               text CHECK (ack_code IN ('AA', 'AE', 'AR',
                                                    'CA', 'CE', 'CR')),
    -- The ACK we sent (inbound) or received (outbound), to replay it.
    ack_payload            text,
    error                  text,
    -- ERR-2 style location, e.g. 'PID^1^3^1^1'.
    error_location         text,
    received_at            timestamptz NOT NULL DEFAULT now(),
    processed_at           timestamptz,
    duplicate_of           uuid REFERENCES hl7_messages (id) ON DELETE CASCADE,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT hl7_messages_duplicate_check
        CHECK ((status = 'duplicate') = (duplicate_of IS NOT NULL)
               AND (duplicate_of IS NULL OR duplicate_of <> id))
);

CREATE UNIQUE INDEX hl7_messages_idempotency_key
    ON hl7_messages (organization_id, sending_application, sending_facility,
                     control_id)
    NULLS NOT DISTINCT
    WHERE direction = 'inbound' AND duplicate_of IS NULL
      AND status IN ('received', 'processed') AND control_id IS NOT NULL;
-- Retention purge and time-ordered inspection.
-- Rows that hold no key (stored as failed or rejected) are looked up by key
-- too, so that a repeat of the same bytes gets its original AE/AR again.
-- Partial: in normal traffic this index stays tiny.
CREATE INDEX hl7_messages_unkeyed_lookup_idx
    ON hl7_messages (organization_id, sending_application, sending_facility,
                     control_id)
    WHERE direction = 'inbound' AND status IN ('failed', 'rejected');
-- BRIN: time-ordered appends; a btree here would cost every insert.
CREATE INDEX hl7_messages_received_at_idx ON hl7_messages USING brin (received_at);
CREATE INDEX hl7_messages_duplicate_of_idx ON hl7_messages (duplicate_of)
    WHERE duplicate_of IS NOT NULL;

CREATE TRIGGER hl7_messages_set_updated_at BEFORE UPDATE ON hl7_messages
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- One row per inbound message, FHIR write and outbound attempt. Written at
-- the highest rate of any table, in the same transaction as the work it
-- records; bigint identity keys append to the right edge of the B-tree
-- (random UUIDs would split pages all over it) and give stable paging.
CREATE TABLE sync_logs (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organization_id  uuid, -- no FK: see the note on intake tables
    direction        text NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    protocol         text NOT NULL
                     CHECK (protocol IN ('mllp', 'http', 'fhir', 'hl7v2-file')),
    listener         text,
    -- Sender (inbound: MSH-3^MSH-4 or API key name) or receiver (outbound:
    -- integration name).
    sender           text,
    message_type     text,
    trigger_event    text,
    -- MSH-10, FHIR resource id/version, Location returned by the EMR, ...
    external_id      text,
    hl7_message_id   uuid, -- no FK: a log row outlives what it names
    outbound_delivery_id uuid,
    entity_type      text,
    entity_id        uuid,
    status           text NOT NULL
                     CHECK (status IN ('received', 'committed', 'processed',
                                       'failed', 'duplicate', 'rejected',
                                       'retrying', 'delivered', 'dead')),
    attempt          integer NOT NULL DEFAULT 1 CHECK (attempt >= 1),
    error            text,
    correlation_id   text,
    received_at      timestamptz NOT NULL DEFAULT now(),
    committed_at     timestamptz,
    duration_ms      numeric(12, 3) CHECK (duration_ms >= 0),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- BRIN: time-ordered appends; a btree here would cost every insert.
CREATE INDEX sync_logs_received_at_idx ON sync_logs USING brin (received_at);
-- Operators ask "what went wrong lately": only rows that are not plain
-- successes are indexed by status, so the common insert skips this index.
CREATE INDEX sync_logs_status_received_at_idx
    ON sync_logs (status, received_at)
    WHERE status NOT IN ('committed', 'processed', 'delivered');
CREATE INDEX sync_logs_external_id_idx ON sync_logs (external_id)
    WHERE external_id IS NOT NULL;
CREATE INDEX sync_logs_organization_received_at_idx
    ON sync_logs (organization_id, received_at);
CREATE INDEX sync_logs_hl7_message_idx ON sync_logs (hl7_message_id)
    WHERE hl7_message_id IS NOT NULL;
CREATE INDEX sync_logs_entity_idx ON sync_logs (entity_type, entity_id)
    WHERE entity_id IS NOT NULL;

CREATE TRIGGER sync_logs_set_updated_at BEFORE UPDATE ON sync_logs
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- One outbound side effect (FHIR create/update on an EMR, ORU^R01 to a
-- RIS), delivered at least once. Same lease/fencing design as ai_analyses:
--   queued -> running -> delivered | (queued again, later) | dead
-- failed = permanent error answered by the partner (FHIR 4xx, HL7 AE);
-- dead = retries exhausted. Both keep last_error and can be replayed.
CREATE TABLE outbound_deliveries (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id    uuid NOT NULL,
    integration_id     uuid NOT NULL,
    -- What is delivered: the internal row and/or its FHIR resource.
    entity_type        text NOT NULL,
    entity_id          uuid,
    resource_type      text,
    resource_id        text,
    operation          text NOT NULL
                       CHECK (operation IN ('create', 'update', 'delete',
                                            'conditional_create', 'transaction',
                                            'hl7v2_message')),
    status             text NOT NULL DEFAULT 'queued'
                       CHECK (status IN ('queued', 'running', 'delivered',
                                         'failed', 'dead', 'cancelled')),
    priority           smallint NOT NULL DEFAULT 100,
    attempts           integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts       integer NOT NULL DEFAULT 10 CHECK (max_attempts >= 1),
    next_attempt_at    timestamptz NOT NULL DEFAULT now(),
    locked_by          text,
    locked_until       timestamptz,
    -- Deliveries sharing a key (e.g. 'patient:<id>') are sent in id order.
    ordering_key       text,
    idempotency_key    text NOT NULL UNIQUE,
    -- Built at enqueue time (FHIR JSON, or ER7 text); NULL = build at send
    -- time from the entity.
    payload            text,
    content_type       text,
    hl7_message_id     uuid REFERENCES hl7_messages (id) ON DELETE SET NULL,
    response_status    integer,
    response_body      text,
    -- Id the partner assigned (FHIR Location, ACK MSA-2 ...).
    remote_id          text,
    last_error         text,
    delivered_at       timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT outbound_deliveries_lease_check
        CHECK ((status = 'running') = (locked_by IS NOT NULL
                                       AND locked_until IS NOT NULL)),
    FOREIGN KEY (organization_id, integration_id)
        REFERENCES external_integrations (organization_id, id)
) WITH (autovacuum_vacuum_scale_factor = 0.02,
        autovacuum_analyze_scale_factor = 0.02);

CREATE INDEX outbound_deliveries_ready_idx
    ON outbound_deliveries (priority, next_attempt_at, id)
    WHERE status = 'queued';
CREATE INDEX outbound_deliveries_lease_idx
    ON outbound_deliveries (locked_until) WHERE status = 'running';
CREATE INDEX outbound_deliveries_integration_status_idx
    ON outbound_deliveries (integration_id, status, created_at);
CREATE INDEX outbound_deliveries_ordering_key_idx
    ON outbound_deliveries (ordering_key, id)
    WHERE ordering_key IS NOT NULL
      AND status IN ('queued', 'running');
CREATE INDEX outbound_deliveries_entity_idx
    ON outbound_deliveries (entity_type, entity_id)
    WHERE entity_id IS NOT NULL;
CREATE INDEX outbound_deliveries_hl7_message_idx
    ON outbound_deliveries (hl7_message_id)
    WHERE hl7_message_id IS NOT NULL;

CREATE TRIGGER outbound_deliveries_set_updated_at
    BEFORE UPDATE ON outbound_deliveries
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- sync_logs.outbound_delivery_id has no FK either (see the note on intake
-- tables).

CREATE INDEX sync_logs_outbound_delivery_idx ON sync_logs (outbound_delivery_id)
    WHERE outbound_delivery_id IS NOT NULL;
