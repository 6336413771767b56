-- 0001: shared helpers, tenancy and people.
--
-- No extension is needed: gen_random_uuid() is built into PostgreSQL 13+.
-- The runner applies each file in its own transaction, so there is no
-- BEGIN/COMMIT here. docs/schema.md describes every table and column.

-- One trigger function keeps updated_at honest on every table. It fires
-- BEFORE UPDATE only, so the insert hot paths pay nothing for it.
CREATE FUNCTION set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

COMMENT ON FUNCTION set_updated_at() IS
    'BEFORE UPDATE trigger: sets NEW.updated_at to now() on every table';

-- Tenants. Every tenant-owned row carries organization_id.
CREATE TABLE organizations (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    -- Short stable code or OID; FHIR Organization.identifier, HL7 HD.
    identifier      text NOT NULL UNIQUE
                    CHECK (identifier ~ '^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$'),
    type            text NOT NULL DEFAULT 'hospital'
                    CHECK (type IN ('hospital', 'clinic', 'imaging_center',
                                    'laboratory', 'teleradiology', 'other')),
    email           text,
    phone           text,
    address_line1   text,
    address_line2   text,
    city            text,
    state           text,
    postal_code     text,
    country         text,
    timezone        text NOT NULL DEFAULT 'UTC',
    is_active       boolean NOT NULL DEFAULT true,
    settings        jsonb NOT NULL DEFAULT '{}'::jsonb
                    CHECK (jsonb_typeof(settings) = 'object'),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TRIGGER organizations_set_updated_at BEFORE UPDATE ON organizations
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- People who log in (admin UI) or act in the workflow, and the service
-- identities of integrations. Email is stored lower-cased so that the plain
-- UNIQUE(email, organization_id) index is also the case-insensitive one.
CREATE TABLE users (
    id                    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id       uuid NOT NULL REFERENCES organizations (id),
    email                 text NOT NULL
                          CHECK (email = lower(email) AND email LIKE '%_@_%'),
    first_name            text,
    last_name             text,
    middle_name           text,
    role                  text NOT NULL
                          CHECK (role IN ('radiologist', 'technician',
                                          'referring_physician', 'admin',
                                          'integration')),
    -- Argon2id string from crypto_pwhash_str; NULL = cannot log in with a
    -- password (integration users, SSO-only users).
    password_hash         text CHECK (password_hash LIKE '$argon2%'),
    -- Practitioner id as senders know it (XCN.1 in ORC-12/OBR-16/OBR-32),
    -- used to match HL7/FHIR practitioners to users.
    practitioner_id       text,
    license_number        text,
    specialization        text,
    phone                 text,
    is_active             boolean NOT NULL DEFAULT true,
    last_login_at         timestamptz,
    failed_login_count    integer NOT NULL DEFAULT 0
                          CHECK (failed_login_count >= 0),
    locked_until          timestamptz,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_email_organization_key UNIQUE (email, organization_id),
    -- Target of tenant-consistent composite foreign keys.
    CONSTRAINT users_organization_id_id_key UNIQUE (organization_id, id)
);

CREATE INDEX users_organization_practitioner_idx
    ON users (organization_id, practitioner_id)
    WHERE practitioner_id IS NOT NULL;

CREATE TRIGGER users_set_updated_at BEFORE UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- Admin UI sessions. Only a hash of the session token is stored.
CREATE TABLE user_sessions (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id  uuid NOT NULL,
    user_id          uuid NOT NULL,
    token_hash       bytea NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
    ip_address       inet,
    user_agent       text,
    expires_at       timestamptz NOT NULL,
    last_seen_at     timestamptz NOT NULL DEFAULT now(),
    revoked_at       timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (organization_id, user_id)
        REFERENCES users (organization_id, id) ON DELETE CASCADE
);

CREATE INDEX user_sessions_user_idx ON user_sessions (organization_id, user_id);
CREATE INDEX user_sessions_expires_idx ON user_sessions (expires_at);

CREATE TRIGGER user_sessions_set_updated_at BEFORE UPDATE ON user_sessions
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- Machine credentials: token gwk_<key_id>_<secret>. Only the keyed BLAKE2b
-- tag of the secret is stored (DESIGN-NOTES §9). key_id has no '_' so the
-- token splits unambiguously (the base64url secret may contain '_').
CREATE TABLE api_keys (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id     uuid NOT NULL REFERENCES organizations (id),
    key_id              text NOT NULL UNIQUE
                        CHECK (key_id ~ '^[A-Za-z0-9]{6,64}$'),
    tag                 bytea NOT NULL CHECK (octet_length(tag) = 32),
    name                text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    scopes              text[] NOT NULL DEFAULT '{}',
    -- The user acting through this key, if any (audit attribution).
    user_id             uuid,
    created_by_user_id  uuid REFERENCES users (id) ON DELETE SET NULL,
    expires_at          timestamptz,
    revoked_at          timestamptz,
    last_used_at        timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CHECK (array_position(scopes, NULL) IS NULL),
    FOREIGN KEY (organization_id, user_id)
        REFERENCES users (organization_id, id) ON DELETE SET NULL (user_id)
);

CREATE INDEX api_keys_organization_idx ON api_keys (organization_id);

CREATE TRIGGER api_keys_set_updated_at BEFORE UPDATE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
