package ledger

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"

	"github.com/coalitionledger/coalition/internal/pg"
)

// Units returns the coalition's units as its settings say now.
func (l *Ledger) Units(ctx context.Context) (Units, error) {
	var code string
	var scale int32
	if err := l.pool.QueryRow(ctx, `SELECT currency, points_scale FROM coalition`).Scan(&code, &scale); err != nil {
		return Units{}, fmt.Errorf("coalition settings: %w", err)
	}
	return NewUnits(code, scale)
}

// Head is the last entry of the journal: its position, hash and record time.
type Head struct {
	Position   int64
	Hash       []byte
	RecordedAt time.Time
}

// Head returns the journal's head.
func (l *Ledger) Head(ctx context.Context) (Head, error) {
	var h Head
	err := l.pool.QueryRow(ctx, `SELECT position, hash, recorded_at FROM journal_head`).Scan(&h.Position, &h.Hash, &h.RecordedAt)
	if err != nil {
		return Head{}, fmt.Errorf("journal head: %w", err)
	}
	return h, nil
}

// PositionAt returns the position of the last entry recorded at or before t (0 if none).
func (l *Ledger) PositionAt(ctx context.Context, t time.Time) (int64, error) {
	var pos int64
	err := l.pool.QueryRow(ctx, `SELECT COALESCE(max(position), 0) FROM entries WHERE recorded_at <= $1`, t).Scan(&pos)
	if err != nil {
		return 0, fmt.Errorf("position at %s: %w", t, err)
	}
	return pos, nil
}

// AccountBalance is an account's balance: debits minus credits, so a debit balance is
// positive.
type AccountBalance struct {
	Account string          `json:"account"`
	Unit    string          `json:"unit"`
	Balance decimal.Decimal `json:"balance"`
}

// Balance returns an account's balance now. An account never posted to has balance zero.
func (l *Ledger) Balance(ctx context.Context, account string) (decimal.Decimal, error) {
	var bal decimal.Decimal
	err := l.pool.QueryRow(ctx, `SELECT balance FROM accounts WHERE name = $1`, account).Scan(&bal)
	if errors.Is(err, pgx.ErrNoRows) {
		return decimal.Zero, nil
	}
	if err != nil {
		return decimal.Zero, fmt.Errorf("balance of %s: %w", account, err)
	}
	return bal, nil
}

// BalanceAt returns an account's balance as of a journal position: the sum of its
// postings at or before it.
func (l *Ledger) BalanceAt(ctx context.Context, account string, position int64) (decimal.Decimal, error) {
	var bal decimal.Decimal
	err := l.pool.QueryRow(ctx, `SELECT COALESCE(sum(amount), 0) FROM postings WHERE account = $1 AND position <= $2`,
		account, position).Scan(&bal)
	if err != nil {
		return decimal.Zero, fmt.Errorf("balance of %s at %d: %w", account, position, err)
	}
	return bal, nil
}

// BalanceAtTime returns an account's balance as of a record time.
func (l *Ledger) BalanceAtTime(ctx context.Context, account string, t time.Time) (decimal.Decimal, error) {
	pos, err := l.PositionAt(ctx, t)
	if err != nil {
		return decimal.Zero, err
	}
	return l.BalanceAt(ctx, account, pos)
}

// AccountPosting is a posting as an account's history shows it.
type AccountPosting struct {
	Position     int64           `json:"position"`
	Entry        string          `json:"entry"`
	Kind         EntryKind       `json:"kind"`
	BusinessTime time.Time       `json:"business_time"`
	RecordedAt   time.Time       `json:"recorded_at"`
	Amount       decimal.Decimal `json:"amount"`
}

