package partners

import (
	"testing"
	"time"

	"github.com/coalitionledger/coalition/ledger"
	"github.com/shopspring/decimal"
)

// fuelContract is a fuel chain's terms: 1 point per 10 RUB, 3 per 10 RUB on shop goods,
// ×2 with its own card, a coffee week at ×2 and a weekend at ×1.5, no points under
// 100 RUB, points that last a year.
func fuelContract(t *testing.T) Contract {
	return Contract{
		EffectiveFrom:            at(t, "2025-01-01T00:00:00+03:00"),
		Currency:                 "RUB",
		Earn:                     EarnRate{PointsPerUnit: dp("0.1")},
		CategoryMultipliers:      map[string]decimal.Decimal{"shop": d("3"), "tobacco": d("0")},
		PaymentMethodMultipliers: map[string]decimal.Decimal{"own_card": d("2")},
		Promotions: []Promotion{
			{From: at(t, "2025-06-01T00:00:00+03:00"), To: at(t, "2025-06-08T00:00:00+03:00"), Multiplier: d("2"), Category: "coffee"},
			{From: at(t, "2025-06-07T00:00:00+03:00"), To: at(t, "2025-06-09T00:00:00+03:00"), Multiplier: d("1.5")},
		},
		MinPurchase: d("100"),
		ExpiryDays:  ip(365),
	}
}

