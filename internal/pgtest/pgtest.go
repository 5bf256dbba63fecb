// Package pgtest gives each test its own PostgreSQL database, cloned from a template database
// that carries the migrated schema, so that hundreds of tests can run in parallel without
// seeing each other's rows.
//
// The server is the one DATABASE_URL names (its role must be allowed to CREATE DATABASE) or,
// when DATABASE_URL is unset, a throwaway cluster that the test process starts on first use in
// a fresh temporary folder and stops at the end. A package that uses pgtest calls Main from
// its TestMain, which drops what the process created and stops the cluster it started.
//
// pgtest is for tests only: it never touches a database it did not create, except the
// maintenance database it connects to in order to create and drop its own.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/coalitionledger/coalition/internal/pg"
	"github.com/coalitionledger/coalition/internal/pgcluster"
	"github.com/coalitionledger/coalition/migrations"
)

// Limits of the harness.
const (
	// PoolMaxConns is the size of each test's pool; more goroutines than this queue for a
	// connection.
	PoolMaxConns = 16
	// adminMaxConns bounds the connections that create and drop test databases.
	adminMaxConns = 4
	// setupTimeout bounds starting the cluster (which may install PostgreSQL) and building
	// the template.
	setupTimeout = 10 * time.Minute
	// opTimeout bounds creating or dropping one database.
	opTimeout = 2 * time.Minute
	// tmpPrefix names the temporary folders of the throwaway clusters.
	tmpPrefix = "coalition-pgtest-"
	// ownerFile, in such a folder, holds the pid of the test process that owns it.
	ownerFile = "owner.pid"
	// maxSweep bounds how many leftover folders one process cleans up.
	maxSweep = 32
)

// h is the harness of this test process. It is package-level state on purpose: one test
// binary has one server and one template, shared by all its tests, and torn down by Main.
var h harness

// harness holds the server, the template and the counter of test databases.
type harness struct {
	mu          sync.Mutex
	mainRunning bool  // Main is running the tests, so teardown will happen
	setUp       bool  // setup has run (successfully or not)
	err         error // setup's error, returned to every later caller

	tmpDir   string             // folder of the throwaway cluster, removed at teardown
	cluster  *pgcluster.Cluster // nil when DATABASE_URL names the server
	adminURL string
	urlFor   func(dbname string) string
	admin    *pgxpool.Pool
	tpl      string // name of the template database
	prefix   string // prefix of test database names, unique to this process
	strategy string // " STRATEGY = ..." clause of CREATE DATABASE, or ""
	seq      atomic.Int64
}

// Main runs the tests of m, then drops the template this process created and stops the
// cluster it started, then exits with the tests' code (or 1 if the teardown failed).
// Call it from TestMain.
func Main(m *testing.M) {
	h.mu.Lock()
	h.mainRunning = true
	h.mu.Unlock()
	code := m.Run()
	if err := h.teardown(); err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: teardown: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// Pool returns a pool (at most PoolMaxConns connections) on a new database cloned from the
// migrated template, built by pg.Connect (NUMERIC as decimal.Decimal). The pool is closed
// and the database dropped when the test ends.
func Pool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	pool, err := pg.Connect(context.Background(), URL(t), PoolMaxConns)
	if err != nil {
		t.Fatalf("pgtest: pool: %v", err)
	}
	t.Cleanup(pool.Close) // runs before the drop registered by URL
	return pool
}

