package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shopspring/decimal"

	"github.com/coalitionledger/coalition/ledger"
)

// Reports reads the auditor's reports from the books. Every report is read from one
// snapshot, so its figures agree with each other.
type Reports struct {
	pool *pgxpool.Pool
}

// NewReports returns the reports over pool (from pg.Connect).
func NewReports(pool *pgxpool.Pool) *Reports { return &Reports{pool: pool} }

// Period is a range of journal positions, From to To inclusive.
type Period struct {
	From int64 `json:"from"`
	To   int64 `json:"to"`
}

// ParsePeriod reads a period as given on a command line or in a query (see ParseBound):
// an end given that lies before the first entry is refused rather than read as the head.
func (r *Reports) ParsePeriod(ctx context.Context, from, to string) (Period, error) {
	var p Period
	var err error
	if p.From, err = r.ParseBound(ctx, from, true); err != nil {
		return Period{}, err
	}
	if p.To, err = r.ParseBound(ctx, to, false); err != nil {
		return Period{}, err
	}
	if to != "" && p.To == 0 {
		return Period{}, ledger.Errorf(ledger.CodeInvalid, "the period ends at %s, before the first entry", to)
	}
	return p, nil
}

// ParseBound reads a period's bound as given on a command line or in a query: a journal
// position, or a record time (RFC 3339, or a date meaning its start in UTC). A time as
// the start is the first entry recorded at or after it; as the end, the last recorded at
// or before it. Empty is 0 (the default: the first entry, or the head).
func (r *Reports) ParseBound(ctx context.Context, s string, start bool) (int64, error) {
	if s == "" {
		return 0, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 {
			return 0, ledger.Errorf(ledger.CodeInvalid, "position %d is negative", n)
		}
		return n, nil
	}
	t, err := ParseTime(s)
	if err != nil {
		return 0, err
	}
	l := ledger.New(r.pool)
	if start {
		pos, err := l.PositionAt(ctx, t.Add(-time.Microsecond))
		return pos + 1, err
	}
	return l.PositionAt(ctx, t)
}

// ParseTime reads an RFC 3339 time or a date (its start in UTC).
func ParseTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, nil
	}
	hint := ""
	if strings.Contains(s, " ") {
		hint = ` (in a query string a "+" of a time zone must be sent as %2B, or it reads as a space)`
	}
	return time.Time{}, ledger.Errorf(ledger.CodeInvalid, "%q is neither a journal position nor a time (RFC 3339, or YYYY-MM-DD)%s", s, hint)
}

// period resolves a period against the snapshot's head: from 0 is 1, to 0 (or past the
// head) is the head.
func (s *snapshot) period(from, to int64) (Period, error) {
	if from <= 0 {
		from = 1
	}
	if to <= 0 || to > s.head.Position {
		to = s.head.Position
	}
	if from > to+1 {
		return Period{}, ledger.Errorf(ledger.CodeInvalid, "the period starts at position %d, after its end at %d", from, to)
	}
	return Period{From: from, To: to}, nil
}

// Amount is an amount at its unit's scale, as a decimal string (debits positive).
type Amount = string

// BalanceLine is an account's balance in a trial balance.
type BalanceLine struct {
	Account string `json:"account"`
	Unit    string `json:"unit"`
	Balance Amount `json:"balance"`
}

// GroupTotal is the net of a group of accounts per unit: a partner's accounts, the
// members', the operator's.
type GroupTotal struct {
	Group  string            `json:"group"`
	Totals map[string]Amount `json:"totals"`
}

// TrialBalance is every account's balance as of a position, the total per unit (zero in
// sound books), and the net of each partner, of the members and of the operator.
type TrialBalance struct {
	Position int64             `json:"position"`
	Partner  string            `json:"partner,omitempty"`
	Accounts []BalanceLine     `json:"accounts"`
	Totals   map[string]Amount `json:"totals"`
	Groups   []GroupTotal      `json:"groups"`
}

