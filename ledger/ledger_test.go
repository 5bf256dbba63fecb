package ledger_test

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shopspring/decimal"

	"github.com/coalitionledger/coalition/internal/pgtest"
	"github.com/coalitionledger/coalition/ledger"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func d(s string) decimal.Decimal { return decimal.RequireFromString(s) }

// clock is a settable time source for the ledger under test.
type clock struct{ now atomic.Int64 }

func newClock(t time.Time) *clock {
	c := &clock{}
	c.set(t)
	return c
}
func (c *clock) set(t time.Time)          { c.now.Store(t.UnixMicro()) }
func (c *clock) Now() time.Time           { return time.UnixMicro(c.now.Load()).UTC() }
func (c *clock) advance(by time.Duration) { c.now.Add(by.Microseconds()) }

var t0 = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

// open returns a ledger on a fresh database and its clock, set to t0.
func open(t testing.TB, opts ...ledger.Option) (*ledger.Ledger, *clock) {
	t.Helper()
	l, c, _ := openDB(t, opts...)
	return l, c
}

// openDB is open with the database's pool too, for tests that read or lock rows themselves.
func openDB(t testing.TB, opts ...ledger.Option) (*ledger.Ledger, *clock, *pgxpool.Pool) {
	t.Helper()
	c, pool := newClock(t0), pgtest.Pool(t)
	return ledger.New(pool, append([]ledger.Option{ledger.WithClock(c.Now)}, opts...)...), c, pool
}

func earn(member, issuer, points string, key string) ledger.Entry {
	return ledger.Entry{Kind: ledger.EntryEarn, Partner: issuer, Member: member, IdempotencyKey: key,
		BusinessTime: t0, Op: ledger.Issue{Points: d(points), Issuer: issuer}}
}

func earnExpiring(member, issuer, points string, expires time.Time) ledger.Entry {
	e := earn(member, issuer, points, "")
	e.Op = ledger.Issue{Points: d(points), Issuer: issuer, ExpiresAt: &expires}
	return e
}

func redeem(member, consumer, points, rate, key string) ledger.Entry {
	return ledger.Entry{Kind: ledger.EntryRedemption, Partner: consumer, Member: member, IdempotencyKey: key,
		BusinessTime: t0, Op: ledger.Consume{Points: d(points), Consumer: consumer, Rate: d(rate)}}
}

func mustPost(t testing.TB, l *ledger.Ledger, e ledger.Entry) *ledger.Posted {
	t.Helper()
	p, err := l.PostOne(context.Background(), e)
	if err != nil {
		t.Fatalf("post %s: %v", e.Kind, err)
	}
	return p
}

func wantCode(t testing.TB, err error, code ledger.Code) {
	t.Helper()
	if got := ledger.ErrorCode(err); got != code {
		t.Fatalf("error = %v, want code %s", err, code)
	}
}

func balance(t testing.TB, l *ledger.Ledger, account string) decimal.Decimal {
	t.Helper()
	b, err := l.Balance(context.Background(), account)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func wantBalance(t testing.TB, l *ledger.Ledger, account, want string) {
	t.Helper()
	if got := balance(t, l, account); !got.Equal(d(want)) {
		t.Fatalf("balance of %s = %s, want %s", account, got, want)
	}
}

// fataler is what sound needs of a test: a *testing.T or a *rapid.T.
type fataler interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
}

