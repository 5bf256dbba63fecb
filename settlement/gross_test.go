package settlement_test

import (
	"context"
	"reflect"
	"testing"

	"github.com/coalitionledger/coalition/partners"
	"github.com/coalitionledger/coalition/settlement"
)

// A capture that also repays a debt (DESIGN: points that come back pay the debt first,
// in the same entry) holds two consumptions; the gross matrix shows each (fuel owes
// shop, shop owes solo), not the sum of the parties' legs (fuel owes solo, two partners
// that never dealt with each other).
func TestGrossMatrixOfACaptureThatRepaysADebt(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	f.earn(t, "fuel", "m1", "1000", nil)            // lot F: 100 fuel points
	f.earn(t, "shop", "m1", "500", nil)             // lot S: 50 shop points
	soloEarn := f.earn(t, "solo", "m1", "500", nil) // lot L: 50 solo points
	hold, err := f.svc.Hold(ctx, f.req("shop"), partners.HoldInput{Member: partners.MemberRef{Card: "m1"}, Points: dec("200")})
	if err != nil {
		t.Fatal(err)
	}
	// solo takes its 50 points back: all held, so they become a debt to solo.
	if _, err := f.svc.Reverse(ctx, f.req("solo"), partners.ReverseInput{Entry: soloEarn.Entry.ID}); err != nil {
		t.Fatal(err)
	}
	// shop captures 100 (lot F: fuel owes shop 100 × 0.5 = 50.00); the released 100 repay
	// the debt from lot S first (shop owes solo 50 × 1 = 50.00).
	if _, err := f.svc.Capture(ctx, f.req("shop"), hold.Hold.ID, dec("100")); err != nil {
		t.Fatal(err)
	}
	f.nextMorning(day0)
	run, _, err := f.runs.Run(ctx, day0, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []settlement.ObligationLine{
		{Debtor: "fuel", Creditor: "shop", Amount: "50.00"},
		{Debtor: "shop", Creditor: "solo", Amount: "50.00"},
	}
	if !reflect.DeepEqual(run.Gross, want) {
		t.Errorf("gross %+v\nwant %+v (what the capture's legs and lot movements say)", run.Gross, want)
	}
	for _, p := range run.Partners {
		t.Logf("%+v", p)
	}
}
