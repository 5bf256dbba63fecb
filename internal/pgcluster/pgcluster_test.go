package pgcluster

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// testDir returns a fresh folder for a data folder that the server user can reach even when
// the test runs as root (t.TempDir's parent is private to its owner).
func testDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "pgcluster-test-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

func selectOne(t *testing.T, ctx context.Context, url string) {
	t.Helper()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("SELECT 1 = %d, %v", one, err)
	}
}

func TestStartReuseStop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dataDir := filepath.Join(testDir(t), "pgdata")
	opts := Options{DataDir: dataDir, Fsync: false, Logf: t.Logf}

	// Two starters at once: the lock makes one start the server and the other reuse it.
	var clusters [2]*Cluster
	var errs [2]error
	var wg sync.WaitGroup
	for i := range clusters {
		wg.Go(func() { clusters[i], errs[i] = Start(ctx, opts) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Start %d: %v", i, err)
		}
		t.Cleanup(func() { _ = clusters[i].Stop() })
	}
	first, second := clusters[0], clusters[1]
	if second.owned {
		first, second = second, first
	}
	if !first.owned || second.owned {
		t.Fatalf("owned: %v and %v, want exactly one Start to start the server", first.owned, second.owned)
	}
	selectOne(t, ctx, first.URL("postgres"))
	selectOne(t, ctx, second.URL("postgres"))
	if err := second.Stop(); err != nil {
		t.Fatal(err)
	}
	selectOne(t, ctx, first.URL("postgres")) // still running: the reuser does not stop it

	if err := first.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "postmaster.pid")); !os.IsNotExist(err) {
		t.Fatalf("postmaster.pid after Stop: %v", err)
	}

	// A postmaster.pid left by a process that is gone must not block the next start.
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	stale := strconv.Itoa(gone.Process.Pid) + "\n" + dataDir + "\n1700000000\n5432\n" + first.socketDir + "\n\n0 0\nready   \n"
	if err := os.WriteFile(filepath.Join(dataDir, "postmaster.pid"), []byte(stale), 0o600); err != nil {
		t.Fatal(err)
	}
	third, err := Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = third.Stop() })
	if !third.owned {
		t.Fatal("Start over a stale postmaster.pid did not start the server")
	}
	selectOne(t, ctx, third.URL("postgres"))
	if err := third.Stop(); err != nil {
		t.Fatal(err)
	}
}

func TestLongDataDirUsesShortSocketDir(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	long := filepath.Join(testDir(t), "a-rather-long-folder-name-to-push-the-socket-path", "past-the-unix-limit", "pgdata")
	if err := os.MkdirAll(filepath.Dir(long), 0o755); err != nil {
		t.Fatal(err)
	}
	c, err := Start(ctx, Options{DataDir: long, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	if !c.tmpSocket || len(c.socketDir) > maxSocketDirLen {
		t.Fatalf("socket dir %q (temporary: %v) for data folder %q", c.socketDir, c.tmpSocket, long)
	}
	selectOne(t, ctx, c.URL("postgres"))
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(c.socketDir); !os.IsNotExist(err) {
		t.Fatalf("temporary socket dir left after Stop: %v", err)
	}
}

func TestQuoteDSN(t *testing.T) {
	for in, want := range map[string]string{
		"postgres":   "postgres",
		"":           "''",
		"/tmp/a b":   "'/tmp/a b'",
		`it's\here`:  `'it\'s\\here'`,
		"t_1_abcd_2": "t_1_abcd_2",
	} {
		if got := quoteDSN(in); got != want {
			t.Errorf("quoteDSN(%q) = %s, want %s", in, got, want)
		}
	}
}
