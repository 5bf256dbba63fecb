package loadgen

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"
)

// sent is a write the tool sent and the first answer it got, for retries and conflicting
// reuses to replay and for the crash check.
type sent struct {
	partner, path, key, ref string
	body                    []byte
	status                  int
	answer                  []byte
	entry                   string // the entry it posted, if any
	kind                    string // entry kind the reference is unique for ("" if none)
}

// workload is the state the operations share.
type workload struct {
	cfg        Config
	streamBase uint64 // added to every random stream: the warm-up's are its own
	c          *client
	stats      *stats
	model      *model
	partners   *dist
	members    *dist
	mix        *picker
	runID      string

	earns  *ring[earnDone] // accepted earns, for reversals
	funded *ring[int]      // members that earned, for redemptions, holds and reads
	sent   *ring[*sent]    // answered writes, for retries
	reuse  *ring[*sent]    // answered earns and redemptions, for conflicting reuses

	ackMu sync.Mutex
	acked []*sent // crash mode: every write, answered or not
}

type earnDone struct {
	partner, entry string
	member         int
}

// opRand is the random source of one operation or worker; the warm-up's streams are
// apart from the measured run's, so that the run does not replay what warmed it up.
func (w *workload) opRand(stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(uint64(w.cfg.Seed), w.streamBase+stream))
}

// write sends a partner write, records it, and returns its answer.
func (w *workload) write(ctx context.Context, partner, path, key, ref, kind string, body []byte) (answer, *sent) {
	start := time.Now()
	a := w.c.send(ctx, http.MethodPost, partner, path, key, body)
	w.stats.answered(a, time.Since(start))
	s := &sent{partner: partner, path: path, key: key, ref: ref, body: body, status: a.status, answer: a.body, kind: kind}
	if a.err == nil && a.status < 300 {
		var wa writeAnswer
		if json.Unmarshal(a.body, &wa) == nil && wa.Entry != nil {
			s.entry = wa.Entry.ID
		}
		if !a.replayed {
			w.stats.add(func(st *stats) { st.applied++ })
		}
	}
	w.stats.add(func(st *stats) { st.items++ })
	if w.cfg.crash() {
		w.ackMu.Lock()
		if a.err != nil || a.status >= 500 {
			s.status = 0 // never acknowledged
		}
		w.acked = append(w.acked, s)
		w.ackMu.Unlock()
	}
	if a.err == nil && a.status < 500 {
		w.sent.add(s)
	}
	return a, s
}

func (w *workload) key(stream uint64, seq int) string {
	return fmt.Sprintf("%s-%d-%d", w.runID, stream, seq)
}

// op runs one operation of the mix with the random source r; seq numbers it within its
// stream, for its keys.
func (w *workload) op(ctx context.Context, r *rand.Rand, stream uint64, seq *int) {
	kind := w.mix.draw(r)
	next := func() string { *seq++; return w.key(stream, *seq) }
	switch kind {
	case OpEarn:
		w.earn(ctx, r, next())
	case OpRedeem:
		w.redeem(ctx, r, next)
	case OpHold:
		w.hold(ctx, r, next)
	case OpReversal:
		w.reversal(ctx, r, next)
	case OpRetry:
		w.retry(ctx, r)
	case OpConflict:
		w.conflict(ctx, r, next)
	case OpRead:
		w.read(ctx, r, next)
	}
}

func (w *workload) count(k OpKind) { w.stats.add(func(s *stats) { s.ops[k]++ }) }

func (w *workload) substitute(ctx context.Context, r *rand.Rand, key string) {
	w.stats.add(func(s *stats) { s.substituted++ })
	w.earn(ctx, r, key)
}

// earnBody is an earn of an amount between 1.00 and 200.00.
func earnBody(r *rand.Rand, member int, ref string) []byte {
	cents := 100 + r.IntN(19901)
	return fmt.Appendf(nil, `{"member":{"card":"%s"},"amount":"%d.%02d","currency":"USD","reference":"%s"}`,
		card(member), cents/100, cents%100, ref)
}

