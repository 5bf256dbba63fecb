package api

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/shopspring/decimal"
	"go.uber.org/zap"

	"github.com/coalitionledger/coalition/ledger"
	"github.com/coalitionledger/coalition/partners"
)

const settingsEUR = `{"currency": "EUR", "point_value": "0.005", "points_scale": 0, "time_zone": "Europe/Berlin",
	"settlement_time": "03:30", "tiers": [{"name": "basic", "threshold": "0", "multiplier": "1"},
	{"name": "gold", "threshold": "10000", "multiplier": "1.5"}]}`

func TestCoalitionSettings(t *testing.T) {
	t.Parallel()
	e := newEnv(t)

	var got partners.Coalition
	e.request("GET", "/v1/coalition", e.auditor, nil).want(t, 200).decode(t, &got)
	if got.Currency != "USD" || !got.PointValue.Equal(decimal.RequireFromString("0.01")) || got.TimeZone != "UTC" {
		t.Fatalf("default settings = %+v", got)
	}

	res := e.request("PUT", "/v1/coalition", e.operator, settingsEUR).want(t, 200)
	if !strings.Contains(string(res.Body), `"point_value":"0.005"`) {
		t.Errorf("amounts must travel as decimal strings: %s", res.Body)
	}
	e.request("GET", "/v1/coalition", e.operator, nil).want(t, 200).decode(t, &got)
	if got.Currency != "EUR" || got.TimeZone != "Europe/Berlin" || got.SettlementTime != "03:30" || len(got.Tiers) != 2 ||
		!got.Tiers[1].Multiplier.Equal(decimal.RequireFromString("1.5")) {
		t.Fatalf("settings after PUT = %+v", got)
	}

	invalid := []struct {
		name, body, code, field string
	}{
		{"unknown currency", `{"currency": "XXX", "point_value": "0.01", "points_scale": 0, "time_zone": "UTC", "settlement_time": "02:00", "tiers": []}`, "unknown_unit", "currency"},
		{"point value as a number", `{"currency": "EUR", "point_value": 0.01, "points_scale": 0, "time_zone": "UTC", "settlement_time": "02:00", "tiers": []}`, "invalid_amount", "point_value"},
		{"point value with an exponent", `{"currency": "EUR", "point_value": "1e-2", "points_scale": 0, "time_zone": "UTC", "settlement_time": "02:00", "tiers": []}`, "invalid_amount", "point_value"},
		{"bad time zone", `{"currency": "EUR", "point_value": "0.01", "points_scale": 0, "time_zone": "Mars/Olympus", "settlement_time": "02:00", "tiers": []}`, "invalid_request", "time_zone"},
		{"bad settlement time", `{"currency": "EUR", "point_value": "0.01", "points_scale": 0, "time_zone": "UTC", "settlement_time": "25:00", "tiers": []}`, "invalid_request", "settlement_time"},
		{"unsorted tiers", `{"currency": "EUR", "point_value": "0.01", "points_scale": 0, "time_zone": "UTC", "settlement_time": "02:00",
			"tiers": [{"name": "a", "threshold": "10", "multiplier": "1"}, {"name": "b", "threshold": "5", "multiplier": "2"}]}`, "invalid_request", "tiers[1].threshold"},
		{"missing everything", `{}`, "invalid_request", "currency"},
		{"tiers left out", `{"currency": "EUR", "point_value": "0.01", "points_scale": 0, "time_zone": "UTC", "settlement_time": "02:00"}`, "invalid_request", "tiers"},
		{"points scale left out", `{"currency": "EUR", "point_value": "0.01", "time_zone": "UTC", "settlement_time": "02:00", "tiers": []}`, "invalid_request", "points_scale"},
	}
	for _, tc := range invalid {
		t.Run(tc.name, func(t *testing.T) {
			got := e.request("PUT", "/v1/coalition", e.operator, tc.body).wantError(t, 422, tc.code)
			if got.Details["field"] != tc.field {
				t.Errorf("details.field = %v, want %s (%s)", got.Details["field"], tc.field, got.Message)
			}
		})
	}
	var after partners.Coalition
	e.request("GET", "/v1/coalition", e.operator, nil).want(t, 200).decode(t, &after)
	if after.Currency != "EUR" || !after.PointValue.Equal(decimal.RequireFromString("0.005")) || len(after.Tiers) != 2 {
		t.Fatalf("a refused PUT changed the settings: %+v", after)
	}
}

