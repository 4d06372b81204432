-- Identical accesses recorded within one write batch (the writer gathers events for 10 ms) are
-- one row: `count` accesses, the first at `occurred_at`, the last at `last_occurred_at` (NULL
-- when the row is a single access). At thousands of GetAccessToken calls a second this is what
-- keeps the trail from costing a Postgres row per call.
ALTER TABLE vault_audit
    ADD COLUMN count integer NOT NULL DEFAULT 1 CHECK (count > 0),
    ADD COLUMN last_occurred_at timestamptz;
