package settlement_test

import (
	"context"
	"testing"
	"time"

	"github.com/coalitionledger/coalition/internal/pgtest"
	"github.com/coalitionledger/coalition/partners"
	"github.com/coalitionledger/coalition/settlement"
)

// newZoneFixture is newFixture with the coalition in another time zone and the clock at
// now (set before any entry, while the zone may still change).
func newZoneFixture(t *testing.T, zone string, now time.Time) *fixture {
	t.Helper()
	f := newFixtureOn(t, pgtest.Pool(t))
	c, err := f.store.Coalition(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c.TimeZone = zone
	if err := f.store.SetCoalition(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	f.setNow(now)
	// Contracts effective long before now.
	for _, id := range []string{"fuel", "shop", "solo"} {
		k := partners.Contract{RedeemRate: ptr(dec("1")), FeePerPoint: dec("0.2"),
			Earn: partners.EarnRate{PointsPerUnit: ptr(dec("0.1"))}, Currency: "RUB", EffectiveFrom: now.Add(-24 * time.Hour)}
		if _, err := f.store.AddContract(context.Background(), id, k, now.Add(-24*time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// Where a daylight-saving change skips midnight (America/Santiago), time.Date of the
// day's midnight is 23:00 of the day before. The day still starts at its first instant,
// the run of the day before settles its last hour, and the next day's run goes through.
func TestDSTMidnightGapNeitherDropsAnHourNorWedgesSettlement(t *testing.T) {
	t.Parallel()
	santiago, err := time.LoadLocation("America/Santiago")
	if err != nil {
		t.Skip(err)
	}
	// Chile moves from -04 to -03 at 00:00 on Sunday 2026-09-06: that midnight is skipped.
	sat, _ := settlement.ParseDay("2026-09-05")
	sun := sat.Next()
	if s := sun.Start(santiago); settlement.DayOf(s, santiago).Equal(sun) {
		t.Logf("Start(%s) = %s is inside the day: the time zone data has no midnight gap", sun, s)
	} else {
		t.Errorf("Day.Start(%s) = %s, which is on %s: not the first instant of the day", sun, s, settlement.DayOf(s, santiago))
	}
	f := newZoneFixture(t, "America/Santiago", time.Date(2026, 9, 5, 12, 0, 0, 0, santiago))
	ctx := context.Background()
	f.earn(t, "fuel", "m1", "1000", nil) // 12:00 Saturday
	late := time.Date(2026, 9, 5, 23, 30, 0, 0, santiago)
	f.setNow(late.Add(time.Minute))
	f.earn(t, "fuel", "m2", "1000", &late) // 23:30 Saturday, recorded at once

	f.setNow(time.Date(2026, 9, 6, 10, 0, 0, 0, santiago))
	run, _, err := f.runs.Run(ctx, sat, nil)
	if err != nil {
		t.Fatal(err)
	}
	if run.Entries != 2 {
		t.Errorf("the run of Saturday settled %d entries, want 2: the 23:30 earn (recorded before the cut-off) is left out", run.Entries)
	}
	f.setNow(time.Date(2026, 9, 7, 10, 0, 0, 0, santiago))
	if _, _, err := f.runs.Run(ctx, sun, nil); err != nil {
		t.Errorf("the run of Sunday fails, and so will every night after it: %v", err)
	}
	if due, err := f.runs.SettleDue(ctx, nil); err != nil {
		t.Errorf("the scheduler's catch-up fails too (%d runs): %v", len(due), err)
	}
}