// groupOf returns the group of an account: "partner:<p>", "members" or "operator".
func groupOf(account string) string {
	switch {
	case strings.HasPrefix(account, "partner:"):
		p, _, _ := strings.Cut(strings.TrimPrefix(account, "partner:"), ":")
		return "partner:" + p
	case strings.HasPrefix(account, "member:"):
		return "members"
	}
	return "operator"
}

// TrialBalance returns the trial balance as of position (0: the head;
// ledger.BeforeFirstEntry: no balances, at position 0). With partner set,
// it lists only that partner's accounts (the totals are then the partner's net), and an
// unknown partner is not_found rather than an empty table; the groups are always the
// whole coalition's.
func (r *Reports) TrialBalance(ctx context.Context, position int64, partner string) (*TrialBalance, error) {
	snap, err := openSnapshot(ctx, r.pool)
	if err != nil {
		return nil, err
	}
	defer snap.close(ctx)
	if partner != "" {
		var known bool
		if err := snap.tx.QueryRow(ctx, `SELECT EXISTS (SELECT FROM partners WHERE id = $1)`, partner).Scan(&known); err != nil {
			return nil, fmt.Errorf("trial balance: %w", err)
		}
		if !known {
			return nil, ledger.Errorf(ledger.CodeNotFound, "partner %s does not exist", partner)
		}
	}
	position, balances, err := ledger.BalancesAt(ctx, snap.tx, position, snap.head.Position)
	if err != nil {
		return nil, fmt.Errorf("trial balance: %w", err)
	}
	tb := &TrialBalance{Position: position, Partner: partner, Accounts: []BalanceLine{}, Totals: map[string]Amount{}, Groups: []GroupTotal{}}
	totals := map[string]decimal.Decimal{}
	groups := map[string]map[string]decimal.Decimal{}
	for _, b := range balances {
		g := groupOf(b.Account)
		if groups[g] == nil {
			groups[g] = map[string]decimal.Decimal{}
		}
		groups[g][b.Unit] = groups[g][b.Unit].Add(b.Balance)
		if partner != "" && g != "partner:"+partner {
			continue
		}
		totals[b.Unit] = totals[b.Unit].Add(b.Balance)
		tb.Accounts = append(tb.Accounts, BalanceLine{Account: b.Account, Unit: b.Unit, Balance: formatUnit(snap.units, b.Unit, b.Balance)})
	}
	for _, u := range []string{ledger.Points, snap.units.Currency} {
		tb.Totals[u] = formatUnit(snap.units, u, totals[u])
	}
	names := make([]string, 0, len(groups))
	for g := range groups {
		names = append(names, g)
	}
	sort.Strings(names)
	for _, g := range names {
		gt := GroupTotal{Group: g, Totals: map[string]Amount{}}
		for u, v := range groups[g] {
			gt.Totals[u] = formatUnit(snap.units, u, v)
		}
		tb.Groups = append(tb.Groups, gt)
	}
	return tb, nil
}

// StatementEntry is the journal entry a line of a statement stands for.
type StatementEntry struct {
	Position     int64            `json:"position"`
	Entry        string           `json:"entry"`
	Kind         ledger.EntryKind `json:"kind"`
	Partner      string           `json:"partner"`
	Reference    string           `json:"reference,omitempty"`
	BusinessTime time.Time        `json:"business_time"`
	RecordedAt   time.Time        `json:"recorded_at"`
}

// scan returns where a row's entry columns go (position, id, kind, partner, reference,
// business and record time, in that order), then more.
func (e *StatementEntry) scan(more ...any) []any {
	return append([]any{&e.Position, &e.Entry, &e.Kind, &e.Partner, &e.Reference, &e.BusinessTime, &e.RecordedAt}, more...)
}

// inUTC returns e with its times in UTC.
func (e StatementEntry) inUTC() StatementEntry {
	e.BusinessTime, e.RecordedAt = e.BusinessTime.UTC(), e.RecordedAt.UTC()
	return e
}

