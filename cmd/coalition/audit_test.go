package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/coalitionledger/coalition/internal/pgtest"
	"github.com/coalitionledger/coalition/ledger"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// The auditor's commands end to end: sign a checkpoint, export, verify the export with the
// public key, report, and read the audit log.
func TestAuditCommands(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	db := []string{"--database-url", pgtest.URL(t)}
	key := filepath.Join(dir, "checkpoint.key")
	run1 := func(args ...string) string {
		t.Helper()
		var stdout, stderr bytes.Buffer
		if err := run(ctx, args, &stdout, &stderr); err != nil {
			t.Fatalf("coalition %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
		}
		return stdout.String()
	}
	// Flags before the positional arguments: after them, flag parsing has stopped.
	run1(append(append([]string{"partners"}, db...), "create", "fuelco", "Fuel Co")...)
	if out := run1(append([]string{"checkpoint", "--checkpoint-key", key, "--reason", "test"}, db...)...); !strings.Contains(out, "checkpoint 1: position 0") {
		t.Fatalf("checkpoint: %s", out)
	}
	if out := run1(append([]string{"checkpoint-key", "--checkpoint-key", key}, db...)...); !strings.HasPrefix(out, "-----BEGIN PUBLIC KEY-----") {
		t.Fatalf("checkpoint-key: %s", out)
	}
	export := filepath.Join(dir, "export.jsonl")
	run1(append([]string{"export", "--format", "jsonl", "--output", export, "--checkpoint-key", key}, db...)...)
	if out := run1("verify", "--file", export, "--public-key", key+".pub"); !strings.Contains(out, "journal verified from the export") ||
		!strings.Contains(out, "signed by the trusted key") {
		t.Fatalf("verify --file: %s", out)
	}
	if out := run1(append([]string{"verify", "--checkpoint-key", key}, db...)...); !strings.Contains(out, "journal verified from the database") {
		t.Fatalf("verify: %s", out)
	}
	if out := run1(append([]string{"report", "roll-forward"}, db...)...); !strings.HasPrefix(out, "issuer,opening,issued,redeemed,expired,reversals,closing,lots_remaining,debts,exposure\ntotal,0,") {
		t.Fatalf("report roll-forward: %s", out)
	}
	out := run1(append([]string{"audit-log"}, db...)...)
	if !strings.Contains(out, `"action":"partner.created"`) || !strings.Contains(out, `"action":"checkpoint.signed"`) {
		t.Fatalf("audit-log: %s", out)
	}
	// Another key is not the trusted one.
	other := filepath.Join(dir, "other.key")
	run1(append([]string{"checkpoint-key", "--checkpoint-key", other}, db...)...)
	var stdout, stderr bytes.Buffer
	err := run(ctx, []string{"verify", "--file", export, "--public-key", other + ".pub"}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "not by the trusted key") {
		t.Fatalf("verify with another key: %v", err)
	}
}

func TestServeSettingsAreChecked(t *testing.T) {
	ok := ledger.DefaultWindow
	for name, tc := range map[string]struct {
		region             string
		holdDefault, holdM time.Duration
		window             ledger.Window
		keep               time.Duration
		good               bool
	}{
		"the defaults":            {"US", 15 * time.Minute, 24 * time.Hour, ok, ledger.DefaultKeyRetention, true},
		"another region":          {"ru", time.Minute, time.Hour, ok, 90 * 24 * time.Hour, true},
		"no such region":          {"XX", time.Minute, time.Hour, ok, ledger.DefaultKeyRetention, false},
		"default above the max":   {"US", 2 * time.Hour, time.Hour, ok, ledger.DefaultKeyRetention, false},
		"no hold time":            {"US", 0, time.Hour, ok, ledger.DefaultKeyRetention, false},
		"a window that is ahead":  {"US", time.Minute, time.Hour, ledger.Window{Past: -time.Hour}, ledger.DefaultKeyRetention, false},
		"keys kept under 30 days": {"US", time.Minute, time.Hour, ok, 7 * 24 * time.Hour, false},
	} {
		err := checkServeSettings(tc.region, tc.holdDefault, tc.holdM, tc.window, tc.keep)
		if (err == nil) != tc.good {
			t.Errorf("%s: checkServeSettings = %v, want good %v", name, err, tc.good)
		}
	}
}

func TestHelpShowsNoPasswordAndExitsZero(t *testing.T) {
	t.Setenv("DATABASE_URL", "postgres://ledger:s3cretPass@db.example:5432/coalition")
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"keys", "--help"}, &stdout, &stderr)
	if exitCode(err) != 0 || !strings.Contains(stderr.String(), "keys create --role") {
		t.Fatalf("keys --help: exit %d, %v\n%s", exitCode(err), err, stderr.String())
	}
	stderr.Reset()
	err = run(context.Background(), []string{"migrate", "--help"}, &stdout, &stderr)
	if exitCode(err) != 0 || strings.Contains(stderr.String(), "s3cretPass") || !strings.Contains(stderr.String(), "ledger:xxxxx@db.example") {
		t.Fatalf("migrate --help: exit %d\n%s", exitCode(err), stderr.String())
	}
	if got := redactURL("host=db user=ledger password='a b' dbname=c"); strings.Contains(got, "a b") {
		t.Fatalf("redactURL left the password in %q", got)
	}
}

func TestCommandsRefuseWhatTheyWouldIgnoreAndKeepFilesOnFailure(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	url := pgtest.URL(t)
	key := filepath.Join(dir, "checkpoint.key")
	fails := func(want string, args ...string) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		err := run(ctx, args, &stdout, &stderr)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("coalition %s: %v, want an error saying %q", strings.Join(args, " "), err, want)
		}
	}
	// A word after the flags would have been ignored: verify would check the database.
	fails(`takes flags only, not "export.jsonl"`, "verify", "--database-url", url, "--checkpoint-key", key, "export.jsonl")
	fails(`takes flags only, not "extra"`, "trial-balance", "--database-url", url, "extra")
	fails(`takes flags only, not "extra"`, "keys", "create", "--database-url", url, "--role", "auditor", "extra")
	// A failed export leaves an earlier file of its name alone.
	kept := filepath.Join(dir, "kept.jsonl")
	if err := os.WriteFile(kept, []byte("earlier export\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fails("export format", "export", "--database-url", url, "--checkpoint-key", key, "--format", "xlsx", "--output", kept)
	if got, _ := os.ReadFile(kept); string(got) != "earlier export\n" {
		t.Fatalf("after a failed export the file holds %q", got)
	}
	// A report that cannot be written stops the settlement before it runs.
	fails("cannot write", "settle", "--database-url", url, "--date", "2026-01-01", "--out", filepath.Join(dir, "no", "such", "r.json"))
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var runs int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM settlement_runs`).Scan(&runs); err != nil {
		t.Fatal(err)
	}
	if runs != 0 {
		t.Fatalf("%d settlement runs after a refused settle", runs)
	}
	// A database that cannot be reached is an error, not a panic.
	fails("connect", "trial-balance", "--database-url", "postgres://postgres@127.0.0.1:1/x?connect_timeout=2")
}
