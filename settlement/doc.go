// Package settlement owns the nightly settlement of the coalition: netting the partners'
// positions, settlement runs, payment instructions and the settlement report.
//
// The arithmetic is pure (Tally, Settle, Net, Window, Day: values in, values out, no
// database and no clock), so that a run can be re-derived from the journal by anyone (an
// auditor recomputes a run and must get the same figures) and so that tests can hammer
// it; it rounds only as DESIGN.md says: fees half-up once per partner per run, everything
// else exact. Runs (run.go, check.go) reads the journal and posts through the ledger.
package settlement
