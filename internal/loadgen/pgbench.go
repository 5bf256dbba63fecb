package loadgen

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/coalitionledger/coalition/internal/pgcluster"
)

// pgbenchTool finds a PostgreSQL client program: the newest /usr/lib/postgresql/*/bin
// first, then PATH.
func pgbenchTool(name string) (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Sort(sort.Reverse(sort.StringSlice(dirs)))
	for _, d := range dirs {
		if p := filepath.Join(d, name); isExec(p) {
			return p, nil
		}
	}
	return exec.LookPath(name)
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode()&0o111 != 0
}

var tpsLine = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)

// pgbench runs PostgreSQL's built-in tpcb-like workload at the run's client count in a
// scratch database on the same server, and returns its transactions per second.
func pgbench(ctx context.Context, adminURL string, cfg Config, out io.Writer) (float64, error) {
	bin, err := pgbenchTool("pgbench")
	if err != nil {
		return 0, fmt.Errorf("pgbench: %w", err)
	}
	name := cfg.Database + "_pgbench"
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	ident := pgx.Identifier{name}.Sanitize()
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+ident); err != nil {
		return 0, err
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+ident); err != nil {
		return 0, err
	}
	defer dropDatabase(adminURL, name)
	url := withDatabase(adminURL, name)
	cfg.Log("pgbench -i -s %d (scratch database %s)", cfg.PgbenchScale, name)
	if b, err := exec.CommandContext(ctx, bin, "-i", "-q", "-s", strconv.Itoa(cfg.PgbenchScale), url).CombinedOutput(); err != nil {
		return 0, fmt.Errorf("pgbench -i: %w\n%s", err, b)
	}
	jobs := runtime.NumCPU()
	if jobs > cfg.Clients {
		jobs = cfg.Clients
	}
	args := []string{"-n", "-c", strconv.Itoa(cfg.Clients), "-j", strconv.Itoa(jobs), "-T", strconv.Itoa(int(cfg.PgbenchTime.Seconds())), url}
	cfg.Log("pgbench %v", args[:len(args)-1])
	b, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("pgbench: %w\n%s", err, b)
	}
	m := tpsLine.FindSubmatch(b)
	if m == nil {
		return 0, fmt.Errorf("pgbench printed no tps line:\n%s", b)
	}
	tps, _ := strconv.ParseFloat(string(m[1]), 64)
	fmt.Fprintf(out, "pgbench tpcb-like (built-in), scale %d, %d clients, %d threads, %s: %.0f tps\n",
		cfg.PgbenchScale, cfg.Clients, jobs, cfg.PgbenchTime, tps)
	return tps, nil
}

// privatePG is a PostgreSQL cluster the tool started in a temporary folder (fsync and
// synchronous_commit on), which crash mode may restart.
type privatePG struct {
	dir     string
	cluster *pgcluster.Cluster
	log     func(string, ...any)
}

func startPrivatePG(ctx context.Context, log func(string, ...any)) (*privatePG, error) {
	dir, err := os.MkdirTemp("", "coalition-bench-pg-")
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	p := &privatePG{dir: filepath.Join(dir, "data"), log: log}
	if p.cluster, err = pgcluster.Start(ctx, pgcluster.Options{DataDir: p.dir, Fsync: true, Logf: log}); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *privatePG) url(db string) string { return p.cluster.URL(db) }

// crashRestart stops the server the way a crash does (SIGQUIT to the postmaster: an
// immediate shutdown, no checkpoint, recovery from the WAL at the next start) and starts
// it again.
func (p *privatePG) crashRestart(ctx context.Context) error {
	raw, err := os.ReadFile(filepath.Join(p.dir, "postmaster.pid"))
	if err != nil {
		return err
	}
	var pid int
	if _, err := fmt.Sscanf(string(raw), "%d", &pid); err != nil {
		return fmt.Errorf("postmaster.pid: %w", err)
	}
	if err := syscall.Kill(pid, syscall.SIGQUIT); err != nil {
		return err
	}
	for i := 0; i < 600 && syscall.Kill(pid, 0) == nil; i++ {
		time.Sleep(50 * time.Millisecond)
	}
	c, err := pgcluster.Start(ctx, pgcluster.Options{DataDir: p.dir, Fsync: true, Logf: p.log})
	if err != nil {
		return err
	}
	p.cluster = c
	return nil
}

func (p *privatePG) stop() {
	_ = p.cluster.Stop()
	_ = os.RemoveAll(filepath.Dir(p.dir))
}

// crashLoop kills the server with SIGKILL cfg.ServerKills times and restarts PostgreSQL
// cfg.PGRestarts times, spread evenly over the run, restarting each at once.
func crashLoop(ctx context.Context, cfg Config, srv *server, pgc *privatePG, out io.Writer) {
	events := cfg.ServerKills + cfg.PGRestarts
	every := cfg.Duration / time.Duration(events+1)
	kills, restarts := 0, 0
	defer func() {
		fmt.Fprintf(out, "crash: %d of %d server kills and %d of %d PostgreSQL restarts done\n", kills, cfg.ServerKills, restarts, cfg.PGRestarts)
	}()
	start := time.Now()
	for i := 0; i < events; i++ {
		// On a fixed schedule from the start: a slow restart delays the next event, it
		// does not push the rest past the end of the run.
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(start.Add(time.Duration(i+1) * every))):
		}
		if kills < cfg.ServerKills && (restarts >= cfg.PGRestarts || i%2 == 0) {
			kills++
			srv.kill()
			fmt.Fprintf(out, "crash: killed the server with SIGKILL (%d of %d)\n", kills, cfg.ServerKills)
			if err := srv.start(context.Background()); err != nil {
				fmt.Fprintf(out, "crash: restart the server: %v\n", err)
				return
			}
			continue
		}
		restarts++
		if err := pgc.crashRestart(context.Background()); err != nil {
			fmt.Fprintf(out, "crash: restart PostgreSQL: %v\n", err)
			return
		}
		fmt.Fprintf(out, "crash: PostgreSQL stopped immediately (SIGQUIT) and restarted (%d of %d)\n", restarts, cfg.PGRestarts)
	}
}
