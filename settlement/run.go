package settlement

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shopspring/decimal"

	"github.com/coalitionledger/coalition/audit"
	"github.com/coalitionledger/coalition/internal/pg"
	"github.com/coalitionledger/coalition/ledger"
	"github.com/coalitionledger/coalition/partners"
)

// The codes settlement answers with, besides the engine's. They are part of the contract.
const (
	// CodeDayNotOver refuses a run for today or a later day.
	CodeDayNotOver ledger.Code = "day_not_over"
	// CodePreviousDayUnsettled refuses a run for a day whose previous day has business
	// and no run yet: runs are made day after day.
	CodePreviousDayUnsettled ledger.Code = "previous_day_unsettled"
	// CodeBeforeFirstRun refuses a run for a day before the first run: that run settled
	// everything recorded before it.
	CodeBeforeFirstRun ledger.Code = "before_first_run"
)

// runLock serialises runs: an advisory transaction lock on a key no other lock uses.
const runLock int64 = 0x5e771e

// Runs makes, reads, checks and confirms the settlement runs of a coalition's database.
type Runs struct {
	pool         *pgxpool.Pool
	ledger       *ledger.Ledger
	store        *partners.Store
	now          func() time.Time
	checkpointer *audit.Checkpointer
}

// NewRuns returns the runs over the ledger's database; now is the clock that says which
// days are over (nil: time.Now).
func NewRuns(l *ledger.Ledger, store *partners.Store, now func() time.Time) *Runs {
	if now == nil {
		now = time.Now
	}
	return &Runs{pool: l.Pool(), ledger: l, store: store, now: now}
}

// WithCheckpointer makes every run sign a checkpoint of the journal's head, its own
// entries included, in the run's transaction; nil (the default) signs none.
func (r *Runs) WithCheckpointer(c *audit.Checkpointer) *Runs {
	r.checkpointer = c
	return r
}

// Run is a settlement run as users read it: the report it computed, who made it and
// when, and its instructions with their confirmation.
type Run struct {
	Report
	// Instructions shadows Report.Instructions in JSON with the payment state.
	Instructions []Payment `json:"instructions"`
	CreatedAt    time.Time `json:"created_at"`
	CreatedBy    string    `json:"created_by"`
}

// Payment is an instruction of a run and whether its money has moved.
type Payment struct {
	InstructionLine
	Currency     string     `json:"currency"`
	Status       string     `json:"status"` // PaymentPending or PaymentConfirmed
	ConfirmedAt  *time.Time `json:"confirmed_at,omitempty"`
	PaymentEntry string     `json:"payment_entry,omitempty"` // the entry through operator:bank
}

// The statuses of a payment instruction.
const (
	PaymentPending   = "pending"
	PaymentConfirmed = "confirmed"
)

// Progress is told how many of a run's entries have been read, of total.
type Progress func(done, total int64)

// runContext is the coalition's settings a run needs.
type runContext struct {
	loc          *time.Location
	scales       Scales
	hour, minute int // settlement_time
}

func (r *Runs) settings(ctx context.Context) (runContext, error) {
	c, err := r.store.Coalition(ctx)
	if err != nil {
		return runContext{}, err
	}
	loc, err := c.Location()
	if err != nil {
		return runContext{}, err
	}
	scale, err := c.MoneyScale()
	if err != nil {
		return runContext{}, err
	}
	h, m, err := partners.ParseClock(c.SettlementTime)
	if err != nil {
		return runContext{}, err
	}
	return runContext{loc: loc, scales: Scales{Currency: c.Currency, Money: scale, Points: c.PointsScale}, hour: h, minute: m}, nil
}

