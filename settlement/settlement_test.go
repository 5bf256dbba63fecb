package settlement

import (
	"fmt"
	"reflect"
	"sort"
	"testing"

	"github.com/coalitionledger/coalition/ledger"
	"github.com/shopspring/decimal"
	"pgregory.net/rapid"
)

func d(s string) decimal.Decimal { return decimal.RequireFromString(s) }

// money returns a money posting in EUR, debit positive.
func money(account, amount string) ledger.Posting {
	return ledger.Posting{Account: account, Unit: "EUR", Amount: d(amount)}
}

func pts(account, amount string) ledger.Posting {
	return ledger.Posting{Account: account, Unit: ledger.Points, Amount: d(amount)}
}

func settle(p string) string { return ledger.PartnerAccount(p, "settlement") }

// redemption at consumer whose value is split over issuers (issuer → its share); the
// consumer's own share, if listed, moves no money.
func redemption(id, consumer string, shares map[string]string) ledger.Posted {
	e := ledger.Posted{ID: id, Kind: ledger.EntryRedemption, Partner: consumer, Postings: []ledger.Posting{
		pts("member:m1", "100"), pts(ledger.PartnerAccount(consumer, "redeemed"), "-100"),
	}}
	total := decimal.Zero
	issuers := make([]string, 0, len(shares))
	for p := range shares {
		issuers = append(issuers, p)
	}
	sort.Strings(issuers)
	for _, p := range issuers {
		if p == consumer {
			continue
		}
		e.Postings = append(e.Postings, money(settle(p), shares[p]))
		total = total.Add(d(shares[p]))
	}
	if !total.IsZero() {
		e.Postings = append(e.Postings, money(settle(consumer), total.Neg().String()))
	}
	return e
}

func eq(t *testing.T, what string, got, want decimal.Decimal) {
	t.Helper()
	if !got.Equal(want) {
		t.Errorf("%s = %s, want %s", what, got, want)
	}
}

func TestPositionsAndMatrix(t *testing.T) {
	t.Parallel()
	entries := []ledger.Posted{
		// b redeems points of a and c: a and c owe b.
		redemption("e1", "b", map[string]string{"a": "3.00", "c": "1.50", "b": "2.00"}),
		// a redeems points of b.
		redemption("e2", "a", map[string]string{"b": "1.00"}),
		// a redeems only its own points: no money.
		redemption("e3", "a", map[string]string{"a": "9.99"}),
		// part of e1 is reversed: b gives a 0.50 back.
		{ID: "e4", Kind: ledger.EntryRedemptionReversal, Partner: "b", Postings: []ledger.Posting{
			money(settle("b"), "0.70"), money(settle("a"), "-0.50"), money(settle("c"), "-0.20"),
		}},
		// b redeems points the operator awarded.
		{ID: "e5", Kind: ledger.EntryRedemption, Partner: "b", Postings: []ledger.Posting{
			money("operator:awards", "0.40"), money(settle("b"), "-0.40"),
		}},
		// fee entries are the run's own: skipped.
		{ID: "e6", Kind: ledger.EntryFee, Partner: "operator", Postings: []ledger.Posting{
			money(settle("a"), "5.00"), money("operator:fees", "-5.00"),
		}},
	}
	ex, err := positions(entries)
	if err != nil {
		t.Fatal(err)
	}
	if ex.Currency != "EUR" {
		t.Errorf("currency %q", ex.Currency)
	}
	want := map[string]string{"a": "1.50", "b": "-3.20", "c": "1.30"}
	if len(ex.Positions) != len(want) {
		t.Errorf("positions %v, want %v", ex.Positions, want)
	}
	for p, w := range want {
		eq(t, "position of "+p, ex.Positions[p], d(w))
	}
	wantGross := []string{"a→b 3.00", "b→a 1.50", "b→c 0.20", "c→b 1.50", "operator→b 0.40"}
	if got := render(ex.Gross); fmt.Sprint(got) != fmt.Sprint(wantGross) {
		t.Errorf("gross %v, want %v", got, wantGross)
	}
	wantNet := []string{"a→b 1.50", "c→b 1.30", "operator→b 0.40"}
	if got := render(ex.Bilateral); fmt.Sprint(got) != fmt.Sprint(wantNet) {
		t.Errorf("bilateral %v, want %v", got, wantNet)
	}
}