func TestPriceEarn(t *testing.T) {
	t.Parallel()
	fuel := fuelContract(t)
	percent := fuel
	percent.Earn = EarnRate{PercentBack: dp("3")}
	halfUp := fuel
	halfUp.Rounding = RoundHalfUp
	usual := at(t, "2025-05-20T12:00:00+03:00")

	cases := []struct {
		name     string
		contract Contract
		purchase Purchase
		tier     string
		when     time.Time
		points   string
		below    bool
	}{
		{name: "1 per 10 RUB on fuel and 3 per 10 RUB on shop goods in one basket", contract: fuel,
			purchase: Purchase{Currency: "RUB", Lines: []Line{{Category: "fuel", Amount: d("1000.00")}, {Category: "shop", Amount: d("500.00")}}},
			points:   "250"},
		{name: "3% back at a point value of 1 RUB", contract: percent,
			purchase: Purchase{Amount: d("1000.00"), Currency: "RUB"}, points: "30"},
		{name: "3% back, shop goods ×3", contract: percent,
			purchase: Purchase{Amount: d("1000.00"), Currency: "RUB", Category: "shop"}, points: "90"},
		{name: "×2 paying with the partner's own card", contract: fuel,
			purchase: Purchase{Amount: d("1000.00"), Currency: "RUB", Category: "fuel", PaymentMethod: "own_card"}, points: "200"},
		{name: "another payment method earns the base rate", contract: fuel,
			purchase: Purchase{Amount: d("1000.00"), Currency: "RUB", Category: "fuel", PaymentMethod: "visa"}, points: "100"},
		{name: "promotion inside its window", contract: fuel, when: at(t, "2025-06-03T10:00:00+03:00"),
			purchase: Purchase{Amount: d("300.00"), Currency: "RUB", Category: "coffee"}, points: "60"},
		{name: "promotion at its first instant", contract: fuel, when: at(t, "2025-06-01T00:00:00+03:00"),
			purchase: Purchase{Amount: d("300.00"), Currency: "RUB", Category: "coffee"}, points: "60"},
		{name: "promotion outside its window", contract: fuel, when: at(t, "2025-06-10T10:00:00+03:00"),
			purchase: Purchase{Amount: d("300.00"), Currency: "RUB", Category: "coffee"}, points: "30"},
		{name: "promotion window is half-open: its end is outside", contract: fuel, when: at(t, "2025-06-09T00:00:00+03:00"),
			purchase: Purchase{Amount: d("300.00"), Currency: "RUB", Category: "coffee"}, points: "30"},
		{name: "category promotion skips other categories' lines", contract: fuel, when: at(t, "2025-06-03T10:00:00+03:00"),
			purchase: Purchase{Currency: "RUB", Lines: []Line{{Category: "coffee", Amount: d("300")}, {Category: "fuel", Amount: d("1000")}}},
			points:   "160"},
		{name: "of two promotions in force only the largest applies", contract: fuel, when: at(t, "2025-06-07T10:00:00+03:00"),
			purchase: Purchase{Currency: "RUB", Lines: []Line{{Category: "coffee", Amount: d("300")}, {Category: "fuel", Amount: d("1000")}}},
			points:   "210"}, // coffee 30 × 2 (not × 2 × 1.5), fuel 100 × 1.5
		{name: "tier multiplier", contract: fuel, tier: "1.5",
			purchase: Purchase{Amount: d("1000.00"), Currency: "RUB", Category: "fuel"}, points: "150"},
		{name: "multipliers multiply: tier × category × payment method × promotion", contract: fuel, tier: "1.25", when: at(t, "2025-06-08T10:00:00+03:00"),
			purchase: Purchase{Amount: d("1000.00"), Currency: "RUB", Category: "shop", PaymentMethod: "own_card"}, points: "1125"},
		{name: "category multiplier 0 excludes a category", contract: fuel,
			purchase: Purchase{Amount: d("1000.00"), Currency: "RUB", Category: "tobacco"}, points: "0"},
		{name: "rounding down", contract: fuel,
			purchase: Purchase{Amount: d("1009.99"), Currency: "RUB"}, points: "100"},
		{name: "rounding half up, a half", contract: halfUp,
			purchase: Purchase{Amount: d("1005.00"), Currency: "RUB"}, points: "101"},
		{name: "rounding half up, under a half", contract: halfUp,
			purchase: Purchase{Amount: d("1004.99"), Currency: "RUB"}, points: "100"},
		{name: "rounding is once over all lines, not per line", contract: fuel,
			purchase: Purchase{Currency: "RUB", Lines: []Line{{Category: "fuel", Amount: d("105")}, {Category: "fuel", Amount: d("105")}}},
			points:   "21"}, // 10.5 + 10.5; per line it would be 10 + 10
		{name: "a purchase under the minimum earns nothing", contract: fuel,
			purchase: Purchase{Amount: d("99.99"), Currency: "RUB"}, points: "0", below: true},
		{name: "a purchase of exactly the minimum earns", contract: fuel,
			purchase: Purchase{Amount: d("100.00"), Currency: "RUB"}, points: "10"},
		{name: "the minimum is on the total of the lines", contract: fuel,
			purchase: Purchase{Currency: "RUB", Lines: []Line{{Category: "shop", Amount: d("60")}, {Category: "fuel", Amount: d("50")}}},
			points:   "23"}, // 18 + 5
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tier := "1"
			if tc.tier != "" {
				tier = tc.tier
			}
			when := tc.when
			if when.IsZero() {
				when = usual
			}
			price, err := PriceEarn(rub(), tc.contract, tc.purchase, d(tier), when)
			if err != nil {
				t.Fatal(err)
			}
			assertDecimal(t, "points", price.Points, tc.points)
			if price.BelowMinPurchase != tc.below {
				t.Errorf("below_min_purchase = %v, want %v", price.BelowMinPurchase, tc.below)
			}
			again, err := price.Recompute()
			if err != nil {
				t.Fatal(err)
			}
			assertDecimal(t, "recomputed points", again, tc.points)
			if !price.ContractEffectiveFrom.Equal(tc.contract.EffectiveFrom) {
				t.Errorf("contract_effective_from = %s", price.ContractEffectiveFrom)
			}
		})
	}
}

