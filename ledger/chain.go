package ledger

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The journal head is one row, and a batch that locks it for its positions holds it until
// it commits. Locked from the batch's first round trip, it would keep the next batch
// from planning until this one commits, and the head would sit idle for a round trip
// and the next batch's planning after every commit. So Post's batches form a chain in
// the process: each is planned on the head that the batch before it will leave, and
// claims the head (claim_journal_head, migration 00009) as the first statement of its
// writes, sent once that batch holds the head. The claim waits for that batch's commit,
// and takes the head only if it is exactly where the batch was planned to start: if the
// batch before failed, or another process or a terms change moved the head, the claim
// is a serialization failure, the transaction is tried again (pg.InPipelinedTx), and
// the second attempt locks the head in its first round trip, as every batch did before.
//
// Everything else a batch plans on it has locked in its first round trip, before it is
// planned: its members' accounts, lots and holds, and the advisory locks of its keys and
// references. A batch that shares a member with the one before it therefore reads that
// member after the one before commits.

// headState is a journal head: where a batch starts and where it ends.
type headState struct {
	position     int64
	hash         []byte
	recordedAt   time.Time
	termsVersion int64
}

// chainLink is one batch of the chain.
type chainLink struct {
	ride      bool       // planned on the chain's tail; else it locks the head in its first round trip
	base, end headState  // where the batch starts and where it leaves the head
	pred      *chainLink // the batch planned just before, if it had not finished then
	claimOnce sync.Once
	claimed   chan struct{} // closed once the batch holds the head (or finished)
	finish    sync.Once     // ended runs once
}

func newChainLink() *chainLink {
	return &chainLink{claimed: make(chan struct{})}
}

// holdsHead marks the batch as holding the head: the next batch may send its claim.
func (c *chainLink) holdsHead() { c.claimOnce.Do(func() { close(c.claimed) }) }

// chain is the process's chain of Post batches: its last planned batch.
type chain struct {
	mu      sync.Mutex // held while a batch chooses its base and plans on it
	tail    *chainLink
	rode    atomic.Int64
	retried atomic.Int64
}

// ChainStats counts how Post's batches took the journal head.
type ChainStats struct {
	Rode    int64 // batches planned on the batch before them, which claimed the head with their writes
	Retried int64 // attempts tried again, after a claim found the head moved (or a deadlock)
}

// ChainStats returns how Post's batches took the journal head so far.
func (l *Ledger) ChainStats() ChainStats {
	return ChainStats{Rode: l.chain.rode.Load(), Retried: l.chain.retried.Load()}
}

// ended records that link committed (ok) or failed: a failed batch is no base for the
// next, which then plans on the head it reads.
func (ch *chain) ended(link *chainLink, ok bool) {
	link.finish.Do(func() {
		link.pred = nil // else every batch would keep every batch before it from the collector
		link.holdsHead()
		if !ok {
			ch.mu.Lock()
			if ch.tail == link {
				ch.tail = nil
			}
			ch.mu.Unlock()
		}
	})
}

// riding reports whether a batch may be planned on the chain's tail rather than lock the
// head: there is a tail to ride on.
func (ch *chain) riding() bool {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return ch.tail != nil
}

// base returns the head a riding batch plans on and the batch to wait for, given the head
// its first round trip read: the tail's end while the tail is ahead of the read head, in
// flight; else the read head itself. A tail that is not ahead has committed, or was left
// behind by another writer or a change of the terms, which the read head shows (and
// planning on such a tail would refuse every entry priced on the new terms). The caller
// holds ch.mu.
func (ch *chain) base(read headState) (headState, *chainLink) {
	t := ch.tail
	if t == nil || t.end.position <= read.position || t.end.termsVersion != read.termsVersion {
		return read, nil
	}
	return t.end, t
}

// waitForPred waits until the batch before link holds the head, so that link's claim
// queues behind that batch's, not ahead of it.
func (c *chainLink) waitForPred(ctx context.Context) error {
	if c.pred == nil {
		return nil
	}
	select {
	case <-c.pred.claimed:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// queueClaim queues the claim of the head as the first statement of a batch's writes.
func (c *chainLink) queueClaim(b *pgx.Batch) {
	b.Queue(`SELECT claim_journal_head($1, $2, $3, $4, $5, $6)`,
		c.base.position, c.base.hash, c.base.termsVersion, c.end.position, c.end.hash, c.end.recordedAt).
		Exec(func(pgconn.CommandTag) error {
			c.holdsHead()
			return nil
		})
}
