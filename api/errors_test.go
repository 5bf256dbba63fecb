package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
	"go.uber.org/zap"

	"github.com/coalitionledger/coalition/ledger"
	"github.com/coalitionledger/coalition/partners"
)

// TestErrorAnswers checks every HTTP-level error: its status, its code, and the exact
// shape of the body.
func TestErrorAnswers(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.MaxBody = 1024 })
	alpha := e.partner("alpha")
	e.partner("beta")
	revokedID, revoked, err := e.keys.Create(context.Background(), partners.RoleOperator, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.keys.Revoke(context.Background(), revokedID); err != nil {
		t.Fatal(err)
	}
	big := `{"id": "big", "name": "` + strings.Repeat("x", 2000) + `"}`

	cases := []struct {
		name          string
		method, path  string
		secret        string
		body          any
		status        int
		code          string
		field         string // details.field, when the error names one
		header, value string // a header the answer must carry, and a part of its value
		auth          string // a raw Authorization header instead of the bearer secret
	}{
		{name: "truncated JSON", method: "POST", path: "/v1/partners", secret: e.operator, body: `{"id":`, status: 400, code: "malformed_json"},
		{name: "syntax error", method: "POST", path: "/v1/partners", secret: e.operator, body: `{"id" "x"}`, status: 400, code: "malformed_json"},
		{name: "unknown field", method: "POST", path: "/v1/partners", secret: e.operator, body: `{"id": "gamma", "name": "G", "colour": "red"}`, status: 400, code: "malformed_json", field: "colour"},
		{name: "trailing data", method: "POST", path: "/v1/partners", secret: e.operator, body: `{"id": "gamma", "name": "G"} {}`, status: 400, code: "malformed_json"},
		{name: "wrong JSON type", method: "POST", path: "/v1/partners", secret: e.operator, body: `{"id": 5, "name": "G"}`, status: 400, code: "malformed_json", field: "id"},
		{name: "not an object", method: "POST", path: "/v1/partners", secret: e.operator, body: `["gamma"]`, status: 400, code: "malformed_json"},
		{name: "empty body", method: "POST", path: "/v1/partners", secret: e.operator, body: ``, status: 400, code: "malformed_json"},
		{name: "settings: unknown field", method: "PUT", path: "/v1/coalition", secret: e.operator, body: `{"currency": "USD", "colour": "red"}`, status: 400, code: "malformed_json", field: "colour"},
		{name: "settings: wrong type", method: "PUT", path: "/v1/coalition", secret: e.operator, body: `{"currency": "USD", "points_scale": "0"}`, status: 400, code: "malformed_json", field: "points_scale"},
		{name: "contract: trailing data", method: "POST", path: "/v1/partners/alpha/contracts", secret: e.operator, body: `{"earn": {"points_per_unit": "1"}}]`, status: 400, code: "malformed_json"},
		{name: "oversized body", method: "POST", path: "/v1/partners", secret: e.operator, body: big, status: 413, code: "body_too_large"},
		{name: "no key", method: "GET", path: "/v1/coalition", status: 401, code: "unauthorized", header: "WWW-Authenticate", value: "Bearer"},
		{name: "not a bearer key", method: "GET", path: "/v1/partners", auth: "Basic b3BlcmF0b3I6c2VjcmV0", status: 401, code: "unauthorized", header: "WWW-Authenticate", value: "Bearer"},
		{name: "unknown key", method: "GET", path: "/v1/coalition", secret: "cl_o_notakey", status: 401, code: "unauthorized", header: "WWW-Authenticate", value: "Bearer"},
		{name: "revoked key", method: "GET", path: "/v1/coalition", secret: revoked, status: 401, code: "unauthorized", header: "WWW-Authenticate", value: "Bearer"},
		{name: "auditor writes", method: "PUT", path: "/v1/coalition", secret: e.auditor, body: `{}`, status: 403, code: "forbidden"},
		{name: "auditor makes a key", method: "POST", path: "/v1/keys", secret: e.auditor, body: `{"role": "operator"}`, status: 403, code: "forbidden"},
		{name: "partner reads settings", method: "GET", path: "/v1/coalition", secret: alpha, status: 403, code: "forbidden"},
		{name: "partner lists partners", method: "GET", path: "/v1/partners", secret: alpha, status: 403, code: "forbidden"},
		{name: "partner key on another partner", method: "GET", path: "/v1/partners/beta", secret: alpha, status: 403, code: "forbidden"},
		{name: "partner key on another's contracts", method: "GET", path: "/v1/partners/beta/contracts", secret: alpha, status: 403, code: "forbidden"},
		{name: "partner key on an unknown partner", method: "GET", path: "/v1/partners/nobody", secret: alpha, status: 403, code: "forbidden"},
		{name: "unknown partner", method: "GET", path: "/v1/partners/nobody", secret: e.operator, status: 404, code: "not_found"},
		{name: "unknown route", method: "GET", path: "/v1/nothing-here", secret: e.operator, status: 404, code: "not_found"},
		{name: "unknown route without a key", method: "GET", path: "/v2/partners", status: 404, code: "not_found"},
		{name: "wrong method", method: "DELETE", path: "/v1/coalition", secret: e.operator, status: 405, code: "method_not_allowed", header: "Allow", value: "GET"},
		{name: "invalid partner id", method: "POST", path: "/v1/partners", secret: e.operator, body: `{"id": "Not A Slug", "name": "X"}`, status: 422, code: "invalid_request", field: "id"},
		{name: "taken partner id", method: "POST", path: "/v1/partners", secret: e.operator, body: `{"id": "alpha", "name": "Again"}`, status: 409, code: "duplicate_reference"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var header []string
			if tc.auth != "" {
				header = []string{"Authorization", tc.auth}
			}
			res := e.request(tc.method, tc.path, tc.secret, tc.body, header...)
			got := res.wantError(t, tc.status, tc.code)
			if tc.field != "" && got.Details["field"] != tc.field {
				t.Errorf("details.field = %v, want %q", got.Details["field"], tc.field)
			}
			if tc.header != "" && !strings.Contains(res.Header.Get(tc.header), tc.value) {
				t.Errorf("%s = %q, want it to contain %q", tc.header, res.Header.Get(tc.header), tc.value)
			}
			if res.Header.Get(HeaderRequestID) == "" {
				t.Error("the answer has no X-Request-Id")
			}
		})
	}

	t.Run("oversized body without a length", func(t *testing.T) {
		// Chunked: the limit is found while reading, not from Content-Length.
		req, err := http.NewRequest("POST", e.http.URL+"/v1/partners", io.MultiReader(strings.NewReader(big)))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+e.operator)
		res := e.send(req)
		if req.ContentLength != -1 && req.ContentLength != 0 {
			t.Fatalf("the request declared its length %d", req.ContentLength)
		}
		res.wantError(t, 413, "body_too_large")
	})
	t.Run("nothing was written by the refused requests", func(t *testing.T) {
		var list partnerList
		e.request("GET", "/v1/partners", e.operator, nil).want(t, 200).decode(t, &list)
		if len(list.Partners) != 2 {
			t.Fatalf("partners = %+v, want alpha and beta only", list.Partners)
		}
	})
}

