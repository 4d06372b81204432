-- auth-service system of record. Secrets never appear here in plaintext: refresh tokens,
-- registration tokens and client secrets are stored as SHA-256 digests only.

CREATE TABLE clients (
    client_id                   TEXT PRIMARY KEY,
    -- 'dynamic' (RFC 7591), 'static' (configuration) or 'cimd' (client ID metadata document)
    source                      TEXT NOT NULL CHECK (source IN ('dynamic', 'static', 'cimd')),
    client_name                 TEXT,
    redirect_uris               TEXT[] NOT NULL DEFAULT '{}',
    grant_types                 TEXT[] NOT NULL,
    response_types              TEXT[] NOT NULL DEFAULT '{code}',
    token_endpoint_auth_method  TEXT NOT NULL,
    scope                       TEXT,
    secret_sha256               BYTEA,
    registration_token_sha256   BYTEA,
    -- the full client metadata as registered, unknown fields included (RFC 7591 §2)
    metadata                    JSONB NOT NULL DEFAULT '{}',
    created_at                  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at                  TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_used_at                TIMESTAMPTZ
);
CREATE INDEX clients_dynamic_unused ON clients (created_at) WHERE source = 'dynamic';

CREATE TABLE users (
    user_id         UUID PRIMARY KEY,
    -- which login provider vouched for the user ('dev', 'local', later an upstream issuer)
    provider        TEXT NOT NULL,
    external_subject TEXT NOT NULL,
    username        TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_login_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (provider, external_subject)
);

-- The per-user registry of approved clients (MCP security best practices: per-client consent).
CREATE TABLE consents (
    user_id     UUID NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    client_id   TEXT NOT NULL REFERENCES clients (client_id) ON DELETE CASCADE,
    scope       TEXT NOT NULL,
    resource    TEXT NOT NULL,
    granted_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, client_id, resource)
);

-- A grant is one authorization (one code redemption) and the family of refresh tokens it grows.
CREATE TABLE grants (
    grant_id    UUID PRIMARY KEY,
    user_id     UUID NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    client_id   TEXT NOT NULL REFERENCES clients (client_id) ON DELETE CASCADE,
    scope       TEXT NOT NULL,
    resource    TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at  TIMESTAMPTZ NOT NULL,
    revoked_at  TIMESTAMPTZ,
    revoke_reason TEXT
);
CREATE INDEX grants_user ON grants (user_id);
CREATE INDEX grants_client ON grants (client_id);

CREATE TABLE refresh_tokens (
    token_sha256    BYTEA PRIMARY KEY,
    grant_id        UUID NOT NULL REFERENCES grants (grant_id) ON DELETE CASCADE,
    parent_sha256   BYTEA,
    scope           TEXT NOT NULL,
    resource        TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at      TIMESTAMPTZ NOT NULL,
    -- set when the token is spent by a rotation
    rotated_at      TIMESTAMPTZ,
    -- set when any successor of this token has itself been used (ends the grace period)
    successor_used  BOOLEAN NOT NULL DEFAULT false
);
CREATE INDEX refresh_tokens_grant ON refresh_tokens (grant_id);
CREATE INDEX refresh_tokens_expiry ON refresh_tokens (expires_at);

-- The revocation deny list: ids of revoked access tokens (jti), grants and deleted clients. Rows are needed
-- only until every token they cover would have expired anyway; a sweeper deletes them then.
CREATE TABLE revocations (
    id          TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('token', 'grant', 'client')),
    revoked_at  TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    expires_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE INDEX revocations_revoked_at ON revocations (revoked_at);
CREATE INDEX revocations_expires_at ON revocations (expires_at);

-- Every security event. Written in batches off the request path.
CREATE TABLE audit_events (
    id          BIGSERIAL PRIMARY KEY,
    occurred_at TIMESTAMPTZ NOT NULL,
    kind        TEXT NOT NULL,
    client_id   TEXT,
    user_id     UUID,
    grant_id    UUID,
    ip          TEXT,
    detail      JSONB NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_events_time ON audit_events (occurred_at);
CREATE INDEX audit_events_kind ON audit_events (kind, occurred_at);
