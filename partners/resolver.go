package partners

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// maxResolveTrips is how many member round trips a store runs at once. The requests that
// arrive while they are all in flight ride together in the next one: each round trip is a
// transaction of its own, and at a till's rate most of its cost is the transaction, not
// the look-up. Two posted as many earns at the peak but doubled the median latency at
// half of it (docs/BENCHMARKS.md).
const maxResolveTrips = 4

// resolveTimeout bounds a shared round trip: it serves several requests, so no one
// request's cancellation stops it.
const resolveTimeout = 30 * time.Second

// resolver gathers the member look-ups of concurrent requests into shared round trips.
// A request never waits for a timer: with a round trip free, its look-ups go at once.
type resolver struct {
	run func(context.Context, []memberLookup) ([]resolvedMember, error)

	mu      sync.Mutex
	queue   []*resolveCall
	running int
}

// resolveCall is one request's look-ups and, once done is closed, their answer.
type resolveCall struct {
	ctx     context.Context
	lookups []memberLookup
	out     []resolvedMember
	err     error
	done    chan struct{}
}

// resolve answers the look-ups of one request, in a round trip it may share.
func (r *resolver) resolve(ctx context.Context, lookups []memberLookup) ([]resolvedMember, error) {
	c := &resolveCall{ctx: ctx, lookups: lookups, done: make(chan struct{})}
	r.mu.Lock()
	r.queue = append(r.queue, c)
	start := r.running < maxResolveTrips
	if start {
		r.running++
	}
	r.mu.Unlock()
	if start {
		go r.drain()
	}
	select {
	case <-c.done:
		return c.out, c.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// maxTripLookups bounds the look-ups one shared round trip carries; a request with more
// goes alone.
const maxTripLookups = 1000

// drain runs round trips until the queue is empty.
func (r *resolver) drain() {
	for {
		r.mu.Lock()
		n, size := 0, 0
		for n < len(r.queue) && (n == 0 || size+len(r.queue[n].lookups) <= maxTripLookups) {
			size += len(r.queue[n].lookups)
			n++
		}
		calls := r.queue[:n:n]
		r.queue = r.queue[n:]
		if len(calls) == 0 {
			r.queue = nil
			r.running--
			r.mu.Unlock()
			return
		}
		r.mu.Unlock()
		r.trip(calls)
	}
}

// trip resolves the calls still waiting in one round trip, their look-ups in the order
// the calls arrived (resolveMembers answers a look-up as if the ones before it had run
// first). When the database refuses the shared round trip, each call is tried alone, so
// that one request's bad value is not its neighbours' failure.
func (r *resolver) trip(calls []*resolveCall) {
	live := calls[:0]
	var lookups []memberLookup
	for _, c := range calls {
		if c.ctx.Err() != nil {
			c.err = c.ctx.Err()
			close(c.done)
			continue
		}
		live = append(live, c)
		lookups = append(lookups, c.lookups...)
	}
	if len(live) == 0 {
		return
	}
	out, err := r.runSafely(live[0].ctx, lookups)
	var refused *pgconn.PgError
	if len(live) > 1 && errors.As(err, &refused) {
		// The database refused the round trip (and so committed none of it) for what one
		// request sent, as far as it knows: each goes alone. A timeout or a lost connection
		// is everyone's, and is not tried again.
		for _, c := range live {
			if c.err = c.ctx.Err(); c.err == nil {
				c.out, c.err = r.runSafely(c.ctx, c.lookups)
			}
			close(c.done)
		}
		return
	}
	for _, c := range live {
		if err != nil {
			c.err = err
		} else {
			c.out, out = out[:len(c.lookups):len(c.lookups)], out[len(c.lookups):]
		}
		close(c.done)
	}
}

// runSafely runs a round trip, bounded in time whatever becomes of the request that
// started it, and turns a panic into an error: it runs outside the requests' goroutines,
// beyond the reach of the HTTP server's recovery.
func (r *resolver) runSafely(ctx context.Context, lookups []memberLookup) (out []resolvedMember, err error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), resolveTimeout)
	defer cancel()
	defer func() {
		if p := recover(); p != nil {
			out, err = nil, fmt.Errorf("member look-up panicked: %v\n%s", p, debug.Stack())
		}
	}()
	return r.run(ctx, lookups)
}