// TestInternalErrors checks that a failure or a panic is a 500 with a generic message,
// and that the log has the detail the client does not.
func TestInternalErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.srv.echo.GET("/test/fail", func(c echo.Context) error {
		return writeError(c, fmt.Errorf("load things: %w", errors.New("disk on fire")))
	})
	e.srv.echo.GET("/test/panic", func(c echo.Context) error { panic("boom") })
	e.srv.echo.GET("/test/timeout", func(c echo.Context) error { return fmt.Errorf("query: %w", context.DeadlineExceeded) })
	e.srv.echo.GET("/test/gone", func(c echo.Context) error { return fmt.Errorf("query: %w", context.Canceled) })

	for _, path := range []string{"/test/fail", "/test/panic"} {
		res := e.request("GET", path, "", nil)
		got := res.wantError(t, 500, "internal")
		if strings.Contains(string(res.Body), "disk on fire") || strings.Contains(string(res.Body), "boom") {
			t.Errorf("%s: the answer leaks the detail: %s", path, res.Body)
		}
		if got.Message != internalMessage {
			t.Errorf("%s: message = %q", path, got.Message)
		}
		id := res.Header.Get(HeaderRequestID)
		logged := e.logs.FilterField(zap.String("request_id", id)).All()
		if len(logged) != 1 {
			t.Fatalf("%s: %d log entries for request %s, want 1", path, len(logged), id)
		}
		text := fmt.Sprint(logged[0].ContextMap())
		if !strings.Contains(text, "disk on fire") && !strings.Contains(text, "boom") {
			t.Errorf("%s: the log does not have the detail: %s", path, text)
		}
		if path == "/test/panic" && !strings.Contains(text, "goroutine") {
			t.Errorf("the log of a panic has no stack: %s", text)
		}
	}
	timedOut := e.request("GET", "/test/timeout", "", nil)
	timedOut.wantError(t, 503, "timeout")
	if timedOut.Header.Get("Retry-After") == "" {
		t.Error("503 timeout without Retry-After")
	}
	// A client that went away is not a failure of the server: its own code, logged as info.
	res := e.request("GET", "/test/gone", "", nil)
	res.wantError(t, 503, "client_closed")
	if logged := e.logs.FilterField(zap.String("request_id", res.Header.Get(HeaderRequestID))).All(); len(logged) != 1 || logged[0].Level != zap.InfoLevel {
		t.Errorf("a request the client abandoned was logged as %+v, want one info line", logged)
	}
	if metrics := string(e.request("GET", "/metrics", "", nil).want(t, 200).Body); !strings.Contains(metrics,
		`status="499"} 1`) {
		t.Errorf("the abandoned request is not counted under 499:\n%s", metrics)
	}
	// The server still answers after a panic.
	e.request("GET", "/healthz", "", nil).want(t, 200)
}

