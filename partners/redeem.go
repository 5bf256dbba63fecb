package partners

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/coalitionledger/coalition/ledger"
	"github.com/shopspring/decimal"
)

// Redeem is what a redemption asks for: a number of points, or the money value wanted
// (in the coalition's currency). Exactly one of the two is positive.
type Redeem struct {
	Points decimal.Decimal
	Value  decimal.Decimal
}

// RedeemPoints asks to redeem that many points.
func RedeemPoints(points decimal.Decimal) Redeem { return Redeem{Points: points} }

// RedeemValue asks for the fewest points worth at least value.
func RedeemValue(value decimal.Decimal) Redeem { return Redeem{Value: value} }

// Money is an amount with its currency.
type Money struct {
	Amount   decimal.Decimal `json:"amount"`
	Currency string          `json:"currency"`
}

// MarshalJSON writes the amount at its currency's minor unit, as DESIGN's contract shows
// money: "39990.00", never "39990".
func (m Money) MarshalJSON() ([]byte, error) {
	amount := m.Amount.String()
	if scale, err := ledger.CurrencyScale(m.Currency); err == nil {
		amount = m.Amount.StringFixed(scale)
	}
	return json.Marshal(struct {
		Amount   string `json:"amount"`
		Currency string `json:"currency"`
	}{amount, m.Currency})
}

// RedemptionPrice is a priced redemption and the terms that priced it: value = points ×
// redeem_rate, rounded half up to the currency's minor unit.
type RedemptionPrice struct {
	Points                decimal.Decimal  `json:"points"`
	Value                 Money            `json:"value"`
	ContractVersion       int              `json:"contract_version,omitempty"`
	ContractEffectiveFrom time.Time        `json:"contract_effective_from"`
	RedeemRate            decimal.Decimal  `json:"redeem_rate"`
	RequestedValue        *decimal.Decimal `json:"requested_value,omitempty"` // when redeemed by value
	PurchaseAmount        *decimal.Decimal `json:"purchase_amount,omitempty"`
	MaxShare              decimal.Decimal  `json:"max_share"`
	MinRedeem             decimal.Decimal  `json:"min_redeem"`
	RedeemStep            decimal.Decimal  `json:"redeem_step"`
}

// PriceRedemption prices a redemption at a partner under its contract version (the one
// in force at the business time): by points, or by value (the fewest points, in whole
// redeem_step steps, whose value is at least the value asked). It enforces redeem_step,
// min_redeem and max_share; purchaseAmount (nil: not given) is required when max_share
// is below 1, and the max_share error's details say the largest points allowed. Whether
// the member has the points is the ledger's business.
func PriceRedemption(c Coalition, k Contract, want Redeem, purchaseAmount *decimal.Decimal) (RedemptionPrice, error) {
	moneyScale, err := c.MoneyScale()
	if err != nil {
		return RedemptionPrice{}, err
	}
	if err := k.Validate(c); err != nil {
		return RedemptionPrice{}, fmt.Errorf("contract in force from %s: %w", k.EffectiveFrom.UTC().Format(time.RFC3339Nano), err)
	}
	t := terms{
		rate:  k.EffectiveRedeemRate(c),
		step:  k.EffectiveRedeemStep(c),
		min:   k.MinRedeem,
		share: k.EffectiveMaxShare(),
		scale: moneyScale,
	}
	price := RedemptionPrice{
		ContractVersion:       k.version,
		ContractEffectiveFrom: k.EffectiveFrom.UTC(),
		RedeemRate:            t.rate,
		PurchaseAmount:        purchaseAmount,
		MaxShare:              t.share,
		MinRedeem:             t.min,
		RedeemStep:            t.step,
	}
	if purchaseAmount != nil {
		if err := ledger.CheckAmount(*purchaseAmount, moneyScale, c.Currency); err != nil {
			return RedemptionPrice{}, err.With("field", "purchase_amount")
		}
	}
	if t.share.IsZero() {
		return RedemptionPrice{}, ledger.Errorf(CodeMaxShare, "this partner's contract lets points pay no part of a purchase").
			With("max_share", t.share.String()).With("max_points", "0")
	}
	if purchaseAmount == nil && t.share.LessThan(one) {
		return RedemptionPrice{}, ledger.Errorf(CodePurchaseAmountRequired, "give purchase_amount: this partner's contract lets points pay at most %s of a purchase", percent(t.share)).
			With("field", "purchase_amount").With("max_share", t.share.String())
	}

	switch {
	case want.Points.IsZero() == want.Value.IsZero():
		return RedemptionPrice{}, invalid("points", "give either points or value, not both or neither")
	case !want.Points.IsZero():
		if err := ledger.CheckAmount(want.Points, c.PointsScale, ledger.Points); err != nil {
			return RedemptionPrice{}, err.With("field", "points")
		}
		// The minimum first: a step suggested below it would be refused in turn.
		if err := t.checkMin(want.Points, c.Currency); err != nil {
			return RedemptionPrice{}, err.With("field", "points")
		}
		if err := t.checkStep(want.Points); err != nil {
			return RedemptionPrice{}, err
		}
		price.Points = want.Points
	default:
		if err := ledger.CheckAmount(want.Value, moneyScale, c.Currency); err != nil {
			return RedemptionPrice{}, err.With("field", "value")
		}
		price.Points = t.pointsFor(want.Value)
		v := want.Value
		price.RequestedValue = &v
		if err := t.checkMin(price.Points, c.Currency); err != nil {
			return RedemptionPrice{}, err.With("field", "value")
		}
	}

	if price.Points.GreaterThan(ledger.MaxAmount) {
		return RedemptionPrice{}, ledger.Errorf(ledger.CodeInvalidAmount, "%s points is above the limit of %s", price.Points, ledger.MaxAmount)
	}
	price.Value = Money{Amount: t.worth(price.Points), Currency: c.Currency}

	if purchaseAmount != nil {
		limit := purchaseAmount.Mul(t.share).Truncate(moneyScale)
		if price.Value.Amount.GreaterThan(limit) {
			most := t.mostWorthAtMost(limit)
			err := ledger.Errorf(CodeMaxShare, "points may pay at most %s of this purchase, %s %s: redeem at most %s points (worth %s %s); these %s points are worth %s %s",
				percent(t.share), t.money(limit), c.Currency, most, t.money(t.worth(most)), c.Currency, price.Points, t.money(price.Value.Amount), c.Currency)
			return RedemptionPrice{}, err.With("max_points", most.String()).With("max_value", t.money(t.worth(most))).
				With("max_share", t.share.String()).With("purchase_amount", t.money(*purchaseAmount))
		}
	}
	return price, nil
}

