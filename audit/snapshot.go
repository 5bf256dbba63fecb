package audit

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shopspring/decimal"

	"github.com/coalitionledger/coalition/ledger"
)

// pageSize is how many entries one read of the journal brings.
const pageSize = 2000

// snapshot is one consistent view of the books: a read-only REPEATABLE READ transaction in
// which the units, the journal's head, the checkpoints and the stored balances agree. The
// entries themselves are read through the ledger outside it: they are immutable, and the
// snapshot's head bounds which of them belong to the view.
type snapshot struct {
	tx          pgx.Tx
	units       ledger.Units
	head        ledger.Head
	checkpoints []Checkpoint
}

// openSnapshot begins the snapshot's transaction and reads its head; close ends it.
func openSnapshot(ctx context.Context, pool *pgxpool.Pool) (*snapshot, error) {
	tx, err := pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	s := &snapshot{tx: tx}
	if err := s.read(ctx); err != nil {
		s.close(ctx)
		return nil, err
	}
	return s, nil
}

func (s *snapshot) read(ctx context.Context) error {
	var code string
	var scale int32
	if err := s.tx.QueryRow(ctx, `SELECT currency, points_scale FROM coalition`).Scan(&code, &scale); err != nil {
		return fmt.Errorf("snapshot: coalition settings: %w", err)
	}
	var err error
	if s.units, err = ledger.NewUnits(code, scale); err != nil {
		return err
	}
	if err := s.tx.QueryRow(ctx, `SELECT position, hash, recorded_at FROM journal_head`).
		Scan(&s.head.Position, &s.head.Hash, &s.head.RecordedAt); err != nil {
		return fmt.Errorf("snapshot: journal head: %w", err)
	}
	// Every checkpoint: the newest guard the journal's tail.
	s.checkpoints, err = AllCheckpoints(ctx, s.tx)
	return err
}

// integrity checks what the chain cannot see, in the snapshot: no journal row lies past
// the head (written outside the chain); every posting and lot movement names the entry
// at its position; and every lot's state (what redemptions, expiry and settlement read)
// is the sum of its movements, with the issuer and expiry of the earn that made it.
// It returns the first Failure found, or nil.
func (s *snapshot) integrity(ctx context.Context) error {
	var pos *int64
	var what string
	err := s.tx.QueryRow(ctx, `SELECT position, what FROM (
		    SELECT max(position) AS position, 'an entry' AS what FROM entries
		    UNION ALL SELECT max(position), 'a posting' FROM postings
		    UNION ALL SELECT max(position), 'a lot movement' FROM lot_movements) r
		WHERE position > $1 ORDER BY position LIMIT 1`, s.head.Position).Scan(&pos, &what)
	if err == nil && pos != nil {
		return &Failure{Position: *pos, Reason: fmt.Sprintf("%s lies past the journal head at %d: it was written outside the chain", what, s.head.Position)}
	}
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("integrity: %w", err)
	}
	err = s.tx.QueryRow(ctx, `SELECT position, what FROM (
		    (SELECT p.position, 'a posting' AS what FROM postings p JOIN entries e ON e.position = p.position
		      WHERE p.entry_id <> e.id ORDER BY 1 LIMIT 1)
		    UNION ALL
		    (SELECT m.position, 'a lot movement' FROM lot_movements m JOIN entries e ON e.position = m.position
		      WHERE m.entry_id <> e.id ORDER BY 1 LIMIT 1)) r ORDER BY position LIMIT 1`).Scan(&pos, &what)
	if err == nil && pos != nil {
		return &Failure{Position: *pos, Reason: fmt.Sprintf("%s at this position names another entry", what)}
	}
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("integrity: %w", err)
	}
	var lot string
	err = s.tx.QueryRow(ctx, `SELECT l.id, l.position FROM lots l LEFT JOIN lot_movements m ON m.lot_id = l.id
		GROUP BY l.id, l.position, l.remaining, l.expired, l.issuer, l.expires_at
		HAVING l.remaining <> COALESCE(sum(m.points), 0)
		    OR l.expired <> COALESCE(-sum(m.points) FILTER (WHERE m.reason = 'expire'), 0)
		                    - COALESCE(sum(m.points) FILTER (WHERE m.reason = 'unexpire'), 0)
		    OR count(*) FILTER (WHERE m.reason = 'earn') <> 1
		    OR bool_or(m.issuer <> l.issuer)
		    OR bool_or(m.reason = 'earn' AND m.expires_at IS DISTINCT FROM l.expires_at)
		ORDER BY l.position, l.id LIMIT 1`).Scan(&lot, &pos)
	if err == nil && pos != nil {
		return &Failure{Position: *pos, Reason: fmt.Sprintf("lot %s (made here) is not what its lot movements say: its remaining, expired, issuer or expiry was changed", lot)}
	}
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("integrity: %w", err)
	}
	return nil
}