// TestErrorMapping checks the one mapping from domain codes to statuses.
func TestErrorMapping(t *testing.T) {
	t.Parallel()
	cases := []struct {
		err    error
		status int
		code   ledger.Code
	}{
		{ledger.Errorf(ledger.CodeInsufficientPoints, "x"), 422, ledger.CodeInsufficientPoints},
		{ledger.Errorf(ledger.CodeInvalidAmount, "x"), 422, ledger.CodeInvalidAmount},
		{ledger.Errorf(partners.CodeMaxShare, "x"), 422, partners.CodeMaxShare},
		{ledger.Errorf(ledger.CodeIdempotencyConflict, "x"), 409, ledger.CodeIdempotencyConflict},
		{ledger.Errorf(ledger.CodeDuplicateReference, "x"), 409, ledger.CodeDuplicateReference},
		{ledger.Errorf(ledger.CodeHoldNotOpen, "x"), 409, ledger.CodeHoldNotOpen},
		{ledger.Errorf(partners.CodeSettingsFrozen, "x"), 409, partners.CodeSettingsFrozen},
		{ledger.Errorf(ledger.CodeNotFound, "x"), 404, ledger.CodeNotFound},
		{ledger.Errorf(ledger.CodeForbidden, "x"), 403, ledger.CodeForbidden},
		{fmt.Errorf("wrapped: %w", ledger.Errorf(ledger.CodeForbidden, "x")), 403, ledger.CodeForbidden},
		{ledger.Errorf(CodeMalformedJSON, "x"), 400, CodeMalformedJSON},
		{ledger.Errorf(CodeUnauthorized, "x"), 401, CodeUnauthorized},
		{ledger.Errorf(CodeIdempotencyKeyRequired, "x"), 400, CodeIdempotencyKeyRequired},
		{&http.MaxBytesError{Limit: 10}, 413, CodeBodyTooLarge},
		{echo.NewHTTPError(413, "a batch holds at most 1000 items"), 413, CodeBodyTooLarge},
		{echo.ErrNotFound, 404, ledger.CodeNotFound},
		{echo.ErrMethodNotAllowed, 405, CodeMethodNotAllowed},
		{echo.NewHTTPError(502), 500, CodeInternal},
		{errors.New("anything else"), 500, CodeInternal},
	}
	for _, tc := range cases {
		status, body := errorBody(tc.err)
		if status != tc.status || body.Error.Code != tc.code || body.Error.Details == nil || body.Error.Message == "" {
			t.Errorf("errorBody(%v) = %d %+v, want %d %s", tc.err, status, body, tc.status, tc.code)
		}
	}
}

// TestParseAmount checks that a bad amount names its field.
func TestParseAmount(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in    string
		scale int32
		code  ledger.Code
	}{
		{"1e3", 2, ledger.CodeInvalidAmount},
		{"-5", 2, ledger.CodeInvalidAmount},
		{"", 2, ledger.CodeInvalidAmount},
		{"12.345", 2, ledger.CodeInvalidScale},
		{"1.5", 0, ledger.CodeInvalidScale},
	}
	for _, tc := range cases {
		_, err := parseAmount("lines[0].amount", tc.in, tc.scale)
		var lerr *ledger.Error
		if !errors.As(err, &lerr) || lerr.Code != tc.code || lerr.Details["field"] != "lines[0].amount" ||
			!strings.HasPrefix(lerr.Message, "lines[0].amount: ") {
			t.Errorf("parseAmount(%q, %d) = %v (%+v), want %s naming the field", tc.in, tc.scale, err, lerr, tc.code)
		}
		if status, _ := errorBody(err); status != 422 {
			t.Errorf("parseAmount(%q): status %d, want 422", tc.in, status)
		}
	}
	d, err := parseAmount("amount", "39990.00", 2)
	if err != nil || d.String() != "39990" || d.Exponent() != -2 {
		t.Errorf("parseAmount(39990.00) = %s (exp %d), %v", d, d.Exponent(), err)
	}
}
