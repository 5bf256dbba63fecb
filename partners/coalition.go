package partners

import (
	"errors"
	"strconv"
	"time"

	"github.com/coalitionledger/coalition/ledger"
	"github.com/shopspring/decimal"
	"golang.org/x/text/currency"
)

// MaxTiers bounds the length of a coalition's tier ladder.
const MaxTiers = 20

// Coalition is the coalition's settings: its one currency, what a point is worth, the
// scale of points, the time zone that makes business days, when settlement runs, and the
// tier ladder. Currency, points scale and time zone freeze at the first journal entry.
type Coalition struct {
	Currency       string          `json:"currency"`        // ISO 4217, such as "USD"
	PointValue     decimal.Decimal `json:"point_value"`     // money per point
	PointsScale    int32           `json:"points_scale"`    // decimals of points, 0..6
	TimeZone       string          `json:"time_zone"`       // IANA name, such as "Europe/Moscow"
	SettlementTime string          `json:"settlement_time"` // "HH:MM" local time of the nightly run
	Tiers          []Tier          `json:"tiers"`           // by threshold, ascending
}

// Tier is one rung of the ladder: a member who earned at least Threshold points in the
// 365 days before an earn gets Multiplier on that earn.
type Tier struct {
	Name       string          `json:"name"`
	Threshold  decimal.Decimal `json:"threshold"`  // points, inclusive
	Multiplier decimal.Decimal `json:"multiplier"` // > 0
}

// DefaultCoalition returns the settings of a fresh install: USD, a point worth one cent,
// whole points, UTC, settlement at 02:00, and a basic/silver/gold ladder.
func DefaultCoalition() Coalition {
	return Coalition{
		Currency:       "USD",
		PointValue:     decimal.RequireFromString("0.01"),
		PointsScale:    0,
		TimeZone:       "UTC",
		SettlementTime: "02:00",
		Tiers: []Tier{
			{Name: "basic", Threshold: decimal.Zero, Multiplier: decimal.NewFromInt(1)},
			{Name: "silver", Threshold: decimal.NewFromInt(5000), Multiplier: decimal.RequireFromString("1.25")},
			{Name: "gold", Threshold: decimal.NewFromInt(20000), Multiplier: decimal.RequireFromString("1.5")},
		},
	}
}

// Validate checks the settings and says what to fix in an invalid_request (or
// unknown_unit, for the currency) error.
func (c Coalition) Validate() error {
	if c.Currency == "" {
		return invalid("currency", "required: the ISO 4217 code the coalition settles in, such as USD")
	}
	if _, err := c.MoneyScale(); err != nil {
		return err
	}
	if !isTender(c.Currency) {
		return ledger.Errorf(ledger.CodeUnknownUnit, "currency %q is not legal tender anywhere today: use a current ISO 4217 currency such as USD", c.Currency).With("field", "currency")
	}
	if err := rateBound.check("point_value", c.PointValue); err != nil {
		return err
	}
	if c.PointsScale < 0 || c.PointsScale > 6 {
		return invalid("points_scale", "%d is outside 0..6", c.PointsScale)
	}
	if _, err := c.Location(); err != nil {
		return err
	}
	if _, _, err := ParseClock(c.SettlementTime); err != nil {
		return err
	}
	if len(c.Tiers) > MaxTiers {
		return invalid("tiers", "%d tiers is more than the limit of %d", len(c.Tiers), MaxTiers)
	}
	names := make(map[string]bool, len(c.Tiers))
	for i, t := range c.Tiers {
		field := "tiers[" + strconv.Itoa(i) + "]"
		if t.Name == "" || len(t.Name) > maxKeyLength {
			return invalid(field+".name", "a tier needs a name of 1 to %d bytes", maxKeyLength)
		}
		if names[t.Name] {
			return invalid(field+".name", "tier %q appears twice", t.Name)
		}
		names[t.Name] = true
		if err := (bound{min: decimal.Zero, max: ledger.MaxAmount, decimals: c.PointsScale}).check(field+".threshold", t.Threshold); err != nil {
			return err
		}
		if i > 0 && !t.Threshold.GreaterThan(c.Tiers[i-1].Threshold) {
			return invalid(field+".threshold", "tiers must be sorted by threshold, each above the one before (%s is not above %s)", t.Threshold, c.Tiers[i-1].Threshold)
		}
		if err := positiveMultiplier.check(field+".multiplier", t.Multiplier); err != nil {
			return err
		}
	}
	return nil
}

// MoneyScale returns the number of minor-unit decimals of the coalition's currency.
func (c Coalition) MoneyScale() (int32, error) {
	scale, err := ledger.CurrencyScale(c.Currency)
	var e *ledger.Error
	if errors.As(err, &e) {
		return 0, e.With("field", "currency")
	}
	if err != nil {
		return 0, err
	}
	return scale, nil
}

// Units returns the units the coalition's books hold, for package ledger.
func (c Coalition) Units() (ledger.Units, error) {
	return ledger.NewUnits(c.Currency, c.PointsScale)
}

// Location loads the coalition's time zone.
func (c Coalition) Location() (*time.Location, error) {
	// "" and "Local" load, but as UTC and as whatever the machine says: neither is a
	// setting that means the same thing everywhere.
	if c.TimeZone == "" || c.TimeZone == "Local" {
		return nil, invalid("time_zone", "%q is not an IANA time zone name such as \"Europe/Moscow\" or \"UTC\"", c.TimeZone)
	}
	loc, err := ledger.LoadZone(c.TimeZone)
	if err != nil {
		return nil, invalid("time_zone", "%q is not an IANA time zone name such as \"Europe/Moscow\" or \"UTC\"", c.TimeZone)
	}
	return loc, nil
}

// TierFor returns the highest tier whose threshold is at most earned (the member's net
// points earned over the 365 days before the earn), and false when earned is below every
// threshold; such a member earns at multiplier 1.
func (c Coalition) TierFor(earned decimal.Decimal) (Tier, bool) {
	for i := len(c.Tiers) - 1; i >= 0; i-- {
		if earned.GreaterThanOrEqual(c.Tiers[i].Threshold) {
			return c.Tiers[i], true
		}
	}
	return Tier{}, false
}

// ParseClock parses a settlement time "HH:MM" (24-hour, 00:00 to 23:59).
func ParseClock(s string) (hour, minute int, err error) {
	bad := func() (int, int, error) {
		return 0, 0, invalid("settlement_time", "%q is not a time of day as \"HH:MM\", such as \"02:00\"", s)
	}
	if len(s) != 5 || s[2] != ':' {
		return bad()
	}
	for _, i := range []int{0, 1, 3, 4} {
		if s[i] < '0' || s[i] > '9' {
			return bad()
		}
	}
	hour = int(s[0]-'0')*10 + int(s[1]-'0')
	minute = int(s[3]-'0')*10 + int(s[4]-'0')
	if hour > 23 || minute > 59 {
		return bad()
	}
	return hour, minute, nil
}

// isTender reports whether the ISO 4217 code is legal tender in some region today, which
// rules out precious metals, test codes and retired currencies.
func isTender(code string) bool {
	u, err := currency.ParseISO(code)
	if err != nil {
		return false
	}
	for it := currency.Query(); it.Next(); {
		if it.Unit() == u {
			return true
		}
	}
	return false
}