func render(os []Obligation) []string {
	out := make([]string, len(os))
	for i, o := range os {
		out[i] = fmt.Sprintf("%s→%s %s", o.Debtor, o.Creditor, o.Amount.StringFixed(2))
	}
	return out
}

func TestPositionsManyToMany(t *testing.T) {
	t.Parallel()
	ex, err := positions([]ledger.Posted{{ID: "adj", Kind: ledger.EntryAdjustment, Postings: []ledger.Posting{
		money(settle("a"), "3"), money(settle("b"), "1"), money(settle("c"), "-2"), money(settle("d"), "-2"),
	}}})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"a→c 2.00", "a→d 1.00", "b→d 1.00"}
	if got := render(ex.Gross); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("gross %v, want %v", got, want)
	}
}

func TestPositionsRefuses(t *testing.T) {
	t.Parallel()
	for name, e := range map[string]ledger.Posted{
		"unbalanced":  {ID: "x", Kind: ledger.EntryRedemption, Postings: []ledger.Posting{money(settle("a"), "1")}},
		"two moneys":  {ID: "x", Kind: ledger.EntryRedemption, Postings: []ledger.Posting{money(settle("a"), "1"), {Account: settle("b"), Unit: "USD", Amount: d("-1")}}},
		"bad account": {ID: "x", Kind: ledger.EntryRedemption, Postings: []ledger.Posting{money("partner:a:wallet", "1"), money(settle("b"), "-1")}},
	} {
		if _, err := positions([]ledger.Posted{e}); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestFees(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		items []feeItem
		want  map[string]string
	}{
		{
			// 3 × 0.0015 = 0.0045 each: rounded per item it would be 0.00 three times;
			// rounded once over the partner's run it is 0.0135 → 0.01.
			name:  "rounded once per partner, not per earn",
			items: []feeItem{{"a", d("3"), d("0.0015")}, {"a", d("3"), d("0.0015")}, {"a", d("3"), d("0.0015")}},
			want:  map[string]string{"a": "0.01"},
		},
		{
			name:  "half up",
			items: []feeItem{{"a", d("1"), d("0.005")}, {"b", d("1"), d("0.0049")}, {"c", d("5"), d("0.003")}},
			want:  map[string]string{"a": "0.01", "c": "0.02"},
		},
		{
			name:  "each earn at its own fee_per_point, reversals subtract",
			items: []feeItem{{"a", d("100"), d("0.01")}, {"a", d("100"), d("0.02")}, {"a", d("-50"), d("0.01")}},
			want:  map[string]string{"a": "2.50"},
		},
		{
			name:  "negative total is a credit, rounded as its mirror",
			items: []feeItem{{"a", d("10"), d("0.01")}, {"a", d("-101"), d("0.005")}, {"b", d("-1"), d("0.005")}},
			want:  map[string]string{"a": "-0.41", "b": "-0.01"},
		},
		{
			name:  "nothing charged",
			items: []feeItem{{"a", d("10"), d("0")}, {"b", d("10"), d("0.01")}, {"b", d("-10"), d("0.01")}},
			want:  map[string]string{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := fees(tt.items)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Errorf("fees %v, want %v", got, tt.want)
			}
			for p, w := range tt.want {
				eq(t, "fee of "+p, got[p], d(w))
			}
		})
	}
	if _, err := fees([]feeItem{{"a", d("1"), d("-0.01")}}); err == nil {
		t.Error("negative fee_per_point: no error")
	}
}

// feeItem is an earn (or, with negative points, an earn reversal) of a partner at a
// fee_per_point.
type feeItem struct {
	partner             string
	points, feePerPoint decimal.Decimal
}

// fees tallies the items as earn entries and returns the run's fees at the cent.
func fees(items []feeItem) (map[string]decimal.Decimal, error) {
	t := NewTally()
	for i, it := range items {
		kind := ledger.EntryEarn
		if it.points.IsNegative() {
			kind = ledger.EntryEarnReversal
		}
		e := ledger.Posted{ID: fmt.Sprint("f", i), Kind: kind, Partner: it.partner, Postings: []ledger.Posting{
			pts(ledger.PartnerAccount(it.partner, "issued"), it.points.String()), pts("member:m1", it.points.Neg().String())}}
		if err := t.Add(&e, it.feePerPoint); err != nil {
			return nil, err
		}
	}
	day, _ := ParseDay("2026-06-10")
	return Settle(t, Window{Day: day}, nil, Scales{Currency: "EUR", Money: 2}).Fees, nil
}

