package ledger_test

import (
	"context"
	"testing"
	"time"

	"github.com/coalitionledger/coalition/ledger"
)

// A redemption reversed in two steps, with a debt repaid in between, gives every issuer its
// money back to the cent (the repayment's legs are not mistaken for the redemption's).
func TestRestoreAfterDebtRepaymentReturnsTheRightMoney(t *testing.T) {
	t.Parallel()
	l, _ := open(t)
	x := mustPost(t, l, earnExpiring("m", "x", "100", t0.Add(24*time.Hour)))
	mustPost(t, l, earn("m", "p", "100", ""))
	red := mustPost(t, l, redeem("m", "q", "200", "0.01", "")) // x 1.00, p 1.00 owed to q
	mustPost(t, l, ledger.Entry{Kind: ledger.EntryEarnReversal, Partner: "x", Member: "m", BusinessTime: t0,
		Op: ledger.Clawback{Lot: x.Lot.ID, Points: d("100"), Rate: d("0.01")}}) // a debt of 100 to x
	restore := func(points string) ledger.Entry {
		return ledger.Entry{Kind: ledger.EntryRedemptionReversal, Partner: "q", Member: "m", BusinessTime: t0,
			Op: ledger.Restore{Of: red.ID, Points: d(points)}}
	}
	mustPost(t, l, restore("100")) // p's 100 come back and repay x: p owes x 1.00
	mustPost(t, l, restore("0"))   // x's 100 come back
	wantBalance(t, l, "partner:q:settlement", "0")
	wantBalance(t, l, "partner:p:settlement", "1")
	wantBalance(t, l, "partner:x:settlement", "-1")
	sound(t, l)
}

// The same for a capture that repaid a debt in its own entry.
func TestRestoreOfACaptureThatRepaidADebt(t *testing.T) {
	t.Parallel()
	l, _ := open(t)
	x := mustPost(t, l, earnExpiring("m", "x", "50", t0.Add(24*time.Hour)))
	mustPost(t, l, earn("m", "p", "100", ""))
	h := mustPost(t, l, hold("m", "q", "150", "0.01"))
	mustPost(t, l, ledger.Entry{Kind: ledger.EntryEarnReversal, Partner: "x", Member: "m", BusinessTime: t0,
		Op: ledger.Clawback{Lot: x.Lot.ID, Points: d("50"), Rate: d("0.01")}}) // all held: a debt of 50
	c := mustPost(t, l, capture("m", "q", h.Hold.ID, "50"))
	mustPost(t, l, ledger.Entry{Kind: ledger.EntryRedemptionReversal, Partner: "q", Member: "m", BusinessTime: t0,
		Op: ledger.Restore{Of: c.ID}})
	wantBalance(t, l, "partner:q:settlement", "0")
	wantBalance(t, l, "partner:p:settlement", "0.5")
	wantBalance(t, l, "partner:x:settlement", "-0.5")
	sound(t, l)
}

// Lots made inside a batch come after older lots with the same expiry, whatever batch an
// entry lands in.
func TestNewLotsInABatchAreYoungest(t *testing.T) {
	t.Parallel()
	l, _ := open(t)
	for i := 0; i < 4; i++ {
		mustPost(t, l, earn("other", "z", "1", ""))
	}
	mustPost(t, l, earn("m", "a", "100", ""))
	res, err := l.Post(context.Background(), []ledger.Entry{earn("m", "b", "100", ""), redeem("m", "c", "100", "0.01", "")})
	if err != nil || res[1].Err != nil {
		t.Fatalf("%+v %v", res, err)
	}
	if mv := res[1].Entry.Movements; len(mv) != 1 || mv[0].Issuer != "a" {
		t.Fatalf("the redemption took %+v, want a's older lot", mv)
	}
}