// terms are the redemption settings of one contract version.
type terms struct {
	rate, step, min, share decimal.Decimal
	scale                  int32 // of money
}

// worth is the money value of points: points × rate, rounded half up to the minor unit.
// checkStep refuses points that are not a whole number of redeem steps.
func (t terms) checkStep(points decimal.Decimal) *ledger.Error {
	if points.Mod(t.step).IsZero() {
		return nil
	}
	below := points.Sub(points.Mod(t.step))
	above := below.Add(t.step)
	if !below.IsPositive() || below.LessThan(t.min) {
		// Only the step above is a redemption the contract takes.
		return ledger.Errorf(CodeRedeemStep, "redeem points in steps of %s: %s is not one; %s is", t.step, points, above).
			With("field", "points").With("redeem_step", t.step.String()).With("nearest_above", above.String())
	}
	return ledger.Errorf(CodeRedeemStep, "redeem points in steps of %s: %s is not one; %s or %s is", t.step, points, below, above).
		With("field", "points").With("redeem_step", t.step.String()).With("nearest_below", below.String()).With("nearest_above", above.String())
}

// checkMin refuses points below the contract's min_redeem.
func (t terms) checkMin(points decimal.Decimal, currency string) *ledger.Error {
	if !points.LessThan(t.min) {
		return nil
	}
	least := t.stepsAtLeast(t.min)
	return ledger.Errorf(CodeBelowMinRedeem, "a redemption here is at least %s points (worth %s %s); this one is %s points", least, t.money(t.worth(least)), currency, points).
		With("min_redeem", t.min.String()).With("min_points", least.String()).With("min_value", t.money(t.worth(least)))
}

// CheckCapture refuses a partial capture that the contract would refuse as a redemption:
// points that are not whole redeem steps or are below min_redeem. k is the version in
// force at the hold's business time, the time a capture is priced at.
func CheckCapture(c Coalition, k Contract, points decimal.Decimal) error {
	moneyScale, err := c.MoneyScale()
	if err != nil {
		return err
	}
	t := terms{rate: k.EffectiveRedeemRate(c), step: k.EffectiveRedeemStep(c), min: k.MinRedeem, scale: moneyScale}
	if err := t.checkMin(points, c.Currency); err != nil {
		return err
	}
	if err := t.checkStep(points); err != nil {
		return err
	}
	return nil
}

// money formats an amount at the currency's minor unit, for messages and details.
func (t terms) money(d decimal.Decimal) string { return d.StringFixed(t.scale) }

func (t terms) worth(points decimal.Decimal) decimal.Decimal {
	return ledger.RoundHalfUp(points.Mul(t.rate), t.scale)
}

// halfUnit is half the currency's minor unit.
func (t terms) halfUnit() decimal.Decimal { return decimal.New(5, -t.scale-1) }

// pointsFor returns the fewest points, in whole steps, worth at least value (a positive
// amount at the money scale). A value rounds half up to value exactly when the exact
// product is at least value − ½ minor unit, so that is the bound the points must reach.
func (t terms) pointsFor(value decimal.Decimal) decimal.Decimal {
	steps := divCeil(value.Sub(t.halfUnit()), t.step.Mul(t.rate))
	if !steps.IsPositive() {
		steps = one
	}
	return steps.Mul(t.step)
}

// stepsAtLeast returns the fewest points, in whole steps, not below points (at least one step).
func (t terms) stepsAtLeast(points decimal.Decimal) decimal.Decimal {
	steps := divCeil(points, t.step)
	if !steps.IsPositive() {
		steps = one
	}
	return steps.Mul(t.step)
}

// mostWorthAtMost returns the most points, in whole steps, worth at most limit (an
// amount at the money scale): the exact product must stay below limit + ½ minor unit.
func (t terms) mostWorthAtMost(limit decimal.Decimal) decimal.Decimal {
	steps := divCeil(limit.Add(t.halfUnit()), t.step.Mul(t.rate)).Sub(one)
	if steps.IsNegative() {
		steps = decimal.Zero
	}
	return steps.Mul(t.step)
}

// percent formats a share such as 0.2 as "20%".
func percent(share decimal.Decimal) string {
	return share.Mul(hundred).String() + "%"
}
