package ledger_test

import (
	"context"
	"testing"
	"time"
)

func TestExpireDueIsIdempotent(t *testing.T) {
	t.Parallel()
	l, c := open(t)
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		mustPost(t, l, earnExpiring("m", "a", "10", t0.Add(time.Hour)))
	}
	mustPost(t, l, earnExpiring("m", "a", "10", t0.Add(48*time.Hour)))
	mustPost(t, l, hold("m", "b", "5", "0.01"))
	c.advance(2 * time.Hour)
	n, err := l.ExpireDue(ctx, c.Now(), nil)
	if err != nil || n != 3 {
		t.Fatalf("expired %d lots, %v; want 3", n, err)
	}
	wantBalance(t, l, "partner:a:expired", "-25") // 30 due, 5 of them held
	n, err = l.ExpireDue(ctx, c.Now(), nil)
	if err != nil || n != 0 {
		t.Fatalf("second run expired %d, %v", n, err)
	}
	sound(t, l)
}

func TestReleaseExpiredHolds(t *testing.T) {
	t.Parallel()
	l, c := open(t)
	ctx := context.Background()
	mustPost(t, l, earn("m", "a", "100", ""))
	mustPost(t, l, hold("m", "b", "30", "0.01")) // 15 minutes
	c.advance(10 * time.Minute)
	if n, _ := l.ReleaseExpiredHolds(ctx, c.Now(), nil); n != 0 {
		t.Fatalf("voided %d holds before their time", n)
	}
	c.advance(10 * time.Minute)
	n, err := l.ReleaseExpiredHolds(ctx, c.Now(), nil)
	if err != nil || n != 1 {
		t.Fatalf("voided %d, %v", n, err)
	}
	wantBalance(t, l, "member:m", "-100")
	wantBalance(t, l, "member:m:held", "0")
	if n, _ := l.ReleaseExpiredHolds(ctx, c.Now(), nil); n != 0 {
		t.Fatalf("second run voided %d", n)
	}
	sound(t, l)
}
