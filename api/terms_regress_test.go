package api

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/coalitionledger/coalition/partners"
)

// A key whose first answer is a posted earn keeps that answer: a request with the same
// key and another body is a 409, and a replay stays the stored 201, even when the
// request now prices to zero points (and so never reaches the writer).
func TestZeroPointEarnKeepsItsKeysFirstAnswer(t *testing.T) {
	t.Parallel()
	e := newCoalitionEnv(t)
	member := map[string]string{"card": "z-1"}
	first := map[string]any{"member": member, "amount": "100.00", "currency": "RUB"}
	e.post("/v1/partners/fuelco/earns", e.fuel, "k-z", first).want(t, http.StatusCreated)

	// Same key, another body that earns nothing (0.1 point per rouble, rounded down).
	other := map[string]any{"member": member, "amount": "5.00", "currency": "RUB"}
	e.post("/v1/partners/fuelco/earns", e.fuel, "k-z", other).wantError(t, http.StatusConflict, "idempotency_conflict")
}

func TestReplayAfterAContractChangeGetsTheFirstAnswer(t *testing.T) {
	t.Parallel()
	e := newCoalitionEnv(t)
	member := map[string]string{"card": "z-2"}
	body := map[string]any{"member": member, "amount": "100.00", "currency": "RUB"}
	e.post("/v1/partners/fuelco/earns", e.fuel, "k-r", body).want(t, http.StatusCreated)
	// The operator raises the minimum purchase from now on.
	days := 365
	now := time.Now()
	k := partners.Contract{Earn: partners.EarnRate{PointsPerUnit: decPtr("0.1")}, ExpiryDays: &days,
		MinPurchase: decimal.NewFromInt(500), EffectiveFrom: now, Currency: "RUB"}
	if _, err := e.store.AddContract(context.Background(), "fuelco", k, now); err != nil {
		t.Fatal(err)
	}
	// The till's retry of the first request (same key, same body).
	r := e.post("/v1/partners/fuelco/earns", e.fuel, "k-r", body)
	r.want(t, http.StatusCreated)
	if r.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay not marked replayed")
	}
}

// A refusal decided on cached terms that another process changed a moment ago is not
// stored as the key's first answer: the request is decided again on fresh terms.
func TestRefusalOnStaleCachedTermsIsNotStored(t *testing.T) {
	t.Parallel()
	e := newCoalitionEnv(t)
	ctx := context.Background()
	member := map[string]string{"card": "s-1"}
	body := map[string]any{"member": member, "amount": "100.00", "currency": "RUB"}
	if _, err := e.store.SetPartnerStatus(ctx, "fuelco", "suspended"); err != nil {
		t.Fatal(err)
	}
	e.post("/v1/partners/fuelco/earns", e.fuel, "s-0", body).wantError(t, http.StatusUnprocessableEntity, "partner_suspended")
	// The operator reactivates the partner with the coalition command (another process).
	if _, err := partners.NewStore(e.pool).SetPartnerStatus(ctx, "fuelco", "active"); err != nil {
		t.Fatal(err)
	}
	// The cache still says suspended; storing that refusal finds the terms changed, and the
	// earn is decided again on the new ones.
	first := e.post("/v1/partners/fuelco/earns", e.fuel, "s-1", body).want(t, http.StatusCreated)
	again := e.post("/v1/partners/fuelco/earns", e.fuel, "s-1", body).want(t, http.StatusCreated)
	if string(again.Body) != string(first.Body) || again.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay: %s", again.Body)
	}
}

// A key revoked by another process cannot write: the writer sends the entry back for the
// new terms version, and before it is priced again the key is checked again.
func TestKeyRevokedByAnotherProcessCannotWrite(t *testing.T) {
	t.Parallel()
	e := newCoalitionEnv(t)
	ctx := context.Background()
	id, secret, err := e.keys.Create(ctx, partners.RolePartner, "fuelco")
	if err != nil {
		t.Fatal(err)
	}
	member := map[string]string{"card": "k-1"}
	body := map[string]any{"member": member, "amount": "100.00", "currency": "RUB"}
	e.post("/v1/partners/fuelco/earns", secret, "k-0", body).want(t, http.StatusCreated)
	if err := partners.NewKeys(e.pool).Revoke(ctx, id); err != nil {
		t.Fatal(err)
	}
	r := e.post("/v1/partners/fuelco/earns", secret, "k-1", body)
	if r.Status != http.StatusUnauthorized {
		var n int
		e.pool.QueryRow(ctx, `SELECT count(*) FROM entries`).Scan(&n)
		t.Fatalf("revoked key (elsewhere): %d, %d entries written", r.Status, n)
	}
}

