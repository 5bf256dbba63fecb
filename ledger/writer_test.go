package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/coalitionledger/coalition/ledger"
)

// forever is a window no test waits out: batches in these tests flush when they are full
// or when the writer closes, never on a timer.
const forever = time.Hour

func newWriter(t *testing.T, l *ledger.Ledger, cfg ledger.WriterConfig) *ledger.Writer {
	t.Helper()
	w := ledger.NewWriter(l, cfg)
	t.Cleanup(func() {
		if err := w.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return w
}

// waitFor polls cond until it holds (the test's own deadline bounds it).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		if t.Context().Err() != nil {
			t.Fatalf("gave up waiting for %s", what)
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
}

// postAll posts each entry from its own goroutine through w and returns the answers in
// the entries' order.
func postAll(w *ledger.Writer, entries []ledger.Entry) ([]ledger.Result, []error) {
	res := make([]ledger.Result, len(entries))
	errs := make([]error, len(entries))
	var wg sync.WaitGroup
	for i := range entries {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			res[i], errs[i] = w.Post(context.Background(), entries[i])
		}(i)
	}
	wg.Wait()
	return res, errs
}

// Many tills at once through the writer: 64 redemptions of 30 from a member holding 1000
// (33 accepted, 31 refused, whatever batches they share) among 192 earns for other
// members, all accepted; the books stay sound.
func TestWriterManyConcurrentCallers(t *testing.T) {
	t.Parallel()
	l, _ := open(t)
	mustPost(t, l, earn("m", "a", "1000", ""))
	w := newWriter(t, l, ledger.WriterConfig{MaxBatch: 16})
	var entries []ledger.Entry
	for i := 0; i < 64; i++ {
		entries = append(entries, redeem("m", "b", "30", "0.01", fmt.Sprintf("r%d", i)))
		for j := 0; j < 3; j++ {
			entries = append(entries, earn(fmt.Sprintf("e%d", i*3+j), "c", "7", fmt.Sprintf("e%d", i*3+j)))
		}
	}
	res, errs := postAll(w, entries)
	accepted, refused, earns := 0, 0, 0
	for i, r := range res {
		if errs[i] != nil {
			t.Fatalf("entry %d: %v", i, errs[i])
		}
		switch {
		case entries[i].Kind == ledger.EntryEarn && r.Err == nil:
			earns++
		case r.Err == nil:
			accepted++
		case r.Err.Code == ledger.CodeInsufficientPoints:
			refused++
		default:
			t.Fatalf("entry %d: %v", i, r.Err)
		}
	}
	if accepted != 33 || refused != 31 || earns != 192 {
		t.Fatalf("redemptions accepted %d, refused %d, earns %d; want 33, 31, 192", accepted, refused, earns)
	}
	wantBalance(t, l, "member:m", "-10")
	wantBalance(t, l, "partner:c:issued", "1344")
	if head(t, l) != 1+33+192 {
		t.Fatalf("head at %d, want %d", head(t, l), 1+33+192)
	}
	if w.Stats().Entries.Load() != int64(len(entries)) {
		t.Fatalf("writer answered %d entries, want %d", w.Stats().Entries.Load(), len(entries))
	}
	sound(t, l)
}

// A batch that mixes accepted and refused entries: each caller gets its own answer, and the
// refused ones change nothing.
func TestWriterRefusalsDoNotFailNeighbours(t *testing.T) {
	t.Parallel()
	l, _ := open(t)
	mustPost(t, l, earn("m", "a", "100", ""))
	w := newWriter(t, l, ledger.WriterConfig{MaxBatch: 4, Window: forever, Flushers: 1})
	entries := []ledger.Entry{
		redeem("m", "b", "60", "0.01", "r1"),
		redeem("m", "b", "60", "0.01", "r2"), // one of the two is refused
		earn("n", "a", "5", "e1"),
		redeem("nobody", "b", "1", "0.01", "r3"), // refused: no points
	}
	res, errs := postAll(w, entries)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
	}
	if w.Stats().Batches.Load() != 1 {
		t.Fatalf("%d batches, want the 4 entries in one", w.Stats().Batches.Load())
	}
	if (res[0].Err == nil) == (res[1].Err == nil) {
		t.Fatalf("both or neither of two redemptions of 60 from 100 accepted: %v, %v", res[0].Err, res[1].Err)
	}
	if res[2].Err != nil || res[2].Entry == nil {
		t.Fatalf("earn: %v", res[2].Err)
	}
	if res[3].Err == nil || res[3].Err.Code != ledger.CodeInsufficientPoints {
		t.Fatalf("redemption from an empty member: %+v", res[3])
	}
	wantBalance(t, l, "member:m", "-40")
	wantBalance(t, l, "member:n", "-5")
	if head(t, l) != 3 {
		t.Fatalf("head at %d, want 3", head(t, l))
	}
	sound(t, l)
}