// sound checks the invariants every test relies on: each unit sums to zero, every
// balance equals its postings, and the hash chain verifies.
func sound(t fataler, l *ledger.Ledger) {
	t.Helper()
	ctx := context.Background()
	tb, err := l.TrialBalance(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	for unit, total := range tb.Totals {
		if !total.IsZero() {
			t.Fatalf("unit %s sums to %s over all accounts", unit, total)
		}
	}
	mm, err := l.CheckBalances(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(mm) > 0 {
		t.Fatalf("balances differ from their postings: %+v", mm)
	}
	if err := l.VerifyChain(ctx, nil); err != nil {
		t.Fatal(err)
	}
}

func head(t testing.TB, l *ledger.Ledger) int64 {
	t.Helper()
	h, err := l.Head(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return h.Position
}

func TestEarnAndCrossPartnerRedemption(t *testing.T) {
	t.Parallel()
	l, _ := open(t)
	e := mustPost(t, l, earn("m1", "fuelco", "300", "e1"))
	if e.Position != 1 || e.Lot == nil || !e.Lot.Points.Equal(d("300")) || !e.MemberBalance.Equal(d("300")) {
		t.Fatalf("earn answer = %+v", e)
	}
	mustPost(t, l, earn("m1", "gadgets", "100", "e2"))
	// 350 points redeemed at the grocer at 0.0333 per point: value 11.655 → 11.66, split
	// 300:50 over fuelco and gadgets by largest remainder: 9.994.. → 9.99 and 1.665.. → 1.67.
	r := mustPost(t, l, redeem("m1", "grocer", "350", "0.0333", "r1"))
	want := []ledger.Posting{
		{Account: "member:m1", Unit: "PTS", Amount: d("350")},
		{Account: "partner:grocer:redeemed", Unit: "PTS", Amount: d("-350")},
		{Account: "partner:fuelco:settlement", Unit: "USD", Amount: d("9.99")},
		{Account: "partner:gadgets:settlement", Unit: "USD", Amount: d("1.67")},
		{Account: "partner:grocer:settlement", Unit: "USD", Amount: d("-11.66")},
	}
	if len(r.Postings) != len(want) {
		t.Fatalf("postings = %v", r.Postings)
	}
	for i := range want {
		if r.Postings[i].Account != want[i].Account || !r.Postings[i].Amount.Equal(want[i].Amount) || r.Postings[i].Unit != want[i].Unit {
			t.Fatalf("posting %d = %v, want %v", i, r.Postings[i], want[i])
		}
	}
	wantBalance(t, l, "member:m1", "-50")
	wantBalance(t, l, "partner:grocer:settlement", "-11.66")
	// Redeeming at the issuer itself moves no money.
	r2 := mustPost(t, l, redeem("m1", "gadgets", "50", "0.0333", "r2"))
	for _, p := range r2.Postings {
		if p.Unit != "PTS" {
			t.Fatalf("own-issuer redemption posted money: %v", r2.Postings)
		}
	}
	wantBalance(t, l, "member:m1", "0")
	sound(t, l)
}

func TestRedemptionTakesEarliestExpiryFirst(t *testing.T) {
	t.Parallel()
	l, _ := open(t)
	never := mustPost(t, l, earn("m", "a", "10", ""))
	late := mustPost(t, l, earnExpiring("m", "b", "10", t0.Add(90*24*time.Hour)))
	soon := mustPost(t, l, earnExpiring("m", "c", "10", t0.Add(30*24*time.Hour)))
	r := mustPost(t, l, redeem("m", "z", "15", "0", ""))
	if len(r.Movements) != 2 || r.Movements[0].Lot != soon.Lot.ID || r.Movements[1].Lot != late.Lot.ID ||
		!r.Movements[0].Points.Equal(d("-10")) || !r.Movements[1].Points.Equal(d("-5")) {
		t.Fatalf("movements = %+v", r.Movements)
	}
	lots, err := l.Lots(context.Background(), "m")
	if err != nil {
		t.Fatal(err)
	}
	if len(lots) != 2 || lots[0].ID != late.Lot.ID || lots[1].ID != never.Lot.ID || !lots[0].Remaining.Equal(d("5")) {
		t.Fatalf("lots after = %+v", lots)
	}
}

func TestInsufficientPointsWritesNothing(t *testing.T) {
	t.Parallel()
	l, _ := open(t)
	mustPost(t, l, earn("m", "a", "10", ""))
	_, err := l.PostOne(context.Background(), redeem("m", "b", "11", "0.01", "k"))
	wantCode(t, err, ledger.CodeInsufficientPoints)
	var e *ledger.Error
	if !errorAs(err, &e) || e.Details["available"] != "10" {
		t.Fatalf("details = %+v", e)
	}
	if head(t, l) != 1 {
		t.Fatal("a refused entry was written")
	}
	wantBalance(t, l, "member:m", "-10")
}

func TestBadInputIsRefusedAndChangesNothing(t *testing.T) {
	t.Parallel()
	l, _ := open(t)
	mustPost(t, l, earn("m", "a", "10", ""))
	legs := func(ps ...ledger.Posting) ledger.Entry {
		return ledger.Entry{Kind: ledger.EntryAdjustment, Partner: "operator", BusinessTime: t0, Postings: ps}
	}
	many := make([]ledger.Posting, 0, 34)
	for i := 0; i < 17; i++ {
		many = append(many, ledger.Debit("operator:bank", d("1")), ledger.Credit("operator:fees", d("1")))
	}
	long := strings.Repeat("x", 201)
	tests := []struct {
		name  string
		entry ledger.Entry
		code  ledger.Code
	}{
		{"points finer than the scale", earn("m", "a", "1.5", ""), ledger.CodeInvalidScale},
		{"money finer than cents", legs(ledger.Debit("operator:bank", d("1.001")), ledger.Credit("operator:fees", d("1.001"))), ledger.CodeInvalidScale},
		{"zero points", earn("m", "a", "0", ""), ledger.CodeInvalidAmount},
		{"negative points", earn("m", "a", "-5", ""), ledger.CodeInvalidAmount},
		{"absurd points", earn("m", "a", "1000000000001", ""), ledger.CodeInvalidAmount},
		{"unknown unit", legs(ledger.Posting{Account: "operator:bank", Unit: "EUR", Amount: d("1")}, ledger.Posting{Account: "operator:fees", Unit: "EUR", Amount: d("-1")}), ledger.CodeUnknownUnit},
		{"unbalanced", legs(ledger.Debit("operator:bank", d("2")), ledger.Credit("operator:fees", d("1"))), ledger.CodeUnbalanced},
		{"one leg", legs(ledger.Debit("operator:bank", d("2"))), ledger.CodeUnbalanced},
		{"too many legs", legs(many...), ledger.CodeTooManyPostings},
		{"not an account", legs(ledger.Debit("operator:cash", d("1")), ledger.Credit("operator:fees", d("1"))), ledger.CodeInvalidAccount},
		{"member account by hand", legs(ledger.Debit("partner:a:issued", d("1")), ledger.Credit("member:m", d("1"))), ledger.CodeInvalidAccount},
		{"business time too old", func() ledger.Entry {
			e := earn("m", "a", "1", "")
			e.BusinessTime = t0.Add(-8 * 24 * time.Hour)
			return e
		}(), ledger.CodeBusinessTime},
		{"business time in the future", func() ledger.Entry { e := earn("m", "a", "1", ""); e.BusinessTime = t0.Add(6 * time.Minute); return e }(), ledger.CodeBusinessTime},
		{"no business time", func() ledger.Entry { e := earn("m", "a", "1", ""); e.BusinessTime = time.Time{}; return e }(), ledger.CodeInvalid},
		{"bad partner", earn("m", "Fuel Co", "1", ""), ledger.CodeInvalid},
		{"bad member", earn("m:x", "a", "1", ""), ledger.CodeInvalid},
		{"long reference", func() ledger.Entry { e := earn("m", "a", "1", ""); e.Reference = long; return e }(), ledger.CodeInvalid},
		{"metadata not an object", func() ledger.Entry { e := earn("m", "a", "1", ""); e.Metadata = []byte(`[1]`); return e }(), ledger.CodeInvalid},
		{"unknown kind", func() ledger.Entry { e := earn("m", "a", "1", ""); e.Kind = "gift"; return e }(), ledger.CodeInvalid},
		{"reverses an unknown entry", func() ledger.Entry {
			e := legs(ledger.Debit("operator:bank", d("1")), ledger.Credit("operator:fees", d("1")))
			e.Reverses = "nope"
			return e
		}(), ledger.CodeNotFound},
		{"expiry of an unknown lot", ledger.Entry{Kind: ledger.EntryExpiry, Partner: "operator", Member: "m", BusinessTime: t0, Op: ledger.Expire{Lot: "nope"}}, ledger.CodeNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := l.PostOne(context.Background(), tt.entry)
			wantCode(t, err, tt.code)
		})
	}
	if head(t, l) != 1 {
		t.Fatalf("refused entries were written: head at %d", head(t, l))
	}
	wantBalance(t, l, "member:m", "-10")

	_, err := l.Post(context.Background(), nil)
	wantCode(t, err, ledger.CodeEmptyBatch)
	big := make([]ledger.Entry, ledger.MaxBatch+1)
	_, err = l.Post(context.Background(), big)
	wantCode(t, err, ledger.CodeBatchTooLarge)
	sound(t, l)
}

func TestBatchRefusesItemsWithoutStoppingOthers(t *testing.T) {
	t.Parallel()
	l, _ := open(t)
	res, err := l.Post(context.Background(), []ledger.Entry{
		earn("m", "a", "10", "k1"),
		redeem("m", "b", "25", "0.01", "k2"), // refused: only 10 so far
		earn("m", "a", "20", "k3"),
		redeem("m", "b", "25", "0.01", "k4"), // accepted: 30 by now
	})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Err != nil || res[1].Err == nil || res[1].Err.Code != ledger.CodeInsufficientPoints || res[2].Err != nil || res[3].Err != nil {
		t.Fatalf("results = %+v", res)
	}
	if res[0].Entry.Position != 1 || res[2].Entry.Position != 2 || res[3].Entry.Position != 3 {
		t.Fatal("positions are not gap-free in batch order")
	}
	wantBalance(t, l, "member:m", "-5")
	sound(t, l)
}

func TestAllOrNothingBatch(t *testing.T) {
	t.Parallel()
	l, _ := open(t)
	res, err := l.PostAll(context.Background(), []ledger.Entry{
		earn("m", "a", "10", "k1"),
		redeem("m", "b", "25", "0.01", "k2"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Err == nil || res[0].Err.Code != ledger.CodeBatchAborted || res[1].Err.Code != ledger.CodeInsufficientPoints {
		t.Fatalf("results = %+v", res)
	}
	if head(t, l) != 0 {
		t.Fatal("an aborted batch wrote entries")
	}
	// Nothing was stored under the keys either: the corrected batch goes through.
	res, err = l.PostAll(context.Background(), []ledger.Entry{earn("m", "a", "10", "k1"), redeem("m", "b", "5", "0.01", "k2")})
	if err != nil || res[0].Err != nil || res[1].Err != nil {
		t.Fatalf("results = %+v, %v", res, err)
	}
}

func TestIdempotency(t *testing.T) {
	t.Parallel()
	l, _ := open(t)
	ctx := context.Background()
	first := mustPost(t, l, earn("m", "a", "10", "key-1"))
	res, err := l.Post(ctx, []ledger.Entry{earn("m", "a", "10", "key-1")})
	if err != nil {
		t.Fatal(err)
	}
	if !res[0].Replayed || res[0].Entry.ID != first.ID || res[0].Entry.Position != first.Position {
		t.Fatalf("replay = %+v", res[0])
	}
	// The same key from another partner is another key.
	mustPost(t, l, earn("m", "b", "10", "key-1"))
	// The same key with another request is a conflict and posts nothing.
	_, err = l.PostOne(ctx, earn("m", "a", "11", "key-1"))
	wantCode(t, err, ledger.CodeIdempotencyConflict)
	// A refusal is an answer too: its replay is the same refusal, even once it would pass.
	_, err = l.PostOne(ctx, redeem("m", "a", "50", "0.01", "key-2"))
	wantCode(t, err, ledger.CodeInsufficientPoints)
	mustPost(t, l, earn("m", "a", "100", "key-3"))
	_, err = l.PostOne(ctx, redeem("m", "a", "50", "0.01", "key-2"))
	wantCode(t, err, ledger.CodeInsufficientPoints)
	// Twice in one batch: the second is a replay of the first.
	res, err = l.Post(ctx, []ledger.Entry{earn("m", "a", "7", "key-4"), earn("m", "a", "7", "key-4"), earn("m", "a", "8", "key-4")})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Err != nil || !res[1].Replayed || res[1].Entry.ID != res[0].Entry.ID || res[2].Err.Code != ledger.CodeIdempotencyConflict {
		t.Fatalf("in-batch repeats = %+v", res)
	}
	if head(t, l) != 4 {
		t.Fatalf("head at %d, want 4 entries", head(t, l))
	}
	sound(t, l)
}

func TestReferenceIsUniquePerPartnerAndKind(t *testing.T) {
	t.Parallel()
	l, _ := open(t)
	e := earn("m", "a", "10", "")
	e.Reference = "till-7/0001"
	mustPost(t, l, e)
	_, err := l.PostOne(context.Background(), e)
	wantCode(t, err, ledger.CodeDuplicateReference)
	other := earn("m", "b", "10", "")
	other.Reference = "till-7/0001"
	mustPost(t, l, other) // another partner may use it
	r := redeem("m", "a", "1", "0", "")
	r.Reference = "till-7/0001"
	mustPost(t, l, r) // and another kind
}

func TestExpiry(t *testing.T) {
	t.Parallel()
	l, c := open(t)
	ctx := context.Background()
	e := mustPost(t, l, earnExpiring("m", "a", "100", t0.Add(24*time.Hour)))
	mustPost(t, l, redeem("m", "b", "30", "0.01", ""))
	expire := ledger.Entry{Kind: ledger.EntryExpiry, Partner: "operator", Member: "m", BusinessTime: t0, Op: ledger.Expire{Lot: e.Lot.ID}}
	_, err := l.PostOne(ctx, expire)
	wantCode(t, err, ledger.CodeLotNotExpired)
	c.advance(25 * time.Hour)
	expire.BusinessTime = c.Now()
	x := mustPost(t, l, expire)
	if !x.MemberBalance.IsZero() {
		t.Fatalf("balance after expiry = %s", x.MemberBalance)
	}
	wantBalance(t, l, "partner:a:expired", "-70")
	expire.BusinessTime = c.Now()
	_, err = l.PostOne(ctx, expire)
	wantCode(t, err, ledger.CodeNothingToExpire)
	sound(t, l)
}

func TestEarnReversal(t *testing.T) {
	t.Parallel()
	l, c := open(t)
	ctx := context.Background()
	// The earn to reverse (100 from a, expiring), and other points from b.
	orig := mustPost(t, l, earnExpiring("m", "a", "100", t0.Add(24*time.Hour)))
	mustPost(t, l, earn("m", "b", "40", ""))
	mustPost(t, l, redeem("m", "c", "80", "0.01", "")) // takes 80 of the a lot
	claw := func(points string) ledger.Entry {
		return ledger.Entry{Kind: ledger.EntryEarnReversal, Partner: "a", Member: "m", BusinessTime: c.Now(),
			Op: ledger.Clawback{Lot: orig.Lot.ID, Points: d(points), Rate: d("0.02")}}
	}
	// 30 back: 20 from the lot itself, then 10 from b's lot, which a consumes: b owes a 0.20.
	r := mustPost(t, l, claw("30"))
	if r.Reverses != orig.ID || !r.MemberBalance.Equal(d("30")) {
		t.Fatalf("reversal = %+v", r)
	}
	wantBalance(t, l, "partner:b:settlement", "0.2")
	wantBalance(t, l, "partner:a:issued", "70")
	// 50 more: the 30 left in b's lot, then a debt of 20 owed to a; the balance goes negative.
	r = mustPost(t, l, claw("50"))
	if !r.MemberBalance.Equal(d("-20")) {
		t.Fatalf("balance after clawing past zero = %s", r.MemberBalance)
	}
	debts, err := l.Debts(ctx, "m")
	if err != nil || len(debts) != 1 || !debts[0].Outstanding.Equal(d("20")) || debts[0].Partner != "a" {
		t.Fatalf("debts = %+v, %v", debts, err)
	}
	// At most 20 more can be reversed.
	_, err = l.PostOne(ctx, claw("21"))
	wantCode(t, err, ledger.CodeReversalTooLarge)
	// The next earn (from b) repays the debt first: a consumes 20 of b's new lot, b owes a.
	n := mustPost(t, l, earn("m", "b", "50", ""))
	if !n.MemberBalance.Equal(d("30")) {
		t.Fatalf("balance after repaying = %s", n.MemberBalance)
	}
	wantBalance(t, l, "partner:b:settlement", "1.2") // 0.20 + 30×0.02 + 20×0.02
	debts, _ = l.Debts(ctx, "m")
	if len(debts) != 0 {
		t.Fatalf("debt left: %+v", debts)
	}
	sound(t, l)
}

func TestEarnReversalOfExpiredPoints(t *testing.T) {
	t.Parallel()
	l, c := open(t)
	orig := mustPost(t, l, earnExpiring("m", "a", "100", t0.Add(24*time.Hour)))
	mustPost(t, l, earn("m", "b", "50", ""))
	mustPost(t, l, redeem("m", "a", "40", "0.01", "")) // 40 of the a lot redeemed at a
	c.advance(48 * time.Hour)
	mustPost(t, l, ledger.Entry{Kind: ledger.EntryExpiry, Partner: "operator", Member: "m", BusinessTime: c.Now(), Op: ledger.Expire{Lot: orig.Lot.ID}})
	wantBalance(t, l, "partner:a:expired", "-60")
	// The whole earn is returned: 60 of it expired and comes out of breakage; the 40 that were
	// redeemed are clawed from b's lot.
	r := mustPost(t, l, ledger.Entry{Kind: ledger.EntryEarnReversal, Partner: "a", Member: "m", BusinessTime: c.Now(),
		Op: ledger.Clawback{Lot: orig.Lot.ID, Points: d("100"), Rate: d("0.01")}})
	wantBalance(t, l, "partner:a:expired", "0")
	wantBalance(t, l, "partner:a:issued", "0")
	if !r.MemberBalance.Equal(d("10")) {
		t.Fatalf("balance = %s, want 10", r.MemberBalance)
	}
	sound(t, l)
}

func TestRedemptionReversal(t *testing.T) {
	t.Parallel()
	l, _ := open(t)
	ctx := context.Background()
	lotA := mustPost(t, l, earnExpiring("m", "a", "100", t0.Add(30*24*time.Hour)))
	mustPost(t, l, earn("m", "b", "100", ""))
	red := mustPost(t, l, redeem("m", "c", "150", "0.01", "")) // a: 100 (1.00), b: 50 (0.50)
	wantBalance(t, l, "partner:c:settlement", "-1.5")
	restore := func(points string) ledger.Entry {
		return ledger.Entry{Kind: ledger.EntryRedemptionReversal, Partner: "c", Member: "m", BusinessTime: t0,
			Op: ledger.Restore{Of: red.ID, Points: d(points)}}
	}
	// Part of it first: 30 points go back into the last lot taken (b's).
	r := mustPost(t, l, restore("30"))
	if len(r.Movements) != 1 || r.Movements[0].Issuer != "b" || !r.MemberBalance.Equal(d("80")) {
		t.Fatalf("partial restore = %+v", r)
	}
	// The rest: every money leg goes back to the cent, and a's points return with their expiry.
	mustPost(t, l, restore("0"))
	wantBalance(t, l, "partner:a:settlement", "0")
	wantBalance(t, l, "partner:b:settlement", "0")
	wantBalance(t, l, "partner:c:settlement", "0")
	wantBalance(t, l, "member:m", "-200")
	lots, _ := l.Lots(ctx, "m")
	if len(lots) != 2 || lots[0].ID != lotA.Lot.ID || !lots[0].ExpiresAt.Equal(*lotA.Lot.ExpiresAt) {
		t.Fatalf("lots = %+v", lots)
	}
	_, err := l.PostOne(ctx, restore("1"))
	wantCode(t, err, ledger.CodeReversalTooLarge)
	sound(t, l)
}

func TestBalancesAsOfPositionAndTime(t *testing.T) {
	t.Parallel()
	l, c := open(t)
	ctx := context.Background()
	mustPost(t, l, earn("m", "a", "10", ""))
	c.advance(time.Minute)
	mid := c.Now()
	c.advance(time.Minute)
	mustPost(t, l, earn("m", "a", "5", ""))
	mustPost(t, l, redeem("m", "b", "3", "0.01", ""))
	at1, err := l.BalanceAt(ctx, "member:m", 1)
	if err != nil || !at1.Equal(d("-10")) {
		t.Fatalf("balance at 1 = %s, %v", at1, err)
	}
	atMid, err := l.BalanceAtTime(ctx, "member:m", mid)
	if err != nil || !atMid.Equal(d("-10")) {
		t.Fatalf("balance at %s = %s, %v", mid, atMid, err)
	}
	wantBalance(t, l, "member:m", "-12")
	ps, err := l.Postings(ctx, "member:m", 0, 10)
	if err != nil || len(ps) != 3 || !ps[2].Amount.Equal(d("3")) || ps[2].Kind != ledger.EntryRedemption {
		t.Fatalf("postings = %+v, %v", ps, err)
	}
	tb, err := l.TrialBalance(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if tb.Position != 2 || !tb.Totals["PTS"].IsZero() || len(tb.Accounts) != 2 {
		t.Fatalf("trial balance at 2 = %+v", tb)
	}
	// A position past the head is the head, said so, not an empty table.
	past, err := l.TrialBalance(ctx, 999)
	now, nerr := l.TrialBalance(ctx, 0)
	if err != nil || nerr != nil || past.Position != 3 || !reflect.DeepEqual(past, now) {
		t.Fatalf("trial balance at 999 = %+v, %v; now %+v, %v", past, err, now, nerr)
	}
}

func errorAs(err error, target **ledger.Error) bool {
	e, ok := err.(*ledger.Error)
	if ok {
		*target = e
	}
	return ok
}

func TestMetadataIsCanonicalAndHashed(t *testing.T) {
	t.Parallel()
	l, _ := open(t)
	e := earn("m", "a", "10", "")
	e.Metadata = []byte(`{"z": 1.0, "a": "till 7", "n": {"y": true, "b": null}}`)
	p := mustPost(t, l, e)
	if string(p.Metadata) != `{"a":"till 7","n":{"b":null,"y":true},"z":1}` {
		t.Fatalf("metadata = %s", p.Metadata)
	}
	got, err := l.Entry(context.Background(), p.ID)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprintf("%x", got.Hash) != fmt.Sprintf("%x", p.Hash) {
		t.Fatal("hash read back differs")
	}
	sound(t, l)
}

// Earned points are kept per business day in the coalition's time zone; a reversal counts
// against the day of the earn it reverses, and an award counts like an earn.
func TestEarnedDaysForTiers(t *testing.T) {
	t.Parallel()
	l, c := open(t)
	ctx := context.Background()
	if _, err := l.Pool().Exec(ctx, `UPDATE coalition SET time_zone = 'Europe/Moscow'`); err != nil {
		t.Fatal(err)
	}
	late := earn("m", "a", "100", "") // 23:30 UTC on 1 March is 2 March in Moscow
	late.BusinessTime = time.Date(2026, 3, 1, 23, 30, 0, 0, time.UTC)
	e := mustPost(t, l, late)
	if e.Lot.BusinessDay != "2026-03-02" {
		t.Fatalf("business day = %q", e.Lot.BusinessDay)
	}
	award := ledger.Entry{Kind: ledger.EntryAward, Partner: "operator", Member: "m", BusinessTime: t0,
		Op: ledger.Issue{Points: d("7"), Issuer: ledger.OperatorIssuer}}
	mustPost(t, l, award)
	c.advance(24 * time.Hour)
	mustPost(t, l, ledger.Entry{Kind: ledger.EntryEarnReversal, Partner: "a", Member: "m", BusinessTime: c.Now(),
		Op: ledger.Clawback{Lot: e.Lot.ID, Points: d("30"), Rate: d("0")}})
	got, err := l.EarnedBetween(ctx, "m", "2026-03-02", "2026-03-03")
	if err != nil || !got.Equal(d("77")) {
		t.Fatalf("earned on 2 March = %s, %v; want 100 + 7 − 30", got, err)
	}
	got, _ = l.EarnedBetween(ctx, "m", "2026-03-03", "2026-03-04")
	if !got.IsZero() {
		t.Fatalf("earned on 3 March = %s, want 0", got)
	}
}

func TestPointsPastTheirExpiryCannotBeSpentBeforeTheJobRuns(t *testing.T) {
	t.Parallel()
	l, c := open(t)
	ctx := context.Background()
	m := "01J0000000000000000000EXP1"
	mustPost(t, l, earnExpiring(m, "fuel", "500", t0.Add(time.Hour)))
	mustPost(t, l, earn(m, "shop", "100", ""))
	c.advance(2 * time.Hour) // past the fuel lot's expiry; the expiry job has not run
	late := redeem(m, "web", "400", "0.9", "")
	late.BusinessTime = c.Now()
	if _, err := l.PostOne(ctx, late); ledger.ErrorCode(err) != ledger.CodeInsufficientPoints {
		t.Fatalf("redeeming expired points: %v, want insufficient_points", err)
	}
	// The unexpired lot still pays, and only it.
	ok := redeem(m, "web", "100", "0.9", "")
	ok.BusinessTime = c.Now()
	p := mustPost(t, l, ok)
	if len(p.Movements) != 1 || p.Movements[0].Issuer != "shop" {
		t.Fatalf("movements %+v, want the shop lot alone", p.Movements)
	}
	// A redemption dated before the expiry (a till that was offline) may still use it.
	early := redeem(m, "web", "50", "0.9", "")
	early.BusinessTime = t0.Add(30 * time.Minute)
	if p := mustPost(t, l, early); len(p.Movements) != 1 || p.Movements[0].Issuer != "fuel" {
		t.Fatalf("movements %+v, want the fuel lot", p.Movements)
	}
	// The job then expires what is left of it.
	if n, err := l.ExpireDue(ctx, c.Now(), nil); err != nil || n != 1 {
		t.Fatalf("expiry job: %d, %v", n, err)
	}
	if b, _ := l.Balance(ctx, "partner:fuel:expired"); !b.Equal(d("-450")) {
		t.Fatalf("partner:fuel:expired %s, want -450", b)
	}
}

// The trial balance at the head is the head's, even while entries keep committing: every
// balance it gives is its account's postings up to the position it names.
func TestTrialBalanceIsOneMoment(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, _ := open(t)
	mustPost(t, l, earn("m", "a", "1", ""))
	stop := make(chan struct{})
	var posters sync.WaitGroup
	for p := 0; p < 4; p++ {
		posters.Add(1)
		go func() {
			defer posters.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := l.PostOne(ctx, earn(fmt.Sprint("m", p), "a", "1", "")); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	defer posters.Wait()
	defer close(stop)
	for i := 0; i < 200; i++ {
		tb, err := l.TrialBalance(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range tb.Accounts {
			at, err := l.BalanceAt(ctx, b.Account, tb.Position)
			if err != nil || !at.Equal(b.Balance) {
				t.Fatalf("%s at position %d: %s in the trial balance, %s in its postings (%v)", b.Account, tb.Position, b.Balance, at, err)
			}
		}
	}
}

func TestTrialBalanceListsPostedAccountsOnly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, _ := open(t)
	mustPost(t, l, earn("m", "a", "10", ""))
	// A refused redemption of a member who never earned still makes the member's
	// account (the writer locks it), with no posting: no line in the trial balance, at
	// the head or before it.
	_, err := l.PostOne(ctx, redeem("ghost", "b", "5", "0.01", ""))
	wantCode(t, err, ledger.CodeInsufficientPoints)
	for _, position := range []int64{0, 1} {
		tb, err := l.TrialBalance(ctx, position)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, b := range tb.Accounts {
			names = append(names, b.Account)
		}
		if want := []string{"member:m", "partner:a:issued"}; fmt.Sprint(names) != fmt.Sprint(want) {
			t.Fatalf("at %d: accounts %v, want %v", position, names, want)
		}
	}
}