func (s *snapshot) close(ctx context.Context) { _ = s.tx.Rollback(ctx) }

// hashAt returns the stored hash of the entry at position (the genesis hash at 0).
func (s *snapshot) hashAt(ctx context.Context, position int64) ([]byte, error) {
	if position == 0 {
		return ledger.GenesisHash, nil
	}
	var h []byte
	err := s.tx.QueryRow(ctx, `SELECT hash FROM entries WHERE position = $1`, position).Scan(&h)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("the journal has no entry at position %d", position)
	}
	if err != nil {
		return nil, fmt.Errorf("hash at %d: %w", position, err)
	}
	return h, nil
}

// balances calls fn with every account's stored balance, in name order.
func (s *snapshot) balances(ctx context.Context, fn func(ledger.AccountBalance) error) error {
	rows, err := s.tx.Query(ctx, `SELECT name, unit, balance FROM accounts ORDER BY name COLLATE "C"`)
	if err != nil {
		return fmt.Errorf("balances: %w", err)
	}
	var b ledger.AccountBalance
	_, err = pgx.ForEachRow(rows, []any{&b.Account, &b.Unit, &b.Balance}, func() error { return fn(b) })
	if err != nil {
		return fmt.Errorf("balances: %w", err)
	}
	return nil
}

// pager reads the journal's entries in (after, to], a page at a time.
type pager struct {
	l     *ledger.Ledger
	after int64
	to    int64
	page  []ledger.Posted
	i     int
	done  bool
}

// next returns the next entry, or io.EOF after the last one. A gap in the positions ends
// the pages early; the chain check reports it.
func (p *pager) next(ctx context.Context) (*ledger.Posted, error) {
	if p.i >= len(p.page) {
		if p.done || p.after >= p.to {
			return nil, io.EOF
		}
		n := min(int64(pageSize), p.to-p.after)
		page, err := p.l.Journal(ctx, p.after, int(n))
		if err != nil {
			return nil, err
		}
		if len(page) == 0 {
			p.done = true
			return nil, io.EOF
		}
		// Keep only what the view holds: an entry past `to` (found across a gap) is not
		// in it.
		k := 0
		for k < len(page) && page[k].Position <= p.to {
			k++
		}
		p.page, p.i = page[:k], 0
		if k == 0 {
			p.done = true
			return nil, io.EOF
		}
		p.after = p.page[k-1].Position
		if int64(len(page)) < n {
			p.done = true
		}
	}
	e := &p.page[p.i]
	p.i++
	return e, nil
}

// sumPostings adds an entry's postings to the running sums per account.
func sumPostings(sums map[string]accountSum, e *ledger.Posted) {
	for _, p := range e.Postings {
		s := sums[p.Account]
		s.unit = p.Unit
		s.total = s.total.Add(p.Amount)
		sums[p.Account] = s
	}
}

// accountSum is an account's unit and the sum of its postings.
type accountSum struct {
	unit  string
	total decimal.Decimal
}

// ownerExists finds the partner or member an account belongs to (the operator's accounts
// always exist), or says which does not.
func (s *snapshot) ownerExists(ctx context.Context, a ledger.Account) error {
	var found bool
	var err error
	switch {
	case a.Partner != "" && a.Partner != ledger.OperatorIssuer:
		err = s.tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM partners WHERE id = $1)`, a.Partner).Scan(&found)
		if err == nil && !found {
			return ledger.Errorf(ledger.CodeNotFound, "account %s: partner %s does not exist", a.Name, a.Partner)
		}
	case a.Member != "":
		err = s.tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM members WHERE id = $1)`, a.Member).Scan(&found)
		if err == nil && !found {
			return ledger.Errorf(ledger.CodeNotFound, "account %s: member %s does not exist", a.Name, a.Member)
		}
	}
	if err != nil {
		return fmt.Errorf("owner of %s: %w", a.Name, err)
	}
	return nil
}