// Postings returns up to limit postings of an account after a position, oldest first.
func (l *Ledger) Postings(ctx context.Context, account string, after int64, limit int) ([]AccountPosting, error) {
	rows, err := l.pool.Query(ctx, `
		SELECT p.position, p.entry_id, e.kind, e.business_time, e.recorded_at, p.amount
		  FROM postings p JOIN entries e ON e.id = p.entry_id
		 WHERE p.account = $1 AND p.position > $2
		 ORDER BY p.position, p.seq LIMIT $3`, account, after, limit)
	if err != nil {
		return nil, fmt.Errorf("postings of %s: %w", account, err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (AccountPosting, error) {
		var p AccountPosting
		err := r.Scan(&p.Position, &p.Entry, &p.Kind, &p.BusinessTime, &p.RecordedAt, &p.Amount)
		return p, err
	})
}

// TrialBalance is every account's balance with the total per unit, which is zero in a
// sound journal.
type TrialBalance struct {
	Position int64                      `json:"position"`
	Accounts []AccountBalance           `json:"accounts"`
	Totals   map[string]decimal.Decimal `json:"totals"`
}

// TrialBalance returns the trial balance as of a position (0, or any position past the
// head: now, its Position the head's, as the auditor's report answers), accounts in name
// order. The head and the balances are read in one snapshot, so the figures are those of
// the position they are given at.
func (l *Ledger) TrialBalance(ctx context.Context, position int64) (*TrialBalance, error) {
	tb := &TrialBalance{Totals: map[string]decimal.Decimal{}}
	err := pgx.BeginTxFunc(ctx, l.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var head int64
		if err := tx.QueryRow(ctx, `SELECT position FROM journal_head`).Scan(&head); err != nil {
			return err
		}
		var err error
		tb.Position, tb.Accounts, err = BalancesAt(ctx, tx, position, head)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("trial balance: %w", err)
	}
	for _, b := range tb.Accounts {
		tb.Totals[b.Unit] = tb.Totals[b.Unit].Add(b.Balance)
	}
	return tb, nil
}

// BeforeFirstEntry is the position of a trial balance as of a time before the journal's
// first entry: every balance is zero.
const BeforeFirstEntry int64 = -1

// BalancesAt returns, inside tx (a snapshot whose journal head is at head), the balance
// of every account posted to by the position given (0, or past the head: the head;
// BeforeFirstEntry: none has a balance yet), in name order (bytewise),
// and the position it answered at. It is the one query behind the
// engine's trial balance and the auditor's, so that both list the same accounts: an
// account made for a request that was refused, never posted to, is in neither.
func BalancesAt(ctx context.Context, tx pgx.Tx, position, head int64) (int64, []AccountBalance, error) {
	if position < 0 {
		return 0, []AccountBalance{}, nil
	}
	// At the head the stored balances are the figures (verify holds them to their
	// postings); before it, the postings up to the position are summed.
	query := `SELECT a.name, a.unit, sum(p.amount)
		  FROM accounts a JOIN postings p ON p.account = a.name AND p.position <= $1
		 GROUP BY a.name, a.unit ORDER BY a.name COLLATE "C"`
	if position == 0 || position >= head {
		position = head
		query = `SELECT name, unit, balance FROM accounts a
		 WHERE EXISTS (SELECT FROM postings p WHERE p.account = a.name AND p.position <= $1)
		 ORDER BY name COLLATE "C"`
	}
	rows, err := tx.Query(ctx, query, position)
	if err != nil {
		return 0, nil, err
	}
	balances, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (AccountBalance, error) {
		var b AccountBalance
		err := r.Scan(&b.Account, &b.Unit, &b.Balance)
		return b, err
	})
	return position, balances, err
}

// lotColumns are the columns scanLot reads, in its order.
const lotColumns = `id, member_id, issuer, entry_id, position, points, remaining, held, expired, expires_at`

func scanLot(r pgx.CollectableRow) (Lot, error) {
	var lot Lot
	err := r.Scan(&lot.ID, &lot.Member, &lot.Issuer, &lot.Entry, &lot.Position, &lot.Points,
		&lot.Remaining, &lot.Held, &lot.Expired, &lot.ExpiresAt)
	return lot, err
}

// holdColumns are the columns scanHold reads, in its order.
const holdColumns = `id, member_id, partner_id, entry_id, position, points, held, rate, expires_at, status`

