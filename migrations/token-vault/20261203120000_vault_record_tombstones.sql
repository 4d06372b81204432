-- Versions of a credential record never repeat, even across DeleteCredential: the version is part
-- of the ciphertext's authenticated data, so a row restored from before a delete must neither
-- decrypt under a later record's version nor be served as it is. Each delete records the highest
-- version the record reached; a new record starts above it, and a row at or below it is refused.
-- One row per (user, provider) ever deleted; existing records are unaffected (no tombstone yet).
CREATE TABLE vault_credential_tombstones (
    user_id    text        NOT NULL,
    provider   text        NOT NULL,
    -- The highest version ever deleted for this record.
    version    bigint      NOT NULL CHECK (version >= 1),
    deleted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, provider)
);