// Run settles day exactly once, as the actor ctx carries (audit.WithActor): the first call posts the run's fees and moves, writes
// its instructions and its report, all in one transaction, and answers created; a later
// call, or one that waited for a concurrent run of the same day, posts nothing and
// answers the run that exists. A run needs the day to be over and the day before it to
// be settled, unless nothing happened before it. progress, if not nil, is told how much
// of the day has been read.
func (r *Runs) Run(ctx context.Context, day Day, progress Progress) (*Run, bool, error) {
	rc, err := r.settings(ctx)
	if err != nil {
		return nil, false, err
	}
	if today := DayOf(r.now(), rc.loc); !day.Before(today) {
		return nil, false, ledger.Errorf(CodeDayNotOver, "%s is not over yet in %s (it is %s there): settle a day once it has ended",
			day, rc.loc, today).With("business_date", day.String())
	}
	created := false
	err = pg.InTx(ctx, r.pool, func(tx pgx.Tx) error {
		created = false
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, runLock); err != nil {
			return err
		}
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM settlement_runs WHERE business_date = $1)`, day.String()).Scan(&exists); err != nil {
			return err
		}
		if exists {
			return nil
		}
		prev, err := r.previousCutoff(ctx, tx, day, rc.loc)
		if err != nil {
			return err
		}
		w := Window{Day: day, PreviousCutoff: prev}
		if err := tx.QueryRow(ctx, `SELECT position FROM journal_head`).Scan(&w.Cutoff); err != nil {
			return err
		}
		out, err := derive(ctx, tx, w, rc, progress)
		if err != nil {
			return err
		}
		entries := out.Entries(w, rc.loc)
		for len(entries) > 0 {
			n := min(len(entries), ledger.MaxBatch)
			if _, err := r.ledger.PostAllIn(ctx, tx, entries[:n]); err != nil {
				return fmt.Errorf("post the run's entries: %w", err)
			}
			entries = entries[n:]
		}
		report, err := json.Marshal(out.Report)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO settlement_runs (business_date, cutoff, previous_cutoff, currency, report, created_at, created_by)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			day.String(), w.Cutoff, w.PreviousCutoff, rc.scales.Currency, report, r.now().UTC(), audit.ActorOf(ctx)); err != nil {
			return err
		}
		var ps, dirs []string
		var amounts []decimal.Decimal
		for _, in := range out.Instructions {
			ps, dirs, amounts = append(ps, in.Partner), append(dirs, string(in.Direction)), append(amounts, in.Amount)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO settlement_instructions (business_date, partner_id, direction, amount)
			SELECT $1, * FROM unnest($2::text[], $3::text[], $4::numeric[])`, day.String(), ps, dirs, amounts); err != nil {
			return err
		}
		t := out.Report.Totals
		if err := audit.RecordAs(ctx, tx, audit.ActionSettlementRun, map[string]any{
			"business_date": day.String(), "previous_cutoff": w.PreviousCutoff, "cutoff": w.Cutoff, "entries": out.Report.Entries,
			"instructions": t.Instructions, "received": t.Received, "paid": t.Paid, "fees": t.Fees, "currency": rc.scales.Currency,
		}); err != nil {
			return err
		}
		if r.checkpointer != nil {
			if _, err := r.checkpointer.CheckpointTx(ctx, tx, "settlement "+day.String()); err != nil {
				return fmt.Errorf("checkpoint: %w", err)
			}
		}
		created = true
		return nil
	})
	if err != nil {
		var lerr *ledger.Error
		if errors.As(err, &lerr) {
			return nil, false, lerr
		}
		return nil, false, fmt.Errorf("settle %s: %w", day, err)
	}
	run, err := r.Get(ctx, day)
	return run, created, err
}

