// Package ledger is the double-entry engine of the coalition: accounts, journal entries
// and their postings, balances, points lots and debts, idempotency records, and the hash
// chain over the journal.
//
// Every change to the books goes through Ledger.Post, which writes a batch of entries in
// one database transaction: it locks the member accounts the batch checks in sorted order,
// plans every entry against those locked balances and lots (a pure step, so that a
// rejected entry needs no savepoint), then assigns gap-free positions and chained hashes
// to the whole batch under one lock of the journal head and writes everything in one round
// trip. The package never prices anything: contracts, rates and members' identities
// belong to package partners, which hands the engine amounts, rates and expiry times.
package ledger
