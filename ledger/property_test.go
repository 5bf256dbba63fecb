package ledger_test

import (
	"context"
	"sort"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"pgregory.net/rapid"

	"github.com/coalitionledger/coalition/internal/pg"
	"github.com/coalitionledger/coalition/internal/pgtest"
	"github.com/coalitionledger/coalition/ledger"
)

// The model: whole points, lots in consumption order, debts, and what each redemption
// took. It is written independently of the engine's planner, as plainly as possible.
type mLot struct {
	id, issuer, entry string
	points, remaining int64
	held              int64
	expired           int64
	expiresAt         *time.Time
	order             int
}

type mTake struct {
	lot    *mLot
	points int64
}

type mRedemption struct {
	id       string
	member   string
	consumer string
	takes    []mTake
	restored int64
}

type mHold struct {
	id, member string
	expiresAt  time.Time
	lots       []mTake // what it reserves, in order
	held       int64
	open       bool
}

type mMember struct {
	now      func() time.Time // the business time of the entry being posted
	balance  int64
	held     int64
	lots     []*mLot
	debts    []struct{ outstanding int64 }
	reversed map[string]int64
}

type model struct {
	members     map[string]*mMember
	lots        []*mLot
	redemptions []*mRedemption
	holds       []*mHold
	order       int
	now         func() time.Time
}

func (m *model) member(id string) *mMember {
	if m.members[id] == nil {
		m.members[id] = &mMember{reversed: map[string]int64{}, now: m.now}
	}
	return m.members[id]
}

func (mm *mMember) sorted() []*mLot {
	out := append([]*mLot(nil), mm.lots...)
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if (a.expiresAt == nil) != (b.expiresAt == nil) {
			return a.expiresAt != nil
		}
		if a.expiresAt != nil && !a.expiresAt.Equal(*b.expiresAt) {
			return a.expiresAt.Before(*b.expiresAt)
		}
		return a.order < b.order
	})
	return out
}

// spendable is what a lot may give at time now: nothing once past its expiry, even
// before the expiry is posted.
func (l *mLot) spendable(now time.Time) int64 {
	if l.expiresAt != nil && !now.Before(*l.expiresAt) {
		return 0
	}
	return l.remaining - l.held
}

func (mm *mMember) available() int64 {
	var n int64
	for _, l := range mm.lots {
		n += l.spendable(mm.now())
	}
	return n
}

// consume takes up to n points, earliest expiry first, skipping one lot.
func (mm *mMember) consume(n int64, skip *mLot) (taken int64, takes []mTake) {
	for _, l := range mm.sorted() {
		if n == 0 {
			break
		}
		if l == skip || l.spendable(mm.now()) == 0 {
			continue
		}
		x := min(n, l.spendable(mm.now()))
		l.remaining -= x
		n -= x
		taken += x
		takes = append(takes, mTake{l, x})
	}
	return taken, takes
}

func (mm *mMember) repay() {
	for i := range mm.debts {
		x, _ := mm.consume(mm.debts[i].outstanding, nil)
		mm.debts[i].outstanding -= x
	}
}

func (mm *mMember) debt() int64 {
	var n int64
	for _, d := range mm.debts {
		n += d.outstanding
	}
	return n
}

