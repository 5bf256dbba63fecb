package pgcluster

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// systemUser is the user created to run the server when root starts it and the machine has
// no postgres user.
const systemUser = "coalition-pg"

// serverUser is the unprivileged user the server runs as when this process is root.
type serverUser struct {
	name     string
	uid, gid uint32
}

// chooseServerUser picks who runs the server: the owner of an existing data folder if that
// is not root, else the postgres system user, else coalition-pg (created if missing).
func chooseServerUser(ctx context.Context, dataDir string, logf func(string, ...any)) (*serverUser, error) {
	if fi, err := os.Stat(dataDir); err == nil && readPGVersion(dataDir) != "" {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 {
			u := &serverUser{name: "uid " + strconv.Itoa(int(st.Uid)), uid: st.Uid, gid: st.Gid}
			if pw, err := user.LookupId(strconv.Itoa(int(st.Uid))); err == nil {
				if u2, err := fromUser(pw); err == nil {
					u = u2
				}
			}
			return u, nil
		}
	}
	for _, name := range []string{"postgres", systemUser} {
		if pw, err := user.Lookup(name); err == nil {
			return fromUser(pw)
		}
	}
	logf("creating system user %s to run PostgreSQL (it refuses to run as root)", systemUser)
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "useradd", "--system", "--user-group", "--no-create-home",
		"--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", systemUser).CombinedOutput()
	// Another process may have created it at the same moment: look it up either way.
	pw, lerr := user.Lookup(systemUser)
	if lerr != nil {
		return nil, fmt.Errorf("pgcluster: PostgreSQL refuses to run as root and creating user %s failed: %w: %s (create an unprivileged user named postgres, or set DATABASE_URL)",
			systemUser, err, tail(out, 512))
	}
	return fromUser(pw)
}

// fromUser converts a passwd entry.
func fromUser(pw *user.User) (*serverUser, error) {
	uid, err := strconv.ParseUint(pw.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("pgcluster: user %s: uid %q: %w", pw.Username, pw.Uid, err)
	}
	gid, err := strconv.ParseUint(pw.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("pgcluster: user %s: gid %q: %w", pw.Username, pw.Gid, err)
	}
	if uid == 0 {
		return nil, fmt.Errorf("pgcluster: user %s has uid 0, and PostgreSQL refuses to run as root", pw.Username)
	}
	return &serverUser{name: pw.Username, uid: uint32(uid), gid: uint32(gid)}, nil
}

// chown gives one path to the server user.
func (u *serverUser) chown(path string) error {
	if err := os.Lchown(path, int(u.uid), int(u.gid)); err != nil {
		return fmt.Errorf("pgcluster: give %s to user %s: %w", path, u.name, err)
	}
	return nil
}

// adopt gives an existing data folder to the server user if it is not already its owner
// (for example a folder copied by root).
func (u *serverUser) adopt(dataDir string, logf func(string, ...any)) error {
	fi, err := os.Stat(dataDir)
	if err != nil {
		return fmt.Errorf("pgcluster: data folder: %w", err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid == u.uid {
		return nil
	}
	logf("giving %s to user %s", dataDir, u.name)
	err = filepath.WalkDir(dataDir, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return u.chown(path)
	})
	if err != nil {
		return fmt.Errorf("pgcluster: give data folder to %s: %w", u.name, err)
	}
	return nil
}

// checkTraverse fails, naming the folder, if the server user cannot enter one of the parents
// of dir. The server runs with its primary group only, so only that group is considered.
func (u *serverUser) checkTraverse(dir string) error {
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("pgcluster: %w", err)
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return nil // not a unix file system view: let the server tell
		}
		perm := fi.Mode().Perm()
		var can bool
		switch {
		case st.Uid == u.uid:
			can = perm&0o100 != 0
		case st.Gid == u.gid:
			can = perm&0o010 != 0
		default:
			can = perm&0o001 != 0
		}
		if !can {
			return fmt.Errorf("pgcluster: PostgreSQL runs as user %s (uid %d), which cannot enter %s (mode %s, owner uid %d) on the way to %s: allow it (chmod o+x %s) or choose another data folder (COALITION_DATA)",
				u.name, u.uid, p, fi.Mode(), st.Uid, dir, p)
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}
