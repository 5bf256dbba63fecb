package ledger

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// The writer's errors that are not an answer about the entry: the entry was not posted
// and the caller may try again later (with the same idempotency key). They are not
// *Error values, so that nobody stores them as a first answer.
var (
	// ErrWriterFull: the writer's queue is full; back off and retry.
	ErrWriterFull = errors.New("the ledger writer's queue is full")
	// ErrWriterClosed: the writer is shutting down and takes no more entries.
	ErrWriterClosed = errors.New("the ledger writer is shut down")
)

// Writer defaults and limits.
const (
	// DefaultWriterQueue is how many entries may wait for a batch.
	DefaultWriterQueue = 4096
	// DefaultWriterBatch is the most entries one shared transaction takes.
	DefaultWriterBatch = 500
	// DefaultWriterWindow is how long a batch that is not full waits for more entries.
	DefaultWriterWindow = 200 * time.Microsecond
	// DefaultWriterFlushers is how many batches may be in flight at once: while one
	// holds the journal head and commits, the next takes its locks and loads its books.
	DefaultWriterFlushers = 2
	// DefaultWriterBatchTimeout bounds one shared transaction, whoever waits on it.
	DefaultWriterBatchTimeout = 30 * time.Second
)

// WriterConfig sizes a Writer; zero fields take the defaults.
type WriterConfig struct {
	Queue        int           // entries that may wait; a post beyond it gets ErrWriterFull
	MaxBatch     int           // entries per shared transaction, at most MaxBatch (a bigger group goes alone)
	Window       time.Duration // how long a batch that is not full waits for more
	Flushers     int           // batches in flight at once
	BatchTimeout time.Duration // deadline of one shared transaction
	// OnBatch, if set, is told the size of every batch posted and how long it took
	// (for metrics).
	OnBatch func(size int, took time.Duration, err error)
}

// Writer is the group-commit writer: concurrent single posts are gathered into shared
// transactions of Ledger.Post, and each caller gets its own Result. A refused entry
// never fails its neighbours (Post answers item by item), and idempotency holds exactly
// as for posts one at a time: a key repeated in one batch is answered with its first
// use's answer by the engine, and keys in concurrent batches serialise on their advisory
// locks. A group (PostGroup) is a caller's run of entries that stays together, in order,
// in one shared transaction. Build it with NewWriter and stop it with Close, which drains
// the queue.
type Writer struct {
	l     *Ledger
	cfg   WriterConfig
	queue chan *writeRequest
	// queued counts the entries in the queue, not yet taken into a batch; the queue's
	// bound is on entries, whatever the groups' sizes.
	queued atomic.Int64

	mu     sync.RWMutex // guards closed against sends on a closed queue
	closed bool
	done   chan struct{} // closed when every flusher has returned
	stats  WriterStats
	// pending counts the entries queued or in a batch, not yet answered.
	pending atomic.Int64
}

// WriterStats counts what a Writer did.
type WriterStats struct {
	Batches   atomic.Int64 // shared transactions committed (or failed)
	Entries   atomic.Int64 // entries answered by them
	Split     atomic.Int64 // batches that failed whole and were posted entry by entry
	Abandoned atomic.Int64 // entries whose caller had gone before their batch formed
	Rejected  atomic.Int64 // posts refused with ErrWriterFull
}

// writeRequest is one caller's entries: one, or a group that stays together.
type writeRequest struct {
	ctx     context.Context
	entries []Entry
	reply   chan writeReply // buffered: a flusher never waits on a caller
}

// writeReply answers a request: a result per entry, or the error of them all.
type writeReply struct {
	results []Result
	err     error
}

// answer replies to the request's caller (who may have gone).
func (w *Writer) answer(r *writeRequest, reply writeReply) {
	r.reply <- reply
	w.pending.Add(-int64(len(r.entries)))
}

