package partners

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/coalitionledger/coalition/ledger"
	"github.com/shopspring/decimal"
)

// displayDecimals is how many decimals a price shows of points before rounding; the
// rounding itself is exact.
const displayDecimals = 12

// Purchase is what an earn prices: an amount with an optional category, or lines with a
// category each, paid in one currency with an optional payment method.
type Purchase struct {
	Amount        decimal.Decimal `json:"amount"` // with lines: empty, or their sum
	Currency      string          `json:"currency"`
	Category      string          `json:"category,omitempty"` // without lines only
	PaymentMethod string          `json:"payment_method,omitempty"`
	Lines         []Line          `json:"lines,omitempty"`
}

// Line is one part of a basket: its category and amount.
type Line struct {
	Category string          `json:"category"`
	Amount   decimal.Decimal `json:"amount"`
}

// Price is the priced earn with every input, so that anyone can recompute it:
//
//	points = round(Σ line.amount × line.multiplier × rate, points_scale, rounding)
//	line.multiplier = tier_multiplier × category_multiplier × payment_method_multiplier × promotion_multiplier
//	rate = earn.points_per_unit, or earn.percent_back ÷ 100 ÷ point_value
//
// and points are 0 when the purchase amount is below min_purchase. Recompute does it.
type Price struct {
	Points                  decimal.Decimal  `json:"points"`
	ContractVersion         int              `json:"contract_version,omitempty"` // the version used
	ContractEffectiveFrom   time.Time        `json:"contract_effective_from"`
	BusinessTime            time.Time        `json:"business_time"`
	Amount                  decimal.Decimal  `json:"amount"` // the purchase total
	Currency                string           `json:"currency"`
	Earn                    EarnRate         `json:"earn"`
	PointValue              *decimal.Decimal `json:"point_value,omitempty"` // with percent_back only
	TierMultiplier          decimal.Decimal  `json:"tier_multiplier"`
	PaymentMethod           string           `json:"payment_method,omitempty"`
	PaymentMethodMultiplier decimal.Decimal  `json:"payment_method_multiplier"`
	Lines                   []PricedLine     `json:"lines"`
	UnroundedPoints         decimal.Decimal  `json:"unrounded_points"` // truncated to 12 decimals, for reading
	Rounding                Rounding         `json:"rounding"`
	PointsScale             int32            `json:"points_scale"`
	MinPurchase             decimal.Decimal  `json:"min_purchase"`
	BelowMinPurchase        bool             `json:"below_min_purchase"`
	ExpiryDays              *int             `json:"expiry_days"`
	TimeZone                string           `json:"time_zone"`
	ExpiresAt               *time.Time       `json:"expires_at"`    // the lot's; nil: never
	FeePerPoint             decimal.Decimal  `json:"fee_per_point"` // what settlement charges on these points
}

// PricedLine is one line of a priced earn and the multipliers applied to it.
type PricedLine struct {
	Category            string          `json:"category,omitempty"`
	Amount              decimal.Decimal `json:"amount"`
	CategoryMultiplier  decimal.Decimal `json:"category_multiplier"`
	PromotionMultiplier decimal.Decimal `json:"promotion_multiplier"`
	Promotion           *Promotion      `json:"promotion,omitempty"` // the largest in force, if any
	Multiplier          decimal.Decimal `json:"multiplier"`          // tier × category × payment method × promotion
	Points              decimal.Decimal `json:"points"`              // before rounding, truncated to 12 decimals
}