// StatementPosting is one posting of an account statement.
type StatementPosting struct {
	StatementEntry
	Amount  Amount `json:"amount"`
	Balance Amount `json:"balance"` // the account's balance after it
}

// StatementHead is what an account statement says before its postings.
type StatementHead struct {
	Account string `json:"account"`
	Unit    string `json:"unit"`
	Period
	Opening Amount `json:"opening"`
}

// StatementTail is what an account statement says after its postings.
type StatementTail struct {
	Postings int64  `json:"count"`
	Debits   Amount `json:"debits"`
	Credits  Amount `json:"credits"`
	Closing  Amount `json:"closing"`
}

// AccountStatement streams an account's statement for the period [from, to] (positions;
// 0: the first entry, the head): head is called once with the opening balance (the
// balance after position from−1), each with every posting in position order, and the
// tail is returned. A name outside the chart is invalid; an account never posted to has
// a statement at zero if its partner or member exists, and is not found if not.
func (r *Reports) AccountStatement(ctx context.Context, account string, from, to int64,
	head func(StatementHead) error, each func(StatementPosting) error) (*StatementTail, error) {
	acct, lerr := ledger.ParseAccount(account)
	if lerr != nil {
		return nil, lerr
	}
	snap, err := openSnapshot(ctx, r.pool)
	if err != nil {
		return nil, err
	}
	defer snap.close(ctx)
	p, err := snap.period(from, to)
	if err != nil {
		return nil, err
	}
	var unit string
	err = snap.tx.QueryRow(ctx, `SELECT unit FROM accounts WHERE name = $1`, account).Scan(&unit)
	if errors.Is(err, pgx.ErrNoRows) {
		// Never posted to: an account of the chart whose owner exists has a statement of
		// nothing, at zero; one whose partner or member does not exist is not found.
		if err = snap.ownerExists(ctx, acct); err != nil {
			return nil, err
		}
		unit = acct.Unit(snap.units)
	}
	if err != nil {
		return nil, fmt.Errorf("statement of %s: %w", account, err)
	}
	var opening decimal.Decimal
	if err := snap.tx.QueryRow(ctx, `SELECT COALESCE(sum(amount), 0) FROM postings WHERE account = $1 AND position < $2`,
		account, p.From).Scan(&opening); err != nil {
		return nil, fmt.Errorf("statement of %s: %w", account, err)
	}
	if err := head(StatementHead{Account: account, Unit: unit, Period: p, Opening: formatUnit(snap.units, unit, opening)}); err != nil {
		return nil, err
	}
	rows, err := snap.tx.Query(ctx, `
		SELECT p.position, p.entry_id, e.kind, e.partner_id, COALESCE(e.reference, ''), e.business_time, e.recorded_at, p.amount
		  FROM postings p JOIN entries e ON e.position = p.position
		 WHERE p.account = $1 AND p.position >= $2 AND p.position <= $3
		 ORDER BY p.position, p.seq`, account, p.From, p.To)
	if err != nil {
		return nil, fmt.Errorf("statement of %s: %w", account, err)
	}
	tail := &StatementTail{}
	bal, dr, cr := opening, decimal.Zero, decimal.Zero
	var sp StatementEntry
	var amount decimal.Decimal
	_, err = pgx.ForEachRow(rows, sp.scan(&amount), func() error {
		bal = bal.Add(amount)
		if amount.IsPositive() {
			dr = dr.Add(amount)
		} else {
			cr = cr.Sub(amount)
		}
		tail.Postings++
		out := StatementPosting{StatementEntry: sp.inUTC()}
		out.Amount, out.Balance = formatUnit(snap.units, unit, amount), formatUnit(snap.units, unit, bal)
		return each(out)
	})
	if err != nil {
		return nil, fmt.Errorf("statement of %s: %w", account, err)
	}
	tail.Debits, tail.Credits, tail.Closing = formatUnit(snap.units, unit, dr), formatUnit(snap.units, unit, cr), formatUnit(snap.units, unit, bal)
	return tail, nil
}

