-- +goose Up

-- The rest of the coalition's settings. The currency, points scale and time zone freeze at
-- the first journal entry.
ALTER TABLE coalition
    ADD COLUMN point_value     numeric NOT NULL DEFAULT 0.01 CHECK (point_value > 0),
    ADD COLUMN settlement_time text    NOT NULL DEFAULT '02:00',
    ADD COLUMN tiers           jsonb   NOT NULL DEFAULT '[]';

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION coalition_units_frozen() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Wait for any batch being written: the writer reads the settings under this lock.
    PERFORM 1 FROM journal_head FOR UPDATE;
    IF (NEW.currency <> OLD.currency OR NEW.points_scale <> OLD.points_scale OR NEW.time_zone <> OLD.time_zone)
       AND EXISTS (SELECT 1 FROM entries) THEN
        RAISE EXCEPTION 'the coalition''s currency, points scale and time zone are frozen once the journal has entries'
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
-- +goose StatementEnd

CREATE TABLE partners (
    id         text PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9_-]{0,62}$' AND id <> 'operator'),
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    status     text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Contract versions: terms never rewrite history, so a version is only ever added.
CREATE TABLE contracts (
    partner_id     text    NOT NULL REFERENCES partners (id),
    version        integer NOT NULL CHECK (version > 0),
    effective_from timestamptz NOT NULL,
    terms          jsonb   NOT NULL,
    created_at     timestamptz NOT NULL,
    PRIMARY KEY (partner_id, version)
);

-- Members belong to the coalition. phone is E.164; both identifiers are optional, unique,
-- and erasable (the journal names members by id only).
CREATE TABLE members (
    id         text PRIMARY KEY,
    phone      text UNIQUE,
    card       text UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Net points earned per member and business date (in the coalition's time zone), kept by
-- the writer with every earn and earn reversal, so that a tier never scans history.
CREATE TABLE member_earned_days (
    member_id text    NOT NULL,
    day       date    NOT NULL,
    points    numeric NOT NULL,
    PRIMARY KEY (member_id, day)
);
ALTER TABLE lots ADD COLUMN business_day date;

-- API keys, stored as SHA-256 of the secret; one role each.
CREATE TABLE api_keys (
    id          text PRIMARY KEY,
    secret_hash bytea NOT NULL UNIQUE,
    role        text  NOT NULL CHECK (role IN ('partner', 'operator', 'auditor')),
    partner_id  text REFERENCES partners (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    CHECK ((role = 'partner') = (partner_id IS NOT NULL))
);

-- +goose Down
SELECT 1;
