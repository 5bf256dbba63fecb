package partners

import (
	"fmt"

	"github.com/coalitionledger/coalition/ledger"
	"github.com/shopspring/decimal"
)

// The codes partners adds to ledger's. They are part of the contract: never rename one.
// Errors the two packages share (invalid_request, invalid_amount, invalid_scale,
// unknown_unit) use ledger's codes; every code here is of ledger.ClassInvalid (422).
const (
	// CodeNoContract: the partner has no contract version in force at the business time.
	CodeNoContract ledger.Code = "no_contract_in_force"
	// CodeCurrencyMismatch: an amount is not in the coalition's currency.
	CodeCurrencyMismatch ledger.Code = "currency_mismatch"
	// CodeBelowMinRedeem: a redemption asks for fewer points than the contract's min_redeem.
	CodeBelowMinRedeem ledger.Code = "below_min_redeem"
	// CodeRedeemStep: a redemption's points are not a whole number of redeem_step steps.
	CodeRedeemStep ledger.Code = "not_a_redeem_step"
	// CodeMaxShare: points would pay more of the purchase than the contract's max_share.
	CodeMaxShare ledger.Code = "exceeds_max_share"
	// CodePurchaseAmountRequired: the contract caps the share of a purchase that points may
	// pay, so a redemption must say the purchase amount.
	CodePurchaseAmountRequired ledger.Code = "purchase_amount_required"
	// CodeInvalidPhone: a phone number cannot be a valid number.
	CodeInvalidPhone ledger.Code = "invalid_phone"
)

// invalid returns an invalid_request error about one field of a request or a setting; the
// field's path is in the message and in details.field.
func invalid(field, format string, args ...any) *ledger.Error {
	return ledger.Errorf(ledger.CodeInvalid, "%s: %s", field, fmt.Sprintf(format, args...)).With("field", field)
}

// maxRateDecimals bounds the decimals of every rate and multiplier a setting may hold.
const maxRateDecimals = 8

// maxKeyLength bounds names: tiers, categories, payment methods.
const maxKeyLength = 64

// bound says which values a decimal setting may take.
type bound struct {
	min, max     decimal.Decimal
	minExclusive bool  // min itself is not allowed
	decimals     int32 // at most this many decimals
}

// check returns an invalid_request error naming field when d is outside b.
func (b bound) check(field string, d decimal.Decimal) error {
	switch {
	case b.minExclusive && !d.GreaterThan(b.min):
		return invalid(field, "%s must be greater than %s", d, b.min)
	case d.LessThan(b.min):
		return invalid(field, "%s must be at least %s", d, b.min)
	case d.GreaterThan(b.max):
		return invalid(field, "%s must be at most %s", d, b.max)
	case !d.Equal(d.Truncate(b.decimals)):
		return ledger.Errorf(ledger.CodeInvalidScale, "%s: %s has too many decimals; %s", field, d, allowedDecimals(b.decimals)).With("field", field).With("scale", b.decimals)
	}
	return nil
}

var (
	one     = decimal.NewFromInt(1)
	hundred = decimal.NewFromInt(100)
	// multiplierBound: tier, category, payment-method and promotion multipliers (category
	// and payment-method ones may be 0 to exclude a category or a way of paying).
	multiplierBound = bound{min: decimal.Zero, max: hundred, decimals: maxRateDecimals}
	// positiveMultiplier: tier and promotion multipliers.
	positiveMultiplier = bound{min: decimal.Zero, minExclusive: true, max: hundred, decimals: maxRateDecimals}
	// rateBound: money per point (point value, redeem rate) and points per currency unit.
	rateBound = bound{min: decimal.Zero, minExclusive: true, max: decimal.NewFromInt(10000), decimals: maxRateDecimals}
)
