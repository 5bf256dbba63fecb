package ledger_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/coalitionledger/coalition/ledger"
)

// 64 tills redeem from one member at once: never more than the member has.
func TestConcurrentRedemptionsNeverOverdraw(t *testing.T) {
	t.Parallel()
	l, _ := open(t)
	mustPost(t, l, earn("m", "a", "1000", ""))
	var wg sync.WaitGroup
	var mu sync.Mutex
	accepted, refused := 0, 0
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, err := l.PostOne(context.Background(), redeem("m", "b", "30", "0.01", fmt.Sprintf("r%d", i)))
			mu.Lock()
			defer mu.Unlock()
			switch ledger.ErrorCode(err) {
			case "":
				accepted++
			case ledger.CodeInsufficientPoints:
				refused++
			default:
				t.Errorf("redemption %d: %v", i, err)
			}
		}(i)
	}
	wg.Wait()
	if accepted != 33 || refused != 31 {
		t.Fatalf("accepted %d, refused %d; want 33 and 31 (1000 points, 30 each)", accepted, refused)
	}
	wantBalance(t, l, "member:m", "-10")
	sound(t, l)
}

// 32 retries of one request race each other: exactly one entry, and every caller gets its
// answer.
func TestConcurrentReplaysPostOnce(t *testing.T) {
	t.Parallel()
	l, _ := open(t)
	var wg sync.WaitGroup
	ids := make([]string, 32)
	for i := range ids {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			p, err := l.PostOne(context.Background(), earn("m", "a", "10", "same-key"))
			if err != nil {
				t.Errorf("caller %d: %v", i, err)
				return
			}
			ids[i] = p.ID
		}(i)
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("callers got different entries: %v", ids)
		}
	}
	if head(t, l) != 1 {
		t.Fatalf("%d entries for one key", head(t, l))
	}
	wantBalance(t, l, "member:m", "-10")
}

// Batches that touch the same members in opposite orders, many at once, all succeed:
// locks are taken in one sorted order, so none fails on a deadlock.
func TestConcurrentOverlappingBatches(t *testing.T) {
	t.Parallel()
	l, _ := open(t)
	members := []string{"ma", "mb", "mc", "md", "me", "mf"}
	var seed []ledger.Entry
	for _, m := range members {
		seed = append(seed, earn(m, "a", "1000", ""))
	}
	if _, err := l.Post(context.Background(), seed); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for round := 0; round < 5; round++ {
				var batch []ledger.Entry
				for i := range members {
					m := members[i]
					if g%2 == 1 {
						m = members[len(members)-1-i]
					}
					batch = append(batch, redeem(m, "b", "1", "0.01", ""), earn(m, "c", "1", ""))
				}
				res, err := l.Post(context.Background(), batch)
				if err != nil {
					t.Errorf("batch %d/%d: %v", g, round, err)
					return
				}
				for _, r := range res {
					if r.Err != nil {
						t.Errorf("batch %d/%d: %v", g, round, r.Err)
					}
				}
			}
		}(g)
	}
	wg.Wait()
	for _, m := range members {
		wantBalance(t, l, "member:"+m, "-1000")
	}
	if got := head(t, l); got != int64(len(members)+16*5*12) {
		t.Fatalf("head at %d", got)
	}
	sound(t, l)
}
