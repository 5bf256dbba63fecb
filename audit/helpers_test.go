package audit_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shopspring/decimal"

	"github.com/coalitionledger/coalition/audit"
	"github.com/coalitionledger/coalition/internal/pgtest"
	"github.com/coalitionledger/coalition/ledger"
	"github.com/coalitionledger/coalition/partners"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

func ptr[T any](v T) *T { return &v }

// t0 is the fixture's first instant.
var t0 = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

// fatalT is what the fixture needs of a test: a *testing.T or a *rapid.T.
type fatalT interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
}

// fixture is a USD coalition (a point is worth $0.01) of three partners, on its own
// database, with a clock the test moves:
//   - fuelco: 1 point per dollar, points expire after 30 days, redeem rate $0.01;
//   - electro: 2 points per dollar, never expire, redeem rate $0.005;
//   - grocer: 1 point per dollar, expire after 10 days, redeem rate $0.02.
type fixture struct {
	t     fatalT
	pool  *pgxpool.Pool
	store *partners.Store
	l     *ledger.Ledger
	svc   *partners.Service
	now   time.Time
	key   ed25519.PrivateKey
	cp    *audit.Checkpointer
	seq   int
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	return newFixtureOn(t, pgtest.Pool(t))
}

func newFixtureOn(t fatalT, pool *pgxpool.Pool) *fixture {
	t.Helper()
	ctx := context.Background()
	f := &fixture{t: t, pool: pool, store: partners.NewStore(pool), now: t0}
	clock := func() time.Time { return f.now }
	f.l = ledger.New(pool, ledger.WithClock(clock))
	f.svc = partners.NewService(f.store, f.l, clock)
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	f.key = key
	f.cp = audit.NewCheckpointer(pool, key, clock)
	c := partners.DefaultCoalition()
	c.Tiers = []partners.Tier{{Name: "basic", Threshold: decimal.Zero, Multiplier: decimal.NewFromInt(1)}}
	if err := f.store.SetCoalition(ctx, c); err != nil {
		t.Fatal(err)
	}
	for id, k := range map[string]partners.Contract{
		"fuelco":  {Earn: partners.EarnRate{PointsPerUnit: ptr(dec("1"))}, ExpiryDays: ptr(30), RedeemRate: ptr(dec("0.01"))},
		"electro": {Earn: partners.EarnRate{PointsPerUnit: ptr(dec("2"))}, RedeemRate: ptr(dec("0.005"))},
		"grocer":  {Earn: partners.EarnRate{PointsPerUnit: ptr(dec("1"))}, ExpiryDays: ptr(10), RedeemRate: ptr(dec("0.02"))},
	} {
		if _, err := f.store.CreatePartner(ctx, id, id); err != nil {
			t.Fatal(err)
		}
		k.EffectiveFrom, k.Currency = t0.Add(-time.Hour), "USD"
		if _, err := f.store.AddContract(ctx, id, k, t0.Add(-time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func (f *fixture) req(partner string) partners.Request {
	f.seq++
	key := fmt.Sprint("k", f.seq)
	return partners.Request{Partner: partner, IdempotencyKey: key, RequestHash: []byte(partner + key)}
}

// earn posts an earn of amount dollars at partner for the member with card and returns
// the entry.
func (f *fixture) earn(partner, card, amount string) *partners.EarnResult {
	f.t.Helper()
	res, err := f.svc.Earn(context.Background(), f.req(partner), partners.EarnInput{Member: partners.MemberRef{Card: card},
		Purchase: partners.Purchase{Amount: dec(amount), Currency: "USD"}})
	if err != nil {
		f.t.Fatalf("earn at %s: %v", partner, err)
	}
	return res
}

// redeem redeems points at partner for the member with card.
func (f *fixture) redeem(partner, card, points string) *partners.RedeemResult {
	f.t.Helper()
	res, err := f.svc.Redeem(context.Background(), f.req(partner), partners.RedeemInput{Member: partners.MemberRef{Card: card},
		Points: dec(points), PurchaseAmount: ptr(dec("100000"))})
	if err != nil {
		f.t.Fatalf("redeem at %s: %v", partner, err)
	}
	return res
}

// expire runs expiry at the fixture's now.
func (f *fixture) expire() {
	f.t.Helper()
	if _, err := f.l.ExpireDue(context.Background(), f.now, nil); err != nil {
		f.t.Fatal(err)
	}
}

// member returns the id of the member with card.
func (f *fixture) member(card string) string {
	f.t.Helper()
	m, err := f.store.FindMember(context.Background(), partners.MemberRef{Card: card}, "US")
	if err != nil {
		f.t.Fatal(err)
	}
	return m.ID
}

// traffic posts a small day of traffic of every kind and returns the head position.
func (f *fixture) traffic() int64 {
	f.t.Helper()
	ctx := context.Background()
	f.earn("fuelco", "1", "100") // 100 pts by fuelco, expires in 30 days
	f.earn("electro", "1", "50") // 100 pts by electro
	f.earn("grocer", "2", "40")  // 40 pts by grocer, expires in 10 days
	f.now = f.now.Add(time.Hour)
	f.redeem("grocer", "1", "30")    // takes 30 of fuelco's lot (earliest expiry)
	r := f.earn("fuelco", "2", "25") // 25 pts by fuelco
	f.now = f.now.Add(time.Hour)
	if _, err := f.svc.Reverse(ctx, f.req("fuelco"), partners.ReverseInput{Entry: r.Entry.ID, Amount: dec("5")}); err != nil {
		f.t.Fatal(err)
	}
	f.now = f.now.Add(11 * 24 * time.Hour)
	f.expire() // grocer's 40 points of member 2 expire
	h, err := f.l.Head(ctx)
	if err != nil {
		f.t.Fatal(err)
	}
	return h.Position
}
