// Package database opens the coalition's database for a command: the server named by
// DATABASE_URL when it is set, otherwise the embedded default, a private PostgreSQL
// cluster started from the server installed on the machine. It applies the migrations
// before handing the pool over, so no command runs on an old schema.
package database

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/coalitionledger/coalition/internal/pg"
	"github.com/coalitionledger/coalition/internal/pgcluster"
	"github.com/coalitionledger/coalition/ledger"
	"github.com/coalitionledger/coalition/migrations"
)

// Options say which database to open.
type Options struct {
	URL     string // DATABASE_URL; empty: the embedded default
	DataDir string // the embedded cluster's data folder; empty: pgcluster.DefaultDataDir()
	Name    string // the database on the embedded cluster (default "coalition")
	Fresh   bool   // drop and recreate Name first (the demo), on the embedded cluster or next to URL's
	// Existing refuses, on the embedded cluster, a Name that does not exist rather than
	// creating it: a database the user named, where a typo must not open an empty ledger.
	Existing bool
	MaxConns int32
	Logf     func(format string, args ...any)
}

// DB is an open, migrated database.
type DB struct {
	Pool    *pgxpool.Pool
	Version int64 // the schema version
	cluster *pgcluster.Cluster
}

// Close closes the pool and stops the embedded cluster if this process started it.
func (db *DB) Close() error {
	if db.Pool != nil { // nil when Open failed to connect
		db.Pool.Close()
	}
	if db.cluster != nil {
		return db.cluster.Stop()
	}
	return nil
}

// Open opens and migrates the database the options name.
func Open(ctx context.Context, o Options) (*DB, error) {
	if o.Name == "" {
		o.Name = "coalition"
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	db := &DB{}
	url := o.URL
	if url == "" {
		dir := o.DataDir
		if dir == "" {
			var err error
			if dir, err = pgcluster.DefaultDataDir(); err != nil {
				return nil, err
			}
		}
		cluster, err := pgcluster.Start(ctx, pgcluster.Options{DataDir: dir, Fsync: true, Logf: o.Logf})
		if err != nil {
			return nil, fmt.Errorf("embedded PostgreSQL (set DATABASE_URL to use another server): %w", err)
		}
		db.cluster = cluster
		url = cluster.URL(o.Name)
		if o.Existing {
			err = requireDatabase(ctx, cluster.URL("postgres"), o.Name)
		} else {
			err = ensureDatabase(ctx, cluster.URL("postgres"), o.Name, o.Fresh)
		}
		if err != nil {
			cluster.Stop()
			return nil, err
		}
	} else if o.Fresh {
		if _, err := pgx.ParseConfig(url); err != nil {
			return nil, fmt.Errorf("DATABASE_URL: %w", err)
		}
		if err := ensureDatabase(ctx, url, o.Name, true); err != nil {
			return nil, err
		}
		url = pg.WithDatabase(url, o.Name)
	}
	pool, err := pg.Connect(ctx, url, o.MaxConns)
	if err != nil {
		db.Close()
		return nil, err
	}
	db.Pool = pool
	if db.Version, err = migrations.Up(ctx, pool); err != nil {
		db.Close()
		return nil, err
	}
	// This month's and next month's partitions, for every command; only serve drops old
	// ones, after its own retention (--key-retention), which a command never second-guesses.
	if _, err := ledger.New(pool).MaintainIdempotencyKeys(ctx, time.Now(), 0); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// ensureDatabase creates database name through the server at adminURL if it is missing,
// or afresh when fresh is set.
func ensureDatabase(ctx context.Context, adminURL, name string, fresh bool) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("connect to create database %s: %w", name, err)
	}
	defer conn.Close(ctx)
	ident := pgx.Identifier{name}.Sanitize()
	if fresh {
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil {
			return fmt.Errorf("drop database %s: %w", name, err)
		}
	}
	_, err = conn.Exec(ctx, "CREATE DATABASE "+ident)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P04" { // duplicate_database
		return nil
	}
	if err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

// requireDatabase refuses a database name that the server at adminURL does not have.
func requireDatabase(ctx context.Context, adminURL, name string) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("connect to find database %s: %w", name, err)
	}
	defer conn.Close(ctx)
	var found bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)`, name).Scan(&found); err != nil {
		return fmt.Errorf("database %s: %w", name, err)
	}
	if !found {
		return fmt.Errorf("database %s does not exist on the embedded cluster (the demo's is coalition_demo; without --database, coalition)", name)
	}
	return nil
}