func (w *workload) earn(ctx context.Context, r *rand.Rand, key string) {
	w.count(OpEarn)
	p, m := partnerID(w.partners.draw(r)), w.members.draw(r)
	mm, unlock := w.model.lock(m)
	defer unlock()
	a, s := w.write(ctx, p, "/v1/partners/"+p+"/earns", key, key, "earn", earnBody(r, m, key))
	if a.err != nil || a.status >= 500 {
		return
	}
	if a.status != http.StatusCreated {
		w.stats.surprise("earn %s: %d %s", key, a.status, a.body)
		return
	}
	wa, bal, err := parseWrite(a.body)
	if err != nil || wa.Entry == nil {
		w.stats.surprise("earn %s: answer %s", key, a.body)
		return
	}
	mm[0].enrolled, mm[0].balance = true, bal
	w.earns.add(earnDone{partner: p, entry: wa.Entry.ID, member: m})
	w.funded.add(m)
	w.reuse.add(s)
}

// spender draws a member that has earned (as often as it earned, among recent earns),
// locked, with points to spend; ok is false if a few draws found none.
func (w *workload) spender(r *rand.Rand) (int, *memberModel, func(), bool) {
	for try := 0; try < 4; try++ {
		m, found := w.funded.pick(r, false)
		if !found {
			return 0, nil, nil, false
		}
		mm, unlock := w.model.lock(m)
		if mm[0].enrolled && mm[0].balance > 0 {
			return m, mm[0], unlock, true
		}
		unlock()
	}
	return 0, nil, nil, false
}

// spendable draws a member with points; designed says the amount is to exceed them.
func (w *workload) spend(r *rand.Rand, balance int64) (points int64, designed bool) {
	if r.IntN(100) < 5 {
		return balance + 1 + int64(r.IntN(100)), true
	}
	limit := balance
	if limit > 500 {
		limit = 500
	}
	return 1 + r.Int64N(limit), false
}

// sentSpend is a redemption or a hold as sendSpend sent it.
type sentSpend struct {
	a        answer
	s        *sent
	member   *memberModel // locked until the caller unlocks
	partner  string
	points   int64
	designed bool // sized above the member's balance, to be refused
}

// sendSpend sends a redemption or a hold (op, to route, of kind) of a drawn spender's
// points at a drawn partner, the member locked until unlock. ok is false when no member
// had points to spend: the operation ran as another.
func (w *workload) sendSpend(ctx context.Context, r *rand.Rand, key string, op OpKind, route, kind string) (sp sentSpend, unlock func(), ok bool) {
	m, member, unlock, ok := w.spender(r)
	if !ok {
		w.substitute(ctx, r, key)
		return sentSpend{}, nil, false
	}
	w.count(op)
	q := partnerID(w.partners.draw(r))
	pts, designed := w.spend(r, member.balance)
	body := fmt.Appendf(nil, `{"member":{"card":"%s"},"points":"%d","reference":"%s"}`, card(m), pts, key)
	a, s := w.write(ctx, q, "/v1/partners/"+q+"/"+route, key, key, kind, body)
	return sentSpend{a: a, s: s, member: member, partner: q, points: pts, designed: designed}, unlock, true
}

func (w *workload) redeem(ctx context.Context, r *rand.Rand, next func() string) {
	key := next()
	sp, unlock, ok := w.sendSpend(ctx, r, key, OpRedeem, "redemptions", "redemption")
	if !ok {
		return
	}
	defer unlock()
	if sp.a.err != nil || sp.a.status >= 500 {
		return
	}
	w.reuse.add(sp.s)
	w.expectSpend(sp.member, sp.a, sp.designed, "redemption "+key)
}

// expectSpend checks a spend's answer against the model and follows the balance.
func (w *workload) expectSpend(mm *memberModel, a answer, designed bool, what string) bool {
	if designed {
		w.stats.add(func(s *stats) { s.designedFail++ })
	}
	switch {
	case a.status == http.StatusCreated && !designed:
		if _, bal, err := parseWrite(a.body); err == nil {
			mm.balance = bal
			return true
		}
		w.stats.surprise("%s: answer %s", what, a.body)
	case a.status == http.StatusUnprocessableEntity && designed && a.code() == "insufficient_points":
		w.stats.add(func(s *stats) { s.designedFailOK++ })
	default:
		if !w.cfg.crash() { // in crash mode an unacknowledged spend leaves the model behind
			w.stats.surprise("%s (designed to fail: %v): %d %s", what, designed, a.status, a.body)
		}
	}
	return false
}