// TestSettingsFreeze checks that the currency, points scale and time zone freeze at the
// first journal entry, and that the rest stays editable.
func TestSettingsFreeze(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.request("PUT", "/v1/coalition", e.operator, settingsEUR).want(t, 200)
	e.partner("alpha")
	_, err := e.ledger.PostOne(context.Background(), ledger.Entry{Kind: ledger.EntryEarn, Partner: "alpha", Member: ulid.Make().String(),
		BusinessTime: time.Now(), Op: ledger.Issue{Points: decimal.NewFromInt(100), Issuer: "alpha"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, change := range []struct{ from, to, field string }{
		{`"currency": "EUR"`, `"currency": "USD"`, "currency"},
		{`"points_scale": 0`, `"points_scale": 2`, "points_scale"},
		{`"time_zone": "Europe/Berlin"`, `"time_zone": "UTC"`, "time_zone"},
	} {
		body := strings.Replace(settingsEUR, change.from, change.to, 1)
		if got := e.request("PUT", "/v1/coalition", e.operator, body).wantError(t, 409, "settings_frozen"); got.Details["field"] != change.field {
			t.Errorf("changing %s: details %v", change.field, got.Details)
		}
	}
	body := strings.Replace(settingsEUR, `"point_value": "0.005"`, `"point_value": "0.006"`, 1)
	var got partners.Coalition
	e.request("PUT", "/v1/coalition", e.operator, body).want(t, 200).decode(t, &got)
	if got.Currency != "EUR" || !got.PointValue.Equal(decimal.RequireFromString("0.006")) {
		t.Fatalf("settings = %+v", got)
	}
}

func TestPartners(t *testing.T) {
	t.Parallel()
	e := newEnv(t)

	var p partners.Partner
	res := e.request("POST", "/v1/partners", e.operator, `{"id": "fuelco", "name": "FuelCo"}`).want(t, 201)
	res.decode(t, &p)
	if p.ID != "fuelco" || p.Name != "FuelCo" || p.Status != "active" || p.CreatedAt.IsZero() {
		t.Fatalf("created partner = %+v", p)
	}
	if loc := res.Header.Get("Location"); loc != "/v1/partners/fuelco" {
		t.Errorf("Location = %q", loc)
	}
	e.request("POST", "/v1/partners", e.operator, `{"id": "kids", "name": "Kids Wear"}`).want(t, 201)
	e.request("POST", "/v1/partners", e.operator, `{"id": "fuelco", "name": "Again"}`).wantError(t, 409, "duplicate_reference")
	for _, body := range []string{`{"id": "operator", "name": "X"}`, `{"id": "UPPER", "name": "X"}`, `{"id": "", "name": "X"}`} {
		if got := e.request("POST", "/v1/partners", e.operator, body).wantError(t, 422, "invalid_request"); got.Details["field"] != "id" {
			t.Errorf("%s: details.field = %v", body, got.Details["field"])
		}
	}
	if got := e.request("POST", "/v1/partners", e.operator, `{"id": "noname", "name": "  "}`).wantError(t, 422, "invalid_request"); got.Details["field"] != "name" {
		t.Errorf("blank name: details.field = %v", got.Details["field"])
	}

	var list partnerList
	e.request("GET", "/v1/partners", e.auditor, nil).want(t, 200).decode(t, &list)
	if len(list.Partners) != 2 || list.Partners[0].ID != "fuelco" || list.Partners[1].ID != "kids" {
		t.Fatalf("partners = %+v", list.Partners)
	}

	own := e.key(partners.RolePartner, "kids")
	e.request("GET", "/v1/partners/kids", own, nil).want(t, 200).decode(t, &p)
	if p.ID != "kids" || p.Name != "Kids Wear" {
		t.Fatalf("partner = %+v", p)
	}

	e.request("PATCH", "/v1/partners/kids", e.operator, `{"status": "suspended"}`).want(t, 200).decode(t, &p)
	if p.Status != "suspended" {
		t.Fatalf("status = %s", p.Status)
	}
	e.request("GET", "/v1/partners/kids", e.auditor, nil).want(t, 200).decode(t, &p)
	if p.Status != "suspended" {
		t.Fatalf("status after GET = %s", p.Status)
	}
	e.request("PATCH", "/v1/partners/kids", e.operator, `{"status": "active"}`).want(t, 200)
	if got := e.request("PATCH", "/v1/partners/kids", e.operator, `{"status": "closed"}`).wantError(t, 422, "invalid_request"); got.Details["field"] != "status" {
		t.Errorf("details.field = %v", got.Details["field"])
	}
	e.request("PATCH", "/v1/partners/kids", e.operator, `{"name": "Renamed"}`).wantError(t, 400, "malformed_json")
	e.request("PATCH", "/v1/partners/nobody", e.operator, `{"status": "active"}`).wantError(t, 404, "not_found")
}

const contractBody = `{"effective_from": %q, "earn": {"points_per_unit": "1"}, "category_multipliers": {"shoes": "2"},
	"expiry_days": 365, "max_share": "0.5", "fee_per_point": "0.002"}`

func TestContracts(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	own := e.partner("alpha")
	e.partner("beta")

	var v partners.ContractVersion
	// One instant for both posts: two calls of future would straddle a second now and then.
	inAnHour := future(1)
	e.request("POST", "/v1/partners/alpha/contracts", e.operator, fmt.Sprintf(contractBody, inAnHour)).want(t, 201).decode(t, &v)
	if v.Version != 1 || v.CreatedAt.IsZero() || v.Earn.PointsPerUnit == nil || !v.Earn.PointsPerUnit.Equal(decimal.NewFromInt(1)) ||
		v.ExpiryDays == nil || *v.ExpiryDays != 365 {
		t.Fatalf("version = %+v", v)
	}
	// Without effective_from a version takes effect when it is recorded.
	before := time.Now()
	e.request("POST", "/v1/partners/alpha/contracts", e.operator, `{"earn": {"percent_back": "3"}}`).want(t, 201).decode(t, &v)
	if v.Version != 2 || v.EffectiveFrom.Before(before) || v.EffectiveFrom.After(time.Now()) {
		t.Fatalf("version without effective_from = %+v", v)
	}

	invalid := []struct {
		name, body, status, code, field string
	}{
		{"in the past", fmt.Sprintf(contractBody, future(-1)), "422", "invalid_request", "effective_from"},
		{"same time twice", fmt.Sprintf(contractBody, inAnHour), "422", "invalid_request", "effective_from"},
		{"no earn rate", fmt.Sprintf(`{"effective_from": %q}`, future(2)), "422", "invalid_request", "earn"},
		{"rate as a number", fmt.Sprintf(`{"effective_from": %q, "earn": {"points_per_unit": 1}}`, future(2)), "422", "invalid_amount", "earn.points_per_unit"},
		{"negative fee", fmt.Sprintf(`{"effective_from": %q, "earn": {"points_per_unit": "1"}, "fee_per_point": "-1"}`, future(2)), "422", "invalid_amount", "fee_per_point"},
		{"other currency", fmt.Sprintf(`{"effective_from": %q, "currency": "EUR", "earn": {"points_per_unit": "1"}}`, future(2)), "422", "currency_mismatch", "currency"},
		{"no currency at all", fmt.Sprintf(`{"effective_from": %q, "currency": "EURO", "earn": {"points_per_unit": "1"}}`, future(2)), "422", "unknown_unit", "currency"},
		{"bad rounding", fmt.Sprintf(`{"effective_from": %q, "earn": {"points_per_unit": "1"}, "rounding": "up"}`, future(2)), "422", "invalid_request", "rounding"},
		{"unknown field", fmt.Sprintf(`{"effective_from": %q, "earn": {"points_per_unit": "1"}, "colour": "red"}`, future(2)), "400", "malformed_json", "colour"},
		{"effective_from not a time", `{"effective_from": "tomorrow", "earn": {"points_per_unit": "1"}}`, "400", "malformed_json", "effective_from"},
		{"promotion end not a time", fmt.Sprintf(`{"effective_from": %q, "earn": {"points_per_unit": "1"}, "promotions": [{"from": %q, "to": "soon", "multiplier": "2"}]}`, future(2), future(2)), "400", "malformed_json", "promotions[0].to"},
	}
	for _, tc := range invalid {
		t.Run(tc.name, func(t *testing.T) {
			status := 422
			if tc.status == "400" {
				status = 400
			}
			got := e.request("POST", "/v1/partners/alpha/contracts", e.operator, tc.body).wantError(t, status, tc.code)
			if tc.field != "" && got.Details["field"] != tc.field {
				t.Errorf("details.field = %v, want %s (%s)", got.Details["field"], tc.field, got.Message)
			}
		})
	}
	e.request("POST", "/v1/partners/nobody/contracts", e.operator, fmt.Sprintf(contractBody, future(3))).wantError(t, 404, "not_found")

	var list contractList
	e.request("GET", "/v1/partners/alpha/contracts", own, nil).want(t, 200).decode(t, &list)
	if len(list.Contracts) != 2 || list.Contracts[0].Version != 1 || list.Contracts[1].Version != 2 {
		t.Fatalf("contracts = %+v", list.Contracts)
	}
	e.request("GET", "/v1/partners/beta/contracts", e.auditor, nil).want(t, 200).decode(t, &list)
	if len(list.Contracts) != 0 {
		t.Fatalf("beta's contracts = %+v", list.Contracts)
	}
	if res := e.request("GET", "/v1/partners/beta/contracts", e.auditor, nil); !strings.Contains(string(res.Body), `"contracts":[]`) {
		t.Errorf("an empty list must be [] not null: %s", res.Body)
	}
	e.request("GET", "/v1/partners/nobody/contracts", e.operator, nil).wantError(t, 404, "not_found")
}

func TestKeys(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.partner("alpha")

	var k createdKey
	res := e.request("POST", "/v1/keys", e.operator, `{"role": "partner", "partner": "alpha"}`).want(t, 201)
	res.decode(t, &k)
	if k.ID == "" || k.Role != "partner" || k.Partner == nil || *k.Partner != "alpha" || k.Secret == "" {
		t.Fatalf("key = %+v", k)
	}
	if cc := res.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q: a secret must not be cached", cc)
	}
	// The new key works, for its own partner only.
	e.request("GET", "/v1/partners/alpha", k.Secret, nil).want(t, 200)
	e.request("GET", "/v1/partners", k.Secret, nil).wantError(t, 403, "forbidden")

	var op createdKey
	e.request("POST", "/v1/keys", e.operator, `{"role": "auditor"}`).want(t, 201).decode(t, &op)
	if op.Partner != nil || !strings.Contains(string(e.request("POST", "/v1/keys", e.operator, `{"role": "operator"}`).want(t, 201).Body), `"partner":null`) {
		t.Fatalf("an auditor or operator key has no partner: %+v", op)
	}
	e.request("GET", "/v1/coalition", op.Secret, nil).want(t, 200)

	e.request("POST", "/v1/keys", e.operator, `{"role": "partner"}`).wantError(t, 422, "invalid_request")
	e.request("POST", "/v1/keys", e.operator, `{"role": "operator", "partner": "alpha"}`).wantError(t, 422, "invalid_request")
	e.request("POST", "/v1/keys", e.operator, `{"role": "root"}`).wantError(t, 422, "invalid_request")
	e.request("POST", "/v1/keys", e.operator, `{"role": "partner", "partner": "nobody"}`).wantError(t, 404, "not_found")

	e.request("DELETE", "/v1/keys/"+k.ID, e.operator, nil).want(t, 204)
	e.request("GET", "/v1/partners/alpha", k.Secret, nil).wantError(t, 401, "unauthorized")
	e.request("DELETE", "/v1/keys/"+k.ID, e.operator, nil).wantError(t, 404, "not_found")

	// The list names every key, the revoked one with its time, and no secret.
	res = e.request("GET", "/v1/keys", e.operator, nil).want(t, 200)
	var list struct {
		Keys []struct {
			ID        string     `json:"id"`
			Role      string     `json:"role"`
			Partner   *string    `json:"partner"`
			CreatedAt time.Time  `json:"created_at"`
			RevokedAt *time.Time `json:"revoked_at"`
		} `json:"keys"`
	}
	res.decode(t, &list)
	found := false
	for _, l := range list.Keys {
		if l.ID == k.ID {
			found = l.Role == "partner" && l.Partner != nil && *l.Partner == "alpha" && l.RevokedAt != nil && !l.CreatedAt.IsZero()
		} else if l.RevokedAt != nil {
			t.Errorf("key %s is listed as revoked", l.ID)
		}
	}
	if !found || len(list.Keys) < 4 || strings.Contains(string(res.Body), k.Secret) || strings.Contains(string(res.Body), "secret") {
		t.Fatalf("keys listed: %s", res.Body)
	}

	// The secret is never logged.
	for _, entry := range e.logs.All() {
		if text := fmt.Sprint(entry.Message, entry.ContextMap()); strings.Contains(text, k.Secret) || strings.Contains(text, e.operator) {
			t.Fatalf("a secret is in the log: %s", text)
		}
	}
}

func TestRequestLog(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alpha := e.partner("alpha")

	res := e.request("GET", "/v1/partners/alpha", alpha, nil, HeaderRequestID, "till-42:abc")
	res.want(t, 200)
	if got := res.Header.Get(HeaderRequestID); got != "till-42:abc" {
		t.Fatalf("X-Request-Id = %q, want the client's", got)
	}
	logged := e.logs.FilterField(zap.String("request_id", "till-42:abc")).All()
	if len(logged) != 1 {
		t.Fatalf("%d log entries for the request, want 1", len(logged))
	}
	fields := logged[0].ContextMap()
	want := map[string]any{"method": "GET", "route": "/v1/partners/:partner", "status": int64(200), "role": "partner", "partner": "alpha"}
	for k, v := range want {
		if fields[k] != v {
			t.Errorf("log field %s = %v, want %v", k, fields[k], v)
		}
	}
	if _, ok := fields["duration"]; !ok {
		t.Error("the log has no duration")
	}

	// A missing or unusable request id is replaced by a fresh one.
	for _, id := range []string{"", "has spaces in it", strings.Repeat("x", 200)} {
		got := e.request("GET", "/healthz", "", nil, HeaderRequestID, id).want(t, 200).Header.Get(HeaderRequestID)
		if got == "" || got == id || len(got) > maxRequestIDLength {
			t.Errorf("request id %q answered with %q", id, got)
		}
	}
}

func TestHealthz(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	res := e.request("GET", "/healthz", "", nil).want(t, 200)
	if strings.TrimSpace(string(res.Body)) != `{"status":"ok"}` {
		t.Fatalf("healthz = %s", res.Body)
	}
	e.pool.Close()
	res = e.request("GET", "/healthz", "", nil).want(t, 503)
	if strings.TrimSpace(string(res.Body)) != `{"status":"unavailable"}` {
		t.Fatalf("healthz without a database = %s", res.Body)
	}
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.request("GET", "/v1/coalition", e.operator, nil).want(t, 200)
	e.request("GET", "/v1/coalition", "", nil).want(t, 401)
	e.request("GET", "/v1/partners/whatever", e.operator, nil).want(t, 404)
	e.request("GET", "/no/such/route/"+ulid.Make().String(), "", nil).want(t, 404)
	e.srv.countEntry(string(ledger.EntryEarn), false)
	e.srv.countEntry(string(ledger.EntryEarn), false)

	res := e.request("GET", "/metrics", "", nil).want(t, 200)
	text := string(res.Body)
	for _, want := range []string{
		`coalition_http_requests_total{method="GET",route="/v1/coalition",status="200"} 1`,
		`coalition_http_requests_total{method="GET",route="/v1/coalition",status="401"} 1`,
		`coalition_http_requests_total{method="GET",route="/v1/partners/:partner",status="404"} 1`,
		`coalition_http_requests_total{method="GET",route="unmatched",status="404"} 1`,
		`coalition_http_request_duration_seconds_bucket{method="GET",route="/v1/coalition",le="+Inf"} 2`,
		`coalition_http_errors_total{code="unauthorized"} 1`,
		`coalition_http_errors_total{code="not_found"} 2`,
		`coalition_entries_posted_total{kind="earn"} 2`,
		`# TYPE coalition_http_request_duration_seconds histogram`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(text, "/no/such/route") {
		t.Error("an unmatched path became a label")
	}
}

// Operator writes with an Idempotency-Key answer a retry with the first answer.
func TestOperatorWritesAreIdempotent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	first := e.request("POST", "/v1/partners", e.operator, `{"id": "kids", "name": "Kids"}`, "Idempotency-Key", "p-1").want(t, 201)
	again := e.request("POST", "/v1/partners", e.operator, `{"id": "kids", "name": "Kids"}`, "Idempotency-Key", "p-1").want(t, 201)
	if string(again.Body) != string(first.Body) || again.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay: %s", again.Body)
	}
	e.request("POST", "/v1/partners", e.operator, `{"id": "kids2", "name": "Kids"}`, "Idempotency-Key", "p-1").
		wantError(t, 409, "idempotency_conflict")
	body := fmt.Sprintf(`{"effective_from": %q, "earn": {"points_per_unit": "1"}}`, future(5))
	c1 := e.request("POST", "/v1/partners/kids/contracts", e.operator, body, "Idempotency-Key", "c-1").want(t, 201)
	c2 := e.request("POST", "/v1/partners/kids/contracts", e.operator, body, "Idempotency-Key", "c-1").want(t, 201)
	if string(c1.Body) != string(c2.Body) {
		t.Fatalf("contract replay: %s vs %s", c1.Body, c2.Body)
	}
	list, err := e.store.Contracts(context.Background(), "kids")
	if err != nil || len(list) != 1 {
		t.Fatalf("%d versions after a retried post, %v", len(list), err)
	}
	// A refusal is a first answer too.
	e.request("POST", "/v1/members", e.operator, `{"phone": "call me"}`, "Idempotency-Key", "m-1").wantError(t, 422, "invalid_phone")
	e.request("POST", "/v1/members", e.operator, `{"phone": "call me"}`, "Idempotency-Key", "m-1").wantError(t, 422, "invalid_phone")
}
