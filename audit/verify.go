package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/coalitionledger/coalition/ledger"
)

// Failure says where the journal first fails verification and why: the position of the
// first entry that fails (its hash, its link, its balance per unit, a missing entry, a
// checkpoint over it), or, for a stored balance that differs from its postings, the
// account (with the position verified up to).
type Failure struct {
	Position   int64  `json:"position"`
	Account    string `json:"account,omitempty"`
	Checkpoint int64  `json:"checkpoint,omitempty"`
	Reason     string `json:"reason"`
}

// Error says where verification fails and why.
func (f *Failure) Error() string {
	if f.Account != "" {
		return fmt.Sprintf("verification fails at account %s (journal verified to position %d): %s", f.Account, f.Position, f.Reason)
	}
	return fmt.Sprintf("verification fails at position %d: %s", f.Position, f.Reason)
}

// Verification is the outcome of verifying the journal: what was checked, and the first
// failure (nil when everything holds).
type Verification struct {
	Source          string   `json:"source"` // "database" or "export"
	From            int64    `json:"from"`   // the first position checked
	To              int64    `json:"to"`     // the last position the source holds
	Entries         int64    `json:"entries"`
	Checkpoints     int      `json:"checkpoints"`
	Accounts        int      `json:"accounts"`         // accounts whose stored balance was checked
	BalancesChecked bool     `json:"balances_checked"` // false for a partial export
	TrustedKey      bool     `json:"trusted_key"`      // checkpoints checked against a given public key
	OK              bool     `json:"ok"`
	Failure         *Failure `json:"failure"`
}

// VerifyOptions tune a verification.
type VerifyOptions struct {
	// PublicKey is the operator's published key; nil checks each checkpoint against the key
	// it names (proving it intact, not who signed it).
	PublicKey ed25519.PublicKey
	// Progress, if not nil, is called now and then with the position reached and the last.
	Progress func(position, last int64)
}

// source is what verification reads, from the database or from an export.
type source struct {
	kind        string
	units       ledger.Units
	from        int64  // first position
	prevHash    []byte // hash of the entry before from
	to          int64  // last position
	toHash      []byte // hash of the entry at to
	checkpoints []Checkpoint
	next        func() (*ledger.Posted, error) // io.EOF after the last entry
	// balances calls fn with every stored balance in account order; nil when the source
	// has none (a partial export).
	balances func(fn func(ledger.AccountBalance) error) error
	// finish checks what the source says about itself after the last entry (an export's
	// end record); nil: nothing.
	finish func(entries int64) error
}

// VerifyDatabase verifies the journal in the database as of one snapshot: every entry's
// hash and link, its balance per unit, every checkpoint's signature and hash, and every
// account's stored balance against the sum of its postings.
func VerifyDatabase(ctx context.Context, pool *pgxpool.Pool, o VerifyOptions) (*Verification, error) {
	snap, err := openSnapshot(ctx, pool)
	if err != nil {
		return nil, err
	}
	defer snap.close(ctx)
	p := &pager{l: ledger.New(pool), to: snap.head.Position}
	src := &source{
		kind: "database", units: snap.units, from: 1, prevHash: ledger.GenesisHash,
		to: snap.head.Position, toHash: snap.head.Hash, checkpoints: snap.checkpoints,
		next:     func() (*ledger.Posted, error) { return p.next(ctx) },
		balances: func(fn func(ledger.AccountBalance) error) error { return snap.balances(ctx, fn) },
		finish:   func(int64) error { return snap.integrity(ctx) },
	}
	return verify(src, o)
}

