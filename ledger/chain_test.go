package ledger_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/coalitionledger/coalition/ledger"
)

// Batches planned on the batch before them, before it commits: many callers spending and
// earning on the same members, in small batches, still leave every balance right, nobody
// overdrawn, and one unbroken hash chain.
func TestBatchesPlannedBeforeTheOneAheadCommitsPostInOrder(t *testing.T) {
	t.Parallel()
	l, _ := open(t)
	for _, m := range []string{"m0", "m1", "m2", "m3"} {
		mustPost(t, l, earn(m, "a", "100", ""))
	}
	w := newWriter(t, l, ledger.WriterConfig{MaxBatch: 4, Flushers: 3})
	var entries []ledger.Entry
	for i := 0; i < 120; i++ {
		m := fmt.Sprintf("m%d", i%4)
		entries = append(entries, redeem(m, "b", "10", "0.01", fmt.Sprintf("r%d", i)), earn(m, "c", "3", fmt.Sprintf("e%d", i)))
	}
	res, errs := postAll(w, entries)
	spent := map[string]int{}
	for i, r := range res {
		if errs[i] != nil {
			t.Fatalf("entry %d: %v", i, errs[i])
		}
		switch {
		case r.Err == nil && entries[i].Kind == ledger.EntryRedemption:
			spent[entries[i].Member] += 10
		case r.Err != nil && r.Err.Code != ledger.CodeInsufficientPoints:
			t.Fatalf("entry %d: %v", i, r.Err)
		}
	}
	for m, s := range spent {
		// 100 to start and 30 earns of 3: at most 190 spent, in tens.
		if s > 190 {
			t.Fatalf("member %s spent %d of 190", m, s)
		}
		wantBalance(t, l, "member:"+m, fmt.Sprint(-(100 + 90 - s)))
	}
	if l.ChainStats().Rode == 0 {
		t.Fatal("no batch was planned on the one before it")
	}
	sound(t, l)
}

// A batch whose claim finds the head moved by another writer after the batch read it
// (here a caller's own transaction, as a settlement run posts, committing while the claim
// waits for its lock) is planned again on the head as it is: posted once, the chain
// unbroken.
func TestABatchWhoseHeadMovedIsPlannedAgain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, _, pool := openDB(t)
	mustPost(t, l, earn("m", "a", "50", "first")) // the chain's tail ends at position 1
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // committed below
	if _, err := l.PostAllIn(ctx, tx, []ledger.Entry{earn("other", "a", "20", "")}); err != nil {
		t.Fatal(err)
	}
	before := l.ChainStats()
	posted := make(chan *ledger.Posted, 1)
	go func() {
		p, err := l.PostOne(ctx, earn("m", "a", "5", "third"))
		if err != nil {
			t.Error(err)
		}
		posted <- p
	}()
	// Commit once the claim waits for the head's lock.
	for waiting, deadline := false, time.Now().Add(10*time.Second); !waiting; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the batch never waited to claim the head")
		}
		if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_stat_activity
			WHERE wait_event_type = 'Lock' AND query LIKE '%claim_journal_head%')`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	p := <-posted
	after := l.ChainStats()
	if p == nil || p.Position != 3 || after.Retried != before.Retried+1 {
		t.Fatalf("posted %+v after %d retries; want position 3 after one", p, after.Retried-before.Retried)
	}
	wantBalance(t, l, "member:m", "-55")
	sound(t, l)
}

// A change of the terms between a batch's planning and its claim of the head fails the
// claim: planned again, an entry priced on the old terms is refused terms_changed.
func TestAClaimSeesATermsChange(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, _, pool := openDB(t)
	mustPost(t, l, earn("m", "a", "50", ""))
	var version int64
	if err := pool.QueryRow(ctx, `UPDATE journal_head SET terms_version = terms_version + 1 RETURNING terms_version`).Scan(&version); err != nil {
		t.Fatal(err)
	}
	priced := earn("m", "a", "5", "k")
	priced.TermsVersion = version - 1
	res, err := l.Post(ctx, []ledger.Entry{priced})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Err == nil || res[0].Err.Code != ledger.CodeTermsChanged {
		t.Fatalf("an entry priced on terms %d after a change to %d: %+v", version-1, version, res[0])
	}
	priced.TermsVersion = version
	if p := mustPost(t, l, priced); p.Position != 2 {
		t.Fatalf("repriced entry at position %d, want 2", p.Position)
	}
	// The chain's tail now ends on the new terms; after another change, an entry priced on
	// the newest is planned on the head as read, not refused against the tail's terms.
	if err := pool.QueryRow(ctx, `UPDATE journal_head SET terms_version = terms_version + 1 RETURNING terms_version`).Scan(&version); err != nil {
		t.Fatal(err)
	}
	newest := earn("m", "a", "1", "k2")
	newest.TermsVersion = version
	before := l.ChainStats()
	if p := mustPost(t, l, newest); p.Position != 3 || l.ChainStats().Retried != before.Retried {
		t.Fatalf("an entry on the newest terms: position %d after %d retries", p.Position, l.ChainStats().Retried-before.Retried)
	}
	sound(t, l)
}
