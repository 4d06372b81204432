-- As migrations/token-vault/20261203120000: versions of a credential record never repeat, even
-- across DeleteCredential. Each delete records the highest version the record reached; a new
-- record starts above it, and a row at or below it is refused.
CREATE TABLE vault_credential_tombstones (
    user_id    TEXT    NOT NULL,
    provider   TEXT    NOT NULL,
    -- The highest version ever deleted for this record.
    version    INTEGER NOT NULL CHECK (version >= 1),
    deleted_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (user_id, provider)
) STRICT;
