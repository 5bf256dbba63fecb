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

	"github.com/coalitionledger/coalition/audit"
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
	settle      func() // the scheduled settlement
	catchUp     func() // settles every day that is over; run by Start
}

// Job is one periodic task: it returns how many things it did.
type Job func(ctx context.Context, now time.Time) (int, error)

// New returns a scheduler with the ledger's jobs: hold timeouts and expiry every minute
// (until a lot past its expiry is expired, the member's balance still counts points that
// cannot be spent; with nothing due, each is one indexed look-up), and
// the idempotency keys' monthly partitions every six hours (those whose month ended more
// than keep ago are dropped).
func New(ctx context.Context, l *ledger.Ledger, log *zap.Logger, now func() time.Time, keep time.Duration) *Scheduler {
	s := &Scheduler{log: log, cron: cron.New(chain(log))}
	s.Add(ctx, "@every 1m", "hold-timeouts", now, func(ctx context.Context, t time.Time) (int, error) {
		return l.ReleaseExpiredHolds(ctx, t, nil)
	})
	s.Add(ctx, "@every 1m", "expiry", now, func(ctx context.Context, t time.Time) (int, error) {
		return l.ExpireDue(ctx, t, nil)
	})
	// A server runs for months: next month's partition must exist before the month turns,
	// and expired ones go a partition at a time.
	s.Add(ctx, "@every 6h", "idempotency-partitions", now, func(ctx context.Context, t time.Time) (int, error) {
		m, err := l.MaintainIdempotencyKeys(ctx, t, keep)
		return len(m.Created) + len(m.Dropped), err
	})
	return s
}

// WithSettlement adds the nightly settlement: at the coalition's settlement_time in its
// time zone (Nightly) it settles every day whose settlement time has passed and that is
// not settled yet, in order. A tick every quarter hour does the same, so that a night
// whose run failed (the database away at 02:00, a run past its deadline) is settled
// within minutes of the cause going away; and Start settles every day that is over, so
// that a server that was down at night, or crashed mid-run, catches up. A change of
// settlement_time or time_zone is picked up within five minutes.
func (s *Scheduler) WithSettlement(ctx context.Context, runs *settlement.Runs, store *partners.Store) *Scheduler {
	ctx = audit.WithActor(ctx, "scheduler")
	logRun := func(r *settlement.Run) {
		s.log.Info("settled", zap.String("business_date", r.BusinessDate), zap.Int("entries", r.Entries),
			zap.Int64("cutoff", r.Cutoff), zap.Int("instructions", r.Totals.Instructions),
			zap.String("received", r.Totals.Received), zap.String("paid", r.Totals.Paid), zap.String("fees", r.Totals.Fees))
	}
	// One token for every way of starting a settlement: they never overlap.
	var running sync.Mutex
	guarded := func(job func()) func() {
		return func() {
			if !running.TryLock() {
				return
			}
			defer running.Unlock()
			job()
		}
	}
	scheduled := guarded(s.wrap(ctx, "settlement", func(ctx context.Context, _ time.Time) (int, error) {
		made, err := runs.SettleScheduled(ctx, logRun)
		return len(made), err
	}, time.Now))
	s.settle = scheduled
	s.catchUp = guarded(s.wrap(ctx, "settlement-catch-up", func(ctx context.Context, _ time.Time) (int, error) {
		made, err := runs.SettleDue(ctx, logRun)
		return len(made), err
	}, time.Now))
	if _, err := s.cron.AddFunc("@every 15m", scheduled); err != nil {
		panic("scheduler: " + err.Error()) // a programming error
	}
	s.Add(ctx, "@every 5m", "settlement-schedule", time.Now, func(ctx context.Context, _ time.Time) (int, error) {
		return 0, s.scheduleSettlement(ctx, store)
	})
	if err := s.scheduleSettlement(ctx, store); err != nil {
		s.log.Error("settlement not scheduled yet", zap.Error(err))
	}
	return s
}

// Nightly is the settlement's schedule for robfig/cron: every night at a local time of
// day in a zone. Unlike a cron spec, whose missing hour is skipped, it fires on a
// daylight-saving night too: a time the change skips fires at the instant time.Date
// makes of it (02:30 becomes 03:30), and a repeated time fires once.
type Nightly struct {
	Hour, Minute int
	Loc          *time.Location
}

// Next returns the first settlement time after t.
func (n Nightly) Next(t time.Time) time.Time {
	for d := settlement.DayOf(t, n.Loc).Prev().Prev(); ; d = d.Next() {
		if at := d.SettlesAt(n.Hour, n.Minute, n.Loc); at.After(t) {
			return at
		}
	}
}

// String names the schedule in the logs.
func (n Nightly) String() string { return fmt.Sprintf("%02d:%02d %s", n.Hour, n.Minute, n.Loc) }

// SettlementSchedule returns the nightly settlement's schedule for the coalition's
// settings.
func SettlementSchedule(c partners.Coalition) (Nightly, error) {
	h, m, err := partners.ParseClock(c.SettlementTime)
	if err != nil {
		return Nightly{}, err
	}
	loc, err := c.Location()
	if err != nil {
		return Nightly{}, err
	}
	return Nightly{Hour: h, Minute: m, Loc: loc}, nil
}

// scheduleSettlement (re)schedules the nightly settlement when the settings changed.
func (s *Scheduler) scheduleSettlement(ctx context.Context, store *partners.Store) error {
	c, err := store.Coalition(ctx)
	if err != nil {
		return err
	}
	sched, err := SettlementSchedule(c)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if sched.String() == s.settleSpec {
		return nil
	}
	id := s.cron.Schedule(sched, cron.FuncJob(s.settle))
	if s.settleEntry != 0 {
		s.cron.Remove(s.settleEntry)
	}
	s.settleSpec, s.settleEntry = sched.String(), id
	s.log.Info("settlement scheduled", zap.String("at", sched.String()))
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
	if s.catchUp != nil {
		go cron.NewChain(cron.Recover(cronLogger{s.log})).Then(cron.FuncJob(s.catchUp)).Run()
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
