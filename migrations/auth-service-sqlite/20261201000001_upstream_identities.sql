-- Embedded-mode mirror of migrations/auth-service/20261201000001_upstream_identities.sql (types
-- translated as described in 20261122000001_init.sql).
-- Accounts at upstream identity providers linked to mcpauth users: the same (issuer, subject)
-- always maps to the same user, whichever client the login was for.
CREATE TABLE upstream_identities (
    upstream_issuer     TEXT NOT NULL,
    upstream_subject    TEXT NOT NULL,
    user_id             BLOB NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    -- the configured provider name the identity was first seen through (informational)
    provider            TEXT NOT NULL,
    username            TEXT,
    linked_at           INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000000 AS INTEGER)),
    last_login_at       INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000000 AS INTEGER)),
    PRIMARY KEY (upstream_issuer, upstream_subject)
);
CREATE INDEX upstream_identities_user ON upstream_identities (user_id);
