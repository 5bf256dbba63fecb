package loadgen

import (
	"math/rand/v2"
	"testing"
)

func TestDistributions(t *testing.T) {
	t.Parallel()
	z := newDist(40, 1.1)
	if s := z.share(); s < 0.26 || s > 0.28 {
		t.Fatalf("Zipf(1.1) over 40: hottest share %.4f, want about 0.272", s)
	}
	if s := newDist(40, 0).share(); s != 1.0/40 {
		t.Fatalf("uniform over 40: share %v", s)
	}
	r := rand.New(rand.NewPCG(1, 2))
	counts := make([]int, 40)
	for i := 0; i < 100_000; i++ {
		counts[z.draw(r)]++
	}
	if counts[0] < counts[1] || counts[1] < counts[39] {
		t.Fatalf("Zipf draws not decreasing by rank: %v", counts)
	}
}

func TestPickerFollowsTheMix(t *testing.T) {
	t.Parallel()
	p := newPicker(FullMix)
	r := rand.New(rand.NewPCG(3, 4))
	counts := map[OpKind]int{}
	const n = 201_000
	for i := 0; i < n; i++ {
		counts[p.draw(r)]++
	}
	for k, perMille := range FullMix {
		want := float64(n) * float64(perMille) / 1005
		if got := float64(counts[k]); got < want*0.9-50 || got > want*1.1+50 {
			t.Errorf("%s: %v draws, want about %.0f", k, got, want)
		}
	}
	if only := newPicker(EarnsMix); only.draw(r) != OpEarn {
		t.Fatal("the earns mix drew something else")
	}
}

func TestRingTakesAndKeeps(t *testing.T) {
	t.Parallel()
	rg := newRing[int](3)
	r := rand.New(rand.NewPCG(5, 6))
	if _, ok := rg.pick(r, false); ok {
		t.Fatal("an empty ring gave an item")
	}
	for i := 1; i <= 5; i++ {
		rg.add(i)
	}
	seen := map[int]bool{}
	for i := 0; i < 3; i++ {
		v, ok := rg.pick(r, true)
		if !ok || v < 3 || seen[v] {
			t.Fatalf("take %d: %d %v (ring keeps the last 3, each once)", i, v, ok)
		}
		seen[v] = true
	}
	if _, ok := rg.pick(r, true); ok {
		t.Fatal("a ring emptied by takes gave an item")
	}
}

func TestConnectionStrings(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ base, name, want string }{
		{"postgres://postgres@127.0.0.1:5432/postgres", "bench_1", "postgres://postgres@127.0.0.1:5432/bench_1"},
		{"postgres://u@h/db?sslmode=disable", "bench_2", "postgres://u@h/bench_2?sslmode=disable"},
		{"host=/tmp/x port=5432 user=postgres dbname=postgres", "bench_3", "host=/tmp/x port=5432 user=postgres dbname=postgres dbname=bench_3"},
	} {
		if got := withDatabase(c.base, c.name); got != c.want {
			t.Errorf("withDatabase(%q) = %q, want %q", c.base, got, c.want)
		}
	}
	if got := withPoolSize("postgres://u@h/db", 32); got != "postgres://u@h/db?pool_max_conns=32" {
		t.Errorf("withPoolSize = %q", got)
	}
	if got := withPoolSize("host=/tmp/x", 8); got != "host=/tmp/x pool_max_conns=8" {
		t.Errorf("withPoolSize = %q", got)
	}
}
