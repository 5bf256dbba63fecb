package pg_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/coalitionledger/coalition/internal/pg"
	"github.com/coalitionledger/coalition/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// A callback that panics does not keep its connection from the pool: after more panics
// than the pool has connections, a batch still gets one (with the pool's own
// SendBatch, the acquire times out).
func TestSendBatchGivesTheConnectionBackOnAPanic(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A pool of its own, closed only if the test passes: closing a pool waits for every
	// connection it lent, and a leaked one would hang the test instead of failing it.
	pool, err := pg.Connect(ctx, pgtest.URL(t), 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			pool.Close()
		}
	})
	for i := 0; i <= int(pool.Config().MaxConns); i++ {
		func() {
			defer func() {
				if p := recover(); p != "a bug in a callback" {
					t.Fatalf("batch %d: recovered %v, want the callback's panic", i, p)
				}
			}()
			b := &pgx.Batch{}
			b.Queue(`SELECT 1`).QueryRow(func(pgx.Row) error { panic("a bug in a callback") })
			err := pg.SendBatch(ctx, pool, b)
			t.Fatalf("batch %d: no panic, %v", i, err)
		}()
	}
	var one int
	b := &pgx.Batch{}
	b.Queue(`SELECT 1`).QueryRow(func(r pgx.Row) error { return r.Scan(&one) })
	if err := pg.SendBatch(ctx, pool, b); err != nil || one != 1 {
		t.Fatalf("a batch after the panics: %d %v", one, err)
	}
}
