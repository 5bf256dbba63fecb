// Package scheduler runs the ledger's periodic jobs inside `coalition serve`: hold
// timeouts, expiry and the nightly settlement. Every job recovers from a panic, never
// overlaps itself, and logs what it did.
package scheduler

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/robfig/cron/v3"
	"go.uber.org/zap"

	"github.com/coalitionledger/coalition/ledger"
	"github.com/coalitionledger/coalition/partners"
	"github.com/coalitionledger/coalition/settlement"
)

// Scheduler is the cron of the ledger's jobs.
type Scheduler struct {
	cron *cron.Cron
	log  *zap.Logger

	// The nightly settlement's entry follows the coalition's settings.
	mu          sync.Mutex
	settleSpec  string
	settleEntry cron.EntryID
	settle      func()
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

// WithSettlement adds the nightly settlement: at the coalition's settlement_time in its
// time zone it settles every day that is over and not settled yet, in order. Start also
// runs it once, so that a server that was down at night (or crashed mid-run) catches up.
// A change of settlement_time or time_zone is picked up within five minutes.
func (s *Scheduler) WithSettlement(ctx context.Context, runs *settlement.Runs, store *partners.Store) *Scheduler {
	job := s.wrap(ctx, "settlement", func(ctx context.Context, _ time.Time) (int, error) {
		made, err := runs.SettleDue(ctx, "scheduler", func(r *settlement.Run) {
			s.log.Info("settled", zap.String("business_date", r.BusinessDate), zap.Int("entries", r.Entries),
				zap.Int64("cutoff", r.Cutoff), zap.Int("instructions", r.Totals.Instructions),
				zap.String("received", r.Totals.Received), zap.String("paid", r.Totals.Paid), zap.String("fees", r.Totals.Fees))
		})
		return len(made), err
	}, time.Now)
	// One token for both ways of starting it: the nightly entry and the start-up catch-up.
	var running sync.Mutex
	s.settle = func() {
		if !running.TryLock() {
			return
		}
		defer running.Unlock()
		job()
	}
	s.Add(ctx, "@every 5m", "settlement-schedule", time.Now, func(ctx context.Context, _ time.Time) (int, error) {
		return 0, s.scheduleSettlement(ctx, store)
	})
	if err := s.scheduleSettlement(ctx, store); err != nil {
		s.log.Error("settlement not scheduled", zap.Error(err))
	}
	return s
}

// SettlementSpec returns the cron spec of the nightly settlement for the coalition's
// settings.
func SettlementSpec(c partners.Coalition) (string, error) {
	h, m, err := partners.ParseClock(c.SettlementTime)
	if err != nil {
		return "", err
	}
	if _, err := c.Location(); err != nil {
		return "", err
	}
	return fmt.Sprintf("CRON_TZ=%s %d %d * * *", c.TimeZone, m, h), nil
}

// scheduleSettlement (re)schedules the nightly settlement when the settings changed.
func (s *Scheduler) scheduleSettlement(ctx context.Context, store *partners.Store) error {
	c, err := store.Coalition(ctx)
	if err != nil {
		return err
	}
	spec, err := SettlementSpec(c)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if spec == s.settleSpec {
		return nil
	}
	id, err := s.cron.AddFunc(spec, s.settle)
	if err != nil {
		return fmt.Errorf("schedule settlement at %q: %w", spec, err)
	}
	if s.settleEntry != 0 {
		s.cron.Remove(s.settleEntry)
	}
	s.settleSpec, s.settleEntry = spec, id
	s.log.Info("settlement scheduled", zap.String("spec", spec))
	return nil
}

// chain wraps every job: Recover must sit inside SkipIfStillRunning, whose token (in cron
// v3.0.1) goes back only when the job returns, so that a panic outside it would stop the
// job for good.
func chain(log *zap.Logger) cron.Option {
	return cron.WithChain(cron.SkipIfStillRunning(cronLogger{log}), cron.Recover(cronLogger{log}))
}

// Add schedules a job under a name for the logs.
func (s *Scheduler) Add(ctx context.Context, spec, name string, now func() time.Time, job Job) {
	if _, err := s.cron.AddFunc(spec, s.wrap(ctx, name, job, now)); err != nil {
		panic("scheduler: bad spec " + spec + ": " + err.Error()) // a programming error
	}
}

// wrap turns a job into a cron function that bounds its time and logs its outcome.
func (s *Scheduler) wrap(ctx context.Context, name string, job Job, now func() time.Time) func() {
	return func() {
		start := time.Now()
		jctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
		defer cancel()
		n, err := job(jctx, now())
		if err != nil {
			s.log.Error("job failed", zap.String("job", name), zap.Int("done", n), zap.Error(err))
			return
		}
		s.log.Info("job done", zap.String("job", name), zap.Int("done", n), zap.Duration("took", time.Since(start)))
	}
}

// Start starts the jobs, and the settlement's catch-up in the background.
func (s *Scheduler) Start() {
	s.cron.Start()
	s.mu.Lock()
	id := s.settleEntry
	s.mu.Unlock()
	if id != 0 {
		go s.cron.Entry(id).WrappedJob.Run()
	}
}

// Stop stops scheduling and waits for the jobs that are running.
func (s *Scheduler) Stop() { <-s.cron.Stop().Done() }

// cronLogger adapts zap to cron's logger.
type cronLogger struct{ log *zap.Logger }

func (c cronLogger) Info(msg string, kv ...any) { c.log.Sugar().Infow(msg, kv...) }
func (c cronLogger) Error(err error, msg string, kv ...any) {
	c.log.Sugar().Errorw(msg, append(kv, "error", err)...)
}