// URL creates a new database cloned from the migrated template and returns its connection
// string, for tests that open their own connections. The database is dropped, whoever is
// still connected to it, when the test ends.
func URL(t testing.TB) string {
	t.Helper()
	hs, err := get()
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	name := hs.prefix + strconv.FormatInt(hs.seq.Add(1), 10)
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if _, err := hs.admin.Exec(ctx, "CREATE DATABASE "+ident(name)+" TEMPLATE "+ident(hs.tpl)+hs.strategy); err != nil {
		t.Fatalf("pgtest: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		if _, err := hs.admin.Exec(ctx, "DROP DATABASE IF EXISTS "+ident(name)+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	return hs.urlFor(name)
}

// AdminURL returns the connection string of the maintenance database (DATABASE_URL itself,
// or database postgres as superuser on the throwaway cluster), for tests that need more
// rights than a test database's owner, such as tampering with history.
func AdminURL(t testing.TB) string {
	t.Helper()
	hs, err := get()
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return hs.adminURL
}

// get returns the harness, setting it up on first use.
func get() (*harness, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.mainRunning {
		return nil, errors.New("call pgtest.Main(m) from TestMain in this package, so that the databases and the server are cleaned up")
	}
	if !h.setUp {
		h.setUp = true
		ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
		h.err = h.setup(ctx)
		cancel()
	}
	return &h, h.err
}

// setup finds or starts the server and builds the template.
func (hs *harness) setup(ctx context.Context) error {
	tag := fmt.Sprintf("%d_%s", os.Getpid(), randomHex(4))
	if dsn := os.Getenv("DATABASE_URL"); dsn != "" {
		hs.adminURL = dsn
		hs.urlFor = func(dbname string) string { return pg.WithDatabase(dsn, dbname) }
	} else {
		sweepLeftovers()
		dir, err := os.MkdirTemp("", tmpPrefix)
		if err != nil {
			return fmt.Errorf("temporary folder: %w", err)
		}
		hs.tmpDir = dir
		// As root the server runs as another user, which must be able to enter the folder.
		if err := os.Chmod(dir, 0o755); err != nil {
			return fmt.Errorf("temporary folder: %w", err)
		}
		if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
			return fmt.Errorf("temporary folder: %w", err)
		}
		c, err := pgcluster.Start(ctx, pgcluster.Options{DataDir: filepath.Join(dir, "data"), Fsync: false})
		if err != nil {
			return err
		}
		hs.cluster = c
		hs.adminURL = c.URL("postgres")
		hs.urlFor = c.URL
	}

	cfg, err := pgxpool.ParseConfig(hs.adminURL)
	if err != nil {
		return fmt.Errorf("admin connection string: %w", err)
	}
	cfg.MaxConns = adminMaxConns
	if hs.admin, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		return fmt.Errorf("admin pool: %w", err)
	}
	var version int
	var fsync string
	if err := hs.admin.QueryRow(ctx, "SELECT current_setting('server_version_num')::int, current_setting('fsync')").Scan(&version, &fsync); err != nil {
		return fmt.Errorf("connect to the maintenance database: %w", err)
	}
	if version >= 150000 && fsync == "off" {
		// FILE_COPY copies the template's files after a checkpoint; WAL_LOG (the default
		// since 15) copies it block by block through the WAL. Without fsync the checkpoint
		// is cheap and FILE_COPY clones in about a third of the time; with fsync the
		// checkpoint costs more than the WAL, so the default stays.
		hs.strategy = " STRATEGY = FILE_COPY"
	}

	hs.tpl = "coalition_tpl_" + tag
	if _, err := hs.admin.Exec(ctx, "CREATE DATABASE "+ident(hs.tpl)); err != nil {
		return fmt.Errorf("create template database: %w", err)
	}
	if err := migrate(ctx, hs.urlFor(hs.tpl)); err != nil {
		return err
	}
	// Nobody may connect to the template any more: a connection would make every clone fail.
	if _, err := hs.admin.Exec(ctx, "ALTER DATABASE "+ident(hs.tpl)+" ALLOW_CONNECTIONS false"); err != nil {
		return fmt.Errorf("close template database: %w", err)
	}
	hs.prefix = "t_" + tag + "_"
	return nil
}

// migrate applies the migrations to the database at connString and closes every
// connection it opened.
func migrate(ctx context.Context, connString string) error {
	pool, err := pgxpool.New(ctx, connString)
	if err != nil {
		return fmt.Errorf("template pool: %w", err)
	}
	defer pool.Close()
	if _, err := migrations.Up(ctx, pool); err != nil {
		return fmt.Errorf("migrate template: %w", err)
	}
	return nil
}

// teardown drops the template and stops the cluster, if setup got that far.
func (hs *harness) teardown() error {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	var errs []error
	if hs.admin != nil {
		// On a throwaway cluster the whole folder goes; on a shared server drop what is ours.
		if hs.cluster == nil && hs.tpl != "" {
			ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
			if _, err := hs.admin.Exec(ctx, "DROP DATABASE IF EXISTS "+ident(hs.tpl)+" WITH (FORCE)"); err != nil {
				errs = append(errs, fmt.Errorf("drop template %s: %w", hs.tpl, err))
			}
			cancel()
		}
		hs.admin.Close()
	}
	if hs.cluster != nil {
		if err := hs.cluster.Stop(); err != nil {
			errs = append(errs, err)
		}
	}
	if hs.tmpDir != "" {
		if err := os.RemoveAll(hs.tmpDir); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", hs.tmpDir, err))
		}
	}
	return errors.Join(errs...)
}

