// Package settlement owns the nightly settlement of the coalition: netting the partners'
// positions, settlement runs, payment instructions and the settlement report.
//
// This part is pure: Positions, Fees and Net are functions over values, with no database
// and no clock, so that the run can be re-derived from the journal by anyone (an auditor
// recomputes a run and must get the same figures) and so that tests can hammer them. It
// must never read the clock, touch the database or round anything other than as DESIGN.md
// says: fees half-up once per partner per run, everything else exact.
package settlement
