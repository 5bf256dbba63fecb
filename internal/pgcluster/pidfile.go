package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// errTornPID says postmaster.pid has no valid pid line: being written, or garbage.
var errTornPID = errors.New("pgcluster: postmaster.pid has no valid pid")

// postmasterPID is what Start needs from a data folder's postmaster.pid.
type postmasterPID struct {
	pid       int
	port      int
	socketDir string
}

// readPostmasterPID parses postmaster.pid: line 1 the pid, line 4 the port, line 5 the first
// unix socket directory. The server writes the file in steps, so the later lines may be
// missing while it starts.
func readPostmasterPID(path string) (postmasterPID, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return postmasterPID{}, err // fs.ErrNotExist is looked for by the caller
	}
	lines := strings.Split(string(data), "\n")
	var pf postmasterPID
	pf.pid, err = strconv.Atoi(strings.TrimSpace(lines[0]))
	if err != nil || pf.pid <= 0 {
		return postmasterPID{}, errTornPID
	}
	if len(lines) > 3 {
		pf.port, _ = strconv.Atoi(strings.TrimSpace(lines[3]))
	}
	if len(lines) > 4 {
		pf.socketDir = strings.TrimSpace(lines[4])
	}
	return pf, nil
}

// postmasterAlive reports whether pid is a live PostgreSQL process. A pid that is ours, or
// that /proc shows to be some other program, is a stale leftover (pids are reused, notably
// after a container restart).
func postmasterAlive(pid int) bool {
	if pid <= 0 || pid == os.Getpid() {
		return false
	}
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	comm, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "comm"))
	if err != nil {
		return true // no /proc to ask: trust kill
	}
	switch strings.TrimSpace(string(comm)) {
	case "postgres", "postmaster":
	default:
		return false
	}
	// A zombie (exited, not yet reaped: common when an orphan's new parent is slow to reap)
	// still answers kill but is no server. Its state follows the ")" closing its name.
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return true
	}
	if i := strings.LastIndexByte(string(stat), ')'); i >= 0 && i+2 < len(stat) {
		return stat[i+2] != 'Z' && stat[i+2] != 'X'
	}
	return true
}

// readPGVersion returns the major version in the data folder's PG_VERSION, or "" if the
// folder holds no cluster.
func readPGVersion(dataDir string) string {
	data, err := os.ReadFile(filepath.Join(dataDir, "PG_VERSION"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(data))
}

// lockFile takes an exclusive flock on path (created if missing), polling until ctx ends, and
// returns the function that releases it. Every open of the file is its own lock holder, so it
// serialises goroutines of one process as well as processes.
func lockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("pgcluster: lock file: %w", err)
	}
	fd := int(f.Fd())
	for {
		err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				_ = syscall.Flock(fd, syscall.LOCK_UN)
				_ = f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			_ = f.Close()
			return nil, fmt.Errorf("pgcluster: lock %s: %w", path, err)
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("pgcluster: waiting for lock %s: %w", path, err)
		}
	}
}