func TestPartnersActOnlyOnWhatTheyOwn(t *testing.T) {
	t.Parallel()
	l, _ := open(t)
	ctx := context.Background()
	lot := mustPost(t, l, earn("m", "a", "100", ""))
	red := mustPost(t, l, redeem("m", "b", "10", "0.01", ""))
	h := mustPost(t, l, hold("m", "b", "10", "0.01"))
	tests := map[string]ledger.Entry{
		"earn issued by another": {Kind: ledger.EntryEarn, Partner: "x", Member: "m", BusinessTime: t0, Op: ledger.Issue{Points: d("1"), Issuer: "a"}},
		"redeem for another":     {Kind: ledger.EntryRedemption, Partner: "x", Member: "m", BusinessTime: t0, Op: ledger.Consume{Points: d("1"), Consumer: "a", Rate: d("0")}},
		"reverse another's earn": {Kind: ledger.EntryEarnReversal, Partner: "x", Member: "m", BusinessTime: t0, Op: ledger.Clawback{Lot: lot.Lot.ID, Points: d("1"), Rate: d("0")}},
		"reverse another's sale": {Kind: ledger.EntryRedemptionReversal, Partner: "x", Member: "m", BusinessTime: t0, Op: ledger.Restore{Of: red.ID}},
		"capture another's hold": capture("m", "x", h.Hold.ID, "0"),
		"void another's hold":    void("m", "x", h.Hold.ID),
		"expire as a partner":    {Kind: ledger.EntryExpiry, Partner: "a", Member: "m", BusinessTime: t0, Op: ledger.Expire{Lot: lot.Lot.ID}},
		"import as a partner":    func() ledger.Entry { e := earn("m", "a", "1", ""); e.Import = true; return e }(),
		"points by hand":         {Kind: ledger.EntryAdjustment, Partner: "operator", BusinessTime: t0, Postings: []ledger.Posting{ledger.Debit("partner:a:issued", d("1")), ledger.Credit("partner:a:expired", d("1"))}},
		"reverses a missing one": func() ledger.Entry { e := earn("m", "a", "1", ""); e.Reverses = "01NOTANENTRY"; return e }(),
	}
	want := map[string]ledger.Code{"points by hand": ledger.CodeInvalidAccount, "reverses a missing one": ledger.CodeNotFound}
	for name, e := range tests {
		if e.Kind == "" {
			continue
		}
		_, err := l.PostOne(ctx, e)
		code := ledger.CodeForbidden
		if c, ok := want[name]; ok {
			code = c
		}
		if ledger.ErrorCode(err) != code {
			t.Errorf("%s: %v, want %s", name, err, code)
		}
	}
	// One bad item does not sink its batch.
	bad := earn("m", "a", "1", "")
	bad.Reverses = "01NOTANENTRY"
	res, err := l.Post(ctx, []ledger.Entry{earn("m", "a", "1", ""), bad})
	if err != nil || res[0].Err != nil || res[1].Err == nil {
		t.Fatalf("%+v %v", res, err)
	}
	// The operator may import history and act for a partner (a timeout voids a hold).
	old := earn("m", "a", "5", "")
	old.Partner, old.Import, old.BusinessTime = "operator", true, t0.AddDate(-1, 0, 0)
	mustPost(t, l, old)
	mustPost(t, l, void("m", "operator", h.Hold.ID))
	sound(t, l)
}

func TestExpiredHoldCanOnlyBeVoided(t *testing.T) {
	t.Parallel()
	l, c := open(t)
	mustPost(t, l, earn("m", "a", "100", ""))
	h := mustPost(t, l, hold("m", "b", "10", "0.01")) // expires at t0 + 15 min
	c.advance(time.Hour)
	e := capture("m", "b", h.Hold.ID, "0")
	e.BusinessTime = c.Now()
	_, err := l.PostOne(context.Background(), e)
	wantCode(t, err, ledger.CodeHoldExpired)
	v := void("m", "b", h.Hold.ID)
	v.BusinessTime = c.Now()
	mustPost(t, l, v)
	wantBalance(t, l, "member:m", "-100")
}