// previousCutoff checks that day is the next day to settle and returns the cut-off of
// the run before it (0 for the first run).
func (r *Runs) previousCutoff(ctx context.Context, tx pgx.Tx, day Day, loc *time.Location) (int64, error) {
	var last time.Time
	var cutoff int64
	err := tx.QueryRow(ctx, `SELECT business_date, cutoff FROM settlement_runs ORDER BY business_date DESC LIMIT 1`).Scan(&last, &cutoff)
	if err == nil {
		lastDay := Day{last}
		switch {
		case day.Before(lastDay):
			first, err := r.firstRun(ctx, tx)
			if err != nil {
				return 0, err
			}
			return 0, ledger.Errorf(CodeBeforeFirstRun, "settlement runs start on %s; %s is before it, and what was recorded of it was settled by that first run", first, day).
				With("first_run", first.String())
		case !lastDay.Next().Equal(day):
			return 0, ledger.Errorf(CodePreviousDayUnsettled, "%s is not settled yet: runs are made day after day, settle %s first", day.Prev(), lastDay.Next()).
				With("next_day", lastDay.Next().String())
		}
		return cutoff, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return 0, err
	}
	// The first run: nothing may have happened before its day.
	var earliest *time.Time
	if err := tx.QueryRow(ctx, `SELECT min(business_time) FROM entries`).Scan(&earliest); err != nil {
		return 0, err
	}
	if earliest != nil {
		if first := DayOf(*earliest, loc); first.Before(day) {
			return 0, ledger.Errorf(CodePreviousDayUnsettled, "the journal's business starts on %s, which is not settled yet: settle %s first", first, first).
				With("next_day", first.String())
		}
	}
	return 0, nil
}

func (r *Runs) firstRun(ctx context.Context, q pgx.Tx) (Day, error) {
	var first time.Time
	err := q.QueryRow(ctx, `SELECT min(business_date) FROM settlement_runs`).Scan(&first)
	return Day{first}, err
}

// queryer is what reading a run's entries needs: a transaction or the pool.
type queryer interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// runEntries selects the candidates of a window with their postings, in position order,
// with the fee_per_point of the earn each earn or earn reversal concerns: $1 previous
// cut-off, $2 cut-off, $3 and $4 bound business times a day wider than the run's day on
// either side. The two halves are those of Window.Settles — later than the previous
// cut-off and not of a later day, or of the day itself — by time; Window.Settles then
// decides each entry by its business date, so that a time zone's odd days (a midnight
// that a daylight-saving change skips or repeats) never make the query and the rule
// disagree. The kinds a run posts are left out; the tally would skip them anyway.
const runEntries = `WITH run AS (` + runCandidates + `)
SELECT r.position, r.id, r.kind, r.business_time,
       COALESCE(CASE r.kind WHEN 'earn' THEN r.metadata #>> '{pricing,fee_per_point}'
                            WHEN 'earn_reversal' THEN o.metadata #>> '{pricing,fee_per_point}' END, '0')::numeric,
       COALESCE(p.account, ''), COALESCE(p.unit, ''), COALESCE(p.amount, 0)
  FROM run r
  LEFT JOIN entries o ON r.kind = 'earn_reversal' AND o.id = r.reverses
  LEFT JOIN postings p ON p.position = r.position
 ORDER BY r.position, p.seq`

// runCandidates is the entries half of runEntries, which progress counts alone.
const runCandidates = `
    SELECT position, id, kind, business_time, metadata, reverses FROM entries
     WHERE position > $1 AND position <= $2 AND business_time < $4
       AND kind NOT IN ('fee', 'settlement', 'payment')
    UNION ALL
    SELECT position, id, kind, business_time, metadata, reverses FROM entries
     WHERE position <= $1 AND business_time >= $3 AND business_time < $4
       AND kind NOT IN ('fee', 'settlement', 'payment')`

