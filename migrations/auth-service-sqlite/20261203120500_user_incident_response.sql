-- Embedded-mode mirror of migrations/auth-service/20261203120500_user_incident_response.sql
-- (types translated as described in 20261122000001_init.sql).
-- Incident response for one user (docs/operations.md, "Incident response"): a user can be
-- disabled, and a revocation can cover every token of a user issued up to an instant.
ALTER TABLE users ADD COLUMN disabled_at INTEGER;

-- SQLite cannot change a CHECK constraint in place: the table is rebuilt with the wider one
-- (the documented ALTER TABLE procedure; sqlx runs each migration in a transaction).
CREATE TABLE revocations_new (
    id          TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('token', 'grant', 'client', 'user')),
    revoked_at  INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000000 AS INTEGER)),
    expires_at  INTEGER NOT NULL,
    -- For kind 'user': Unix seconds; tokens of the user issued at or before it are revoked.
    issued_before INTEGER,
    PRIMARY KEY (kind, id)
);
INSERT INTO revocations_new (id, kind, revoked_at, expires_at)
    SELECT id, kind, revoked_at, expires_at FROM revocations;
DROP TABLE revocations;
ALTER TABLE revocations_new RENAME TO revocations;
CREATE INDEX revocations_revoked_at ON revocations (revoked_at);
CREATE INDEX revocations_expires_at ON revocations (expires_at);