// MemberLine is one entry of a member's statement: how it changed the member's points
// and held points (positive: to the member), the lots it touched, and the balances after.
type MemberLine struct {
	StatementEntry
	Points      Amount            `json:"points"`
	Held        Amount            `json:"held"`
	Movements   []ledger.Movement `json:"lot_movements"`
	Balance     Amount            `json:"balance"`
	HeldBalance Amount            `json:"held_balance"`
}

// MemberHead is what a member's statement says before its lines: the member's points and
// held points after position from−1.
type MemberHead struct {
	Member string `json:"member"`
	Period
	Opening     Amount `json:"opening"`
	OpeningHeld Amount `json:"opening_held"`
}

// MemberTail is what a member's statement says after its lines.
type MemberTail struct {
	Entries     int64  `json:"count"`
	Closing     Amount `json:"closing"`
	ClosingHeld Amount `json:"closing_held"`
}

// MemberStatement streams a member's statement (by member id) for the period [from, to]:
// every entry that concerns the member, with the lot movements it made. Balances are in
// the member's terms: the points the member has (the negative of the member account's
// debit balance), which may be below zero when the member owes a debt.
func (r *Reports) MemberStatement(ctx context.Context, member string, from, to int64,
	head func(MemberHead) error, each func(MemberLine) error) (*MemberTail, error) {
	if !ledger.ValidMemberID(member) {
		return nil, ledger.Errorf(ledger.CodeInvalid, "%q is not a member id", member)
	}
	snap, err := openSnapshot(ctx, r.pool)
	if err != nil {
		return nil, err
	}
	defer snap.close(ctx)
	p, err := snap.period(from, to)
	if err != nil {
		return nil, err
	}
	acct, held := ledger.MemberAccount(member), ledger.MemberHeldAccount(member)
	var bal, hbal decimal.Decimal
	if err := snap.tx.QueryRow(ctx, `SELECT COALESCE(sum(amount) FILTER (WHERE account = $1), 0), COALESCE(sum(amount) FILTER (WHERE account = $2), 0)
		FROM postings WHERE account IN ($1, $2) AND position < $3`, acct, held, p.From).Scan(&bal, &hbal); err != nil {
		return nil, fmt.Errorf("statement of member %s: %w", member, err)
	}
	pts := func(d decimal.Decimal) Amount { return formatUnit(snap.units, ledger.Points, d.Neg()) }
	if err := head(MemberHead{Member: member, Period: p, Opening: pts(bal), OpeningHeld: pts(hbal)}); err != nil {
		return nil, err
	}
	rows, err := snap.tx.Query(ctx, `
		SELECT e.position, e.id, e.kind, e.partner_id, COALESCE(e.reference, ''), e.business_time, e.recorded_at,
		       COALESCE((SELECT sum(amount) FROM postings p WHERE p.position = e.position AND p.account = $2), 0),
		       COALESCE((SELECT sum(amount) FROM postings p WHERE p.position = e.position AND p.account = $3), 0),
		       COALESCE((SELECT json_agg(json_build_object('lot', m.lot_id, 'issuer', m.issuer, 'points', m.points::text,
		                 'consumer', m.consumer, 'reason', m.reason, 'rate', m.rate::text, 'expires_at', m.expires_at) ORDER BY m.seq)
		                   FROM lot_movements m WHERE m.position = e.position), '[]')::text
		  FROM entries e
		 WHERE e.member_id = $1 AND e.position >= $4 AND e.position <= $5
		 ORDER BY e.position`, member, acct, held, p.From, p.To)
	if err != nil {
		return nil, fmt.Errorf("statement of member %s: %w", member, err)
	}
	tail := &MemberTail{}
	var line StatementEntry
	var dAcct, dHeld decimal.Decimal
	var movements string
	_, err = pgx.ForEachRow(rows, line.scan(&dAcct, &dHeld, &movements), func() error {
		bal, hbal = bal.Add(dAcct), hbal.Add(dHeld)
		out := MemberLine{StatementEntry: line.inUTC()}
		out.Points, out.Held, out.Balance, out.HeldBalance = pts(dAcct), pts(dHeld), pts(bal), pts(hbal)
		if err := unmarshalMovements(movements, &out.Movements); err != nil {
			return err
		}
		tail.Entries++
		return each(out)
	})
	if err != nil {
		return nil, fmt.Errorf("statement of member %s: %w", member, err)
	}
	tail.Closing, tail.ClosingHeld = pts(bal), pts(hbal)
	return tail, nil
}

