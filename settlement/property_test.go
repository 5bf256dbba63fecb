package settlement_test

import (
	"context"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"pgregory.net/rapid"

	"github.com/coalitionledger/coalition/internal/pg"
	"github.com/coalitionledger/coalition/internal/pgtest"
	"github.com/coalitionledger/coalition/partners"
	"github.com/coalitionledger/coalition/settlement"
)

// Random days of traffic (earns, cross-partner redemptions, returns, redemption
// reversals, back-dated sales), settled day after day as the scheduler does: afterwards
// every partner's settlement account is zero, its in_settlement equals the sum of its
// instructions, the operator receives less pays the fees less the awards, and every run
// re-derives from the journal.
func TestSettledDaysLeaveNothingBehind(t *testing.T) {
	t.Parallel()
	ids := []string{"fuel", "shop", "solo"}
	cards := []string{"c1", "c2", "c3"}
	rapid.Check(t, func(rt *rapid.T) {
		ctx := context.Background()
		pool, err := pg.Connect(ctx, pgtest.URL(t), 4)
		if err != nil {
			rt.Fatal(err)
		}
		defer pool.Close()
		f := newFixtureOn(rt, pool)
		var earns, redemptions []string
		steps := rapid.IntRange(1, 20).Draw(rt, "steps")
		for i := 0; i < steps; i++ {
			f.setNow(f.now.Add(time.Duration(rapid.IntRange(0, 12*60).Draw(rt, "minutes")) * time.Minute))
			p := rapid.SampledFrom(ids).Draw(rt, "partner")
			m := partners.MemberRef{Card: rapid.SampledFrom(cards).Draw(rt, "member")}
			switch rapid.IntRange(0, 6).Draw(rt, "op") {
			case 0, 1, 2:
				var at *time.Time
				if rapid.Bool().Draw(rt, "back-dated") {
					bt := f.now.Add(-time.Duration(rapid.IntRange(0, 40).Draw(rt, "hours back")) * time.Hour)
					at = &bt
				}
				res, err := f.svc.Earn(ctx, f.req(p), partners.EarnInput{Member: m, BusinessTime: at,
					Purchase: partners.Purchase{Amount: decimal.NewFromInt(rapid.Int64Range(10, 5000).Draw(rt, "amount")), Currency: "RUB"}})
				if err != nil {
					rt.Fatal(err)
				}
				if res.Entry != nil {
					earns = append(earns, res.Entry.ID)
				}
			case 3, 4:
				res, err := f.svc.Redeem(ctx, f.req(p), partners.RedeemInput{Member: m, Points: decimal.NewFromInt(rapid.Int64Range(1, 300).Draw(rt, "points"))})
				if err == nil {
					redemptions = append(redemptions, res.Entry.ID)
				}
			case 5:
				if len(earns) > 0 {
					e := rapid.SampledFrom(earns).Draw(rt, "earn")
					orig, _ := f.l.Entry(ctx, e)
					_, _ = f.svc.Reverse(ctx, f.req(orig.Partner), partners.ReverseInput{Entry: e, Amount: decimal.NewFromInt(rapid.Int64Range(1, 200).Draw(rt, "returned"))})
				}
			case 6:
				if len(redemptions) > 0 {
					r := rapid.SampledFrom(redemptions).Draw(rt, "redemption")
					orig, _ := f.l.Entry(ctx, r)
					_, _ = f.svc.Reverse(ctx, f.req(orig.Partner), partners.ReverseInput{Entry: r, Points: decimal.NewFromInt(rapid.Int64Range(1, 50).Draw(rt, "points back"))})
				}
			}
			if rapid.IntRange(0, 5).Draw(rt, "scheduler tick") == 0 {
				if _, err := f.runs.SettleDue(ctx, nil); err != nil {
					rt.Fatal(err)
				}
			}
		}
		f.setNow(settlement.DayOf(f.now, moscow).End(moscow).Add(time.Minute))
		if _, err := f.runs.SettleDue(ctx, nil); err != nil {
			rt.Fatal(err)
		}
		list, err := f.runs.List(ctx, 1000)
		if err != nil {
			rt.Fatal(err)
		}
		instructed := map[string]decimal.Decimal{}
		net, fees, awards := decimal.Zero, decimal.Zero, decimal.Zero
		for _, s := range list {
			d, _ := settlement.ParseDay(s.BusinessDate)
			run, err := f.runs.Get(ctx, d)
			if err != nil {
				rt.Fatal(err)
			}
			for _, in := range run.Instructions {
				a := dec(in.Amount)
				if in.Direction == settlement.PaidByOperator {
					a = a.Neg()
				}
				instructed[in.Partner] = instructed[in.Partner].Add(a)
			}
			net, fees, awards = net.Add(dec(run.Totals.Net)), fees.Add(dec(run.Totals.Fees)), awards.Add(dec(run.Totals.Awards))
			if c, err := f.runs.Check(ctx, d); err != nil || !c.Matches {
				rt.Fatalf("check %s: %+v %v", d, c, err)
			}
		}
		for _, p := range ids {
			if b := f.balance(rt, "partner:"+p+":settlement"); !b.IsZero() {
				rt.Fatalf("%s: settlement %s after every day is settled", p, b)
			}
			if b := f.balance(rt, "partner:"+p+":in_settlement"); !b.Equal(instructed[p]) {
				rt.Fatalf("%s: in_settlement %s, instructions %s", p, b, instructed[p])
			}
		}
		if !net.Equal(fees.Sub(awards)) {
			rt.Fatalf("received − paid %s ≠ fees %s − awards %s", net, fees, awards)
		}
		if b := f.balance(rt, "operator:fees"); !b.Equal(fees.Neg()) {
			rt.Fatalf("operator:fees %s, the runs charged %s", b, fees)
		}
		assertBooks(rt, f)
	})
}