func TestLedgerAgainstModel(t *testing.T) {
	t.Parallel()
	partners := []string{"fuel", "shop", "web"}
	memberIDs := []string{"m1", "m2", "m3"}
	rapid.Check(t, func(rt *rapid.T) {
		ctx := context.Background()
		pool, err := pg.Connect(ctx, pgtest.URL(t), 2)
		if err != nil {
			rt.Fatal(err)
		}
		defer pool.Close()
		clk := newClock(t0)
		l := ledger.New(pool, ledger.WithClock(clk.Now))
		m := &model{members: map[string]*mMember{}, now: clk.Now}

		post := func(e ledger.Entry) (*ledger.Posted, ledger.Code) {
			e.BusinessTime = clk.Now()
			p, err := l.PostOne(ctx, e)
			if code := ledger.ErrorCode(err); code != "" {
				return nil, code
			} else if err != nil {
				rt.Fatalf("post %s: %v", e.Kind, err)
			}
			return p, ""
		}
		want := func(what string, got, want ledger.Code) {
			if got != want {
				rt.Fatalf("%s: engine said %q, model %q", what, got, want)
			}
		}

		steps := rapid.IntRange(5, 30).Draw(rt, "steps")
		for step := 0; step < steps; step++ {
			clk.advance(time.Duration(rapid.IntRange(0, 36).Draw(rt, "hours")) * time.Hour)
			member := rapid.SampledFrom(memberIDs).Draw(rt, "member")
			mm := m.member(member)
			switch op := rapid.IntRange(0, 12).Draw(rt, "op"); {
			case op == 10: // hold
				pts := rapid.Int64Range(1, 400).Draw(rt, "hold points")
				p, code := post(ledger.Entry{Kind: ledger.EntryHold, Partner: "web", Member: member,
					Op: ledger.Reserve{Points: decimal.NewFromInt(pts), Consumer: "web", Rate: d("0.017"), ExpiresAt: clk.Now().Add(time.Hour)}})
				if mm.available() < pts {
					want("hold", code, ledger.CodeInsufficientPoints)
					break
				}
				want("hold", code, "")
				h := &mHold{id: p.Hold.ID, member: member, held: pts, open: true, expiresAt: clk.Now().Add(time.Hour)}
				n := pts
				for _, l := range mm.sorted() {
					x := min(n, l.spendable(clk.Now()))
					if x > 0 {
						l.held += x
						n -= x
						h.lots = append(h.lots, mTake{l, x})
					}
				}
				m.holds = append(m.holds, h)
				mm.balance -= pts
				mm.held += pts
			case op == 11 || op == 12: // capture (part or all) or void
				if len(m.holds) == 0 {
					break
				}
				h := rapid.SampledFrom(m.holds).Draw(rt, "hold")
				hm := m.members[h.member]
				var pts int64
				e := ledger.Entry{Kind: ledger.EntryVoid, Partner: "web", Member: h.member, Op: ledger.Release{Hold: h.id}}
				if op == 11 {
					pts = rapid.Int64Range(0, h.held+1).Draw(rt, "capture points") // 0: all
					e = ledger.Entry{Kind: ledger.EntryCapture, Partner: "web", Member: h.member, Op: ledger.Capture{Hold: h.id, Points: decimal.NewFromInt(pts)}}
				}
				p, code := post(e)
				if !h.open {
					want("capture/void", code, ledger.CodeHoldNotOpen)
					break
				}
				if op == 11 && clk.Now().After(h.expiresAt) {
					want("capture", code, ledger.CodeHoldExpired)
					break
				}
				if op == 11 && pts > h.held {
					want("capture", code, ledger.CodeCaptureTooLarge)
					break
				}
				want("capture/void", code, "")
				if op == 11 && pts == 0 {
					pts = h.held
				}
				var takes []mTake
				n := pts
				for _, tk := range h.lots {
					x := min(n, tk.points)
					if x > 0 {
						tk.lot.remaining -= x
						takes = append(takes, mTake{tk.lot, x})
						n -= x
					}
					tk.lot.held -= tk.points
				}
				hm.held -= h.held
				hm.balance += h.held - pts
				h.held, h.open = 0, false
				if op == 11 {
					m.redemptions = append(m.redemptions, &mRedemption{id: p.ID, member: h.member, consumer: "web", takes: takes})
				}
				hm.repay()
			case op <= 3: // earn
				issuer := rapid.SampledFrom(partners).Draw(rt, "issuer")
				pts := rapid.Int64Range(1, 500).Draw(rt, "points")
				var exp *time.Time
				if days := rapid.IntRange(0, 3).Draw(rt, "expiry days"); days > 0 {
					x := clk.Now().Add(time.Duration(days) * 24 * time.Hour)
					exp = &x
				}
				p, code := post(ledger.Entry{Kind: ledger.EntryEarn, Partner: issuer, Member: member,
					Op: ledger.Issue{Points: decimal.NewFromInt(pts), Issuer: issuer, ExpiresAt: exp}})
				want("earn", code, "")
				m.order++
				lot := &mLot{id: p.Lot.ID, issuer: issuer, entry: p.ID, points: pts, remaining: pts, expiresAt: exp, order: m.order}
				mm.lots = append(mm.lots, lot)
				m.lots = append(m.lots, lot)
				mm.balance += pts
				mm.repay()
			case op <= 5: // redeem
				consumer := rapid.SampledFrom(partners).Draw(rt, "consumer")
				pts := rapid.Int64Range(1, 600).Draw(rt, "points")
				p, code := post(ledger.Entry{Kind: ledger.EntryRedemption, Partner: consumer, Member: member,
					Op: ledger.Consume{Points: decimal.NewFromInt(pts), Consumer: consumer, Rate: d("0.013")}})
				if mm.available() < pts {
					want("redeem", code, ledger.CodeInsufficientPoints)
					break
				}
				want("redeem", code, "")
				_, takes := mm.consume(pts, nil)
				mm.balance -= pts
				m.redemptions = append(m.redemptions, &mRedemption{id: p.ID, member: member, consumer: consumer, takes: takes})
			case op == 6: // earn reversal
				if len(m.lots) == 0 {
					break
				}
				lot := rapid.SampledFrom(m.lots).Draw(rt, "lot")
				owner := m.lotOwner(lot)
				k := rapid.Int64Range(1, lot.points).Draw(rt, "reverse points")
				_, code := post(ledger.Entry{Kind: ledger.EntryEarnReversal, Partner: lot.issuer, Member: owner,
					Op: ledger.Clawback{Lot: lot.id, Points: decimal.NewFromInt(k), Rate: d("0.011")}})
				om := m.members[owner]
				if om.reversed[lot.entry]+k > lot.points {
					want("earn reversal", code, ledger.CodeReversalTooLarge)
					break
				}
				want("earn reversal", code, "")
				om.reversed[lot.entry] += k
				left := k
				a := min(left, lot.remaining-lot.held)
				lot.remaining -= a
				left -= a
				e := min(left, lot.expired)
				lot.expired -= e
				left -= e
				b, _ := om.consume(left, lot)
				left -= b
				if left > 0 {
					om.debts = append(om.debts, struct{ outstanding int64 }{left})
				}
				om.balance -= k - e
			case op == 7: // redemption reversal, part or whole
				if len(m.redemptions) == 0 {
					break
				}
				r := rapid.SampledFrom(m.redemptions).Draw(rt, "redemption")
				var total int64
				for _, tk := range r.takes {
					total += tk.points
				}
				left := total - r.restored
				pts := rapid.Int64Range(0, total).Draw(rt, "restore points") // 0: all that is left
				_, code := post(ledger.Entry{Kind: ledger.EntryRedemptionReversal, Partner: r.consumer, Member: r.member,
					Op: ledger.Restore{Of: r.id, Points: decimal.NewFromInt(pts)}})
				if pts == 0 {
					pts = left
				}
				if pts == 0 || pts > left {
					want("redemption reversal", code, ledger.CodeReversalTooLarge)
					break
				}
				want("redemption reversal", code, "")
				// Back into the lots, the last one taken first.
				already := r.restored
				n := pts
				for i := len(r.takes) - 1; i >= 0 && n > 0; i-- {
					tk := r.takes[i]
					room := tk.points - min(tk.points, already)
					already -= min(tk.points, already)
					x := min(n, room)
					tk.lot.remaining += x
					n -= x
				}
				r.restored += pts
				rm := m.members[r.member]
				rm.balance += pts
				rm.repay()
			default: // expiry of any of the member's lots
				if len(mm.lots) == 0 {
					break
				}
				lot := rapid.SampledFrom(mm.lots).Draw(rt, "expire lot")
				_, code := post(ledger.Entry{Kind: ledger.EntryExpiry, Partner: "operator", Member: member,
					Op: ledger.Expire{Lot: lot.id}})
				switch {
				case lot.expiresAt == nil || lot.expiresAt.After(clk.Now()):
					want("expiry", code, ledger.CodeLotNotExpired)
				case lot.remaining-lot.held == 0:
					want("expiry", code, ledger.CodeNothingToExpire)
				default:
					want("expiry", code, "")
					x := lot.remaining - lot.held
					lot.expired += x
					mm.balance -= x
					lot.remaining -= x
				}
			}
			m.check(rt, ctx, l)
		}
	})
}

