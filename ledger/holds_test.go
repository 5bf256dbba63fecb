package ledger_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/coalitionledger/coalition/ledger"
)

func hold(member, partner, points, rate string) ledger.Entry {
	return ledger.Entry{Kind: ledger.EntryHold, Partner: partner, Member: member, BusinessTime: t0,
		Op: ledger.Reserve{Points: d(points), Consumer: partner, Rate: d(rate), ExpiresAt: t0.Add(15 * time.Minute)}}
}

func capture(member, partner, holdID, points string) ledger.Entry {
	return ledger.Entry{Kind: ledger.EntryCapture, Partner: partner, Member: member, BusinessTime: t0,
		Op: ledger.Capture{Hold: holdID, Points: d(points)}}
}

func void(member, partner, holdID string) ledger.Entry {
	return ledger.Entry{Kind: ledger.EntryVoid, Partner: partner, Member: member, BusinessTime: t0,
		Op: ledger.Release{Hold: holdID}}
}

func TestHoldCapturePartReleasesTheRest(t *testing.T) {
	t.Parallel()
	l, _ := open(t)
	mustPost(t, l, earnExpiring("m", "a", "100", t0.Add(24*time.Hour)))
	mustPost(t, l, earn("m", "b", "100", ""))
	h := mustPost(t, l, hold("m", "c", "150", "0.01"))
	if h.Hold == nil || h.Hold.Status != ledger.HoldOpen || !h.MemberBalance.Equal(d("50")) || !h.MemberHeld.Equal(d("150")) {
		t.Fatalf("hold answer = %+v", h)
	}
	wantBalance(t, l, "member:m:held", "-150")
	// Held points cannot be redeemed twice.
	_, err := l.PostOne(context.Background(), redeem("m", "c", "60", "0.01", ""))
	wantCode(t, err, ledger.CodeInsufficientPoints)
	// Capture 120 of the 150: a's 100 first (earliest expiry), then 20 of b's; 30 go back.
	c := mustPost(t, l, capture("m", "c", h.Hold.ID, "120"))
	if c.Hold.Status != ledger.HoldCaptured || !c.MemberBalance.Equal(d("80")) || !c.MemberHeld.IsZero() {
		t.Fatalf("capture answer = %+v", c)
	}
	wantBalance(t, l, "member:m:held", "0")
	wantBalance(t, l, "partner:c:redeemed", "-120")
	wantBalance(t, l, "partner:a:settlement", "1")
	wantBalance(t, l, "partner:b:settlement", "0.2")
	wantBalance(t, l, "partner:c:settlement", "-1.2")
	_, err = l.PostOne(context.Background(), capture("m", "c", h.Hold.ID, "0"))
	wantCode(t, err, ledger.CodeHoldNotOpen)
	// A capture is a redemption: it can be reversed like one.
	mustPost(t, l, ledger.Entry{Kind: ledger.EntryRedemptionReversal, Partner: "c", Member: "m", BusinessTime: t0,
		Op: ledger.Restore{Of: c.ID}})
	wantBalance(t, l, "member:m", "-200")
	wantBalance(t, l, "partner:c:settlement", "0")
	sound(t, l)
}

func TestVoidGivesEverythingBack(t *testing.T) {
	t.Parallel()
	l, _ := open(t)
	mustPost(t, l, earn("m", "a", "100", ""))
	h := mustPost(t, l, hold("m", "c", "70", "0.01"))
	_, err := l.PostOne(context.Background(), capture("m", "c", h.Hold.ID, "71"))
	wantCode(t, err, ledger.CodeCaptureTooLarge)
	v := mustPost(t, l, void("m", "c", h.Hold.ID))
	if v.Hold.Status != ledger.HoldVoided || !v.MemberBalance.Equal(d("100")) {
		t.Fatalf("void answer = %+v", v)
	}
	_, err = l.PostOne(context.Background(), void("m", "c", h.Hold.ID))
	wantCode(t, err, ledger.CodeHoldNotOpen)
	_, err = l.PostOne(context.Background(), void("other", "c", h.Hold.ID))
	wantCode(t, err, ledger.CodeNotFound)
	mustPost(t, l, redeem("m", "c", "100", "0.01", ""))
	sound(t, l)
}

