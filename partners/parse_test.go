package partners

import (
	"strings"
	"testing"

	"github.com/coalitionledger/coalition/ledger"
	"github.com/shopspring/decimal"
)

func TestParseAmount(t *testing.T) {
	t.Parallel()
	good := []struct {
		in    string
		scale int32
		want  string
	}{
		{"39990.00", 2, "39990"}, {"3999", 0, "3999"}, {"3999", 2, "3999"}, {"0", 2, "0"},
		{"0.5", 2, "0.5"}, {"007", 0, "7"}, {"1000000000000", 0, "1000000000000"}, {"0.000001", 6, "0.000001"},
	}
	for _, g := range good {
		got, err := ParseAmount(g.in, g.scale)
		if err != nil {
			t.Errorf("ParseAmount(%q, %d): %v", g.in, g.scale, err)
			continue
		}
		assertDecimal(t, g.in, got, g.want)
	}
	if got, _ := ParseAmount("10.50", 2); got.Exponent() != -2 {
		t.Errorf("the decimals given are kept: exponent %d", got.Exponent())
	}
	bad := []struct {
		in    string
		scale int32
		code  ledger.Code
	}{
		{"", 2, ledger.CodeInvalidAmount},
		{"1e3", 2, ledger.CodeInvalidAmount},
		{"1E3", 2, ledger.CodeInvalidAmount},
		{"-5", 2, ledger.CodeInvalidAmount},
		{"+5", 2, ledger.CodeInvalidAmount},
		{"-0", 2, ledger.CodeInvalidAmount},
		{" 5", 2, ledger.CodeInvalidAmount},
		{"5 ", 2, ledger.CodeInvalidAmount},
		{"1,000", 2, ledger.CodeInvalidAmount},
		{"5.", 2, ledger.CodeInvalidAmount},
		{".5", 2, ledger.CodeInvalidAmount},
		{".", 2, ledger.CodeInvalidAmount},
		{"1.2.3", 2, ledger.CodeInvalidAmount},
		{"0x10", 2, ledger.CodeInvalidAmount},
		{"NaN", 2, ledger.CodeInvalidAmount},
		{"Infinity", 2, ledger.CodeInvalidAmount},
		{"١٢", 2, ledger.CodeInvalidAmount}, // Arabic-Indic digits
		{"10.001", 2, ledger.CodeInvalidScale},
		{"10.000", 2, ledger.CodeInvalidScale},
		{"10.5", 0, ledger.CodeInvalidScale},
		{"1000000000000.01", 2, ledger.CodeInvalidAmount},
		{strings.Repeat("9", 41), 0, ledger.CodeInvalidAmount},
		{"1", -1, ledger.CodeInvalidScale},
	}
	for _, b := range bad {
		_, err := ParseAmount(b.in, b.scale)
		if got := ledger.ErrorCode(err); got != b.code {
			t.Errorf("ParseAmount(%q, %d): code %q (%v), want %q", b.in, b.scale, got, err, b.code)
		}
	}
}

func TestNormalizePhone(t *testing.T) {
	t.Parallel()
	good := []struct{ in, region, want string }{
		{"+79161234567", "", "+79161234567"},
		{"+7 916 123-45-67", "US", "+79161234567"},
		{"8 (916) 123-45-67", "RU", "+79161234567"},
		{"89161234567", "RU", "+79161234567"},
		{"9161234567", "RU", "+79161234567"},
		{"(202) 555-0143", "US", "+12025550143"},
		{"+44 20 7946 0958", "RU", "+442079460958"},
		{"020 7946 0958", "gb", "+442079460958"},
	}
	for _, g := range good {
		got, err := NormalizePhone(g.in, g.region)
		if err != nil || got != g.want {
			t.Errorf("NormalizePhone(%q, %q) = %q, %v; want %q", g.in, g.region, got, err, g.want)
		}
	}
	bad := []struct{ in, region string }{
		{"", "RU"}, {"   ", "RU"}, {"+", "RU"}, {"12345", "RU"}, {"+7916", ""},
		{"8 (916) 123-45-67", ""}, // no country code and no default region
		{"+7 000 000-00-00", ""},  // not a number in Russia's plan
		{"1-800-FLOWERS", "US"}, {"+79161234567 ext. 12", ""}, {"tel:+79161234567", ""},
		{"7+9161234567", ""}, {"+7916123456789012345", ""}, {"+7９１６1234567", ""},
		{strings.Repeat("1", 41), "US"},
	}
	for _, b := range bad {
		got, err := NormalizePhone(b.in, b.region)
		if ledger.ErrorCode(err) != CodeInvalidPhone {
			t.Errorf("NormalizePhone(%q, %q) = %q, %v; want invalid_phone", b.in, b.region, got, err)
		}
	}
}

