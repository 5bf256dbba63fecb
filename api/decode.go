package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/shopspring/decimal"

	"github.com/coalitionledger/coalition/ledger"
	"github.com/coalitionledger/coalition/partners"
)

// readBody reads the request body, at most the server's MaxBody bytes (the body-limit
// middleware has wrapped it).
func readBody(c echo.Context) ([]byte, error) {
	body, err := io.ReadAll(c.Request().Body)
	if err != nil {
		return nil, bodyError(err)
	}
	return body, nil
}

// bodyError is the error to answer when reading the body failed: the *http.MaxBytesError
// of an oversized body as it is (a 413 body_too_large), anything else a 400.
func bodyError(err error) error {
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return err
	}
	return ledger.Errorf(CodeMalformedJSON, "the request body could not be read: %v", err)
}

// decode reads the request body strictly into v: see decodeBytes.
func decode(c echo.Context, v any) error {
	body, err := readBody(c)
	if err != nil {
		return err
	}
	return decodeBytes(body, v)
}

// decodeBytes decodes body strictly into v: exactly one JSON object, no field that v does
// not have, no data after it, every value of the JSON type of its field. Any failure is a
// 400 malformed_json *ledger.Error whose message says what to fix (and details.field
// which field, when there is one); a *ledger.Error from a field's own UnmarshalJSON comes
// back as it is.
func decodeBytes(body []byte, v any) error {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return ledger.Errorf(CodeMalformedJSON, "the request needs a JSON object as its body")
	}
	if trimmed[0] != '{' {
		return ledger.Errorf(CodeMalformedJSON, "the body must be a JSON object ({...})")
	}
	if hasNUL(trimmed) {
		return ledger.Errorf(ledger.CodeInvalid, "text in the body may not contain NUL characters (\\u0000): no name, id, reference or key can hold one")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return withTimeField(jsonError(err), err, body)
	}
	if _, err := dec.Token(); err != io.EOF {
		return ledger.Errorf(CodeMalformedJSON, "the body has data after its JSON object (at byte %d): send exactly one object", dec.InputOffset())
	}
	return nil
}

// noFields refuses a body with anything in it but {} (an empty body is fine too): for
// routes that take no fields, so that a field sent to them (an amount to confirm, say) is
// refused rather than ignored.
func noFields(body []byte) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	var empty struct{}
	return decodeBytes(body, &empty)
}

// emptyBody reads the request's body and refuses anything but nothing or {} (noFields).
func emptyBody(c echo.Context) error {
	body, err := readBody(c)
	if err != nil {
		return err
	}
	return noFields(body)
}

// pathParam returns a path parameter unescaped. Echo hands back the escaped form when the
// path holds any escape, as clients that encode every parameter send it
// (phone:%2B12025550143, partner%3Afuelco%3Aissued).
func pathParam(c echo.Context, name string) (string, error) {
	v, err := url.PathUnescape(c.Param(name))
	if err != nil {
		return "", ledger.Errorf(ledger.CodeInvalid, "the %s in the path is not validly percent-encoded", name).With("field", name)
	}
	return v, nil
}

// knownQuery refuses a query parameter the route does not take, so that a misspelt one
// (asof for as_of) is not silently ignored and answered as if it were absent.
func knownQuery(c echo.Context, names ...string) error {
	for got := range c.QueryParams() {
		if !slices.Contains(names, got) {
			if len(names) == 0 {
				return ledger.Errorf(ledger.CodeInvalid, "unknown query parameter %q: this route takes none", got).With("field", got)
			}
			return ledger.Errorf(ledger.CodeInvalid, "unknown query parameter %q: this route takes %s", got, strings.Join(names, ", ")).With("field", got)
		}
	}
	return nil
}

// memberParam reads the {member} of a path: an id, phone:+E164 or card:N, percent-encoded
// or not.
func memberParam(c echo.Context) (partners.MemberRef, error) {
	raw, err := pathParam(c, "member")
	if err != nil {
		return partners.MemberRef{}, err
	}
	return partners.ParseMemberRef(raw)
}

// hasNUL reports whether JSON text holds a NUL character, which it can only as the escape
// \u0000 (a raw NUL byte is not valid JSON, and the decoder refuses it).
func hasNUL(text []byte) bool {
	for i := 0; i < len(text); i++ {
		if text[i] != '\\' || i+1 >= len(text) {
			continue
		}
		if text[i+1] == 'u' && i+6 <= len(text) && string(text[i+2:i+6]) == "0000" {
			return true
		}
		i++ // the escaped character, so that \\u0000 (a backslash, then text) is not taken for one
	}
	return false
}

