package api

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/coalitionledger/coalition/ledger"
	"github.com/coalitionledger/coalition/partners"
)

// coalitionEnv is a RUB coalition with a fuel chain and a grocer, and a key for each.
type coalitionEnv struct {
	*env
	fuel, grocer string // partner secrets
}

func newCoalitionEnv(t *testing.T, opts ...envOption) *coalitionEnv {
	t.Helper()
	e := &coalitionEnv{env: newEnv(t, opts...)}
	e.request(http.MethodPut, "/v1/coalition", e.operator, map[string]any{
		"currency": "RUB", "point_value": "1", "points_scale": 0, "time_zone": "Europe/Moscow", "settlement_time": "02:00",
		"tiers": []map[string]string{{"name": "basic", "threshold": "0", "multiplier": "1"}},
	}).want(t, http.StatusOK)
	e.fuel, e.grocer = e.partner("fuelco"), e.partner("grocer")
	ctx := context.Background()
	now := time.Now().Add(-time.Hour) // in force an hour ago, so that requests may be back-dated
	days := 365
	for id, k := range map[string]partners.Contract{
		"fuelco": {Earn: partners.EarnRate{PointsPerUnit: decPtr("0.1")}, CategoryMultipliers: map[string]decimal.Decimal{"shop": decimal.NewFromInt(3)}, ExpiryDays: &days},
		"grocer": {Earn: partners.EarnRate{PointsPerUnit: decPtr("0.05")}, MaxShare: decPtr("0.2")},
	} {
		k.EffectiveFrom, k.Currency = now, "RUB"
		if _, err := e.store.AddContract(ctx, id, k, now); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// post sends a partner write with an idempotency key.
func (e *coalitionEnv) post(path, secret, key string, body any) response {
	e.t.Helper()
	return e.request(http.MethodPost, path, secret, body, "Idempotency-Key", key)
}

type earnAnswer struct {
	Entry  struct{ ID string } `json:"entry"`
	Points string              `json:"points"`
	Member struct {
		ID      string `json:"id"`
		Balance string `json:"balance"`
	} `json:"member"`
	Lot struct {
		ID        string     `json:"id"`
		ExpiresAt *time.Time `json:"expires_at"`
	} `json:"lot"`
	Pricing map[string]any `json:"pricing"`
}

func TestEarnAndRedeemAcrossPartnersOverHTTP(t *testing.T) {
	t.Parallel()
	e := newCoalitionEnv(t)
	ctx := context.Background()
	// A fuel and shop basket, member known only by phone: enrolled on the spot.
	basket := map[string]any{"member": map[string]string{"phone": "+79161234567"}, "currency": "RUB",
		"lines":     []map[string]string{{"category": "fuel", "amount": "2000.00"}, {"category": "shop", "amount": "500.00"}},
		"reference": "till-1/0001"}
	r := e.post("/v1/partners/fuelco/earns", e.fuel, "e-1", basket).want(t, http.StatusCreated)
	var earned earnAnswer
	r.decode(t, &earned)
	if earned.Points != "350" || earned.Member.Balance != "350" || earned.Lot.ExpiresAt == nil || earned.Pricing["contract_effective_from"] == nil || earned.Pricing["contract_version"] != float64(1) {
		t.Fatalf("earn answer: %s", r.Body)
	}
	// The retry gets the first answer, and nothing is posted twice.
	again := e.post("/v1/partners/fuelco/earns", e.fuel, "e-1", basket).want(t, http.StatusCreated)
	if string(again.Body) != string(r.Body) || again.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay: %s", again.Body)
	}
	// The same key with another body is a conflict.
	basket["reference"] = "till-1/0002"
	e.post("/v1/partners/fuelco/earns", e.fuel, "e-1", basket).wantError(t, http.StatusConflict, "idempotency_conflict")
	// A reference is unique per partner and kind.
	e.post("/v1/partners/fuelco/earns", e.fuel, "e-2", map[string]any{"member": map[string]string{"id": earned.Member.ID},
		"amount": "10.00", "currency": "RUB", "reference": "till-1/0001"}).wantError(t, http.StatusConflict, "duplicate_reference")

	// The grocer lets points pay 20% of a purchase: 1000 RUB → 200 points at most.
	red := map[string]any{"member": map[string]string{"phone": "+7 (916) 123-45-67"}, "points": "250", "purchase_amount": "1000.00"}
	cap := e.post("/v1/partners/grocer/redemptions", e.grocer, "r-1", red).wantError(t, http.StatusUnprocessableEntity, "exceeds_max_share")
	if cap.Details["max_points"] != "200" {
		t.Fatalf("share cap details: %+v", cap.Details)
	}
	// Its replay is the same refusal, even once the rule would pass.
	red["purchase_amount"] = "1000.00"
	e.post("/v1/partners/grocer/redemptions", e.grocer, "r-1", red).wantError(t, http.StatusUnprocessableEntity, "exceeds_max_share")
	red["points"] = "200"
	r = e.post("/v1/partners/grocer/redemptions", e.grocer, "r-2", red).want(t, http.StatusCreated)
	var redeemed struct {
		Points string
		Value  struct{ Amount, Currency string }
		Member struct{ Balance string }
	}
	r.decode(t, &redeemed)
	if redeemed.Points != "200" || redeemed.Value.Amount != "200.00" || redeemed.Value.Currency != "RUB" || redeemed.Member.Balance != "150" {
		t.Fatalf("redemption answer: %s", r.Body)
	}
	// fuelco issued the points: it owes the grocer their value, to the kopeck.
	for acct, want := range map[string]string{"partner:fuelco:settlement": "200", "partner:grocer:settlement": "-200"} {
		if got, _ := e.ledger.Balance(ctx, acct); !got.Equal(decimal.RequireFromString(want)) {
			t.Errorf("%s = %s, want %s", acct, got, want)
		}
	}

	// Any partner may read a member's balance, tier and expiring points.
	r = e.request(http.MethodGet, "/v1/partners/grocer/members/phone:+79161234567", e.grocer, nil).want(t, http.StatusOK)
	var m struct {
		ID, Balance, Held string
		Tier              *string
		Expiring          []any
	}
	r.decode(t, &m)
	if m.ID != earned.Member.ID || m.Balance != "150" || m.Tier == nil || *m.Tier != "basic" {
		t.Fatalf("member answer: %s", r.Body)
	}
	e.request(http.MethodGet, "/v1/partners/grocer/members/card:404", e.grocer, nil).wantError(t, http.StatusNotFound, "not_found")
}

func TestBadAmountsAreRefusedAndWriteNothing(t *testing.T) {
	t.Parallel()
	e := newCoalitionEnv(t)
	member := map[string]string{"card": "1"}
	for name, tc := range map[string]struct {
		body   any
		status int
		code   string
	}{
		"too many decimals":  {map[string]any{"member": member, "amount": "10.001", "currency": "RUB"}, 422, "invalid_scale"},
		"exponent":           {map[string]any{"member": member, "amount": "1e3", "currency": "RUB"}, 422, "invalid_amount"},
		"negative":           {map[string]any{"member": member, "amount": "-10.00", "currency": "RUB"}, 422, "invalid_amount"},
		"absurd":             {map[string]any{"member": member, "amount": "99999999999999999.00", "currency": "RUB"}, 422, "invalid_amount"},
		"a number":           {`{"member": {"card": "1"}, "amount": 10.5, "currency": "RUB"}`, 400, "malformed_json"},
		"another currency":   {map[string]any{"member": member, "amount": "10.00", "currency": "EUR"}, 422, "currency_mismatch"},
		"no currency at all": {map[string]any{"member": member, "amount": "10.00", "currency": "XYZ"}, 422, "unknown_unit"},
		"lower case":         {map[string]any{"member": member, "amount": "10.00", "currency": "rub"}, 422, "unknown_unit"},
		"unknown field":      {`{"member": {"card": "1"}, "amount": "10.00", "currency": "RUB", "tip": "1"}`, 400, "malformed_json"},
		"two members":        {map[string]any{"member": map[string]string{"card": "1", "phone": "+79161234567"}, "amount": "10.00", "currency": "RUB"}, 422, "invalid_request"},
		"bad phone":          {map[string]any{"member": map[string]string{"phone": "call me"}, "amount": "10.00", "currency": "RUB"}, 422, "invalid_phone"},
		"time not RFC 3339":  {map[string]any{"member": member, "amount": "10.00", "currency": "RUB", "business_time": "2026-03-02 10:00"}, 400, "malformed_json"},
	} {
		t.Run(name, func(t *testing.T) {
			got := e.post("/v1/partners/fuelco/earns", e.fuel, "bad-"+name, tc.body).wantError(t, tc.status, tc.code)
			if name == "bad phone" && got.Details["field"] != "member.phone" {
				t.Errorf("details %v do not name member.phone", got.Details)
			}
			if name == "time not RFC 3339" && got.Details["field"] != "business_time" {
				t.Errorf("details %v do not name business_time", got.Details)
			}
			if tc.code == "unknown_unit" && got.Details["field"] != "currency" {
				t.Errorf("details %v do not name the currency", got.Details)
			}
		})
	}
	e.request(http.MethodPost, "/v1/partners/fuelco/earns", e.fuel, map[string]any{"member": member, "amount": "10.00", "currency": "RUB"}).
		wantError(t, http.StatusBadRequest, "idempotency_key_required")
	if got := e.post("/v1/partners/fuelco/redemptions", e.fuel, "nobody-1", map[string]any{"member": map[string]string{"card": "nobody"}, "points": "1"}).
		wantError(t, http.StatusNotFound, "not_found"); got.Details["field"] != "member" {
		t.Errorf("an unknown member's details %v do not name the member", got.Details)
	}
	if h, _ := e.ledger.Head(context.Background()); h.Position != 0 {
		t.Fatalf("refused requests wrote %d entries", h.Position)
	}
	// A suspended partner's requests are refused.
	e.request(http.MethodPatch, "/v1/partners/fuelco", e.operator, map[string]string{"status": "suspended"}).want(t, http.StatusOK)
	e.post("/v1/partners/fuelco/earns", e.fuel, "s-1", map[string]any{"member": member, "amount": "10.00", "currency": "RUB"}).
		wantError(t, http.StatusUnprocessableEntity, "partner_suspended")
}

func TestHoldsReversalsAndBatchOverHTTP(t *testing.T) {
	t.Parallel()
	e := newCoalitionEnv(t)
	ctx := context.Background()
	member := map[string]string{"card": "42"}
	var earned earnAnswer
	e.post("/v1/partners/fuelco/earns", e.fuel, "e-1", map[string]any{"member": member, "amount": "5000.00", "currency": "RUB", "reference": "r-5000"}).
		want(t, http.StatusCreated).decode(t, &earned) // 500 points

	// A hold, captured in part: the rest goes back.
	var h struct {
		Hold   struct{ ID, Status string }
		Member struct{ Balance, Held string }
	}
	e.post("/v1/partners/grocer/holds", e.grocer, "h-1", map[string]any{"member": member, "points": "100", "purchase_amount": "1000.00", "expires_in": 600}).
		want(t, http.StatusCreated).decode(t, &h)
	if h.Hold.Status != "open" || h.Member.Held != "100" || h.Member.Balance != "400" {
		t.Fatalf("hold: %+v", h)
	}
	e.post("/v1/partners/fuelco/holds/"+h.Hold.ID+"/capture", e.fuel, "c-0", nil).wantError(t, http.StatusNotFound, "not_found")
	var c struct {
		Points string
		Value  struct{ Amount string }
		Member struct{ Balance, Held string }
	}
	e.post("/v1/partners/grocer/holds/"+h.Hold.ID+"/capture", e.grocer, "c-1", map[string]string{"points": "60"}).
		want(t, http.StatusCreated).decode(t, &c)
	if c.Points != "60" || c.Value.Amount != "60.00" || c.Member.Balance != "440" || c.Member.Held != "0" {
		t.Fatalf("capture: %+v", c)
	}
	e.post("/v1/partners/grocer/holds/"+h.Hold.ID+"/void", e.grocer, "v-1", nil).wantError(t, http.StatusConflict, "hold_not_open")

	// A hold that times out is voided by the job.
	e.post("/v1/partners/grocer/holds", e.grocer, "h-2", map[string]any{"member": member, "points": "40", "purchase_amount": "1000.00", "expires_in": 1}).
		want(t, http.StatusCreated).decode(t, &h)
	if n, err := e.ledger.ReleaseExpiredHolds(ctx, time.Now().Add(2*time.Second), nil); err != nil || n != 1 {
		t.Fatalf("hold timeout job voided %d, %v", n, err)
	}
	if got, _ := e.ledger.Hold(ctx, h.Hold.ID); got.Status != ledger.HoldVoided {
		t.Fatalf("hold after its timeout: %+v", got)
	}

	// Half the purchase comes back: half the points, named by the original's reference.
	var rev struct {
		Points   string
		Reverses string
		Member   struct{ Balance string }
	}
	e.post("/v1/partners/fuelco/reversals", e.fuel, "x-1", map[string]any{"original_reference": "r-5000", "original_kind": "earn", "amount": "2500.00"}).
		want(t, http.StatusCreated).decode(t, &rev)
	if rev.Points != "250" || rev.Reverses != earned.Entry.ID || rev.Member.Balance != "190" {
		t.Fatalf("reversal: %+v", rev)
	}
	e.post("/v1/partners/fuelco/reversals", e.fuel, "x-2", map[string]any{"entry": earned.Entry.ID, "amount": "2500.01"}).
		wantError(t, http.StatusUnprocessableEntity, "reversal_exceeds_original")
	e.post("/v1/partners/grocer/reversals", e.grocer, "x-3", map[string]any{"entry": earned.Entry.ID}).
		wantError(t, http.StatusNotFound, "not_found")

	// A batch: each item answered as it would be alone, in order.
	r := e.post("/v1/partners/fuelco/batch", e.fuel, "", map[string]any{"items": []map[string]any{
		{"type": "earn", "idempotency_key": "b-1", "body": map[string]any{"member": member, "amount": "100.00", "currency": "RUB"}},
		{"type": "redemption", "idempotency_key": "b-2", "body": map[string]any{"member": member, "points": "100000"}},
		{"type": "earn", "idempotency_key": "b-3", "body": map[string]any{"member": member, "amount": "200.00", "currency": "RUB"}},
		{"type": "earn", "idempotency_key": "b-1", "body": map[string]any{"member": member, "amount": "100.00", "currency": "RUB"}},
		{"type": "teleport", "idempotency_key": "b-5", "body": map[string]any{}},
	}}).want(t, http.StatusOK)
	var batch struct {
		Items []struct {
			Status int             `json:"status"`
			Body   json.RawMessage `json:"body"`
		} `json:"items"`
	}
	r.decode(t, &batch)
	statuses := []int{}
	for _, it := range batch.Items {
		statuses = append(statuses, it.Status)
	}
	want := []int{201, 422, 201, 201, 422}
	for i := range want {
		if statuses[i] != want[i] {
			t.Fatalf("batch statuses %v, want %v: %s", statuses, want, r.Body)
		}
	}
	if string(batch.Items[3].Body) != string(batch.Items[0].Body) {
		t.Fatalf("a repeated key in a batch did not replay: %s", r.Body)
	}
	// The batch's earns went into the journal together: one engine batch, one record time.
	var first, third struct{ Entry struct{ ID string } }
	json.Unmarshal(batch.Items[0].Body, &first)
	json.Unmarshal(batch.Items[2].Body, &third)
	a, _ := e.ledger.Entry(ctx, first.Entry.ID)
	b, _ := e.ledger.Entry(ctx, third.Entry.ID)
	if a == nil || b == nil || b.Position != a.Position+1 || !a.RecordedAt.Equal(b.RecordedAt) {
		t.Fatalf("batch earns were not posted together: %+v %+v", a, b)
	}
	if mm, err := e.ledger.CheckBalances(ctx); err != nil || len(mm) > 0 {
		t.Fatalf("balances: %+v %v", mm, err)
	}
	if err := e.ledger.VerifyChain(ctx, nil); err != nil {
		t.Fatal(err)
	}
}

func TestRedemptionReversalOverHTTP(t *testing.T) {
	t.Parallel()
	e := newCoalitionEnv(t)
	ctx := context.Background()
	member := map[string]string{"card": "7"}
	e.post("/v1/partners/fuelco/earns", e.fuel, "e-1", map[string]any{"member": member, "amount": "3000.00", "currency": "RUB"}).
		want(t, http.StatusCreated) // 300 points from fuelco
	var red struct{ Entry struct{ ID string } }
	e.post("/v1/partners/grocer/redemptions", e.grocer, "r-1", map[string]any{"member": member, "points": "150", "purchase_amount": "1000.00", "reference": "sale-9"}).
		want(t, http.StatusCreated).decode(t, &red)
	// A part of the sale is refunded: 50 points back, a third of the money.
	var rev struct {
		Points   string
		Reverses string
		Member   struct{ Balance string }
	}
	e.post("/v1/partners/grocer/reversals", e.grocer, "x-1", map[string]any{"original_reference": "sale-9", "original_kind": "redemption", "points": "50"}).
		want(t, http.StatusCreated).decode(t, &rev)
	if rev.Points != "50" || rev.Reverses != red.Entry.ID || rev.Member.Balance != "200" {
		t.Fatalf("partial refund: %+v", rev)
	}
	if got, _ := e.ledger.Balance(ctx, "partner:fuelco:settlement"); !got.Equal(decimal.NewFromInt(100)) {
		t.Fatalf("fuelco owes %s after a third came back, want 100", got)
	}
	// The rest: every leg back to zero.
	e.post("/v1/partners/grocer/reversals", e.grocer, "x-2", map[string]any{"entry": red.Entry.ID}).want(t, http.StatusCreated)
	for _, acct := range []string{"partner:fuelco:settlement", "partner:grocer:settlement"} {
		if got, _ := e.ledger.Balance(ctx, acct); !got.IsZero() {
			t.Fatalf("%s = %s after the whole sale came back", acct, got)
		}
	}
	e.post("/v1/partners/grocer/reversals", e.grocer, "x-3", map[string]any{"entry": red.Entry.ID}).
		wantError(t, http.StatusUnprocessableEntity, "reversal_exceeds_original")
}

// Regressions from the review of the partner API.
func TestPartnerAPIReviewRegressions(t *testing.T) {
	t.Parallel()
	e := newCoalitionEnv(t)
	ctx := context.Background()
	member := map[string]string{"card": "r-1"}
	var earned earnAnswer
	e.post("/v1/partners/fuelco/earns", e.fuel, "e-1", map[string]any{"member": member, "amount": "100.00", "currency": "RUB"}).
		want(t, http.StatusCreated).decode(t, &earned) // 10 points on 100.00

	// The wrong field for the original's kind is refused, not ignored.
	e.post("/v1/partners/fuelco/reversals", e.fuel, "x-0", map[string]any{"entry": earned.Entry.ID, "points": "1"}).
		wantError(t, http.StatusUnprocessableEntity, "invalid_request")

	// Returns are cumulative: 5.00 and 5.00 reverse nothing yet but count; 90.00 takes the rest.
	var rev struct{ Points string }
	for i, amount := range []string{"5.00", "5.00", "90.00"} {
		e.post("/v1/partners/fuelco/reversals", e.fuel, "x-"+itoa(i+1), map[string]any{"entry": earned.Entry.ID, "amount": amount}).
			want(t, http.StatusCreated).decode(t, &rev)
	}
	if rev.Points != "9" {
		t.Fatalf("the last return reversed %s points, want 9 (10 in all)", rev.Points)
	}
	if bal, _ := e.ledger.Balance(ctx, "partner:fuelco:issued"); !bal.IsZero() {
		t.Fatalf("fuelco still has %s points issued after the whole purchase came back", bal)
	}

	// A capture of the partner's own points replays byte for byte, currency included.
	e.post("/v1/partners/fuelco/earns", e.fuel, "e-2", map[string]any{"member": member, "amount": "1000.00", "currency": "RUB"}).want(t, http.StatusCreated)
	var h struct{ Hold struct{ ID string } }
	past := time.Now().Add(-30 * time.Minute).UTC().Format(time.RFC3339)
	// A back-dated hold still runs expires_in from now.
	e.post("/v1/partners/fuelco/holds", e.fuel, "h-1", map[string]any{"member": member, "points": "10", "expires_in": 600, "business_time": past}).
		want(t, http.StatusCreated).decode(t, &h)
	first := e.post("/v1/partners/fuelco/holds/"+h.Hold.ID+"/capture", e.fuel, "c-1", nil).want(t, http.StatusCreated)
	again := e.post("/v1/partners/fuelco/holds/"+h.Hold.ID+"/capture", e.fuel, "c-1", nil).want(t, http.StatusCreated)
	if string(first.Body) != string(again.Body) {
		t.Fatalf("capture replay differs:\n%s\n%s", first.Body, again.Body)
	}

	// A refused earn enrols nobody.
	e.post("/v1/partners/fuelco/earns", e.fuel, "e-3", map[string]any{"member": map[string]string{"phone": "+12025550143"}, "amount": "10.00", "currency": "USD"}).
		wantError(t, http.StatusUnprocessableEntity, "currency_mismatch")
	e.request(http.MethodGet, "/v1/partners/fuelco/members/phone:+12025550143", e.fuel, nil).wantError(t, http.StatusNotFound, "not_found")

	// A batch item's key means what it means alone.
	body := map[string]any{"member": member, "amount": "20.00", "currency": "RUB"}
	e.post("/v1/partners/fuelco/batch", e.fuel, "b", map[string]any{"items": []map[string]any{
		{"type": "earn", "idempotency_key": "k-b", "body": body},
		{"type": "earn", "idempotency_key": "k-b", "body": map[string]any{"member": member, "amount": "x"}},
	}}).want(t, http.StatusOK)
	r := e.post("/v1/partners/fuelco/earns", e.fuel, "k-b", body).want(t, http.StatusCreated)
	if r.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("the batch item's key did not replay alone: %s", r.Body)
	}
	// A conflict is not a replay.
	c := e.post("/v1/partners/fuelco/earns", e.fuel, "k-b", map[string]any{"member": member, "amount": "21.00", "currency": "RUB"})
	c.wantError(t, http.StatusConflict, "idempotency_conflict")
	if c.Header.Get("Idempotent-Replayed") != "" {
		t.Fatal("a conflict was marked as a replay")
	}
	// An auditor's refusal does not become the operator's answer.
	e.request(http.MethodPost, "/v1/members", e.auditor, map[string]string{"card": "a-1"}, "Idempotency-Key", "m-1").wantError(t, http.StatusForbidden, "forbidden")
	e.request(http.MethodPost, "/v1/members", e.operator, map[string]string{"card": "a-1"}, "Idempotency-Key", "m-1").want(t, http.StatusCreated)
	if err := e.ledger.VerifyChain(ctx, nil); err != nil {
		t.Fatal(err)
	}
}

