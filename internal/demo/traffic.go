package demo

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"github.com/shopspring/decimal"

	"github.com/coalitionledger/coalition/ledger"
	"github.com/coalitionledger/coalition/partners"
	"github.com/coalitionledger/coalition/settlement"
)

// traffic generates and posts a business day, hour by hour from 07:00 to 23:00. Earns
// and redemptions go through the partner service into engine batches, as the API's
// /batch does; holds, captures, voids and returns are single requests. The clock is the
// day's own: each hour's batch is recorded at the end of the hour, the single requests
// just after it, so that the journal reads as the day happened.
type traffic struct {
	svc      *partners.Service
	l        *ledger.Ledger
	ps       []partner
	members  []member
	day      settlement.Day
	loc      *time.Location
	t        *tally
	r        *rand.Rand
	clock    *simClock
	progress func(done, total int64)

	keys        int
	zipf        *rand.Zipf
	earns       []posted // earns posted so far, for returns
	redemptions []posted // redemptions posted so far, for their reversals
}

// posted is an entry of the day that a later request may name.
type posted struct {
	entry, partner string
	amount         decimal.Decimal // the purchase, for an earn
	member         int
}

// simClock is the demo's clock: the time of the day being played, or the wall clock
// when none is set.
type simClock struct {
	mu  sync.Mutex
	now time.Time
}

// Now returns the clock's time.
func (c *simClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.now.IsZero() {
		return time.Now()
	}
	return c.now
}

func (c *simClock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

const (
	firstHour, lastHour = 7, 23
	batchSize           = 500
	builders            = 4 // requests priced at once: pricing reads the database
)

func (tr *traffic) key(partner string) partners.Request {
	tr.keys++
	k := fmt.Sprintf("demo-%d", tr.keys)
	return partners.Request{Partner: partner, IdempotencyKey: k, RequestHash: []byte(k)}
}

// pick returns a partner by its share of the traffic.
func (tr *traffic) pick() partner {
	x := tr.r.Float64()
	for _, p := range tr.ps {
		if x -= p.share; x < 0 {
			return p
		}
	}
	return tr.ps[len(tr.ps)-1]
}

// run plays the day with about earns earns, a quarter as many redemptions and a few
// percent of holds and returns.
func (tr *traffic) run(ctx context.Context, earns int) error {
	// Regulars shop more often: members by a Zipf law, with a long tail.
	tr.zipf = rand.NewZipf(tr.r, 1.07, 30, uint64(len(tr.members)-1))
	hours := lastHour - firstHour
	total := int64(earns + earns/4 + earns*4/100)
	var done int64
	for h := range hours {
		start := tr.day.Start(tr.loc).Add(time.Duration(firstHour+h) * time.Hour)
		end := start.Add(time.Hour)
		tr.clock.set(end)
		n := earns / hours
		if h < earns%hours {
			n++
		}
		if err := tr.batch(ctx, "earn", tr.earnRequests(start, n)); err != nil {
			return err
		}
		if err := tr.batch(ctx, "redemption", tr.redemptionRequests(start, n/4)); err != nil {
			return err
		}
		singles := tr.singles(ctx, end, n*4/100)
		if singles != nil {
			return singles
		}
		done += int64(n + n/4 + n*4/100)
		if tr.progress != nil {
			tr.progress(min(done, total), total)
		}
	}
	return nil
}

// request is one priced request of a batch: how to build its engine entry, and what to
// remember of it once posted.
type request struct {
	at    time.Time
	build func(ctx context.Context) (*ledger.Entry, error)
	keep  posted
}

func (tr *traffic) earnRequests(start time.Time, n int) []request {
	out := make([]request, n)
	for i := range out {
		p, m := tr.pick(), int(tr.zipf.Uint64())
		at := start.Add(time.Duration(tr.r.IntN(3600)) * time.Second)
		purchase := p.purchase(tr.r)
		req, in := tr.key(p.id), partners.EarnInput{Member: p.identify(tr.members[m]), Purchase: purchase, BusinessTime: &at}
		amount := purchase.Amount
		for _, l := range purchase.Lines {
			amount = amount.Add(l.Amount)
		}
		out[i] = request{at: at, keep: posted{partner: p.id, amount: amount, member: m},
			build: func(ctx context.Context) (*ledger.Entry, error) {
				e, _, err := tr.svc.EarnEntry(ctx, req, in)
				return e, err
			}}
	}
	return out
}

func (tr *traffic) redemptionRequests(start time.Time, n int) []request {
	out := make([]request, 0, n)
	for range n {
		if len(tr.earns) == 0 {
			break
		}
		p := tr.pick()
		earned := tr.earns[tr.r.IntN(len(tr.earns))]
		at := start.Add(time.Duration(tr.r.IntN(3600)) * time.Second)
		in := partners.RedeemInput{Member: p.identify(tr.members[earned.member]), BusinessTime: &at}
		if tr.r.IntN(4) == 0 {
			in.Value = decimal.NewFromInt(int64(20 + tr.r.IntN(100))) // roubles' worth
		} else {
			in.Points = decimal.NewFromInt(int64(100 + tr.r.IntN(800)))
		}
		if p.contract.MaxShare != nil {
			in.PurchaseAmount = ptr(decimal.NewFromInt(int64(1000 + tr.r.IntN(9000))))
		}
		req := tr.key(p.id)
		out = append(out, request{at: at, keep: posted{partner: p.id, member: earned.member},
			build: func(ctx context.Context) (*ledger.Entry, error) { return tr.svc.RedeemEntry(ctx, req, in) }})
	}
	return out
}

// batch prices requests a few at a time and posts them in business-time order, in
// batches, each item answered on its own.
func (tr *traffic) batch(ctx context.Context, op string, reqs []request) error {
	sort.SliceStable(reqs, func(i, j int) bool { return reqs[i].at.Before(reqs[j].at) })
	entries := make([]*ledger.Entry, len(reqs))
	errs := make([]error, len(reqs))
	var wg sync.WaitGroup
	for w := range builders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(reqs); i += builders {
				entries[i], errs[i] = reqs[i].build(ctx)
			}
		}()
	}
	wg.Wait()
	var pending []ledger.Entry
	var keep []posted
	for i := range reqs {
		if ledger.ErrorCode(errs[i]) == "" && errs[i] != nil {
			return fmt.Errorf("%s: %w", op, errs[i])
		}
		if errs[i] != nil || entries[i] == nil {
			tr.t.add(op, errs[i])
			continue
		}
		pending, keep = append(pending, *entries[i]), append(keep, reqs[i].keep)
	}
	for len(pending) > 0 {
		n := min(len(pending), batchSize)
		res, err := tr.l.Post(ctx, pending[:n])
		if err != nil {
			return fmt.Errorf("%s batch: %w", op, err)
		}
		for i, r := range res {
			if r.Err != nil {
				tr.t.add(op, r.Err)
				continue
			}
			tr.t.add(op, nil)
			k := keep[i]
			k.entry = r.Entry.ID
			if op == "earn" {
				tr.earns = append(tr.earns, k)
			} else {
				tr.redemptions = append(tr.redemptions, k)
			}
		}
		pending, keep = pending[n:], keep[n:]
	}
	return nil
}

