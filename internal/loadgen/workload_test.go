package loadgen

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
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

// A run is refused before anything is created when it would leave the machine or its
// bounds; a PostgreSQL host is on loopback when it is an address of it, localhost or a
// Unix socket.
func TestValidateKeepsRunsOnLoopbackAndBounded(t *testing.T) {
	t.Parallel()
	ok := Config{AdminURL: "postgres://postgres@127.0.0.1:5432/postgres", Database: "bench_1", Partners: 40,
		Members: 1000, Clients: 8, Batch: 1, Ops: 100, Duration: time.Second, Warmup: time.Second,
		RetryFor: time.Second, PgbenchTime: time.Second, PgbenchScale: 10, ServerConns: 32}
	if err := ok.Validate(); err != nil {
		t.Fatalf("a plain run: %v", err)
	}
	for _, url := range []string{"postgres://u@localhost/db", "postgres://u@LOCALHOST/db", "postgres://u@[::1]:5433/db", "host=/var/run/postgresql user=u",
		"postgres://u@127.0.0.2/db", "postgres://u@127.0.0.1,localhost/db"} {
		c := ok
		c.AdminURL = url
		if err := c.Validate(); err != nil {
			t.Errorf("%s: %v", url, err)
		}
	}
	for _, url := range []string{"postgres://u@db.example.com/db", "postgres://u@10.0.0.5/db", "host=192.168.1.2 user=u",
		"postgres://u@127.0.0.1,10.0.0.5/db"} {
		c := ok
		c.AdminURL = url
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "loopback") {
			t.Errorf("%s: %v, want a refusal naming loopback", url, err)
		}
	}
	for name, mutate := range map[string]func(*Config){
		"negative warm-up":    func(c *Config) { c.Warmup = -time.Second },
		"a day of pgbench":    func(c *Config) { c.PgbenchTime = 24 * time.Hour },
		"retries for an hour": func(c *Config) { c.RetryFor = time.Hour },
		"pgbench scale 5000":  func(c *Config) { c.PgbenchScale = 5000 },
		"no server conns":     func(c *Config) { c.ServerConns = 0 },
		"a negative rate":     func(c *Config) { c.Rate = -1 },
		"a rate of 1e9":       func(c *Config) { c.Rate = 1e9 },
		"a rate of NaN":       func(c *Config) { c.Rate = math.NaN() },
		"-2 restarts":         func(c *Config) { c.ServerKills, c.PGRestarts, c.PrivatePG = 1, -2, true },
		"1,000 kills":         func(c *Config) { c.ServerKills = 1000 },
		"pgbench for 500ms":   func(c *Config) { c.PgbenchTime = 500 * time.Millisecond },
	} {
		c := ok
		mutate(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