// A refusal is marked as replayed only when it answers a repeated request: the engine's
// own refusal (stored with its key as it is made) and a refusal before the engine alike.
func TestOnlyRepeatedRefusalsAreReplays(t *testing.T) {
	t.Parallel()
	e := newCoalitionEnv(t)
	member := map[string]string{"card": "r-1"}
	e.post("/v1/partners/fuelco/earns", e.fuel, "e-1", map[string]any{"member": member, "amount": "100.00", "currency": "RUB"}).
		want(t, http.StatusCreated)
	tooMuch := map[string]any{"member": member, "points": "1000"}
	for i, replayed := range []string{"", "true"} {
		r := e.post("/v1/partners/fuelco/redemptions", e.fuel, "r-1", tooMuch)
		r.wantError(t, http.StatusUnprocessableEntity, "insufficient_points")
		if got := r.Header.Get("Idempotent-Replayed"); got != replayed {
			t.Fatalf("engine refusal, request %d: Idempotent-Replayed %q, want %q", i+1, got, replayed)
		}
	}
	badCurrency := map[string]any{"member": member, "amount": "10.00", "currency": "USD"}
	for i, replayed := range []string{"", "true"} {
		r := e.post("/v1/partners/fuelco/earns", e.fuel, "e-2", badCurrency)
		r.wantError(t, http.StatusUnprocessableEntity, "currency_mismatch")
		if got := r.Header.Get("Idempotent-Replayed"); got != replayed {
			t.Fatalf("refusal before the engine, request %d: Idempotent-Replayed %q, want %q", i+1, got, replayed)
		}
	}
}