// positions is the Tally of entries without fees.
func positions(entries []ledger.Posted) (Exposure, error) {
	t := NewTally()
	for i := range entries {
		if err := t.Add(&entries[i], decimal.Zero); err != nil {
			return Exposure{}, err
		}
	}
	return t.Exposure(), nil
}

func TestNet(t *testing.T) {
	t.Parallel()
	type m = map[string]string
	tests := []struct {
		name      string
		positions m
		fees      m
		want      []string
	}{
		{
			name:      "three partners",
			positions: m{"a": "10.00", "b": "-4.00", "c": "-6.00"},
			fees:      m{"a": "1.00", "b": "0.50"},
			want:      []string{"a pay_operator 11.00", "b paid_by_operator 3.50", "c paid_by_operator 6.00"},
		},
		{
			name:      "three-partner cycle nets away, leaving the fees",
			positions: m{"a": "0.00", "b": "0.00", "c": "0.00"}, // a owes b, b owes c, c owes a 5.00 each
			fees:      m{"a": "0.10", "b": "0.20", "c": "0.30"},
			want:      []string{"a pay_operator 0.10", "b pay_operator 0.20", "c pay_operator 0.30"},
		},
		{
			name:      "five partners with a cycle and a negative fee",
			positions: m{"a": "7.25", "b": "-2.00", "c": "0.00", "d": "-5.00", "e": "-0.25"},
			fees:      m{"a": "0.75", "c": "-0.40", "d": "5.00", "e": "0.25"},
			want:      []string{"a pay_operator 8.00", "b paid_by_operator 2.00", "c paid_by_operator 0.40"},
		},
		{
			name:      "a fee alone, for a partner without a position",
			positions: m{"a": "1.00", "b": "-1.00"},
			fees:      m{"z": "0.01"},
			want:      []string{"a pay_operator 1.00", "b paid_by_operator 1.00", "z pay_operator 0.01"},
		},
		{
			name: "nothing to pay",
		},
	}
	toDec := func(x m) map[string]decimal.Decimal {
		out := map[string]decimal.Decimal{}
		for k, v := range x {
			out[k] = d(v)
		}
		return out
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := renderInstructions(Net(toDec(tt.positions), toDec(tt.fees)))
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("instructions %v, want %v", got, tt.want)
			}
		})
	}
}

func renderInstructions(ins []Instruction) []string {
	out := make([]string, len(ins))
	for i, in := range ins {
		out[i] = fmt.Sprintf("%s %s %s", in.Partner, in.Direction, in.Amount.StringFixed(2))
	}
	return out
}

// From the journal to the instructions: a cycle of cross-partner redemptions nets away,
// and a partner whose members only redeem at itself pays just its fees.
func TestRunFromEntries(t *testing.T) {
	t.Parallel()
	entries := []ledger.Posted{
		redemption("r1", "b", map[string]string{"a": "5.00"}), // a owes b
		redemption("r2", "c", map[string]string{"b": "5.00"}), // b owes c
		redemption("r3", "a", map[string]string{"c": "5.00"}), // c owes a
		redemption("r4", "a", map[string]string{"a": "2.00"}), // a's own points at a
		redemption("r5", "self", map[string]string{"self": "7.00"}),
		redemption("r6", "self", map[string]string{"self": "1.00"}),
		redemption("r7", "b", map[string]string{"c": "1.25"}),
	}
	ex, err := positions(entries)
	if err != nil {
		t.Fatal(err)
	}
	charged, err := fees([]feeItem{
		{"self", d("1000"), d("0.001")}, {"self", d("5"), d("0.001")}, // 1.005 → 1.01
		{"a", d("200"), d("0.0025")}, // 0.50
	})
	if err != nil {
		t.Fatal(err)
	}
	got := renderInstructions(Net(ex.Positions, charged))
	want := []string{"a pay_operator 0.50", "b paid_by_operator 1.25", "c pay_operator 1.25", "self pay_operator 1.01"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("instructions %v, want %v", got, want)
	}
	wantGross := []string{"a→b 5.00", "b→c 5.00", "c→a 5.00", "c→b 1.25"}
	if g := render(ex.Gross); fmt.Sprint(g) != fmt.Sprint(wantGross) {
		t.Errorf("gross %v, want %v", g, wantGross)
	}
}