// IssuerRollForward is one issuer's liability roll-forward over a period: the points of
// its issue that members hold at the start, what came in and went out, by kind, and at
// the end. Every line is a sum of the journal's lot movements; opening + issued +
// redeemed + expired + reversals = closing (outflows are negative).
type IssuerRollForward struct {
	Issuer    string `json:"issuer"`
	Opening   Amount `json:"opening"`
	Issued    Amount `json:"issued"`
	Redeemed  Amount `json:"redeemed"`
	Expired   Amount `json:"expired"`
	Reversals Amount `json:"reversals"` // earn reversals, clawbacks, debt repayments, restored redemptions, un-expired points
	Closing   Amount `json:"closing"`
	// LotsRemaining is the sum of the members' remaining lots of this issuer, read from
	// the lots when the period ends at the head (it must equal Closing); empty otherwise.
	LotsRemaining Amount `json:"lots_remaining,omitempty"`
	// Debts is, on the total's line when the period ends at the head, the points members
	// owe (clawed back beyond their balance; repaid first from their next points): the
	// members' liability, their group in the trial balance with the sign turned, is
	// lots_remaining − debts. Empty otherwise.
	Debts Amount `json:"debts,omitempty"`
	// Exposure is the closing points at the coalition's point value: the issuer's unfunded
	// exposure.
	Exposure Amount `json:"exposure"`
}

// RollForward is the liability roll-forward of every issuer and in total.
type RollForward struct {
	Period
	Currency   string              `json:"currency"`
	PointValue string              `json:"point_value"`
	Issuers    []IssuerRollForward `json:"issuers"`
	Total      IssuerRollForward   `json:"total"`
}

// reasonLine says which roll-forward line a lot movement's reason adds to.
func reasonLine(reason string) string {
	switch reason {
	case ledger.ReasonEarn:
		return "issued"
	case ledger.ReasonRedeem:
		return "redeemed"
	case ledger.ReasonExpire:
		return "expired"
	}
	return "reversals"
}

// rollSums are the decimal sums behind an IssuerRollForward.
type rollSums struct{ opening, issued, redeemed, expired, reversals, lots decimal.Decimal }

func (s rollSums) closing() decimal.Decimal {
	return s.opening.Add(s.issued).Add(s.redeemed).Add(s.expired).Add(s.reversals)
}