// sweepLeftovers stops and removes the throwaway clusters of test processes that died
// without tearing down (a panic, a timeout, a kill). Best effort: errors are ignored.
func sweepLeftovers() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), tmpPrefix+"*"))
	for i, dir := range dirs {
		if i == maxSweep {
			return
		}
		data, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			// Its owner may be between creating the folder and writing the file.
			if fi, serr := os.Stat(dir); serr != nil || time.Since(fi.ModTime()) < 10*time.Minute {
				continue
			}
		} else if owner, err := strconv.Atoi(strings.TrimSpace(string(data))); err != nil || alive(owner) {
			continue
		}
		if pm, err := os.ReadFile(filepath.Join(dir, "data", "postmaster.pid")); err == nil {
			first, _, _ := strings.Cut(string(pm), "\n")
			if pid, err := strconv.Atoi(strings.TrimSpace(first)); err == nil && alive(pid) && isPostgres(pid) {
				_ = syscall.Kill(pid, syscall.SIGQUIT) // immediate shutdown: the data is garbage
				for range 50 {
					if !alive(pid) {
						break
					}
					time.Sleep(100 * time.Millisecond)
				}
			}
		}
		_ = os.RemoveAll(dir)
	}
}

// alive reports whether a process with this pid exists.
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	return !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// isPostgres reports whether /proc shows pid to be a PostgreSQL server process, so that a
// reused pid is never signalled.
func isPostgres(pid int) bool {
	comm, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "comm"))
	return err == nil && strings.TrimSpace(string(comm)) == "postgres"
}

// ident quotes a name as an SQL identifier.
func ident(name string) string { return pgx.Identifier{name}.Sanitize() }

// randomHex returns n random bytes in hex.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b)
}

// AssertPlannedByKey fails the test unless query, planned as the writer plans it (generic
// plans, no sequential scans: pg.PlanByKey) in the test's fresh and so nearly empty
// database, reaches every table by an index condition. A generic plan made while a table
// is small is kept as the table grows; one that scans a whole index then costs more on
// every call. args fill the query's parameters for EXPLAIN.
func AssertPlannedByKey(t testing.TB, pool *pgxpool.Pool, query string, args ...any) {
	t.Helper()
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatalf("pgtest: begin: %v", err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, pg.PlanByKey); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	// A prepared statement outlives the transaction: one name per call, dropped after.
	name := "pgtest_plan_" + strconv.FormatInt(planCount.Add(1), 10)
	if _, err := tx.Exec(ctx, "PREPARE "+name+" AS "+query); err != nil {
		t.Fatalf("pgtest: prepare: %v", err)
	}
	defer tx.Exec(ctx, "DEALLOCATE "+name)
	params := make([]string, len(args))
	for i := range args {
		params[i] = "$" + strconv.Itoa(i+1)
	}
	var plan []struct{ Plan planNode }
	// EXPLAIN takes no parameters of its own: the client writes args into the text.
	explain := "EXPLAIN (FORMAT JSON) EXECUTE " + name + "(" + strings.Join(params, ", ") + ")"
	if err := tx.QueryRow(ctx, explain, append([]any{pgx.QueryExecModeSimpleProtocol}, args...)...).Scan(&plan); err != nil {
		t.Fatalf("pgtest: explain: %v", err)
	}
	for _, p := range plan {
		if bad := p.Plan.scanWithoutKey(); bad != "" {
			t.Errorf("the generic plan of %s\nreads %s", query, bad)
		}
	}
}

// planCount names AssertPlannedByKey's prepared statements.
var planCount atomic.Int64

// planNode is a node of EXPLAIN (FORMAT JSON).
type planNode struct {
	NodeType  string     `json:"Node Type"`
	Relation  string     `json:"Relation Name"`
	Index     string     `json:"Index Name"`
	IndexCond string     `json:"Index Cond"`
	Plans     []planNode `json:"Plans"`
}

// scanWithoutKey describes the first scan of a table or an index with no index condition.
func (n planNode) scanWithoutKey() string {
	switch n.NodeType {
	case "Seq Scan":
		return "all of " + n.Relation
	case "Index Scan", "Index Only Scan", "Bitmap Index Scan":
		if n.IndexCond == "" {
			return "all of index " + n.Index
		}
	}
	for _, c := range n.Plans {
		if bad := c.scanWithoutKey(); bad != "" {
			return bad
		}
	}
	return ""
}
