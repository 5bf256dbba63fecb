package partners_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shopspring/decimal"

	"github.com/coalitionledger/coalition/internal/pgtest"
	"github.com/coalitionledger/coalition/ledger"
	"github.com/coalitionledger/coalition/partners"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

func ptr[T any](v T) *T { return &v }

var now0 = time.Date(2026, 6, 10, 12, 0, 0, 0, time.UTC)

// coalitionFixture is a RUB coalition of a fuel chain, an electronics retailer and a grocer.
type coalitionFixture struct {
	svc   *partners.Service
	store *partners.Store
	l     *ledger.Ledger
	now   time.Time
}

func newCoalition(t *testing.T) *coalitionFixture {
	t.Helper()
	return newCoalitionOn(t, pgtest.Pool(t))
}

// newCoalitionOn sets the coalition up in the database behind pool.
func newCoalitionOn(t fataler, pool *pgxpool.Pool) *coalitionFixture {
	t.Helper()
	ctx := context.Background()
	f := &coalitionFixture{store: partners.NewStore(pool), now: now0}
	clock := func() time.Time { return f.now }
	f.l = ledger.New(pool, ledger.WithClock(clock))
	f.svc = partners.NewService(f.store, f.l, clock)
	f.svc.PhoneRegion = "RU"
	c := partners.DefaultCoalition()
	c.Currency, c.PointValue, c.TimeZone = "RUB", dec("1"), "Europe/Moscow"
	c.Tiers = []partners.Tier{{Name: "basic", Threshold: dec("0"), Multiplier: dec("1")}, {Name: "gold", Threshold: dec("1000"), Multiplier: dec("1.5")}}
	if err := f.store.SetCoalition(ctx, c); err != nil {
		t.Fatal(err)
	}
	for id, k := range map[string]partners.Contract{
		"fuelco": {Earn: partners.EarnRate{PointsPerUnit: ptr(dec("0.1"))}, CategoryMultipliers: map[string]decimal.Decimal{"shop": dec("3")},
			ExpiryDays: ptr(365), RedeemRate: ptr(dec("1")), FeePerPoint: dec("0.2")},
		"electro": {Earn: partners.EarnRate{PercentBack: ptr(dec("3"))}, RedeemRate: ptr(dec("0.9")), FeePerPoint: dec("0.1")},
		"grocer":  {Earn: partners.EarnRate{PointsPerUnit: ptr(dec("0.05"))}, MaxShare: ptr(dec("0.2")), RedeemRate: ptr(dec("1")), FeePerPoint: dec("0.1")},
	} {
		if _, err := f.store.CreatePartner(ctx, id, id); err != nil {
			t.Fatal(err)
		}
		k.EffectiveFrom, k.Currency = now0.Add(-time.Hour), "RUB"
		if _, err := f.store.AddContract(ctx, id, k, now0.Add(-time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// fataler is what the fixture needs of a test: a *testing.T or a *rapid.T.
type fataler interface {
	Helper()
	Fatal(args ...any)
}

func (f *coalitionFixture) req(partner, key string) partners.Request {
	return partners.Request{Partner: partner, IdempotencyKey: key, RequestHash: []byte(partner + key)}
}

func TestEarnPricesABasketAndEnrolsByPhone(t *testing.T) {
	t.Parallel()
	f := newCoalition(t)
	ctx := context.Background()
	// 1 point per 10 RUB on fuel, 3 per 10 on shop goods: 2000 fuel + 500 shop = 200 + 150.
	res, err := f.svc.Earn(ctx, f.req("fuelco", "e1"), partners.EarnInput{
		Member: partners.MemberRef{Phone: "8 (916) 123-45-67"},
		Purchase: partners.Purchase{Currency: "RUB", Lines: []partners.Line{
			{Category: "fuel", Amount: dec("2000")}, {Category: "shop", Amount: dec("500")}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Points != "350" || !res.Enrolled || res.Lot == nil || res.Lot.ExpiresAt == nil || !res.Member.Balance.Equal(dec("350")) {
		t.Fatalf("earn = %+v", res)
	}
	m, err := f.store.FindMember(ctx, partners.MemberRef{Phone: "+79161234567"}, "RU")
	if err != nil || m.ID != res.Member.ID {
		t.Fatalf("member by E.164 phone: %+v %v", m, err)
	}
	// A replay answers the same, and posts nothing.
	again, err := f.svc.Earn(ctx, f.req("fuelco", "e1"), partners.EarnInput{
		Member: partners.MemberRef{Phone: "8 (916) 123-45-67"},
		Purchase: partners.Purchase{Currency: "RUB", Lines: []partners.Line{
			{Category: "fuel", Amount: dec("2000")}, {Category: "shop", Amount: dec("500")}}},
	})
	if err != nil || !again.Replayed || again.Entry.ID != res.Entry.ID || again.Points != "350" {
		t.Fatalf("replay = %+v %v", again, err)
	}
}

func TestCrossPartnerRedemptionToTheCent(t *testing.T) {
	t.Parallel()
	f := newCoalition(t)
	ctx := context.Background()
	alice := partners.MemberRef{Card: "4000-1"}
	// electro: 3% back of 9999 RUB at 1 RUB per point = 299.97 → 299 points (rounded down).
	e, err := f.svc.Earn(ctx, f.req("electro", "e1"), partners.EarnInput{Member: alice, Purchase: partners.Purchase{Amount: dec("9999"), Currency: "RUB"}})
	if err != nil || e.Points != "299" {
		t.Fatalf("earn = %+v %v", e, err)
	}
	// fuelco: 1000 RUB of fuel → 100 points.
	if _, err := f.svc.Earn(ctx, f.req("fuelco", "e2"), partners.EarnInput{Member: alice, Purchase: partners.Purchase{Amount: dec("1000"), Currency: "RUB", Category: "fuel"}}); err != nil {
		t.Fatal(err)
	}
	// The grocer caps points at 20% of the purchase: 1500 RUB → at most 300 points.
	_, err = f.svc.Redeem(ctx, f.req("grocer", "r0"), partners.RedeemInput{Member: alice, Points: dec("350"), PurchaseAmount: ptr(dec("1500"))})
	if ledger.ErrorCode(err) != partners.CodeMaxShare {
		t.Fatalf("over the share cap: %v", err)
	}
	// 300 points at the grocer (1 RUB each): fuelco's lot expires first (365 days), so
	// 100 from fuelco and 200 from electro: fuelco owes 100.00, electro 200.00.
	r, err := f.svc.Redeem(ctx, f.req("grocer", "r1"), partners.RedeemInput{Member: alice, Points: dec("300"), PurchaseAmount: ptr(dec("1500"))})
	if err != nil {
		t.Fatal(err)
	}
	if r.Points != "300" || !r.Value.Amount.Equal(dec("300")) || r.Value.Currency != "RUB" || !r.Member.Balance.Equal(dec("99")) {
		t.Fatalf("redemption = %+v", r)
	}
	for acct, want := range map[string]string{"partner:fuelco:settlement": "100", "partner:electro:settlement": "200", "partner:grocer:settlement": "-300"} {
		if got, _ := f.l.Balance(ctx, acct); !got.Equal(dec(want)) {
			t.Errorf("%s = %s, want %s", acct, got, want)
		}
	}
}

func TestPartialReturnsAreCumulative(t *testing.T) {
	t.Parallel()
	f := newCoalition(t)
	ctx := context.Background()
	bob := partners.MemberRef{Card: "77"}
	// 35 points for 355 RUB of fuel (35.5 rounded down).
	e, err := f.svc.Earn(ctx, f.req("fuelco", "e1"), partners.EarnInput{Member: bob, Purchase: partners.Purchase{Amount: dec("355"), Currency: "RUB"}})
	if err != nil || e.Points != "35" {
		t.Fatalf("earn = %+v %v", e, err)
	}
	// Three returns of a third each: round_down(35 × returned ÷ 355) so far = 11, 23, 35.
	want := []string{"11", "12", "12"}
	for i, amount := range []string{"118.33", "118.33", "118.34"} {
		r, err := f.svc.Reverse(ctx, f.req("fuelco", "ret"+itoa(i)), partners.ReverseInput{Entry: e.Entry.ID, Amount: dec(amount)})
		if err != nil {
			t.Fatalf("return %d: %v", i, err)
		}
		if r.Points != want[i] {
			t.Fatalf("return %d reversed %s points, want %s", i, r.Points, want[i])
		}
	}
	_, err = f.svc.Reverse(ctx, f.req("fuelco", "ret9"), partners.ReverseInput{Entry: e.Entry.ID, Amount: dec("1")})
	if ledger.ErrorCode(err) != ledger.CodeReversalTooLarge {
		t.Fatalf("returning more than the purchase: %v", err)
	}
	v, err := f.svc.Member(ctx, bob)
	if err != nil || !v.Balance.IsZero() {
		t.Fatalf("member after returning everything = %+v %v", v, err)
	}
}

func TestTierFromTheLast365Days(t *testing.T) {
	t.Parallel()
	f := newCoalition(t)
	ctx := context.Background()
	carol := partners.MemberRef{Card: "5"}
	// 10,000 RUB of fuel: 1000 points, which makes carol gold from tomorrow, not today.
	if _, err := f.svc.Earn(ctx, f.req("fuelco", "e1"), partners.EarnInput{Member: carol, Purchase: partners.Purchase{Amount: dec("10000"), Currency: "RUB"}}); err != nil {
		t.Fatal(err)
	}
	e, err := f.svc.Earn(ctx, f.req("fuelco", "e2"), partners.EarnInput{Member: carol, Purchase: partners.Purchase{Amount: dec("100"), Currency: "RUB"}})
	if err != nil || e.Points != "10" {
		t.Fatalf("same-day earn = %+v %v", e, err)
	}
	f.now = f.now.Add(24 * time.Hour)
	e, err = f.svc.Earn(ctx, f.req("fuelco", "e3"), partners.EarnInput{Member: carol, Purchase: partners.Purchase{Amount: dec("100"), Currency: "RUB"}})
	if err != nil || e.Points != "15" || !e.Pricing.TierMultiplier.Equal(dec("1.5")) {
		t.Fatalf("next-day earn = %+v %v", e, err)
	}
	v, _ := f.svc.Member(ctx, carol)
	if v.Tier == nil || *v.Tier != "gold" {
		t.Fatalf("tier = %v", v.Tier)
	}
}

func TestHoldCaptureAtTheHoldsPrice(t *testing.T) {
	t.Parallel()
	f := newCoalition(t)
	ctx := context.Background()
	dan := partners.MemberRef{Card: "9"}
	if _, err := f.svc.Earn(ctx, f.req("fuelco", "e1"), partners.EarnInput{Member: dan, Purchase: partners.Purchase{Amount: dec("5000"), Currency: "RUB"}}); err != nil {
		t.Fatal(err)
	}
	h, err := f.svc.Hold(ctx, f.req("electro", "h1"), partners.HoldInput{Member: dan, Points: dec("400")})
	if err != nil || h.Hold.Status != ledger.HoldOpen || !h.Member.Held.Equal(dec("400")) {
		t.Fatalf("hold = %+v %v", h, err)
	}
	// Another partner cannot capture it.
	if _, err := f.svc.Capture(ctx, f.req("grocer", "c0"), h.Hold.ID, decimal.Zero); ledger.ErrorCode(err) != ledger.CodeNotFound {
		t.Fatalf("capture by another partner: %v", err)
	}
	// electro halves its redeem rate before the capture: the hold's price still holds.
	f.now = f.now.Add(time.Minute)
	if _, err := f.store.AddContract(ctx, "electro", partners.Contract{EffectiveFrom: f.now, Currency: "RUB",
		Earn: partners.EarnRate{PercentBack: ptr(dec("3"))}, RedeemRate: ptr(dec("0.45")), FeePerPoint: dec("0.1")}, f.now); err != nil {
		t.Fatal(err)
	}
	f.now = f.now.Add(time.Minute)
	c, err := f.svc.Capture(ctx, f.req("electro", "c1"), h.Hold.ID, dec("300"))
	if err != nil || c.Points != "300" || c.Value == nil || !c.Value.Amount.Equal(dec("270")) || !c.Member.Balance.Equal(dec("200")) {
		t.Fatalf("capture = %+v %v", c, err)
	}
	if got, _ := f.l.Balance(ctx, "partner:fuelco:settlement"); !got.Equal(dec("270")) {
		t.Fatalf("fuelco owes %s, want 270 (300 points at electro's 0.9)", got)
	}
}

func itoa(i int) string { return decimal.NewFromInt(int64(i)).String() }

func TestABatchPricesTiersAsItsEarnsOneByOne(t *testing.T) {
	t.Parallel()
	f := newCoalition(t)
	ctx := context.Background()
	yesterday := f.now
	f.now = f.now.Add(24 * time.Hour)
	dave := partners.MemberRef{Card: "6"}
	// Yesterday's 10,000 RUB (1000 points) makes dave gold for today's earn in the same
	// batch, as it would if the two were sent one after the other.
	priced, err := f.svc.PriceEntries(ctx, []partners.PriceItem{
		{Request: f.req("fuelco", "b1"), Earn: &partners.EarnInput{Member: dave, BusinessTime: &yesterday, Purchase: partners.Purchase{Amount: dec("10000"), Currency: "RUB"}}},
		{Request: f.req("fuelco", "b2"), Earn: &partners.EarnInput{Member: dave, Purchase: partners.Purchase{Amount: dec("100"), Currency: "RUB"}}},
		{Request: f.req("fuelco", "b3"), Earn: &partners.EarnInput{Member: dave, BusinessTime: &yesterday, Purchase: partners.Purchase{Amount: dec("100"), Currency: "RUB"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	points := func(p partners.Priced) string {
		if p.Err != nil || p.Entry == nil {
			t.Fatalf("priced: %+v", p)
		}
		return p.Entry.Op.(ledger.Issue).Points.String()
	}
	if got := []string{points(priced[0]), points(priced[1]), points(priced[2])}; got[0] != "1000" || got[1] != "15" || got[2] != "10" {
		t.Fatalf("points %v, want 1000, 15 (gold today) and 10 (yesterday's tier is basic)", got)
	}
}

func TestABatchEarnRefusedForItsReferenceRaisesNoTier(t *testing.T) {
	t.Parallel()
	f := newCoalition(t)
	ctx := context.Background()
	yesterday := f.now
	dave := partners.MemberRef{Card: "6"}
	if _, err := f.svc.Earn(ctx, f.req("fuelco", "e1"), partners.EarnInput{Member: dave, Reference: "R", Purchase: partners.Purchase{Amount: dec("100"), Currency: "RUB"}}); err != nil {
		t.Fatal(err)
	}
	f.now = f.now.Add(24 * time.Hour)
	big := partners.Purchase{Amount: dec("10000"), Currency: "RUB"}
	// The first item reuses R (the writer refuses it), the second uses S, and the third
	// repeats S: none of them makes dave gold for the last item.
	priced, err := f.svc.PriceEntries(ctx, []partners.PriceItem{
		{Request: f.req("fuelco", "b1"), Earn: &partners.EarnInput{Member: dave, Reference: "R", BusinessTime: &yesterday, Purchase: big}},
		{Request: f.req("fuelco", "b2"), Earn: &partners.EarnInput{Member: dave, Reference: "S", BusinessTime: &yesterday, Purchase: partners.Purchase{Amount: dec("100"), Currency: "RUB"}}},
		{Request: f.req("fuelco", "b3"), Earn: &partners.EarnInput{Member: dave, Reference: "S", BusinessTime: &yesterday, Purchase: big}},
		{Request: f.req("fuelco", "b4"), Earn: &partners.EarnInput{Member: dave, Purchase: partners.Purchase{Amount: dec("100"), Currency: "RUB"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	last := priced[3]
	if last.Err != nil || last.Entry == nil || last.Entry.Op.(ledger.Issue).Points.String() != "10" {
		t.Fatalf("the last earn: %+v, want 10 points (basic: the refused earns count for nothing)", last)
	}
}
