-- +goose Up

-- The terms version: a counter bumped in the transaction of every change to what prices or
-- authorises a request (the coalition's settings, partners, contracts, API keys). A server
-- keeps those in memory stamped with the version it read them at; the writer reads the
-- version under the journal head's lock and sends back every entry priced at another one.
-- Bumping it takes the head's lock too, so a change and a batch never cross: no entry
-- commits on terms older than the last change committed before it.
-- It starts at 1: an entry whose TermsVersion is 0 depends on no cached terms and is not
-- checked, so 0 is never a version.
ALTER TABLE journal_head ADD COLUMN terms_version bigint NOT NULL DEFAULT 1;

-- +goose StatementBegin
CREATE FUNCTION bump_terms_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE journal_head SET terms_version = terms_version + 1;
    RETURN NULL;
END $$;
-- +goose StatementEnd
CREATE TRIGGER coalition_terms_version AFTER INSERT OR UPDATE OR DELETE ON coalition
    FOR EACH STATEMENT EXECUTE FUNCTION bump_terms_version();
CREATE TRIGGER partners_terms_version AFTER INSERT OR UPDATE OR DELETE ON partners
    FOR EACH STATEMENT EXECUTE FUNCTION bump_terms_version();
CREATE TRIGGER contracts_terms_version AFTER INSERT OR UPDATE OR DELETE ON contracts
    FOR EACH STATEMENT EXECUTE FUNCTION bump_terms_version();
CREATE TRIGGER api_keys_terms_version AFTER INSERT OR UPDATE OR DELETE ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION bump_terms_version();

-- +goose Down
SELECT 1;
