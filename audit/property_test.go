package audit_test

import (
	"context"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"pgregory.net/rapid"

	"github.com/coalitionledger/coalition/audit"
	"github.com/coalitionledger/coalition/internal/pg"
	"github.com/coalitionledger/coalition/internal/pgtest"
	"github.com/coalitionledger/coalition/internal/traffictest"
	"github.com/coalitionledger/coalition/partners"
)

// Over random traffic of every kind, the liability roll-forward holds: per issuer and in
// total, opening + issued + redeemed + expired + reversals = closing; the closing equals
// the members' remaining lots of that issuer; a period's closing is the next period's
// opening; and the total outstanding less the members' debts is what the member accounts
// owe (the trial balance's members group).
func TestRollForwardIdentity(t *testing.T) {
	t.Parallel()
	ids := []string{"fuelco", "electro", "grocer"}
	rapid.Check(t, func(rt *rapid.T) {
		ctx := context.Background()
		pool, err := pg.Connect(ctx, pgtest.URL(t), 4)
		if err != nil {
			rt.Fatal(err)
		}
		defer pool.Close()
		f := newFixtureOn(rt, pool)
		tr := &traffictest.Traffic{Service: f.svc, Ledger: f.l, Partners: ids,
			Members: []partners.MemberRef{{Card: "1"}, {Card: "2"}, {Card: "3"}},
			Limits:  traffictest.Limits{Currency: "USD", Amount: 500, Points: 300, HoldPoints: 100, Returned: 500, Restored: 50},
			Request: func(p string, _ int) partners.Request { return f.req(p) }}
		steps := rapid.IntRange(3, 25).Draw(rt, "steps")
		for i := 0; i < steps; i++ {
			f.now = f.now.Add(time.Duration(rapid.IntRange(0, 96).Draw(rt, "hours")) * time.Hour)
			tr.Step(ctx, rt, i)
			if rapid.IntRange(0, 3).Draw(rt, "expire") == 0 {
				f.expire()
			}
		}
		checkRollForward(rt, f)
	})
}

func checkRollForward(rt *rapid.T, f *fixture) {
	ctx := context.Background()
	r := audit.NewReports(f.pool)
	whole, err := r.RollForward(ctx, 0, 0)
	if err != nil {
		rt.Fatal(err)
	}
	n := func(s string) decimal.Decimal { return dec(s) }
	for _, l := range append(whole.Issuers, whole.Total) {
		sum := n(l.Opening).Add(n(l.Issued)).Add(n(l.Redeemed)).Add(n(l.Expired)).Add(n(l.Reversals))
		if !sum.Equal(n(l.Closing)) || !n(l.Closing).Equal(n(l.LotsRemaining)) || !n(l.Opening).IsZero() {
			rt.Fatalf("%s: %+v: lines sum to %s", l.Issuer, l, sum)
		}
	}
	// Split the journal anywhere: the first part's closing is the second's opening.
	head := whole.To
	if head >= 2 {
		k := rapid.Int64Range(1, head-1).Draw(rt, "split")
		first, err := r.RollForward(ctx, 1, k)
		if err != nil {
			rt.Fatal(err)
		}
		second, err := r.RollForward(ctx, k+1, 0)
		if err != nil {
			rt.Fatal(err)
		}
		if first.Total.Closing != second.Total.Opening || second.Total.Closing != whole.Total.Closing {
			rt.Fatalf("split at %d: first closes at %s, second opens at %s and closes at %s (whole %s)",
				k, first.Total.Closing, second.Total.Opening, second.Total.Closing, whole.Total.Closing)
		}
		for _, l := range first.Issuers {
			for _, m := range second.Issuers {
				if l.Issuer == m.Issuer && l.Closing != m.Opening {
					rt.Fatalf("split at %d: %s closes at %s and opens at %s", k, l.Issuer, l.Closing, m.Opening)
				}
			}
		}
	}
	// The outstanding points less the members' debts are what the member accounts owe.
	tb, err := r.TrialBalance(ctx, 0, "")
	if err != nil {
		rt.Fatal(err)
	}
	members := decimal.Zero
	for _, g := range tb.Groups {
		if g.Group == "members" {
			members = n(g.Totals["PTS"])
		}
	}
	var debts decimal.Decimal
	if err := f.pool.QueryRow(ctx, `SELECT COALESCE(sum(outstanding), 0) FROM debts`).Scan(&debts); err != nil {
		rt.Fatal(err)
	}
	if !n(whole.Total.Closing).Sub(debts).Equal(members.Neg()) {
		rt.Fatalf("outstanding %s − debts %s ≠ member accounts %s", whole.Total.Closing, debts, members.Neg())
	}
	if !n(whole.Total.Debts).Equal(debts) {
		rt.Fatalf("the report's debts %s, the debts rows' %s", whole.Total.Debts, debts)
	}
	// Breakage is the net of the expired lines.
	br, err := r.Breakage(ctx, 0, 0)
	if err != nil {
		rt.Fatal(err)
	}
	var expired, unexpired decimal.Decimal
	if err := f.pool.QueryRow(ctx, `SELECT COALESCE(-sum(points) FILTER (WHERE reason = 'expire'), 0),
		COALESCE(sum(points) FILTER (WHERE reason = 'unexpire'), 0) FROM lot_movements`).Scan(&expired, &unexpired); err != nil {
		rt.Fatal(err)
	}
	if !n(br.Total.Expired).Equal(expired) || !n(br.Total.Unexpired).Equal(unexpired) {
		rt.Fatalf("breakage %+v, movements expired %s unexpired %s", br.Total, expired, unexpired)
	}
}
