-- token-vault: each user's upstream credentials (ciphertext only) and the vault access trail.
-- The vault keeps its own migrations table (_token_vault_migrations), so it can share a database
-- with auth-service.

CREATE TABLE vault_credentials (
    user_id          text        NOT NULL,
    provider         text        NOT NULL,
    -- Grows with every write; part of the ciphertext's authenticated data.
    version          bigint      NOT NULL CHECK (version >= 1),
    -- Id of the key ring entry that sealed `sealed`.
    key_id           text        NOT NULL,
    -- nonce (12 bytes) ‖ AES-256-GCM ciphertext ‖ tag, of the JSON upstream tokens.
    sealed           bytea       NOT NULL,
    status           text        NOT NULL DEFAULT 'connected'
                                 CHECK (status IN ('connected', 'reauthorization_required')),
    scopes           text[]      NOT NULL DEFAULT '{}',
    -- Expiry of the current upstream access token; NULL when the upstream did not say.
    expires_at       timestamptz NULL,
    upstream_issuer  text        NOT NULL DEFAULT '',
    upstream_subject text        NOT NULL DEFAULT '',
    connected_at     timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, provider)
);

-- `token-vault rekey` walks the rows not yet under the current key.
CREATE INDEX vault_credentials_key_id ON vault_credentials (key_id, user_id, provider);

-- Who read, wrote or deleted which user's credential; never a secret.
CREATE TABLE vault_audit (
    id          bigserial   PRIMARY KEY,
    occurred_at timestamptz NOT NULL DEFAULT now(),
    caller      text        NOT NULL,
    action      text        NOT NULL,
    user_id     text        NOT NULL,
    provider    text        NOT NULL,
    outcome     text        NOT NULL,
    detail      jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX vault_audit_user ON vault_audit (user_id, occurred_at);
