package api

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/coalitionledger/coalition/ledger"
)

// When the group-commit writer's queue is full, a partner write is a 503 `overloaded`
// with Retry-After, nothing is written and nothing is stored under its key: the same
// request retried later posts.
func TestFullWriteQueueAnswers503WithRetryAfter(t *testing.T) {
	t.Parallel()
	var w *ledger.Writer
	e := newEnv(t, func(c *Config) {
		w = ledger.NewWriter(c.Ledger, ledger.WriterConfig{Queue: 1, MaxBatch: 1, Flushers: 1})
		c.Writer = w
	})
	t.Cleanup(func() { _ = w.Close(context.Background()) })
	fuel := e.partner("fuelco")
	e.contract("fuelco")
	ctx := context.Background()
	earn := func(key, card string) response {
		return e.request(http.MethodPost, "/v1/partners/fuelco/earns", fuel,
			map[string]any{"member": map[string]string{"card": card}, "amount": "100.00", "currency": "USD"}, "Idempotency-Key", key)
	}
	// Hold the journal head: the writer's first batch waits, the second entry waits in
	// the queue, and the queue is full.
	blocker, err := e.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer blocker.Rollback(ctx) //nolint:errcheck // rolled back below
	if _, err := blocker.Exec(ctx, `SELECT 1 FROM journal_head FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	answers := make(chan response, 2)
	go func() { answers <- earn("k1", "1001") }()
	waitUntil(t, func() bool { return w.Pending() == 1 && w.Queued() == 0 })
	go func() { answers <- earn("k2", "1002") }()
	waitUntil(t, func() bool { return w.Queued() == 1 })

	r := earn("k3", "1003")
	r.wantError(t, http.StatusServiceUnavailable, "overloaded")
	if r.Header.Get("Retry-After") == "" {
		t.Fatalf("503 overloaded without Retry-After: %v", r.Header)
	}
	// A batch with a key of its own whose item met the full queue: its answer is not kept
	// under the batch's key either, so its retry runs the item.
	// The batch answers 200 with the item's 503, and says when to come back.
	batch := func() (batchAnswers, string) {
		var out batchAnswers
		res := e.request(http.MethodPost, "/v1/partners/fuelco/batch", fuel, map[string]any{"items": []batchItem{
			{Type: "earn", IdempotencyKey: "b-1", Body: map[string]any{"member": map[string]string{"card": "1004"}, "amount": "100.00", "currency": "USD"}},
		}}, "Idempotency-Key", "batch-1").want(t, http.StatusOK)
		res.decode(t, &out)
		return out, res.Header.Get("Retry-After")
	}
	if got, retry := batch(); got.Items[0].Status != http.StatusServiceUnavailable || retry == "" {
		t.Fatalf("the batch's item with the queue full: %d %s (Retry-After %q)", got.Items[0].Status, got.Items[0].Body, retry)
	}
	if err := blocker.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		(<-answers).want(t, http.StatusCreated)
	}
	// Nothing was stored for k3: the retry posts; nor for the batch's key.
	earn("k3", "1003").want(t, http.StatusCreated)
	if got, retry := batch(); got.Items[0].Status != http.StatusCreated || retry != "" {
		t.Fatalf("the batch's retry: %d %s (Retry-After %q)", got.Items[0].Status, got.Items[0].Body, retry)
	}
	head, err := e.ledger.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if head.Position != 4 {
		t.Fatalf("journal at %d, want 4 entries", head.Position)
	}
}

// waitUntil polls cond until it holds (the test's deadline bounds it).
func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	for !cond() {
		if t.Context().Err() != nil {
			t.Fatal("gave up waiting")
		}
		time.Sleep(time.Millisecond)
	}
}
