package ledger_test

import (
	"context"
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
	// Two months on, March is past the 30 days and goes as a whole partition.
	c.set(time.Date(2026, 5, 15, 0, 0, 0, 0, time.UTC))
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
