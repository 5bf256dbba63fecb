// Package pgcluster runs the embedded default PostgreSQL: a private cluster in one data
// folder, created with initdb and started with pg_ctl from the server installed on the
// machine, reachable only over a unix socket in a private directory.
//
// It owns the life of that one cluster (init, start, reuse, stop) and nothing else. It never
// listens on TCP, never stops a server it did not start, and never runs the server as root
// (PostgreSQL refuses to): as root it runs initdb, postgres and pg_ctl as an unprivileged
// system user.
package pgcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Limits on the waits and outputs of this package.
const (
	// port is the port number in the socket's name; the socket directory is private to the
	// cluster, so a fixed number never collides with another server.
	port = 5432
	// maxSocketDirLen keeps socketDir + "/.s.PGSQL.5432" under the 107 bytes a unix socket
	// path may have, with a margin.
	maxSocketDirLen = 90
	// startTimeout bounds pg_ctl start and stop (seconds, passed as -t).
	startTimeout = 120
	// busyWait bounds how long Start waits for a server that holds the data folder but does
	// not answer yet (starting up, or shutting down).
	busyWait = 60 * time.Second
	// pingAttempts bounds the connection attempts after pg_ctl reports the server ready.
	pingAttempts = 50
	// logTailBytes is how much of the end of the server log an error carries.
	logTailBytes = 4096
	// maxLogBytes is the size past which the server log is rotated (one old copy kept).
	maxLogBytes = 16 << 20
	// confFile is the file, included from postgresql.conf, that Start rewrites on each start.
	confFile = "coalition.conf"
	// logFile is the server log, inside the data folder (the server user can write there).
	logFile = "server.log"
)

// Options configures Start.
type Options struct {
	// DataDir is the cluster's data folder, created with initdb if it is missing or empty.
	DataDir string
	// Fsync is false for throwaway test clusters: fsync, synchronous_commit and
	// full_page_writes are turned off and initdb does not sync. A crash may then lose or
	// corrupt the data, which is fine for a test and never for a ledger.
	Fsync bool
	// Logf receives progress lines ("initialising PostgreSQL 15 in ...", "starting ...").
	// It may be nil.
	Logf func(format string, args ...any)
}

// Cluster is a running PostgreSQL server on one data folder, started by Start or found
// already running by it.
type Cluster struct {
	dataDir   string
	socketDir string
	port      int
	bin       binaries
	user      *serverUser // nil when this process is not root: the server runs as us
	owned     bool        // this process started the server and stops it in Stop
	tmpSocket bool        // socketDir is a temporary directory that Stop removes
	logf      func(format string, args ...any)

	mu      sync.Mutex
	stopped bool
}

// Start returns a running cluster on opts.DataDir. If a server already runs on that data
// folder it is reused (and Stop leaves it running); otherwise the folder is initialised if
// needed and a server is started. Concurrent starters of the same folder, in this process or
// others, are serialised by a lock file next to it.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.DataDir == "" {
		return nil, errors.New("pgcluster: Options.DataDir is empty")
	}
	dataDir, err := filepath.Abs(opts.DataDir)
	if err != nil {
		return nil, fmt.Errorf("pgcluster: data folder %q: %w", opts.DataDir, err)
	}
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if err := os.MkdirAll(filepath.Dir(dataDir), 0o755); err != nil {
		return nil, fmt.Errorf("pgcluster: create parent of data folder: %w", err)
	}
	unlock, err := lockFile(ctx, dataDir+".lock")
	if err != nil {
		return nil, err
	}
	defer unlock()

	c := &Cluster{dataDir: dataDir, port: port, logf: logf}
	reused, err := c.findRunning(ctx)
	if err != nil {
		return nil, err
	}
	if reused {
		logf("reusing PostgreSQL already running on %s (socket %s)", dataDir, c.socketDir)
		return c, nil
	}

	dataVersion := readPGVersion(dataDir)
	c.bin, err = findOrInstall(ctx, dataVersion, opts.Logf)
	if err != nil {
		return nil, err
	}
	if os.Geteuid() == 0 {
		c.user, err = chooseServerUser(ctx, dataDir, logf)
		if err != nil {
			return nil, err
		}
		if err := c.user.checkTraverse(dataDir); err != nil {
			return nil, err
		}
		// Let the server user, too, take the lock should it ever run Start itself.
		_ = c.user.chown(dataDir + ".lock")
	}
	if dataVersion == "" {
		if err := c.initdb(ctx, opts.Fsync); err != nil {
			return nil, err
		}
	} else if c.user != nil {
		if err := c.user.adopt(dataDir, logf); err != nil {
			return nil, err
		}
	}
	if err := c.prepareSocketDir(); err != nil {
		return nil, err
	}
	if err := c.writeConfig(opts.Fsync); err != nil {
		c.removeTmpSocket()
		return nil, err
	}
	if err := c.start(ctx); err != nil {
		c.removeTmpSocket()
		return nil, err
	}
	c.owned = true
	return c, nil
}

