package partners

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/coalitionledger/coalition/ledger"
	"github.com/shopspring/decimal"
)

func TestDefaultCoalitionIsValid(t *testing.T) {
	t.Parallel()
	if err := DefaultCoalition().Validate(); err != nil {
		t.Fatal(err)
	}
	if err := rub().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestCoalitionValidate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		edit  func(*Coalition)
		code  ledger.Code
		field string
	}{
		{"lower-case currency", func(c *Coalition) { c.Currency = "usd" }, ledger.CodeUnknownUnit, "currency"},
		{"unknown currency", func(c *Coalition) { c.Currency = "ABC" }, ledger.CodeUnknownUnit, "currency"},
		{"gold is not a currency", func(c *Coalition) { c.Currency = "XAU" }, ledger.CodeUnknownUnit, "currency"},
		{"a retired currency", func(c *Coalition) { c.Currency = "DEM" }, ledger.CodeUnknownUnit, "currency"},
		{"zero point value", func(c *Coalition) { c.PointValue = decimal.Zero }, ledger.CodeInvalid, "point_value"},
		{"negative points scale", func(c *Coalition) { c.PointsScale = -1 }, ledger.CodeInvalid, "points_scale"},
		{"points scale 7", func(c *Coalition) { c.PointsScale = 7 }, ledger.CodeInvalid, "points_scale"},
		{"unknown time zone", func(c *Coalition) { c.TimeZone = "Mars/Olympus" }, ledger.CodeInvalid, "time_zone"},
		{"the machine's time zone", func(c *Coalition) { c.TimeZone = "Local" }, ledger.CodeInvalid, "time_zone"},
		{"no time zone", func(c *Coalition) { c.TimeZone = "" }, ledger.CodeInvalid, "time_zone"},
		{"settlement at 24:00", func(c *Coalition) { c.SettlementTime = "24:00" }, ledger.CodeInvalid, "settlement_time"},
		{"settlement at 2am", func(c *Coalition) { c.SettlementTime = "2:00" }, ledger.CodeInvalid, "settlement_time"},
		{"tiers out of order", func(c *Coalition) { c.Tiers[1], c.Tiers[2] = c.Tiers[2], c.Tiers[1] }, ledger.CodeInvalid, "tiers[2].threshold"},
		{"a tier multiplier of 0", func(c *Coalition) { c.Tiers[0].Multiplier = decimal.Zero }, ledger.CodeInvalid, "tiers[0].multiplier"},
		{"two tiers of one name", func(c *Coalition) { c.Tiers[1].Name = "basic" }, ledger.CodeInvalid, "tiers[1].name"},
		{"a fractional threshold at scale 0", func(c *Coalition) { c.Tiers[1].Threshold = d("0.5") }, ledger.CodeInvalidScale, "tiers[1].threshold"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := DefaultCoalition()
			tc.edit(&c)
			e := asError(t, c.Validate())
			if e.Code != tc.code || e.Details["field"] != tc.field {
				t.Fatalf("got %q on %v (%v), want %q on %s", e.Code, e.Details["field"], e, tc.code, tc.field)
			}
		})
	}
}

func TestTierFor(t *testing.T) {
	t.Parallel()
	c := DefaultCoalition()
	for earned, want := range map[string]string{"0": "basic", "4999": "basic", "5000": "silver", "19999": "silver", "20000": "gold", "1000000": "gold"} {
		tier, ok := c.TierFor(d(earned))
		if !ok || tier.Name != want {
			t.Errorf("TierFor(%s) = %v, %v; want %s", earned, tier.Name, ok, want)
		}
	}
	c.Tiers = c.Tiers[1:]
	if _, ok := c.TierFor(d("100")); ok {
		t.Error("below every threshold is no tier")
	}
}