func FuzzParseAmount(f *testing.F) {
	for _, s := range []string{"39990.00", "3999", "0", "0.5", "1e3", "-5", "+5", "", ".", "5.", ".5", "1.2.3",
		"1000000000000", "1000000000000.01", "007", "10.000", " 1", "1_000", "١", "9999999999999999999999999999999999999999"} {
		for _, scale := range []uint8{0, 2, 6} {
			f.Add(s, scale)
		}
	}
	f.Fuzz(func(t *testing.T, s string, rawScale uint8) {
		scale := int32(rawScale % 19)
		got, err := ParseAmount(s, scale)
		if err != nil {
			if c := ledger.ErrorCode(err); c != ledger.CodeInvalidAmount && c != ledger.CodeInvalidScale {
				t.Fatalf("ParseAmount(%q, %d): error %v has code %q", s, scale, err, c)
			}
			return
		}
		// Accepted: plain digits with at most one point and at most scale decimals...
		intPart, frac, _ := strings.Cut(s, ".")
		if intPart == "" || strings.Trim(intPart+frac, "0123456789") != "" || int32(len(frac)) > scale {
			t.Fatalf("ParseAmount(%q, %d) accepted %s", s, scale, got)
		}
		// ...whose value is what the decimal library reads, within the limits...
		want, err := decimal.NewFromString(s)
		if err != nil || !got.Equal(want) || got.IsNegative() || got.GreaterThan(ledger.MaxAmount) || !got.Equal(got.Truncate(scale)) {
			t.Fatalf("ParseAmount(%q, %d) = %s, library %s (%v)", s, scale, got, want, err)
		}
		// ...and whose canonical form is accepted again with the same value.
		again, err := ParseAmount(got.String(), scale)
		if err != nil || !again.Equal(got) {
			t.Fatalf("ParseAmount(%q) = %s, but its string %q gives %s, %v", s, got, got.String(), again, err)
		}
	})
}

func FuzzNormalizePhone(f *testing.F) {
	for _, s := range []string{"+79161234567", "8 (916) 123-45-67", "89161234567", "(202) 555-0143", "+44 20 7946 0958",
		"", "+", "12345", "1-800-FLOWERS", "+79161234567 ext. 12", "tel:+79161234567", "7+9161234567", "+7 000 000-00-00",
		"++79161234567", "+7(916)123.45.67", "((((((((((", "+0 123", "+800 1234 5678"} {
		for _, region := range []string{"RU", "US", "", "ZZ", "gb"} {
			f.Add(s, region)
		}
	}
	f.Fuzz(func(t *testing.T, s, region string) {
		got, err := NormalizePhone(s, region)
		if err != nil {
			if c := ledger.ErrorCode(err); c != CodeInvalidPhone {
				t.Fatalf("NormalizePhone(%q, %q): error %v has code %q", s, region, err, c)
			}
			return
		}
		// Accepted: E.164, a + and at most 15 digits...
		if len(got) < 3 || len(got) > 16 || got[0] != '+' || strings.Trim(got[1:], "0123456789") != "" {
			t.Fatalf("NormalizePhone(%q, %q) = %q is not E.164", s, region, got)
		}
		// ...that normalises to itself whatever the default region.
		for _, r := range []string{"", region, "RU", "US"} {
			if again, err := NormalizePhone(got, r); err != nil || again != got {
				t.Fatalf("NormalizePhone(%q, %q) = %q, but NormalizePhone(%q, %q) = %q, %v", s, region, got, got, r, again, err)
			}
		}
	})
}