// PriceEarn prices a purchase under the contract version in force at businessTime for a
// member whose tier gives tierMultiplier (1 for no tier). Multipliers multiply per line;
// the points are rounded once over all lines; a purchase below min_purchase earns 0
// points (not an error). The price also carries the lot's expiry.
func PriceEarn(c Coalition, k Contract, p Purchase, tierMultiplier decimal.Decimal, businessTime time.Time) (Price, error) {
	moneyScale, err := c.MoneyScale()
	if err != nil {
		return Price{}, err
	}
	if c.PointsScale < 0 || c.PointsScale > 6 {
		return Price{}, invalid("points_scale", "the coalition's points scale %d is outside 0..6", c.PointsScale)
	}
	if businessTime.IsZero() {
		return Price{}, invalid("business_time", "an earn needs its business time")
	}
	if k.EffectiveFrom.After(businessTime) {
		return Price{}, ledger.Errorf(CodeNoContract, "the contract version given takes effect at %s, after the business time %s",
			k.EffectiveFrom.UTC().Format(time.RFC3339Nano), businessTime.UTC().Format(time.RFC3339Nano))
	}
	if err := k.Validate(c); err != nil {
		return Price{}, fmt.Errorf("contract in force from %s: %w", k.EffectiveFrom.UTC().Format(time.RFC3339Nano), err)
	}
	if err := positiveMultiplier.check("tier_multiplier", tierMultiplier); err != nil {
		return Price{}, err
	}
	lines, total, err := p.lines(c.Currency, moneyScale)
	if err != nil {
		return Price{}, err
	}
	if len(p.PaymentMethod) > maxKeyLength {
		return Price{}, invalid("payment_method", "a payment method is at most %d bytes", maxKeyLength)
	}

	price := Price{
		ContractVersion:         k.version,
		ContractEffectiveFrom:   k.EffectiveFrom.UTC(),
		BusinessTime:            businessTime.UTC(),
		Amount:                  total,
		Currency:                c.Currency,
		Earn:                    k.Earn,
		TierMultiplier:          tierMultiplier,
		PaymentMethod:           p.PaymentMethod,
		PaymentMethodMultiplier: multiplierOf(k.PaymentMethodMultipliers, p.PaymentMethod),
		Rounding:                k.EffectiveRounding(),
		PointsScale:             c.PointsScale,
		MinPurchase:             k.MinPurchase,
		BelowMinPurchase:        total.LessThan(k.MinPurchase),
		ExpiryDays:              k.ExpiryDays,
		TimeZone:                c.TimeZone,
		FeePerPoint:             k.FeePerPoint,
	}
	if k.Earn.PercentBack != nil {
		pv := c.PointValue
		price.PointValue = &pv
	}
	for _, l := range lines {
		promo := largestPromotion(k.Promotions, l.Category, businessTime)
		pl := PricedLine{
			Category:            l.Category,
			Amount:              l.Amount,
			CategoryMultiplier:  multiplierOf(k.CategoryMultipliers, l.Category),
			PromotionMultiplier: one,
			Promotion:           promo,
		}
		if promo != nil {
			pl.PromotionMultiplier = promo.Multiplier
		}
		price.Lines = append(price.Lines, pl)
	}
	if err := price.compute(); err != nil {
		return Price{}, err
	}
	if price.ExpiresAt, err = LotExpiry(c, k, businessTime); err != nil {
		return Price{}, err
	}
	return price, nil
}

// Recompute derives the points again from the inputs the price records, the way an
// auditor would, and returns them; it fails if the price is not self-consistent.
func (p Price) Recompute() (decimal.Decimal, error) {
	q := p
	q.Lines = append([]PricedLine(nil), p.Lines...)
	if err := q.compute(); err != nil {
		return decimal.Zero, err
	}
	for i := range q.Lines {
		if !q.Lines[i].Multiplier.Equal(p.Lines[i].Multiplier) {
			return decimal.Zero, fmt.Errorf("line %d: multiplier %s recorded, %s recomputed", i, p.Lines[i].Multiplier, q.Lines[i].Multiplier)
		}
	}
	return q.Points, nil
}