// RollForward returns the liability roll-forward over the period [from, to] (positions; 0:
// the first entry, the head).
func (r *Reports) RollForward(ctx context.Context, from, to int64) (*RollForward, error) {
	snap, err := openSnapshot(ctx, r.pool)
	if err != nil {
		return nil, err
	}
	defer snap.close(ctx)
	p, err := snap.period(from, to)
	if err != nil {
		return nil, err
	}
	var pointValue decimal.Decimal
	if err := snap.tx.QueryRow(ctx, `SELECT point_value FROM coalition`).Scan(&pointValue); err != nil {
		return nil, fmt.Errorf("roll-forward: %w", err)
	}
	rows, err := snap.tx.Query(ctx, `
		SELECT issuer, reason, sum(points) FILTER (WHERE position < $1), sum(points) FILTER (WHERE position >= $1)
		  FROM lot_movements WHERE position <= $2 GROUP BY issuer, reason`, p.From, p.To)
	if err != nil {
		return nil, fmt.Errorf("roll-forward: %w", err)
	}
	sums := map[string]*rollSums{}
	get := func(issuer string) *rollSums {
		if sums[issuer] == nil {
			sums[issuer] = &rollSums{}
		}
		return sums[issuer]
	}
	var issuer, reason string
	var before, during *decimal.Decimal
	_, err = pgx.ForEachRow(rows, []any{&issuer, &reason, &before, &during}, func() error {
		s := get(issuer)
		if before != nil {
			s.opening = s.opening.Add(*before)
		}
		if during != nil {
			switch reasonLine(reason) {
			case "issued":
				s.issued = s.issued.Add(*during)
			case "redeemed":
				s.redeemed = s.redeemed.Add(*during)
			case "expired":
				s.expired = s.expired.Add(*during)
			default:
				s.reversals = s.reversals.Add(*during)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("roll-forward: %w", err)
	}
	atHead := p.To == snap.head.Position
	if atHead {
		rows, err := snap.tx.Query(ctx, `SELECT issuer, sum(remaining) FROM lots GROUP BY issuer`)
		if err != nil {
			return nil, fmt.Errorf("roll-forward: lots: %w", err)
		}
		var remaining decimal.Decimal
		if _, err := pgx.ForEachRow(rows, []any{&issuer, &remaining}, func() error {
			get(issuer).lots = remaining
			return nil
		}); err != nil {
			return nil, fmt.Errorf("roll-forward: lots: %w", err)
		}
	}
	rf := &RollForward{Period: p, Currency: snap.units.Currency, PointValue: pointValue.String(), Issuers: []IssuerRollForward{}}
	line := func(name string, s rollSums) IssuerRollForward {
		pts := func(d decimal.Decimal) Amount { return formatUnit(snap.units, ledger.Points, d) }
		out := IssuerRollForward{Issuer: name, Opening: pts(s.opening), Issued: pts(s.issued), Redeemed: pts(s.redeemed),
			Expired: pts(s.expired), Reversals: pts(s.reversals), Closing: pts(s.closing()),
			Exposure: formatUnit(snap.units, snap.units.Currency, ledger.RoundHalfUp(s.closing().Mul(pointValue), snap.units.MoneyScale))}
		if atHead {
			out.LotsRemaining = pts(s.lots)
		}
		return out
	}
	names := make([]string, 0, len(sums))
	for n := range sums {
		names = append(names, n)
	}
	sort.Strings(names)
	var total rollSums
	for _, n := range names {
		s := *sums[n]
		rf.Issuers = append(rf.Issuers, line(n, s))
		total.opening, total.issued, total.redeemed = total.opening.Add(s.opening), total.issued.Add(s.issued), total.redeemed.Add(s.redeemed)
		total.expired, total.reversals, total.lots = total.expired.Add(s.expired), total.reversals.Add(s.reversals), total.lots.Add(s.lots)
	}
	rf.Total = line("total", total)
	if atHead {
		var debts decimal.Decimal
		if err := snap.tx.QueryRow(ctx, `SELECT COALESCE(sum(outstanding), 0) FROM debts`).Scan(&debts); err != nil {
			return nil, fmt.Errorf("roll-forward: debts: %w", err)
		}
		rf.Total.Debts = formatUnit(snap.units, ledger.Points, debts)
	}
	return rf, nil
}

// IssuerBreakage is the points of one issuer that expired in a period, and their value.
type IssuerBreakage struct {
	Issuer string `json:"issuer"`
	// Expired is the points that expired; Unexpired, the expired points that earn
	// reversals took back out of breakage in the period; Net, the difference.
	Expired   Amount `json:"expired"`
	Unexpired Amount `json:"unexpired"`
	Net       Amount `json:"net"`
	// Value is Net at the issuer's redeem rate in force at each expiry's business time
	// (unexpired points at the rate of the expiry they reverse; the coalition's point value
	// where the contract names none), rounded half up once.
	Value Amount `json:"value"`
}

// Breakage is the breakage report of a period.
type Breakage struct {
	Period
	Currency string           `json:"currency"`
	Issuers  []IssuerBreakage `json:"issuers"`
	Total    IssuerBreakage   `json:"total"`
}

// Breakage returns the points expired per issuer over the period [from, to] (positions;
// 0: the first entry, the head), with their money value at the redeem rate.
func (r *Reports) Breakage(ctx context.Context, from, to int64) (*Breakage, error) {
	snap, err := openSnapshot(ctx, r.pool)
	if err != nil {
		return nil, err
	}
	defer snap.close(ctx)
	p, err := snap.period(from, to)
	if err != nil {
		return nil, err
	}
	rows, err := snap.tx.Query(ctx, `
		SELECT m.issuer,
		       COALESCE(-sum(m.points) FILTER (WHERE m.reason = 'expire'), 0),
		       COALESCE(sum(m.points) FILTER (WHERE m.reason = 'unexpire'), 0),
		       COALESCE(sum(-m.points * COALESCE(k.rate, c.point_value)) FILTER (WHERE m.reason = 'expire'), 0)
		         - COALESCE(sum(m.points * COALESCE(k.rate, c.point_value)) FILTER (WHERE m.reason = 'unexpire'), 0)
		  FROM lot_movements m
		  JOIN entries e ON e.position = m.position
		  CROSS JOIN coalition c
		  -- Points taken back out of breakage are valued as they went in: at the rate of the
		  -- lot's expiry they reverse.
		  LEFT JOIN LATERAL (
		        SELECT ex.business_time FROM lot_movements x JOIN entries ex ON ex.position = x.position
		         WHERE m.reason = 'unexpire' AND x.lot_id = m.lot_id AND x.reason = 'expire' AND x.position < m.position
		         ORDER BY x.position DESC LIMIT 1) xp ON true
		  LEFT JOIN LATERAL (
		        SELECT (terms->>'redeem_rate')::numeric AS rate FROM contracts
		         WHERE partner_id = m.issuer AND effective_from <= COALESCE(xp.business_time, e.business_time)
		         ORDER BY effective_from DESC, version DESC LIMIT 1) k ON true
		 WHERE m.reason IN ('expire', 'unexpire') AND m.position >= $1 AND m.position <= $2
		 GROUP BY m.issuer ORDER BY m.issuer`, p.From, p.To)
	if err != nil {
		return nil, fmt.Errorf("breakage: %w", err)
	}
	b := &Breakage{Period: p, Currency: snap.units.Currency, Issuers: []IssuerBreakage{}}
	var issuer string
	var expired, unexpired, value decimal.Decimal
	var te, tu, tv decimal.Decimal
	line := func(name string, e, u, v decimal.Decimal) IssuerBreakage {
		pts := func(d decimal.Decimal) Amount { return formatUnit(snap.units, ledger.Points, d) }
		return IssuerBreakage{Issuer: name, Expired: pts(e), Unexpired: pts(u), Net: pts(e.Sub(u)),
			Value: formatUnit(snap.units, snap.units.Currency, v)}
	}
	_, err = pgx.ForEachRow(rows, []any{&issuer, &expired, &unexpired, &value}, func() error {
		v := ledger.RoundHalfUp(value, snap.units.MoneyScale)
		b.Issuers = append(b.Issuers, line(issuer, expired, unexpired, v))
		te, tu, tv = te.Add(expired), tu.Add(unexpired), tv.Add(v)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("breakage: %w", err)
	}
	b.Total = line("total", te, tu, tv)
	return b, nil
}

// unmarshalMovements reads the lot movements as the member statement's query builds them
// (ledger.Movement's own JSON), with their expiries in UTC.
func unmarshalMovements(raw string, out *[]ledger.Movement) error {
	if err := json.Unmarshal([]byte(raw), out); err != nil {
		return fmt.Errorf("lot movements: %w", err)
	}
	for i, m := range *out {
		if m.ExpiresAt != nil {
			t := m.ExpiresAt.UTC()
			(*out)[i].ExpiresAt = &t
		}
	}
	return nil
}