// URL returns a connection string (key=value form, understood by libpq and pgx) that reaches
// database dbname as the superuser "postgres" over the cluster's unix socket.
func (c *Cluster) URL(dbname string) string {
	return fmt.Sprintf("host=%s port=%d user=postgres dbname=%s sslmode=disable connect_timeout=10",
		quoteDSN(c.socketDir), c.port, quoteDSN(dbname))
}

// Stop stops the server (pg_ctl stop -m fast) if this Cluster started it, and does nothing
// if Start found it already running. A second call does nothing.
func (c *Cluster) Stop() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped || !c.owned {
		c.stopped = true
		return nil
	}
	c.stopped = true
	ctx, cancel := context.WithTimeout(context.Background(), (startTimeout+30)*time.Second)
	defer cancel()
	unlock, err := lockFile(ctx, c.dataDir+".lock")
	if err != nil {
		return err
	}
	defer unlock()
	defer c.removeTmpSocket()
	out, err := c.command(ctx, c.bin.pgctl, "-D", c.dataDir, "-m", "fast", "-w",
		"-t", strconv.Itoa(startTimeout), "stop").CombinedOutput()
	if err != nil {
		if _, statErr := os.Stat(filepath.Join(c.dataDir, "postmaster.pid")); errors.Is(statErr, fs.ErrNotExist) {
			return nil // someone else stopped it: the goal is reached
		}
		return fmt.Errorf("pgcluster: pg_ctl stop %s: %w\n%s%s", c.dataDir, err,
			bytes.TrimSpace(out), c.logTail())
	}
	c.logf("stopped PostgreSQL on %s", c.dataDir)
	return nil
}

// DefaultDataDir returns the data folder of the embedded default cluster: $COALITION_DATA if
// set; else /var/lib/coalition/pgdata when running as root; else
// $XDG_DATA_HOME/coalition/pgdata (by default ~/.local/share/coalition/pgdata).
func DefaultDataDir() (string, error) {
	if d := os.Getenv("COALITION_DATA"); d != "" {
		return d, nil
	}
	if os.Geteuid() == 0 {
		return "/var/lib/coalition/pgdata", nil
	}
	if d := os.Getenv("XDG_DATA_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "coalition", "pgdata"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("pgcluster: default data folder: %w (set COALITION_DATA)", err)
	}
	return filepath.Join(home, ".local", "share", "coalition", "pgdata"), nil
}

// findRunning reports whether a live server already runs on the data folder and, if so,
// points c at its socket. A postmaster.pid left by a dead process is removed. A live server
// that does not answer yet is waited for, up to busyWait.
func (c *Cluster) findRunning(ctx context.Context) (bool, error) {
	pidPath := filepath.Join(c.dataDir, "postmaster.pid")
	deadline := time.Now().Add(busyWait)
	torn := 0
	for {
		pf, err := readPostmasterPID(pidPath)
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		if errors.Is(err, errTornPID) && torn < 20 {
			torn++ // a server may be writing it right now: look again shortly
			if err := sleep(ctx, 100*time.Millisecond); err != nil {
				return false, fmt.Errorf("pgcluster: waiting for the server on %s: %w", c.dataDir, err)
			}
			continue
		}
		if err != nil && !errors.Is(err, errTornPID) {
			return false, fmt.Errorf("pgcluster: read postmaster.pid: %w", err)
		}
		if !postmasterAlive(pf.pid) {
			c.logf("removing stale %s (process %d is gone)", pidPath, pf.pid)
			if err := os.Remove(pidPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return false, fmt.Errorf("pgcluster: remove stale postmaster.pid: %w", err)
			}
			return false, nil
		}
		var lastErr error
		if pf.socketDir != "" && pf.port != 0 {
			c.socketDir, c.port = pf.socketDir, pf.port
			if lastErr = ping(ctx, c.URL("postgres")); lastErr == nil {
				return true, nil
			}
		} else {
			lastErr = errors.New("postmaster.pid names no unix socket yet")
		}
		if time.Now().After(deadline) {
			return false, fmt.Errorf("pgcluster: a PostgreSQL server (pid %d) holds %s but does not answer: %w%s",
				pf.pid, c.dataDir, lastErr, c.logTail())
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return false, fmt.Errorf("pgcluster: waiting for the server on %s: %w", c.dataDir, err)
		}
	}
}

