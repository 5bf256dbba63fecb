-- +goose Up

-- Settlement runs: one per business day of the coalition's time zone, in order. A run
-- settles the entries with business date <= its day, position <= its cut-off and in no
-- earlier run; its report is the figures as computed when it ran, which the check
-- re-derives from the journal alone.
CREATE TABLE settlement_runs (
    business_date   date        PRIMARY KEY,
    cutoff          bigint      NOT NULL CHECK (cutoff >= 0),
    previous_cutoff bigint      NOT NULL CHECK (previous_cutoff >= 0 AND previous_cutoff <= cutoff),
    currency        text        NOT NULL,
    report          jsonb       NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    created_by      text        NOT NULL
);

-- At most one payment instruction per partner and run; only its confirmation is ever
-- filled in afterwards, once.
CREATE TABLE settlement_instructions (
    business_date date        NOT NULL REFERENCES settlement_runs,
    partner_id    text        NOT NULL,
    direction     text        NOT NULL CHECK (direction IN ('pay_operator', 'paid_by_operator')),
    amount        numeric     NOT NULL CHECK (amount > 0),
    confirmed_at  timestamptz,
    payment_entry text        REFERENCES entries (id),
    PRIMARY KEY (business_date, partner_id),
    CHECK ((confirmed_at IS NULL) = (payment_entry IS NULL))
);

CREATE TRIGGER settlement_runs_append_only BEFORE UPDATE OR DELETE ON settlement_runs
    FOR EACH ROW EXECUTE FUNCTION journal_is_append_only();
CREATE TRIGGER settlement_runs_no_truncate BEFORE TRUNCATE ON settlement_runs
    FOR EACH STATEMENT EXECUTE FUNCTION journal_is_append_only();
CREATE TRIGGER settlement_instructions_no_truncate BEFORE TRUNCATE ON settlement_instructions
    FOR EACH STATEMENT EXECUTE FUNCTION journal_is_append_only();

-- +goose StatementBegin
CREATE FUNCTION settlement_instruction_confirm_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR OLD.confirmed_at IS NOT NULL
       OR NEW.business_date <> OLD.business_date OR NEW.partner_id <> OLD.partner_id
       OR NEW.direction <> OLD.direction OR NEW.amount <> OLD.amount THEN
        RAISE EXCEPTION 'a payment instruction is only ever confirmed, once: % on % is refused', TG_OP, TG_TABLE_NAME
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;
-- +goose StatementEnd
CREATE TRIGGER settlement_instructions_confirm_once BEFORE UPDATE OR DELETE ON settlement_instructions
    FOR EACH ROW EXECUTE FUNCTION settlement_instruction_confirm_once();

-- A run finds the entries of its own day recorded before the previous run's cut-off
-- (a till's clock a little ahead, a run made late) by business time.
CREATE INDEX entries_business_time_idx ON entries (business_time, position);

-- +goose Down
DROP INDEX entries_business_time_idx;
DROP TABLE settlement_instructions;
DROP TABLE settlement_runs;
DROP FUNCTION settlement_instruction_confirm_once();