func scanHold(r pgx.Row) (Hold, error) {
	var h Hold
	err := r.Scan(&h.ID, &h.Member, &h.Partner, &h.Entry, &h.Position, &h.Points, &h.Held, &h.Rate, &h.ExpiresAt, &h.Status)
	h.ExpiresAt = h.ExpiresAt.UTC()
	return h, err
}

// Lots returns a member's lots that still hold points, in consumption order.
func (l *Ledger) Lots(ctx context.Context, member string) ([]Lot, error) {
	rows, err := l.pool.Query(ctx, `SELECT `+lotColumns+` FROM lots WHERE member_id = $1 AND remaining > 0
		 ORDER BY expires_at NULLS LAST, position`, member)
	if err != nil {
		return nil, fmt.Errorf("lots of %s: %w", member, err)
	}
	return pgx.CollectRows(rows, scanLot)
}

// EarnedBetween returns a member's net points earned (earns and awards in, earn reversals
// out on the original earn's day) over the business days [from, to), dates in the
// coalition's time zone as "2006-01-02".
func (l *Ledger) EarnedBetween(ctx context.Context, member, from, to string) (decimal.Decimal, error) {
	var n decimal.Decimal
	err := l.pool.QueryRow(ctx, `SELECT COALESCE(sum(points), 0) FROM member_earned_days
		WHERE member_id = $1 AND day >= $2::date AND day < $3::date`, member, from, to).Scan(&n)
	if err != nil {
		return decimal.Zero, fmt.Errorf("points earned by %s: %w", member, err)
	}
	return n, nil
}

// Debts returns a member's outstanding debts, oldest first.
func (l *Ledger) Debts(ctx context.Context, member string) ([]Debt, error) {
	rows, err := l.pool.Query(ctx, `
		SELECT id, member_id, partner_id, entry_id, position, points, outstanding, rate
		  FROM debts WHERE member_id = $1 AND outstanding > 0 ORDER BY position, id`, member)
	if err != nil {
		return nil, fmt.Errorf("debts of %s: %w", member, err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Debt, error) {
		var d Debt
		err := r.Scan(&d.ID, &d.Member, &d.Partner, &d.Entry, &d.Position, &d.Points, &d.Outstanding, &d.Rate)
		return d, err
	})
}

// Entry returns one journal entry with its postings and lot movements.
func (l *Ledger) Entry(ctx context.Context, id string) (*Posted, error) {
	var pos int64
	err := l.pool.QueryRow(ctx, `SELECT position FROM entries WHERE id = $1`, id).Scan(&pos)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, Errorf(CodeNotFound, "entry %s does not exist", id)
	}
	if err != nil {
		return nil, fmt.Errorf("entry %s: %w", id, err)
	}
	page, err := l.Journal(ctx, pos-1, 1)
	if err != nil {
		return nil, err
	}
	return &page[0], nil
}

// EntryByReference returns the entry a partner recorded with a reference and kind.
func (l *Ledger) EntryByReference(ctx context.Context, partner string, kind EntryKind, ref string) (*Posted, error) {
	var id string
	err := l.pool.QueryRow(ctx, `SELECT id FROM entries WHERE partner_id = $1 AND kind = $2 AND reference = $3`,
		partner, string(kind), ref).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, Errorf(CodeNotFound, "partner %s has no %s with reference %q", partner, kind, ref)
	}
	if err != nil {
		return nil, fmt.Errorf("entry by reference: %w", err)
	}
	return l.Entry(ctx, id)
}

