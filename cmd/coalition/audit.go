package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/coalitionledger/coalition/audit"
	"github.com/coalitionledger/coalition/internal/database"
	"github.com/coalitionledger/coalition/internal/pg"
	"github.com/coalitionledger/coalition/internal/pgcluster"
	"github.com/coalitionledger/coalition/ledger"
)

// auditUsage is the part of the help that lists the auditor's commands.
const auditUsage = `  export          the journal: --format jsonl|csv|hledger [--from P|TIME] [--to P|TIME] [--output FILE]
  checkpoint      sign the journal's head with the checkpoint key (made on first use); --list lists them
  checkpoint-key  print the checkpoint key's path and its public key (making the key if missing)
  verify          check every hash, entry, balance and checkpoint, from the database or --file EXPORT.jsonl
  report          trial-balance | account NAME | member MEMBER | roll-forward | breakage (--format csv|json)
  audit-log       list the operator's recorded actions (--after ID, --action A)
`

// auditCommand runs the auditor's commands: export, checkpoint, checkpoint-key, verify,
// report, audit-log.
func auditCommand(ctx context.Context, cmd string, fs *flag.FlagSet, args []string,
	withDB func(string, bool, func(*database.DB) error) error, stdout, stderr io.Writer) error {
	resolveKey := checkpointKeyFlag(fs)

	switch cmd {
	case "export":
		format := fs.String("format", audit.FormatJSONL, "jsonl, csv or hledger")
		from := fs.String("from", "", "first position, or a record time (RFC 3339 or YYYY-MM-DD, UTC); default: the first entry")
		to := fs.String("to", "", "last position, or a record time; default: the head")
		output := fs.String("output", "", "file to write (default: stdout)")
		if err := parseFlags(fs, args); err != nil {
			return err
		}
		path, err := resolveKey()
		if err != nil {
			return err
		}
		pub, err := publicKeyNear(path)
		if err != nil {
			return err
		}
		return withDB("", false, func(db *database.DB) error {
			r := audit.NewReports(db.Pool)
			period, err := r.ParsePeriod(ctx, *from, *to)
			if err != nil {
				return err
			}
			fromPos, toPos := period.From, period.To
			w := stdout
			var out *outputFile
			if *output != "" {
				if out, err = createOutput(*output); err != nil {
					return err
				}
				defer out.discard()
				w = out
			}
			sum, err := audit.Export(ctx, db.Pool, w, audit.ExportOptions{Format: *format, From: fromPos, To: toPos, PublicKey: pub,
				Progress: newMeter(stderr, "exported, positions").Update})
			if err != nil {
				return err
			}
			if out != nil {
				if err := out.commit(); err != nil {
					return err
				}
			}
			fmt.Fprintf(stderr, "exported %d entries, positions %d to %d (%s)\n", sum.Entries, sum.From, sum.To, completeness(sum.Complete))
			return nil
		})

	case "checkpoint":
		reason := fs.String("reason", "on demand", "why the checkpoint is taken")
		list := fs.Bool("list", false, "list the checkpoints instead of taking one")
		if err := parseFlags(fs, args); err != nil {
			return err
		}
		return withDB("", false, func(db *database.DB) error {
			if *list {
				cps, err := audit.AllCheckpoints(ctx, db.Pool)
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "id\tposition\thash\tsigned_at\treason")
				for _, cp := range cps {
					fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\n", cp.ID, cp.Position, cp.Hash, cp.SignedAt.Format(time.RFC3339), cp.Reason)
				}
				return tw.Flush()
			}
			key, _, err := signingKey(resolveKey, sayTo(stderr))
			if err != nil {
				return err
			}
			// The checkpoint and its audit record commit together.
			var cp *audit.Checkpoint
			err = pg.InTx(ctx, db.Pool, func(tx pgx.Tx) error {
				var err error
				if cp, err = audit.NewCheckpointer(db.Pool, key, time.Now).CheckpointTx(ctx, tx, *reason); err != nil {
					return err
				}
				return audit.RecordAs(ctx, tx, audit.ActionCheckpointSigned, cp)
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "checkpoint %d: position %d, hash %s, signed %s\n", cp.ID, cp.Position, cp.Hash, cp.SignedAt.Format(time.RFC3339Nano))
			return nil
		})

	case "checkpoint-key":
		if err := parseFlags(fs, args); err != nil {
			return err
		}
		key, path, err := signingKey(resolveKey, sayTo(stderr))
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "signing key %s; public key %s:\n", path, audit.PublicKeyPath(path))
		fmt.Fprint(stdout, audit.PublicKeyPEM(key.Public().(ed25519.PublicKey)))
		return nil

	case "verify":
		file := fs.String("file", "", "a JSON-lines export to verify instead of the database")
		pubPath := fs.String("public-key", "", "the operator's published public key (PEM); for the database, default: the key beside the checkpoint key, if any; an export's signatures are checked only against this flag's key")
		asJSON := fs.Bool("json", false, "print the outcome as JSON")
		if err := parseFlags(fs, args); err != nil {
			return err
		}
		var pub ed25519.PublicKey
		var err error
		if *pubPath != "" {
			if pub, err = audit.LoadPublicKey(*pubPath); err != nil {
				return err
			}
		} else if *file == "" {
			path, err := resolveKey()
			if err != nil {
				return err
			}
			if pub, err = publicKeyNear(path); err != nil {
				return err
			}
		}
		opts := audit.VerifyOptions{PublicKey: pub, Progress: newMeter(stderr, "verified, positions").Update}
		start := time.Now()
		var v *audit.Verification
		if *file != "" {
			f, err := os.Open(*file)
			if err != nil {
				return err
			}
			defer f.Close()
			if v, err = audit.VerifyExport(f, opts); err != nil {
				return err
			}
		} else if err := withDB("", false, func(db *database.DB) error {
			v, err = audit.VerifyDatabase(ctx, db.Pool, opts)
			return err
		}); err != nil {
			return err
		}
		return reportVerification(stdout, v, *asJSON, time.Since(start))

	case "audit-log":
		after := fs.Int64("after", 0, "list events after this id")
		action := fs.String("action", "", "only this action (partner.created, key.created, ...)")
		limit := fs.Int("limit", audit.MaxAuditLogPage, "at most this many events")
		if err := parseFlags(fs, args); err != nil {
			return err
		}
		return withDB("", false, func(db *database.DB) error {
			events, err := audit.Log(ctx, db.Pool, *after, *limit, *action)
			if err != nil {
				return err
			}
			enc := json.NewEncoder(stdout)
			for _, e := range events {
				if err := enc.Encode(e); err != nil {
					return err
				}
			}
			return nil
		})

	case "report":
		return reportCommand(ctx, fs, args, withDB, stdout)
	}
	return usageError{fmt.Sprintf("unknown command %q", cmd)}
}

