package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// batchItem is one item of a /batch request.
type batchItem struct {
	Type           string `json:"type"`
	IdempotencyKey string `json:"idempotency_key"`
	Body           any    `json:"body"`
}

// batchAnswers is a /batch answer, item by item.
type batchAnswers struct {
	Items []struct {
		Status   int             `json:"status"`
		Body     json.RawMessage `json:"body"`
		Replayed bool            `json:"replayed"`
	} `json:"items"`
}

func (e *coalitionEnv) batch(partner, secret string, items []batchItem) (response, batchAnswers) {
	e.t.Helper()
	r := e.post("/v1/partners/"+partner+"/batch", secret, "", map[string]any{"items": items}).want(e.t, http.StatusOK)
	var out batchAnswers
	r.decode(e.t, &out)
	if len(out.Items) != len(items) {
		e.t.Fatalf("%d answers to %d items: %s", len(out.Items), len(items), r.Body)
	}
	return r, out
}

func fuelEarn(key string, member map[string]string, amount string) batchItem {
	return batchItem{Type: "earn", IdempotencyKey: key, Body: map[string]any{"member": member, "amount": amount, "currency": "RUB"}}
}

// membersByCard counts the members holding each card.
func (e *coalitionEnv) membersByCard(cards ...string) map[string]int {
	e.t.Helper()
	out := map[string]int{}
	for _, c := range cards {
		var n int
		if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM members WHERE card = $1`, c).Scan(&n); err != nil {
			e.t.Fatal(err)
		}
		out[c] = n
	}
	return out
}

// booksBalance fails the test unless every balance equals its postings and the chain
// verifies.
func (e *coalitionEnv) booksBalance() {
	e.t.Helper()
	ctx := context.Background()
	if mm, err := e.ledger.CheckBalances(ctx); err != nil || len(mm) > 0 {
		e.t.Fatalf("balances differ from postings: %+v %v", mm, err)
	}
	if err := e.ledger.VerifyChain(ctx, nil); err != nil {
		e.t.Fatal(err)
	}
}

// A batch of earns naming members many times: a known member by card, by id and by
// phone, and new cards named twice, each enrolled once and used by both items; a member
// whose earlier days reach the gold tier earns at its multiplier. The earns are posted
// together, in order.
func TestBatchEarnsResolveMembersTogether(t *testing.T) {
	t.Parallel()
	e := newCoalitionEnv(t)
	e.request(http.MethodPut, "/v1/coalition", e.operator, map[string]any{
		"currency": "RUB", "point_value": "1", "points_scale": 0, "time_zone": "Europe/Moscow", "settlement_time": "02:00",
		"tiers": []map[string]string{{"name": "basic", "threshold": "0", "multiplier": "1"}, {"name": "gold", "threshold": "100", "multiplier": "2"}},
	}).want(t, http.StatusOK)
	gold := map[string]string{"card": "g-1"}
	var g earnAnswer
	e.post("/v1/partners/fuelco/earns", e.fuel, "e-0", map[string]any{"member": gold, "amount": "1000.00", "currency": "RUB"}).
		want(t, http.StatusCreated).decode(t, &g) // 100 points today, at the basic tier
	// Its history: 100 points earned yesterday, which makes it gold today (the contracts
	// of this coalition are too new to earn yesterday through the API).
	moscow, err := time.LoadLocation("Europe/Moscow")
	if err != nil {
		t.Fatal(err)
	}
	yesterday := time.Now().In(moscow).AddDate(0, 0, -1).Format(time.DateOnly)
	if _, err := e.pool.Exec(context.Background(), `INSERT INTO member_earned_days (member_id, day, points) VALUES ($1, $2::date, 100)`,
		g.Member.ID, yesterday); err != nil {
		t.Fatal(err)
	}
	byID := map[string]string{"id": g.Member.ID}
	phone := map[string]string{"phone": "+79161234567"}
	n1, n2 := map[string]string{"card": "n-1"}, map[string]string{"card": "n-2"}
	items := []batchItem{
		fuelEarn("b-1", gold, "100.00"), // 10 × 2
		fuelEarn("b-2", n1, "100.00"),
		fuelEarn("b-3", byID, "50.00"), // 5 × 2
		fuelEarn("b-4", n1, "200.00"),
		fuelEarn("b-5", n2, "300.00"),
		fuelEarn("b-6", phone, "100.00"),
		fuelEarn("b-7", n2, "100.00"),
		fuelEarn("b-8", gold, "10.00"), // 1 × 2
	}
	_, out := e.batch("fuelco", e.fuel, items)
	answers := make([]earnAnswer, len(items))
	for i, it := range out.Items {
		if it.Status != http.StatusCreated {
			t.Fatalf("item %d: %d %s", i, it.Status, it.Body)
		}
		if err := json.Unmarshal(it.Body, &answers[i]); err != nil {
			t.Fatal(err)
		}
	}
	wantPoints := []string{"20", "10", "10", "20", "30", "10", "10", "2"}
	for i, a := range answers {
		if a.Points != wantPoints[i] {
			t.Fatalf("item %d earned %s points, want %s", i, a.Points, wantPoints[i])
		}
	}
	same := [][]int{{0, 2, 7}, {1, 3}, {4, 6}}
	for _, s := range same {
		for _, i := range s[1:] {
			if answers[i].Member.ID != answers[s[0]].Member.ID {
				t.Fatalf("items %d and %d name one member, answered as %s and %s", s[0], i, answers[s[0]].Member.ID, answers[i].Member.ID)
			}
		}
	}
	if answers[0].Member.ID != g.Member.ID || answers[1].Member.ID == answers[4].Member.ID {
		t.Fatalf("members: %+v", answers)
	}
	// Balances as the batch went: each item's answer sees the ones before it.
	wantBal := []string{"120", "10", "130", "30", "30", "10", "40", "132"}
	for i, a := range answers {
		if a.Member.Balance != wantBal[i] {
			t.Fatalf("item %d: balance %s, want %s", i, a.Member.Balance, wantBal[i])
		}
	}
	if got := e.membersByCard("n-1", "n-2", "g-1"); got["n-1"] != 1 || got["n-2"] != 1 || got["g-1"] != 1 {
		t.Fatalf("members per card: %v", got)
	}
	// Posted together, in order: consecutive positions of one transaction.
	ctx := context.Background()
	var prev int64
	for i, a := range answers {
		p, err := e.ledger.Entry(ctx, a.Entry.ID)
		if err != nil {
			t.Fatal(err)
		}
		if i > 0 && p.Position != prev+1 {
			t.Fatalf("item %d at position %d after %d", i, p.Position, prev)
		}
		prev = p.Position
	}
	e.request(http.MethodGet, "/v1/partners/fuelco/members/phone:+79161234567", e.fuel, nil).want(t, http.StatusOK)
	e.booksBalance()
}

// Refusals among accepted items: a refused earn enrols nobody, even with its card named
// again by an accepted earn (which enrols it once); a redemption for an unknown card is
// not_found; one beyond the balance is refused by the engine; a malformed item is
// refused alone. Every refusal is its key's first answer.
func TestBatchRefusalsAmongAcceptedItems(t *testing.T) {
	t.Parallel()
	e := newCoalitionEnv(t)
	known := map[string]string{"card": "k-1"}
	e.post("/v1/partners/fuelco/earns", e.fuel, "e-0", map[string]any{"member": known, "amount": "500.00", "currency": "RUB"}).
		want(t, http.StatusCreated) // 50 points
	items := []batchItem{
		{Type: "earn", IdempotencyKey: "b-1", Body: map[string]any{"member": map[string]string{"card": "r-1"}, "amount": "100.00", "currency": "USD"}},
		{Type: "earn", IdempotencyKey: "b-2", Body: map[string]any{"member": map[string]string{"card": "r-2"}, "amount": "100.00", "currency": "USD"}},
		fuelEarn("b-3", map[string]string{"card": "r-2"}, "100.00"),
		{Type: "redemption", IdempotencyKey: "b-4", Body: map[string]any{"member": map[string]string{"card": "nobody"}, "points": "1"}},
		{Type: "redemption", IdempotencyKey: "b-5", Body: map[string]any{"member": known, "points": "30"}},
		{Type: "redemption", IdempotencyKey: "b-6", Body: map[string]any{"member": known, "points": "30"}}, // 20 left
		{Type: "earn", IdempotencyKey: "b-7", Body: map[string]any{"member": known, "amount": "1.001", "currency": "RUB"}},
		fuelEarn("b-8", known, "100.00"),
		{Type: "earn", IdempotencyKey: "b-9", Body: map[string]any{"member": map[string]string{"phone": "not a phone"}, "amount": "100.00", "currency": "RUB"}},
	}
	_, out := e.batch("fuelco", e.fuel, items)
	want := []struct {
		status int
		code   string
	}{{422, "currency_mismatch"}, {422, "currency_mismatch"}, {201, ""}, {404, "not_found"}, {201, ""},
		{422, "insufficient_points"}, {422, "invalid_scale"}, {201, ""}, {422, ""}}
	for i, w := range want {
		it := out.Items[i]
		if it.Status != w.status {
			t.Fatalf("item %d: %d %s, want %d", i, it.Status, it.Body, w.status)
		}
		if w.code != "" {
			var body struct{ Error apiError }
			if err := json.Unmarshal(it.Body, &body); err != nil || body.Error.Code != w.code {
				t.Fatalf("item %d: %s, want code %s", i, it.Body, w.code)
			}
		}
	}
	if got := e.membersByCard("r-1", "r-2", "nobody"); got["r-1"] != 0 || got["r-2"] != 1 || got["nobody"] != 0 {
		t.Fatalf("members per card: %v", got)
	}
	e.request(http.MethodGet, "/v1/partners/fuelco/members/card:r-1", e.fuel, nil).wantError(t, http.StatusNotFound, "not_found")
	// Each refusal is the first answer to its key, alone as in a batch.
	r := e.post("/v1/partners/fuelco/earns", e.fuel, "b-1", items[0].Body)
	r.wantError(t, http.StatusUnprocessableEntity, "currency_mismatch")
	if r.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("a refused item's key did not replay: %v", r.Header)
	}
	var m struct{ Balance string }
	e.request(http.MethodGet, "/v1/partners/fuelco/members/card:k-1", e.fuel, nil).want(t, http.StatusOK).decode(t, &m)
	if m.Balance != "30" {
		t.Fatalf("balance %s, want 30 (50 − 30 + 10)", m.Balance)
	}
	e.booksBalance()
	// More items than a batch holds: 413 batch_too_large with the limit, nothing written.
	many := make([]batchItem, MaxBatchItems+1)
	for i := range many {
		many[i] = fuelEarn(fmt.Sprint("many-", i), known, "1.00")
	}
	got := e.post("/v1/partners/fuelco/batch", e.fuel, "", map[string]any{"items": many}).
		wantError(t, http.StatusRequestEntityTooLarge, "batch_too_large")
	if got.Details["limit"] != float64(MaxBatchItems) {
		t.Fatalf("details %v do not give the limit", got.Details)
	}
	e.request(http.MethodGet, "/v1/partners/fuelco/members/card:k-1", e.fuel, nil).want(t, http.StatusOK).decode(t, &m)
	if m.Balance != "30" {
		t.Fatalf("balance %s after a refused batch, want 30", m.Balance)
	}
}

// A batch sent again answers every item as the first time, writes nothing, and is not
// itself marked replayed; an item's key sent alone is a replay.
func TestBatchReplays(t *testing.T) {
	t.Parallel()
	e := newCoalitionEnv(t)
	ctx := context.Background()
	items := []batchItem{
		fuelEarn("b-1", map[string]string{"card": "p-1"}, "100.00"),
		fuelEarn("b-2", map[string]string{"card": "p-1"}, "200.00"),
		{Type: "redemption", IdempotencyKey: "b-3", Body: map[string]any{"member": map[string]string{"card": "p-1"}, "points": "25"}},
		{Type: "earn", IdempotencyKey: "b-4", Body: map[string]any{"member": map[string]string{"card": "p-2"}, "amount": "1.00", "currency": "USD"}},
		fuelEarn("b-5", map[string]string{"card": "p-3"}, "1.00"), // earns nothing: answered, nothing posted
	}
	first, a := e.batch("fuelco", e.fuel, items)
	h1, err := e.ledger.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	again, b := e.batch("fuelco", e.fuel, items)
	h2, err := e.ledger.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range items {
		if a.Items[i].Status != b.Items[i].Status || (a.Items[i].Status != http.StatusOK && string(a.Items[i].Body) != string(b.Items[i].Body)) {
			t.Fatalf("item %d answered %d %s, then %d %s", i, a.Items[i].Status, a.Items[i].Body, b.Items[i].Status, b.Items[i].Body)
		}
	}
	if got := []int{a.Items[0].Status, a.Items[1].Status, a.Items[2].Status, a.Items[3].Status, a.Items[4].Status}; fmt.Sprint(got) != "[201 201 201 422 200]" {
		t.Fatalf("statuses %v: %s", got, first.Body)
	}
	if h1.Position != h2.Position {
		t.Fatalf("the replayed batch moved the head from %d to %d", h1.Position, h2.Position)
	}
	// Each item says whether it is a replay, as Idempotent-Replayed does for a request
	// alone: the stored answers (refusals too) are; the earn that earned nothing stored
	// none, and is answered afresh.
	for i, want := range []bool{true, true, true, true, false} {
		if a.Items[i].Replayed || b.Items[i].Replayed != want {
			t.Errorf("item %d: replayed %v then %v, want false then %v", i, a.Items[i].Replayed, b.Items[i].Replayed, want)
		}
	}
	if first.Header.Get("Idempotent-Replayed") != "" || again.Header.Get("Idempotent-Replayed") != "" {
		t.Fatal("a batch answer is marked replayed")
	}
	r := e.post("/v1/partners/fuelco/earns", e.fuel, "b-2", items[1].Body).want(t, http.StatusCreated)
	if r.Header.Get("Idempotent-Replayed") != "true" || strings.TrimSpace(string(r.Body)) != string(a.Items[1].Body) {
		t.Fatalf("item b-2 alone: %v\n%s\nin the batch:\n%s", r.Header, r.Body, a.Items[1].Body)
	}
	if got := e.membersByCard("p-1", "p-2", "p-3"); got["p-1"] != 1 || got["p-2"] != 0 || got["p-3"] != 1 {
		t.Fatalf("members per card: %v", got)
	}
	e.booksBalance()
}

// Concurrent batches naming the same new cards (with their own keys) enrol each card
// once, and every earn lands on that member.
func TestConcurrentBatchesEnrolANewCardOnce(t *testing.T) {
	t.Parallel()
	e := newCoalitionEnv(t)
	const rounds, clients, cards = 5, 4, 6
	for round := 0; round < rounds; round++ {
		var wg sync.WaitGroup
		outs := make([]batchAnswers, clients)
		for c := 0; c < clients; c++ {
			wg.Add(1)
			go func(c int) {
				defer wg.Done()
				var items []batchItem
				for k := 0; k < cards; k++ {
					// Each client names the cards in its own order.
					card := fmt.Sprintf("c-%d-%d", round, (k+c)%cards)
					items = append(items, fuelEarn(fmt.Sprintf("k-%d-%d-%d", round, c, k), map[string]string{"card": card}, "100.00"))
				}
				_, outs[c] = e.batch("fuelco", e.fuel, items)
			}(c)
		}
		wg.Wait()
		for c, out := range outs {
			for k, it := range out.Items {
				if it.Status != http.StatusCreated {
					t.Fatalf("round %d client %d item %d: %d %s", round, c, k, it.Status, it.Body)
				}
			}
		}
		for k := 0; k < cards; k++ {
			card := fmt.Sprintf("c-%d-%d", round, k)
			if n := e.membersByCard(card)[card]; n != 1 {
				t.Fatalf("card %s: %d members", card, n)
			}
			var m struct{ Balance string }
			e.request(http.MethodGet, "/v1/partners/fuelco/members/card:"+card, e.fuel, nil).want(t, http.StatusOK).decode(t, &m)
			if m.Balance != fmt.Sprint(10*clients) {
				t.Fatalf("card %s: balance %s, want %d", card, m.Balance, 10*clients)
			}
		}
	}
	e.booksBalance()
}

// A batch sent with an Idempotency-Key of its own (optional: its items carry theirs) is
// answered once: a retry gets the first answer, marked replayed, and the same key on
// another batch is a 409 that posts nothing.
func TestBatchWithAKeyOfItsOwn(t *testing.T) {
	t.Parallel()
	e := newCoalitionEnv(t)
	ctx := context.Background()
	items := []batchItem{fuelEarn("k-1", map[string]string{"card": "q-1"}, "100.00")}
	first := e.post("/v1/partners/fuelco/batch", e.fuel, "batch-1", map[string]any{"items": items}).want(t, http.StatusOK)
	head, _ := e.ledger.Head(ctx)
	again := e.post("/v1/partners/fuelco/batch", e.fuel, "batch-1", map[string]any{"items": items}).want(t, http.StatusOK)
	if again.Header.Get("Idempotent-Replayed") != "true" || string(again.Body) != string(first.Body) {
		t.Fatalf("the batch's retry: %v %s, first %s", again.Header, again.Body, first.Body)
	}
	other := []batchItem{fuelEarn("k-2", map[string]string{"card": "q-1"}, "100.00")}
	if got := e.post("/v1/partners/fuelco/batch", e.fuel, "batch-1", map[string]any{"items": other}).wantError(t, http.StatusConflict, "idempotency_conflict"); got.Details["idempotency_key"] != "batch-1" || !strings.Contains(got.Message, "new key") {
		t.Errorf("the conflict does not name its key or say how to go on: %+v", got)
	}
	// Another partner's key may not use the route at all, key or no key.
	e.post("/v1/partners/fuelco/batch", e.grocer, "batch-1", map[string]any{"items": items}).wantError(t, http.StatusForbidden, "forbidden")
	// A key names one request whatever the route: the batch's key on an earn, or an
	// item's key (which is also an earn's) on a batch, is a 409 and posts nothing.
	e.post("/v1/partners/fuelco/earns", e.fuel, "batch-1", map[string]any{"member": map[string]string{"card": "q-2"},
		"amount": "10.00", "currency": "USD"}).wantError(t, http.StatusConflict, "idempotency_conflict")
	e.post("/v1/partners/fuelco/batch", e.fuel, "k-1", map[string]any{"items": other}).wantError(t, http.StatusConflict, "idempotency_conflict")
	if now, _ := e.ledger.Head(ctx); now.Position != head.Position {
		t.Fatalf("the head moved from %d to %d", head.Position, now.Position)
	}
	e.booksBalance()
}

// A hold item retried in another batch is marked replayed on the item, not on the batch.
func TestBatchMarksReplayedHolds(t *testing.T) {
	t.Parallel()
	e := newCoalitionEnv(t)
	member := map[string]string{"card": "r-1"}
	items := []batchItem{
		fuelEarn("e-1", member, "1000.00"),
		{Type: "hold", IdempotencyKey: "h-1", Body: map[string]any{"member": member, "points": "10"}},
	}
	_, a := e.batch("fuelco", e.fuel, items)
	r, b := e.batch("fuelco", e.fuel, items)
	if a.Items[1].Status != http.StatusCreated || a.Items[1].Replayed || !b.Items[1].Replayed || string(a.Items[1].Body) != string(b.Items[1].Body) {
		t.Fatalf("hold item: %d %v %s, then %d %v %s", a.Items[1].Status, a.Items[1].Replayed, a.Items[1].Body, b.Items[1].Status, b.Items[1].Replayed, b.Items[1].Body)
	}
	if r.Header.Get("Idempotent-Replayed") != "" {
		t.Fatal("the batch is marked replayed")
	}
	e.booksBalance()
}
