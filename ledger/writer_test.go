package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/coalitionledger/coalition/internal/pgtest"

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

// tickingLedger is a ledger whose clock moves a microsecond on every reading, so that
// every shared transaction records its own time and the tests can tell them apart.
func tickingLedger(t *testing.T) *ledger.Ledger {
	t.Helper()
	var ticks atomic.Int64
	return ledger.New(pgtest.Pool(t), ledger.WithClock(func() time.Time {
		return t0.Add(time.Duration(ticks.Add(1)) * time.Microsecond)
	}))
}

// wantTogether fails the test unless the group's entries were all accepted, in order, in
// consecutive positions of one transaction.
func wantTogether(t *testing.T, what string, res []ledger.Result) {
	t.Helper()
	for i, r := range res {
		if r.Err != nil {
			t.Fatalf("%s: entry %d refused: %v", what, i, r.Err)
		}
		if i == 0 {
			continue
		}
		prev := res[i-1].Entry
		if r.Entry.Position != prev.Position+1 || !r.Entry.RecordedAt.Equal(prev.RecordedAt) {
			t.Fatalf("%s: entry %d at %d (%s) after %d (%s): not together", what, i,
				r.Entry.Position, r.Entry.RecordedAt, prev.Position, prev.RecordedAt)
		}
	}
}

