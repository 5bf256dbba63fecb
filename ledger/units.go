package ledger

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/shopspring/decimal"
	"golang.org/x/text/currency"
)

// Points is the unit code of the coalition's points.
const Points = "PTS"

// MaxAmount bounds every single amount the engine accepts, in any unit: larger is a
// typing error, not a purchase.
var MaxAmount = decimal.New(1, 12)

// Units says which units the coalition's books hold and at what scale: its points at the
// coalition's points scale and its one settlement currency at the currency's minor unit.
type Units struct {
	PointsScale int32
	Currency    string
	MoneyScale  int32
}

// NewUnits returns the units of a coalition that settles in the ISO 4217 currency code
// and keeps points at pointsScale decimals.
func NewUnits(code string, pointsScale int32) (Units, error) {
	scale, err := CurrencyScale(code)
	if err != nil {
		return Units{}, err
	}
	if pointsScale < 0 || pointsScale > 6 {
		return Units{}, Errorf(CodeInvalidScale, "points scale %d is outside 0..6", pointsScale)
	}
	return Units{PointsScale: pointsScale, Currency: code, MoneyScale: scale}, nil
}

// CurrencyScale returns the number of minor-unit decimals of an ISO 4217 currency.
func CurrencyScale(code string) (int32, error) {
	if len(code) != 3 || strings.ToUpper(code) != code {
		return 0, Errorf(CodeUnknownUnit, "%q is not an ISO 4217 currency code (three capital letters, such as USD)", code)
	}
	u, err := currency.ParseISO(code)
	if err != nil {
		return 0, Errorf(CodeUnknownUnit, "%q is not an ISO 4217 currency", code)
	}
	scale, _ := currency.Standard.Rounding(u)
	return int32(scale), nil
}

// Scale returns the scale of unit, or an error if the coalition's books do not hold it.
func (u Units) Scale(unit string) (int32, error) {
	switch unit {
	case Points:
		return u.PointsScale, nil
	case u.Currency:
		return u.MoneyScale, nil
	}
	return 0, Errorf(CodeUnknownUnit, "unit %q is not held by this coalition (it holds %s and %s)", unit, Points, u.Currency)
}

// Check validates a positive amount of unit: within MaxAmount and with no more decimals
// than the unit's scale.
func (u Units) Check(unit string, amount decimal.Decimal) *Error {
	scale, err := u.Scale(unit)
	if err != nil {
		return err.(*Error)
	}
	return CheckAmount(amount, scale, unit)
}

// CheckAmount validates a positive amount at the given scale.
func CheckAmount(amount decimal.Decimal, scale int32, unit string) *Error {
	if !amount.IsPositive() {
		return Errorf(CodeInvalidAmount, "amount %s %s must be greater than zero", amount, unit)
	}
	if amount.GreaterThan(MaxAmount) {
		return Errorf(CodeInvalidAmount, "amount %s %s is above the limit of %s", amount, unit, MaxAmount)
	}
	if !amount.Equal(amount.Truncate(scale)) {
		return Errorf(CodeInvalidScale, "amount %s %s has too many decimals: %s takes %s", amount, unit, unit, Decimals(scale))
	}
	return nil
}

// Decimals says how many decimals a scale allows, for error messages: "no decimals",
// "1 decimal", "2 decimals".
func Decimals[N int | int32](n N) string {
	if n == 0 {
		return "no decimals"
	}
	return Count(n, "decimal", "decimals")
}

// Count writes n with its noun in the number it takes, for messages: "1 entry", "2 entries".
func Count[N int | int32 | int64](n N, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// Span writes a duration for messages in the largest whole unit it fills: "7 days",
// "5 minutes", "90 seconds" (not Go's "168h0m0s").
func Span(d time.Duration) string {
	for _, u := range []struct {
		size      time.Duration
		one, many string
	}{{24 * time.Hour, "day", "days"}, {time.Hour, "hour", "hours"}, {time.Minute, "minute", "minutes"}, {time.Second, "second", "seconds"}} {
		if d >= u.size && d%u.size == 0 {
			return Count(int64(d/u.size), u.one, u.many)
		}
	}
	return d.String()
}

// RoundHalfUp rounds a non-negative amount half up to scale decimals.
func RoundHalfUp(d decimal.Decimal, scale int32) decimal.Decimal {
	return d.Round(scale)
}

// zones keeps every time zone loaded: time.LoadLocation reads and parses its zoneinfo file
// on every call, and a *time.Location never changes once loaded.
var zones sync.Map // name → *time.Location

// LoadZone returns the IANA time zone name, loaded once per process.
func LoadZone(name string) (*time.Location, error) {
	if loc, ok := zones.Load(name); ok {
		return loc.(*time.Location), nil
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, err
	}
	zones.Store(name, loc)
	return loc, nil
}
