// Package pg holds the project's ways of talking to PostgreSQL: Connect, which builds a
// pool whose connections speak shopspring decimals, and InTx, which runs a function in a
// transaction and retries it on serialization failures and deadlocks (InPipelinedTx, for
// the writer, does so in two round trips fewer).
package pg

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	pgxdecimal "github.com/jackc/pgx-shopspring-decimal"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// MaxAttempts bounds how many times InTx runs a function that keeps failing on a
// serialization failure or a deadlock.
const MaxAttempts = 5

// Connect opens a pool to url (a libpq connection string or URL) whose connections
// encode and decode NUMERIC as decimal.Decimal. maxConns <= 0 keeps pgx's default.
func Connect(ctx context.Context, url string, maxConns int32) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("database url: %w", err)
	}
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	cfg.AfterConnect = func(_ context.Context, conn *pgx.Conn) error {
		pgxdecimal.Register(conn.TypeMap())
		return nil
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	pingCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := pool.Ping(pingCtx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect: %w", err)
	}
	return pool, nil
}

// PlanByKey, queued in a transaction, makes the rest of it plan its statements once per
// connection (a generic plan, made again when a table is analysed), by index, without
// JIT: for statements that name rows by key.
// Left alone, PostgreSQL plans such a statement again on every call when a custom plan
// looks cheaper (planning can cost five times the look-up), or keeps a generic plan made
// while a table was nearly empty (a sequential scan) until the table is next analysed.
// (Without sequential scans a one-row table costs as if huge: no JIT for that.)
const PlanByKey = `SELECT set_config('plan_cache_mode', 'force_generic_plan', true),
	set_config('enable_seqscan', 'off', true), set_config('jit', 'off', true)`

// Retryable reports whether err is a serialization failure (40001) or a deadlock (40P01),
// after which the whole transaction may be run again.
func Retryable(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == "40001" || pgErr.Code == "40P01"
	}
	return false
}

// InTx runs fn in a transaction and commits it, running it again (up to MaxAttempts
// times, with a short backoff) when the transaction fails on a serialization failure or
// a deadlock. fn must not keep state across attempts. If fn returns an error the
// transaction rolls back and the error is returned as is.
func InTx(ctx context.Context, pool *pgxpool.Pool, fn func(pgx.Tx) error) error {
	return retried(ctx, func() error { return pgx.BeginFunc(ctx, pool, fn) })
}

// retried runs attempt again, up to MaxAttempts times with a short backoff, while it
// fails on a serialization failure or a deadlock.
func retried(ctx context.Context, attempt func() error) error {
	var err error
	for n := 1; n <= MaxAttempts; n++ {
		err = attempt()
		if err == nil || !Retryable(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(n*n) * time.Millisecond):
		}
	}
	return fmt.Errorf("gave up after %d attempts: %w", MaxAttempts, err)
}

// WithDatabase returns connString (URL or key=value form) pointed at database dbname,
// every other setting (TLS, options, several hosts) kept as it was.
func WithDatabase(connString, dbname string) string {
	if strings.HasPrefix(connString, "postgres://") || strings.HasPrefix(connString, "postgresql://") {
		if u, err := url.Parse(connString); err == nil {
			u.Path, u.RawPath = "/"+dbname, ""
			q := u.Query()
			q.Del("dbname")
			u.RawQuery = q.Encode()
			return u.String()
		}
	}
	// In key=value form a later key wins over an earlier one.
	return connString + " dbname='" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(dbname) + "'"
}

// SendBatch sends b on a connection of pool and reads every result, as
// pool.SendBatch(ctx, b).Close() does, except that a panic in one of b's callbacks still
// gives the connection back (the pool drops it, mid-protocol) before it goes on up: the
// pool's own batch would hold that connection for good.
func SendBatch(ctx context.Context, pool *pgxpool.Pool, b *pgx.Batch) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	return conn.SendBatch(ctx, b).Close()
}

// Sender sends a batch of statements in one round trip: a pgx.Tx, or the transaction
// InPipelinedTx runs.
type Sender interface {
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// pipelinedTx is a transaction whose BEGIN travels with its first batch.
type pipelinedTx struct {
	conn  *pgxpool.Conn
	begun bool
}

// SendBatch sends b, after BEGIN on the first call.
func (p *pipelinedTx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	if !p.begun {
		p.begun = true
		first := &pgx.Batch{}
		first.Queue(`BEGIN`)
		first.QueuedQueries = append(first.QueuedQueries, b.QueuedQueries...)
		b = first
	}
	return p.conn.SendBatch(ctx, b)
}

// InPipelinedTx is InTx in two round trips fewer: BEGIN travels with the first batch fn
// sends, and COMMIT with the batch fn returns (its last; nil or empty: COMMIT alone). It
// runs fn again on a serialization failure or a deadlock, as InTx does; on any error the
// transaction rolls back and the error is returned as is.
func InPipelinedTx(ctx context.Context, pool *pgxpool.Pool, fn func(Sender) (*pgx.Batch, error)) error {
	return retried(ctx, func() error { return inPipelinedTx(ctx, pool, fn) })
}

func inPipelinedTx(ctx context.Context, pool *pgxpool.Pool, fn func(Sender) (*pgx.Batch, error)) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	tx := &pipelinedTx{conn: conn}
	last, err := fn(tx)
	if err == nil {
		if last == nil {
			last = &pgx.Batch{}
		}
		last.Queue(`COMMIT`)
		if err = tx.SendBatch(ctx, last).Close(); err == nil {
			return nil
		}
	}
	if tx.begun && !conn.Conn().IsClosed() {
		// A statement that failed left the transaction open but aborted (the rest of its
		// batch, COMMIT included, was skipped). After a failed COMMIT there is none left,
		// and ROLLBACK only warns.
		rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, rerr := conn.Exec(rctx, `ROLLBACK`); rerr != nil {
			conn.Conn().Close(rctx) //nolint:errcheck // the connection is dropped either way
		}
	}
	return err
}
