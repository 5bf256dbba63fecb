package ledger

import (
	"fmt"
	"testing"

	"github.com/shopspring/decimal"
	"pgregory.net/rapid"
)

func d(s string) decimal.Decimal { return decimal.RequireFromString(s) }

func TestSplit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		total   string
		scale   int32
		weights []Weight
		want    []string
	}{
		{"one issuer takes all", "12.34", 2, []Weight{{"a", d("7")}}, []string{"12.34"}},
		{"even split", "1.00", 2, []Weight{{"a", d("1")}, {"b", d("1")}}, []string{"0.50", "0.50"}},
		{"leftover cent to the larger remainder", "1.00", 2, []Weight{{"a", d("1")}, {"b", d("2")}}, []string{"0.33", "0.67"}},
		{"tie broken by issuer id", "0.01", 2, []Weight{{"b", d("1")}, {"a", d("1")}}, []string{"0.00", "0.01"}},
		{"three ways, two leftover", "1.00", 2, []Weight{{"a", d("1")}, {"b", d("1")}, {"c", d("1")}}, []string{"0.34", "0.33", "0.33"}},
		{"whole currency units", "10", 0, []Weight{{"x", d("3")}, {"y", d("3")}, {"z", d("1")}}, []string{"4", "4", "2"}},
		{"fractional points", "5.00", 2, []Weight{{"a", d("0.5")}, {"b", d("1.5")}}, []string{"1.25", "3.75"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Split(d(tt.total), tt.scale, tt.weights)
			for i := range got {
				if !got[i].Equal(d(tt.want[i])) {
					t.Fatalf("share %d = %s, want %s (all: %v)", i, got[i], tt.want[i], got)
				}
			}
		})
	}
}

// Property: the shares sum to the total exactly, each is within one minor unit of its
// exact proportion, and none is negative.
func TestSplitProperties(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		scale := int32(rapid.IntRange(0, 3).Draw(t, "scale"))
		total := decimal.New(rapid.Int64Range(0, 1_000_000_000).Draw(t, "units"), -scale)
		n := rapid.IntRange(1, 8).Draw(t, "issuers")
		weights := make([]Weight, n)
		sum := decimal.Zero
		for i := range weights {
			weights[i] = Weight{Key: fmt.Sprintf("p%02d", i), Points: decimal.NewFromInt(rapid.Int64Range(1, 1_000_000).Draw(t, "points"))}
			sum = sum.Add(weights[i].Points)
		}
		shares := Split(total, scale, weights)
		got := decimal.Zero
		unit := decimal.New(1, -scale)
		for i, s := range shares {
			if s.IsNegative() {
				t.Fatalf("negative share %s", s)
			}
			exact := total.Mul(weights[i].Points).Div(sum)
			if s.Sub(exact).Abs().GreaterThanOrEqual(unit) {
				t.Fatalf("share %s is a unit or more from its exact proportion %s", s, exact)
			}
			if !s.Equal(s.Truncate(scale)) {
				t.Fatalf("share %s is finer than scale %d", s, scale)
			}
			got = got.Add(s)
		}
		if !got.Equal(total) {
			t.Fatalf("shares sum to %s, total %s", got, total)
		}
	})
}

func TestParseAccount(t *testing.T) {
	t.Parallel()
	good := map[string]AccountKind{
		"member:01JABC":              KindMember,
		"member:01JABC:held":         KindMemberHeld,
		"partner:fuelco:issued":      KindPartnerIssued,
		"partner:fuelco:settlement":  KindPartnerSettlement,
		"partner:f-1:in_settlement":  KindPartnerInSettlement,
		"operator:fees":              KindOperatorFees,
		"operator:awards":            KindOperatorAwards,
		"partner:operator:issued":    KindPartnerIssued,
		"partner:fuel_co:redeemed":   KindPartnerRedeemed,
		"partner:fuelco:expired":     KindPartnerExpired,
		"operator:bank":              KindOperatorBank,
		"member:a:held":              KindMemberHeld,
		"member:Z9-_x":               KindMember,
		"partner:0:settlement":       KindPartnerSettlement,
		"partner:x:in_settlement":    KindPartnerInSettlement,
		"partner:abc-def_1:redeemed": KindPartnerRedeemed,
	}
	for name, kind := range good {
		a, err := ParseAccount(name)
		if err != nil || a.Kind != kind {
			t.Errorf("ParseAccount(%q) = %v, %v; want kind %s", name, a.Kind, err, kind)
		}
	}
	for _, name := range []string{"", "member", "member:", "member:a:b", "partner:Fuel:issued", "partner:x:cash",
		"operator:x", "operator", "bank", "member:a:held:x", "partner:x", "partner::issued"} {
		if _, err := ParseAccount(name); err == nil || err.Code != CodeInvalidAccount {
			t.Errorf("ParseAccount(%q) accepted, want %s", name, CodeInvalidAccount)
		}
	}
}