// NewWriter starts a writer over l. Close it to stop it.
func NewWriter(l *Ledger, cfg WriterConfig) *Writer {
	if cfg.Queue <= 0 {
		cfg.Queue = DefaultWriterQueue
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = DefaultWriterBatch
	}
	if cfg.MaxBatch > MaxBatch {
		cfg.MaxBatch = MaxBatch
	}
	if cfg.Window < 0 {
		cfg.Window = 0
	} else if cfg.Window == 0 {
		cfg.Window = DefaultWriterWindow
	}
	if cfg.Flushers <= 0 {
		cfg.Flushers = DefaultWriterFlushers
	}
	if cfg.BatchTimeout <= 0 {
		cfg.BatchTimeout = DefaultWriterBatchTimeout
	}
	w := &Writer{l: l, cfg: cfg, queue: make(chan *writeRequest, cfg.Queue), done: make(chan struct{})}
	var wg sync.WaitGroup
	for i := 0; i < cfg.Flushers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.flushLoop()
		}()
	}
	go func() {
		wg.Wait()
		close(w.done)
	}()
	return w
}

// Stats returns the writer's counters.
func (w *Writer) Stats() *WriterStats { return &w.stats }

// Pending returns how many entries are queued or in a batch, not yet answered.
func (w *Writer) Pending() int { return int(w.pending.Load()) }

// Queued returns how many entries wait in the queue, not yet taken into a batch.
func (w *Writer) Queued() int { return int(w.queued.Load()) }

// Ledger returns the ledger the writer posts to.
func (w *Writer) Ledger() *Ledger { return w.l }

// Post queues one entry for the next shared transaction and waits for its answer. The
// error is ErrWriterFull or ErrWriterClosed (nothing was posted), the context's error
// (the entry may still be posted: retry with the same idempotency key to learn its
// answer), or the failure of the whole batch; a refusal of the entry is in the Result.
func (w *Writer) Post(ctx context.Context, e Entry) (Result, error) {
	res, err := w.PostGroup(ctx, []Entry{e})
	if err != nil {
		return Result{}, err
	}
	return res[0], nil
}

// PostGroup queues a group of entries that stays together: in order, in one shared
// transaction with whatever other entries fit beside it, never split across batches. A
// group bigger than the writer's MaxBatch gets a transaction of its own; one bigger than
// the queue is taken only when the queue is empty. Each entry is answered with its own
// Result, under the rules of Post: a refusal fails no neighbour, inside the group or out,
// and the error (ErrWriterFull, ErrWriterClosed, the context's, or the failure of the
// group's transaction) is the answer of every entry of the group.
func (w *Writer) PostGroup(ctx context.Context, entries []Entry) ([]Result, error) {
	if len(entries) == 0 {
		return nil, Errorf(CodeEmptyBatch, "a batch needs at least one entry")
	}
	if len(entries) > MaxBatch {
		return nil, Errorf(CodeBatchTooLarge, "a batch holds at most %d entries, this one has %d", MaxBatch, len(entries))
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	group := make([]Entry, len(entries))
	copy(group, entries)
	for i := range group {
		group[i].canonicalMeta() // here, in the caller's goroutine, rather than in the flusher's
	}
	req := &writeRequest{ctx: ctx, entries: group, reply: make(chan writeReply, 1)}
	n := int64(len(group))
	w.mu.RLock()
	if w.closed {
		w.mu.RUnlock()
		return nil, ErrWriterClosed
	}
	if !w.reserve(n) {
		w.mu.RUnlock()
		w.stats.Rejected.Add(1)
		return nil, ErrWriterFull
	}
	// The channel holds at least Queue requests and every request holds an entry, so
	// this send, within the reservation, never blocks.
	w.pending.Add(n)
	w.queue <- req
	w.mu.RUnlock()
	select {
	case r := <-req.reply:
		return r.results, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// reserve takes room for n entries in the queue: within its bound, or any n when the
// queue is empty (so that a group bigger than the queue still gets in).
func (w *Writer) reserve(n int64) bool {
	for {
		q := w.queued.Load()
		if q > 0 && q+n > int64(w.cfg.Queue) {
			return false
		}
		if w.queued.CompareAndSwap(q, q+n) {
			return true
		}
	}
}

// take is the flusher's receive from the queue, which frees the request's room in it.
func (w *Writer) take(r *writeRequest) *writeRequest {
	w.queued.Add(-int64(len(r.entries)))
	return r
}

// PostOne is Post with a refusal returned as the error, as Ledger.PostOne.
func (w *Writer) PostOne(ctx context.Context, e Entry) (*Posted, error) {
	r, err := w.Post(ctx, e)
	if err != nil {
		return nil, err
	}
	if r.Err != nil {
		return nil, r.Err
	}
	return r.Entry, nil
}

// Close stops taking entries, posts every entry already queued, and returns when the
// last batch is answered or ctx ends.
func (w *Writer) Close(ctx context.Context) error {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.queue)
	}
	w.mu.Unlock()
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("drain the ledger writer: %w", ctx.Err())
	}
}

