-- +goose Up

-- A batch of entries no longer has to hold the journal head from its first round trip to
-- its commit. A server plans each batch on the head it keeps in memory, which may be the
-- end of a batch still being written, and writes it while that batch commits; the head
-- row is only taken at the end, by advance_journal_head, just before COMMIT. The database
-- stays the judge: the head advances only from exactly the position, hash and terms
-- version the batch chained onto, so whatever a server believes, positions stay gap-free,
-- the hash chain unbroken, and no batch commits on terms changed before it. A batch whose
-- head has moved (the batch ahead failed, another process or a settlement run wrote, the
-- terms changed) fails with a serialization failure and is run again, holding the head
-- from its first round trip as before.
-- +goose StatementBegin
CREATE FUNCTION advance_journal_head(from_position bigint, from_hash bytea, terms bigint,
                                     to_position bigint, to_hash bytea, to_recorded_at timestamptz)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    head journal_head;
BEGIN
    -- Waits for a batch that has advanced the head and not yet committed.
    SELECT * INTO head FROM journal_head FOR NO KEY UPDATE;
    IF head.position <> from_position OR head.hash <> from_hash OR head.terms_version <> terms THEN
        RAISE EXCEPTION 'the journal head moved: at % (terms version %), the batch chained onto % (terms version %)',
            head.position, head.terms_version, from_position, terms
            USING ERRCODE = 'serialization_failure';
    END IF;
    IF to_position < from_position OR to_recorded_at < head.recorded_at THEN
        RAISE EXCEPTION 'the journal head cannot move back' USING ERRCODE = 'check_violation';
    END IF;
    UPDATE journal_head SET position = to_position, hash = to_hash, recorded_at = to_recorded_at;
END $$;
-- +goose StatementEnd

-- A batch that writes no entries (only refusals to remember) checks the terms version it
-- decided on instead, and keeps the terms from changing until it commits.
-- +goose StatementBegin
CREATE FUNCTION check_terms_version(terms bigint) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    now_terms bigint;
BEGIN
    SELECT terms_version INTO now_terms FROM journal_head FOR SHARE;
    IF now_terms <> terms THEN
        RAISE EXCEPTION 'the terms changed: version % now, the batch decided on version %', now_terms, terms
            USING ERRCODE = 'serialization_failure';
    END IF;
END $$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION check_terms_version(bigint);
DROP FUNCTION advance_journal_head(bigint, bytea, bigint, bigint, bytea, timestamptz);
