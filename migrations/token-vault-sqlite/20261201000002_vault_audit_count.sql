-- As migrations/token-vault/20261201000002: identical accesses recorded within one write batch
-- are one row: `count` accesses, the first at `occurred_at`, the last at `last_occurred_at` (NULL
-- when the row is a single access). SQLite adds one column per statement; a CHECK on an added
-- column is allowed when it has a constant default, as here.
ALTER TABLE vault_audit ADD COLUMN count INTEGER NOT NULL DEFAULT 1 CHECK (count > 0);
ALTER TABLE vault_audit ADD COLUMN last_occurred_at TEXT;