// derive reads a window's entries from the database and computes the run's outcome.
func derive(ctx context.Context, q queryer, w Window, rc runContext, progress Progress) (*Outcome, error) {
	start, end := w.Day.Prev().Start(rc.loc), w.Day.Next().End(rc.loc)
	var total int64
	if progress != nil {
		if err := q.QueryRow(ctx, `SELECT count(*) FROM (`+runCandidates+`) s`, w.PreviousCutoff, w.Cutoff, start, end).Scan(&total); err != nil {
			return nil, fmt.Errorf("count the entries of %s: %w", w.Day, err)
		}
	}
	rows, err := q.Query(ctx, runEntries, w.PreviousCutoff, w.Cutoff, start, end)
	if err != nil {
		return nil, fmt.Errorf("read the entries of %s: %w", w.Day, err)
	}
	t := NewTally()
	late := map[Day]int{}
	var cur ledger.Posted
	var fee decimal.Decimal
	var read int64
	flush := func() error {
		if cur.ID == "" {
			return nil
		}
		read++
		if progress != nil && (read%1000 == 0 || read == total) {
			progress(read, total)
		}
		d := DayOf(cur.BusinessTime, rc.loc)
		if !w.Settles(cur.Position, d) {
			return nil
		}
		if d.Before(w.Day) {
			late[d]++
		}
		return t.Add(&cur, fee)
	}
	var pos int64
	var id, kind, account, unit string
	var bt time.Time
	var f, amount decimal.Decimal
	_, err = pgx.ForEachRow(rows, []any{&pos, &id, &kind, &bt, &f, &account, &unit, &amount}, func() error {
		if pos != cur.Position || cur.ID == "" {
			if err := flush(); err != nil {
				return err
			}
			cur = ledger.Posted{ID: id, Position: pos, Kind: ledger.EntryKind(kind), BusinessTime: bt}
			fee = f
		}
		if account != "" {
			cur.Postings = append(cur.Postings, ledger.Posting{Account: account, Unit: unit, Amount: amount})
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return nil, fmt.Errorf("tally the entries of %s: %w", w.Day, err)
	}
	return Settle(t, w, late, rc.scales), nil
}

// Get returns the run of a day, or a not_found error.
func (r *Runs) Get(ctx context.Context, day Day) (*Run, error) {
	var run Run
	var report []byte
	err := r.pool.QueryRow(ctx, `SELECT report, created_at, created_by FROM settlement_runs WHERE business_date = $1`, day.String()).
		Scan(&report, &run.CreatedAt, &run.CreatedBy)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ledger.Errorf(ledger.CodeNotFound, "%s has no settlement run", day).With("business_date", day.String())
	}
	if err != nil {
		return nil, fmt.Errorf("settlement run of %s: %w", day, err)
	}
	if err := json.Unmarshal(report, &run.Report); err != nil {
		return nil, fmt.Errorf("settlement run of %s: report: %w", day, err)
	}
	run.CreatedAt = run.CreatedAt.UTC()
	rows, err := r.pool.Query(ctx, `SELECT partner_id, direction, amount, confirmed_at, COALESCE(payment_entry, '')
		FROM settlement_instructions WHERE business_date = $1 ORDER BY partner_id`, day.String())
	if err != nil {
		return nil, fmt.Errorf("instructions of %s: %w", day, err)
	}
	scale, err := ledger.CurrencyScale(run.Currency)
	if err != nil {
		return nil, err
	}
	run.Instructions, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (Payment, error) {
		var p Payment
		var amount decimal.Decimal
		err := row.Scan(&p.Partner, &p.Direction, &amount, &p.ConfirmedAt, &p.PaymentEntry)
		p.Amount, p.Currency, p.Status = amount.StringFixed(scale), run.Currency, PaymentPending
		if p.ConfirmedAt != nil {
			t := p.ConfirmedAt.UTC()
			p.ConfirmedAt, p.Status = &t, PaymentConfirmed
		}
		return p, err
	})
	if err != nil {
		return nil, fmt.Errorf("instructions of %s: %w", day, err)
	}
	return &run, nil
}

// Summary is one run in the list of runs.
type Summary struct {
	BusinessDate string       `json:"business_date"`
	Cutoff       int64        `json:"cutoff"`
	Entries      int          `json:"entries"`
	Totals       ReportTotals `json:"totals"`
	Pending      int          `json:"pending"` // instructions not confirmed yet
	CreatedAt    time.Time    `json:"created_at"`
}