// singles plays n single requests just after an hour's end: online checkouts that hold
// points and then capture or void them, returned purchases, and redemptions given back.
func (tr *traffic) singles(ctx context.Context, at time.Time, n int) error {
	for i := range n {
		tr.clock.set(at.Add(time.Duration(i*20) * time.Second))
		var err error
		switch x := tr.r.IntN(10); {
		case x < 4:
			err = tr.hold(ctx)
		case x < 9:
			err = tr.giveBack(ctx)
		default:
			err = tr.reverseRedemption(ctx)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// refusal records a request's refusal and returns nil, or returns a failure.
func (tr *traffic) refusal(op string, err error) error {
	if ledger.ErrorCode(err) == "" {
		return fmt.Errorf("%s: %w", op, err)
	}
	tr.t.add(op, err)
	return nil
}

func (tr *traffic) hold(ctx context.Context) error {
	if len(tr.earns) == 0 {
		return nil
	}
	p := tr.ps[2] // webshop's online checkout
	if tr.r.IntN(2) == 0 {
		p = tr.ps[4] // electra's
	}
	m := tr.earns[tr.r.IntN(len(tr.earns))].member
	h, err := tr.svc.Hold(ctx, tr.key(p.id), partners.HoldInput{Member: p.identify(tr.members[m]),
		Points: decimal.NewFromInt(int64(100 + tr.r.IntN(400)))})
	if err != nil {
		return tr.refusal("hold", err)
	}
	tr.t.add("hold", nil)
	tr.clock.set(tr.clock.Now().Add(5 * time.Second))
	if tr.r.IntN(10) < 7 {
		part := h.Hold.Points.Sub(decimal.NewFromInt(int64(tr.r.IntN(50)))) // the basket shrank a little
		if _, err := tr.svc.Capture(ctx, tr.key(p.id), h.Hold.ID, part); err != nil {
			return tr.refusal("capture", err)
		}
		tr.t.add("capture", nil)
		return nil
	}
	if _, err := tr.svc.Void(ctx, tr.key(p.id), h.Hold.ID); err != nil {
		return tr.refusal("void", err)
	}
	tr.t.add("void", nil)
	return nil
}

// giveBack returns part or all of an earlier purchase: the earn is reversed pro rata.
func (tr *traffic) giveBack(ctx context.Context) error {
	if len(tr.earns) == 0 {
		return nil
	}
	e := tr.earns[tr.r.IntN(len(tr.earns))]
	returned := e.amount
	if tr.r.IntN(2) == 0 {
		returned = e.amount.Mul(decimal.NewFromInt(int64(20 + tr.r.IntN(60)))).Div(decimal.NewFromInt(100)).Floor()
	}
	_, err := tr.svc.Reverse(ctx, tr.key(e.partner), partners.ReverseInput{Entry: e.entry, Amount: returned})
	if err != nil {
		return tr.refusal("return", err)
	}
	tr.t.add("return", nil)
	return nil
}

func (tr *traffic) reverseRedemption(ctx context.Context) error {
	if len(tr.redemptions) == 0 {
		return nil
	}
	r := tr.redemptions[tr.r.IntN(len(tr.redemptions))]
	_, err := tr.svc.Reverse(ctx, tr.key(r.partner), partners.ReverseInput{Entry: r.entry})
	if err != nil {
		return tr.refusal("redemption reversal", err)
	}
	tr.t.add("redemption reversal", nil)
	return nil
}
