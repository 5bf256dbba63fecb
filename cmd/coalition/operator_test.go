package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/coalitionledger/coalition/internal/pg"
	"github.com/coalitionledger/coalition/internal/pgtest"
)

// The operator's commands as a new operator meets them: keys listed and revoked by id,
// contracts refused with the API's words, help after a subcommand, and a trial balance
// asked past the head.
func TestOperatorCommands(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	url := pgtest.URL(t)
	cli := func(args ...string) (string, string, error) {
		// Flags go before the words, and after the subcommand of keys and report.
		at := 1
		if args[0] == "keys" || args[0] == "report" {
			at = 2
		}
		var stdout, stderr bytes.Buffer
		err := run(ctx, append(args[:at:at], append([]string{"--database-url", url}, args[at:]...)...), &stdout, &stderr)
		return stdout.String(), stderr.String(), err
	}
	ok := func(args ...string) string {
		t.Helper()
		out, errOut, err := cli(args...)
		if err != nil {
			t.Fatalf("coalition %s: %v\n%s", strings.Join(args, " "), err, errOut)
		}
		return out
	}
	fails := func(want string, args ...string) {
		t.Helper()
		if _, _, err := cli(args...); err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("coalition %s: %v, want an error saying %q", strings.Join(args, " "), err, want)
		}
	}

	ok("partners", "create", "acme", "Acme")
	key := strings.TrimSpace(ok("keys", "create", "--role", "partner", "--partner", "acme"))
	list := ok("keys", "list")
	lines := strings.Split(strings.TrimSpace(list), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "id ") || !strings.Contains(strings.Join(strings.Fields(lines[1]), " "), " partner acme ") || strings.Contains(list, key) {
		t.Fatalf("keys list:\n%s", list)
	}
	id := strings.Fields(lines[1])[0]
	ok("keys", "revoke", id)
	if fields := strings.Fields(strings.Split(ok("keys", "list"), "\n")[1]); fields[len(fields)-1] == "-" {
		t.Fatalf("a revoked key is listed as live: %v", fields)
	}

	// Contracts: the API's checks and words, before anything is written.
	good := filepath.Join(dir, "good.json")
	if err := os.WriteFile(good, []byte(`{"earn": {"points_per_unit": "1"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	misspelt := filepath.Join(dir, "misspelt.json")
	if err := os.WriteFile(misspelt, []byte(`{"earn": {"points_per_dollar": "1"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	broken := filepath.Join(dir, "broken.json")
	if err := os.WriteFile(broken, []byte(`{"earn": `), 0o644); err != nil {
		t.Fatal(err)
	}
	fails("not_found: partner nobody does not exist", "contracts", "add", "nobody", good)
	fails("not_found: partner nobody does not exist", "contracts", "list", "nobody")
	fails(`malformed_json: unknown field "points_per_dollar": check its spelling`, "contracts", "add", "acme", misspelt)
	fails("malformed_json: the body ends before its JSON object does", "contracts", "add", "acme", broken)
	if out := ok("contracts", "add", "acme", good); !strings.Contains(out, "partner acme: contract version 1") {
		t.Fatalf("contracts add: %s", out)
	}

	// --help after a subcommand is help, exit 0.
	for _, args := range [][]string{{"partners", "create", "--help"}, {"contracts", "add", "-h"}, {"keys", "revoke", id, "--help"}, {"report", "--help"}} {
		var stdout, stderr bytes.Buffer
		if err := run(ctx, args, &stdout, &stderr); exitCode(err) != 0 || !strings.Contains(stderr.String(), "coalition "+args[0]) {
			t.Errorf("coalition %s: exit %d\n%s", strings.Join(args, " "), exitCode(err), stderr.String())
		}
	}

	fails("not_found: partner nobody does not exist", "report", "trial-balance", "--partner", "nobody")
	var stdout, stderr bytes.Buffer
	if err := run(ctx, []string{"report", "account", "nosuch", "--database-url", url}, &stdout, &stderr); err == nil || stdout.Len() > 0 {
		t.Fatalf("report account nosuch: %v, printed %q", err, stdout.String())
	}

	// Past the head is the head, said so.
	if out := ok("trial-balance", "--position", "999"); !strings.HasPrefix(out, "Trial balance at position 0\n") {
		t.Fatalf("trial-balance past the head: %s", out)
	}
}

// --database names the database on the server DATABASE_URL names, as it names the one on
// the embedded default: how an operator reaches the demo's books.
func TestDatabaseFlagNamesTheDatabase(t *testing.T) {
	t.Parallel()
	url := pgtest.URL(t)
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	// The URL names the server's maintenance database; --database the test's own.
	args := []string{"partners", "--database-url", pg.WithDatabase(url, "postgres"), "--database", cfg.Database, "create", "zeta", "Zeta"}
	if err := run(context.Background(), args, &stdout, &stderr); err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM partners WHERE id = 'zeta'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("the partner is not in the database --database named: %d, %v", n, err)
	}
}

// Every command's --help works: the global flags and a command's own never collide (bench
// has a --database of its own).
func TestEveryCommandHasHelp(t *testing.T) {
	t.Parallel()
	for _, cmd := range []string{"serve", "demo", "migrate", "bench", "settle", "expire", "trial-balance", "verify", "export",
		"checkpoint", "checkpoint-key", "audit-log", "partners", "contracts", "keys", "report"} {
		var stdout, stderr bytes.Buffer
		if err := run(context.Background(), []string{cmd, "--help"}, &stdout, &stderr); !errors.Is(err, flag.ErrHelp) && err != nil {
			t.Errorf("coalition %s --help: %v\n%s", cmd, err, stderr.String())
		}
	}
}