// initdb creates the cluster in the (missing or empty) data folder.
func (c *Cluster) initdb(ctx context.Context, fsync bool) error {
	if err := os.MkdirAll(c.dataDir, 0o700); err != nil {
		return fmt.Errorf("pgcluster: create data folder: %w", err)
	}
	if err := os.Chmod(c.dataDir, 0o700); err != nil {
		return fmt.Errorf("pgcluster: data folder: %w", err)
	}
	if c.user != nil {
		if err := c.user.chown(c.dataDir); err != nil {
			return err
		}
	}
	c.logf("initialising PostgreSQL %s in %s", c.bin.major, c.dataDir)
	args := []string{"-D", c.dataDir, "--username=postgres", "--auth=trust",
		"--encoding=UTF8", "--locale=C"}
	if !fsync {
		args = append(args, "--no-sync")
	}
	out, err := c.command(ctx, c.bin.initdb, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("pgcluster: initdb %s: %w\n%s", c.dataDir, err, tail(out, logTailBytes))
	}
	return nil
}

// prepareSocketDir picks the socket directory: "<data folder>.sock" when that path is short
// and plain enough, else a fresh /tmp/coalition-pg-XXXX. It is private to the server user.
func (c *Cluster) prepareSocketDir() error {
	dir := c.dataDir + ".sock"
	if len(dir) > maxSocketDirLen || strings.ContainsAny(dir, ",'\"\\ \t\n") {
		tmp, err := os.MkdirTemp("/tmp", "coalition-pg-")
		if err != nil {
			return fmt.Errorf("pgcluster: socket directory: %w", err)
		}
		dir, c.tmpSocket = tmp, true
	} else {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("pgcluster: socket directory: %w", err)
		}
		// No server runs on this data folder (we hold the lock and checked), so any socket
		// or socket lock file here is stale and could make the new server refuse to start.
		stale, _ := filepath.Glob(filepath.Join(dir, ".s.PGSQL.*"))
		for _, f := range stale {
			if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("pgcluster: remove stale socket file: %w", err)
			}
		}
	}
	c.socketDir = dir
	if err := os.Chmod(dir, 0o700); err != nil {
		c.removeTmpSocket()
		return fmt.Errorf("pgcluster: socket directory: %w", err)
	}
	if c.user != nil {
		if err := c.user.chown(dir); err != nil {
			c.removeTmpSocket()
			return err
		}
		if err := c.user.checkTraverse(dir); err != nil {
			c.removeTmpSocket()
			return err
		}
	}
	return nil
}

// writeConfig writes coalition.conf (socket, limits, durability) and makes sure
// postgresql.conf includes it. Settings made with ALTER SYSTEM still win over it.
func (c *Cluster) writeConfig(fsync bool) error {
	durable := "off"
	if fsync {
		durable = "on"
	}
	conf := fmt.Sprintf(`# Written by coalition (internal/pgcluster) at every start: edits here are lost.
# Use ALTER SYSTEM (postgresql.auto.conf) to override a setting.
listen_addresses = ''
port = %d
unix_socket_directories = '%s'
unix_socket_permissions = 0700
max_connections = 200
shared_buffers = 128MB
fsync = %s
synchronous_commit = %s
full_page_writes = %s
`, c.port, strings.ReplaceAll(c.socketDir, "'", "''"), durable, durable, durable)
	if err := c.writeFile(filepath.Join(c.dataDir, confFile), []byte(conf)); err != nil {
		return err
	}
	mainConf := filepath.Join(c.dataDir, "postgresql.conf")
	current, err := os.ReadFile(mainConf)
	if err != nil {
		return fmt.Errorf("pgcluster: read postgresql.conf: %w", err)
	}
	include := "include_if_exists = '" + confFile + "'"
	if bytes.Contains(current, []byte(include)) {
		return nil
	}
	f, err := os.OpenFile(mainConf, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("pgcluster: postgresql.conf: %w", err)
	}
	_, werr := fmt.Fprintf(f, "\n# Settings of the coalition embedded cluster.\n%s\n", include)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return fmt.Errorf("pgcluster: postgresql.conf: %w", werr)
	}
	return nil
}