func (w *workload) hold(ctx context.Context, r *rand.Rand, next func() string) {
	key := next()
	sp, unlock, ok := w.sendSpend(ctx, r, key, OpHold, "holds", "hold")
	if !ok {
		return
	}
	defer unlock()
	a, q, pts := sp.a, sp.partner, sp.points
	if a.err != nil || a.status >= 500 || !w.expectSpend(sp.member, a, sp.designed, "hold "+key) {
		return
	}
	wa, _, _ := parseWrite(a.body)
	if wa.Hold.ID == "" {
		w.stats.surprise("hold %s without a hold id: %s", key, a.body)
		return
	}
	key2 := next()
	path, body := "/v1/partners/"+q+"/holds/"+wa.Hold.ID+"/void", []byte(`{}`)
	if r.IntN(2) == 0 {
		path, body = "/v1/partners/"+q+"/holds/"+wa.Hold.ID+"/capture", fmt.Appendf(nil, `{"points":"%d"}`, 1+r.Int64N(pts))
	}
	a2, _ := w.write(ctx, q, path, key2, "", "", body)
	if a2.err != nil || a2.status >= 500 {
		return
	}
	if _, bal, err := parseWrite(a2.body); err == nil && a2.status == http.StatusCreated {
		sp.member.balance = bal
		return
	}
	w.stats.surprise("%s %s: %d %s", path, key2, a2.status, a2.body)
}

func (w *workload) reversal(ctx context.Context, r *rand.Rand, next func() string) {
	key := next()
	e, ok := w.earns.pick(r, true)
	if !ok {
		w.substitute(ctx, r, key)
		return
	}
	w.count(OpReversal)
	mm, unlock := w.model.lock(e.member)
	defer unlock()
	body := fmt.Appendf(nil, `{"entry":"%s","reference":"%s"}`, e.entry, key)
	a, _ := w.write(ctx, e.partner, "/v1/partners/"+e.partner+"/reversals", key, key, "earn_reversal", body)
	if a.err != nil || a.status >= 500 {
		return
	}
	if _, bal, err := parseWrite(a.body); err == nil && a.status == http.StatusCreated {
		mm[0].balance = bal
		return
	}
	w.stats.surprise("reversal %s of %s: %d %s", key, e.entry, a.status, a.body)
}

// retry sends an earlier write again, same key and body: the answer must be the first.
func (w *workload) retry(ctx context.Context, r *rand.Rand) {
	s, ok := w.sent.pick(r, false)
	if !ok {
		return
	}
	w.count(OpRetry)
	start := time.Now()
	a := w.c.send(ctx, http.MethodPost, s.partner, s.path, s.key, s.body)
	w.stats.answered(a, time.Since(start))
	if a.err != nil || a.status >= 500 {
		return
	}
	w.stats.add(func(st *stats) {
		st.retryChecked++
		if a.status != s.status || !sameAnswer(a.body, s.answer) {
			st.retryMismatch++
			if len(st.unexpectedSamples) < 10 {
				st.unexpectedSamples = append(st.unexpectedSamples, fmt.Sprintf("retry of %s: first %d %s, now %d %s", s.key, s.status, s.answer, a.status, a.body))
			}
		}
	})
}

// conflict reuses an earlier key with another body: it must be refused.
func (w *workload) conflict(ctx context.Context, r *rand.Rand, next func() string) {
	s, ok := w.reuse.pick(r, false)
	if !ok {
		return
	}
	w.count(OpConflict)
	var body map[string]any
	if json.Unmarshal(s.body, &body) != nil {
		return
	}
	body["reference"] = next()
	raw, _ := json.Marshal(body)
	start := time.Now()
	a := w.c.send(ctx, http.MethodPost, s.partner, s.path, s.key, raw)
	w.stats.answered(a, time.Since(start))
	if a.err != nil || a.status >= 500 {
		return
	}
	w.stats.add(func(st *stats) {
		if a.status == http.StatusConflict && a.code() == "idempotency_conflict" {
			st.conflictsRefused++
			return
		}
		st.conflictsAccepted++
		if len(st.unexpectedSamples) < 10 {
			st.unexpectedSamples = append(st.unexpectedSamples, fmt.Sprintf("conflicting reuse of %s: %d %s", s.key, a.status, a.body))
		}
	})
}