// compute fills in the lines' multipliers and points and the price's points from the
// other fields.
func (p *Price) compute() error {
	num, den, err := p.rate()
	if err != nil {
		return err
	}
	weighted := decimal.Zero
	for i := range p.Lines {
		l := &p.Lines[i]
		l.Multiplier = p.TierMultiplier.Mul(l.CategoryMultiplier).Mul(p.PaymentMethodMultiplier).Mul(l.PromotionMultiplier)
		w := l.Amount.Mul(l.Multiplier)
		l.Points, _ = w.Mul(num).QuoRem(den, displayDecimals)
		weighted = weighted.Add(w)
	}
	exact := weighted.Mul(num)
	p.UnroundedPoints, _ = exact.QuoRem(den, displayDecimals)
	switch {
	case p.BelowMinPurchase:
		p.Points = decimal.Zero
	case p.Rounding == RoundHalfUp:
		p.Points = divHalfUp(exact, den, p.PointsScale)
	case p.Rounding == RoundDown || p.Rounding == "":
		p.Points, _ = exact.QuoRem(den, p.PointsScale)
	default:
		return invalid("rounding", "%q is not a rounding: use \"down\" or \"half_up\"", p.Rounding)
	}
	if p.Points.GreaterThan(ledger.MaxAmount) {
		return ledger.Errorf(ledger.CodeInvalidAmount, "the purchase would earn %s points, above the limit of %s: check the amount and the contract's rates", p.Points, ledger.MaxAmount)
	}
	return nil
}

// rate returns the points per unit of currency as the fraction num ÷ den, so that
// percent back with any point value rounds exactly.
func (p *Price) rate() (num, den decimal.Decimal, err error) {
	switch {
	case p.Earn.PointsPerUnit != nil && p.Earn.PercentBack == nil:
		return *p.Earn.PointsPerUnit, one, nil
	case p.Earn.PercentBack != nil && p.Earn.PointsPerUnit == nil:
		if p.PointValue == nil || !p.PointValue.IsPositive() {
			return num, den, invalid("point_value", "percent back needs a positive point value")
		}
		return *p.Earn.PercentBack, hundred.Mul(*p.PointValue), nil
	}
	return num, den, invalid("earn", "give either points_per_unit or percent_back")
}

// divHalfUp returns n ÷ d (both non-negative, d > 0) rounded half up to scale decimals.
func divHalfUp(n, d decimal.Decimal, scale int32) decimal.Decimal {
	q, r := n.QuoRem(d, scale)
	// n ÷ d = q + r ÷ d, and r ÷ d < 10^-scale; round up when r ÷ d ≥ ½·10^-scale.
	if r.Shift(scale).Mul(decimal.NewFromInt(2)).GreaterThanOrEqual(d) {
		q = q.Add(decimal.New(1, -scale))
	}
	return q
}

// divCeil returns n ÷ d (both positive) rounded up to a whole number.
func divCeil(n, d decimal.Decimal) decimal.Decimal {
	q, r := n.QuoRem(d, 0)
	if r.IsPositive() {
		q = q.Add(one)
	}
	return q
}

// CheckCurrency refuses a purchase in another currency than the coalition's: as
// unknown_unit when it is no ISO 4217 currency at all (a typo to fix, not a currency the
// coalition does not settle in).
func CheckCurrency(purchase, coalition string) error {
	if purchase != coalition {
		if err := knownCurrency(purchase); err != nil {
			return err
		}
		return ledger.Errorf(CodeCurrencyMismatch, "the purchase is in %s but the coalition's currency is %s", purchase, coalition).With("field", "currency")
	}
	return nil
}

// knownCurrency refuses, as unknown_unit on the field currency, a code that is no ISO 4217
// currency: a typo to fix, not a currency the coalition does not settle in.
func knownCurrency(code string) error {
	_, err := ledger.CurrencyScale(code)
	var lerr *ledger.Error
	if errors.As(err, &lerr) {
		return lerr.With("field", "currency")
	}
	return err
}