// writeFile writes a file in the data folder, owned by the server user.
func (c *Cluster) writeFile(path string, data []byte) error {
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("pgcluster: write %s: %w", path, err)
	}
	if c.user != nil {
		return c.user.chown(path)
	}
	return nil
}

// start runs pg_ctl start and waits until the server accepts connections.
func (c *Cluster) start(ctx context.Context) error {
	c.rotateLog()
	c.logf("starting PostgreSQL %s on %s (socket %s)", c.bin.major, c.dataDir, c.socketDir)
	began := time.Now()
	out, err := c.command(ctx, c.bin.pgctl, "-D", c.dataDir, "-w", "-t", strconv.Itoa(startTimeout),
		"-l", filepath.Join(c.dataDir, logFile), "start").CombinedOutput()
	if err != nil {
		return fmt.Errorf("pgcluster: pg_ctl start %s: %w\n%s%s", c.dataDir, err,
			bytes.TrimSpace(out), c.logTail())
	}
	var lastErr error
	for range pingAttempts {
		if lastErr = ping(ctx, c.URL("postgres")); lastErr == nil {
			c.logf("PostgreSQL ready in %s", time.Since(began).Round(time.Millisecond))
			return nil
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			lastErr = err
			break
		}
	}
	return fmt.Errorf("pgcluster: server on %s started but does not accept connections: %w%s",
		c.dataDir, lastErr, c.logTail())
}

// rotateLog keeps one old server log once the log passes maxLogBytes.
func (c *Cluster) rotateLog() {
	path := filepath.Join(c.dataDir, logFile)
	if fi, err := os.Stat(path); err == nil && fi.Size() > maxLogBytes {
		_ = os.Rename(path, path+".1") // best effort: a big log is no reason to refuse to start
	}
}

// logTail returns the end of the server log, formatted to close an error message.
func (c *Cluster) logTail() string {
	data, err := readTail(filepath.Join(c.dataDir, logFile), logTailBytes)
	if err != nil || len(bytes.TrimSpace(data)) == 0 {
		return ""
	}
	return "\nend of " + filepath.Join(c.dataDir, logFile) + ":\n" + string(bytes.TrimSpace(data))
}

// removeTmpSocket removes the socket directory if it is a temporary one of ours.
func (c *Cluster) removeTmpSocket() {
	if c.tmpSocket && c.socketDir != "" {
		_ = os.RemoveAll(c.socketDir) // best effort: it is under /tmp
	}
}

// command prepares a PostgreSQL program to run as the server user, from "/" (the working
// directory may not be readable by that user), without PG* variables that could redirect
// it, and interrupted with SIGTERM (so initdb cleans up) when ctx ends.
func (c *Cluster) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = "/"
	env := []string{"LC_ALL=C"}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") && !strings.HasPrefix(kv, "LC_ALL=") {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	if c.user != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{
			Uid: c.user.uid, Gid: c.user.gid, Groups: []uint32{},
		}}
	}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	return cmd
}

// ping connects to connString and pings, within a few seconds.
func ping(ctx context.Context, connString string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, connString)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return conn.Ping(ctx)
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// quoteDSN quotes a value for a key=value connection string.
func quoteDSN(v string) string {
	if v != "" && !strings.ContainsAny(v, " \t\n'\\=") {
		return v
	}
	r := strings.NewReplacer(`\`, `\\`, `'`, `\'`)
	return "'" + r.Replace(v) + "'"
}

// tail returns at most n bytes from the end of b, trimmed.
func tail(b []byte, n int) string {
	b = bytes.TrimSpace(b)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// readTail reads at most n bytes from the end of a file.
func readTail(path string, n int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	off := max(fi.Size()-n, 0)
	buf := make([]byte, fi.Size()-off)
	nr, err := f.ReadAt(buf, off)
	if err != nil && nr == 0 {
		return nil, err
	}
	return buf[:nr], nil
}
