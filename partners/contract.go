package partners

import (
	"sort"
	"strconv"
	"time"

	"github.com/coalitionledger/coalition/ledger"
	"github.com/shopspring/decimal"
)

// Limits on the size of a contract, so that pricing stays cheap and a typing error in a
// script cannot store a megabyte of terms.
const (
	MaxMultipliers = 100   // entries in category_multipliers, and in payment_method_multipliers
	MaxPromotions  = 100   // promotions in one contract version
	MaxExpiryDays  = 36500 // expiry_days, at most a hundred years
	MaxLines       = 200   // lines in one purchase
)

// Rounding says how an earn's points are rounded to the coalition's points scale.
type Rounding string

// The roundings a contract may choose.
const (
	RoundDown   Rounding = "down"    // toward zero: the default
	RoundHalfUp Rounding = "half_up" // to the nearest, halves up
)

// EarnRate is how a contract turns money into points: exactly one of the two is set.
type EarnRate struct {
	// PointsPerUnit is points per unit of currency: "0.1" is one point per 10 RUB.
	PointsPerUnit *decimal.Decimal `json:"points_per_unit,omitempty"`
	// PercentBack is points worth that percentage of the purchase at the coalition's
	// point value: "3" is 3% back.
	PercentBack *decimal.Decimal `json:"percent_back,omitempty"`
}

// Promotion multiplies earns whose business time is in [From, To), on lines of Category
// only, or on every line when Category is empty.
type Promotion struct {
	From       time.Time       `json:"from"`
	To         time.Time       `json:"to"`
	Multiplier decimal.Decimal `json:"multiplier"`
	Category   string          `json:"category,omitempty"`
}

// InForce reports whether the promotion covers business time t: From ≤ t < To.
func (p Promotion) InForce(t time.Time) bool {
	return !t.Before(p.From) && t.Before(p.To)
}

// AppliesTo reports whether the promotion covers a line of the category.
func (p Promotion) AppliesTo(category string) bool {
	return p.Category == "" || p.Category == category
}

// Contract is one version of a partner's terms, in force from EffectiveFrom until the
// next version's. Optional settings are pointers (nil: the default); WithDefaults fills
// them in, so that a stored version says every rate it uses.
type Contract struct {
	// version is the number of the stored version these terms are (0: not one), which
	// pricing records beside effective_from.
	version int

	EffectiveFrom            time.Time                  `json:"effective_from"`
	Currency                 string                     `json:"currency"` // the coalition's
	Earn                     EarnRate                   `json:"earn"`
	CategoryMultipliers      map[string]decimal.Decimal `json:"category_multipliers"`       // by line category; absent: 1
	PaymentMethodMultipliers map[string]decimal.Decimal `json:"payment_method_multipliers"` // absent: 1
	Promotions               []Promotion                `json:"promotions"`
	Rounding                 Rounding                   `json:"rounding"`      // "" is down
	MinPurchase              decimal.Decimal            `json:"min_purchase"`  // a smaller purchase earns 0
	ExpiryDays               *int                       `json:"expiry_days"`   // nil: points never expire
	RedeemRate               *decimal.Decimal           `json:"redeem_rate"`   // money per point; nil: the point value
	MaxShare                 *decimal.Decimal           `json:"max_share"`     // of a purchase points may pay; nil: 1
	MinRedeem                decimal.Decimal            `json:"min_redeem"`    // points; 0: no minimum
	RedeemStep               *decimal.Decimal           `json:"redeem_step"`   // points; nil: one unit of the points scale
	FeePerPoint              decimal.Decimal            `json:"fee_per_point"` // money per point issued
}

