package scheduler

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/robfig/cron/v3"
	"go.uber.org/zap"
)

// A job that panics is recovered and runs again; a job still running is not started twice.
func TestJobsRecoverAndNeverOverlap(t *testing.T) {
	t.Parallel()
	s := &Scheduler{log: zap.NewNop(), cron: cron.New(cron.WithSeconds(), chain(zap.NewNop()))}
	var runs, running, overlaps atomic.Int32
	s.Add(context.Background(), "* * * * * *", "slow", time.Now, func(ctx context.Context, _ time.Time) (int, error) {
		if running.Add(1) > 1 {
			overlaps.Add(1)
		}
		defer running.Add(-1)
		if runs.Add(1) == 1 {
			panic("first run fails")
		}
		time.Sleep(1500 * time.Millisecond)
		return 1, nil
	})
	s.Start()
	time.Sleep(4500 * time.Millisecond)
	s.Stop()
	if runs.Load() < 2 {
		t.Fatalf("the job ran %d times: a panic stopped it", runs.Load())
	}
	if overlaps.Load() > 0 {
		t.Fatalf("the job overlapped itself %d times", overlaps.Load())
	}
}