// flushLoop gathers batches from the queue and posts them until the queue is closed and
// empty. A group that does not fit in the batch being gathered opens the next one.
func (w *Writer) flushLoop() {
	batch := make([]*writeRequest, 0, w.cfg.MaxBatch)
	var carry *writeRequest
	for {
		first := carry
		if first == nil {
			r, ok := <-w.queue
			if !ok {
				return
			}
			first = w.take(r)
		}
		batch = append(batch[:0], first)
		// Once the queue is closed, the next receives drain what is left of it.
		carry = w.gather(&batch, len(first.entries))
		w.flush(batch)
	}
}

// gather adds to batch (of size entries) what is queued, waiting up to the window for
// more while it is not full. It stops early once the queue is closed (and empty), and
// returns the request that did not fit, if it took one.
func (w *Writer) gather(batch *[]*writeRequest, size int) *writeRequest {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	add := func(r *writeRequest) *writeRequest {
		w.take(r)
		if size+len(r.entries) > w.cfg.MaxBatch {
			return r
		}
		*batch = append(*batch, r)
		size += len(r.entries)
		return nil
	}
	for size < w.cfg.MaxBatch {
		select {
		case r, ok := <-w.queue:
			if !ok {
				return nil
			}
			if carry := add(r); carry != nil {
				return carry
			}
			continue
		default:
		}
		if timer == nil {
			timer = time.NewTimer(w.cfg.Window)
		}
		select {
		case r, ok := <-w.queue:
			if !ok {
				return nil
			}
			if carry := add(r); carry != nil {
				return carry
			}
		case <-timer.C:
			return nil
		}
	}
	return nil
}

// flush posts one batch and answers its callers. Callers that have gone are left out.
// If the batch fails as a whole (a database error, not a refusal), its requests are
// posted one by one (a group whole), so that one request's failure never fails its
// neighbours.
func (w *Writer) flush(batch []*writeRequest) {
	live := batch[:0:0]
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			w.stats.Abandoned.Add(int64(len(r.entries)))
			w.answer(r, writeReply{err: err})
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	results, err := w.post(live)
	if err != nil && len(live) > 1 {
		w.stats.Split.Add(1)
		for _, r := range live {
			res, err := w.post([]*writeRequest{r})
			w.answer(r, writeReply{results: res, err: err})
		}
		return
	}
	at := 0
	for _, r := range live {
		if err != nil {
			w.answer(r, writeReply{err: err})
			continue
		}
		w.answer(r, writeReply{results: results[at : at+len(r.entries) : at+len(r.entries)]})
		at += len(r.entries)
	}
}

// post runs one shared transaction, under the writer's own deadline: no single caller's
// cancellation aborts the others' transaction.
func (w *Writer) post(reqs []*writeRequest) ([]Result, error) {
	entries := reqs[0].entries
	if len(reqs) > 1 {
		entries = nil
		for _, r := range reqs {
			entries = append(entries, r.entries...)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.BatchTimeout)
	defer cancel()
	start := time.Now()
	results, err := w.l.Post(ctx, entries)
	w.stats.Batches.Add(1)
	w.stats.Entries.Add(int64(len(entries)))
	if w.cfg.OnBatch != nil {
		w.cfg.OnBatch(len(entries), time.Since(start), err)
	}
	if err == nil && len(results) != len(entries) {
		// The engine answers every entry, in order; anything else is a bug, and no caller
		// may get another's answer.
		panic(fmt.Sprintf("ledger writer: %d answers to %d entries", len(results), len(entries)))
	}
	return results, err
}