func TestContractValidate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		edit  func(*Contract)
		code  ledger.Code
		field string
	}{
		{"no effective time", func(k *Contract) { k.EffectiveFrom = time.Time{} }, ledger.CodeInvalid, "effective_from"},
		{"another currency", func(k *Contract) { k.Currency = "USD" }, CodeCurrencyMismatch, "currency"},
		{"no earn rate", func(k *Contract) { k.Earn = EarnRate{} }, ledger.CodeInvalid, "earn"},
		{"two earn rates", func(k *Contract) { k.Earn.PercentBack = dp("3") }, ledger.CodeInvalid, "earn"},
		{"a zero earn rate", func(k *Contract) { k.Earn.PointsPerUnit = dp("0") }, ledger.CodeInvalid, "earn.points_per_unit"},
		{"percent back above 100", func(k *Contract) { k.Earn = EarnRate{PercentBack: dp("101")} }, ledger.CodeInvalid, "earn.percent_back"},
		{"a negative category multiplier", func(k *Contract) { k.CategoryMultipliers["shop"] = d("-1") }, ledger.CodeInvalid, "category_multipliers.shop"},
		{"an absurd payment multiplier", func(k *Contract) { k.PaymentMethodMultipliers["own_card"] = d("1000") }, ledger.CodeInvalid, "payment_method_multipliers.own_card"},
		{"a promotion that ends before it starts", func(k *Contract) { k.Promotions[0].To = k.Promotions[0].From }, ledger.CodeInvalid, "promotions[0].to"},
		{"a promotion without an end", func(k *Contract) { k.Promotions[1].To = time.Time{} }, ledger.CodeInvalid, "promotions[1]"},
		{"a promotion multiplier of 0", func(k *Contract) { k.Promotions[1].Multiplier = decimal.Zero }, ledger.CodeInvalid, "promotions[1].multiplier"},
		{"an unknown rounding", func(k *Contract) { k.Rounding = "up" }, ledger.CodeInvalid, "rounding"},
		{"a min purchase with kopeck fractions", func(k *Contract) { k.MinPurchase = d("0.001") }, ledger.CodeInvalidScale, "min_purchase"},
		{"expiry of 0 days", func(k *Contract) { k.ExpiryDays = ip(0) }, ledger.CodeInvalid, "expiry_days"},
		{"a zero redeem rate", func(k *Contract) { k.RedeemRate = dp("0") }, ledger.CodeInvalid, "redeem_rate"},
		{"max share above 1", func(k *Contract) { k.MaxShare = dp("1.2") }, ledger.CodeInvalid, "max_share"},
		{"a zero redeem step", func(k *Contract) { k.RedeemStep = dp("0") }, ledger.CodeInvalid, "redeem_step"},
		{"a fractional redeem step at scale 0", func(k *Contract) { k.RedeemStep = dp("0.5") }, ledger.CodeInvalidScale, "redeem_step"},
		{"a negative min redeem", func(k *Contract) { k.MinRedeem = d("-1") }, ledger.CodeInvalid, "min_redeem"},
		{"a negative fee", func(k *Contract) { k.FeePerPoint = d("-0.01") }, ledger.CodeInvalid, "fee_per_point"},
	}
	if err := fuelContract(t).Validate(rub()); err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			k := fuelContract(t)
			tc.edit(&k)
			e := asError(t, k.Validate(rub()))
			if e.Code != tc.code || e.Details["field"] != tc.field {
				t.Fatalf("got %q on %v (%v), want %q on %s", e.Code, e.Details["field"], e, tc.code, tc.field)
			}
		})
	}
}

func TestWithDefaults(t *testing.T) {
	t.Parallel()
	c := rub()
	c.PointsScale = 2
	k := Contract{EffectiveFrom: at(t, "2025-01-01T03:00:00+03:00"), Earn: EarnRate{PointsPerUnit: dp("1")}}.WithDefaults(c)
	if err := k.Validate(c); err != nil {
		t.Fatal(err)
	}
	if k.Currency != "RUB" || k.Rounding != RoundDown || k.EffectiveFrom.Location() != time.UTC {
		t.Errorf("currency %q, rounding %q, effective_from %s", k.Currency, k.Rounding, k.EffectiveFrom)
	}
	assertDecimal(t, "redeem_rate", *k.RedeemRate, "1")
	assertDecimal(t, "max_share", *k.MaxShare, "1")
	assertDecimal(t, "redeem_step", *k.RedeemStep, "0.01")
	// A later change of the point value does not change the stored version's rate.
	c.PointValue = d("2")
	assertDecimal(t, "redeem_rate", k.EffectiveRedeemRate(c), "1")
}

func TestContractAt(t *testing.T) {
	t.Parallel()
	v1 := Contract{EffectiveFrom: at(t, "2025-01-01T00:00:00Z"), FeePerPoint: d("1")}
	v2 := Contract{EffectiveFrom: at(t, "2025-03-01T00:00:00Z"), FeePerPoint: d("2")}
	v3 := Contract{EffectiveFrom: at(t, "2025-06-01T00:00:00Z"), FeePerPoint: d("3")}
	versions := []Contract{v3, v1, v2} // any order
	for when, fee := range map[string]string{
		"2025-01-01T00:00:00Z": "1", "2025-02-28T23:59:59Z": "1", "2025-03-01T00:00:00Z": "2",
		"2025-05-31T23:59:59Z": "2", "2025-06-01T00:00:00Z": "3", "2030-01-01T00:00:00Z": "3",
	} {
		k, err := ContractAt(versions, at(t, when))
		if err != nil {
			t.Fatal(err)
		}
		assertDecimal(t, "version at "+when, k.FeePerPoint, fee)
	}
	_, err := ContractAt(versions, at(t, "2024-12-31T23:59:59Z"))
	if e := asError(t, err); e.Code != CodeNoContract || e.Details["effective_from"] != "2025-01-01T00:00:00Z" {
		t.Errorf("before the first version: %v %v", e, e.Details)
	}
	if _, err := ContractAt(nil, at(t, "2025-01-01T00:00:00Z")); ledger.ErrorCode(err) != CodeNoContract {
		t.Errorf("no versions: %v", err)
	}
}