func TestPriceEarnRecordsItsInputs(t *testing.T) {
	t.Parallel()
	k := fuelContract(t)
	k.FeePerPoint = d("0.05")
	when := at(t, "2025-06-03T22:30:00Z") // 01:30 on June 4 in Moscow
	price, err := PriceEarn(rub(), k, Purchase{Currency: "RUB", PaymentMethod: "own_card",
		Lines: []Line{{Category: "coffee", Amount: d("300.00")}, {Category: "shop", Amount: d("100.50")}}}, d("1.25"), when)
	if err != nil {
		t.Fatal(err)
	}
	// coffee: 300 × 0.1 × (1.25 × 1 × 2 × 2) = 150; shop: 100.50 × 0.1 × (1.25 × 3 × 2 × 1) = 75.375
	assertDecimal(t, "points", price.Points, "225")
	assertDecimal(t, "unrounded", price.UnroundedPoints, "225.375")
	assertDecimal(t, "amount", price.Amount, "400.50")
	assertDecimal(t, "fee per point", price.FeePerPoint, "0.05")
	if len(price.Lines) != 2 {
		t.Fatalf("lines = %+v", price.Lines)
	}
	coffee, shop := price.Lines[0], price.Lines[1]
	assertDecimal(t, "coffee multiplier", coffee.Multiplier, "5")
	assertDecimal(t, "coffee promotion", coffee.PromotionMultiplier, "2")
	assertDecimal(t, "coffee points", coffee.Points, "150")
	if coffee.Promotion == nil || coffee.Promotion.Category != "coffee" {
		t.Errorf("coffee promotion = %+v", coffee.Promotion)
	}
	assertDecimal(t, "shop multiplier", shop.Multiplier, "7.5")
	assertDecimal(t, "shop category", shop.CategoryMultiplier, "3")
	assertDecimal(t, "shop points", shop.Points, "75.375")
	if shop.Promotion != nil {
		t.Errorf("shop promotion = %+v", shop.Promotion)
	}
	assertDecimal(t, "payment method multiplier", price.PaymentMethodMultiplier, "2")
	if price.Rounding != RoundDown || price.PointsScale != 0 || price.PointValue != nil {
		t.Errorf("rounding %q, scale %d, point value %v", price.Rounding, price.PointsScale, price.PointValue)
	}
	want := at(t, "2026-06-04T21:00:00Z") // the end of June 4, 2026 in Moscow
	if price.ExpiresAt == nil || !price.ExpiresAt.Equal(want) {
		t.Errorf("expires_at = %v, want %s", price.ExpiresAt, want)
	}
}

func TestPriceEarnPercentBackRoundsExactly(t *testing.T) {
	t.Parallel()
	c := rub()
	c.PointValue = d("0.07") // 3% of 7 RUB is 0.21 RUB, 3 points exactly: no 2.99999...
	k := fuelContract(t)
	k.Earn = EarnRate{PercentBack: dp("3")}
	k.MinPurchase = decimal.Zero
	price, err := PriceEarn(c, k, Purchase{Amount: d("7"), Currency: "RUB"}, d("1"), at(t, "2025-05-20T12:00:00Z"))
	if err != nil {
		t.Fatal(err)
	}
	assertDecimal(t, "points", price.Points, "3")
	if price.PointValue == nil || !price.PointValue.Equal(d("0.07")) {
		t.Errorf("point_value = %v", price.PointValue)
	}
	c.PointsScale = 2
	price, err = PriceEarn(c, k, Purchase{Amount: d("10"), Currency: "RUB"}, d("1"), at(t, "2025-05-20T12:00:00Z"))
	if err != nil {
		t.Fatal(err)
	}
	assertDecimal(t, "points at scale 2", price.Points, "4.28") // 0.3 ÷ 0.07 = 4.2857...
}

func TestPriceEarnRefuses(t *testing.T) {
	t.Parallel()
	k := fuelContract(t)
	when := at(t, "2025-05-20T12:00:00Z")
	bad := k
	bad.Rounding = "up"
	cases := []struct {
		name     string
		contract Contract
		purchase Purchase
		tier     string
		when     time.Time
		code     ledger.Code
	}{
		{"another currency", k, Purchase{Amount: d("100"), Currency: "USD"}, "1", when, CodeCurrencyMismatch},
		{"no currency", k, Purchase{Amount: d("100")}, "1", when, ledger.CodeInvalid},
		{"more decimals than the currency has", k, Purchase{Amount: d("100.001"), Currency: "RUB"}, "1", when, ledger.CodeInvalidScale},
		{"a zero amount", k, Purchase{Amount: d("0"), Currency: "RUB"}, "1", when, ledger.CodeInvalidAmount},
		{"a negative amount", k, Purchase{Amount: d("-5"), Currency: "RUB"}, "1", when, ledger.CodeInvalidAmount},
		{"an absurd amount", k, Purchase{Amount: d("1e15"), Currency: "RUB"}, "1", when, ledger.CodeInvalidAmount},
		{"a negative line", k, Purchase{Currency: "RUB", Lines: []Line{{Amount: d("10")}, {Amount: d("-5")}}}, "1", when, ledger.CodeInvalidAmount},
		{"lines and a category", k, Purchase{Currency: "RUB", Category: "fuel", Lines: []Line{{Amount: d("10")}}}, "1", when, ledger.CodeInvalid},
		{"an amount that is not the lines' sum", k, Purchase{Amount: d("11"), Currency: "RUB", Lines: []Line{{Amount: d("10")}}}, "1", when, ledger.CodeInvalid},
		{"a tier multiplier of 0", k, Purchase{Amount: d("100"), Currency: "RUB"}, "0", when, ledger.CodeInvalid},
		{"a contract not yet in force", k, Purchase{Amount: d("100"), Currency: "RUB"}, "1", at(t, "2024-12-31T20:59:59Z"), CodeNoContract},
		{"an invalid contract", bad, Purchase{Amount: d("100"), Currency: "RUB"}, "1", when, ledger.CodeInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := PriceEarn(rub(), tc.contract, tc.purchase, d(tc.tier), tc.when)
			if got := ledger.ErrorCode(err); got != tc.code {
				t.Fatalf("code %q (%v), want %q", got, err, tc.code)
			}
		})
	}
}

