package scheduler

import (
	"context"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/shopspring/decimal"
	"go.uber.org/zap"

	"github.com/coalitionledger/coalition/internal/pgtest"
	"github.com/coalitionledger/coalition/ledger"
	"github.com/coalitionledger/coalition/partners"
	"github.com/coalitionledger/coalition/settlement"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func TestNightlyScheduleFollowsTheSettings(t *testing.T) {
	t.Parallel()
	c := partners.DefaultCoalition()
	c.TimeZone, c.SettlementTime = "Europe/Moscow", "02:30"
	n, err := SettlementSchedule(c)
	if err != nil || n.Hour != 2 || n.Minute != 30 || n.Loc.String() != "Europe/Moscow" {
		t.Fatalf("schedule %v %v", n, err)
	}
	c.SettlementTime = "25:00"
	if _, err := SettlementSchedule(c); err == nil {
		t.Fatal("a bad settlement_time made a schedule")
	}
}

// The nightly settlement fires every night, daylight-saving nights included: a 02:00
// that the spring change skips fires in the hour that replaces it (01:00 EST in New York,
// 03:00 CEST in Berlin, as time.Date makes them), a 01:30 that the autumn change repeats
// fires once, and where midnight itself is skipped the run waits for the day to start.
func TestNightlyScheduleNeverSkipsANight(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		zone       string
		h, m       int
		eve        [3]int // the evening before the change
		wantAfterH float64
	}{
		{"America/New_York", 2, 0, [3]int{2026, 3, 7}, 3},      // 22:00 EST → 01:00 EST
		{"Europe/Berlin", 2, 0, [3]int{2026, 3, 28}, 4},        // 22:00 CET → 03:00 CEST
		{"America/New_York", 1, 30, [3]int{2026, 10, 31}, 3.5}, // 22:00 EDT → the first 01:30
		{"America/Santiago", 0, 15, [3]int{2026, 9, 5}, 2},     // 22:00 −04 → 01:00 −03, the day's start
	} {
		loc, err := time.LoadLocation(tc.zone)
		if err != nil {
			t.Fatal(err)
		}
		n := Nightly{Hour: tc.h, Minute: tc.m, Loc: loc}
		eve := time.Date(tc.eve[0], time.Month(tc.eve[1]), tc.eve[2], 22, 0, 0, 0, loc)
		next := n.Next(eve)
		if got := next.Sub(eve).Hours(); got != tc.wantAfterH {
			t.Errorf("%s %02d:%02d: after %s the run is at %s, %.2f hours later; want %.2f", tc.zone, tc.h, tc.m, eve, next, got, tc.wantAfterH)
		}
		// The night after fires once, about a day later.
		if after := n.Next(next); after.Sub(next) < 20*time.Hour || after.Sub(next) > 28*time.Hour {
			t.Errorf("%s: the run after %s is at %s", tc.zone, next, after)
		}
	}
}

// A server that starts after a day with business and no run settles it at once.
func TestStartCatchesUpOnUnsettledDays(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t)
	ctx := context.Background()
	l, store := ledger.New(pool), partners.NewStore(pool)
	yesterday := settlement.DayOf(time.Now(), time.UTC).Prev()
	at, member := yesterday.Start(time.UTC).Add(12*time.Hour), ulid.Make().String()
	for _, e := range []ledger.Entry{
		{Kind: ledger.EntryAward, Partner: ledger.OperatorIssuer, Member: member, BusinessTime: at,
			Op: ledger.Issue{Points: decimal.NewFromInt(100), Issuer: ledger.OperatorIssuer}},
		{Kind: ledger.EntryRedemption, Partner: "shop", Member: member, BusinessTime: at,
			Op: ledger.Consume{Points: decimal.NewFromInt(100), Consumer: "shop", Rate: decimal.RequireFromString("0.01")}},
	} {
		if _, err := l.PostOne(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	runs := settlement.NewRuns(l, store, nil)
	s := New(ctx, l, zap.NewNop(), time.Now, ledger.DefaultKeyRetention).WithSettlement(ctx, runs, store)
	s.Start()
	defer s.Stop()
	deadline := time.Now().Add(time.Minute)
	for {
		run, err := runs.Get(ctx, yesterday)
		if err == nil {
			if run.CreatedBy != "scheduler" || run.Totals.Paid != "1.00" {
				t.Fatalf("run %+v", run)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no run of %s a minute after start: %v", yesterday, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
