-- +goose Up

-- The coalition's settings that the engine needs: one row. The points scale and the
-- currency freeze at the first journal entry (enforced by a trigger).
CREATE TABLE coalition (
    id           boolean PRIMARY KEY DEFAULT true CHECK (id),
    currency     text    NOT NULL DEFAULT 'USD' CHECK (currency ~ '^[A-Z]{3}$'),
    points_scale integer NOT NULL DEFAULT 0 CHECK (points_scale BETWEEN 0 AND 6),
    time_zone    text    NOT NULL DEFAULT 'UTC'
);
INSERT INTO coalition DEFAULT VALUES;

-- Accounts are created on first use. balance is debits minus credits over all postings
-- (debit positive), kept up to date by the writer inside the posting transaction.
CREATE TABLE accounts (
    name       text PRIMARY KEY,
    kind       text NOT NULL,
    unit       text NOT NULL,
    member_id  text,
    partner_id text,
    balance    numeric NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX accounts_member_idx ON accounts (member_id) WHERE member_id IS NOT NULL;

-- The head of the journal: the last position and hash. The writer locks this row once per
-- batch, after it has locked the accounts the batch checks, and assigns the batch's
-- positions and hashes in one step.
CREATE TABLE journal_head (
    id          boolean PRIMARY KEY DEFAULT true CHECK (id),
    position    bigint  NOT NULL,
    hash        bytea   NOT NULL,
    recorded_at timestamptz NOT NULL
);
INSERT INTO journal_head VALUES (true, 0, decode(repeat('00', 32), 'hex'), '1970-01-01 00:00:00+00');

-- Entries: immutable, gap-free by position, hash-chained.
CREATE TABLE entries (
    id            text PRIMARY KEY,
    position      bigint NOT NULL UNIQUE CHECK (position > 0),
    kind          text   NOT NULL,
    partner_id    text   NOT NULL,
    member_id     text,
    reference     text,
    business_time timestamptz NOT NULL,
    recorded_at   timestamptz NOT NULL,
    metadata      jsonb  NOT NULL DEFAULT '{}',
    reverses      text REFERENCES entries (id),
    prev_hash     bytea  NOT NULL,
    hash          bytea  NOT NULL
);
CREATE UNIQUE INDEX entries_reference_idx ON entries (partner_id, kind, reference) WHERE reference IS NOT NULL;
CREATE INDEX entries_recorded_at_idx ON entries (recorded_at, position);
CREATE INDEX entries_member_idx ON entries (member_id, position) WHERE member_id IS NOT NULL;
CREATE INDEX entries_reverses_idx ON entries (reverses) WHERE reverses IS NOT NULL;

-- Postings: amount is signed, debit positive. position is the entry's, copied so that
-- balances as of a position need no join.
CREATE TABLE postings (
    position  bigint  NOT NULL,
    seq       integer NOT NULL,
    entry_id  text    NOT NULL REFERENCES entries (id),
    account   text    NOT NULL REFERENCES accounts (name),
    unit      text    NOT NULL,
    amount    numeric NOT NULL CHECK (amount <> 0),
    member_id text,
    PRIMARY KEY (position, seq)
);
CREATE INDEX postings_account_idx ON postings (account, position);

-- Lots: one per earn (or award). remaining counts the member's points still in the lot,
-- held points included; held counts the part reserved by open holds; expired counts the
-- points that expiry moved out and that no reversal has taken back yet.
CREATE TABLE lots (
    id         text PRIMARY KEY,
    member_id  text    NOT NULL,
    issuer     text    NOT NULL,
    entry_id   text    NOT NULL REFERENCES entries (id),
    position   bigint  NOT NULL,
    points     numeric NOT NULL CHECK (points > 0),
    remaining  numeric NOT NULL CHECK (remaining >= 0 AND remaining <= points),
    held       numeric NOT NULL DEFAULT 0 CHECK (held >= 0 AND held <= remaining),
    expired    numeric NOT NULL DEFAULT 0 CHECK (expired >= 0),
    expires_at timestamptz
);
CREATE INDEX lots_member_idx ON lots (member_id, expires_at, position) WHERE remaining > 0;
CREATE INDEX lots_expiry_idx ON lots (expires_at) WHERE remaining > held;

-- Lot movements are part of an entry: hashed with it, immutable. points is signed
-- (positive: into the lot; negative: out of it). consumer is the partner on whose behalf
-- points left a lot (the redeeming or clawing partner), empty otherwise; rate is the money
-- per point a consumption was valued at; expires_at is a new lot's expiry.
CREATE TABLE lot_movements (
    position  bigint  NOT NULL,
    seq       integer NOT NULL,
    entry_id  text    NOT NULL REFERENCES entries (id),
    lot_id    text    NOT NULL REFERENCES lots (id),
    member_id text    NOT NULL,
    issuer    text    NOT NULL,
    points    numeric NOT NULL CHECK (points <> 0),
    consumer  text    NOT NULL DEFAULT '',
    reason    text    NOT NULL,
    rate       numeric NOT NULL DEFAULT 0 CHECK (rate >= 0),
    expires_at timestamptz,
    PRIMARY KEY (position, seq)
);
CREATE INDEX lot_movements_lot_idx ON lot_movements (lot_id, position);
CREATE INDEX lot_movements_entry_idx ON lot_movements (entry_id);

-- Debts: points a clawback took that the member did not have, owed to the clawing
-- partner, repaid first from the next points that come in. rate is the clawing partner's
-- redeem rate at the clawback, used for the money leg of the repayment.
CREATE TABLE debts (
    id          text PRIMARY KEY,
    member_id   text    NOT NULL,
    partner_id  text    NOT NULL,
    entry_id    text    NOT NULL REFERENCES entries (id),
    position    bigint  NOT NULL,
    points      numeric NOT NULL CHECK (points > 0),
    outstanding numeric NOT NULL CHECK (outstanding >= 0 AND outstanding <= points),
    rate        numeric NOT NULL CHECK (rate >= 0)
);
CREATE INDEX debts_member_idx ON debts (member_id, position) WHERE outstanding > 0;

-- Idempotency records: the key, a hash of the request and the first answer (an accepted
-- entry or a rejection), stored in the transaction that wrote the entry. Partitioned by
-- month so that old keys are dropped a partition at a time.
CREATE TABLE idempotency_keys (
    partner_id   text  NOT NULL,
    key          text  NOT NULL,
    request_hash bytea NOT NULL,
    entry_id     text,
    result       jsonb NOT NULL,
    created_at   timestamptz NOT NULL
) PARTITION BY RANGE (created_at);
CREATE TABLE idempotency_keys_default PARTITION OF idempotency_keys DEFAULT;
CREATE INDEX idempotency_keys_lookup_idx ON idempotency_keys (partner_id, key);

-- The journal is append-only: no UPDATE, DELETE or TRUNCATE, whoever asks.
-- +goose StatementBegin
CREATE FUNCTION journal_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the journal is append-only: % on % is refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'integrity_constraint_violation';
END $$;
-- +goose StatementEnd
CREATE TRIGGER entries_append_only BEFORE UPDATE OR DELETE ON entries
    FOR EACH ROW EXECUTE FUNCTION journal_is_append_only();
CREATE TRIGGER entries_no_truncate BEFORE TRUNCATE ON entries
    FOR EACH STATEMENT EXECUTE FUNCTION journal_is_append_only();
CREATE TRIGGER postings_append_only BEFORE UPDATE OR DELETE ON postings
    FOR EACH ROW EXECUTE FUNCTION journal_is_append_only();
CREATE TRIGGER postings_no_truncate BEFORE TRUNCATE ON postings
    FOR EACH STATEMENT EXECUTE FUNCTION journal_is_append_only();
CREATE TRIGGER lot_movements_append_only BEFORE UPDATE OR DELETE ON lot_movements
    FOR EACH ROW EXECUTE FUNCTION journal_is_append_only();
CREATE TRIGGER lot_movements_no_truncate BEFORE TRUNCATE ON lot_movements
    FOR EACH STATEMENT EXECUTE FUNCTION journal_is_append_only();

-- Every entry balances per unit: checked in Go before writing, and again here over each
-- statement's new postings (the writer inserts all of a batch's postings in one statement).
-- +goose StatementBegin
CREATE FUNCTION postings_balance() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    SELECT entry_id, unit, sum(amount) AS total INTO bad
      FROM new_postings GROUP BY entry_id, unit HAVING sum(amount) <> 0 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'entry % does not balance in %: debits minus credits = %',
            bad.entry_id, bad.unit, bad.total USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
-- +goose StatementEnd
CREATE TRIGGER postings_balance AFTER INSERT ON postings
    REFERENCING NEW TABLE AS new_postings
    FOR EACH STATEMENT EXECUTE FUNCTION postings_balance();

-- The coalition's currency and points scale freeze at the first entry.
-- +goose StatementBegin
CREATE FUNCTION coalition_units_frozen() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Wait for any batch being written: the writer reads the settings under this lock.
    PERFORM 1 FROM journal_head FOR UPDATE;
    IF (NEW.currency <> OLD.currency OR NEW.points_scale <> OLD.points_scale)
       AND EXISTS (SELECT 1 FROM entries) THEN
        RAISE EXCEPTION 'the coalition''s currency and points scale are frozen once the journal has entries'
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
-- +goose StatementEnd
CREATE TRIGGER coalition_units_frozen BEFORE UPDATE ON coalition
    FOR EACH ROW EXECUTE FUNCTION coalition_units_frozen();

-- +goose Down
-- Forward-only: the journal is never rolled back.
SELECT 1;
