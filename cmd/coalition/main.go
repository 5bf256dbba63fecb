// Command coalition is the Coalition Ledger: the system of record of a coalition loyalty
// program. Run `coalition help` for its commands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/coalitionledger/coalition/internal/database"
	"github.com/coalitionledger/coalition/internal/demo"
	"github.com/coalitionledger/coalition/ledger"
)

const usage = `coalition — the Coalition Ledger

Usage:
  coalition <command> [flags]

Commands:
  demo            run a small coalition's day through the ledger and print the trial balance
  serve           serve the HTTP API (--addr, env COALITION_ADDR; default 127.0.0.1:8080)
  migrate         apply the database migrations
  keys create     make an API key: --role operator|auditor|partner [--partner P]; prints the secret
  keys revoke     revoke a key by id
  partners        create ID NAME | list | suspend ID | activate ID
  contracts       add PARTNER FILE.json (a contract version; - for stdin) | list PARTNER
  expire          expire every lot past its expiry and void every hold past its timeout
  verify          check the journal's hash chain and every balance against its postings
  trial-balance   print the trial balance (--position N for an earlier one)
  bench           the load tool: serve on loopback, drive it over HTTP, check, compare to pgbench
  help            show this help

Every command reads DATABASE_URL from the environment. Without it, the commands use the
embedded default: a private PostgreSQL cluster started from the server installed on this
machine, in $COALITION_DATA (or /var/lib/coalition/pgdata as root, else
~/.local/share/coalition/pgdata). Run 'coalition <command> --help' for a command's flags.
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

// exitCode is 2 for usage errors and 1 for everything else.
func exitCode(err error) int {
	var u usageError
	if errors.As(err, &u) || errors.Is(err, flag.ErrHelp) {
		return 2
	}
	return 1
}

type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usageError{"no command given"}
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet("coalition "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	dbURL := fs.String("database-url", os.Getenv("DATABASE_URL"), "PostgreSQL connection string (env DATABASE_URL); empty: the embedded default")
	dataDir := fs.String("data-dir", os.Getenv("COALITION_DATA"), "data folder of the embedded PostgreSQL (env COALITION_DATA)")
	progress := func(format string, a ...any) { fmt.Fprintf(stderr, format+"\n", a...) }
	// withDB parses the command's flags, opens (and migrates) the database and runs fn.
	withDB := func(name string, fresh bool, fn func(*database.DB) error) error {
		if !fs.Parsed() {
			if err := fs.Parse(args); err != nil {
				return err
			}
		}
		db, err := database.Open(ctx, database.Options{URL: *dbURL, DataDir: *dataDir, Name: name, Fresh: fresh, Logf: progress})
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
		return withDB("coalition_demo", true, func(db *database.DB) error {
			return demo.Run(ctx, ledger.New(db.Pool), stdout, time.Now())
		})

	case "verify":
		return withDB("", false, func(db *database.DB) error {
			return verify(ctx, ledger.New(db.Pool), stdout, progress)
		})

	case "keys", "partners", "contracts", "expire", "serve":
		return operatorCommand(ctx, cmd, fs, args, withDB, stdout, progress)

	case "bench":
		return bench(ctx, fs, args, dbURL, stdout, progress)

	case "trial-balance":
		position := fs.Int64("position", 0, "journal position to report at (0: now)")
		if err := fs.Parse(args); err != nil {
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
			fmt.Fprintf(stdout, "Trial balance at position %d\n\n", tb.Position)
			return tb.WriteTable(stdout)
		})
	}
	fmt.Fprint(stderr, usage)
	return usageError{fmt.Sprintf("unknown command %q", cmd)}
}

// verify checks the hash chain and every balance, showing progress on stderr.
func verify(ctx context.Context, l *ledger.Ledger, stdout io.Writer, progress func(string, ...any)) error {
	head, err := l.Head(ctx)
	if err != nil {
		return err
	}
	start := time.Now()
	err = l.VerifyChain(ctx, func(pos int64) { progress("verified %d of %d entries", pos, head.Position) })
	if err != nil {
		return err
	}
	mismatch, err := l.CheckBalances(ctx)
	if err != nil {
		return err
	}
	for _, m := range mismatch {
		fmt.Fprintf(stdout, "account %s: stored balance %s, sum of postings %s\n", m.Account, m.Stored, m.Postings)
	}
	if len(mismatch) > 0 {
		return fmt.Errorf("%d accounts differ from their postings", len(mismatch))
	}
	fmt.Fprintf(stdout, "journal verified: %d entries, hash chain intact, every balance equals its postings (%s)\n",
		head.Position, time.Since(start).Round(time.Millisecond))
	return nil
}
