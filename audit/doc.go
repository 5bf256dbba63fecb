// Package audit owns the auditor's side of the coalition ledger: the append-only log of
// operator actions, signed checkpoints of the journal (with the ed25519 key kept outside
// the database), exports of the journal (JSON lines, CSV, hledger), the verification of
// the journal from the database or from an export, and the read-only reports (trial
// balance, account and member statements, the liability roll-forward, breakage).
//
// It never writes to the journal and never changes a row it did not append: everything
// here reads the books, except Record (one audit row) and Checkpointer (one checkpoint
// row), which only append.
package audit
