-- +goose Up

-- The operator's actions, append-only: who (the key or the command-line user), when, what,
-- and the action's details. Written by package audit, in the caller's transaction where it
-- has one.
CREATE TABLE audit_log (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor   text  NOT NULL CHECK (length(actor) BETWEEN 1 AND 200),
    action  text  NOT NULL CHECK (action ~ '^[a-z][a-z_.]{0,62}$'),
    details jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(details) = 'object')
);
CREATE INDEX audit_log_action_idx ON audit_log (action, id);

-- Checkpoints: the journal's position and head hash at a moment, signed with the
-- operator's ed25519 key, which is kept outside the database. The signature covers the
-- canonical JSON of (position, hash, signed_at, reason); public_key is the key that
-- signed, for convenience only: an auditor checks signatures against the public key the
-- operator published, never against this column.
CREATE TABLE checkpoints (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    position   bigint      NOT NULL CHECK (position >= 0),
    hash       bytea       NOT NULL CHECK (length(hash) = 32),
    signed_at  timestamptz NOT NULL,
    reason     text        NOT NULL CHECK (length(reason) BETWEEN 1 AND 200),
    public_key bytea       NOT NULL CHECK (length(public_key) = 32),
    signature  bytea       NOT NULL CHECK (length(signature) = 64)
);
CREATE INDEX checkpoints_position_idx ON checkpoints (position, id);

CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION journal_is_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION journal_is_append_only();
CREATE TRIGGER checkpoints_append_only BEFORE UPDATE OR DELETE ON checkpoints
    FOR EACH ROW EXECUTE FUNCTION journal_is_append_only();
CREATE TRIGGER checkpoints_no_truncate BEFORE TRUNCATE ON checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION journal_is_append_only();

-- +goose Down
-- Forward-only: the audit log and the checkpoints are never rolled back.
SELECT 1;