func TestPriceEarnWithLinesAndTheirSum(t *testing.T) {
	t.Parallel()
	price, err := PriceEarn(rub(), fuelContract(t), Purchase{Amount: d("150"), Currency: "RUB",
		Lines: []Line{{Category: "fuel", Amount: d("100")}, {Category: "shop", Amount: d("50")}}}, d("1"), at(t, "2025-05-20T12:00:00Z"))
	if err != nil {
		t.Fatal(err)
	}
	assertDecimal(t, "points", price.Points, "25")
}

func TestLotExpiry(t *testing.T) {
	t.Parallel()
	k := fuelContract(t)
	k.ExpiryDays = nil
	if exp, err := LotExpiry(rub(), k, at(t, "2025-05-20T12:00:00Z")); err != nil || exp != nil {
		t.Fatalf("never: %v, %v", exp, err)
	}
	cases := []struct {
		zone string
		days int
		when string
		want string
	}{
		{"UTC", 1, "2025-05-20T23:59:59Z", "2025-05-22T00:00:00Z"},
		{"Europe/Moscow", 30, "2025-05-20T21:30:00Z", "2025-06-20T21:00:00Z"}, // May 21 in Moscow, +30: the end of June 20
		{"America/New_York", 1, "2025-03-08T12:00:00-05:00", "2025-03-10T04:00:00Z"},
		{"America/Santiago", 1, "2024-09-06T12:00:00-04:00", "2024-09-08T04:00:00Z"}, // Sept 8 starts at 01:00 -03
		{"America/Havana", 1, "2024-11-01T12:00:00-04:00", "2024-11-03T04:00:00Z"},   // Nov 3 has two midnights
	}
	for _, tc := range cases {
		c := rub()
		c.TimeZone = tc.zone
		k.ExpiryDays = ip(tc.days)
		exp, err := LotExpiry(c, k, at(t, tc.when))
		if err != nil {
			t.Fatal(err)
		}
		if exp == nil || !exp.Equal(at(t, tc.want)) {
			t.Errorf("%s +%d days from %s: %v, want %s", tc.zone, tc.days, tc.when, exp, tc.want)
		}
	}
}

func TestStartOfDayAcrossDaylightSaving(t *testing.T) {
	t.Parallel()
	for _, zone := range []string{"America/Havana", "America/Santiago", "Asia/Beirut", "America/Asuncion",
		"Africa/Cairo", "Asia/Tehran", "America/Sao_Paulo", "Europe/London", "Australia/Lord_Howe", "Pacific/Apia"} {
		loc, err := time.LoadLocation(zone)
		if err != nil {
			t.Fatal(err)
		}
		for day := 0; day < 366*12; day++ {
			s := startOfDay(2014, time.January, 1+day, loc)
			want := time.Date(2014, time.January, 1+day, 0, 0, 0, 0, time.UTC)
			y, m, dd := s.In(loc).Date()
			py, pm, pd := s.Add(-time.Nanosecond).In(loc).Date()
			if y != want.Year() || m != want.Month() || dd != want.Day() || (py == y && pm == m && pd == dd) {
				t.Fatalf("%s: start of %s is %s", zone, want.Format(time.DateOnly), s.In(loc))
			}
		}
	}
}
