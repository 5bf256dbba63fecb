package audit_test

import (
	"context"
	"testing"

	"github.com/coalitionledger/coalition/audit"
	"github.com/coalitionledger/coalition/ledger"
)

// The fixture's traffic, position by position:
//
//	1 earn at fuelco, member A, $100: 100 points of fuelco (expire in 30 days)
//	2 earn at electro, member A, $50: 100 points of electro (never expire)
//	3 earn at grocer, member B, $40: 40 points of grocer (expire in 10 days)
//	4 redemption at grocer, member A, 30 points: from fuelco's lot; fuelco owes grocer
//	  30 × $0.02 = $0.60
//	5 earn at fuelco, member B, $25: 25 points of fuelco
//	6 return of $5 of position 5: 5 points reversed
//	7 expiry, 11 days later: grocer's 40 points of member B

func TestTrialBalanceByHand(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.traffic()
	a, b := f.member("1"), f.member("2")
	ctx := context.Background()
	r := audit.NewReports(f.pool)
	tb, err := r.TrialBalance(ctx, 4, "")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"member:" + a: "-170", "member:" + b: "-40",
		"partner:fuelco:issued": "100", "partner:electro:issued": "100", "partner:grocer:issued": "40",
		"partner:grocer:redeemed": "-30", "partner:fuelco:settlement": "0.60", "partner:grocer:settlement": "-0.60",
	}
	checkLines(t, tb, want)
	if tb.Position != 4 || tb.Totals["PTS"] != "0" || tb.Totals["USD"] != "0.00" {
		t.Fatalf("position %d, totals %v", tb.Position, tb.Totals)
	}
	groups := map[string]map[string]string{}
	for _, g := range tb.Groups {
		groups[g.Group] = g.Totals
	}
	if groups["partner:grocer"]["PTS"] != "10" || groups["partner:grocer"]["USD"] != "-0.60" || groups["members"]["PTS"] != "-210" {
		t.Fatalf("groups = %v", groups)
	}

	// An unknown partner has no side: not_found, not an empty table.
	if _, err := r.TrialBalance(ctx, 0, "nobody"); ledger.ErrorCode(err) != ledger.CodeNotFound {
		t.Fatalf("a partner that does not exist: %v", err)
	}
	// At the head, one partner's side.
	tb, err = r.TrialBalance(ctx, 0, "fuelco")
	if err != nil {
		t.Fatal(err)
	}
	checkLines(t, tb, map[string]string{"partner:fuelco:issued": "120", "partner:fuelco:settlement": "0.60"})
	if tb.Position != 7 || tb.Totals["PTS"] != "120" {
		t.Fatalf("fuelco's trial balance: position %d, totals %v", tb.Position, tb.Totals)
	}
}

