package ledger_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/coalitionledger/coalition/ledger"
)

func TestIdempotencyKeysArePartitionedAndDroppedByMonth(t *testing.T) {
	t.Parallel()
	l, c := open(t)
	ctx := context.Background()
	// A key recorded before any partition existed lands in the default partition.
	first := mustPost(t, l, earn("m", "a", "10", "k-march"))
	m, err := l.MaintainIdempotencyKeys(ctx, c.Now(), ledger.DefaultKeyRetention)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Created) != 2 || m.Created[0] != "idempotency_keys_2026_03" || m.Created[1] != "idempotency_keys_2026_04" {
		t.Fatalf("created %v", m.Created)
	}
	var inMarch int
	if err := l.Pool().QueryRow(ctx, `SELECT count(*) FROM idempotency_keys_2026_03`).Scan(&inMarch); err != nil || inMarch != 1 {
		t.Fatalf("march partition holds %d keys (%v), want the one moved in", inMarch, err)
	}
	// The key still answers its replay.
	res, err := l.Post(ctx, []ledger.Entry{earn("m", "a", "10", "k-march")})
	if err != nil || !res[0].Replayed || res[0].Entry.ID != first.ID {
		t.Fatalf("replay after the move: %+v %v", res, err)
	}
	// Two months on, March is past the 30 days and goes as a whole partition; but not by a
	// run that keeps everything (keep 0: what every command runs at start-up).
	c.set(time.Date(2026, 5, 15, 0, 0, 0, 0, time.UTC))
	if m, err := l.MaintainIdempotencyKeys(ctx, c.Now(), 0); err != nil || len(m.Dropped) != 0 {
		t.Fatalf("a run that keeps everything dropped %v (%v)", m.Dropped, err)
	}
	m, err = l.MaintainIdempotencyKeys(ctx, c.Now(), ledger.DefaultKeyRetention)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Dropped) != 1 || m.Dropped[0] != "idempotency_keys_2026_03" {
		t.Fatalf("dropped %v", m.Dropped)
	}
	// April ended 14 days before May 15: kept.
	var exists bool
	l.Pool().QueryRow(ctx, `SELECT to_regclass('idempotency_keys_2026_04') IS NOT NULL`).Scan(&exists)
	if !exists {
		t.Fatal("april's partition was dropped within the retention")
	}
	// Running it again changes nothing.
	m, err = l.MaintainIdempotencyKeys(ctx, c.Now(), ledger.DefaultKeyRetention)
	if err != nil || len(m.Created)+len(m.Dropped) != 0 {
		t.Fatalf("second run: %+v %v", m, err)
	}
}

func TestRefusalsBeforeTheEngineAreAnswersToo(t *testing.T) {
	t.Parallel()
	l, _ := open(t)
	ctx := context.Background()
	hash := []byte("body-1")
	if r, err := l.Lookup(ctx, "a", "k", hash); err != nil || r != nil {
		t.Fatalf("lookup of a new key = %+v, %v", r, err)
	}
	r, err := l.Refuse(ctx, "a", "k", hash, ledger.Errorf(ledger.CodeNotFound, "no member is known by phone +15550100"), 0)
	if err != nil || r.Err.Code != ledger.CodeNotFound {
		t.Fatalf("refuse = %+v, %v", r, err)
	}
	got, err := l.Lookup(ctx, "a", "k", hash)
	if err != nil || got == nil || !got.Replayed || got.Err.Code != ledger.CodeNotFound {
		t.Fatalf("replay = %+v, %v", got, err)
	}
	got, _ = l.Lookup(ctx, "a", "k", []byte("body-2"))
	if got.Err.Code != ledger.CodeIdempotencyConflict {
		t.Fatalf("another body = %+v", got)
	}
	// The engine answers the same stored refusal.
	e := earn("m", "a", "10", "k")
	e.RequestHash = hash
	_, err = l.PostOne(ctx, e)
	wantCode(t, err, ledger.CodeNotFound)
	if head(t, l) != 0 {
		t.Fatal("a key with a stored refusal posted")
	}
}