// checkpointKeyFlag defines --checkpoint-key on fs and returns what resolves it once fs
// is parsed: the flag, else $COALITION_CHECKPOINT_KEY, else checkpoint.key beside the
// embedded data folder (--data-dir, $COALITION_DATA or pgcluster's default).
func checkpointKeyFlag(fs *flag.FlagSet) func() (string, error) {
	keyPath := fs.String("checkpoint-key", "", "the checkpoint signing key (env "+audit.KeyFileEnv+"; default: checkpoint.key beside the embedded data folder)")
	return func() (string, error) {
		if *keyPath != "" {
			return *keyPath, nil
		}
		dir := ""
		if f := fs.Lookup("data-dir"); f != nil {
			dir = f.Value.String()
		}
		if dir == "" {
			var err error
			if dir, err = pgcluster.DefaultDataDir(); err != nil {
				return "", err
			}
		}
		return audit.DefaultKeyPath(dir), nil
	}
}

// sayTo returns a printer of one line at a time on w.
func sayTo(w io.Writer) func(format string, a ...any) {
	return func(format string, a ...any) { fmt.Fprintf(w, format+"\n", a...) }
}

// signingKey loads the checkpoint signing key that resolve names, making it (and saying
// so on w) the first time, and returns it with its path.
func signingKey(resolve func() (string, error), say func(format string, a ...any)) (ed25519.PrivateKey, string, error) {
	path, err := resolve()
	if err != nil {
		return nil, "", err
	}
	key, created, err := audit.LoadOrCreateKey(path)
	if err != nil {
		return nil, "", err
	}
	if created {
		say("made the checkpoint signing key %s (public key %s)", path, audit.PublicKeyPath(path))
	}
	return key, path, nil
}

// reportVerification prints the outcome of verify and returns an error when it failed.
func reportVerification(stdout io.Writer, v *audit.Verification, asJSON bool, took time.Duration) error {
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(v); err != nil {
			return err
		}
	}
	if v.Failure != nil {
		return v.Failure
	}
	if !asJSON {
		key := "each checkpoint against the key it names (give --public-key to check who signed)"
		if v.TrustedKey {
			key = "every checkpoint signed by the trusted key"
		}
		balances := fmt.Sprintf("%d stored balances equal their postings", v.Accounts)
		if !v.BalancesChecked {
			balances = "balances not checked (a partial export)"
		}
		rate := ""
		if s := took.Seconds(); s > 0 && v.Entries > 0 {
			rate = fmt.Sprintf(", %.0f entries/s", float64(v.Entries)/s)
		}
		fmt.Fprintf(stdout, "journal verified from the %s: positions %d to %d (%d entries), hash chain intact, every entry balanced, %s: %s; %s (%s%s)\n",
			v.Source, v.From, v.To, v.Entries, ledger.Count(v.Checkpoints, "checkpoint", "checkpoints"), key, balances, took.Round(time.Millisecond), rate)
	}
	return nil
}

// publicKeyNear returns the public key beside the signing key at path: from its .pub
// file, else from the key itself; nil when neither exists.
func publicKeyNear(path string) (ed25519.PublicKey, error) {
	pub, err := audit.LoadPublicKey(audit.PublicKeyPath(path))
	if err == nil {
		return pub, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	key, err := audit.LoadKey(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return key.Public().(ed25519.PublicKey), nil
}

func completeness(complete bool) string {
	if complete {
		return "the whole journal, with the stored balances"
	}
	return "a part of the journal, without balances"
}

// cliActor names who runs a command, for the audit log.
func cliActor() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return "cli:" + u.Username
	}
	if name := os.Getenv("USER"); name != "" {
		return "cli:" + name
	}
	return "cli:uid " + strconv.Itoa(os.Getuid())
}