func TestNetProperties(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(rt *rapid.T) {
		n := rapid.IntRange(1, 12).Draw(rt, "partners")
		positions := map[string]decimal.Decimal{}
		fees := map[string]decimal.Decimal{}
		sumPos, sumFees := decimal.Zero, decimal.Zero
		for i := 0; i < n; i++ {
			p := fmt.Sprintf("p%02d", i)
			var pos decimal.Decimal
			if i < n-1 {
				pos = decimal.New(rapid.Int64Range(-1_000_000_00, 1_000_000_00).Draw(rt, "position"), -2)
			} else {
				pos = sumPos.Neg() // balanced: the positions sum to zero
			}
			sumPos = sumPos.Add(pos)
			positions[p] = pos
			if rapid.Bool().Draw(rt, "has fee") {
				f := decimal.New(rapid.Int64Range(-10_000_00, 10_000_00).Draw(rt, "fee"), -2)
				fees[p] = f
				sumFees = sumFees.Add(f)
			}
		}
		ins := Net(positions, fees)
		received, paid := Totals(ins)
		if !received.Sub(paid).Equal(sumFees) {
			rt.Fatalf("received %s − paid %s ≠ Σ fees %s", received, paid, sumFees)
		}
		seen := map[string]bool{}
		for i, in := range ins {
			if !in.Amount.IsPositive() {
				rt.Fatalf("%s: amount %s not positive", in.Partner, in.Amount)
			}
			if seen[in.Partner] {
				rt.Fatalf("%s: two instructions", in.Partner)
			}
			seen[in.Partner] = true
			if i > 0 && ins[i-1].Partner >= in.Partner {
				rt.Fatalf("not sorted: %s before %s", ins[i-1].Partner, in.Partner)
			}
			signed := in.Amount
			if in.Direction == PaidByOperator {
				signed = signed.Neg()
			} else if in.Direction != PayOperator {
				rt.Fatalf("%s: direction %q", in.Partner, in.Direction)
			}
			if want := positions[in.Partner].Add(fees[in.Partner]); !signed.Equal(want) {
				rt.Fatalf("%s: instruction %s, want position + fee = %s", in.Partner, signed, want)
			}
		}
		for p := range positions {
			if !seen[p] && !positions[p].Add(fees[p]).IsZero() {
				rt.Fatalf("%s: net %s but no instruction", p, positions[p].Add(fees[p]))
			}
		}
	})
}

// For random consumptions and their reversals, each partner's position is what the gross
// matrix says it owes less what it is owed, and the bilateral nets agree with both.
func TestPositionsMatchMatrix(t *testing.T) {
	t.Parallel()
	partners := []string{"a", "b", "c", "d", "e"}
	rapid.Check(t, func(rt *rapid.T) {
		var entries []ledger.Posted
		steps := rapid.IntRange(0, 30).Draw(rt, "entries")
		for i := 0; i < steps; i++ {
			consumer := rapid.SampledFrom(partners).Draw(rt, "consumer")
			shares := map[string]string{}
			for _, p := range partners {
				if rapid.Bool().Draw(rt, "issuer "+p) {
					shares[p] = decimal.New(rapid.Int64Range(1, 100_00).Draw(rt, "share"), -2).String()
				}
			}
			e := redemption(fmt.Sprintf("e%d", i), consumer, shares)
			if rapid.Bool().Draw(rt, "reversal") {
				e.Kind = ledger.EntryRedemptionReversal
				for j := range e.Postings {
					e.Postings[j].Amount = e.Postings[j].Amount.Neg()
				}
			}
			entries = append(entries, e)
		}
		ex, err := positions(entries)
		if err != nil {
			rt.Fatal(err)
		}
		fromGross := map[string]decimal.Decimal{}
		for _, o := range ex.Gross {
			if !o.Amount.IsPositive() || o.Debtor == o.Creditor {
				rt.Fatalf("bad gross row %+v", o)
			}
			fromGross[o.Debtor] = fromGross[o.Debtor].Add(o.Amount)
			fromGross[o.Creditor] = fromGross[o.Creditor].Sub(o.Amount)
		}
		fromNets := map[string]decimal.Decimal{}
		for _, o := range ex.Bilateral {
			if !o.Amount.IsPositive() {
				rt.Fatalf("bad bilateral row %+v", o)
			}
			fromNets[o.Debtor] = fromNets[o.Debtor].Add(o.Amount)
			fromNets[o.Creditor] = fromNets[o.Creditor].Sub(o.Amount)
		}
		sum := decimal.Zero
		for _, p := range partners {
			sum = sum.Add(ex.Positions[p])
			if !ex.Positions[p].Equal(fromGross[p]) || !ex.Positions[p].Equal(fromNets[p]) {
				rt.Fatalf("%s: position %s, gross says %s, nets say %s", p, ex.Positions[p], fromGross[p], fromNets[p])
			}
		}
		if !sum.IsZero() {
			rt.Fatalf("positions sum to %s", sum)
		}
	})
}

