package partners

import (
	"testing"
	"time"
)

func TestTierDaysAreCalendarDays(t *testing.T) {
	c := DefaultCoalition()
	c.TimeZone = "America/Santiago" // 2014-09-07 began at 01:00: clocks skipped midnight
	loc, err := time.LoadLocation(c.TimeZone)
	if err != nil {
		t.Skip("no time zone data:", err)
	}
	from, to, err := tierDays(c, time.Date(2015, 9, 7, 0, 30, 0, 0, loc))
	if err != nil || from != "2014-09-07" || to != "2015-09-07" {
		t.Fatalf("tierDays = %s, %s, %v; want 2014-09-07, 2015-09-07", from, to, err)
	}
}
