package pgtest_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/coalitionledger/coalition/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestIsolation runs two parallel tests, each on its own database: both see the migrated
// schema, and neither sees the other's rows.
func TestIsolation(t *testing.T) {
	for _, name := range []string{"alpha", "beta"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			pool := pgtest.Pool(t)
			var entries *string
			if err := pool.QueryRow(ctx, "SELECT to_regclass('entries')::text").Scan(&entries); err != nil || entries == nil {
				t.Fatalf("table entries in the test database: %v, %v", entries, err)
			}
			if _, err := pool.Exec(ctx, "CREATE TABLE probe (who text)"); err != nil {
				t.Fatal(err) // would fail had the other test created it in the same database
			}
			if _, err := pool.Exec(ctx, "INSERT INTO probe VALUES ($1)", name); err != nil {
				t.Fatal(err)
			}
			var rows []string
			r, err := pool.Query(ctx, "SELECT who FROM probe")
			if err != nil {
				t.Fatal(err)
			}
			if rows, err = pgx.CollectRows(r, pgx.RowTo[string]); err != nil {
				t.Fatal(err)
			}
			if len(rows) != 1 || rows[0] != name {
				t.Fatalf("probe rows = %v, want only %q", rows, name)
			}
		})
	}
}

// TestTwoDatabasesInOneTest checks isolation without relying on scheduling, the URL form, and
// that a pool serves more goroutines than it has connections.
func TestTwoDatabasesInOneTest(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := pgtest.Pool(t)
	conn, err := pgx.Connect(ctx, pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)

	if _, err := a.Exec(ctx, "CREATE TABLE probe (n int)"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 64 {
		wg.Go(func() {
			_, err := a.Exec(ctx, "INSERT INTO probe SELECT $1 FROM pg_sleep(0.01)", i)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	var n int
	if err := a.QueryRow(ctx, "SELECT count(*) FROM probe").Scan(&n); err != nil || n != 64 {
		t.Fatalf("rows in a = %d, %v; want 64", n, err)
	}
	var probe *string
	if err := conn.QueryRow(ctx, "SELECT to_regclass('probe')::text").Scan(&probe); err != nil || probe != nil {
		t.Fatalf("table probe seen from the other database: %v, %v", probe, err)
	}
}

// TestAdminURL checks that the maintenance connection works and lists this test's database.
func TestAdminURL(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := pgtest.URL(t)
	admin, err := pgx.Connect(ctx, pgtest.AdminURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	cfg, err := pgx.ParseConfig(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	if err := admin.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)", cfg.Database).Scan(&found); err != nil || !found {
		t.Fatalf("database %s in pg_database: %v, %v", cfg.Database, found, err)
	}
	if !strings.HasPrefix(cfg.Database, "t_") {
		t.Fatalf("test database name %q", cfg.Database)
	}
}

// recorder is a testing.TB that keeps the failures it is told of.
type recorder struct {
	testing.TB
	failed []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.failed = append(r.failed, fmt.Sprintf(format, args...))
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.TB.Fatalf(format, args...)
}

func TestAssertPlannedByKey(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t)
	args := []any{[]string{"p1", "p2"}, []string{"earn", "earn"}, []string{"r1", "r2"}}
	// The writer's reference look-up before it was written as a LATERAL look-up: planned
	// generic on an empty journal, it hashed all of the reference index.
	r := &recorder{TB: t}
	pgtest.AssertPlannedByKey(r, pool, `SELECT partner_id, kind, reference FROM entries
		WHERE (partner_id, kind, reference) IN (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]))`, args...)
	if len(r.failed) != 1 || !strings.Contains(r.failed[0], "entries_reference_idx") {
		t.Errorf("the IN (unnest) look-up: failures %q, want one naming entries_reference_idx", r.failed)
	}
	r = &recorder{TB: t}
	pgtest.AssertPlannedByKey(r, pool, `SELECT n.ref FROM unnest($1::text[], $2::text[], $3::text[]) AS n(partner, kind, ref)
		CROSS JOIN LATERAL (SELECT FROM entries e
		 WHERE e.partner_id = n.partner AND e.kind = n.kind AND e.reference = n.ref LIMIT 1) u`, args...)
	if len(r.failed) != 0 {
		t.Errorf("the LATERAL look-up: failures %q, want none", r.failed)
	}
	r = &recorder{TB: t}
	pgtest.AssertPlannedByKey(r, pool, `SELECT count(*) FROM entries WHERE kind = $1`, "earn")
	if len(r.failed) != 1 {
		t.Errorf("a count of all earns: failures %q, want one", r.failed)
	}
}