// The terms version is never 0 (which an entry uses for "depends on no cached terms"), so
// an entry priced on a fresh process's cached terms is checked like any other: a partner
// suspended by another process before the entry commits refuses it.
func TestTermsVersionOfAFreshProcessIsChecked(t *testing.T) {
	t.Parallel()
	e := newCoalitionEnv(t)
	ctx := context.Background()
	var version int64
	if err := e.pool.QueryRow(ctx, `SELECT terms_version FROM journal_head`).Scan(&version); err != nil || version < 1 {
		t.Fatalf("terms version %d (%v): 0 is never a version", version, err)
	}
	// The server starts (a new process: a fresh cache).
	e.srv.cache = partners.NewCache(e.pool, e.store, e.keys)
	e.ledger.ObserveTerms(e.srv.cache.Observe)
	member := map[string]string{"card": "v-1"}
	body := map[string]any{"member": member, "amount": "100.00", "currency": "RUB"}
	// Fill the cache (fuelco's terms at version 0) with a first earn... which itself posts
	// and lets the writer observe 0.
	e.post("/v1/partners/fuelco/earns", e.fuel, "v-0", body).want(t, http.StatusCreated)
	// Another process suspends fuelco (version 1).
	if _, err := partners.NewStore(e.pool).SetPartnerStatus(ctx, "fuelco", "suspended"); err != nil {
		t.Fatal(err)
	}
	r := e.post("/v1/partners/fuelco/earns", e.fuel, "v-1", body)
	if r.Status != http.StatusUnprocessableEntity {
		t.Fatalf("earn for a partner suspended before it: %d %s", r.Status, r.Body)
	}
}

// A redemption for a card nobody holds is a 404 sent alone, and so in a /batch where only
// a later earn enrols the card.
func TestBatchRedemptionBeforeTheEarnThatEnrolsItsCard(t *testing.T) {
	t.Parallel()
	e := newCoalitionEnv(t)
	card := map[string]string{"card": "b-new"}
	_, out := e.batch("fuelco", e.fuel, []batchItem{
		{Type: "redemption", IdempotencyKey: "br-1", Body: map[string]any{"member": card, "points": "1"}},
		fuelEarn("be-1", card, "100.00"),
	})
	if out.Items[0].Status != http.StatusNotFound {
		t.Fatalf("redemption before the earn that enrols its card: %d %s (alone: 404 not_found)", out.Items[0].Status, out.Items[0].Body)
	}
}

// A request that reuses a key with another body is refused and posts nothing. A /batch
// item looks its key up first and enrols nobody; a single request may still enrol the
// unknown card it names, with no points (docs/API.md, "Deviations from DESIGN, today").
func TestConflictingReusePostsNothing(t *testing.T) {
	t.Parallel()
	e := newCoalitionEnv(t)
	first := map[string]any{"member": map[string]string{"card": "c-first"}, "amount": "100.00", "currency": "RUB"}
	e.post("/v1/partners/fuelco/earns", e.fuel, "k-c", first).want(t, http.StatusCreated)
	other := map[string]any{"member": map[string]string{"card": "c-other"}, "amount": "100.00", "currency": "RUB"}
	e.post("/v1/partners/fuelco/earns", e.fuel, "k-c", other).wantError(t, http.StatusConflict, "idempotency_conflict")

	_, out := e.batch("fuelco", e.fuel, []batchItem{
		fuelEarn("k-c", map[string]string{"card": "c-batch"}, "100.00"),
		fuelEarn("k-new", map[string]string{"card": "c-new"}, "100.00"),
	})
	if out.Items[0].Status != http.StatusConflict || out.Items[1].Status != http.StatusCreated {
		t.Fatalf("batch answers: %d %s, %d %s", out.Items[0].Status, out.Items[0].Body, out.Items[1].Status, out.Items[1].Body)
	}
	if got := e.membersByCard("c-first", "c-batch", "c-new"); got["c-first"] != 1 || got["c-batch"] != 0 || got["c-new"] != 1 {
		t.Fatalf("members per card: %v, want c-first and c-new", got)
	}
	var entries int
	if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM entries`).Scan(&entries); err != nil {
		t.Fatal(err)
	}
	if entries != 2 {
		t.Fatalf("%d entries, want 2 (the first earn and the batch's new one)", entries)
	}
	// The replay of the first request still gets its answer.
	e.post("/v1/partners/fuelco/earns", e.fuel, "k-c", first).want(t, http.StatusCreated)
	e.booksBalance()
}
