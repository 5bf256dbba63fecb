package partners

import (
	"testing"
	"time"

	"github.com/coalitionledger/coalition/ledger"
	"github.com/shopspring/decimal"
	"pgregory.net/rapid"
)

// decimalIn draws a decimal n × 10^-decimals with n in [lo, hi].
func decimalIn(t *rapid.T, label string, lo, hi int64, decimals int32) decimal.Decimal {
	return decimal.New(rapid.Int64Range(lo, hi).Draw(t, label), -decimals)
}

// redemptionTerms draws a coalition and a contract with arbitrary redemption terms.
func redemptionTerms(t *rapid.T) (Coalition, Contract) {
	c := rub()
	c.Currency = rapid.SampledFrom([]string{"RUB", "JPY", "KWD"}).Draw(t, "currency") // 2, 0 and 3 decimals
	c.PointsScale = int32(rapid.IntRange(0, 2).Draw(t, "points scale"))
	rate := decimalIn(t, "rate", 100, 5_000_000, 6) // 0.0001 .. 5 per point
	step := decimalIn(t, "step", 1, 500, c.PointsScale)
	k := Contract{
		EffectiveFrom: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
		Earn:          EarnRate{PointsPerUnit: dp("1")},
		RedeemRate:    &rate,
		RedeemStep:    &step,
	}
	return c, k
}

// Redeeming by value gives the fewest whole steps whose value is at least the value:
// never less, and one step fewer would be worth less.
func TestRedeemByValueProperty(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		c, k := redemptionTerms(t)
		scale, _ := c.MoneyScale()
		value := decimalIn(t, "value", 1, 10_000_000, scale)
		p, err := PriceRedemption(c, k, RedeemValue(value), nil)
		if err != nil {
			t.Fatal(err)
		}
		tm := terms{rate: *k.RedeemRate, step: *k.RedeemStep, scale: scale}
		if !p.Points.Mod(tm.step).IsZero() || !p.Points.IsPositive() {
			t.Fatalf("%s points is not a positive number of steps of %s", p.Points, tm.step)
		}
		if !p.Value.Amount.Equal(ledger.RoundHalfUp(p.Points.Mul(tm.rate), scale)) {
			t.Fatalf("value %s is not %s × %s rounded", p.Value.Amount, p.Points, tm.rate)
		}
		if p.Value.Amount.LessThan(value) {
			t.Fatalf("%s points are worth %s, less than the %s asked", p.Points, p.Value.Amount, value)
		}
		if fewer := p.Points.Sub(tm.step); fewer.IsPositive() && !tm.worth(fewer).LessThan(value) {
			t.Fatalf("%s points would do: worth %s ≥ %s", fewer, tm.worth(fewer), value)
		}
	})
}

// The max_share refusal names the largest points allowed: those pass, one step more does not.
func TestMaxShareProperty(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		c, k := redemptionTerms(t)
		scale, _ := c.MoneyScale()
		share := decimalIn(t, "share", 1, 100, 2)
		k.MaxShare = &share
		purchase := decimalIn(t, "purchase", 1, 100_000_000, scale)
		points := decimalIn(t, "steps", 1, 100_000, 0).Mul(*k.RedeemStep)
		p, err := PriceRedemption(c, k, RedeemPoints(points), &purchase)
		limit := purchase.Mul(share)
		if err == nil {
			if p.Value.Amount.GreaterThan(limit) {
				t.Fatalf("value %s exceeds %s of %s", p.Value.Amount, share, purchase)
			}
			return
		}
		e := asError(t, err)
		if e.Code != CodeMaxShare {
			t.Fatal(err)
		}
		most := d(e.Details["max_points"].(string))
		if most.IsPositive() {
			if q, err := PriceRedemption(c, k, RedeemPoints(most), &purchase); err != nil || q.Value.Amount.GreaterThan(limit) {
				t.Fatalf("max_points %s refused: %v", most, err)
			}
		}
		if _, err := PriceRedemption(c, k, RedeemPoints(most.Add(*k.RedeemStep)), &purchase); ledger.ErrorCode(err) != CodeMaxShare {
			t.Fatalf("one step above max_points %s: %v", most, err)
		}
	})
}

// An earn's points are its unrounded points rounded once, and recompute from the price.
func TestPriceEarnProperty(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		c := rub()
		c.PointsScale = int32(rapid.IntRange(0, 2).Draw(t, "points scale"))
		c.PointValue = decimalIn(t, "point value", 1, 10_000, 3)
		k := Contract{
			EffectiveFrom:            time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
			CategoryMultipliers:      map[string]decimal.Decimal{"a": decimalIn(t, "a", 0, 500, 2), "b": decimalIn(t, "b", 0, 500, 2)},
			PaymentMethodMultipliers: map[string]decimal.Decimal{"card": decimalIn(t, "card", 0, 500, 2)},
			Promotions: []Promotion{{From: time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC), To: time.Date(2025, 7, 1, 0, 0, 0, 0, time.UTC),
				Multiplier: decimalIn(t, "promotion", 1, 500, 2), Category: rapid.SampledFrom([]string{"", "a", "c"}).Draw(t, "promoted")}},
		}
		if rapid.Bool().Draw(t, "percent back") {
			k.Earn.PercentBack = ptr(decimalIn(t, "percent", 1, 10_000, 2))
		} else {
			k.Earn.PointsPerUnit = ptr(decimalIn(t, "points per unit", 1, 100_000, 4))
		}
		var lines []Line
		for range rapid.IntRange(1, 5).Draw(t, "lines") {
			lines = append(lines, Line{Category: rapid.SampledFrom([]string{"a", "b", "c"}).Draw(t, "category"), Amount: decimalIn(t, "amount", 1, 10_000_000, 2)})
		}
		purchase := Purchase{Currency: "RUB", Lines: lines, PaymentMethod: rapid.SampledFrom([]string{"", "card"}).Draw(t, "payment")}
		tier := decimalIn(t, "tier", 100, 300, 2)
		when := time.Date(2025, time.Month(rapid.IntRange(5, 7).Draw(t, "month")), 15, 0, 0, 0, 0, time.UTC)

		down, err := PriceEarn(c, k, purchase, tier, when)
		if err != nil {
			t.Fatal(err)
		}
		k.Rounding = RoundHalfUp
		up, err := PriceEarn(c, k, purchase, tier, when)
		if err != nil {
			t.Fatal(err)
		}
		unit := decimal.New(1, -c.PointsScale)
		if !down.Points.Equal(down.Points.Truncate(c.PointsScale)) || down.UnroundedPoints.Sub(down.Points).GreaterThanOrEqual(unit) || down.UnroundedPoints.LessThan(down.Points) {
			t.Fatalf("down: %s from %s", down.Points, down.UnroundedPoints)
		}
		if diff := up.Points.Sub(down.Points); !diff.IsZero() && !diff.Equal(unit) {
			t.Fatalf("half up %s, down %s", up.Points, down.Points)
		}
		sum := decimal.Zero
		for _, l := range down.Lines {
			sum = sum.Add(l.Points)
		}
		if sum.Sub(down.UnroundedPoints).Abs().GreaterThan(decimal.New(int64(len(lines)), -displayDecimals)) {
			t.Fatalf("lines' points %s do not add up to %s", sum, down.UnroundedPoints)
		}
		for _, p := range []Price{down, up} {
			again, err := p.Recompute()
			if err != nil || !again.Equal(p.Points) {
				t.Fatalf("recomputed %s, %v; priced %s", again, err, p.Points)
			}
		}
	})
}

// ptr returns a pointer to a decimal.
func ptr(x decimal.Decimal) *decimal.Decimal { return &x }