// One key used three times in one batch: one entry; the callers with the same request
// get its answer (replayed), exactly as if they had come one after another. Then once
// more in a later batch: the same answer again.
func TestWriterReplaysInOneBatchAndAcross(t *testing.T) {
	t.Parallel()
	l, _ := open(t)
	w := newWriter(t, l, ledger.WriterConfig{MaxBatch: 3, Window: forever, Flushers: 1})
	e := earn("m", "a", "10", "k")
	res, errs := postAll(w, []ledger.Entry{e, e, e})
	first := res[0].Entry
	replayed := 0
	for i, r := range res {
		if errs[i] != nil || r.Err != nil {
			t.Fatalf("caller %d: %v %v", i, errs[i], r.Err)
		}
		if errs[i] == nil && r.Err == nil && (r.Entry.ID != first.ID || r.Entry.Position != 1) {
			t.Fatalf("callers got different entries: %+v and %+v", r.Entry, first)
		}
		if r.Replayed {
			replayed++
		}
	}
	if replayed != 2 {
		t.Fatalf("%d answers replayed, want 2", replayed)
	}
	if w.Stats().Batches.Load() != 1 || head(t, l) != 1 {
		t.Fatalf("%d batches, head %d; want 1 and 1", w.Stats().Batches.Load(), head(t, l))
	}

	// Across batches: a later batch replays it too, beside a new entry.
	res, errs = postAll(w, []ledger.Entry{e, earn("m", "a", "5", "k2"), earn("n", "a", "5", "k3")})
	for i := range res {
		if errs[i] != nil || res[i].Err != nil {
			t.Fatalf("caller %d: %v %v", i, errs[i], res[i].Err)
		}
	}
	if !res[0].Replayed || res[0].Entry.ID != first.ID || res[0].Entry.Position != 1 {
		t.Fatalf("replay in a later batch: %+v", res[0])
	}
	wantBalance(t, l, "member:m", "-15")
	sound(t, l)
}

// One key with two different requests in one batch: one of them posts, the other is an
// idempotency conflict and posts nothing. A refusal replays as a refusal.
func TestWriterConflictsAndRefusalsInOneBatch(t *testing.T) {
	t.Parallel()
	l, _ := open(t)
	w := newWriter(t, l, ledger.WriterConfig{MaxBatch: 4, Window: forever, Flushers: 1})
	over := redeem("m", "b", "50", "0.01", "r")
	res, errs := postAll(w, []ledger.Entry{earn("m", "a", "10", "k"), earn("m", "a", "20", "k"), over, over})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("caller %d: %v", i, err)
		}
	}
	posted, conflicts := 0, 0
	for _, r := range res[:2] {
		switch {
		case r.Err == nil && !r.Replayed:
			posted++
		case r.Err != nil && r.Err.Code == ledger.CodeIdempotencyConflict:
			conflicts++
		}
	}
	if posted != 1 || conflicts != 1 {
		t.Fatalf("one key, two requests: %+v / %+v", res[0], res[1])
	}
	for _, r := range res[2:] {
		if r.Err == nil || r.Err.Code != ledger.CodeInsufficientPoints {
			t.Fatalf("redemption beyond the balance: %+v", r)
		}
	}
	if res[2].Replayed == res[3].Replayed {
		t.Fatalf("of a refusal sent twice, exactly one answer is a replay: %v %v", res[2].Replayed, res[3].Replayed)
	}
	if head(t, l) != 1 {
		t.Fatalf("head at %d, want 1", head(t, l))
	}
	// The refusal is the key's first answer, also for a later batch.
	r, err := newWriter(t, l, ledger.WriterConfig{MaxBatch: 1}).Post(context.Background(), over)
	if err != nil || r.Err == nil || r.Err.Code != ledger.CodeInsufficientPoints || !r.Replayed {
		t.Fatalf("replay of a refusal: %+v %v", r, err)
	}
	sound(t, l)
}