// EntriesByReference returns the entries a partner recorded with a reference, of every
// kind (a reference is unique per partner and kind), in journal order.
func (l *Ledger) EntriesByReference(ctx context.Context, partner, ref string) ([]Posted, error) {
	// Every kind named, so that the unique index on (partner, kind, reference) finds them
	// rather than a walk through all of a big partner's entries.
	kinds := make([]string, 0, len(entryKinds))
	for k := range entryKinds {
		kinds = append(kinds, string(k))
	}
	rows, err := l.pool.Query(ctx, `SELECT id FROM entries WHERE partner_id = $1 AND kind = ANY($2) AND reference = $3 ORDER BY position`,
		partner, kinds, ref)
	if err != nil {
		return nil, fmt.Errorf("entries by reference: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("entries by reference: %w", err)
	}
	out := make([]Posted, 0, len(ids))
	for _, id := range ids {
		e, err := l.Entry(ctx, id)
		if err != nil {
			return nil, err
		}
		out = append(out, *e)
	}
	return out, nil
}

// ReturnedSoFar returns the purchase amount already returned by the reversals of an earn
// (recorded in their metadata as returned_amount).
func (l *Ledger) ReturnedSoFar(ctx context.Context, earn string) (decimal.Decimal, error) {
	var n decimal.Decimal
	err := l.pool.QueryRow(ctx, `SELECT COALESCE(sum((metadata->>'returned_amount')::numeric), 0)
		FROM entries WHERE reverses = $1 AND kind = 'earn_reversal'`, earn).Scan(&n)
	if err != nil {
		return decimal.Zero, fmt.Errorf("returned amount of %s: %w", earn, err)
	}
	return n, nil
}

// Hold returns a hold.
func (l *Ledger) Hold(ctx context.Context, id string) (*Hold, error) {
	h, err := scanHold(l.pool.QueryRow(ctx, `SELECT `+holdColumns+` FROM holds WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, Errorf(CodeNotFound, "hold %s does not exist", id)
	}
	if err != nil {
		return nil, fmt.Errorf("hold %s: %w", id, err)
	}
	return &h, nil
}

// HoldOf returns one of partner's holds: another partner's is not found, as if it did not
// exist, so that a partner learns nothing of holds that are not its own.
func (l *Ledger) HoldOf(ctx context.Context, partner, id string) (*Hold, error) {
	h, err := l.Hold(ctx, id)
	if err == nil && h.Partner != partner {
		return nil, Errorf(CodeNotFound, "hold %s of partner %s does not exist", id, partner)
	}
	return h, err
}

// HoldEvent is an entry that settled a hold: its capture, or its void (the partner's or
// the timeout job's).
type HoldEvent struct {
	Entry      string    `json:"entry"`
	Position   int64     `json:"position"`
	Kind       EntryKind `json:"kind"`
	Partner    string    `json:"partner"` // the hold's partner, or operator for the timeout job
	RecordedAt time.Time `json:"recorded_at"`
}

// HoldEvents returns the entries that settled h, in journal order: those after it of its
// member that name it in their metadata (HoldMetadata), read by the member's index.
// Captures and voids posted before their metadata named the hold are not found.
func (l *Ledger) HoldEvents(ctx context.Context, h *Hold) ([]HoldEvent, error) {
	rows, err := l.pool.Query(ctx, `SELECT id, position, kind, partner_id, recorded_at FROM entries
		WHERE member_id = $1 AND position > $2 AND kind IN ('capture', 'void') AND metadata->>'hold' = $3
		ORDER BY position`, h.Member, h.Position, h.ID)
	if err != nil {
		return nil, fmt.Errorf("entries of hold %s: %w", h.ID, err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (HoldEvent, error) {
		var ev HoldEvent
		err := r.Scan(&ev.Entry, &ev.Position, &ev.Kind, &ev.Partner, &ev.RecordedAt)
		ev.RecordedAt = ev.RecordedAt.UTC()
		return ev, err
	})
}

// OpenHoldsExpiredBy returns up to limit open holds whose expiry is at or before t.
func (l *Ledger) OpenHoldsExpiredBy(ctx context.Context, t time.Time, limit int) ([]Hold, error) {
	rows, err := l.pool.Query(ctx, `SELECT `+holdColumns+` FROM holds
		WHERE status = 'open' AND expires_at <= $1 ORDER BY expires_at, id LIMIT $2`, t, limit)
	if err != nil {
		return nil, fmt.Errorf("expired holds: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Hold, error) { return scanHold(r) })
}

// LotsExpiredBy returns up to limit lots with available points whose expiry is at or
// before t, oldest expiry first.
func (l *Ledger) LotsExpiredBy(ctx context.Context, t time.Time, limit int) ([]Lot, error) {
	rows, err := l.pool.Query(ctx, `SELECT `+lotColumns+` FROM lots
		WHERE expires_at <= $1 AND remaining > held ORDER BY expires_at, id LIMIT $2`, t, limit)
	if err != nil {
		return nil, fmt.Errorf("expired lots: %w", err)
	}
	return pgx.CollectRows(rows, scanLot)
}

// MaxJournalPage bounds one page of the journal.
const MaxJournalPage = 10000

// Journal returns up to limit entries after a position, in position order, each with its
// postings and lot movements in the order they were hashed.
func (l *Ledger) Journal(ctx context.Context, after int64, limit int) ([]Posted, error) {
	if limit <= 0 || limit > MaxJournalPage {
		limit = MaxJournalPage
	}
	b := &pgx.Batch{}
	var page []Posted
	index := map[int64]int{}
	b.Queue(`SELECT id, position, kind, partner_id, COALESCE(member_id, ''), COALESCE(reference, ''), business_time,
			recorded_at, metadata::text, COALESCE(reverses, ''), prev_hash, hash
		  FROM entries WHERE position > $1 ORDER BY position LIMIT $2`, after, limit).
		Query(func(rows pgx.Rows) error {
			var e Posted
			var meta string
			_, err := pgx.ForEachRow(rows, []any{&e.ID, &e.Position, &e.Kind, &e.Partner, &e.Member, &e.Reference,
				&e.BusinessTime, &e.RecordedAt, &meta, &e.Reverses, &e.PrevHash, &e.Hash}, func() error {
				c := e
				c.BusinessTime, c.RecordedAt = c.BusinessTime.UTC(), c.RecordedAt.UTC()
				c.Metadata = json.RawMessage(meta)
				c.PrevHash = append([]byte(nil), e.PrevHash...)
				c.Hash = append([]byte(nil), e.Hash...)
				c.Postings, c.Movements = []Posting{}, []Movement{}
				index[c.Position] = len(page)
				page = append(page, c)
				return nil
			})
			return err
		})
	// The postings and movements of the same range of positions (entries' positions are
	// gap-free, so the range is exactly the page).
	b.Queue(`SELECT position, account, unit, amount FROM postings
		  WHERE position > $1 AND position <= $1 + $2 ORDER BY position, seq`, after, limit).
		Query(func(rows pgx.Rows) error {
			var pos int64
			var p Posting
			_, err := pgx.ForEachRow(rows, []any{&pos, &p.Account, &p.Unit, &p.Amount}, func() error {
				if i, ok := index[pos]; ok {
					page[i].Postings = append(page[i].Postings, p)
				}
				return nil
			})
			return err
		})
	b.Queue(`SELECT position, lot_id, issuer, points, consumer, reason, rate, expires_at FROM lot_movements
		  WHERE position > $1 AND position <= $1 + $2 ORDER BY position, seq`, after, limit).
		Query(func(rows pgx.Rows) error {
			var pos int64
			var m Movement
			_, err := pgx.ForEachRow(rows, []any{&pos, &m.Lot, &m.Issuer, &m.Points, &m.Consumer, &m.Reason, &m.Rate, &m.ExpiresAt}, func() error {
				if i, ok := index[pos]; ok {
					mv := m
					if mv.ExpiresAt != nil {
						t := mv.ExpiresAt.UTC()
						mv.ExpiresAt = &t
					}
					page[i].Movements = append(page[i].Movements, mv)
				}
				return nil
			})
			return err
		})
	if err := pg.SendBatch(ctx, l.pool, b); err != nil {
		return nil, fmt.Errorf("journal after %d: %w", after, err)
	}
	return page, nil
}

// ChainBreak says where the journal first fails verification and why.
type ChainBreak struct {
	Position int64  `json:"position"`
	Reason   string `json:"reason"`
}

func (c *ChainBreak) Error() string {
	return fmt.Sprintf("journal fails at position %d: %s", c.Position, c.Reason)
}

// Chain checks entries one after another: gap-free positions, each previous hash the hash
// before it, each hash the hash of the entry's canonical form, and each entry balanced
// per unit (an entry may have no postings: a return that reverses no points yet). Feed it entries in position order from any source (the database, an export).
type Chain struct {
	units Units
	last  int64
	prev  []byte
}

// NewChain returns a chain check that starts at the genesis of the journal.
func NewChain(u Units) *Chain { return &Chain{units: u, prev: GenesisHash} }

// ResumeChain returns a chain check that continues after the entry at position, whose
// hash is prev: for an export that starts past the first entry.
func ResumeChain(u Units, position int64, prev []byte) *Chain {
	return &Chain{units: u, last: position, prev: prev}
}

// Check checks the next entry of the chain and returns a *ChainBreak at the first fault.
func (c *Chain) Check(e *Posted) error {
	fail := func(format string, args ...any) error {
		return &ChainBreak{Position: e.Position, Reason: fmt.Sprintf(format, args...)}
	}
	if e.Position != c.last+1 {
		return &ChainBreak{Position: c.last + 1, Reason: fmt.Sprintf("position %d is missing (next entry found is %d)", c.last+1, e.Position)}
	}
	if !bytes.Equal(e.PrevHash, c.prev) {
		return fail("its previous hash %x is not the hash of entry %d (%x)", e.PrevHash, c.last, c.prev)
	}
	sum, err := EntryHash(e, c.units)
	if err != nil {
		return fail("cannot form its canonical JSON: %v", err)
	}
	if !bytes.Equal(sum, e.Hash) {
		return fail("its content does not match its hash (stored %x, computed %x)", e.Hash, sum)
	}
	if err := checkBalanced(e.Postings); err != nil {
		return fail("%s", err.Message)
	}
	c.last, c.prev = e.Position, e.Hash
	return nil
}

// Position returns the position of the last entry checked.
func (c *Chain) Position() int64 { return c.last }

// VerifyChain walks the journal from the first entry to the head through a Chain and
// returns the first *ChainBreak, if any. progress, if not nil, is called after each page
// with the position reached.
func (l *Ledger) VerifyChain(ctx context.Context, progress func(position int64)) error {
	u, err := l.Units(ctx)
	if err != nil {
		return err
	}
	head, err := l.Head(ctx)
	if err != nil {
		return err
	}
	chain := NewChain(u)
	for chain.Position() < head.Position {
		page, err := l.Journal(ctx, chain.Position(), 2000)
		if err != nil {
			return err
		}
		if len(page) == 0 {
			return &ChainBreak{Position: chain.Position() + 1, Reason: "the entry is missing"}
		}
		for i := range page {
			if err := chain.Check(&page[i]); err != nil {
				return err
			}
		}
		if progress != nil {
			progress(chain.Position())
		}
	}
	if !bytes.Equal(chain.prev, head.Hash) {
		return &ChainBreak{Position: head.Position, Reason: "the journal head's hash is not the last entry's hash"}
	}
	return nil
}

// BalanceMismatch is an account whose stored balance differs from the sum of its postings.
type BalanceMismatch struct {
	Account  string          `json:"account"`
	Stored   decimal.Decimal `json:"stored"`
	Postings decimal.Decimal `json:"postings"`
}

// CheckBalances returns every account whose stored balance is not the sum of its
// postings (none, in a sound journal).
func (l *Ledger) CheckBalances(ctx context.Context) ([]BalanceMismatch, error) {
	rows, err := l.pool.Query(ctx, `
		SELECT a.name, a.balance, COALESCE(s.total, 0)
		  FROM accounts a
		  LEFT JOIN (SELECT account, sum(amount) AS total FROM postings GROUP BY account) s ON s.account = a.name
		 WHERE a.balance <> COALESCE(s.total, 0)
		 ORDER BY a.name`)
	if err != nil {
		return nil, fmt.Errorf("check balances: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (BalanceMismatch, error) {
		var m BalanceMismatch
		err := r.Scan(&m.Account, &m.Stored, &m.Postings)
		return m, err
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Account < out[j].Account })
	return out, err
}
