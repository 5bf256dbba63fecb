package api

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/coalitionledger/coalition/partners"
)

// memberCount is how many members are enrolled.
func (e *coalitionEnv) memberCount() int {
	e.t.Helper()
	var n int
	if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM members`).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

// head is the journal's position.
func (e *coalitionEnv) head() int64 {
	e.t.Helper()
	h, err := e.ledger.Head(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return h.Position
}

func TestAnExplicitZeroIsRefusedNotTakenForAll(t *testing.T) {
	t.Parallel()
	e := newCoalitionEnv(t)
	member := map[string]string{"card": "70"}
	e.post("/v1/partners/fuelco/earns", e.fuel, "e-1", map[string]any{"member": member, "amount": "1500.00", "currency": "RUB", "reference": "z-1"}).
		want(t, http.StatusCreated) // 150 points
	var h struct{ Hold struct{ ID string } }
	e.post("/v1/partners/grocer/holds", e.grocer, "h-1", map[string]any{"member": member, "points": "10", "purchase_amount": "100.00"}).
		want(t, http.StatusCreated).decode(t, &h)
	var red struct{ Entry struct{ ID string } }
	e.post("/v1/partners/grocer/redemptions", e.grocer, "r-1", map[string]any{"member": member, "points": "20", "purchase_amount": "100.00", "reference": "z-2"}).
		want(t, http.StatusCreated).decode(t, &red)
	before := e.head()
	for name, tc := range map[string]struct {
		path, secret string
		body         any
	}{
		"capture of 0 points":             {"/v1/partners/grocer/holds/" + h.Hold.ID + "/capture", e.grocer, map[string]string{"points": "0"}},
		"earn reversal of 0.00":           {"/v1/partners/fuelco/reversals", e.fuel, map[string]any{"original_reference": "z-1", "original_kind": "earn", "amount": "0.00"}},
		"redemption reversal of 0 points": {"/v1/partners/grocer/reversals", e.grocer, map[string]any{"entry": red.Entry.ID, "points": "0"}},
		"redemption of 0 points":          {"/v1/partners/grocer/redemptions", e.grocer, map[string]any{"member": member, "points": "0", "purchase_amount": "100.00"}},
	} {
		t.Run(name, func(t *testing.T) {
			got := e.post(tc.path, tc.secret, "zero-"+name, tc.body).wantError(t, http.StatusUnprocessableEntity, "invalid_amount")
			if !strings.Contains(got.Message, "greater than zero") || got.Details["field"] == nil {
				t.Fatalf("error %+v does not say which field must be above zero", got)
			}
		})
	}
	if after := e.head(); after != before {
		t.Fatalf("refused zero requests posted %d entries", after-before)
	}
}

func TestEntriesByReference(t *testing.T) {
	t.Parallel()
	e := newCoalitionEnv(t)
	member := map[string]string{"card": "71"}
	var earned earnAnswer
	e.post("/v1/partners/fuelco/earns", e.fuel, "e-1", map[string]any{"member": member, "amount": "1000.00", "currency": "RUB", "reference": "till-9/001"}).
		want(t, http.StatusCreated).decode(t, &earned)
	e.post("/v1/partners/fuelco/redemptions", e.fuel, "r-1", map[string]any{"member": member, "points": "10", "reference": "till-9/001"}).
		want(t, http.StatusCreated)
	var list struct {
		Entries []struct {
			ID, Kind, Partner, Reference string
			Postings                     []struct{ Account, Amount string }
		}
	}
	e.request(http.MethodGet, "/v1/partners/fuelco/entries?reference=till-9%2F001", e.fuel, nil).want(t, http.StatusOK).decode(t, &list)
	if len(list.Entries) != 2 || list.Entries[0].ID != earned.Entry.ID || list.Entries[0].Kind != "earn" || list.Entries[1].Kind != "redemption" ||
		list.Entries[0].Reference != "till-9/001" || len(list.Entries[0].Postings) == 0 {
		t.Fatalf("entries by reference: %+v", list)
	}
	// Another partner's reference is not this partner's: an empty list, not its entries.
	e.request(http.MethodGet, "/v1/partners/grocer/entries?reference=till-9%2F001", e.grocer, nil).want(t, http.StatusOK).decode(t, &list)
	if len(list.Entries) != 0 {
		t.Fatalf("grocer sees fuelco's entries: %+v", list)
	}
	e.request(http.MethodGet, "/v1/partners/fuelco/entries?reference=till-9%2F001", e.grocer, nil).wantError(t, http.StatusForbidden, "forbidden")
	e.request(http.MethodGet, "/v1/partners/fuelco/entries", e.fuel, nil).wantError(t, http.StatusUnprocessableEntity, "invalid_request")
	e.request(http.MethodGet, "/v1/partners/fuelco/entries?ref=x", e.fuel, nil).wantError(t, http.StatusUnprocessableEntity, "invalid_request")
	e.request(http.MethodGet, "/v1/partners/nosuch/entries?reference=x", e.operator, nil).wantError(t, http.StatusNotFound, "not_found")
}

func TestPartialCaptureKeepsTheRedemptionRules(t *testing.T) {
	t.Parallel()
	e := newCoalitionEnv(t)
	electro := e.partner("electro")
	step := decimal.NewFromInt(50)
	now := time.Now().Add(-time.Hour)
	if _, err := e.store.AddContract(context.Background(), "electro", partners.Contract{EffectiveFrom: now, Currency: "RUB",
		Earn: partners.EarnRate{PointsPerUnit: decPtr("1")}, MinRedeem: decimal.NewFromInt(100), RedeemStep: &step}, now); err != nil {
		t.Fatal(err)
	}
	member := map[string]string{"card": "72"}
	e.post("/v1/partners/electro/earns", electro, "e-1", map[string]any{"member": member, "amount": "1000.00", "currency": "RUB"}).want(t, http.StatusCreated)
	var h struct{ Hold struct{ ID string } }
	e.post("/v1/partners/electro/holds", electro, "h-1", map[string]any{"member": member, "points": "300"}).want(t, http.StatusCreated).decode(t, &h)
	capture := "/v1/partners/electro/holds/" + h.Hold.ID + "/capture"
	e.post(capture, electro, "c-1", map[string]string{"points": "50"}).wantError(t, http.StatusUnprocessableEntity, "below_min_redeem")
	e.post(capture, electro, "c-2", map[string]string{"points": "120"}).wantError(t, http.StatusUnprocessableEntity, "not_a_redeem_step")
	// A redemption below the minimum names the field that asked for too little.
	for body, field := range map[string]map[string]any{
		"points": {"member": member, "points": "50", "reference": "r-min-1"},
		"value":  {"member": member, "value": "0.20", "reference": "r-min-2"},
	} {
		got := e.post("/v1/partners/electro/redemptions", electro, "r-"+body, field).wantError(t, http.StatusUnprocessableEntity, "below_min_redeem")
		if got.Details["field"] != body {
			t.Errorf("below_min_redeem by %s: details %v", body, got.Details)
		}
	}
	var c struct{ Points string }
	e.post(capture, electro, "c-3", map[string]string{"points": "150"}).want(t, http.StatusCreated).decode(t, &c)
	if c.Points != "150" {
		t.Fatalf("capture of 150: %+v", c)
	}
}

func TestNULCharactersAreRefusedAndWriteNothing(t *testing.T) {
	t.Parallel()
	e := newCoalitionEnv(t)
	members, head := e.memberCount(), e.head()
	e.post("/v1/partners/fuelco/earns", e.fuel, "n-1", `{"member": {"card": "12\u0000"}, "amount": "10.00", "currency": "RUB"}`).
		wantError(t, http.StatusUnprocessableEntity, "invalid_request")
	e.post("/v1/partners/fuelco/earns", e.fuel, "n-2", `{"member": {"card": "12"}, "amount": "10.00", "currency": "RUB", "reference": "a\u0000b"}`).
		wantError(t, http.StatusUnprocessableEntity, "invalid_request")
	e.post("/v1/partners/fuelco/batch", e.fuel, "n-3", `{"items": [
		{"type": "earn", "idempotency_key": "i-1", "body": {"member": {"card": "4401"}, "amount": "10.00", "currency": "RUB"}},
		{"type": "earn", "idempotency_key": "i-2", "body": {"member": {"card": "4402"}, "amount": "10.00", "currency": "RUB", "reference": "x\u0000"}}]}`).
		wantError(t, http.StatusUnprocessableEntity, "invalid_request")
	e.request(http.MethodGet, "/v1/partners/fuelco/members/card:50%0001", e.fuel, nil).wantError(t, http.StatusUnprocessableEntity, "invalid_request")
	e.post("/v1/partners/fuelco/holds/a%00b/void", e.fuel, "n-4", nil).wantError(t, http.StatusUnprocessableEntity, "invalid_request")
	// An escaped backslash before u0000 is text, not a NUL.
	e.post("/v1/partners/fuelco/earns", e.fuel, "n-5", `{"member": {"card": "13"}, "amount": "10.00", "currency": "RUB", "reference": "a\\u0000b"}`).
		want(t, http.StatusCreated)
	if got, want := e.memberCount(), members+1; got != want {
		t.Fatalf("members = %d, want %d: a refused request enrolled one", got, want)
	}
	if got := e.head(); got != head+1 {
		t.Fatalf("head moved by %d, want 1", got-head)
	}
}

func TestTextThatIsNotUTF8IsRefusedAndWritesNothing(t *testing.T) {
	t.Parallel()
	e := newCoalitionEnv(t)
	members, head := e.memberCount(), e.head()
	e.request(http.MethodGet, "/v1/partners/fuelco/members/card:%FF", e.fuel, nil).wantError(t, http.StatusUnprocessableEntity, "invalid_request")
	e.post("/v1/partners/fuelco/holds/a%FFb/void", e.fuel, "u-1", nil).wantError(t, http.StatusUnprocessableEntity, "invalid_request")
	e.request(http.MethodGet, "/v1/partners/fuelco/entries?reference=%FE", e.fuel, nil).wantError(t, http.StatusUnprocessableEntity, "invalid_request")
	e.request(http.MethodGet, "/v1/partners/fuelco/entries?reference=%00&%zz", e.fuel, nil).wantError(t, http.StatusUnprocessableEntity, "invalid_request")
	e.request(http.MethodGet, "/v1/partners/fuelco/entries?reference=%FF&x=%zz", e.fuel, nil).wantError(t, http.StatusUnprocessableEntity, "invalid_request")
	e.post("/v1/partners/fuelco/earns", e.fuel, "u-\xff", `{"member": {"card": "12"}, "amount": "10.00", "currency": "RUB"}`).
		wantError(t, http.StatusUnprocessableEntity, "invalid_request")
	if got := e.memberCount(); got != members {
		t.Fatalf("members = %d, want %d: a refused request enrolled one", got, members)
	}
	if got := e.head(); got != head {
		t.Fatalf("head moved by %d, want 0", got-head)
	}
	// The same earn with a good key posts.
	e.post("/v1/partners/fuelco/earns", e.fuel, "u-2", `{"member": {"card": "12"}, "amount": "10.00", "currency": "RUB"}`).want(t, http.StatusCreated)
}

func TestAnEarnOutsideTheWindowEnrolsNobody(t *testing.T) {
	t.Parallel()
	e := newCoalitionEnv(t)
	members := e.memberCount()
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	got := e.post("/v1/partners/fuelco/earns", e.fuel, "w-1", map[string]any{"member": map[string]string{"card": "3004"}, "amount": "10.00",
		"currency": "RUB", "business_time": future}).wantError(t, http.StatusUnprocessableEntity, "business_time_out_of_window")
	if got.Details["field"] != "business_time" {
		t.Fatalf("window error without its field: %+v", got)
	}
	// Before any contract was in force, the window still speaks first.
	past := time.Now().Add(-8 * 24 * time.Hour).UTC().Format(time.RFC3339)
	e.post("/v1/partners/fuelco/earns", e.fuel, "w-2", map[string]any{"member": map[string]string{"card": "3005"}, "amount": "10.00",
		"currency": "RUB", "business_time": past}).wantError(t, http.StatusUnprocessableEntity, "business_time_out_of_window")
	if n := e.memberCount(); n != members {
		t.Fatalf("refused earns enrolled %d members", n-members)
	}
}

func TestPercentEncodedPathParameters(t *testing.T) {
	t.Parallel()
	e := newCoalitionEnv(t)
	var earned earnAnswer
	e.post("/v1/partners/fuelco/earns", e.fuel, "p-1", map[string]any{"member": map[string]string{"phone": "+79161234567"}, "amount": "100.00", "currency": "RUB"}).
		want(t, http.StatusCreated).decode(t, &earned)
	for _, path := range []string{"phone:%2B79161234567", "phone%3A%2B79161234567", "phone:+79161234567"} {
		var m struct{ ID string }
		e.request(http.MethodGet, "/v1/partners/fuelco/members/"+path, e.fuel, nil).want(t, http.StatusOK).decode(t, &m)
		if m.ID != earned.Member.ID {
			t.Fatalf("member %s = %+v, want %s", path, m, earned.Member.ID)
		}
	}
	e.request(http.MethodGet, "/v1/members/phone:%2B79161234567/statement", e.operator, nil).want(t, http.StatusOK)
	e.request(http.MethodGet, "/v1/accounts/partner%3Afuelco%3Aissued", e.operator, nil).want(t, http.StatusOK)
	e.request(http.MethodGet, "/v1/partners/nosuch/members/phone:%2B79161234567", e.operator, nil).wantError(t, http.StatusNotFound, "not_found")
}

func TestEarnMetadataIsKept(t *testing.T) {
	t.Parallel()
	e := newCoalitionEnv(t)
	var earned earnAnswer
	e.post("/v1/partners/fuelco/earns", e.fuel, "m-1", map[string]any{"member": map[string]string{"card": "73"}, "amount": "100.00", "currency": "RUB",
		"metadata": map[string]any{"till": "9", "receipt": 1234}}).want(t, http.StatusCreated).decode(t, &earned)
	p, err := e.ledger.Entry(context.Background(), earned.Entry.ID)
	if err != nil {
		t.Fatal(err)
	}
	var meta struct {
		Client struct {
			Till    string `json:"till"`
			Receipt int    `json:"receipt"`
		} `json:"client"`
	}
	if err := json.Unmarshal(p.Metadata, &meta); err != nil || meta.Client.Till != "9" || meta.Client.Receipt != 1234 {
		t.Fatalf("entry metadata %s lost the client's (%v)", p.Metadata, err)
	}
	e.post("/v1/partners/fuelco/earns", e.fuel, "m-2", map[string]any{"member": map[string]string{"card": "73"}, "amount": "100.00", "currency": "RUB",
		"metadata": []int{1}}).wantError(t, http.StatusUnprocessableEntity, "invalid_request")
}

func TestARetryWithOtherSpacingOrKeyOrderIsAReplay(t *testing.T) {
	t.Parallel()
	e := newCoalitionEnv(t)
	first := e.post("/v1/partners/fuelco/earns", e.fuel, "k-1", `{"member": {"card": "74"}, "amount": "100.00", "currency": "RUB"}`).want(t, http.StatusCreated)
	again := e.post("/v1/partners/fuelco/earns", e.fuel, "k-1", `{"currency":"RUB","amount":"100.00","member":{"card":"74"}}`).want(t, http.StatusCreated)
	if again.Header.Get("Idempotent-Replayed") != "true" || string(again.Body) != string(first.Body) {
		t.Fatalf("a reordered retry was not replayed: %s", again.Body)
	}
	e.post("/v1/partners/fuelco/earns", e.fuel, "k-1", `{"currency":"RUB","amount":"100.01","member":{"card":"74"}}`).
		wantError(t, http.StatusConflict, "idempotency_conflict")
}

func TestUnknownQueryParametersAreRefused(t *testing.T) {
	t.Parallel()
	e := newCoalitionEnv(t)
	got := e.request(http.MethodGet, "/v1/trial-balance?asof=2026-11-23", e.operator, nil).wantError(t, http.StatusUnprocessableEntity, "invalid_request")
	if got.Details["field"] != "asof" || !strings.Contains(got.Message, "as_of") {
		t.Fatalf("error %+v does not name the parameter and the ones the route takes", got)
	}
	e.request(http.MethodGet, "/v1/trial-balance?position=1&partner=fuelco", e.operator, nil).want(t, http.StatusOK)
	// Every reading route: a filter it does not have is refused, not ignored.
	for _, path := range []string{"/v1/keys?role=partner", "/v1/partners?status=active", "/v1/coalition?x=1",
		"/v1/partners/fuelco?x=1", "/v1/partners/fuelco/contracts?x=1"} {
		e.request(http.MethodGet, path, e.operator, nil).wantError(t, http.StatusUnprocessableEntity, "invalid_request")
	}
}

func TestHoldLimitsAndPhoneRegionAreConfigured(t *testing.T) {
	t.Parallel()
	e := newCoalitionEnv(t, func(c *Config) { c.PhoneRegion, c.HoldDefault, c.HoldMax = "RU", time.Minute, 2*time.Minute })
	var earned earnAnswer
	e.post("/v1/partners/fuelco/earns", e.fuel, "e-1", map[string]any{"member": map[string]string{"phone": "8 (916) 123-45-67"}, "amount": "1000.00", "currency": "RUB"}).
		want(t, http.StatusCreated).decode(t, &earned)
	var m struct{ Phone string }
	e.request(http.MethodGet, "/v1/partners/fuelco/members/"+earned.Member.ID, e.fuel, nil).want(t, http.StatusOK).decode(t, &m)
	if m.Phone != "+79161234567" {
		t.Fatalf("a national number read in region RU = %q", m.Phone)
	}
	member := map[string]string{"id": earned.Member.ID}
	e.post("/v1/partners/fuelco/holds", e.fuel, "h-1", map[string]any{"member": member, "points": "10", "expires_in": 121}).
		wantError(t, http.StatusUnprocessableEntity, "invalid_request")
	var h struct {
		Hold struct {
			ExpiresAt time.Time `json:"expires_at"`
		}
	}
	e.post("/v1/partners/fuelco/holds", e.fuel, "h-2", map[string]any{"member": member, "points": "10"}).want(t, http.StatusCreated).decode(t, &h)
	if left := time.Until(h.Hold.ExpiresAt); left > time.Minute || left < 50*time.Second {
		t.Fatalf("a hold without expires_in expires in %s, want the configured minute", left)
	}
}

func TestWantsCSVReadsQualitiesAndCase(t *testing.T) {
	for accept, want := range map[string]bool{
		"":                                     false,
		"text/csv":                             true,
		"TEXT/CSV":                             true,
		"text/csv; charset=utf-8":              true,
		"application/json":                     false,
		"*/*":                                  false,
		"text/csv, application/json":           true,
		"application/json, text/csv":           false,
		"text/csv;q=0.9, application/json":     false,
		"application/json;q=0.5, text/csv":     true,
		"text/csv;q=0, */*":                    false,
		"application/json;q=bad, text/csv;q=1": true,
	} {
		if got := wantsCSV(accept); got != want {
			t.Errorf("wantsCSV(%q) = %v, want %v", accept, got, want)
		}
	}
}

func TestConfirmTakesNoFields(t *testing.T) {
	t.Parallel()
	e := newCoalitionEnv(t)
	e.request(http.MethodPost, "/v1/settlements/2026-01-01/instructions/fuelco/confirm", e.operator, `{"amount": "1.00"}`).
		wantError(t, http.StatusBadRequest, "malformed_json")
}

func TestTheCurrencyCannotLeaveContractsBehind(t *testing.T) {
	t.Parallel()
	e := newCoalitionEnv(t)
	got := e.request(http.MethodPut, "/v1/coalition", e.operator, map[string]any{
		"currency": "JPY", "point_value": "1", "points_scale": 0, "time_zone": "Europe/Moscow", "settlement_time": "02:00",
		"tiers": []map[string]string{{"name": "basic", "threshold": "0", "multiplier": "1"}},
	}).wantError(t, http.StatusConflict, "settings_frozen")
	if got.Details["field"] != "currency" || got.Details["partner"] == nil {
		t.Fatalf("error %+v does not say which contract holds the currency", got)
	}
	// A purchase in another currency hears so, whatever its decimals.
	e.post("/v1/partners/fuelco/earns", e.fuel, "c-1", map[string]any{"member": map[string]string{"card": "75"}, "amount": "10.001", "currency": "USD"}).
		wantError(t, http.StatusUnprocessableEntity, "currency_mismatch")
}

func TestAnAccountOfTheChartNeverPostedToIsAtZero(t *testing.T) {
	t.Parallel()
	e := newCoalitionEnv(t)
	for path, unit := range map[string]string{"/v1/accounts/partner:fuelco:expired": `"PTS"`, "/v1/accounts/operator:awards": `"RUB"`} {
		r := e.request(http.MethodGet, path, e.auditor, nil).want(t, http.StatusOK)
		if !strings.Contains(string(r.Body), `"postings":[]`) || !strings.Contains(string(r.Body), `"unit":`+unit) {
			t.Fatalf("%s: %s", path, r.Body)
		}
	}
	e.request(http.MethodGet, "/v1/accounts/partner:nosuch:issued", e.auditor, nil).wantError(t, http.StatusNotFound, "not_found")
}

func TestALateReturnKeepsItsBusinessTime(t *testing.T) {
	t.Parallel()
	e := newCoalitionEnv(t)
	var earned earnAnswer
	bought := time.Now().Add(-50 * time.Minute).UTC().Truncate(time.Second)
	e.post("/v1/partners/fuelco/earns", e.fuel, "e-1", map[string]any{"member": map[string]string{"card": "76"}, "amount": "1000.00", "currency": "RUB",
		"business_time": bought.Format(time.RFC3339)}).want(t, http.StatusCreated).decode(t, &earned)
	e.post("/v1/partners/fuelco/reversals", e.fuel, "x-1", map[string]any{"entry": earned.Entry.ID, "amount": "100.00",
		"business_time": bought.Add(-time.Minute).Format(time.RFC3339)}).wantError(t, http.StatusUnprocessableEntity, "invalid_request")
	e.post("/v1/partners/fuelco/reversals", e.fuel, "x-3", map[string]any{"entry": earned.Entry.ID, "amount": "100.00",
		"business_time": bought.Add(72 * time.Hour).Format(time.RFC3339)}).wantError(t, http.StatusUnprocessableEntity, "business_time_out_of_window")
	returned := bought.Add(10 * time.Minute)
	var rev struct{ Entry struct{ ID string } }
	e.post("/v1/partners/fuelco/reversals", e.fuel, "x-2", map[string]any{"entry": earned.Entry.ID, "amount": "100.00",
		"business_time": returned.Format(time.RFC3339)}).want(t, http.StatusCreated).decode(t, &rev)
	p, err := e.ledger.Entry(context.Background(), rev.Entry.ID)
	if err != nil || !p.BusinessTime.Equal(returned) {
		t.Fatalf("reversal business time %v (%v), want %v", p.BusinessTime, err, returned)
	}
}

func TestAnEarnWithAUsedReferenceEnrolsNobody(t *testing.T) {
	t.Parallel()
	e := newCoalitionEnv(t)
	e.post("/v1/partners/fuelco/earns", e.fuel, "u-1", map[string]any{"member": map[string]string{"card": "3001"}, "amount": "10.00", "currency": "RUB", "reference": "k1"}).
		want(t, http.StatusCreated)
	members := e.memberCount()
	e.post("/v1/partners/fuelco/earns", e.fuel, "u-2", map[string]any{"member": map[string]string{"card": "3002"}, "amount": "10.00", "currency": "RUB", "reference": "k1"}).
		wantError(t, http.StatusConflict, "duplicate_reference")
	// The refusal is the key's first answer, as the writer's would be.
	again := e.post("/v1/partners/fuelco/earns", e.fuel, "u-2", map[string]any{"member": map[string]string{"card": "3002"}, "amount": "10.00", "currency": "RUB", "reference": "k1"})
	again.wantError(t, http.StatusConflict, "duplicate_reference")
	if again.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("the refusal was not stored as the key's answer")
	}
	r := e.post("/v1/partners/fuelco/batch", e.fuel, "", map[string]any{"items": []map[string]any{
		{"type": "earn", "idempotency_key": "u-3", "body": map[string]any{"member": map[string]string{"card": "3003"}, "amount": "10.00", "currency": "RUB", "reference": "k1"}},
		{"type": "earn", "idempotency_key": "u-4", "body": map[string]any{"member": map[string]string{"card": "3004"}, "amount": "10.00", "currency": "RUB", "reference": "k2"}},
	}}).want(t, http.StatusOK)
	if !strings.Contains(string(r.Body), `"status":409`) || !strings.Contains(string(r.Body), `"status":201`) {
		t.Fatalf("batch: %s", r.Body)
	}
	if got, want := e.memberCount(), members+1; got != want {
		t.Fatalf("members = %d, want %d: only card 3004 is new", got, want)
	}
}

func TestTheOperatorAwardsPoints(t *testing.T) {
	t.Parallel()
	e := newCoalitionEnv(t)
	var earned earnAnswer
	e.post("/v1/partners/fuelco/earns", e.fuel, "e-1", map[string]any{"member": map[string]string{"card": "77"}, "amount": "100.00", "currency": "RUB"}).
		want(t, http.StatusCreated).decode(t, &earned) // 10 points
	path := "/v1/members/card:77/awards"
	body := map[string]any{"points": "50", "reason": "sorry for the queue", "expiry_days": 30}
	var a struct {
		Entry  struct{ ID string }
		Points string
		Reason string
		Member struct{ ID, Balance string }
		Lot    struct {
			ID        string
			ExpiresAt *time.Time `json:"expires_at"`
		}
	}
	first := e.request(http.MethodPost, path, e.operator, body, "Idempotency-Key", "goodwill-1").want(t, http.StatusCreated)
	first.decode(t, &a)
	if a.Points != "50" || a.Reason != "sorry for the queue" || a.Member.ID != earned.Member.ID || a.Member.Balance != "60" || a.Lot.ExpiresAt == nil {
		t.Fatalf("award: %s", first.Body)
	}
	again := e.request(http.MethodPost, path, e.operator, body, "Idempotency-Key", "goodwill-1").want(t, http.StatusCreated)
	if again.Header.Get("Idempotent-Replayed") != "true" || string(again.Body) != string(first.Body) {
		t.Fatalf("replay: %s", again.Body)
	}
	e.request(http.MethodPost, path, e.operator, map[string]any{"points": "51", "reason": "x"}, "Idempotency-Key", "goodwill-1").
		wantError(t, http.StatusConflict, "idempotency_conflict")
	e.request(http.MethodPost, path, e.operator, map[string]any{"points": "5"}, "Idempotency-Key", "g-2").wantError(t, http.StatusUnprocessableEntity, "invalid_request")
	e.request(http.MethodPost, path, e.operator, map[string]any{"points": "0", "reason": "x"}, "Idempotency-Key", "g-3").wantError(t, http.StatusUnprocessableEntity, "invalid_amount")
	e.request(http.MethodPost, path, e.operator, body).wantError(t, http.StatusBadRequest, "idempotency_key_required")
	e.request(http.MethodPost, "/v1/members/card:nobody/awards", e.operator, body, "Idempotency-Key", "g-4").wantError(t, http.StatusNotFound, "not_found")
	// A refusal is the key's first answer: once card nobody is enrolled, the retry is
	// still refused, and posts nothing.
	e.post("/v1/partners/fuelco/earns", e.fuel, "e-2", map[string]any{"member": map[string]string{"card": "nobody"}, "amount": "100.00", "currency": "RUB"}).
		want(t, http.StatusCreated)
	head := e.head()
	replayed := e.request(http.MethodPost, "/v1/members/card:nobody/awards", e.operator, body, "Idempotency-Key", "g-4")
	replayed.wantError(t, http.StatusNotFound, "not_found")
	if replayed.Header.Get("Idempotent-Replayed") != "true" || e.head() != head {
		t.Fatalf("the retry of a refused award: %s %v, head moved by %d", replayed.Body, replayed.Header, e.head()-head)
	}
	// An award that posted still answers its retry with itself.
	e.request(http.MethodPost, path, e.operator, body, "Idempotency-Key", "goodwill-1").want(t, http.StatusCreated)
	e.request(http.MethodPost, path, e.auditor, body, "Idempotency-Key", "g-5").wantError(t, http.StatusForbidden, "forbidden")
	e.request(http.MethodPost, path, e.fuel, body, "Idempotency-Key", "g-6").wantError(t, http.StatusForbidden, "forbidden")
	// Spent at the grocer, the award's points are the operator's to pay for.
	e.post("/v1/partners/grocer/redemptions", e.grocer, "r-1", map[string]any{"member": map[string]string{"card": "77"}, "points": "20", "purchase_amount": "1000.00"}).
		want(t, http.StatusCreated)
	if b, err := e.ledger.Balance(context.Background(), "operator:awards"); err != nil || !b.IsPositive() {
		t.Fatalf("operator:awards = %s, %v; want the value of the award points taken", b, err)
	}
	// Older history is imported: before the window only with "import", which needs its
	// business time and still may not lie in the future.
	old := time.Now().Add(-60 * 24 * time.Hour).UTC().Format(time.RFC3339)
	carried := map[string]any{"points": "7", "reason": "carried over from the old programme", "business_time": old}
	e.request(http.MethodPost, path, e.operator, carried, "Idempotency-Key", "imp-1").
		wantError(t, http.StatusUnprocessableEntity, "business_time_out_of_window")
	carried["import"] = true
	var imported struct {
		Member struct{ Balance string }
	}
	e.request(http.MethodPost, path, e.operator, carried, "Idempotency-Key", "imp-2").want(t, http.StatusCreated).decode(t, &imported)
	if imported.Member.Balance != "47" { // 60 − 20 + 7
		t.Fatalf("balance after the import %s, want 47", imported.Member.Balance)
	}
	got := e.request(http.MethodPost, path, e.operator, map[string]any{"points": "7", "reason": "x", "import": true}, "Idempotency-Key", "imp-3").
		wantError(t, http.StatusUnprocessableEntity, "invalid_request")
	if got.Details["field"] != "business_time" {
		t.Fatalf("an import without its time: %+v", got)
	}
	ahead := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	e.request(http.MethodPost, path, e.operator, map[string]any{"points": "7", "reason": "x", "import": true, "business_time": ahead}, "Idempotency-Key", "imp-4").
		wantError(t, http.StatusUnprocessableEntity, "business_time_out_of_window")
	e.booksBalance()
}

func TestRequestHashComparesJSONValuesWithExactNumbers(t *testing.T) {
	t.Parallel()
	hash := func(body string) string {
		return string(requestHash(http.MethodPost, "/v1/partners/p/earns", []byte(body)))
	}
	for _, same := range [][2]string{
		{`{"a": 1, "b": {"c": "x"}}`, "{\"b\":{\"c\":\"x\"},\n \"a\":1}"},
		{`{"s": "é<&>"}`, `{"s": "\u00e9\u003c\u0026\u003e"}`},
		{` {"a": [1, 2]} `, `{"a":[1,2]}`},
	} {
		if hash(same[0]) != hash(same[1]) {
			t.Errorf("%s and %s hash apart; they are one JSON value", same[0], same[1])
		}
	}
	for _, apart := range [][2]string{
		{`{"metadata": {"order": 9007199254740993}}`, `{"metadata": {"order": 9007199254740992}}`},
		{`{"n": 1.0}`, `{"n": 1}`},
		{`{"a": 1}`, `{"a": 1} {"b": 2}`},
		{`{"a": "1"}`, `{"a": 1}`},
	} {
		if hash(apart[0]) == hash(apart[1]) {
			t.Errorf("%s and %s hash alike", apart[0], apart[1])
		}
	}
}

func TestReplaysAreNotCountedAsEntriesPosted(t *testing.T) {
	t.Parallel()
	e := newCoalitionEnv(t)
	earn := map[string]any{"member": map[string]string{"card": "78"}, "amount": "1000.00", "currency": "RUB"}
	for range 3 {
		e.post("/v1/partners/fuelco/earns", e.fuel, "m-1", earn).want(t, http.StatusCreated)
	}
	redeem := map[string]any{"member": map[string]string{"card": "78"}, "points": "10", "purchase_amount": "1000.00"}
	for range 2 {
		e.post("/v1/partners/grocer/redemptions", e.grocer, "m-2", redeem).want(t, http.StatusCreated)
	}
	award := map[string]any{"points": "5", "reason": "goodwill"}
	for range 2 {
		e.request(http.MethodPost, "/v1/members/card:78/awards", e.operator, award, "Idempotency-Key", "m-3").want(t, http.StatusCreated)
	}
	text := string(e.request(http.MethodGet, "/metrics", "", nil).want(t, http.StatusOK).Body)
	for _, want := range []string{`coalition_entries_posted_total{kind="earn"} 1`, `coalition_entries_posted_total{kind="redemption"} 1`,
		`coalition_entries_posted_total{kind="award"} 1`} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