// verify runs the checks over a source. Its error is a failure to read the source; what
// the checks find is in the Verification.
func verify(src *source, o VerifyOptions) (*Verification, error) {
	v := &Verification{Source: src.kind, From: src.from, To: src.to, TrustedKey: o.PublicKey != nil}
	fail := func(f *Failure) (*Verification, error) {
		v.Failure = f
		return v, nil
	}
	cps := append([]Checkpoint(nil), src.checkpoints...)
	sort.SliceStable(cps, func(i, j int) bool { return cps[i].Position < cps[j].Position })
	v.Checkpoints = len(cps)
	// checkpointsUpTo checks the signatures of the checkpoints at or before position, and
	// their hash against the chain's hash there (unknowable before the source's start).
	next := 0
	checkpointsUpTo := func(position int64, hash []byte) *Failure {
		for ; next < len(cps) && cps[next].Position <= position; next++ {
			cp := &cps[next]
			if err := cp.Verify(o.PublicKey); err != nil {
				return &Failure{Position: cp.Position, Checkpoint: cp.ID, Reason: fmt.Sprintf("checkpoint %d: %v", cp.ID, err)}
			}
			if cp.Position == position && cp.Hash != hex.EncodeToString(hash) {
				return &Failure{Position: cp.Position, Checkpoint: cp.ID,
					Reason: fmt.Sprintf("checkpoint %d signed hash %s at this position; the journal has %x", cp.ID, cp.Hash, hash)}
			}
		}
		return nil
	}
	if f := checkpointsUpTo(src.from-1, src.prevHash); f != nil {
		return fail(f)
	}
	chain := ledger.ResumeChain(src.units, src.from-1, src.prevHash)
	last, lastHash := src.from-1, src.prevHash
	sums := map[string]accountSum{}
	for {
		e, err := src.next()
		if errors.Is(err, io.EOF) {
			break
		}
		var f *Failure
		if errors.As(err, &f) {
			return fail(f)
		}
		if err != nil {
			return nil, err
		}
		if e.Position > src.to {
			return fail(&Failure{Position: e.Position, Reason: fmt.Sprintf("the entry lies past the end of the journal at %d", src.to)})
		}
		if err := chain.Check(e); err != nil {
			var cb *ledger.ChainBreak
			if errors.As(err, &cb) {
				return fail(&Failure{Position: cb.Position, Reason: cb.Reason})
			}
			return nil, err
		}
		sumPostings(sums, e)
		last, lastHash = e.Position, e.Hash
		v.Entries++
		if f := checkpointsUpTo(last, lastHash); f != nil {
			return fail(f)
		}
		if o.Progress != nil && v.Entries%pageSize == 0 {
			o.Progress(last, src.to)
		}
	}
	if o.Progress != nil {
		o.Progress(last, src.to)
	}
	if last < src.to {
		reason := "the entry is missing"
		if next < len(cps) {
			reason = fmt.Sprintf("the entry is missing (checkpoint %d signs position %d)", cps[next].ID, cps[next].Position)
		}
		return fail(&Failure{Position: last + 1, Reason: reason})
	}
	if !bytes.Equal(lastHash, src.toHash) {
		return fail(&Failure{Position: src.to, Reason: "the journal head's hash is not the last entry's hash"})
	}
	if next < len(cps) {
		cp := cps[next]
		return fail(&Failure{Position: last + 1, Checkpoint: cp.ID,
			Reason: fmt.Sprintf("checkpoint %d signs position %d, past the end of the journal at %d: entries are missing", cp.ID, cp.Position, last)})
	}
	if src.finish != nil {
		if err := src.finish(v.Entries); err != nil {
			var f *Failure
			if errors.As(err, &f) {
				return fail(f)
			}
			return nil, err
		}
	}
	if src.balances != nil {
		v.BalancesChecked = true
		var first *Failure
		err := src.balances(func(b ledger.AccountBalance) error {
			v.Accounts++
			s, ok := sums[b.Account]
			delete(sums, b.Account)
			if first != nil {
				return nil
			}
			switch {
			case ok && s.unit != b.Unit:
				first = &Failure{Position: last, Account: b.Account, Reason: fmt.Sprintf("the account is in %s but its postings are in %s", b.Unit, s.unit)}
			case !b.Balance.Equal(s.total):
				first = &Failure{Position: last, Account: b.Account, Reason: fmt.Sprintf("stored balance %s, sum of postings %s", b.Balance, s.total)}
			}
			return nil
		})
		var f *Failure
		if errors.As(err, &f) {
			return fail(f)
		}
		if err != nil {
			return nil, err
		}
		if first == nil && len(sums) > 0 {
			names := make([]string, 0, len(sums))
			for name := range sums {
				names = append(names, name)
			}
			sort.Strings(names)
			first = &Failure{Position: last, Account: names[0], Reason: fmt.Sprintf("the account has postings (sum %s) but no stored balance", sums[names[0]].total)}
		}
		if first != nil {
			return fail(first)
		}
	}
	v.OK = true
	return v, nil
}
