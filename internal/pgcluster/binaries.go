package pgcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// binaries are the server programs of one PostgreSQL installation.
type binaries struct {
	postgres, initdb, pgctl string
	version                 string // e.g. "15.20"
	major                   string // e.g. "15"
}

// errNoServer says no PostgreSQL server installation was found.
var errNoServer = errors.New("no PostgreSQL server binaries found (looked at pg_config --bindir, /usr/lib/postgresql/*/bin and PATH)")

// findOrInstall finds the server binaries and, when there are none and we are root, installs
// Debian's postgresql package and looks again. dataVersion is the major version of an existing
// data folder ("" for a new one); a server of another major version cannot run it.
func findOrInstall(ctx context.Context, dataVersion string, logf func(string, ...any)) (binaries, error) {
	bin, err := findBinaries(ctx, dataVersion)
	if errors.Is(err, errNoServer) && os.Geteuid() == 0 {
		if ierr := installServer(ctx, logf); ierr != nil {
			return binaries{}, fmt.Errorf("pgcluster: %w; installing it failed: %w (install the postgresql package, or set DATABASE_URL)", err, ierr)
		}
		bin, err = findBinaries(ctx, dataVersion)
	}
	if errors.Is(err, errNoServer) {
		return binaries{}, fmt.Errorf("pgcluster: %w: install the postgresql package (e.g. apt-get install postgresql) or set DATABASE_URL to a server you run", err)
	}
	if err != nil {
		return binaries{}, err
	}
	if dataVersion != "" && bin.major != dataVersion {
		return binaries{}, fmt.Errorf("pgcluster: the data folder was created by PostgreSQL %s but the server found is PostgreSQL %s (%s): install PostgreSQL %s, or use another data folder",
			dataVersion, bin.version, bin.postgres, dataVersion)
	}
	return bin, nil
}

// findBinaries looks, in order, at /usr/lib/postgresql/<dataVersion>/bin (to run an existing
// data folder with its own version), pg_config --bindir, the highest version under
// /usr/lib/postgresql/*/bin, and PATH.
func findBinaries(ctx context.Context, dataVersion string) (binaries, error) {
	var dirs []string
	if dataVersion != "" {
		dirs = append(dirs, filepath.Join("/usr/lib/postgresql", dataVersion, "bin"))
	}
	if dir := pgConfigBindir(ctx); dir != "" {
		dirs = append(dirs, dir)
	}
	dirs = append(dirs, debianBindirs()...)
	for _, dir := range dirs {
		b := binaries{
			postgres: filepath.Join(dir, "postgres"),
			initdb:   filepath.Join(dir, "initdb"),
			pgctl:    filepath.Join(dir, "pg_ctl"),
		}
		if isExecutable(b.postgres) && isExecutable(b.initdb) && isExecutable(b.pgctl) {
			return b.withVersion(ctx)
		}
	}
	var b binaries
	var err error
	if b.postgres, err = exec.LookPath("postgres"); err != nil {
		return binaries{}, errNoServer
	}
	if b.initdb, err = exec.LookPath("initdb"); err != nil {
		return binaries{}, errNoServer
	}
	if b.pgctl, err = exec.LookPath("pg_ctl"); err != nil {
		return binaries{}, errNoServer
	}
	return b.withVersion(ctx)
}

// pgConfigBindir returns what pg_config --bindir says, or "".
func pgConfigBindir(ctx context.Context) string {
	path, err := exec.LookPath("pg_config")
	if err != nil {
		return ""
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "--bindir").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// debianBindirs returns /usr/lib/postgresql/*/bin, highest version first.
func debianBindirs() []string {
	entries, err := os.ReadDir("/usr/lib/postgresql")
	if err != nil {
		return nil
	}
	type versioned struct {
		dir string
		v   float64 // only to order versions such as "9.6" and "15"
	}
	var vs []versioned
	for _, e := range entries {
		v, err := strconv.ParseFloat(e.Name(), 64)
		if err != nil {
			continue
		}
		vs = append(vs, versioned{filepath.Join("/usr/lib/postgresql", e.Name(), "bin"), v})
	}
	sort.Slice(vs, func(i, j int) bool { return vs[i].v > vs[j].v })
	dirs := make([]string, len(vs))
	for i, v := range vs {
		dirs[i] = v.dir
	}
	return dirs
}

// versionRE matches the version in "postgres (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)".
var versionRE = regexp.MustCompile(`\(PostgreSQL\) (\d+)(\.\d+)?`)

// withVersion fills in the version by running postgres --version.
func (b binaries) withVersion(ctx context.Context) (binaries, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, b.postgres, "--version").Output()
	if err != nil {
		return binaries{}, fmt.Errorf("pgcluster: %s --version: %w", b.postgres, err)
	}
	m := versionRE.FindStringSubmatch(string(out))
	if m == nil {
		return binaries{}, fmt.Errorf("pgcluster: %s --version: unexpected output %q", b.postgres, strings.TrimSpace(string(out)))
	}
	b.major = m[1]
	b.version = m[1] + m[2]
	if n, _ := strconv.Atoi(m[1]); n < 10 {
		b.major = b.version // before 10 the major version had two parts, as in 9.6
	}
	return b, nil
}

// isExecutable reports whether path is a regular file with an execute bit.
func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// installServer installs Debian's postgresql package with apt-get (root only), passing the
// output on line by line.
func installServer(ctx context.Context, logf func(string, ...any)) error {
	if _, err := exec.LookPath("apt-get"); err != nil {
		return errors.New("apt-get not found")
	}
	var out io.Writer = os.Stderr
	if logf != nil {
		lw := &lineWriter{logf: logf}
		defer lw.flush()
		out = lw
	} else {
		fmt.Fprintln(os.Stderr, "pgcluster: installing PostgreSQL (apt-get install postgresql)")
	}
	if logf != nil {
		logf("no PostgreSQL server found: installing it (apt-get install postgresql)")
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	for _, args := range [][]string{
		{"update"},
		{"install", "-y", "postgresql"},
	} {
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		cmd.Stdout, cmd.Stderr = out, out
		cmd.WaitDelay = 10 * time.Second
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("apt-get %s: %w", strings.Join(args, " "), err)
		}
	}
	return nil
}

// lineWriter passes what is written to it to logf, one call per line.
type lineWriter struct {
	logf func(string, ...any)
	buf  []byte
}

// Write implements io.Writer.
func (w *lineWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break // an unfinished last line: keep it for the next write
		}
		if line := strings.TrimSpace(string(w.buf[:i])); line != "" {
			w.logf("%s", line)
		}
		w.buf = w.buf[i+1:]
	}
	return len(p), nil
}

// flush passes on an unfinished last line.
func (w *lineWriter) flush() {
	if len(w.buf) > 0 {
		w.logf("%s", string(w.buf))
		w.buf = nil
	}
}
