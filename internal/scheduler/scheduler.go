// Package scheduler runs the ledger's periodic jobs inside `coalition serve`: hold
// timeouts and expiry (and, later, the nightly settlement). Every job recovers from a
// panic, never overlaps itself, and logs what it did.
package scheduler

import (
	"context"
	"time"

	"github.com/robfig/cron/v3"
	"go.uber.org/zap"

	"github.com/coalitionledger/coalition/ledger"
)

// Scheduler is the cron of the ledger's jobs.
type Scheduler struct {
	cron *cron.Cron
	log  *zap.Logger
}

// Job is one periodic task: it returns how many things it did.
type Job func(ctx context.Context, now time.Time) (int, error)

// New returns a scheduler with the ledger's jobs: hold timeouts every minute, expiry every
// quarter hour (a lot expires at the end of its business day, so the delay is short).
func New(ctx context.Context, l *ledger.Ledger, log *zap.Logger, now func() time.Time) *Scheduler {
	s := &Scheduler{log: log, cron: cron.New(chain(log))}
	s.Add(ctx, "@every 1m", "hold-timeouts", now, func(ctx context.Context, t time.Time) (int, error) {
		return l.ReleaseExpiredHolds(ctx, t, nil)
	})
	s.Add(ctx, "@every 15m", "expiry", now, func(ctx context.Context, t time.Time) (int, error) {
		return l.ExpireDue(ctx, t, nil)
	})
	return s
}

// chain wraps every job: Recover must sit inside SkipIfStillRunning, whose token (in cron
// v3.0.1) goes back only when the job returns, so that a panic outside it would stop the
// job for good.
func chain(log *zap.Logger) cron.Option {
	return cron.WithChain(cron.SkipIfStillRunning(cronLogger{log}), cron.Recover(cronLogger{log}))
}

// Add schedules a job under a name for the logs.
func (s *Scheduler) Add(ctx context.Context, spec, name string, now func() time.Time, job Job) {
	_, err := s.cron.AddFunc(spec, func() {
		start := time.Now()
		jctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
		defer cancel()
		n, err := job(jctx, now())
		if err != nil {
			s.log.Error("job failed", zap.String("job", name), zap.Int("done", n), zap.Error(err))
			return
		}
		s.log.Info("job done", zap.String("job", name), zap.Int("done", n), zap.Duration("took", time.Since(start)))
	})
	if err != nil {
		panic("scheduler: bad spec " + spec + ": " + err.Error()) // a programming error
	}
}

// Start starts the jobs; Stop waits for running ones to finish.
func (s *Scheduler) Start() { s.cron.Start() }

// Stop stops scheduling and waits for the jobs that are running.
func (s *Scheduler) Stop() { <-s.cron.Stop().Done() }

// cronLogger adapts zap to cron's logger.
type cronLogger struct{ log *zap.Logger }

func (c cronLogger) Info(msg string, kv ...any) { c.log.Sugar().Infow(msg, kv...) }
func (c cronLogger) Error(err error, msg string, kv ...any) {
	c.log.Sugar().Errorw(msg, append(kv, "error", err)...)
}
