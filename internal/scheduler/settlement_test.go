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

func TestSettlementSpecFollowsTheSettings(t *testing.T) {
	t.Parallel()
	c := partners.DefaultCoalition()
	c.TimeZone, c.SettlementTime = "Europe/Moscow", "02:30"
	spec, err := SettlementSpec(c)
	if err != nil || spec != "CRON_TZ=Europe/Moscow 30 2 * * *" {
		t.Fatalf("spec %q %v", spec, err)
	}
	c.SettlementTime = "25:00"
	if _, err := SettlementSpec(c); err == nil {
		t.Fatal("a bad settlement_time made a spec")
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
	s := New(ctx, l, zap.NewNop(), time.Now).WithSettlement(ctx, runs, store)
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
