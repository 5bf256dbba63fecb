package ledger

import (
	"testing"

	"github.com/coalitionledger/coalition/internal/pgtest"
)

// The writer plans its look-ups once per connection, usually while the journal is small:
// those plans must look rows up by key, or each batch reads more as the journal grows.
func TestWriterLookupsArePlannedByKeyOnAnEmptyJournal(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t)
	two := []string{"p1", "p2"}
	pgtest.AssertPlannedByKey(t, pool, storedKeysSQL, two, []string{"k1", "k2"})
	pgtest.AssertPlannedByKey(t, pool, usedReferencesSQL, two, []string{"earn", "earn"}, []string{"r1", "r2"})
	pgtest.AssertPlannedByKey(t, pool, memberLotsSQL, []string{"m1", "m2"}, []string{"l1"}, []string{"e1"}, []string{"m1"})
}
