package partners

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// gate is a round trip that waits to be let through, recording what each carried.
type gate struct {
	mu      sync.Mutex
	trips   [][]string // the cards of each trip, in order
	started chan struct{}
	release chan struct{}
	err     error
}

func newGate() *gate { return &gate{started: make(chan struct{}, 16), release: make(chan struct{})} }

func (g *gate) run(ctx context.Context, lookups []memberLookup) ([]resolvedMember, error) {
	var cards []string
	for _, l := range lookups {
		cards = append(cards, l.ref.Card)
	}
	g.mu.Lock()
	g.trips = append(g.trips, cards)
	g.mu.Unlock()
	g.started <- struct{}{}
	<-g.release
	if g.err != nil {
		return nil, g.err
	}
	out := make([]resolvedMember, len(lookups))
	for i, l := range lookups {
		out[i].ID = "m-" + l.ref.Card
	}
	return out, nil
}

func (g *gate) tripsSoFar() [][]string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([][]string(nil), g.trips...)
}

func lookupsOf(cards ...string) []memberLookup {
	out := make([]memberLookup, len(cards))
	for i, c := range cards {
		out[i].ref.Card = c
	}
	return out
}

type answer struct {
	out []resolvedMember
	err error
}

func ask(r *resolver, ctx context.Context, cards ...string) chan answer {
	ch := make(chan answer, 1)
	go func() {
		out, err := r.resolve(ctx, lookupsOf(cards...))
		ch <- answer{out, err}
	}()
	return ch
}

// waitQueued waits until n calls wait in the resolver's queue.
func waitQueued(t *testing.T, r *resolver, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		r.mu.Lock()
		queued := len(r.queue)
		r.mu.Unlock()
		if queued == n {
			return
		}
	}
	t.Fatalf("%d calls never queued", n)
}

// occupied returns a resolver whose round trips wait at its gate, with maxResolveTrips
// calls in flight already: later calls queue.
func occupied() (*gate, *resolver, []chan answer) {
	g := newGate()
	r := &resolver{run: g.run}
	busy := make([]chan answer, maxResolveTrips)
	for i := range busy {
		busy[i] = ask(r, context.Background(), "busy")
		<-g.started
	}
	return g, r, busy
}

func TestResolverSharesRoundTripsAndAnswersEachCallItsOwn(t *testing.T) {
	t.Parallel()
	g := newGate()
	r := &resolver{run: g.run}
	ctx := context.Background()
	// The first maxResolveTrips calls go at once; later ones wait and then ride together.
	first := make([]chan answer, maxResolveTrips)
	for i := range first {
		first[i] = ask(r, ctx, string(rune('a'+i)))
		<-g.started
	}
	x := ask(r, ctx, "x1", "x2")
	waitQueued(t, r, 1)
	y := ask(r, ctx, "y")
	waitQueued(t, r, 2)
	close(g.release)
	for _, ch := range first {
		if a := <-ch; a.err != nil || len(a.out) != 1 {
			t.Fatalf("first calls: %+v", a)
		}
	}
	ax, ay := <-x, <-y
	if ax.err != nil || len(ax.out) != 2 || ax.out[0].ID != "m-x1" || ax.out[1].ID != "m-x2" {
		t.Fatalf("x = %+v", ax)
	}
	if ay.err != nil || len(ay.out) != 1 || ay.out[0].ID != "m-y" {
		t.Fatalf("y = %+v", ay)
	}
	trips := g.tripsSoFar()
	if len(trips) != maxResolveTrips+1 {
		t.Fatalf("trips = %v, want the waiting calls in one", trips)
	}
	if last := trips[len(trips)-1]; len(last) != 3 || last[0] != "x1" || last[1] != "x2" || last[2] != "y" {
		t.Fatalf("shared trip = %v, want the calls' look-ups in arrival order", last)
	}
}

