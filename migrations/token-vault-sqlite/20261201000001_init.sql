-- token-vault, embedded mode (SQLite): the same tables, columns and constraints as
-- migrations/token-vault (Postgres), for one process on one file. Type translations:
--   bigint / integer       -> INTEGER (64-bit in SQLite)
--   text                   -> TEXT
--   bytea                  -> BLOB
--   timestamptz            -> TEXT, RFC 3339 in UTC, written by the vault (the defaults below
--                             give the same form), so it sorts and reads back as a timestamp
--   text[]                 -> TEXT holding a JSON array of strings (CHECKed)
--   jsonb                  -> TEXT holding JSON (CHECKed with json_valid)
--   bigserial PRIMARY KEY  -> INTEGER PRIMARY KEY AUTOINCREMENT
--   now()                  -> strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
-- Tables are STRICT, so a value of the wrong type is refused as Postgres would refuse it.
-- Like the Postgres store, the vault keeps its own migrations table (_token_vault_migrations).

CREATE TABLE vault_credentials (
    user_id          TEXT    NOT NULL,
    provider         TEXT    NOT NULL,
    -- Grows with every write; part of the ciphertext's authenticated data.
    version          INTEGER NOT NULL CHECK (version >= 1),
    -- Id of the key ring entry that sealed `sealed`.
    key_id           TEXT    NOT NULL,
    -- nonce (12 bytes) ‖ AES-256-GCM ciphertext ‖ tag, of the JSON upstream tokens.
    sealed           BLOB    NOT NULL,
    status           TEXT    NOT NULL DEFAULT 'connected'
                             CHECK (status IN ('connected', 'reauthorization_required')),
    scopes           TEXT    NOT NULL DEFAULT '[]'
                             CHECK (json_valid(scopes) AND json_type(scopes) = 'array'),
    -- Expiry of the current upstream access token; NULL when the upstream did not say.
    expires_at       TEXT    NULL,
    upstream_issuer  TEXT    NOT NULL DEFAULT '',
    upstream_subject TEXT    NOT NULL DEFAULT '',
    connected_at     TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at       TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (user_id, provider)
) STRICT;

-- `token-vault rekey` walks the rows not yet under the current key.
CREATE INDEX vault_credentials_key_id ON vault_credentials (key_id, user_id, provider);

-- Who read, wrote or deleted which user's credential; never a secret.
CREATE TABLE vault_audit (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    occurred_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    caller      TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    user_id     TEXT    NOT NULL,
    provider    TEXT    NOT NULL,
    outcome     TEXT    NOT NULL,
    detail      TEXT    NOT NULL DEFAULT '{}' CHECK (json_valid(detail))
) STRICT;
CREATE INDEX vault_audit_user ON vault_audit (user_id, occurred_at);