func TestValidateNewVersion(t *testing.T) {
	t.Parallel()
	now := at(t, "2025-05-01T12:00:00Z")
	existing := []Contract{fuelContract(t)}
	next := fuelContract(t)
	next.EffectiveFrom = now
	if err := ValidateNewVersion(existing, next, rub(), now); err != nil {
		t.Fatalf("from now: %v", err)
	}
	next.EffectiveFrom = now.Add(-time.Second)
	if e := asError(t, ValidateNewVersion(existing, next, rub(), now)); e.Details["field"] != "effective_from" {
		t.Errorf("in the past: %v", e)
	}
	if e := asError(t, ValidateNewVersion(existing, existing[0], rub(), existing[0].EffectiveFrom)); e.Details["field"] != "effective_from" {
		t.Errorf("same time as another version: %v", e)
	}
}

func TestDecodeContract(t *testing.T) {
	t.Parallel()
	body := `{
		"effective_from": "2025-01-01T00:00:00+03:00",
		"currency": "RUB",
		"earn": {"points_per_unit": "0.1"},
		"category_multipliers": {"shop": "3"},
		"payment_method_multipliers": {"own_card": "2"},
		"promotions": [{"from": "2025-06-01T00:00:00+03:00", "to": "2025-06-08T00:00:00+03:00", "multiplier": "2", "category": "coffee"}],
		"rounding": "half_up",
		"min_purchase": "100.00",
		"expiry_days": 365,
		"redeem_rate": null,
		"max_share": "0.2",
		"min_redeem": "200",
		"redeem_step": "100",
		"fee_per_point": "0.05"
	}`
	k, err := DecodeContract([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Validate(rub()); err != nil {
		t.Fatal(err)
	}
	assertDecimal(t, "points_per_unit", *k.Earn.PointsPerUnit, "0.1")
	assertDecimal(t, "shop", k.CategoryMultipliers["shop"], "3")
	assertDecimal(t, "promotion", k.Promotions[0].Multiplier, "2")
	if k.RedeemRate != nil || k.ExpiryDays == nil || *k.ExpiryDays != 365 || k.Rounding != RoundHalfUp {
		t.Errorf("redeem_rate %v, expiry_days %v, rounding %q", k.RedeemRate, k.ExpiryDays, k.Rounding)
	}
	// What we encode, we decode.
	out, err := json.Marshal(k.WithDefaults(rub()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := DecodeContract(out); err != nil {
		t.Fatalf("decoding %s: %v", out, err)
	}

	bad := []struct {
		body  string
		code  ledger.Code
		field string
	}{
		{`{"earn": {"points_per_unit": 0.1}}`, ledger.CodeInvalidAmount, "earn.points_per_unit"},
		{`{"earn": {"points_per_unit": "1e-1"}}`, ledger.CodeInvalidAmount, "earn.points_per_unit"},
		{`{"category_multipliers": {"shop": "-3"}}`, ledger.CodeInvalidAmount, "category_multipliers.shop"},
		{`{"promotions": [{"multiplier": "2.0.0"}]}`, ledger.CodeInvalidAmount, "promotions[0].multiplier"},
		{`{"max_share": "20%"}`, ledger.CodeInvalidAmount, "max_share"},
		{`{"expiry_day": 365}`, "", ""}, // a typing error must not pass silently
		{`{"expiry_days": "365"}`, ledger.CodeInvalid, "expiry_days"},
		{`{} {}`, "", ""},
		{`[]`, ledger.CodeInvalid, ""},
	}
	for _, b := range bad {
		_, err := DecodeContract([]byte(b.body))
		if err == nil {
			t.Errorf("%s: accepted", b.body)
			continue
		}
		if ledger.ErrorCode(err) != b.code {
			t.Errorf("%s: code %q (%v), want %q", b.body, ledger.ErrorCode(err), err, b.code)
		}
		if b.field != "" && asError(t, err).Details["field"] != b.field {
			t.Errorf("%s: field %v, want %s", b.body, asError(t, err).Details["field"], b.field)
		}
	}
}

func TestDecodeCoalition(t *testing.T) {
	t.Parallel()
	out, err := json.Marshal(DefaultCoalition())
	if err != nil {
		t.Fatal(err)
	}
	c, err := DecodeCoalition(out)
	if err != nil {
		t.Fatalf("decoding %s: %v", out, err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if _, err := DecodeCoalition([]byte(`{"currency": "USD", "point_value": 0.01}`)); ledger.ErrorCode(err) != ledger.CodeInvalidAmount {
		t.Errorf("a JSON number: %v", err)
	}
	if _, err := DecodeCoalition([]byte(`{"tiers": [{"name": "gold", "threshold": "1E4", "multiplier": "2"}]}`)); ledger.ErrorCode(err) != ledger.CodeInvalidAmount {
		t.Errorf("an exponent: %v", err)
	}
}