func (w *workload) read(ctx context.Context, r *rand.Rand, next func() string) {
	m, found := w.funded.pick(r, false)
	if !found {
		w.substitute(ctx, r, next())
		return
	}
	w.count(OpRead)
	p := partnerID(w.partners.draw(r))
	start := time.Now()
	a := w.c.send(ctx, http.MethodGet, p, "/v1/partners/"+p+"/members/card:"+card(m), "", nil)
	w.stats.answered(a, time.Since(start))
	if a.err == nil && a.status != http.StatusOK && a.status < 500 {
		w.stats.surprise("read of card %s: %d %s", card(m), a.status, a.body)
	}
}

// batch sends n earns and redemptions of one partner as one /batch request.
func (w *workload) batch(ctx context.Context, r *rand.Rand, stream uint64, seq *int) {
	p := partnerID(w.partners.draw(r))
	n := w.cfg.Batch
	type item struct {
		member   int
		redeem   bool
		designed bool
		key      string
	}
	items := make([]item, n)
	idx := make([]int, n)
	// Each client owns the members ≡ its number (mod clients), each near its drawn rank:
	// a batch holds many members, and with a hot member in most batches, locks across
	// clients would run the batches one at a time in the tool, not in the server.
	owner := int(stream % uint64(w.cfg.Clients))
	for i := range items {
		*seq++
		m := w.members.draw(r)
		m = m - m%w.cfg.Clients + owner
		if m >= w.cfg.Members {
			m = owner % w.cfg.Members
		}
		items[i] = item{member: m, key: w.key(stream, *seq)}
		idx[i] = items[i].member
		items[i].redeem = w.mix.draw(r) == OpRedeem
	}
	mms, unlock := w.model.lock(idx...)
	defer unlock()
	type batchItem struct {
		Type           string          `json:"type"`
		IdempotencyKey string          `json:"idempotency_key"`
		Body           json.RawMessage `json:"body"`
	}
	var req struct {
		Items []batchItem `json:"items"`
	}
	planned := map[int]int64{} // balances as the batch goes, by member index
	for i := range items {
		it := &items[i]
		bal, seen := planned[it.member]
		if !seen {
			bal = mms[i].balance
		}
		// A member's second item in one batch is an earn: the model cannot tell the
		// outcome of a redemption behind an earn of the same batch in advance.
		if it.redeem && !seen && mms[i].enrolled && bal > 0 {
			pts, designed := w.spend(r, bal)
			it.designed = designed
			if !designed {
				bal -= pts
			}
			planned[it.member] = bal
			req.Items = append(req.Items, batchItem{Type: "redemption", IdempotencyKey: it.key,
				Body: fmt.Appendf(nil, `{"member":{"card":"%s"},"points":"%d","reference":"%s"}`, card(it.member), pts, it.key)})
			w.count(OpRedeem)
			continue
		}
		it.redeem = false
		planned[it.member] = bal
		req.Items = append(req.Items, batchItem{Type: "earn", IdempotencyKey: it.key, Body: earnBody(r, it.member, it.key)})
		w.count(OpEarn)
	}
	body, _ := json.Marshal(req)
	start := time.Now()
	a := w.c.send(ctx, http.MethodPost, p, "/v1/partners/"+p+"/batch", "", body)
	w.stats.answered(a, time.Since(start))
	w.stats.add(func(s *stats) { s.items += n })
	if a.err != nil || a.status >= 500 {
		return
	}
	var out struct {
		Items []struct {
			Status int             `json:"status"`
			Body   json.RawMessage `json:"body"`
		} `json:"items"`
	}
	if json.Unmarshal(a.body, &out) != nil || len(out.Items) != n {
		w.stats.surprise("batch: %d %s", a.status, a.body)
		return
	}
	for i, res := range out.Items {
		ia := answer{status: res.Status, body: res.Body}
		if res.Status >= 400 {
			w.stats.add(func(s *stats) { s.codes[ia.code()]++ })
		}
		it := items[i]
		if it.redeem {
			if w.expectSpend(mms[i], ia, it.designed, "batch redemption "+it.key) {
				w.stats.add(func(s *stats) { s.applied++ })
			}
			continue
		}
		if _, bal, err := parseWrite(res.Body); err == nil && res.Status == http.StatusCreated {
			mms[i].enrolled, mms[i].balance = true, bal
			w.stats.add(func(s *stats) { s.applied++ })
			continue
		}
		w.stats.surprise("batch earn %s: %d %s", it.key, res.Status, res.Body)
	}
}
