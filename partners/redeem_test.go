package partners

import (
	"testing"

	"github.com/coalitionledger/coalition/ledger"
	"github.com/shopspring/decimal"
)

// shopContract is an electronics retailer's redemption terms: points at the coalition's
// point value, in steps of 100, at least 200, paying at most 20% of a purchase.
func shopContract(t *testing.T) Contract {
	return Contract{
		EffectiveFrom: at(t, "2025-01-01T00:00:00Z"),
		Earn:          EarnRate{PointsPerUnit: dp("0.1")},
		MaxShare:      dp("0.2"),
		MinRedeem:     d("200"),
		RedeemStep:    dp("100"),
	}
}

func TestPriceRedemption(t *testing.T) {
	t.Parallel()
	shop := shopContract(t)
	open := shop
	open.MaxShare, open.MinRedeem, open.RedeemStep = nil, decimal.Zero, nil
	third := open
	third.RedeemRate = dp("0.333")
	cents := open
	cents.RedeemRate = dp("0.005")

	cases := []struct {
		name     string
		contract Contract
		want     Redeem
		purchase string
		points   string
		value    string
	}{
		{"by points", shop, RedeemPoints(d("300")), "10000.00", "300", "300.00"},
		{"by value, rounded up to a whole step", shop, RedeemValue(d("250.00")), "10000.00", "300", "300.00"},
		{"by value, exactly a step", shop, RedeemValue(d("400.00")), "10000.00", "400", "400.00"},
		{"by value, up to the share cap exactly", shop, RedeemValue(d("200.00")), "1000.00", "200", "200.00"},
		{"by value where rounding the value reaches it", third, RedeemValue(d("1.00")), "", "3", "1.00"},    // 0.999 → 1.00
		{"by value at a rate below the minor unit", cents, RedeemValue(d("0.01")), "", "1", "0.01"},         // 0.005 → 0.01
		{"by value at a rate below the minor unit, more", cents, RedeemValue(d("1.00")), "", "199", "1.00"}, // 0.995 → 1.00
		{"no cap: the whole purchase", open, RedeemPoints(d("1000")), "1000.00", "1000", "1000.00"},
		{"no cap and no purchase amount", open, RedeemPoints(d("1")), "", "1", "1.00"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var purchase *decimal.Decimal
			if tc.purchase != "" {
				purchase = dp(tc.purchase)
			}
			got, err := PriceRedemption(rub(), tc.contract, tc.want, purchase)
			if err != nil {
				t.Fatal(err)
			}
			assertDecimal(t, "points", got.Points, tc.points)
			assertDecimal(t, "value", got.Value.Amount, tc.value)
			if got.Value.Currency != "RUB" {
				t.Errorf("currency %q", got.Value.Currency)
			}
		})
	}
}

func TestPriceRedemptionRefuses(t *testing.T) {
	t.Parallel()
	shop := shopContract(t)
	none := shop
	none.MaxShare = dp("0")
	shopOddMin := shop // a minimum between two steps
	shopOddMin.MinRedeem = d("210")
	cases := []struct {
		name     string
		contract Contract
		want     Redeem
		purchase string
		code     ledger.Code
		details  map[string]string
	}{
		{"not a whole step", shop, RedeemPoints(d("250")), "10000", CodeRedeemStep,
			map[string]string{"redeem_step": "100", "nearest_below": "200", "nearest_above": "300"}},
		{"not a step, below the minimum: the minimum is what to fix", shop, RedeemPoints(d("150")), "10000", CodeBelowMinRedeem,
			map[string]string{"min_redeem": "200", "min_points": "200"}},
		{"a step would fall below the minimum: only the one above", shopOddMin, RedeemPoints(d("250")), "10000", CodeRedeemStep,
			map[string]string{"redeem_step": "100", "nearest_above": "300"}},
		{"below the minimum by points", shop, RedeemPoints(d("100")), "10000", CodeBelowMinRedeem,
			map[string]string{"min_redeem": "200", "min_value": "200"}},
		{"below the minimum by value", shop, RedeemValue(d("50.00")), "10000", CodeBelowMinRedeem,
			map[string]string{"min_redeem": "200"}},
		{"no purchase amount under a share cap", shop, RedeemPoints(d("200")), "", CodePurchaseAmountRequired,
			map[string]string{"max_share": "0.2"}},
		{"more than the share cap by points", shop, RedeemPoints(d("300")), "1000.00", CodeMaxShare,
			map[string]string{"max_points": "200", "max_value": "200"}},
		{"more than the share cap once rounded to a step", shop, RedeemValue(d("210.00")), "1099.99", CodeMaxShare,
			map[string]string{"max_points": "200"}},
		{"a partner that takes no points", none, RedeemPoints(d("200")), "1000", CodeMaxShare,
			map[string]string{"max_points": "0"}},
		{"neither points nor value", shop, Redeem{}, "1000", ledger.CodeInvalid, nil},
		{"both points and value", shop, Redeem{Points: d("200"), Value: d("200")}, "1000", ledger.CodeInvalid, nil},
		{"negative points", shop, RedeemPoints(d("-200")), "1000", ledger.CodeInvalidAmount, nil},
		{"fractional points at scale 0", shop, RedeemPoints(d("200.5")), "1000", ledger.CodeInvalidScale, nil},
		{"a value with too many decimals", shop, RedeemValue(d("200.001")), "1000", ledger.CodeInvalidScale, nil},
		{"a negative purchase amount", shop, RedeemPoints(d("200")), "-1000", ledger.CodeInvalidAmount, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var purchase *decimal.Decimal
			if tc.purchase != "" {
				purchase = dp(tc.purchase)
			}
			_, err := PriceRedemption(rub(), tc.contract, tc.want, purchase)
			e := asError(t, err)
			if e.Code != tc.code {
				t.Fatalf("code %q (%v), want %q", e.Code, err, tc.code)
			}
			for k, v := range tc.details {
				got, ok := e.Details[k].(string)
				if !ok || !d(got).Equal(d(v)) {
					t.Errorf("details[%s] = %v, want %s (%v)", k, e.Details[k], v, err)
				}
			}
			if _, below := tc.details["nearest_below"]; e.Code == CodeRedeemStep && !below && e.Details["nearest_below"] != nil {
				t.Errorf("suggests %v below the minimum (%v)", e.Details["nearest_below"], err)
			}
		})
	}
}