func TestHoldsAreNamedByTheirReference(t *testing.T) {
	t.Parallel()
	e := newCoalitionEnv(t)
	ctx := context.Background()
	member := map[string]string{"card": "77"}
	e.post("/v1/partners/fuelco/earns", e.fuel, "e-1", map[string]any{"member": member, "amount": "5000.00", "currency": "RUB"}).
		want(t, http.StatusCreated) // 500 points
	var h struct{ Hold struct{ ID string } }
	e.post("/v1/partners/grocer/holds", e.grocer, "h-1", map[string]any{"member": member, "points": "100", "purchase_amount": "1000.00", "reference": "till-4/17"}).
		want(t, http.StatusCreated).decode(t, &h)
	e.post("/v1/partners/grocer/holds/"+h.Hold.ID+"/capture", e.grocer, "c-1", map[string]string{"points": "80"}).want(t, http.StatusCreated)
	// A second capture is refused for the hold's state, not for its reference.
	e.post("/v1/partners/grocer/holds/"+h.Hold.ID+"/capture", e.grocer, "c-2", nil).wantError(t, http.StatusConflict, "hold_not_open")

	// The capture carries the hold's reference, and names its hold in its metadata.
	var list struct {
		Entries []struct {
			ID, Kind, Reference string
			Metadata            map[string]any
		}
	}
	e.request(http.MethodGet, "/v1/partners/grocer/entries?reference=till-4%2F17", e.grocer, nil).want(t, http.StatusOK).decode(t, &list)
	if len(list.Entries) != 2 || list.Entries[0].Kind != "hold" || list.Entries[1].Kind != "capture" ||
		list.Entries[1].Reference != "till-4/17" || list.Entries[1].Metadata["hold"] != h.Hold.ID {
		t.Fatalf("entries by the hold's reference: %+v", list)
	}
	capture := list.Entries[1].ID

	// The redemption it made is reversed by that reference, as a redemption or a capture.
	var rev struct {
		Points, Reverses string
		Member           struct{ Balance string }
	}
	e.post("/v1/partners/grocer/reversals", e.grocer, "x-1", map[string]any{"original_reference": "till-4/17", "original_kind": "redemption", "points": "30"}).
		want(t, http.StatusCreated).decode(t, &rev)
	if rev.Reverses != capture || rev.Points != "30" || rev.Member.Balance != "450" {
		t.Fatalf("reversal by the hold's reference: %+v", rev)
	}
	e.post("/v1/partners/grocer/reversals", e.grocer, "x-2", map[string]any{"original_reference": "till-4/17", "original_kind": "capture"}).
		want(t, http.StatusCreated).decode(t, &rev)
	if rev.Reverses != capture || rev.Points != "50" || rev.Member.Balance != "500" {
		t.Fatalf("reversal of the rest by original_kind capture: %+v", rev)
	}
	e.post("/v1/partners/grocer/reversals", e.grocer, "x-3", map[string]any{"original_reference": "till-4/17", "original_kind": "hold"}).
		wantError(t, http.StatusUnprocessableEntity, "invalid_request")

	// A suspended partner may still void its open holds (the points go back to the
	// member), but not capture them.
	e.post("/v1/partners/grocer/holds", e.grocer, "h-2", map[string]any{"member": member, "points": "40", "purchase_amount": "1000.00"}).
		want(t, http.StatusCreated).decode(t, &h)
	e.request(http.MethodPatch, "/v1/partners/grocer", e.operator, map[string]string{"status": "suspended"}).want(t, http.StatusOK)
	e.post("/v1/partners/grocer/holds/"+h.Hold.ID+"/capture", e.grocer, "c-3", nil).wantError(t, http.StatusUnprocessableEntity, "partner_suspended")
	var void struct {
		Member struct{ Balance, Held string }
	}
	e.post("/v1/partners/grocer/holds/"+h.Hold.ID+"/void", e.grocer, "v-1", nil).want(t, http.StatusCreated).decode(t, &void)
	if void.Member.Balance != "500" || void.Member.Held != "0" {
		t.Fatalf("void by a suspended partner: %+v", void)
	}
	// The timeout's release names its hold too.
	e.request(http.MethodPatch, "/v1/partners/grocer", e.operator, map[string]string{"status": "active"}).want(t, http.StatusOK)
	e.post("/v1/partners/grocer/holds", e.grocer, "h-3", map[string]any{"member": member, "points": "10", "purchase_amount": "1000.00", "expires_in": 1}).
		want(t, http.StatusCreated).decode(t, &h)
	if n, err := e.ledger.ReleaseExpiredHolds(ctx, time.Now().Add(2*time.Second), nil); err != nil || n != 1 {
		t.Fatalf("hold timeout job voided %d, %v", n, err)
	}
	head, _ := e.ledger.Head(ctx)
	tail, err := e.ledger.Journal(ctx, head.Position-1, 1)
	if err != nil || len(tail) != 1 || tail[0].Kind != ledger.EntryVoid || !strings.Contains(string(tail[0].Metadata), h.Hold.ID) {
		t.Fatalf("the timeout's void: %+v %v", tail, err)
	}

	// A partner reads its hold: its state, and what settled it (here the timeout job).
	type holdRead struct {
		ID, Partner, Points, Held, Status string
		Expired                           bool
		Member                            struct{ ID string }
		Entry                             struct{ ID string }
		SettledBy                         []struct{ Entry, Kind, Partner string } `json:"settled_by"`
	}
	var got holdRead
	e.request(http.MethodGet, "/v1/partners/grocer/holds/"+h.Hold.ID, e.grocer, nil).want(t, http.StatusOK).decode(t, &got)
	if got.ID != h.Hold.ID || got.Status != "voided" || got.Points != "10" || got.Held != "0" || got.Expired ||
		len(got.SettledBy) != 1 || got.SettledBy[0].Kind != "void" || got.SettledBy[0].Partner != ledger.OperatorIssuer ||
		got.SettledBy[0].Entry != tail[0].ID {
		t.Fatalf("the timed-out hold, read: %+v", got)
	}
	// An open hold past its expiry says so; another partner's hold is not found, and an
	// auditor may read it.
	e.post("/v1/partners/grocer/holds", e.grocer, "h-4", map[string]any{"member": member, "points": "10", "purchase_amount": "1000.00", "expires_in": 1}).
		want(t, http.StatusCreated).decode(t, &h)
	e.request(http.MethodGet, "/v1/partners/grocer/holds/"+h.Hold.ID, e.auditor, nil).want(t, http.StatusOK).decode(t, &got)
	if got.Status != "open" || got.Expired || len(got.SettledBy) != 0 || got.Member.ID == "" {
		t.Fatalf("an open hold, read: %+v", got)
	}
	time.Sleep(1100 * time.Millisecond)
	e.request(http.MethodGet, "/v1/partners/grocer/holds/"+h.Hold.ID, e.grocer, nil).want(t, http.StatusOK).decode(t, &got)
	if got.Status != "open" || !got.Expired {
		t.Fatalf("an open hold past its expiry, read: %+v", got)
	}
	e.request(http.MethodGet, "/v1/partners/fuelco/holds/"+h.Hold.ID, e.fuel, nil).wantError(t, http.StatusNotFound, "not_found")
	e.request(http.MethodGet, "/v1/partners/grocer/holds/"+h.Hold.ID, e.fuel, nil).wantError(t, http.StatusForbidden, "forbidden")
	if err := e.ledger.VerifyChain(ctx, nil); err != nil {
		t.Fatal(err)
	}
}