// Validate checks the contract against the coalition's settings and says what to fix in
// an invalid_request (or currency_mismatch) error whose details name the field.
func (k Contract) Validate(c Coalition) error {
	moneyScale, err := c.MoneyScale()
	if err != nil {
		return err
	}
	if k.EffectiveFrom.IsZero() {
		return invalid("effective_from", "a contract version needs the time it takes effect")
	}
	if k.Currency != "" && k.Currency != c.Currency {
		if err := knownCurrency(k.Currency); err != nil {
			return err
		}
		return ledger.Errorf(CodeCurrencyMismatch, "currency: the contract is in %s but the coalition settles in %s; a contract's currency is the coalition's", k.Currency, c.Currency).With("field", "currency")
	}
	if err := k.Earn.validate(c); err != nil {
		return err
	}
	if err := validateMultipliers("category_multipliers", k.CategoryMultipliers); err != nil {
		return err
	}
	if err := validateMultipliers("payment_method_multipliers", k.PaymentMethodMultipliers); err != nil {
		return err
	}
	if len(k.Promotions) > MaxPromotions {
		return invalid("promotions", "%d promotions is more than the limit of %d", len(k.Promotions), MaxPromotions)
	}
	for i, p := range k.Promotions {
		field := "promotions[" + strconv.Itoa(i) + "]"
		if p.From.IsZero() || p.To.IsZero() {
			return invalid(field, "a promotion needs both from and to")
		}
		if !p.From.Before(p.To) {
			return invalid(field+".to", "the promotion ends (%s) before it starts (%s)", p.To.Format(time.RFC3339), p.From.Format(time.RFC3339))
		}
		if err := positiveMultiplier.check(field+".multiplier", p.Multiplier); err != nil {
			return err
		}
		if len(p.Category) > maxKeyLength {
			return invalid(field+".category", "a category is at most %d bytes", maxKeyLength)
		}
	}
	switch k.Rounding {
	case "", RoundDown, RoundHalfUp:
	default:
		return invalid("rounding", "%q is not a rounding: use \"down\" or \"half_up\"", k.Rounding)
	}
	if err := (bound{min: decimal.Zero, max: ledger.MaxAmount, decimals: moneyScale}).check("min_purchase", k.MinPurchase); err != nil {
		return err
	}
	if k.ExpiryDays != nil && (*k.ExpiryDays < 1 || *k.ExpiryDays > MaxExpiryDays) {
		return invalid("expiry_days", "%d is outside 1..%d (use null for points that never expire)", *k.ExpiryDays, MaxExpiryDays)
	}
	if k.RedeemRate != nil {
		if err := rateBound.check("redeem_rate", *k.RedeemRate); err != nil {
			return err
		}
	}
	if k.MaxShare != nil {
		if err := (bound{min: decimal.Zero, max: one, decimals: maxRateDecimals}).check("max_share", *k.MaxShare); err != nil {
			return err
		}
	}
	points := bound{min: decimal.Zero, max: ledger.MaxAmount, decimals: c.PointsScale}
	if err := points.check("min_redeem", k.MinRedeem); err != nil {
		return err
	}
	if k.RedeemStep != nil {
		points.minExclusive = true
		if err := points.check("redeem_step", *k.RedeemStep); err != nil {
			return err
		}
	}
	return (bound{min: decimal.Zero, max: decimal.NewFromInt(10000), decimals: maxRateDecimals}).check("fee_per_point", k.FeePerPoint)
}

// validate checks that exactly one earn rate is set and that it is sensible.
func (e EarnRate) validate(c Coalition) error {
	switch {
	case e.PointsPerUnit != nil && e.PercentBack != nil:
		return invalid("earn", "give either points_per_unit or percent_back, not both")
	case e.PointsPerUnit != nil:
		return rateBound.check("earn.points_per_unit", *e.PointsPerUnit)
	case e.PercentBack != nil:
		if !c.PointValue.IsPositive() {
			return invalid("earn.percent_back", "percent back needs the coalition's point value, which is %s", c.PointValue)
		}
		return (bound{min: decimal.Zero, minExclusive: true, max: hundred, decimals: maxRateDecimals}).check("earn.percent_back", *e.PercentBack)
	}
	return invalid("earn", "give the earn rate as {\"points_per_unit\": \"0.1\"} or {\"percent_back\": \"3\"}")
}

// validateMultipliers checks a map of multipliers by name.
func validateMultipliers(field string, m map[string]decimal.Decimal) error {
	if len(m) > MaxMultipliers {
		return invalid(field, "%d entries is more than the limit of %d", len(m), MaxMultipliers)
	}
	for _, name := range sortedKeys(m) {
		if name == "" || len(name) > maxKeyLength {
			return invalid(field, "a name must be 1 to %d bytes", maxKeyLength)
		}
		if err := multiplierBound.check(field+"."+name, m[name]); err != nil {
			return err
		}
	}
	return nil
}

