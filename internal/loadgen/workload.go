// Package loadgen is the load tool behind `coalition bench`: a seeded, reproducible
// workload of partner requests driven over HTTP against a server it starts on loopback,
// the correctness gates checked against the database afterwards, pgbench's tpcb-like
// reference on the same server, and a crash mode. It never talks to anything off this
// machine: the server it starts listens on 127.0.0.1, and a PostgreSQL server not on
// loopback is refused.
package loadgen

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"sync"
)

// dist draws an index in [0, n): Zipf with exponent s (rank 0 most frequent), or uniform
// when s is zero. The Zipf table is the cumulative distribution, searched by bisection,
// so any s > 0 works (Go's rand.Zipf needs s > 1).
type dist struct {
	n   int
	cdf []float64 // nil: uniform
}

func newDist(n int, s float64) *dist {
	d := &dist{n: n}
	if s <= 0 {
		return d
	}
	d.cdf = make([]float64, n)
	sum := 0.0
	for i := 0; i < n; i++ {
		sum += 1 / math.Pow(float64(i+1), s)
		d.cdf[i] = sum
	}
	for i := range d.cdf {
		d.cdf[i] /= sum
	}
	return d
}

func (d *dist) draw(r *rand.Rand) int {
	if d.cdf == nil {
		return r.IntN(d.n)
	}
	i := sort.SearchFloat64s(d.cdf, r.Float64())
	if i >= d.n {
		i = d.n - 1
	}
	return i
}

// share is the probability of the most frequent index.
func (d *dist) share() float64 {
	if d.cdf == nil {
		return 1 / float64(d.n)
	}
	return d.cdf[0]
}

// OpKind is one kind of operation in the mix.
type OpKind string

// The operations of the mix.
const (
	OpEarn     OpKind = "earn"
	OpRedeem   OpKind = "redemption"
	OpHold     OpKind = "hold" // a hold, then its capture or void
	OpReversal OpKind = "reversal"
	OpRetry    OpKind = "retry"    // an earlier write again, same key and body
	OpConflict OpKind = "conflict" // an earlier key with another body
	OpRead     OpKind = "read"
)

// Mix is the share of each operation, in per mille.
type Mix map[OpKind]int

// FullMix is the mix: 60% earns, 20% redemptions, 5% holds, 5% reversals, 5%
// retries, 0.5% conflicting reuses, 5% reads (per mille; they sum to 1005 and are drawn
// in proportion).
var FullMix = Mix{OpEarn: 600, OpRedeem: 200, OpHold: 50, OpReversal: 50, OpRetry: 50, OpConflict: 5, OpRead: 50}

// EarnsMix is earns alone.
var EarnsMix = Mix{OpEarn: 1000}

// picker draws an operation kind from a mix.
type picker struct {
	kinds []OpKind
	cum   []int
	total int
}

func newPicker(m Mix) *picker {
	p := &picker{}
	for _, k := range []OpKind{OpEarn, OpRedeem, OpHold, OpReversal, OpRetry, OpConflict, OpRead} {
		if m[k] > 0 {
			p.total += m[k]
			p.kinds = append(p.kinds, k)
			p.cum = append(p.cum, p.total)
		}
	}
	return p
}

func (p *picker) draw(r *rand.Rand) OpKind {
	x := r.IntN(p.total)
	i := sort.SearchInts(p.cum, x+1)
	return p.kinds[i]
}

// stripes serialise the load tool's own operations on one member, so that its model of
// each member's balance is exact and a redemption designed to fail (or to pass) does.
const stripes = 4096

// memberModel is what the tool knows of a member from the answers it got.
type memberModel struct {
	enrolled bool
	balance  int64 // points available, from the last answer
}

// model is the tool's view of every member it touched, by member index.
type model struct {
	locks   [stripes]sync.Mutex
	members [stripes]map[int]*memberModel
}

func newModel() *model {
	m := &model{}
	for i := range m.members {
		m.members[i] = map[int]*memberModel{}
	}
	return m
}

// lock locks the members' stripes in order and returns their models and the unlock.
func (m *model) lock(idx ...int) ([]*memberModel, func()) {
	ss := make([]int, 0, len(idx))
	seen := map[int]bool{}
	for _, i := range idx {
		s := i % stripes
		if !seen[s] {
			seen[s] = true
			ss = append(ss, s)
		}
	}
	sort.Ints(ss)
	for _, s := range ss {
		m.locks[s].Lock()
	}
	out := make([]*memberModel, len(idx))
	for k, i := range idx {
		mm := m.members[i%stripes][i]
		if mm == nil {
			mm = &memberModel{}
			m.members[i%stripes][i] = mm
		}
		out[k] = mm
	}
	return out, func() {
		for j := len(ss) - 1; j >= 0; j-- {
			m.locks[ss[j]].Unlock()
		}
	}
}

// each calls fn for every member in the model (no operation may run).
func (m *model) each(fn func(idx int, mm *memberModel)) {
	for s := range m.members {
		for i, mm := range m.members[s] {
			fn(i, mm)
		}
	}
}

// card is a member's card number.
func card(idx int) string { return fmt.Sprintf("9%09d", idx) }

// partnerID is a partner's id.
func partnerID(i int) string { return fmt.Sprintf("p%02d", i) }

// ring keeps the last n items added, for retries and reversals to pick from.
type ring[T any] struct {
	mu    sync.Mutex
	items []T
	next  int
	n     int
}

func newRing[T any](n int) *ring[T] { return &ring[T]{n: n} }

func (r *ring[T]) add(v T) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.items) < r.n {
		r.items = append(r.items, v)
		return
	}
	r.items[r.next] = v
	r.next = (r.next + 1) % r.n
}

// pick returns a random item, removing it if take.
func (r *ring[T]) pick(rnd *rand.Rand, take bool) (T, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var zero T
	if len(r.items) == 0 {
		return zero, false
	}
	i := rnd.IntN(len(r.items))
	v := r.items[i]
	if take {
		last := len(r.items) - 1
		r.items[i] = r.items[last]
		r.items = r.items[:last]
		if r.next > len(r.items) {
			r.next = 0
		}
	}
	return v, true
}
