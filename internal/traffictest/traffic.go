// Package traffictest drives the partner service with random operations drawn by rapid,
// for the property tests of the packages that read what the traffic wrote (the books, the
// auditor's reports).
package traffictest

import (
	"context"

	"github.com/shopspring/decimal"
	"pgregory.net/rapid"

	"github.com/coalitionledger/coalition/ledger"
	"github.com/coalitionledger/coalition/partners"
)

// Limits bounds what an operation draws.
type Limits struct {
	Currency   string // the purchases' currency
	Amount     int64  // an earn's purchase: 1 to Amount
	Points     int64  // a redemption's points: 1 to Points
	HoldPoints int64  // a hold's points: 1 to HoldPoints
	Returned   int64  // an earn's reversal returns 0 to Returned of the purchase
	Restored   int64  // a redemption's reversal restores 0 to Restored points
}

// bigPurchase is the purchase a redemption or hold pays part of: large enough that no
// partner's share cap refuses it.
var bigPurchase = decimal.NewFromInt(100000)

// Traffic draws and runs the operations of one rapid run, and remembers the entries and
// holds they made for the operations that act on earlier ones.
type Traffic struct {
	Service  *partners.Service
	Ledger   *ledger.Ledger
	Partners []string
	Members  []partners.MemberRef
	Limits   Limits
	// Request is the request of step i at a partner.
	Request func(partner string, step int) partners.Request

	earns, redemptions, holds []string
}

// Step draws one operation and runs it: an earn (three times in eight), a redemption, a
// hold, a capture or void of an earlier hold, a reversal of an earlier earn (part of its
// purchase returned) or of an earlier redemption. A refusal (a *ledger.Error) is part of
// the traffic; any other error fails the run.
func (tr *Traffic) Step(ctx context.Context, rt *rapid.T, i int) {
	p := rapid.SampledFrom(tr.Partners).Draw(rt, "partner")
	m := rapid.SampledFrom(tr.Members).Draw(rt, "member")
	lim := tr.Limits
	purchase := bigPurchase
	var err error
	switch rapid.IntRange(0, 7).Draw(rt, "op") {
	case 0, 1, 2:
		var e *partners.EarnResult
		e, err = tr.Service.Earn(ctx, tr.Request(p, i), partners.EarnInput{Member: m,
			Purchase: partners.Purchase{Amount: decimal.NewFromInt(rapid.Int64Range(1, lim.Amount).Draw(rt, "amount")), Currency: lim.Currency}})
		if err == nil && e.Entry != nil {
			tr.earns = append(tr.earns, e.Entry.ID)
		}
	case 3:
		var r *partners.RedeemResult
		r, err = tr.Service.Redeem(ctx, tr.Request(p, i), partners.RedeemInput{Member: m,
			Points: decimal.NewFromInt(rapid.Int64Range(1, lim.Points).Draw(rt, "points")), PurchaseAmount: &purchase})
		if err == nil {
			tr.redemptions = append(tr.redemptions, r.Entry.ID)
		}
	case 4:
		var h *partners.HoldResult
		h, err = tr.Service.Hold(ctx, tr.Request(p, i), partners.HoldInput{Member: m,
			Points: decimal.NewFromInt(rapid.Int64Range(1, lim.HoldPoints).Draw(rt, "points")), PurchaseAmount: &purchase})
		if err == nil {
			tr.holds = append(tr.holds, h.Hold.ID)
		}
	case 5:
		if len(tr.holds) == 0 {
			return
		}
		h, herr := tr.Ledger.Hold(ctx, rapid.SampledFrom(tr.holds).Draw(rt, "hold"))
		if herr != nil {
			rt.Fatal(herr)
		}
		if rapid.Bool().Draw(rt, "capture") {
			_, err = tr.Service.Capture(ctx, tr.Request(h.Partner, i), h.ID, decimal.Zero)
		} else {
			_, err = tr.Service.Void(ctx, tr.Request(h.Partner, i), h.ID)
		}
	case 6:
		if len(tr.earns) == 0 {
			return
		}
		orig, oerr := tr.Ledger.Entry(ctx, rapid.SampledFrom(tr.earns).Draw(rt, "earn"))
		if oerr != nil {
			rt.Fatal(oerr)
		}
		_, err = tr.Service.Reverse(ctx, tr.Request(orig.Partner, i), partners.ReverseInput{Entry: orig.ID,
			Amount: decimal.NewFromInt(rapid.Int64Range(0, lim.Returned).Draw(rt, "returned"))})
	case 7:
		if len(tr.redemptions) == 0 {
			return
		}
		orig, oerr := tr.Ledger.Entry(ctx, rapid.SampledFrom(tr.redemptions).Draw(rt, "redemption"))
		if oerr != nil {
			rt.Fatal(oerr)
		}
		_, err = tr.Service.Reverse(ctx, tr.Request(orig.Partner, i), partners.ReverseInput{Entry: orig.ID,
			Points: decimal.NewFromInt(rapid.Int64Range(0, lim.Restored).Draw(rt, "restored"))})
	}
	if _, ok := err.(*ledger.Error); err != nil && !ok {
		rt.Fatalf("step %d: %v", i, err)
	}
}
