package ledger_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/coalitionledger/coalition/internal/pg"
	"github.com/coalitionledger/coalition/ledger"
)

// wantGapFree fails the test unless the journal holds want entries, at positions 1 to want.
func wantGapFree(t *testing.T, l *ledger.Ledger, want int) {
	t.Helper()
	var n, lo, hi int64
	if err := l.Pool().QueryRow(context.Background(),
		`SELECT count(*), COALESCE(min(position), 0), COALESCE(max(position), 0) FROM entries`).Scan(&n, &lo, &hi); err != nil {
		t.Fatal(err)
	}
	if n != int64(want) || (want > 0 && (lo != 1 || hi != int64(want))) {
		t.Fatalf("journal holds %d entries at positions %d to %d, want %d at 1 to %d", n, lo, hi, want, want)
	}
	if got := head(t, l); got != int64(want) {
		t.Fatalf("head at %d, want %d", got, want)
	}
}

// Two processes (two Ledgers, each with its own head in memory) post through their writers
// at once, in small batches that chain onto each other, with entries the database refuses
// among them: every batch that failed, and every batch that had chained onto it, is run
// again; the journal stays gap-free and its chain whole, and each good entry is in it once.
func TestPipelinedBatchesKeepTheChain(t *testing.T) {
	t.Parallel()
	a, _ := open(t)
	b := ledger.New(a.Pool(), ledger.WithClock(newClock(t0).Now))
	writers := []*ledger.Writer{
		newWriter(t, a, ledger.WriterConfig{MaxBatch: 4, Flushers: 3}),
		newWriter(t, b, ledger.WriterConfig{MaxBatch: 4, Flushers: 3}),
	}
	const callers, each = 24, 12
	var wg sync.WaitGroup
	var mu sync.Mutex
	good := 0
	for c := 0; c < callers; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			w := writers[c%2]
			for i := 0; i < each; i++ {
				e := earn(fmt.Sprintf("m%d", (c*each+i)%40), fmt.Sprintf("p%d", i%3), "5", fmt.Sprintf("k%d-%d", c, i))
				bad := i%5 == 4
				if bad {
					e.Reference = "nul\x00byte" // the database refuses the text; its whole batch fails
				}
				r, err := w.Post(context.Background(), e)
				mu.Lock()
				switch {
				case bad && err == nil && r.Err == nil:
					t.Errorf("caller %d: the entry the database refuses was posted", c)
				case !bad && (err != nil || r.Err != nil):
					t.Errorf("caller %d, entry %d: %v %v", c, i, err, r.Err)
				case !bad:
					good++
				}
				mu.Unlock()
			}
		}(c)
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	wantGapFree(t, a, good)
	sound(t, a)
	var sum, members int64
	if err := a.Pool().QueryRow(context.Background(),
		`SELECT count(*), COALESCE(sum(-balance), 0)::bigint FROM accounts WHERE kind = 'member'`).Scan(&members, &sum); err != nil {
		t.Fatal(err)
	}
	if sum != int64(good)*5 {
		t.Fatalf("members hold %d points, want %d", sum, good*5)
	}
	sa, sb := a.ChainStats(), b.ChainStats()
	t.Logf("process a: %+v; process b: %+v", sa, sb)
	if sa.Optimistic+sb.Optimistic == 0 {
		t.Fatalf("no batch chained onto the head in memory: %+v %+v", sa, sb)
	}
}

// A job's transaction posts with PostAllIn while the writer's batches chain in memory: the
// job waits for them, they wait for it, and nothing deadlocks or breaks the chain.
func TestPostAllInBesideTheWriter(t *testing.T) {
	t.Parallel()
	l, _ := open(t)
	w := newWriter(t, l, ledger.WriterConfig{MaxBatch: 4, Flushers: 3})
	ctx := context.Background()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	posted := 0
	for c := 0; c < 12; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				r, err := w.Post(ctx, earn(fmt.Sprintf("w%d", c), "a", "1", fmt.Sprintf("w%d-%d", c, i)))
				if err != nil || r.Err != nil {
					t.Errorf("writer caller %d: %v %v", c, err, r.Err)
					return
				}
				mu.Lock()
				posted++
				mu.Unlock()
			}
		}(c)
	}
	jobs := 0
	for j := 0; j < 15; j++ {
		err := pg.InTx(ctx, l.Pool(), func(tx pgx.Tx) error {
			_, err := l.PostAllIn(ctx, tx, []ledger.Entry{
				earn("job", "b", "2", ""),
				earn("job", "c", "3", ""),
			})
			return err
		})
		if err != nil {
			t.Fatalf("job %d: %v", j, err)
		}
		jobs += 2
	}
	close(stop)
	wg.Wait()
	if t.Failed() {
		return
	}
	wantGapFree(t, l, posted+jobs)
	wantBalance(t, l, "member:job", "-75")
	sound(t, l)
	t.Logf("%d writer entries, %d job entries; %+v", posted, jobs, l.ChainStats())
}

// A change of the terms while batches chain in memory sends every batch priced before it
// back, unwritten, however far it had got.
func TestTermsChangeStopsChainedBatches(t *testing.T) {
	t.Parallel()
	l, _ := open(t)
	w := newWriter(t, l, ledger.WriterConfig{MaxBatch: 2, Flushers: 3})
	ctx := context.Background()
	mustPost(t, l, earn("seed", "a", "1", ""))
	var version int64
	if err := l.Pool().QueryRow(ctx, `SELECT terms_version FROM journal_head`).Scan(&version); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	accepted, sentBack := 0, 0
	for c := 0; c < 16; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				e := earn(fmt.Sprintf("t%d", c), "a", "1", fmt.Sprintf("t%d-%d", c, i))
				e.TermsVersion = version
				r, err := w.Post(ctx, e)
				mu.Lock()
				switch {
				case err != nil:
					t.Errorf("caller %d: %v", c, err)
				case r.TermsChanged():
					sentBack++
				case r.Err != nil:
					t.Errorf("caller %d: %v", c, r.Err)
				default:
					accepted++
				}
				mu.Unlock()
				if c == 0 && i == 3 {
					if _, err := l.Pool().Exec(ctx, `UPDATE journal_head SET terms_version = terms_version + 1`); err != nil {
						t.Error(err)
					}
				}
			}
		}(c)
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if sentBack == 0 {
		t.Fatalf("no entry was sent back after the terms changed (%d accepted)", accepted)
	}
	wantGapFree(t, l, accepted+1)
	sound(t, l)
}
