package partners

import (
	"context"
	"crypto/sha256"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/coalitionledger/coalition/internal/pg"
)

// DefaultCachePoll is how often a Cache reads the terms version when nothing else tells
// it: the longest a change made by another process (a command, another server) goes
// unseen by reads. Writes never see stale terms (see Cache).
const DefaultCachePoll = time.Second

// Cache keeps in memory what every request reads and almost nothing changes: each
// partner's terms (the partner, the coalition's settings, its contract versions) and the
// live API keys. Everything in it is stamped with the terms version
// (journal_head.terms_version), which every change to those tables bumps in its own
// transaction; the cache empties whenever it learns of a newer version:
//   - at once, when this process makes the change (the Store and Keys it was built with);
//   - at the next post, since the writer reads the version under the journal head and
//     tells the cache (Ledger.ObserveTerms(cache.Observe));
//   - within DefaultCachePoll otherwise (Run).
//
// Writes are exact: an entry carries the version its terms were read at, and the writer
// sends it back (ledger.ErrTermsChanged) if the version has moved, to be priced again.
type Cache struct {
	pool *pgxpool.Pool

	mu      sync.Mutex
	version int64
	// flushes counts local changes: a fill that started before one may hold data the
	// change replaced, even at an unchanged version (the change's own bump may not be read
	// yet), so it is dropped.
	flushes uint64
	terms   map[string]*Terms
	keys    map[[sha256.Size]byte]Principal
}

// NewCache returns a cache that store and keys read through and empty on their changes.
func NewCache(pool *pgxpool.Pool, store *Store, keys *Keys) *Cache {
	c := &Cache{pool: pool, terms: map[string]*Terms{}, keys: map[[sha256.Size]byte]Principal{}}
	store.cache = c
	keys.cache = c
	return c
}

// Observe tells the cache the terms version read from the database; a newer one empties
// it.
func (c *Cache) Observe(version int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.observeLocked(version)
}

func (c *Cache) observeLocked(version int64) {
	if version > c.version {
		c.version = version
		clear(c.terms)
		clear(c.keys)
	}
}

// Version returns the terms version the cache holds its terms at, reading it first if
// the cache has not learnt it yet: a refusal decided on cached terms is stored only at
// the version it was decided at (ledger.Ledger.Refuse).
func (c *Cache) Version(ctx context.Context) (int64, error) {
	c.mu.Lock()
	v := c.version
	c.mu.Unlock()
	if v != 0 {
		return v, nil
	}
	return c.refresh(ctx)
}

// refresh reads the terms version and observes it.
func (c *Cache) refresh(ctx context.Context) (int64, error) {
	var v int64
	if err := c.pool.QueryRow(ctx, `SELECT terms_version FROM journal_head`).Scan(&v); err != nil {
		return 0, fmt.Errorf("terms version: %w", err)
	}
	c.Observe(v)
	return v, nil
}

// flush empties the cache after a change this process made.
func (c *Cache) flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.flushes++
	clear(c.terms)
	clear(c.keys)
}

// Run reads the terms version every poll interval (DefaultCachePoll if zero) until ctx
// ends, so that changes made elsewhere reach reads that no write precedes.
func (c *Cache) Run(ctx context.Context, poll time.Duration) {
	if poll <= 0 {
		poll = DefaultCachePoll
	}
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.refresh(ctx) //nolint:errcheck // the next tick tries again
		}
	}
}

// lookup returns the cached value of key in m, or reads it with fill (which returns the
// version it read at) and keeps it if nothing changed meanwhile.
func lookup[K comparable, V any](c *Cache, m map[K]V, key K, fill func() (V, int64, error)) (V, error) {
	c.mu.Lock()
	if v, ok := m[key]; ok {
		c.mu.Unlock()
		return v, nil
	}
	flushes := c.flushes
	c.mu.Unlock()
	v, version, err := fill()
	if err != nil {
		return v, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.observeLocked(version)
	if version == c.version && flushes == c.flushes {
		m[key] = v
	}
	return v, nil
}

// Terms returns the partner's terms through the cache.
func (s *Store) Terms(ctx context.Context, partner string) (*Terms, error) {
	if s.cache == nil {
		return s.PartnerTerms(ctx, partner)
	}
	return lookup(s.cache, s.cache.terms, partner, func() (*Terms, int64, error) {
		t, err := s.PartnerTerms(ctx, partner)
		if err != nil {
			return nil, 0, err
		}
		return t, t.Version, nil
	})
}

// change runs a change of the terms (settings, partners, contracts or keys) in a
// transaction and empties the cache, if any, afterwards.
func change(ctx context.Context, pool *pgxpool.Pool, cache *Cache, fn func(pgx.Tx) error) error {
	err := pg.InTx(ctx, pool, fn)
	if cache != nil {
		cache.flush()
	}
	return err
}
