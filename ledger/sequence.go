package ledger

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coalitionledger/coalition/internal/pg"
)

// The journal's order is kept in two places. PostgreSQL's journal_head row is the judge:
// a batch commits only if the head it chained onto is still the head when it advances it,
// just before COMMIT (advance_journal_head, migration 00008), so positions stay gap-free
// and the hash chain unbroken whatever any process believes. Each Ledger also keeps the
// head in memory, its sequencer, so that a batch can chain onto the end of the batch
// before it while that one is still being written: both write their rows at once, and
// only the head's advance and the balances (the hot partner rows) wait for the batch
// ahead to commit. That is the optimistic mode.
//
// When the sequencer does not know the head (at start-up, after a batch failed, while a
// caller's transaction posts with PostAllIn, or after another process moved the head), a
// batch locks the head in its first round trip and chains onto what it reads, as every
// batch once did: the locked mode. The first locked batch of this process to commit makes
// the head known again.

// errChainMoved sends a batch back to be run again, in the locked mode: the head it
// would have chained onto in memory is gone.
var errChainMoved = fmt.Errorf("the journal head this process knew has moved: %w", pg.ErrRetry)

// quietPeriod is how long a Ledger stays in the locked mode after it finds that another
// process wrote to the journal: two processes that chain in memory at once take the same
// positions, and each would fail the other's batches.
const quietPeriod = 5 * time.Second

// drainLimit bounds how long PostAllIn waits for this process's optimistic batches to
// finish before it locks the head: the caller's transaction may hold a lock one of them
// waits for, and PostgreSQL's deadlock detector then settles it.
const drainLimit = 2 * time.Second

// chainHead is a point of the hash chain: a position, its hash, and its record time.
type chainHead struct {
	position   int64
	hash       []byte
	recordedAt time.Time
}

// sequencer is a Ledger's view of the journal head, shared by every batch it posts.
type sequencer struct {
	salt    int32        // this Ledger's share of the ticket lock space
	tickets atomic.Int32 // the next ticket

	mu        sync.Mutex // held from claim to place or drop, so that batches chain in turn
	known     bool       // head is the end of the chain in this process; optimistic batches may claim
	gen       uint64     // bumped whenever the head is lost
	head      chainHead  // the end of the last batch placed
	committed chainHead  // the end of the last batch committed
	// quietUntil is when the locked mode may end: until then another process is taken
	// to be writing.
	quietUntil time.Time
	stats      struct{ optimistic, locked, retried atomic.Int64 }
	tail       *link         // the last batch placed in the chain
	inflight   int           // optimistic batches placed and not done
	idle       chan struct{} // closed while inflight is 0
}

func newSequencer() *sequencer {
	s := &sequencer{salt: rand.Int32(), idle: make(chan struct{})}
	close(s.idle)
	return s
}

// link is one batch's place in the chain. Its ticket is an advisory lock its transaction
// takes in its first round trip and holds until it ends; the batch after it waits on that
// lock (for its commit or rollback) before it advances the head.
type link struct {
	ticket     int32
	gen        uint64
	optimistic bool
	commits    bool // the batch commits itself (not PostAllIn inside a caller's transaction)
	from, to   chainHead
	// termsVersion is the terms version the batch decided on, checked as it commits.
	termsVersion int64
	prev         *link    // the batch ahead, still in flight when this one was placed
	accounts     []string // accounts other than members' that the batch creates
	placed       bool
	done         bool // guarded by sequencer.mu
}

// optimistic reports whether the next batch may chain onto the head in memory.
func (s *sequencer) optimistic() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.known
}

// ticket returns a fresh ticket for a batch's first round trip.
func (s *sequencer) ticket() int32 { return s.tickets.Add(1) }

// lose forgets the head: the next batches lock it. Called with mu held.
func (s *sequencer) lose() {
	s.known = false
	s.gen++
}

// forget forgets the head, from outside a claim.
func (s *sequencer) forget() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lose()
}

// drain waits until no optimistic batch of this process is in flight (up to limit, if
// limit is positive), so that a batch that locks the head does not take the positions of
// one that chained onto it in memory.
func (s *sequencer) drain(ctx context.Context, limit time.Duration) error {
	s.mu.Lock()
	idle := s.idle
	s.mu.Unlock()
	var timeout <-chan time.Time
	if limit > 0 {
		t := time.NewTimer(limit)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-idle:
	case <-timeout:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// claim starts a batch's place in the chain: it returns the head to chain onto, the head
// in memory for an optimistic batch and the head read under lock (db) for a locked one.
// It holds the sequencer until place or drop. An optimistic batch gets errChainMoved
// when the head is no longer known; so does a locked one when an optimistic batch of this
// process is in flight, ahead of the head it read. A locked batch that finds the head
// where none of this process's batches left it has met another process's writes.
func (s *sequencer) claim(ticket int32, optimistic, commits bool, db chainHead) (*link, error) {
	s.mu.Lock()
	l := &link{ticket: ticket, gen: s.gen, optimistic: optimistic, commits: commits}
	switch {
	case optimistic && !s.known:
		s.mu.Unlock()
		return nil, errChainMoved
	case optimistic:
		l.from = s.head
	case s.inflight > 0:
		s.mu.Unlock()
		return nil, errChainMoved
	default:
		if s.tail != nil && db.position != s.head.position && db.position != s.committed.position {
			s.quietUntil = time.Now().Add(quietPeriod)
			s.lose()
			l.gen = s.gen
		}
		l.from = db
	}
	if s.tail != nil && !s.tail.done {
		l.prev = s.tail
	}
	return l, nil
}

// drop ends a claim that placed nothing.
func (s *sequencer) drop(*link) { s.mu.Unlock() }

// place ends a claim: the batch ends the chain at to (its from, when it writes no entries
// and so takes no place in it).
func (s *sequencer) place(l *link, to chainHead) {
	defer s.mu.Unlock()
	l.to = to
	if to.position == l.from.position {
		return
	}
	l.placed = true
	s.tail, s.head = l, to
	if l.optimistic {
		s.stats.optimistic.Add(1)
	} else {
		s.stats.locked.Add(1)
	}
	if !l.commits {
		// Its caller commits when it will, or not: nothing may chain onto it in memory.
		s.lose()
		return
	}
	if l.optimistic {
		if s.inflight == 0 {
			s.idle = make(chan struct{})
		}
		s.inflight++
	}
}

// done ends a batch: committed, or rolled back. A rollback loses the head (the batches
// chained onto this one fail in the database); the first locked batch to commit since the
// head was lost makes it known again.
func (s *sequencer) done(l *link, committed bool) {
	if l == nil || !l.placed {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if l.done {
		return
	}
	l.done = true
	if l.optimistic {
		s.inflight--
		if s.inflight == 0 {
			close(s.idle)
		}
	}
	if committed && l.to.position > s.committed.position {
		s.committed = l.to
	}
	switch {
	case !committed:
		s.lose()
	case !s.known && l.gen == s.gen && l.commits && time.Now().After(s.quietUntil):
		s.known = true
	}
}

// ChainStats counts how a Ledger's batches took their places in the journal.
type ChainStats struct {
	Optimistic int64 // batches chained onto the head in memory, written beside the batch ahead
	Locked     int64 // batches that locked the head row in their first round trip
	Retried    int64 // attempts run again: the head had moved, or a deadlock
}

// ChainStats returns the counts so far.
func (l *Ledger) ChainStats() ChainStats {
	return ChainStats{
		Optimistic: l.seq.stats.optimistic.Load(),
		Locked:     l.seq.stats.locked.Load(),
		Retried:    l.seq.stats.retried.Load(),
	}
}
