// Command coalition is the Coalition Ledger: the system of record of a coalition loyalty
// program. Run `coalition help` for its commands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/coalitionledger/coalition/audit"
	"github.com/coalitionledger/coalition/internal/database"
	"github.com/coalitionledger/coalition/internal/demo"
	"github.com/coalitionledger/coalition/internal/pg"
	"github.com/coalitionledger/coalition/ledger"
)

const usage = `coalition — the Coalition Ledger

Usage:
  coalition <command> [flags]

Commands:
  demo            a coalition of five partners and 3,000 members, a day of traffic, the night's
                  settlement and its report, the trial balance (--members, --earns, --seed)
  serve           serve the HTTP API (--addr, env COALITION_ADDR; default 127.0.0.1:8080)
  migrate         apply the database migrations
  keys create     make an API key: --role operator|auditor|partner [--partner P]; prints the secret
  keys list       list the keys: id, role, partner, when made and revoked (never a secret)
  keys revoke     revoke a key by id
  partners        create ID NAME | list | suspend ID | activate ID
  contracts       add PARTNER FILE.json (a contract version, the body POST /v1/partners/P/contracts
                  takes: see docs/openapi.yaml; without effective_from it is in force now;
                  - for stdin) | list PARTNER
  expire          expire every lot past its expiry and void every hold past its timeout
  settle          settle a business day: --date D [--format table|json|csv] [--out FILE];
                  --check --date D re-derives it from the journal; --due settles every day
                  that is over; --confirm PARTNER --date D records that its money moved
  trial-balance   print the trial balance (--position N for an earlier one)
  bench           the load tool: serve on loopback, drive it over HTTP, check, compare to pgbench;
                  it needs DATABASE_URL (a role that may CREATE DATABASE) or --private-pg
` + auditUsage + `  help            show this help

Every command reads DATABASE_URL from the environment. Without it, the commands use the
embedded default: a private PostgreSQL cluster started from the server installed on this
machine, in $COALITION_DATA (or /var/lib/coalition/pgdata as root, else
~/.local/share/coalition/pgdata), database coalition. The demo keeps its own database,
coalition_demo, beside it: --database coalition_demo (env COALITION_DATABASE) points any
command at it. Run 'coalition <command> --help' for a command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "coalition:", err)
		}
		os.Exit(exitCode(err))
	}
}

// exitCode is 0 for help asked for, 2 for usage errors and 1 for everything else.
func exitCode(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0 // help was asked for and given
	}
	var u usageError
	if errors.As(err, &u) {
		return 2
	}
	return 1
}

// redactURL hides the password of a connection string, as a URL or as key=value pairs.
func redactURL(s string) string {
	if u, err := url.Parse(s); err == nil && u.Scheme != "" {
		return u.Redacted()
	}
	return passwordPair.ReplaceAllString(s, "${1}xxxxx")
}

// passwordPair is the password of a key=value connection string.
var passwordPair = regexp.MustCompile(`(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)

type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

// parseFlags parses the flags of a command that takes nothing else, and refuses words
// after them: ignored, they would mislead (`verify export.jsonl` verifying the database).
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("%s takes flags only, not %q (see %s --help)", fs.Name(), strings.Join(fs.Args(), " "), fs.Name())}
	}
	return nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	// Whatever a command changes is recorded in the audit log as done by this user.
	ctx = audit.WithActor(ctx, cliActor())
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usageError{"no command given"}
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet("coalition "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	dbURL := fs.String("database-url", os.Getenv("DATABASE_URL"), "PostgreSQL connection string (env DATABASE_URL); empty: the embedded default")
	// --help shows the default without its password.
	fs.Lookup("database-url").DefValue = redactURL(*dbURL)
	dataDir := fs.String("data-dir", os.Getenv("COALITION_DATA"), "data folder of the embedded PostgreSQL (env COALITION_DATA)")
	dbName := new(string)
	if cmd != "bench" { // bench's --database names the database it creates for its run
		fs.StringVar(dbName, "database", os.Getenv("COALITION_DATABASE"),
			"the database to use (env COALITION_DATABASE), which must exist: on the embedded default, instead of coalition; with DATABASE_URL, instead of the one it names")
	}
	progress := func(format string, a ...any) { fmt.Fprintf(stderr, format+"\n", a...) }
	// withDB parses the command's flags, opens (and migrates) the database and runs fn.
	withDB := func(name string, fresh bool, fn func(*database.DB) error) error {
		if !fs.Parsed() {
			if err := fs.Parse(args); err != nil {
				return err
			}
		}
		opts := database.Options{URL: *dbURL, DataDir: *dataDir, Name: name, Fresh: fresh, Logf: progress}
		if *dbName != "" && !fresh { // the demo keeps to its own database, whatever is set
			opts.Name, opts.Existing = *dbName, true
			if opts.URL != "" {
				opts.URL = pg.WithDatabase(opts.URL, *dbName)
			}
		}
		db, err := database.Open(ctx, opts)
		if err != nil {
			return err
		}
		defer db.Close()
		return fn(db)
	}

	switch cmd {
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil

	case "migrate":
		return withDB("", false, func(db *database.DB) error {
			fmt.Fprintf(stdout, "schema at version %d\n", db.Version)
			return nil
		})

	case "demo":
		members := fs.Int("members", 3000, "members to enrol")
		earns := fs.Int("earns", 12000, "earns in the day's traffic (redemptions, holds and returns follow)")
		seed := fs.Uint64("seed", 1, "seed of the traffic's random choices")
		reports := fs.String("reports", filepath.Join(os.TempDir(), "coalition-demo"), "folder for the settlement report files")
		keyPath := checkpointKeyFlag(fs)
		if err := parseFlags(fs, args); err != nil {
			return err
		}
		return withDB("coalition_demo", true, func(db *database.DB) error {
			key, _, err := signingKey(keyPath, sayTo(stderr))
			if err != nil {
				return err
			}
			m := newMeter(stderr, "the day's traffic, operations")
			defer m.Done()
			return demo.Run(ctx, db.Pool, stdout, demo.Options{Members: *members, Earns: *earns, Seed: *seed,
				ReportDir: *reports, Progress: m.Update, Checkpointer: audit.NewCheckpointer(db.Pool, key, time.Now)})
		})

	// The auditor's commands: cmd/coalition/audit.go.
	case "export", "checkpoint", "checkpoint-key", "verify", "report", "audit-log":
		return auditCommand(ctx, cmd, fs, args, withDB, stdout, stderr)

	case "settle":
		return settle(ctx, fs, args, withDB, stdout, stderr)

	case "keys", "partners", "contracts", "expire", "serve":
		return operatorCommand(ctx, cmd, fs, args, withDB, stdout, progress)

	case "bench":
		return bench(ctx, fs, args, dbURL, stdout, progress)

	case "trial-balance":
		position := fs.Int64("position", 0, "journal position to report at (0, or past the head: now)")
		if err := parseFlags(fs, args); err != nil {
			return err
		}
		if *position < 0 {
			return usageError{"--position takes a journal position, a whole number ≥ 0"}
		}
		return withDB("", false, func(db *database.DB) error {
			tb, err := ledger.New(db.Pool).TrialBalance(ctx, *position)
			if err != nil {
				return err
			}
			if *position > tb.Position {
				progress("position %d is past the journal's head: the trial balance at the head", *position)
			}
			fmt.Fprintf(stdout, "Trial balance at position %d\n\n", tb.Position)
			return tb.WriteTable(stdout)
		})
	}
	fmt.Fprint(stderr, usage)
	return usageError{fmt.Sprintf("unknown command %q", cmd)}
}