// Five partners in two cycles and a chord: the cycles net away, the chord and the fees
// are what is paid. Fees come from earns and an earn reversal at each earn's own rate.
func TestSettleFivePartnersWithCycles(t *testing.T) {
	t.Parallel()
	earn := func(id, p, points string, kind ledger.EntryKind) ledger.Posted {
		return ledger.Posted{ID: id, Kind: kind, Partner: p, Postings: []ledger.Posting{
			pts(ledger.PartnerAccount(p, "issued"), points), pts("member:m1", d(points).Neg().String())}}
	}
	type item struct {
		e   ledger.Posted
		fee string
	}
	items := []item{
		{redemption("r1", "b", map[string]string{"a": "10.00"}), "0"}, // a owes b
		{redemption("r2", "c", map[string]string{"b": "10.00"}), "0"},
		{redemption("r3", "d", map[string]string{"c": "10.00"}), "0"},
		{redemption("r4", "e", map[string]string{"d": "10.00"}), "0"},
		{redemption("r5", "a", map[string]string{"e": "10.00"}), "0"}, // the first cycle closes
		{redemption("r6", "c", map[string]string{"a": "4.00"}), "0"},
		{redemption("r7", "e", map[string]string{"c": "4.00"}), "0"},
		{redemption("r8", "a", map[string]string{"e": "4.00"}), "0"}, // the second
		{redemption("r9", "b", map[string]string{"d": "3.00"}), "0"}, // the chord: d owes b
		{earn("e1", "a", "1000", ledger.EntryEarn), "0.002"},         // 2.00
		{earn("e2", "e", "333", ledger.EntryEarn), "0.003"},          // 0.999
		{earn("e3", "e", "-100", ledger.EntryEarnReversal), "0.003"}, // −0.300 → e 0.699 → 0.70
		{earn("e4", "b", "5", ledger.EntryEarn), "0.001"},            // 0.005 → 0.01, half-up
	}
	tally := NewTally()
	for _, it := range items {
		if err := tally.Add(&it.e, d(it.fee)); err != nil {
			t.Fatal(err)
		}
	}
	day, _ := ParseDay("2026-06-10")
	out := Settle(tally, Window{Day: day, Cutoff: 13}, nil, Scales{Currency: "EUR", Money: 2})
	got := renderInstructions(out.Instructions)
	want := []string{"a pay_operator 2.00", "b paid_by_operator 2.99", "d pay_operator 3.00", "e pay_operator 0.70"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("instructions %v, want %v", got, want)
	}
	tt := out.Report.Totals
	if tt.Received != "5.70" || tt.Paid != "2.99" || tt.Fees != "2.71" || tt.Net != "2.71" || tt.Awards != "0.00" || tt.Instructions != 4 {
		t.Fatalf("totals %+v", tt)
	}
	// No pair owes both ways, so netting pairs removes nothing; netting through the
	// operator leaves only the chord.
	if len(out.Report.Gross) != 8 || !reflect.DeepEqual(out.Report.Gross, out.Report.Bilateral) {
		t.Fatalf("gross %+v, bilateral %+v: want the same 8 pairs", out.Report.Gross, out.Report.Bilateral)
	}
	positions := map[string]string{}
	for _, p := range out.Report.Partners {
		positions[p.Partner] = p.Position
	}
	if want := map[string]string{"a": "0.00", "b": "-3.00", "c": "0.00", "d": "3.00", "e": "0.00"}; !reflect.DeepEqual(positions, want) {
		t.Fatalf("positions %v, want %v", positions, want)
	}
}
