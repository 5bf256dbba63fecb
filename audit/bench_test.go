package audit_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/coalitionledger/coalition/audit"
	"github.com/coalitionledger/coalition/internal/pg"
	"github.com/coalitionledger/coalition/internal/pgtest"
	"github.com/coalitionledger/coalition/ledger"
)

// benchVerifyEntries is how many entries BenchmarkVerify's journal holds; the environment
// variable AUDIT_BENCH_ENTRIES overrides it.
const benchVerifyEntries = 200_000

// BenchmarkVerify measures how many entries per second verify checks, from the database
// and from a JSON-lines export of it. The journal is half earns (2 postings, 1 lot
// movement) and half redemptions at another partner (4 postings with the money legs, 1
// or 2 movements), over 10,000 members and 10 partners, with a checkpoint at the head.
// It runs only with -bench; docs/BENCHMARKS.md records the figures.
func BenchmarkVerify(b *testing.B) {
	n := benchVerifyEntries
	if v := os.Getenv("AUDIT_BENCH_ENTRIES"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			b.Fatal(err)
		}
	}
	ctx := context.Background()
	pool, err := pg.Connect(ctx, pgtest.URL(b), 4)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	l := ledger.New(pool)
	partners := []string{"fuelco", "grocer", "airline", "hotel", "cinema", "pharmacy", "books", "railway", "telco", "bakery"}
	const members = 10_000
	now := time.Now()
	posted := 0
	post := func(batch []ledger.Entry) {
		res, err := l.Post(ctx, batch)
		if err != nil {
			b.Fatal(err)
		}
		for i, r := range res {
			if r.Err != nil {
				b.Fatalf("entry %d: %v", i, r.Err)
			}
		}
		posted += len(batch)
	}
	batch := make([]ledger.Entry, 0, ledger.MaxBatch)
	for round := 0; posted < n; round++ {
		for i := 0; i < ledger.MaxBatch && posted+len(batch) < n; i++ {
			// An earn round's members are the next redemption round's.
			m := fmt.Sprintf("m%05d", ((round-round%2)*ledger.MaxBatch+i)%members)
			p := partners[i%len(partners)]
			e := ledger.Entry{Partner: p, Member: m, IdempotencyKey: fmt.Sprintf("b%d-%d", round, i), BusinessTime: now}
			if round%2 == 0 {
				e.Kind, e.Op = ledger.EntryEarn, ledger.Issue{Points: decimal.NewFromInt(100), Issuer: p}
			} else {
				q := partners[(i+3)%len(partners)]
				e.Partner = q
				e.Kind, e.Op = ledger.EntryRedemption, ledger.Consume{Points: decimal.NewFromInt(30), Consumer: q, Rate: decimal.RequireFromString("0.01")}
			}
			batch = append(batch, e)
		}
		post(batch)
		batch = batch[:0]
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := audit.NewCheckpointer(pool, key, nil).Checkpoint(ctx, "benchmark"); err != nil {
		b.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "ANALYZE"); err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "export.jsonl")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := audit.Export(ctx, pool, f, audit.ExportOptions{Format: audit.FormatJSONL}); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	b.Run("database", func(b *testing.B) {
		for b.Loop() {
			v, err := audit.VerifyDatabase(ctx, pool, audit.VerifyOptions{})
			if err != nil || !v.OK {
				b.Fatalf("%+v %v", v, err)
			}
		}
		b.ReportMetric(float64(posted)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
	})
	b.Run("export", func(b *testing.B) {
		for b.Loop() {
			f, err := os.Open(path)
			if err != nil {
				b.Fatal(err)
			}
			v, err := audit.VerifyExport(f, audit.VerifyOptions{})
			f.Close()
			if err != nil || !v.OK {
				b.Fatalf("%+v %v", v, err)
			}
		}
		b.ReportMetric(float64(posted)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
	})
}
