package partners_test

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"pgregory.net/rapid"

	"github.com/coalitionledger/coalition/internal/pg"
	"github.com/coalitionledger/coalition/internal/pgtest"
	"github.com/coalitionledger/coalition/internal/traffictest"
	"github.com/coalitionledger/coalition/ledger"
	"github.com/coalitionledger/coalition/partners"
)

// Random traffic of several partners through the service keeps the books sound, and every
// money leg follows from its entry's own lot movements: per entry and consuming partner,
// the value round_half_up(points × rate) split over the issuers by largest remainder.
func TestServiceTrafficKeepsTheBooks(t *testing.T) {
	t.Parallel()
	ids := []string{"fuelco", "electro", "grocer"}
	rapid.Check(t, func(rt *rapid.T) {
		ctx := context.Background()
		pool, err := pg.Connect(ctx, pgtest.URL(t), 4)
		if err != nil {
			rt.Fatal(err)
		}
		defer pool.Close()
		f := newCoalitionOn(rt, pool)
		members := []partners.MemberRef{{Card: "1"}, {Card: "2"}}
		tr := &traffictest.Traffic{Service: f.svc, Ledger: f.l, Partners: ids, Members: members,
			Limits:  traffictest.Limits{Currency: "RUB", Amount: 9000, Points: 600, HoldPoints: 300, Returned: 3000, Restored: 50},
			Request: func(p string, i int) partners.Request { return f.req(p, fmt.Sprint("k", i)) }}
		steps := rapid.IntRange(5, 25).Draw(rt, "steps")
		for i := 0; i < steps; i++ {
			f.now = f.now.Add(time.Duration(rapid.IntRange(0, 48).Draw(rt, "hours")) * time.Hour)
			tr.Step(ctx, rt, i)
			if i%3 == 0 {
				if _, err := f.l.ExpireDue(ctx, f.now, nil); err != nil {
					rt.Fatal(err)
				}
				if _, err := f.l.ReleaseExpiredHolds(ctx, f.now, nil); err != nil {
					rt.Fatal(err)
				}
			}
			checkBooks(rt, ctx, f, members)
		}
	})
}

func checkBooks(rt *rapid.T, ctx context.Context, f *coalitionFixture, members []partners.MemberRef) {
	tb, err := f.l.TrialBalance(ctx, 0)
	if err != nil {
		rt.Fatal(err)
	}
	for unit, total := range tb.Totals {
		if !total.IsZero() {
			rt.Fatalf("unit %s sums to %s", unit, total)
		}
	}
	if mm, err := f.l.CheckBalances(ctx); err != nil || len(mm) > 0 {
		rt.Fatalf("balances vs postings: %+v %v", mm, err)
	}
	if err := f.l.VerifyChain(ctx, nil); err != nil {
		rt.Fatal(err)
	}
	for _, ref := range members {
		m, err := f.store.FindMember(ctx, ref, "RU")
		if err != nil {
			continue // not enrolled yet
		}
		lots, _ := f.l.Lots(ctx, m.ID)
		debts, _ := f.l.Debts(ctx, m.ID)
		sum := decimal.Zero
		for _, l := range lots {
			sum = sum.Add(l.Remaining)
		}
		for _, d := range debts {
			sum = sum.Sub(d.Outstanding)
		}
		bal, _ := f.l.Balance(ctx, ledger.MemberAccount(m.ID))
		held, _ := f.l.Balance(ctx, ledger.MemberHeldAccount(m.ID))
		if !sum.Equal(bal.Add(held).Neg()) {
			rt.Fatalf("member %s: lots − debt = %s, balance + held = %s", m.ID, sum, bal.Add(held).Neg())
		}
	}
	// Every entry's money legs, recomputed from its movements alone.
	journal, err := f.l.Journal(ctx, 0, 0)
	if err != nil {
		rt.Fatal(err)
	}
	for _, e := range journal {
		want := map[string]decimal.Decimal{}
		type key struct {
			consumer string
			rate     string
		}
		groups := map[key]map[string]decimal.Decimal{}
		var order []key
		for _, mv := range e.Movements {
			switch mv.Reason {
			case ledger.ReasonRedeem, ledger.ReasonClawback, ledger.ReasonDebt:
			default:
				continue
			}
			k := key{mv.Consumer, mv.Rate.String()}
			if groups[k] == nil {
				groups[k] = map[string]decimal.Decimal{}
				order = append(order, k)
			}
			groups[k][mv.Issuer] = groups[k][mv.Issuer].Sub(mv.Points)
		}
		if e.Kind == ledger.EntryRedemptionReversal || e.Kind == ledger.EntrySettlement {
			continue // reversals give back in proportion; checked by the sums above
		}
		for _, k := range order {
			issuers := make([]string, 0, len(groups[k]))
			total := decimal.Zero
			for iss, pts := range groups[k] {
				issuers = append(issuers, iss)
				total = total.Add(pts)
			}
			sort.Strings(issuers)
			weights := make([]ledger.Weight, len(issuers))
			for i, iss := range issuers {
				weights[i] = ledger.Weight{Key: iss, Points: groups[k][iss]}
			}
			value := ledger.RoundHalfUp(total.Mul(dec(k.rate)), 2)
			shares := ledger.Split(value, 2, weights)
			for i, iss := range issuers {
				if iss != k.consumer && shares[i].IsPositive() {
					acct := ledger.SettlementAccount(iss)
					want[acct] = want[acct].Add(shares[i])
					want[ledger.SettlementAccount(k.consumer)] = want[ledger.SettlementAccount(k.consumer)].Sub(shares[i])
				}
			}
		}
		got := map[string]decimal.Decimal{}
		for _, p := range e.Postings {
			if p.Unit != ledger.Points {
				got[p.Account] = got[p.Account].Add(p.Amount)
			}
		}
		for acct := range union(got, want) {
			if !got[acct].Equal(want[acct]) {
				rt.Fatalf("entry %d (%s): %s got %s, movements say %s", e.Position, e.Kind, acct, got[acct], want[acct])
			}
		}
	}
}

func union(a, b map[string]decimal.Decimal) map[string]bool {
	out := map[string]bool{}
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}
