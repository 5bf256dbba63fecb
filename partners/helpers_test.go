package partners

import (
	"errors"
	"testing"
	"time"

	"github.com/coalitionledger/coalition/ledger"
	"github.com/shopspring/decimal"
)

// d parses a decimal literal for a test.
func d(s string) decimal.Decimal { return decimal.RequireFromString(s) }

// dp returns a pointer to a decimal literal.
func dp(s string) *decimal.Decimal { x := d(s); return &x }

// ip returns a pointer to an int.
func ip(i int) *int { return &i }

// at parses an RFC 3339 time for a test.
func at(t *testing.T, s string) time.Time {
	t.Helper()
	tm, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

// rub is a coalition settling in roubles with a point worth one rouble.
func rub() Coalition {
	c := DefaultCoalition()
	c.Currency = "RUB"
	c.PointValue = d("1")
	c.TimeZone = "Europe/Moscow"
	return c
}

// assertDecimal fails unless got equals want in value.
func assertDecimal(t *testing.T, name string, got decimal.Decimal, want string) {
	t.Helper()
	if !got.Equal(d(want)) {
		t.Errorf("%s = %s, want %s", name, got, want)
	}
}

// asError returns the *ledger.Error in err's chain, failing the test if there is none.
func asError(t interface {
	Helper()
	Fatalf(string, ...any)
}, err error) *ledger.Error {
	t.Helper()
	var e *ledger.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v is not a *ledger.Error", err)
	}
	return e
}