// lines checks the purchase and returns its lines (one, without basket lines) and total.
func (p Purchase) lines(currency string, scale int32) ([]Line, decimal.Decimal, error) {
	if p.Currency == "" {
		return nil, decimal.Zero, invalid("currency", "give the purchase's currency (%s)", currency)
	}
	if err := CheckCurrency(p.Currency, currency); err != nil {
		return nil, decimal.Zero, err
	}
	if len(p.Category) > maxKeyLength {
		return nil, decimal.Zero, invalid("category", "a category is at most %d bytes", maxKeyLength)
	}
	if len(p.Lines) == 0 {
		if err := ledger.CheckAmount(p.Amount, scale, p.Currency); err != nil {
			return nil, decimal.Zero, err.With("field", "amount")
		}
		return []Line{{Category: p.Category, Amount: p.Amount}}, p.Amount, nil
	}
	if len(p.Lines) > MaxLines {
		return nil, decimal.Zero, invalid("lines", "%d lines is more than the limit of %d", len(p.Lines), MaxLines)
	}
	if p.Category != "" {
		return nil, decimal.Zero, invalid("category", "with lines, give the category of each line instead")
	}
	total := decimal.Zero
	for i, l := range p.Lines {
		field := "lines[" + strconv.Itoa(i) + "]"
		if err := ledger.CheckAmount(l.Amount, scale, p.Currency); err != nil {
			return nil, decimal.Zero, err.With("field", field+".amount")
		}
		if len(l.Category) > maxKeyLength {
			return nil, decimal.Zero, invalid(field+".category", "a category is at most %d bytes", maxKeyLength)
		}
		total = total.Add(l.Amount)
	}
	if total.GreaterThan(ledger.MaxAmount) {
		return nil, decimal.Zero, ledger.Errorf(ledger.CodeInvalidAmount, "the lines add up to %s %s, above the limit of %s", total, p.Currency, ledger.MaxAmount).With("field", "lines")
	}
	if !p.Amount.IsZero() && !p.Amount.Equal(total) {
		return nil, decimal.Zero, invalid("amount", "%s is not the sum of the lines, %s: give the lines' sum or leave amount out", p.Amount, total)
	}
	return p.Lines, total, nil
}

// multiplierOf returns the multiplier of name in m, 1 when it has none.
func multiplierOf(m map[string]decimal.Decimal, name string) decimal.Decimal {
	if x, ok := m[name]; ok && name != "" {
		return x
	}
	return one
}

// largestPromotion returns the promotion with the largest multiplier in force at t for a
// line of the category (the earliest listed of equals), or nil.
func largestPromotion(promotions []Promotion, category string, t time.Time) *Promotion {
	var best *Promotion
	for i := range promotions {
		p := promotions[i]
		if p.InForce(t) && p.AppliesTo(category) && (best == nil || p.Multiplier.GreaterThan(best.Multiplier)) {
			best = &p
		}
	}
	return best
}

// LotExpiry returns when the points of an earn at businessTime expire under the
// contract: the end of the business day (in the coalition's time zone) of businessTime +
// expiry_days, that is the first instant of the day after; nil when they never expire.
func LotExpiry(c Coalition, k Contract, businessTime time.Time) (*time.Time, error) {
	if k.ExpiryDays == nil {
		return nil, nil
	}
	loc, err := c.Location()
	if err != nil {
		return nil, err
	}
	y, m, d := businessTime.In(loc).Date()
	end := startOfDay(y, m, d+*k.ExpiryDays+1, loc).UTC()
	return &end, nil
}

// startOfDay returns the first instant of the local date (normalised, so d may overflow
// the month), also where a daylight-saving change skips midnight (time.Date then may
// answer 23:00 of the day before) or repeats it.
func startOfDay(y int, m time.Month, d int, loc *time.Location) time.Time {
	want := time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
	onDate := func(t time.Time) bool {
		ly, lm, ld := t.In(loc).Date()
		return ly == want.Year() && lm == want.Month() && ld == want.Day()
	}
	t := time.Date(y, m, d, 0, 0, 0, 0, loc)
	if !onDate(t) {
		// Midnight is in a gap: the day starts when the gap ends.
		if _, end := t.ZoneBounds(); !end.IsZero() && onDate(end) {
			t = end.In(loc)
		}
	}
	if start, _ := t.ZoneBounds(); !start.IsZero() && onDate(start.Add(-time.Nanosecond)) {
		// Midnight happened twice: the day starts at the first, in the earlier offset.
		_, before := start.Add(-time.Nanosecond).Zone()
		_, after := t.Zone()
		if first := t.Add(time.Duration(after-before) * time.Second); first.Before(t) && onDate(first) {
			t = first
		}
	}
	return t
}