func checkLines(t *testing.T, tb *audit.TrialBalance, want map[string]string) {
	t.Helper()
	got := map[string]string{}
	for _, l := range tb.Accounts {
		got[l.Account] = l.Balance
	}
	if len(got) != len(want) {
		t.Errorf("accounts = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}

func TestAccountStatementByHand(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.traffic()
	var head audit.StatementHead
	var lines []audit.StatementPosting
	tail, err := audit.NewReports(f.pool).AccountStatement(context.Background(), "partner:fuelco:issued", 2, 6,
		func(h audit.StatementHead) error { head = h; return nil },
		func(p audit.StatementPosting) error { lines = append(lines, p); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if head.Opening != "100" || head.Unit != "PTS" || head.From != 2 || head.To != 6 {
		t.Fatalf("head = %+v", head)
	}
	if len(lines) != 2 || lines[0].Position != 5 || lines[0].Amount != "25" || lines[0].Balance != "125" ||
		lines[1].Position != 6 || lines[1].Amount != "-5" || lines[1].Kind != "earn_reversal" || lines[1].Balance != "120" {
		t.Fatalf("postings = %+v", lines)
	}
	if tail.Closing != "120" || tail.Debits != "25" || tail.Credits != "5" || tail.Postings != 2 {
		t.Fatalf("tail = %+v", tail)
	}
	// An account of the chart never posted to, and a name outside the chart.
	noop := func(audit.StatementHead) error { return nil }
	if _, err := audit.NewReports(f.pool).AccountStatement(context.Background(), "partner:nobody:issued", 0, 0, noop, nil); ledger.ErrorCode(err) != ledger.CodeNotFound {
		t.Fatalf("a statement of an account never posted to: %v, want not_found", err)
	}
	if _, err := audit.NewReports(f.pool).AccountStatement(context.Background(), "bank", 0, 0, noop, nil); err == nil {
		t.Fatal("a statement of an account outside the chart")
	}
}

func TestMemberStatementByHand(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.traffic()
	b := f.member("2")
	var head audit.MemberHead
	var lines []audit.MemberLine
	tail, err := audit.NewReports(f.pool).MemberStatement(context.Background(), b, 4, 0,
		func(h audit.MemberHead) error { head = h; return nil },
		func(l audit.MemberLine) error { lines = append(lines, l); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if head.Opening != "40" || head.OpeningHeld != "0" {
		t.Fatalf("head = %+v", head)
	}
	want := []struct {
		pos            int64
		points, bal    string
		reason, issuer string
		moved          string
	}{
		{5, "25", "65", "earn", "fuelco", "25"},
		{6, "-5", "60", "reversal", "fuelco", "-5"},
		{7, "-40", "20", "expire", "grocer", "-40"},
	}
	if len(lines) != len(want) {
		t.Fatalf("lines = %+v", lines)
	}
	for i, w := range want {
		l := lines[i]
		if l.Position != w.pos || l.Points != w.points || l.Balance != w.bal || len(l.Movements) != 1 ||
			l.Movements[0].Reason != w.reason || l.Movements[0].Issuer != w.issuer || l.Movements[0].Points.String() != w.moved {
			t.Errorf("line %d = %+v, want %+v", i, l, w)
		}
	}
	if tail.Closing != "20" || tail.Entries != 3 {
		t.Fatalf("tail = %+v", tail)
	}
}

func TestRollForwardAndBreakageByHand(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.traffic()
	ctx := context.Background()
	r := audit.NewReports(f.pool)
	rf, err := r.RollForward(ctx, 4, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]audit.IssuerRollForward{
		"electro": {Issuer: "electro", Opening: "100", Issued: "0", Redeemed: "0", Expired: "0", Reversals: "0", Closing: "100", LotsRemaining: "100", Exposure: "1.00"},
		"fuelco":  {Issuer: "fuelco", Opening: "100", Issued: "25", Redeemed: "-30", Expired: "0", Reversals: "-5", Closing: "90", LotsRemaining: "90", Exposure: "0.90"},
		"grocer":  {Issuer: "grocer", Opening: "40", Issued: "0", Redeemed: "0", Expired: "-40", Reversals: "0", Closing: "0", LotsRemaining: "0", Exposure: "0.00"},
	}
	if len(rf.Issuers) != 3 {
		t.Fatalf("issuers = %+v", rf.Issuers)
	}
	for _, got := range rf.Issuers {
		if got != want[got.Issuer] {
			t.Errorf("%s: %+v, want %+v", got.Issuer, got, want[got.Issuer])
		}
	}
	total := audit.IssuerRollForward{Issuer: "total", Opening: "240", Issued: "25", Redeemed: "-30", Expired: "-40", Reversals: "-5",
		Closing: "190", LotsRemaining: "190", Debts: "0", Exposure: "1.90"}
	if rf.Total != total || rf.From != 4 || rf.To != 7 {
		t.Fatalf("total = %+v (period %+v), want %+v", rf.Total, rf.Period, total)
	}
	// A period that ends before the head reads no lots.
	rf, err = r.RollForward(ctx, 0, 3)
	if err != nil {
		t.Fatal(err)
	}
	if rf.Total.Closing != "240" || rf.Total.LotsRemaining != "" || rf.Total.Debts != "" {
		t.Fatalf("to position 3: %+v", rf.Total)
	}

	br, err := r.Breakage(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(br.Issuers) != 1 || br.Issuers[0] != (audit.IssuerBreakage{Issuer: "grocer", Expired: "40", Unexpired: "0", Net: "40", Value: "0.80"}) ||
		br.Total.Value != "0.80" {
		t.Fatalf("breakage = %+v", br)
	}
	br, err = r.Breakage(ctx, 1, 6)
	if err != nil {
		t.Fatal(err)
	}
	if len(br.Issuers) != 0 || br.Total.Value != "0.00" {
		t.Fatalf("breakage before the expiry = %+v", br)
	}
}