// List returns the runs, latest first, up to limit.
func (r *Runs) List(ctx context.Context, limit int) ([]Summary, error) {
	rows, err := r.pool.Query(ctx, `SELECT r.business_date::text, r.cutoff, (r.report->>'entries')::int, r.report->'totals', r.created_at,
			(SELECT count(*) FROM settlement_instructions i WHERE i.business_date = r.business_date AND i.confirmed_at IS NULL)
		  FROM settlement_runs r ORDER BY r.business_date DESC LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("settlement runs: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Summary, error) {
		var s Summary
		var totals []byte
		if err := row.Scan(&s.BusinessDate, &s.Cutoff, &s.Entries, &totals, &s.CreatedAt, &s.Pending); err != nil {
			return s, err
		}
		s.CreatedAt = s.CreatedAt.UTC()
		return s, json.Unmarshal(totals, &s.Totals)
	})
	if err != nil {
		return nil, fmt.Errorf("settlement runs: %w", err)
	}
	return out, nil
}

// Confirm records that an instruction's money moved: it posts the payment through
// operator:bank (a partner that pays: Dr operator:bank, Cr its in_settlement; one that
// is paid: the other way round) and answers the payment and true. Confirming again
// posts nothing and answers the same payment and false.
func (r *Runs) Confirm(ctx context.Context, day Day, partner string) (*Payment, bool, error) {
	confirmed := false
	err := pg.InTx(ctx, r.pool, func(tx pgx.Tx) error {
		confirmed = false
		var dir Direction
		var amount decimal.Decimal
		var at *time.Time
		var currency string
		err := tx.QueryRow(ctx, `SELECT i.direction, i.amount, i.confirmed_at, r.currency
			FROM settlement_instructions i JOIN settlement_runs r USING (business_date)
			WHERE i.business_date = $1 AND i.partner_id = $2 FOR UPDATE OF i`, day.String(), partner).Scan(&dir, &amount, &at, &currency)
		if errors.Is(err, pgx.ErrNoRows) {
			if _, gerr := r.Get(ctx, day); gerr != nil {
				return gerr
			}
			return ledger.Errorf(ledger.CodeNotFound, "the run of %s has no instruction for partner %s", day, partner).
				With("business_date", day.String()).With("partner", partner)
		}
		if err != nil || at != nil {
			return err
		}
		bank, owed := ledger.Posting{Account: "operator:bank", Unit: currency, Amount: amount},
			ledger.Posting{Account: ledger.PartnerAccount(partner, "in_settlement"), Unit: currency, Amount: amount.Neg()}
		if dir == PaidByOperator {
			bank.Amount, owed.Amount = bank.Amount.Neg(), owed.Amount.Neg()
		}
		meta, _ := json.Marshal(map[string]any{"payment": map[string]any{
			"business_date": day.String(), "partner": partner, "direction": dir, "confirmed_by": audit.ActorOf(ctx)}})
		posted, err := r.ledger.PostAllIn(ctx, tx, []ledger.Entry{{
			Kind: ledger.EntryPayment, Partner: ledger.OperatorIssuer, Reference: day.String() + "/" + partner,
			BusinessTime: r.now().UTC().Truncate(time.Microsecond), Metadata: meta, Postings: []ledger.Posting{bank, owed},
		}})
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE settlement_instructions SET confirmed_at = $3, payment_entry = $4
			WHERE business_date = $1 AND partner_id = $2`, day.String(), partner, posted[0].RecordedAt, posted[0].ID); err != nil {
			return err
		}
		if err := audit.RecordAs(ctx, tx, audit.ActionInstructionConfirmed, map[string]any{
			"business_date": day.String(), "partner": partner, "direction": dir, "amount": moneyString(amount, currency),
			"currency": currency, "payment_entry": posted[0].ID,
		}); err != nil {
			return err
		}
		confirmed = true
		return nil
	})
	if err != nil {
		var lerr *ledger.Error
		if errors.As(err, &lerr) {
			return nil, false, lerr
		}
		return nil, false, fmt.Errorf("confirm the instruction of %s for %s: %w", day, partner, err)
	}
	run, err := r.Get(ctx, day)
	if err != nil {
		return nil, false, err
	}
	for i := range run.Instructions {
		if run.Instructions[i].Partner == partner {
			return &run.Instructions[i], confirmed, nil
		}
	}
	return nil, false, fmt.Errorf("confirm the instruction of %s for %s: it vanished", day, partner)
}