func (m *model) lotOwner(lot *mLot) string {
	for id, mm := range m.members {
		for _, l := range mm.lots {
			if l == lot {
				return id
			}
		}
	}
	panic("lot without owner")
}

// check compares the engine with the model and checks the invariants of the books.
func (m *model) check(rt *rapid.T, ctx context.Context, l *ledger.Ledger) {
	for id, mm := range m.members {
		bal, err := l.Balance(ctx, ledger.MemberAccount(id))
		if err != nil {
			rt.Fatal(err)
		}
		if got := bal.Neg().IntPart(); got != mm.balance {
			rt.Fatalf("member %s: engine balance %d, model %d", id, got, mm.balance)
		}
		lots, err := l.Lots(ctx, id)
		if err != nil {
			rt.Fatal(err)
		}
		engine := map[string]int64{}
		var remaining int64
		for _, lot := range lots {
			engine[lot.ID] = lot.Remaining.IntPart()
			remaining += lot.Remaining.IntPart()
		}
		for _, lot := range mm.lots {
			if engine[lot.id] != lot.remaining {
				rt.Fatalf("lot %s of %s: engine remaining %d, model %d", lot.id, id, engine[lot.id], lot.remaining)
			}
		}
		debts, err := l.Debts(ctx, id)
		if err != nil {
			rt.Fatal(err)
		}
		var debt int64
		for _, dt := range debts {
			debt += dt.Outstanding.IntPart()
		}
		if debt != mm.debt() {
			rt.Fatalf("member %s: engine debt %d, model %d", id, debt, mm.debt())
		}
		held, err := l.Balance(ctx, ledger.MemberHeldAccount(id))
		if err != nil {
			rt.Fatal(err)
		}
		if got := held.Neg().IntPart(); got != mm.held {
			rt.Fatalf("member %s: engine held %d, model %d", id, got, mm.held)
		}
		for _, lot := range lots {
			for _, ml := range mm.lots {
				if ml.id == lot.ID && lot.Held.IntPart() != ml.held {
					rt.Fatalf("lot %s: engine held %s, model %d", lot.ID, lot.Held, ml.held)
				}
			}
		}
		// Lots remaining − debt = balance + held.
		if remaining-debt != mm.balance+mm.held {
			rt.Fatalf("member %s: lots %d − debt %d ≠ balance %d + held %d", id, remaining, debt, mm.balance, mm.held)
		}
		if mm.balance < 0 && debt == 0 {
			rt.Fatalf("member %s below zero (%d) without a clawback debt", id, mm.balance)
		}
	}
	sound(rt, l)
}