// sortedKeys returns the keys of m in order, so that errors and prices are deterministic.
func sortedKeys(m map[string]decimal.Decimal) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// WithDefaults returns the contract with every default spelled out from the coalition's
// settings (currency, rounding, redeem rate, max share, redeem step, empty maps), its
// times in UTC, so that the stored version says every rate it uses even if the
// coalition's point value changes later.
func (k Contract) WithDefaults(c Coalition) Contract {
	k.EffectiveFrom = k.EffectiveFrom.UTC()
	if k.Currency == "" {
		k.Currency = c.Currency
	}
	if k.Rounding == "" {
		k.Rounding = RoundDown
	}
	if k.CategoryMultipliers == nil {
		k.CategoryMultipliers = map[string]decimal.Decimal{}
	}
	if k.PaymentMethodMultipliers == nil {
		k.PaymentMethodMultipliers = map[string]decimal.Decimal{}
	}
	promotions := make([]Promotion, len(k.Promotions))
	for i, p := range k.Promotions {
		p.From, p.To = p.From.UTC(), p.To.UTC()
		promotions[i] = p
	}
	k.Promotions = promotions
	rate, share, step := k.EffectiveRedeemRate(c), k.EffectiveMaxShare(), k.EffectiveRedeemStep(c)
	k.RedeemRate, k.MaxShare, k.RedeemStep = &rate, &share, &step
	return k
}

// EffectiveRounding returns the contract's rounding, down when unset.
func (k Contract) EffectiveRounding() Rounding {
	if k.Rounding == "" {
		return RoundDown
	}
	return k.Rounding
}

// EffectiveRedeemRate returns the money a point is worth when redeemed at this partner:
// the contract's redeem_rate, or the coalition's point value when unset.
func (k Contract) EffectiveRedeemRate(c Coalition) decimal.Decimal {
	if k.RedeemRate != nil {
		return *k.RedeemRate
	}
	return c.PointValue
}

// EffectiveMaxShare returns the largest share of a purchase points may pay, 1 when unset.
func (k Contract) EffectiveMaxShare() decimal.Decimal {
	if k.MaxShare != nil {
		return *k.MaxShare
	}
	return one
}

// EffectiveRedeemStep returns the step of a redemption, one unit of the coalition's
// points scale when unset.
func (k Contract) EffectiveRedeemStep(c Coalition) decimal.Decimal {
	if k.RedeemStep != nil {
		return *k.RedeemStep
	}
	return decimal.New(1, -c.PointsScale)
}

// ContractAt returns the version in force at business time t: the one with the latest
// EffectiveFrom not after t (of two with the same EffectiveFrom, the later in the list).
// It is a no_contract_in_force error when every version takes effect after t.
func ContractAt(versions []Contract, t time.Time) (Contract, error) {
	best, earliest := -1, -1
	for i, v := range versions {
		if !v.EffectiveFrom.After(t) && (best < 0 || !v.EffectiveFrom.Before(versions[best].EffectiveFrom)) {
			best = i
		}
		if earliest < 0 || v.EffectiveFrom.Before(versions[earliest].EffectiveFrom) {
			earliest = i
		}
	}
	if best >= 0 {
		return versions[best], nil
	}
	at := t.UTC().Format(time.RFC3339Nano)
	if earliest < 0 {
		return Contract{}, ledger.Errorf(CodeNoContract, "the partner has no contract: the operator must add one before it can earn or redeem").With("business_time", at)
	}
	first := versions[earliest].EffectiveFrom.UTC().Format(time.RFC3339Nano)
	return Contract{}, ledger.Errorf(CodeNoContract, "no contract version is in force at %s: the partner's first version takes effect at %s", at, first).
		With("business_time", at).With("effective_from", first)
}

// ValidateNewVersion checks a version about to be added at record time now: it is valid,
// it takes effect no earlier than now (terms never rewrite history), and no existing
// version takes effect at the same time.
func ValidateNewVersion(existing []Contract, next Contract, c Coalition, now time.Time) error {
	if err := next.Validate(c); err != nil {
		return err
	}
	if next.EffectiveFrom.Before(now) {
		return invalid("effective_from", "%s is in the past (now is %s): a contract version takes effect no earlier than when it is added",
			next.EffectiveFrom.UTC().Format(time.RFC3339Nano), now.UTC().Format(time.RFC3339Nano))
	}
	for _, v := range existing {
		if v.EffectiveFrom.Equal(next.EffectiveFrom) {
			return invalid("effective_from", "a version already takes effect at %s", next.EffectiveFrom.UTC().Format(time.RFC3339Nano))
		}
	}
	return nil
}