// An entry priced at a terms version that is not the journal's comes back unwritten, its
// idempotency key left free, and the ledger tells its observer the version it read.
func TestEntriesPricedOnOldTermsComeBackUnwritten(t *testing.T) {
	t.Parallel()
	l, _ := open(t)
	ctx := context.Background()
	var seen int64 = -1
	l.ObserveTerms(func(v int64) { seen = v })
	if _, err := l.Pool().Exec(ctx, `UPDATE journal_head SET terms_version = 7`); err != nil {
		t.Fatal(err)
	}
	version := termsVersion(t, l)
	stale := earn("m", "a", "10", "k-terms")
	stale.TermsVersion = version - 1
	fresh := earn("m2", "a", "5", "k-other")
	fresh.TermsVersion = version
	res, err := l.Post(ctx, []ledger.Entry{stale, fresh})
	if err != nil {
		t.Fatal(err)
	}
	if !res[0].TermsChanged() || res[0].Entry != nil {
		t.Fatalf("stale entry: %+v", res[0])
	}
	if res[1].Err != nil || res[1].Entry == nil || res[1].Entry.Position != 1 {
		t.Fatalf("its neighbour: %+v", res[1])
	}
	if seen != version {
		t.Fatalf("observer saw %d, want %d", seen, version)
	}
	var keys int
	l.Pool().QueryRow(ctx, `SELECT count(*) FROM idempotency_keys WHERE key = 'k-terms'`).Scan(&keys)
	if keys != 0 {
		t.Fatalf("the stale entry's key has %d stored answers", keys)
	}
	// Priced again at the journal's version, the same key posts.
	stale.TermsVersion = version
	p := mustPost(t, l, stale)
	if p.Position != 2 {
		t.Fatalf("re-posted at %d", p.Position)
	}
	// A batch all or nothing is refused whole.
	old := earn("m", "a", "1", "k-atomic")
	old.TermsVersion = version + 1
	res, err = l.PostAll(ctx, []ledger.Entry{earn("m", "a", "1", "k-atomic-2"), old})
	if err != nil || res[0].Err == nil || res[0].Err.Code != ledger.CodeBatchAborted || !res[1].TermsChanged() {
		t.Fatalf("all-or-nothing batch: %+v %v", res, err)
	}
}

// A refusal decided on terms that have changed since is not stored: the request is to be
// decided again.
func TestRefusalOnOldTermsIsNotStored(t *testing.T) {
	t.Parallel()
	l, _ := open(t)
	ctx := context.Background()
	version := termsVersion(t, l)
	refusal := ledger.Errorf(ledger.CodeInvalid, "partner is suspended")
	if _, err := l.Refuse(ctx, "a", "k", []byte("h"), refusal, version+1); !errors.Is(err, ledger.ErrTermsChanged) {
		t.Fatalf("refuse on old terms: %v", err)
	}
	if r, err := l.Lookup(ctx, "a", "k", []byte("h")); err != nil || r != nil {
		t.Fatalf("the stale refusal was stored: %+v %v", r, err)
	}
	if r, err := l.Refuse(ctx, "a", "k", []byte("h"), refusal, version); err != nil || r.Err == nil {
		t.Fatalf("refuse on current terms: %+v %v", r, err)
	}
}

// A refusal decided while a change of the terms is being committed waits for it, and is
// then not stored: it would otherwise commit after a change it did not see.
func TestRefusalWaitsForAChangeOfTermsInFlight(t *testing.T) {
	t.Parallel()
	l, _ := open(t)
	ctx := context.Background()
	version := termsVersion(t, l)
	change, err := l.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer change.Rollback(ctx) //nolint:errcheck // committed below
	// A new partner is a change of the terms: its trigger bumps the version.
	if _, err := change.Exec(ctx, `INSERT INTO partners (id, name) VALUES ('newcomer', 'Newcomer')`); err != nil {
		t.Fatal(err)
	}
	refused := make(chan error, 1)
	go func() {
		_, err := l.Refuse(ctx, "a", "k", []byte("h"), ledger.Errorf(ledger.CodeInvalid, "no contract in force"), version)
		refused <- err
	}()
	// Wait until the refusal waits on the terms lock (or has answered, wrongly).
	waitFor(t, "the refusal to wait for the change", func() bool {
		if len(refused) > 0 {
			return true
		}
		var waiting int
		if err := l.Pool().QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND wait_event = 'advisory'`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		return waiting > 0
	})
	select {
	case err := <-refused:
		t.Fatalf("the refusal did not wait for the change in flight: %v", err)
	default:
	}
	if err := change.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-refused; !errors.Is(err, ledger.ErrTermsChanged) {
		t.Fatalf("refusal after the change: %v, want ErrTermsChanged", err)
	}
	if r, err := l.Lookup(ctx, "a", "k", []byte("h")); err != nil || r != nil {
		t.Fatalf("the stale refusal was stored: %+v %v", r, err)
	}
}

// termsVersion returns the journal's terms version.
func termsVersion(t *testing.T, l *ledger.Ledger) int64 {
	t.Helper()
	var v int64
	if err := l.Pool().QueryRow(context.Background(), `SELECT terms_version FROM journal_head`).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}
