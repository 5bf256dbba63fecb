package ledger_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/coalitionledger/coalition/internal/pg"
	"github.com/coalitionledger/coalition/internal/pgtest"
	"github.com/coalitionledger/coalition/ledger"
)

// The benchmarks post earns shaped like real traffic: a member drawn at random from
// benchMembers, each of whom already holds one lot, and a partner drawn from
// benchPartners that issues the points. They run only with -bench; scripts/bench-ledger.sh
// runs them next to pgbench and docs/BENCHMARKS.md records the figures.
const (
	benchMembers  = 10_000
	benchPartners = 10
	// benchPosters is how many goroutines BenchmarkPostSingleParallel posts from (at
	// least; RunParallel starts a multiple of GOMAXPROCS), as pgbench -c 8.
	benchPosters = 8
	// benchWarmUpPosts is how many untimed posts each parallel poster makes first.
	benchWarmUpPosts = 5
	// benchMaxPoints bounds the points of one earn.
	benchMaxPoints = 500
)

// benchPartnerIDs are the partners that issue the benchmark's earns.
var benchPartnerIDs = [benchPartners]string{
	"fuelco", "grocer", "airline", "hotel", "cinema", "pharmacy", "books", "railway", "telco", "bakery",
}

// benchLedger is a ledger on its own database, seeded with one earn per member.
type benchLedger struct {
	ledger  *ledger.Ledger
	members []string
	posters atomic.Int64 // hands each poster a distinct prefix for its idempotency keys
}

// openBench returns a ledger with the real clock on a fresh database (pgtest's private
// cluster, or the server DATABASE_URL names) whose pool holds at most conns connections,
// after posting one earn for every member in batches of ledger.MaxBatch, so that the
// timed posts find existing accounts and lots as they would in production.
func openBench(b *testing.B, conns int32) *benchLedger {
	b.Helper()
	ctx := context.Background()
	pool, err := pg.Connect(ctx, pgtest.URL(b), conns)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	bl := &benchLedger{ledger: ledger.New(pool), members: make([]string, benchMembers)}
	for i := range bl.members {
		bl.members[i] = fmt.Sprintf("m%05d", i)
	}
	now := time.Now()
	batch := make([]ledger.Entry, 0, ledger.MaxBatch)
	for i, m := range bl.members {
		p := benchPartnerIDs[i%benchPartners]
		batch = append(batch, ledger.Entry{Kind: ledger.EntryEarn, Partner: p, Member: m,
			IdempotencyKey: "seed-" + m, BusinessTime: now,
			Op: ledger.Issue{Points: decimal.NewFromInt(100), Issuer: p}})
		if len(batch) == cap(batch) || i == len(bl.members)-1 {
			if err := postEarns(ctx, bl.ledger, batch); err != nil {
				b.Fatalf("seed: %v", err)
			}
			batch = batch[:0]
		}
	}
	// Give the planner statistics, as autovacuum would have on a live database.
	if _, err := pool.Exec(ctx, "ANALYZE"); err != nil {
		b.Fatal(err)
	}
	return bl
}

// benchTraffic makes the earns of one poster; it is not safe for concurrent use.
type benchTraffic struct {
	members []string
	rng     *rand.Rand
	prefix  string
	seq     int
	now     time.Time
}

// traffic returns a new poster's source of earns, with idempotency keys no other poster
// of bl uses.
func (bl *benchLedger) traffic() *benchTraffic {
	n := uint64(bl.posters.Add(1))
	return &benchTraffic{
		members: bl.members,
		rng:     rand.New(rand.NewPCG(n, 0x5eed)),
		prefix:  "bench-" + strconv.FormatUint(n, 10) + "-",
		now:     time.Now(),
	}
}

// earn returns the next earn: a random member, a random partner issuing its own points,
// a new idempotency key.
func (bt *benchTraffic) earn() ledger.Entry {
	bt.seq++
	p := benchPartnerIDs[bt.rng.IntN(benchPartners)]
	return ledger.Entry{
		Kind: ledger.EntryEarn, Partner: p, Member: bt.members[bt.rng.IntN(len(bt.members))],
		IdempotencyKey: bt.prefix + strconv.Itoa(bt.seq), BusinessTime: bt.now,
		Op: ledger.Issue{Points: decimal.NewFromInt(1 + bt.rng.Int64N(benchMaxPoints)), Issuer: p},
	}
}

// postEarns posts batch in one Post and fails if the batch or any entry was refused.
func postEarns(ctx context.Context, l *ledger.Ledger, batch []ledger.Entry) error {
	res, err := l.Post(ctx, batch)
	if err != nil {
		return err
	}
	for i, r := range res {
		if r.Err != nil {
			return fmt.Errorf("entry %d: %w", i, r.Err)
		}
		if r.Replayed {
			return fmt.Errorf("entry %d: replayed, its idempotency key was not new", i)
		}
	}
	return nil
}

// BenchmarkPostSingle posts one earn per Post call, one call after another.
func BenchmarkPostSingle(b *testing.B) { benchmarkPost(b, 1) }

// BenchmarkPostBatch100 posts 100 earns per Post call.
func BenchmarkPostBatch100(b *testing.B) { benchmarkPost(b, 100) }

// BenchmarkPostBatch1000 posts 1,000 earns (ledger.MaxBatch) per Post call.
func BenchmarkPostBatch1000(b *testing.B) { benchmarkPost(b, 1000) }

// benchmarkPost times Post calls of size earns each, from one goroutine.
func benchmarkPost(b *testing.B, size int) {
	bl := openBench(b, 2)
	ctx := context.Background()
	bt := bl.traffic()
	batch := make([]ledger.Entry, size)
	posted := 0
	// The first call of b.Loop resets the timer: the seeding above is not timed.
	for b.Loop() {
		for i := range batch {
			batch[i] = bt.earn()
		}
		if err := postEarns(ctx, bl.ledger, batch); err != nil {
			b.Fatal(err)
		}
		posted += size
	}
	b.ReportMetric(float64(posted)/b.Elapsed().Seconds(), "entries/s")
}

// BenchmarkPostSingleParallel posts one earn per Post call from benchPosters goroutines
// at once. Every Post locks the journal head row to take its positions, so concurrent
// posts queue there: this shows what concurrency buys when commits are the cost.
func BenchmarkPostSingleParallel(b *testing.B) {
	procs := runtime.GOMAXPROCS(0)
	parallelism := (benchPosters + procs - 1) / procs
	posters := parallelism * procs
	// The ledger is set up once here, not in every round of the timed sub-benchmark.
	bl := openBench(b, int32(posters))
	// Warm up untimed: posts in flight at once open every connection of the pool, and
	// each connection prepares the engine's statements on first use.
	var wg sync.WaitGroup
	for range posters {
		wg.Go(func() {
			bt := bl.traffic()
			for range benchWarmUpPosts {
				if err := postEarns(context.Background(), bl.ledger, []ledger.Entry{bt.earn()}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		return
	}
	b.Run("posters="+strconv.Itoa(posters), func(b *testing.B) {
		ctx := context.Background()
		b.SetParallelism(parallelism)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			bt := bl.traffic()
			for pb.Next() {
				if err := postEarns(ctx, bl.ledger, []ledger.Entry{bt.earn()}); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entries/s")
	})
}