// due returns the days that are over and not settled yet, in order: from the day after
// the last run (or the journal's first business day) up to yesterday.
func (r *Runs) due(ctx context.Context) ([]Day, runContext, error) {
	rc, err := r.settings(ctx)
	if err != nil {
		return nil, rc, err
	}
	var last, earliest *time.Time
	if err := r.pool.QueryRow(ctx, `SELECT (SELECT max(business_date) FROM settlement_runs), (SELECT min(business_time) FROM entries)`).
		Scan(&last, &earliest); err != nil {
		return nil, rc, fmt.Errorf("days to settle: %w", err)
	}
	var next Day
	switch {
	case last != nil:
		next = Day{*last}.Next()
	case earliest != nil:
		next = DayOf(*earliest, rc.loc)
	default:
		return nil, rc, nil // no business yet
	}
	today := DayOf(r.now(), rc.loc)
	var due []Day
	for d := next; d.Before(today); d = d.Next() {
		due = append(due, d)
	}
	return due, rc, nil
}

// SettleDue settles every day that is over and not settled yet, in order, and returns the
// runs it made; done, if not nil, is told of each run as it commits.
func (r *Runs) SettleDue(ctx context.Context, done func(*Run)) ([]*Run, error) {
	due, _, err := r.due(ctx)
	if err != nil {
		return nil, err
	}
	return r.settle(ctx, due, done)
}

// SettleScheduled is SettleDue for the days whose settlement time has come: the
// coalition's settlement_time on the day after them (Day.SettlesAt).
func (r *Runs) SettleScheduled(ctx context.Context, done func(*Run)) ([]*Run, error) {
	due, rc, err := r.due(ctx)
	if err != nil {
		return nil, err
	}
	now := r.now()
	n := 0
	for n < len(due) && !due[n].SettlesAt(rc.hour, rc.minute, rc.loc).After(now) {
		n++
	}
	return r.settle(ctx, due[:n], done)
}

func (r *Runs) settle(ctx context.Context, days []Day, done func(*Run)) ([]*Run, error) {
	var runs []*Run
	for _, d := range days {
		run, created, err := r.Run(ctx, d, nil)
		if err != nil {
			return runs, err
		}
		if created {
			runs = append(runs, run)
			if done != nil {
				done(run)
			}
		}
	}
	return runs, nil
}

// PartnerView is one partner's side of a run: its line, the gross and bilateral rows it
// is a party to, and its instruction, if it has one.
type PartnerView struct {
	BusinessDate string           `json:"business_date"`
	Currency     string           `json:"currency"`
	Cutoff       int64            `json:"cutoff"`
	Partner      PartnerLine      `json:"partner"`
	Gross        []ObligationLine `json:"gross"`
	Bilateral    []ObligationLine `json:"bilateral"`
	Instruction  *Payment         `json:"instruction"`
}

// For returns partner's side of the run; a partner with no business in it gets a line of
// zeros.
func (r *Run) For(partner string) PartnerView {
	v := PartnerView{BusinessDate: r.BusinessDate, Currency: r.Currency, Cutoff: r.Cutoff,
		Gross: []ObligationLine{}, Bilateral: []ObligationLine{}}
	zero := moneyString(decimal.Zero, r.Currency)
	v.Partner = PartnerLine{Partner: partner, PointsIssued: "0", PointsRedeemed: "0", FeePoints: "0",
		Owes: zero, OwedTo: zero, Position: zero, Fee: zero, Net: zero}
	for _, p := range r.Partners {
		if p.Partner == partner {
			v.Partner = p
		}
	}
	for _, o := range r.Gross {
		if o.Debtor == partner || o.Creditor == partner {
			v.Gross = append(v.Gross, o)
		}
	}
	for _, o := range r.Bilateral {
		if o.Debtor == partner || o.Creditor == partner {
			v.Bilateral = append(v.Bilateral, o)
		}
	}
	for i := range r.Instructions {
		if r.Instructions[i].Partner == partner {
			v.Instruction = &r.Instructions[i]
		}
	}
	return v
}

// moneyString formats an amount at its currency's minor unit (as it is, if the currency
// is unknown), so that the audit log writes it as every report does.
func moneyString(d decimal.Decimal, currency string) string {
	scale, err := ledger.CurrencyScale(currency)
	if err != nil {
		return d.String()
	}
	return d.StringFixed(scale)
}
