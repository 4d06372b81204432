-- Incident response for one user (docs/operations.md, "Incident response"): a user can be
-- disabled, and a revocation can cover every token of a user issued up to an instant.
ALTER TABLE users ADD COLUMN disabled_at TIMESTAMPTZ;

ALTER TABLE revocations DROP CONSTRAINT revocations_kind_check;
ALTER TABLE revocations ADD CONSTRAINT revocations_kind_check
    CHECK (kind IN ('token', 'grant', 'client', 'user'));
-- For kind 'user': Unix seconds; tokens of the user issued at or before it are revoked.
ALTER TABLE revocations ADD COLUMN issued_before BIGINT;