// Groups posted from many goroutines beside single entries: each group comes back in
// order, in consecutive positions of one transaction, however the batches formed (groups
// of 3 in batches of at most 5 never share one with another group of 3).
func TestWriterGroupsStayTogetherInOrder(t *testing.T) {
	t.Parallel()
	l := tickingLedger(t)
	var sizes sync.Map
	w := newWriter(t, l, ledger.WriterConfig{MaxBatch: 5, Flushers: 2, OnBatch: func(size int, _ time.Duration, _ error) {
		if size > 5 {
			sizes.Store(size, true)
		}
	}})
	const groups = 24
	results := make([][]ledger.Result, groups)
	singles := make([]ledger.Result, groups)
	errs := make(chan error, 2*groups)
	var wg sync.WaitGroup
	for g := 0; g < groups; g++ {
		wg.Add(2)
		go func(g int) {
			defer wg.Done()
			group := []ledger.Entry{
				earn(fmt.Sprintf("g%d", g), "a", "1", fmt.Sprintf("g%d-0", g)),
				earn(fmt.Sprintf("g%d", g), "a", "2", fmt.Sprintf("g%d-1", g)),
				earn(fmt.Sprintf("g%d", g), "a", "3", fmt.Sprintf("g%d-2", g)),
			}
			res, err := w.PostGroup(context.Background(), group)
			results[g] = res
			errs <- err
		}(g)
		go func(g int) {
			defer wg.Done()
			res, err := w.Post(context.Background(), earn(fmt.Sprintf("s%d", g), "b", "4", fmt.Sprintf("s%d", g)))
			singles[g] = res
			errs <- err
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for g, res := range results {
		if len(res) != 3 {
			t.Fatalf("group %d: %d answers, want 3", g, len(res))
		}
		wantTogether(t, fmt.Sprintf("group %d", g), res)
		for i, r := range res {
			if want := d(fmt.Sprint(i + 1)); r.Entry.Lot == nil || !r.Entry.Lot.Points.Equal(want) {
				t.Fatalf("group %d entry %d: lot %+v, want %s points", g, i, r.Entry.Lot, want)
			}
		}
		wantBalance(t, l, fmt.Sprintf("member:g%d", g), "-6")
	}
	for g, r := range singles {
		if r.Err != nil {
			t.Fatalf("single %d: %v", g, r.Err)
		}
	}
	sizes.Range(func(k, _ any) bool {
		t.Fatalf("a batch of %d entries, more than MaxBatch 5", k)
		return false
	})
	if head(t, l) != 4*groups {
		t.Fatalf("head at %d, want %d", head(t, l), 4*groups)
	}
	sound(t, l)
}

// A refusal inside a group fails neither the rest of the group nor its neighbours in
// the batch; a repeated key inside a group is answered with its first use's answer.
func TestWriterGroupRefusalsAreIsolated(t *testing.T) {
	t.Parallel()
	l := tickingLedger(t)
	mustPost(t, l, earn("m", "a", "100", ""))
	w := newWriter(t, l, ledger.WriterConfig{MaxBatch: 6, Window: forever, Flushers: 1})
	var wg sync.WaitGroup
	var group, other []ledger.Result
	var gerr, oerr error
	wg.Add(2)
	go func() {
		defer wg.Done()
		group, gerr = w.PostGroup(context.Background(), []ledger.Entry{
			redeem("m", "b", "60", "0.01", "r1"),
			redeem("m", "b", "60", "0.01", "r2"), // refused: 40 left
			earn("m", "a", "5", "e1"),
			earn("m", "a", "5", "e1"), // the same key: its first answer
		})
	}()
	go func() {
		defer wg.Done()
		other, oerr = w.PostGroup(context.Background(), []ledger.Entry{
			redeem("nobody", "b", "1", "0.01", "r3"), // refused: no points
			earn("n", "a", "7", "e2"),
		})
	}()
	wg.Wait()
	if gerr != nil || oerr != nil {
		t.Fatal(gerr, oerr)
	}
	if group[0].Err != nil || group[1].Err == nil || group[1].Err.Code != ledger.CodeInsufficientPoints || group[2].Err != nil {
		t.Fatalf("group answers: %+v", group)
	}
	if !group[3].Replayed || group[3].Entry.ID != group[2].Entry.ID {
		t.Fatalf("the repeated key was not answered with its first answer: %+v", group[3])
	}
	if other[0].Err == nil || other[0].Err.Code != ledger.CodeInsufficientPoints || other[1].Err != nil {
		t.Fatalf("other group answers: %+v", other)
	}
	if !group[0].Entry.RecordedAt.Equal(other[1].Entry.RecordedAt) {
		t.Fatal("the two groups did not share their batch")
	}
	wantBalance(t, l, "member:m", "-45")
	wantBalance(t, l, "member:n", "-7")
	sound(t, l)
}

// A group bigger than the writer's MaxBatch (and than its queue) gets a transaction of
// its own, whole and in order.
func TestWriterGroupLargerThanMaxBatch(t *testing.T) {
	t.Parallel()
	l := tickingLedger(t)
	w := newWriter(t, l, ledger.WriterConfig{Queue: 4, MaxBatch: 2, Window: forever, Flushers: 2})
	group := make([]ledger.Entry, 9)
	for i := range group {
		group[i] = earn("big", "a", fmt.Sprint(i+1), fmt.Sprintf("k%d", i))
	}
	res, err := w.PostGroup(context.Background(), group)
	if err != nil {
		t.Fatal(err)
	}
	wantTogether(t, "the big group", res)
	if res[0].Entry.Position != 1 || w.Stats().Batches.Load() != 1 {
		t.Fatalf("first position %d, %d batches; want 1 and 1", res[0].Entry.Position, w.Stats().Batches.Load())
	}
	wantBalance(t, l, "member:big", "-45")
	// An empty group and one the engine could never take are refused before queueing.
	if _, err := w.PostGroup(context.Background(), nil); ledger.ErrorCode(err) != ledger.CodeEmptyBatch {
		t.Fatalf("empty group: %v", err)
	}
	if _, err := w.PostGroup(context.Background(), make([]ledger.Entry, ledger.MaxBatch+1)); ledger.ErrorCode(err) != ledger.CodeBatchTooLarge {
		t.Fatalf("oversized group: %v", err)
	}
	sound(t, l)
}

// A group whose caller gives up while it waits is left out whole when its batch forms;
// a group posted with a cancelled context is refused before queueing.
func TestWriterCancelledGroupIsLeftOut(t *testing.T) {
	t.Parallel()
	l := tickingLedger(t)
	ctx := context.Background()
	blocker, err := l.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer blocker.Rollback(ctx) //nolint:errcheck // rolled back below
	if _, err := blocker.Exec(ctx, `SELECT 1 FROM journal_head FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	// Batches of one: the first entry's batch forms at once, and the group (bigger than a
	// batch) waits in the queue until the flusher is free.
	w := newWriter(t, l, ledger.WriterConfig{MaxBatch: 1, Flushers: 1})
	first := make(chan error, 1)
	go func() {
		_, err := w.Post(ctx, earn("first", "a", "1", "f"))
		first <- err
	}()
	waitFor(t, "the first batch to be taken", func() bool { return w.Pending() == 1 && w.Queued() == 0 })
	gctx, cancel := context.WithCancel(ctx)
	gone := make(chan error, 1)
	go func() {
		_, err := w.PostGroup(gctx, []ledger.Entry{earn("gone", "a", "1", "g1"), earn("gone", "a", "2", "g2"), earn("gone", "a", "3", "g3")})
		gone <- err
	}()
	waitFor(t, "the group to be queued", func() bool { return w.Queued() == 3 })
	cancel()
	if err := <-gone; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled group: %v", err)
	}
	if err := blocker.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the group to be left out", func() bool { return w.Pending() == 0 })
	if w.Stats().Abandoned.Load() != 3 {
		t.Fatalf("abandoned %d entries, want 3", w.Stats().Abandoned.Load())
	}
	wantBalance(t, l, "member:gone", "0")
	if head(t, l) != 1 {
		t.Fatalf("head at %d, want 1", head(t, l))
	}
	if _, err := w.PostGroup(gctx, []ledger.Entry{earn("gone", "a", "1", "g1")}); !errors.Is(err, context.Canceled) {
		t.Fatalf("group with a cancelled context: %v", err)
	}
}

// A batch the database refuses as a whole is posted again request by request: the group
// with the culprit fails whole (it is never split), its neighbour is posted.
func TestWriterSplitKeepsAGroupWhole(t *testing.T) {
	t.Parallel()
	l := tickingLedger(t)
	w := newWriter(t, l, ledger.WriterConfig{MaxBatch: 5, Window: forever, Flushers: 1})
	bad := earn("b", "a", "1", "kb")
	bad.Reference = "nul\x00byte"
	var wg sync.WaitGroup
	var badRes, goodRes []ledger.Result
	var badErr, goodErr error
	wg.Add(2)
	go func() {
		defer wg.Done()
		badRes, badErr = w.PostGroup(context.Background(), []ledger.Entry{earn("b", "a", "2", "kb0"), bad})
	}()
	go func() {
		defer wg.Done()
		goodRes, goodErr = w.PostGroup(context.Background(), []ledger.Entry{earn("g", "a", "3", "kg0"), earn("g", "a", "4", "kg1"), earn("g", "a", "5", "kg2")})
	}()
	wg.Wait()
	if badErr == nil {
		t.Fatalf("the group with a NUL byte was posted: %+v", badRes)
	}
	if goodErr != nil {
		t.Fatalf("the neighbour group failed with the culprit: %v", goodErr)
	}
	wantTogether(t, "the neighbour group", goodRes)
	if w.Stats().Split.Load() != 1 {
		t.Fatalf("split %d batches, want 1", w.Stats().Split.Load())
	}
	wantBalance(t, l, "member:b", "0")
	wantBalance(t, l, "member:g", "-12")
	sound(t, l)
}
