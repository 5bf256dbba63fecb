-- +goose Up

-- A change of the terms also takes the terms lock (an advisory lock of its own), which a
-- refusal decided before the engine takes shared while it checks the terms version and
-- stores itself (Ledger.Refuse): a change being committed is waited for and then seen,
-- and a later one waits for the refusal. Refusals never touch the journal head's row,
-- which every batch of the writer locks.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION bump_terms_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('coalition terms'), 0);
    UPDATE journal_head SET terms_version = terms_version + 1;
    RETURN NULL;
END $$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION bump_terms_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE journal_head SET terms_version = terms_version + 1;
    RETURN NULL;
END $$;
-- +goose StatementEnd
