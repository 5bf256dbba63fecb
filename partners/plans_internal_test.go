package partners

import (
	"testing"

	"github.com/coalitionledger/coalition/internal/pgtest"
)

// The member round trip plans its statements once per connection, usually while the
// tables are small: those plans must look rows up by key (see pg.PlanByKey).
func TestMemberLookupsArePlannedByKeyOnEmptyTables(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t)
	two := []string{"a", "b"}
	days := []string{"2026-01-01", "2026-01-01"}
	pgtest.AssertPlannedByKey(t, pool, findMembersByPhone, two, days, days)
	pgtest.AssertPlannedByKey(t, pool, findMembersByCard, two, days, days)
	pgtest.AssertPlannedByKey(t, pool, usedEarnReferences, []string{"p1", "p2"}, two)
	pgtest.AssertPlannedByKey(t, pool, enrolMembers, two, two, two, []string{"p1", "p2"}, two)
}
