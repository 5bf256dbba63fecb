package partners

import (
	"strconv"
	"strings"

	"github.com/coalitionledger/coalition/ledger"
	"github.com/nyaruka/phonenumbers"
	"github.com/shopspring/decimal"
)

// MaxAmountLength bounds the length of an amount string: ledger.MaxAmount at scale 18
// fits well within it.
const MaxAmountLength = 40

// MaxPhoneLength bounds the length of a phone number as typed.
const MaxPhoneLength = 40

// ParseAmount parses a non-negative decimal string such as "39990.00" or "3999": digits
// with an optional point followed by at most scale digits. It rejects the empty string,
// signs, exponents ("1e3"), spaces, a point with no digit on either side, more decimals
// than scale (invalid_scale, even if they are zeros) and amounts above ledger.MaxAmount
// (invalid_amount). Zero is accepted: whether an amount may be zero is the caller's rule.
// The result keeps the decimals given ("10.50" has exponent -2).
func ParseAmount(s string, scale int32) (decimal.Decimal, error) {
	if scale < 0 || scale > 18 {
		return decimal.Zero, ledger.Errorf(ledger.CodeInvalidScale, "scale %d is outside 0..18", scale)
	}
	bad := func(why string) (decimal.Decimal, error) {
		return decimal.Zero, ledger.Errorf(ledger.CodeInvalidAmount, "%s %s: write an amount as a decimal string such as \"39990.00\"", quote(s), why)
	}
	switch {
	case s == "":
		return bad("is empty")
	case len(s) > MaxAmountLength:
		return bad("is too long")
	}
	intPart, frac, hasPoint := strings.Cut(s, ".")
	for _, part := range []string{intPart, frac} {
		for i := 0; i < len(part); i++ {
			c := part[i]
			switch {
			case c >= '0' && c <= '9':
			case c == '+' || c == '-':
				return bad("has a sign")
			case c == 'e' || c == 'E':
				return bad("has an exponent")
			default:
				return bad("is not a plain decimal number")
			}
		}
	}
	switch {
	case intPart == "":
		return bad("has no digit before the point")
	case hasPoint && frac == "":
		return bad("has no digit after the point")
	case int32(len(frac)) > scale:
		return decimal.Zero, ledger.Errorf(ledger.CodeInvalidScale, "%s has %s; %s", quote(s), ledger.Decimals(len(frac)), allowedDecimals(scale))
	}
	d, err := decimal.NewFromString(s)
	if err != nil {
		return bad("is not a decimal number")
	}
	if d.GreaterThan(ledger.MaxAmount) {
		return decimal.Zero, ledger.Errorf(ledger.CodeInvalidAmount, "%s is above the limit of %s", quote(s), ledger.MaxAmount)
	}
	return d, nil
}

// NormalizePhone returns the phone number in E.164 ("+79161234567"). A number without
// a leading + is read as dialled in defaultRegion (ISO 3166 alpha-2, such as "RU", so
// that "8 (916) 123-45-67" works). It accepts digits, spaces, "+", "-", ".", "(" and ")"
// only (no letters, extensions or URIs) and rejects what is not a valid number in its
// country's numbering plan (invalid_phone).
func NormalizePhone(s, defaultRegion string) (string, error) {
	bad := func(why string) (string, error) {
		return "", ledger.Errorf(CodeInvalidPhone, "phone %s %s: give it in international form, such as \"+79161234567\"", quote(s), why)
	}
	if strings.TrimSpace(s) == "" {
		return bad("is empty")
	}
	if len(s) > MaxPhoneLength {
		return bad("is too long")
	}
	digits := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			digits++
		case c == '+':
			if strings.TrimLeft(s[:i], " ") != "" {
				return bad("has a + that is not at its start")
			}
		case c == ' ' || c == '-' || c == '.' || c == '(' || c == ')':
		default:
			return bad("has a character that is not a digit, space, +, -, ., ( or )")
		}
	}
	if digits == 0 {
		return bad("has no digits")
	}
	region := strings.ToUpper(defaultRegion)
	if !strings.HasPrefix(strings.TrimSpace(s), "+") && region == "" {
		return bad("has no country code and there is no default region")
	}
	n, err := phonenumbers.Parse(s, region)
	if err != nil {
		return bad("cannot be read as a phone number")
	}
	if !phonenumbers.IsValidNumber(n) {
		return bad("is not a valid number")
	}
	return phonenumbers.Format(n, phonenumbers.E164), nil
}

// KnownRegion reports whether region is a region code (ISO 3166, such as US or RU) whose
// numbering plan NormalizePhone knows.
func KnownRegion(region string) bool {
	return phonenumbers.GetSupportedRegions()[strings.ToUpper(region)]
}

// quote quotes a string from a request for a message, cut short if it is long.
func quote(s string) string {
	const max = 48
	if len(s) > max {
		return strconv.Quote(s[:max]) + "…"
	}
	return strconv.Quote(s)
}

// allowedDecimals says how many decimals a scale allows, as the end of a sentence.
func allowedDecimals(scale int32) string {
	if scale == 0 {
		return "no decimals allowed here"
	}
	return "at most " + ledger.Decimals(scale) + " allowed here"
}