// jsonError turns an error of encoding/json into a malformed_json error that says what to
// fix.
func jsonError(err error) error {
	var lerr *ledger.Error
	var syntax *json.SyntaxError
	var typeErr *json.UnmarshalTypeError
	var timeErr *time.ParseError
	switch {
	case errors.As(err, &lerr):
		return lerr
	case errors.As(err, &syntax):
		return ledger.Errorf(CodeMalformedJSON, "the body is not valid JSON at byte %d: %s", syntax.Offset, strings.TrimPrefix(syntax.Error(), "json: "))
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return ledger.Errorf(CodeMalformedJSON, "the body ends before its JSON object does")
	case errors.As(err, &typeErr):
		field := typeErr.Field
		if field == "" {
			return ledger.Errorf(CodeMalformedJSON, "the body must be %s, not a JSON %s", jsonTypeName(typeErr.Type), typeErr.Value)
		}
		return ledger.Errorf(CodeMalformedJSON, "%s must be %s, not a JSON %s", field, jsonTypeName(typeErr.Type), typeErr.Value).With("field", field)
	case errors.As(err, &timeErr):
		return ledger.Errorf(CodeMalformedJSON, "a time must be an RFC 3339 string such as \"2026-03-02T10:00:00Z\", with its time and zone, not %q", timeErr.Value)
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		field, uerr := strconv.Unquote(name)
		if uerr != nil {
			field = name
		}
		return ledger.Errorf(CodeMalformedJSON, "unknown field %q: check its spelling against docs/openapi.yaml", field).With("field", field)
	}
	return ledger.Errorf(CodeMalformedJSON, "the body cannot be decoded: %s", strings.TrimPrefix(err.Error(), "json: "))
}

// withTimeField names, in a malformed-time error, the field that holds the bad time:
// encoding/json reports a time.Time's own parse error without its field, so the field is
// found in the body by its value (the first one that holds it).
func withTimeField(out, err error, body []byte) error {
	var timeErr *time.ParseError
	var lerr *ledger.Error
	if !errors.As(err, &timeErr) || !errors.As(out, &lerr) || lerr.Details["field"] != nil {
		return out
	}
	var tree any
	if json.Unmarshal(body, &tree) != nil {
		return out
	}
	if field := pathOf(tree, timeErr.Value, ""); field != "" {
		return lerr.With("field", field)
	}
	return out
}

// pathOf returns the path (a.b[2].c) of the first string in a decoded JSON value that
// equals want, or "".
func pathOf(v any, want, at string) string {
	switch t := v.(type) {
	case string:
		if t == want {
			return at
		}
	case map[string]any:
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			next := k
			if at != "" {
				next = at + "." + k
			}
			if p := pathOf(t[k], want, next); p != "" {
				return p
			}
		}
	case []any:
		for i, e := range t {
			if p := pathOf(e, want, at+"["+strconv.Itoa(i)+"]"); p != "" {
				return p
			}
		}
	}
	return ""
}

// jsonTypeName says which JSON value a Go type takes, for messages.
func jsonTypeName(t reflect.Type) string {
	if t == nil {
		return "another JSON type"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t {
	case reflect.TypeOf(decimal.Decimal{}):
		return "a decimal string such as \"10.00\""
	case reflect.TypeOf(time.Time{}):
		return "an RFC 3339 time string"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return "another JSON type"
}

// parseAmount parses an amount or points field of a request: a decimal string with at most
// scale decimals (partners.ParseAmount). A bad one is a 422 invalid_amount or invalid_scale
// whose message and details.field name the field.
func parseAmount(field, s string, scale int32) (decimal.Decimal, error) {
	d, err := partners.ParseAmount(s, scale)
	if err == nil {
		return d, nil
	}
	var lerr *ledger.Error
	if !errors.As(err, &lerr) {
		return decimal.Zero, err
	}
	out := ledger.Errorf(lerr.Code, "%s: %s", field, lerr.Message)
	for k, v := range lerr.Details {
		out = out.With(k, v)
	}
	return decimal.Zero, out.With("field", field).With("scale", scale)
}

// itoa formats an int for messages and field paths.
func itoa(i int) string { return strconv.Itoa(i) }
