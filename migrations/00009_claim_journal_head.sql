-- +goose Up

-- A batch of the writer may be planned on the head that the batch before it will leave,
-- before that batch commits (ledger/chain.go). It then claims the head as the first
-- statement of its writes: the claim waits for the head's row lock, and takes the head
-- only if it is exactly where the batch was planned to start (position, hash and terms
-- version), else the batch rolls back with a serialization failure and is planned again.
-- +goose StatementBegin
CREATE FUNCTION claim_journal_head(base_position bigint, base_hash bytea, base_terms bigint,
    new_position bigint, new_hash bytea, new_recorded_at timestamptz) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    head journal_head%ROWTYPE;
BEGIN
    -- In READ COMMITTED a row lock that waited returns the row as its holder committed it.
    SELECT * INTO head FROM journal_head FOR UPDATE;
    IF head.position <> base_position OR head.hash <> base_hash OR head.terms_version <> base_terms THEN
        RAISE EXCEPTION 'the journal head is at position % (terms %), not at % (terms %) where this batch was planned',
            head.position, head.terms_version, base_position, base_terms
            USING ERRCODE = 'serialization_failure';
    END IF;
    UPDATE journal_head SET position = new_position, hash = new_hash, recorded_at = new_recorded_at;
END $$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION claim_journal_head(bigint, bytea, bigint, bigint, bytea, timestamptz);
