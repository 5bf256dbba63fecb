-- +goose Up

-- A first answer is stored to be given back whole, never queried inside: json keeps the
-- text as written, where jsonb would take it apart on every insert (the writer stores
-- one per request, while it holds the journal head).
ALTER TABLE idempotency_keys ALTER COLUMN result TYPE json USING result::json;

-- +goose Down
SELECT 1;
