-- 0007: versioned FHIR resources, their history and a minimal search index.
--
-- Reads, vreads, history and searches are served from these tables; the
-- internal rows (patients, scans, reports, ...) are linked by entity_id.

-- The current version of every resource. A delete keeps the row with
-- deleted = true (and a history row), so the id is never reused and a read
-- answers 410 Gone.
CREATE TABLE fhir_resources (
    organization_id  uuid NOT NULL REFERENCES organizations (id),
    resource_type    text NOT NULL CHECK (resource_type ~ '^[A-Z][A-Za-z]{1,63}$'),
    -- The FHIR logical id (R4 id datatype).
    id               text NOT NULL CHECK (id ~ '^[A-Za-z0-9.-]{1,64}$'),
    version_id       integer NOT NULL DEFAULT 1 CHECK (version_id >= 1),
    last_updated     timestamptz NOT NULL DEFAULT now(),
    deleted          boolean NOT NULL DEFAULT false,
    -- The resource as stored, with meta.versionId/lastUpdated filled in.
    -- NULL only when deleted.
    body             jsonb CHECK (body IS NULL OR jsonb_typeof(body) = 'object'),
    -- The internal row this resource views (patients.id, scans.id,
    -- reports.id ...), when there is one.
    entity_id        uuid,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, resource_type, id),
    CHECK (deleted OR body IS NOT NULL)
);

CREATE UNIQUE INDEX fhir_resources_entity_key
    ON fhir_resources (organization_id, resource_type, entity_id)
    WHERE entity_id IS NOT NULL;
CREATE INDEX fhir_resources_last_updated_idx
    ON fhir_resources (organization_id, resource_type, last_updated);

CREATE TRIGGER fhir_resources_set_updated_at BEFORE UPDATE ON fhir_resources
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- Every version, including the current one (vread, _history).
CREATE TABLE fhir_resource_history (
    organization_id  uuid NOT NULL,
    resource_type    text NOT NULL,
    id               text NOT NULL,
    version_id       integer NOT NULL CHECK (version_id >= 1),
    last_updated     timestamptz NOT NULL,
    deleted          boolean NOT NULL DEFAULT false,
    body             jsonb CHECK (body IS NULL OR jsonb_typeof(body) = 'object'),
    -- Bundle.entry.request.method for _history.
    method           text NOT NULL
                     CHECK (method IN ('POST', 'PUT', 'PATCH', 'DELETE')),
    -- Who wrote it (api_keys.id or users.id), for Provenance/audit.
    author_id        uuid,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, resource_type, id, version_id),
    CHECK (deleted OR body IS NOT NULL),
    FOREIGN KEY (organization_id, resource_type, id)
        REFERENCES fhir_resources (organization_id, resource_type, id)
        ON DELETE CASCADE
);

-- Type- and system-level _history, newest first, _since.
CREATE INDEX fhir_resource_history_type_time_idx
    ON fhir_resource_history (organization_id, resource_type, last_updated);
CREATE INDEX fhir_resource_history_time_idx
    ON fhir_resource_history (organization_id, last_updated);

CREATE TRIGGER fhir_resource_history_set_updated_at
    BEFORE UPDATE ON fhir_resource_history
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- One row per (resource, search parameter, value) of the current version.
-- Rewritten with each version (delete by resource, insert). Minimal: the
-- FHIR search work extends it (quantity, uri, composite ...).
CREATE TABLE fhir_search_index (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organization_id  uuid NOT NULL,
    resource_type    text NOT NULL,
    resource_id      text NOT NULL,
    -- Search parameter code ('identifier', 'family', 'birthdate', ...).
    param_name       text NOT NULL CHECK (param_name ~ '^[A-Za-z_][A-Za-z0-9_.-]{0,63}$'),
    -- token: system|code (system NULL when the element has none).
    token_system     text,
    token_code       text,
    -- string: normalised (lower case, accents removed) for prefix match.
    string_value     text,
    -- date: the period the value covers, [low, high].
    date_low         timestamptz,
    date_high        timestamptz,
    -- reference: 'Type/id' relative reference.
    reference        text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CHECK (date_low IS NULL OR date_high IS NULL OR date_low <= date_high),
    CHECK (num_nonnulls(token_code, string_value, date_low, date_high,
                        reference) >= 1),
    FOREIGN KEY (organization_id, resource_type, resource_id)
        REFERENCES fhir_resources (organization_id, resource_type, id)
        ON DELETE CASCADE
);

CREATE INDEX fhir_search_index_resource_idx
    ON fhir_search_index (organization_id, resource_type, resource_id);
CREATE INDEX fhir_search_index_token_idx
    ON fhir_search_index (organization_id, resource_type, param_name,
                          token_code, token_system)
    WHERE token_code IS NOT NULL;
CREATE INDEX fhir_search_index_string_idx
    ON fhir_search_index (organization_id, resource_type, param_name,
                          string_value text_pattern_ops)
    WHERE string_value IS NOT NULL;
CREATE INDEX fhir_search_index_date_idx
    ON fhir_search_index (organization_id, resource_type, param_name,
                          date_low, date_high)
    WHERE date_low IS NOT NULL OR date_high IS NOT NULL;
CREATE INDEX fhir_search_index_reference_idx
    ON fhir_search_index (organization_id, resource_type, param_name,
                          reference)
    WHERE reference IS NOT NULL;

CREATE TRIGGER fhir_search_index_set_updated_at
    BEFORE UPDATE ON fhir_search_index
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