// A caller that gives up while its entry waits for a batch gets its context's error, and
// its entry is left out of the batch when the batch forms.
func TestWriterCancelledCallerIsLeftOut(t *testing.T) {
	t.Parallel()
	l, _ := open(t)
	w := newWriter(t, l, ledger.WriterConfig{MaxBatch: 2, Window: forever, Flushers: 1})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := w.Post(ctx, earn("gone", "a", "10", "g"))
		done <- err
	}()
	waitFor(t, "the entry to wait in a batch", func() bool { return w.Pending() == 1 && w.Queued() == 0 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller got %v", err)
	}
	// The next entry fills the batch: it is posted, the cancelled one is not.
	p, err := w.PostOne(context.Background(), earn("here", "a", "5", "h"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Position != 1 || head(t, l) != 1 {
		t.Fatalf("position %d, head %d; want 1 and 1", p.Position, head(t, l))
	}
	if w.Stats().Abandoned.Load() != 1 {
		t.Fatalf("abandoned %d, want 1", w.Stats().Abandoned.Load())
	}
	wantBalance(t, l, "member:gone", "0")
	// An expired context is refused before queueing.
	if _, err := w.Post(ctx, earn("gone", "a", "10", "g")); !errors.Is(err, context.Canceled) {
		t.Fatalf("post with a cancelled context: %v", err)
	}
}

// Closing the writer posts everything already queued and answers every caller; then it
// takes no more.
func TestWriterCloseDrainsTheQueue(t *testing.T) {
	t.Parallel()
	l, _ := open(t)
	w := ledger.NewWriter(l, ledger.WriterConfig{MaxBatch: 100, Window: forever, Flushers: 1})
	const n = 20
	entries := make([]ledger.Entry, n)
	for i := range entries {
		entries[i] = earn(fmt.Sprintf("m%d", i), "a", "3", fmt.Sprintf("k%d", i))
	}
	type answer struct {
		res ledger.Result
		err error
	}
	answers := make(chan answer, n)
	for i := range entries {
		go func(e ledger.Entry) {
			r, err := w.Post(context.Background(), e)
			answers <- answer{r, err}
		}(entries[i])
	}
	waitFor(t, "every entry to be queued", func() bool { return w.Pending() == n })
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		a := <-answers
		if a.err != nil || a.res.Err != nil {
			t.Fatalf("answer after close: %v %v", a.err, a.res.Err)
		}
	}
	if head(t, l) != n {
		t.Fatalf("head at %d after the drain, want %d", head(t, l), n)
	}
	if _, err := w.Post(context.Background(), earn("late", "a", "1", "late")); !errors.Is(err, ledger.ErrWriterClosed) {
		t.Fatalf("post after close: %v", err)
	}
	sound(t, l)
}

// A full queue refuses at once with ErrWriterFull (back-pressure), and posts nothing for
// the refused entry; the queued ones are posted once the journal is free again.
func TestWriterFullQueueRefuses(t *testing.T) {
	t.Parallel()
	l, _ := open(t)
	ctx := context.Background()
	// Hold the journal head so that the writer's first batch cannot finish.
	blocker, err := l.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer blocker.Rollback(ctx) //nolint:errcheck // committed or rolled back below
	if _, err := blocker.Exec(ctx, `SELECT 1 FROM journal_head FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	w := newWriter(t, l, ledger.WriterConfig{Queue: 2, MaxBatch: 1, Flushers: 1})
	type answer struct {
		res ledger.Result
		err error
	}
	answers := make(chan answer, 3)
	post := func(key string) {
		go func() {
			r, err := w.Post(ctx, earn("m", "a", "1", key))
			answers <- answer{r, err}
		}()
	}
	post("k1")
	waitFor(t, "the first batch to be taken", func() bool { return w.Pending() == 1 && w.Queued() == 0 })
	post("k2")
	post("k3")
	waitFor(t, "the queue to fill", func() bool { return w.Queued() == 2 })
	if _, err := w.Post(ctx, earn("m", "a", "1", "k4")); !errors.Is(err, ledger.ErrWriterFull) {
		t.Fatalf("post to a full queue: %v", err)
	}
	if err := blocker.Rollback(ctx); err != nil && !errors.Is(err, pgx.ErrTxClosed) {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if a := <-answers; a.err != nil || a.res.Err != nil {
			t.Fatalf("queued entry: %v %v", a.err, a.res.Err)
		}
	}
	wantBalance(t, l, "member:m", "-3")
	if w.Stats().Rejected.Load() != 1 {
		t.Fatalf("rejected %d, want 1", w.Stats().Rejected.Load())
	}
}

// A batch that the database refuses as a whole (here one entry's reference holds a NUL
// byte, which PostgreSQL text cannot store) is posted again entry by entry: only the
// culprit fails.
func TestWriterSplitsABatchTheDatabaseRefuses(t *testing.T) {
	t.Parallel()
	l, _ := open(t)
	w := newWriter(t, l, ledger.WriterConfig{MaxBatch: 3, Window: forever, Flushers: 1})
	bad := earn("b", "a", "1", "kb")
	bad.Reference = "nul\x00byte"
	res, errs := postAll(w, []ledger.Entry{earn("g1", "a", "2", "k1"), bad, earn("g2", "a", "3", "k2")})
	if errs[1] == nil && res[1].Err == nil {
		t.Fatalf("the entry with a NUL byte was posted: %+v", res[1])
	}
	for _, i := range []int{0, 2} {
		if errs[i] != nil || res[i].Err != nil {
			t.Fatalf("entry %d failed with its neighbour: %v %v", i, errs[i], res[i].Err)
		}
	}
	if w.Stats().Split.Load() != 1 {
		t.Fatalf("split %d batches, want 1", w.Stats().Split.Load())
	}
	wantBalance(t, l, "member:g1", "-2")
	wantBalance(t, l, "member:g2", "-3")
	sound(t, l)
}