func TestExpiryAndClawbacksLeaveHeldPointsAlone(t *testing.T) {
	t.Parallel()
	l, c := open(t)
	lot := mustPost(t, l, earnExpiring("m", "a", "100", t0.Add(time.Hour)))
	h := mustPost(t, l, hold("m", "c", "60", "0.01"))
	c.advance(2 * time.Hour)
	x := mustPost(t, l, ledger.Entry{Kind: ledger.EntryExpiry, Partner: "operator", Member: "m", BusinessTime: c.Now(), Op: ledger.Expire{Lot: lot.Lot.ID}})
	wantBalance(t, l, "partner:a:expired", "-40") // the 60 held stay
	if !x.MemberHeld.Equal(d("60")) {
		t.Fatalf("held after expiry = %s", x.MemberHeld)
	}
	// Reversing the whole earn: 40 come out of breakage, the 60 held are not taken: a debt.
	r := mustPost(t, l, ledger.Entry{Kind: ledger.EntryEarnReversal, Partner: "a", Member: "m", BusinessTime: c.Now(),
		Op: ledger.Clawback{Lot: lot.Lot.ID, Points: d("100"), Rate: d("0.01")}})
	if !r.MemberBalance.Equal(d("-60")) || !r.MemberHeld.Equal(d("60")) {
		t.Fatalf("after reversal: balance %s held %s", r.MemberBalance, r.MemberHeld)
	}
	// The void brings the 60 back, and they repay the debt at once.
	v := mustPost(t, l, void("m", "c", h.Hold.ID))
	if !v.MemberBalance.IsZero() {
		t.Fatalf("after void: balance %s", v.MemberBalance)
	}
	debts, _ := l.Debts(context.Background(), "m")
	if len(debts) != 0 {
		t.Fatalf("debt left: %+v", debts)
	}
	sound(t, l)
}

// A capture and a void of one hold race: exactly one wins.
func TestCaptureAndVoidRace(t *testing.T) {
	t.Parallel()
	l, _ := open(t)
	mustPost(t, l, earn("m", "a", "100", ""))
	for round := 0; round < 5; round++ {
		h := mustPost(t, l, hold("m", "c", "10", "0.01"))
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, e := range []ledger.Entry{capture("m", "c", h.Hold.ID, "0"), void("m", "c", h.Hold.ID)} {
			wg.Add(1)
			go func(i int, e ledger.Entry) {
				defer wg.Done()
				_, errs[i] = l.PostOne(context.Background(), e)
			}(i, e)
		}
		wg.Wait()
		won := 0
		for _, err := range errs {
			if err == nil {
				won++
			} else if ledger.ErrorCode(err) != ledger.CodeHoldNotOpen {
				t.Fatal(err)
			}
		}
		if won != 1 {
			t.Fatalf("round %d: %d of capture and void went through", round, won)
		}
	}
	wantBalance(t, l, "member:m:held", "0")
	sound(t, l)
}

func TestAMembersHeldAccountIsMadeByItsFirstHold(t *testing.T) {
	t.Parallel()
	l, _, pool := openDB(t)
	ctx := context.Background()
	heldRows := func() int {
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM accounts WHERE name = 'member:m:held'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	mustPost(t, l, earn("m", "a", "100", ""))
	mustPost(t, l, redeem("m", "b", "10", "0.01", ""))
	if n := heldRows(); n != 0 {
		t.Fatalf("member:m:held exists (%d rows) before any hold", n)
	}
	mustPost(t, l, hold("m", "c", "30", "0.01"))
	if n := heldRows(); n != 1 {
		t.Fatalf("member:m:held rows after a hold = %d, want 1", n)
	}
	wantBalance(t, l, "member:m:held", "-30")
	wantBalance(t, l, "member:m", "-60")
	sound(t, l)
}

// A batch waiting for a member's lock while another makes the member's first hold must
// see the held account that hold made, in its answer too.
func TestABatchWaitingForAMemberSeesItsFirstHold(t *testing.T) {
	t.Parallel()
	l, _, pool := openDB(t)
	ctx := context.Background()
	mustPost(t, l, earn("m", "a", "100", ""))
	// The journal head held elsewhere: the hold locks member m, then waits for the head.
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT 1 FROM journal_head FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	type result struct {
		p   *ledger.Posted
		err error
	}
	held, earned := make(chan result, 1), make(chan result, 1)
	go func() { p, err := l.PostOne(ctx, hold("m", "c", "30", "0.01")); held <- result{p, err} }()
	waitForLock(t, pool, 1)
	go func() { p, err := l.PostOne(ctx, earn("m", "a", "5", "")); earned <- result{p, err} }()
	waitForLock(t, pool, 2)
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	h, e := <-held, <-earned
	if h.err != nil || e.err != nil {
		t.Fatal(h.err, e.err)
	}
	if !e.p.MemberHeld.Equal(d("30")) || !e.p.MemberBalance.Equal(d("75")) {
		t.Fatalf("the earn after the first hold answers balance %s, held %s; want 75 and 30", e.p.MemberBalance, e.p.MemberHeld)
	}
	wantBalance(t, l, "member:m:held", "-30")
	sound(t, l)
}

// waitForLock waits until n of the database's sessions wait for a lock.
func waitForLock(t *testing.T, pool *pgxpool.Pool, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		var waiting int
		if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting >= n {
			return
		}
	}
	t.Fatalf("%d sessions never waited for a lock", n)
}
