package partners

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"sort"
	"strconv"

	"github.com/coalitionledger/coalition/ledger"
)

// MaxSettingsBytes bounds the JSON of one coalition's settings or one contract version.
const MaxSettingsBytes = 64 << 10

// amountKeys are the fields of the settings that hold a decimal, which must travel as a
// plain decimal string; amountMaps hold a map of them.
var (
	amountKeys = map[string]bool{
		"point_value": true, "threshold": true, "multiplier": true,
		"points_per_unit": true, "percent_back": true, "min_purchase": true,
		"redeem_rate": true, "max_share": true, "min_redeem": true,
		"redeem_step": true, "fee_per_point": true,
	}
	amountMaps = map[string]bool{"category_multipliers": true, "payment_method_multipliers": true}
)

// DecodeCoalition decodes coalition settings from a request strictly: amounts must be
// decimal strings without exponent or sign, and an unknown field is an error (a typing
// error in a setting must not pass silently). It does not Validate.
func DecodeCoalition(data []byte) (Coalition, error) {
	var c Coalition
	// The settings are replaced whole: a setting left out would become its zero (no tiers,
	// whole points) without a word.
	err := decodeStrict(data, &c, "currency", "point_value", "points_scale", "time_zone", "settlement_time", "tiers")
	return c, err
}

// DecodeContract decodes a contract version from a request as strictly as
// DecodeCoalition. It does not Validate.
func DecodeContract(data []byte) (Contract, error) {
	var k Contract
	err := decodeStrict(data, &k)
	return k, err
}

// decodeStrict checks the amounts in data and that it has every required field, then
// decodes it into v with unknown fields refused. Malformed JSON comes back as the
// decoder's own error (a 400); a bad amount or a missing field as an invalid_amount,
// invalid_scale or invalid_request *ledger.Error (a 422).
func decodeStrict(data []byte, v any, required ...string) error {
	if len(data) > MaxSettingsBytes {
		return ledger.Errorf(ledger.CodeInvalid, "the settings are %d bytes, above the limit of %d", len(data), MaxSettingsBytes)
	}
	var tree any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&tree); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("unexpected data after the JSON object")
	}
	fields, ok := tree.(map[string]any)
	if !ok {
		return ledger.Errorf(ledger.CodeInvalid, "the settings must be a JSON object")
	}
	if err := checkAmounts("", tree); err != nil {
		return err
	}
	for _, name := range required {
		if _, ok := fields[name]; !ok {
			return invalid(name, "required: the settings are replaced whole, so send every one (GET /v1/coalition gives them as they are)")
		}
	}
	dec = json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return invalid(typeErr.Field, "a JSON %s cannot be a %s", typeErr.Value, typeErr.Type)
		}
		return err
	}
	return nil
}

// checkAmounts walks a decoded JSON tree and checks every amount it holds.
func checkAmounts(path string, node any) error {
	switch n := node.(type) {
	case map[string]any:
		keys := make([]string, 0, len(n))
		for k := range n {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			field := k
			if path != "" {
				field = path + "." + k
			}
			switch {
			case amountKeys[k]:
				if err := checkAmount(field, n[k]); err != nil {
					return err
				}
			case amountMaps[k]:
				m, ok := n[k].(map[string]any)
				if n[k] != nil && !ok {
					return invalid(field, "give an object of multipliers, such as {\"shop\": \"3\"}")
				}
				for name, x := range m {
					if err := checkAmount(field+"."+name, x); err != nil {
						return err
					}
				}
			default:
				if err := checkAmounts(field, n[k]); err != nil {
					return err
				}
			}
		}
	case []any:
		for i, x := range n {
			if err := checkAmounts(path+"["+strconv.Itoa(i)+"]", x); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkAmount checks that an amount is null or a plain decimal string.
func checkAmount(field string, x any) error {
	switch v := x.(type) {
	case nil:
		return nil
	case string:
		if _, err := ParseAmount(v, 18); err != nil {
			var e *ledger.Error
			if errors.As(err, &e) {
				return ledger.Errorf(e.Code, "%s: %s", field, e.Message).With("field", field)
			}
			return err
		}
		return nil
	case json.Number:
		return ledger.Errorf(ledger.CodeInvalidAmount, "%s: amounts travel as decimal strings such as \"0.1\", not as the JSON number %s", field, v).With("field", field)
	}
	return ledger.Errorf(ledger.CodeInvalidAmount, "%s: give a decimal string such as \"0.1\"", field).With("field", field)
}
