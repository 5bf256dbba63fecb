-- +goose Up

-- Holds: points reserved for a partner until captured, voided or timed out. held is what
-- the hold still reserves; rate is the partner's redeem rate at the hold's time, at which
-- a capture is priced.
CREATE TABLE holds (
    id         text PRIMARY KEY,
    member_id  text    NOT NULL,
    partner_id text    NOT NULL,
    entry_id   text    NOT NULL REFERENCES entries (id),
    position   bigint  NOT NULL,
    points     numeric NOT NULL CHECK (points > 0),
    held       numeric NOT NULL CHECK (held >= 0 AND held <= points),
    rate       numeric NOT NULL CHECK (rate >= 0),
    expires_at timestamptz NOT NULL,
    status     text    NOT NULL CHECK (status IN ('open', 'captured', 'voided'))
);
CREATE INDEX holds_open_idx ON holds (expires_at) WHERE status = 'open';

-- The lots a hold reserves, in the order it took them.
CREATE TABLE hold_lots (
    hold_id text    NOT NULL REFERENCES holds (id),
    seq     integer NOT NULL,
    lot_id  text    NOT NULL REFERENCES lots (id),
    points  numeric NOT NULL CHECK (points >= 0),
    PRIMARY KEY (hold_id, seq)
);

-- +goose Down
SELECT 1;
