-- auth-service system of record, embedded mode (SQLite through sqlx; see
-- services/auth-service/src/store/*/sqlite.rs). The same tables, columns, keys, constraints and
-- indexes as migrations/auth-service/ (Postgres), one file per Postgres migration with the same
-- version, so that the two stay side by side. Types are translated:
--
-- * TIMESTAMPTZ -> INTEGER, Unix time in microseconds (UTC). Postgres keeps microseconds too, so
--   a value round-trips exactly; integers compare and index cheaply, and "now() - interval" is
--   plain arithmetic. The code binds its clock explicitly; the defaults below only serve rows
--   written by hand.
-- * BYTEA -> BLOB. UUID -> BLOB (the 16 bytes, sqlx's encoding of `uuid::Uuid`).
-- * TEXT[] -> TEXT holding a JSON array of strings; JSONB -> TEXT holding JSON (both checked
--   with json_valid). BOOLEAN -> INTEGER 0/1. BIGSERIAL -> INTEGER PRIMARY KEY AUTOINCREMENT.
--
-- Secrets never appear here in plaintext: refresh tokens, registration tokens and client
-- secrets are stored as SHA-256 digests only.

CREATE TABLE clients (
    client_id                   TEXT PRIMARY KEY NOT NULL,
    -- 'dynamic' (RFC 7591), 'static' (configuration) or 'cimd' (client ID metadata document)
    source                      TEXT NOT NULL CHECK (source IN ('dynamic', 'static', 'cimd')),
    client_name                 TEXT,
    redirect_uris               TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(redirect_uris)),
    grant_types                 TEXT NOT NULL CHECK (json_valid(grant_types)),
    response_types              TEXT NOT NULL DEFAULT '["code"]' CHECK (json_valid(response_types)),
    token_endpoint_auth_method  TEXT NOT NULL,
    scope                       TEXT,
    secret_sha256               BLOB,
    registration_token_sha256   BLOB,
    -- the full client metadata as registered, unknown fields included (RFC 7591 §2)
    metadata                    TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(metadata)),
    created_at                  INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000000 AS INTEGER)),
    updated_at                  INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000000 AS INTEGER)),
    last_used_at                INTEGER
);
CREATE INDEX clients_dynamic_unused ON clients (created_at) WHERE source = 'dynamic';

CREATE TABLE users (
    user_id         BLOB PRIMARY KEY NOT NULL,
    -- which login provider vouched for the user ('dev', 'local', later an upstream issuer)
    provider        TEXT NOT NULL,
    external_subject TEXT NOT NULL,
    username        TEXT,
    created_at      INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000000 AS INTEGER)),
    last_login_at   INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000000 AS INTEGER)),
    UNIQUE (provider, external_subject)
);

-- The per-user registry of approved clients (MCP security best practices: per-client consent).
CREATE TABLE consents (
    user_id     BLOB NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    client_id   TEXT NOT NULL REFERENCES clients (client_id) ON DELETE CASCADE,
    scope       TEXT NOT NULL,
    resource    TEXT NOT NULL,
    granted_at  INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000000 AS INTEGER)),
    PRIMARY KEY (user_id, client_id, resource)
);

-- A grant is one authorization (one code redemption) and the family of refresh tokens it grows.
CREATE TABLE grants (
    grant_id    BLOB PRIMARY KEY NOT NULL,
    user_id     BLOB NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    client_id   TEXT NOT NULL REFERENCES clients (client_id) ON DELETE CASCADE,
    scope       TEXT NOT NULL,
    resource    TEXT NOT NULL,
    created_at  INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000000 AS INTEGER)),
    expires_at  INTEGER NOT NULL,
    revoked_at  INTEGER,
    revoke_reason TEXT
);
CREATE INDEX grants_user ON grants (user_id);
CREATE INDEX grants_client ON grants (client_id);

CREATE TABLE refresh_tokens (
    token_sha256    BLOB PRIMARY KEY NOT NULL,
    grant_id        BLOB NOT NULL REFERENCES grants (grant_id) ON DELETE CASCADE,
    parent_sha256   BLOB,
    scope           TEXT NOT NULL,
    resource        TEXT NOT NULL,
    created_at      INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000000 AS INTEGER)),
    expires_at      INTEGER NOT NULL,
    -- set when the token is spent by a rotation
    rotated_at      INTEGER,
    -- set when any successor of this token has itself been used (ends the grace period)
    successor_used  INTEGER NOT NULL DEFAULT 0 CHECK (successor_used IN (0, 1))
);
CREATE INDEX refresh_tokens_grant ON refresh_tokens (grant_id);
CREATE INDEX refresh_tokens_expiry ON refresh_tokens (expires_at);

-- The revocation deny list: ids of revoked access tokens (jti), grants and deleted clients. Rows are needed
-- only until every token they cover would have expired anyway; a sweeper deletes them then.
CREATE TABLE revocations (
    id          TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('token', 'grant', 'client')),
    revoked_at  INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000000 AS INTEGER)),
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE INDEX revocations_revoked_at ON revocations (revoked_at);
CREATE INDEX revocations_expires_at ON revocations (expires_at);

-- Every security event. Written in batches off the request path.
CREATE TABLE audit_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    occurred_at INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    client_id   TEXT,
    user_id     BLOB,
    grant_id    BLOB,
    ip          TEXT,
    detail      TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(detail))
);
CREATE INDEX audit_events_time ON audit_events (occurred_at);
CREATE INDEX audit_events_kind ON audit_events (kind, occurred_at);
