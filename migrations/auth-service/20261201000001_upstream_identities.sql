-- Accounts at upstream identity providers linked to mcpauth users: the same (issuer, subject)
-- always maps to the same user, whichever client the login was for.
CREATE TABLE upstream_identities (
    upstream_issuer     TEXT NOT NULL,
    upstream_subject    TEXT NOT NULL,
    user_id             UUID NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    -- the configured provider name the identity was first seen through (informational)
    provider            TEXT NOT NULL,
    username            TEXT,
    linked_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_login_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (upstream_issuer, upstream_subject)
);
CREATE INDEX upstream_identities_user ON upstream_identities (user_id);