func TestResolverCancelledCallerLeavesTheOthersTheirAnswers(t *testing.T) {
	t.Parallel()
	g, r, busy := occupied()
	cctx, cancel := context.WithCancel(context.Background())
	gone := ask(r, cctx, "gone")
	waitQueued(t, r, 1)
	stays := ask(r, context.Background(), "stays")
	waitQueued(t, r, 2)
	cancel()
	if a := <-gone; !errors.Is(a.err, context.Canceled) {
		t.Fatalf("cancelled call = %+v, want context.Canceled", a)
	}
	close(g.release)
	if a := <-stays; a.err != nil || len(a.out) != 1 || a.out[0].ID != "m-stays" {
		t.Fatalf("the other call = %+v", a)
	}
	for _, ch := range busy {
		<-ch
	}
	trips := g.tripsSoFar()
	if last := trips[len(trips)-1]; len(last) != 1 || last[0] != "stays" {
		t.Fatalf("last trip = %v, want the cancelled call left out", last)
	}
}

func TestResolverTripFailingForAllFailsEveryCall(t *testing.T) {
	t.Parallel()
	g := newGate()
	g.err = errors.New("connection lost")
	r := &resolver{run: g.run}
	calls := []chan answer{ask(r, context.Background(), "a"), ask(r, context.Background(), "b")}
	close(g.release)
	for _, ch := range calls {
		if a := <-ch; a.err == nil || a.err.Error() != "connection lost" {
			t.Fatalf("call = %+v, want the trip's error", a)
		}
	}
	// The calls are answered inside the trip; its round-trip loop then finds the queue
	// empty and stops, a moment later.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		r.mu.Lock()
		running, queued := r.running, len(r.queue)
		r.mu.Unlock()
		if running == 0 && queued == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("resolver left running=%d queue=%d", running, queued)
		}
	}
}

func TestResolverOneCallsBadValueIsNotItsNeighboursFailure(t *testing.T) {
	t.Parallel()
	g, r, busy := occupied()
	// The database refuses a whole round trip for one bad value (text that is not UTF-8,
	// say); a timeout or a lost connection is everyone's.
	r.run = func(ctx context.Context, lookups []memberLookup) ([]resolvedMember, error) {
		for _, l := range lookups {
			if l.ref.Card == "bad" {
				return nil, &pgconn.PgError{Code: "22021", Message: "invalid byte sequence"}
			}
		}
		return g.run(ctx, lookups)
	}
	good := ask(r, context.Background(), "good")
	waitQueued(t, r, 1)
	bad := ask(r, context.Background(), "bad")
	waitQueued(t, r, 2)
	close(g.release)
	if a := <-good; a.err != nil || len(a.out) != 1 || a.out[0].ID != "m-good" {
		t.Fatalf("the good call = %+v", a)
	}
	var pgErr *pgconn.PgError
	if a := <-bad; !errors.As(a.err, &pgErr) || pgErr.Code != "22021" {
		t.Fatalf("the bad call = %+v", a)
	}
	for _, ch := range busy {
		<-ch
	}
}

func TestResolverTurnsAPanicIntoAnError(t *testing.T) {
	t.Parallel()
	r := &resolver{run: func(context.Context, []memberLookup) ([]resolvedMember, error) { panic("boom") }}
	if _, err := r.resolve(context.Background(), lookupsOf("a")); err == nil || !strings.Contains(err.Error(), "panicked: boom") {
		t.Fatalf("err = %v, want the panic as an error", err)
	}
}

func TestResolverBoundsASharedTrip(t *testing.T) {
	t.Parallel()
	g, r, busy := occupied()
	big := make([]string, maxTripLookups-1)
	for i := range big {
		big[i] = "b"
	}
	var calls []chan answer
	for i, cards := range [][]string{big, {"c1", "c2"}, {"d"}, append(big, big...)} {
		calls = append(calls, ask(r, context.Background(), cards...))
		waitQueued(t, r, i+1)
	}
	close(g.release)
	for _, ch := range append(busy, calls...) {
		if a := <-ch; a.err != nil {
			t.Fatal(a.err)
		}
	}
	var sizes []int
	for _, trip := range g.tripsSoFar()[maxResolveTrips:] {
		sizes = append(sizes, len(trip))
	}
	// The first call fills a trip (the second would overflow it); an oversized call goes
	// alone. The trips run side by side, in any order.
	slices.Sort(sizes)
	if want := []int{3, maxTripLookups - 1, 2 * (maxTripLookups - 1)}; !slices.Equal(sizes, want) {
		t.Fatalf("trips of %v look-ups, want %v", sizes, want)
	}
}
