package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/coalitionledger/coalition/api"
	"github.com/coalitionledger/coalition/internal/database"
	"github.com/coalitionledger/coalition/ledger"
	"github.com/coalitionledger/coalition/partners"
)

// synopsis makes a command's --help say how to call it before its flags.
func synopsis(fs *flag.FlagSet, text string) {
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage:\n  %s\n\nFlags:\n", strings.ReplaceAll(text, "\n", "\n  "))
		fs.PrintDefaults()
	}
}

// parseWords parses the flags of a command that takes words (partners create ID NAME) and
// returns the words. Go's flag package stops at the first word, so a -h or --help after
// one is looked for here: it shows the command's help, as before the words.
func parseWords(fs *flag.FlagSet, args []string) ([]string, error) {
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	for _, a := range fs.Args() {
		if a == "-h" || a == "-help" || a == "--help" {
			fs.Usage()
			return nil, flag.ErrHelp
		}
	}
	return fs.Args(), nil
}

// operatorCommand runs the operator's commands: keys, partners, contracts, expire, serve.
func operatorCommand(ctx context.Context, cmd string, fs *flag.FlagSet, args []string,
	withDB func(string, bool, func(*database.DB) error) error, stdout io.Writer, progress func(string, ...any)) error {
	switch cmd {
	case "keys":
		role := fs.String("role", "", "create: the key's role, operator, auditor or partner")
		partner := fs.String("partner", "", "create: the partner a partner key acts for")
		synopsis(fs, `coalition keys create --role operator|auditor|partner [--partner P]
    makes a key and prints its secret alone on one line of stdout (its id goes to stderr)
coalition keys list
    lists every key (id, role, partner, made, revoked), never a secret
coalition keys revoke ID
    revokes the key with that id`)
		if len(args) == 0 {
			return usageError{"keys: say create, list or revoke"}
		}
		sub := args[0]
		if sub == "help" || sub == "-h" || sub == "-help" || sub == "--help" {
			fs.Usage()
			return flag.ErrHelp
		}
		words, err := parseWords(fs, args[1:])
		if err != nil {
			return err
		}
		if sub != "revoke" && len(words) > 0 {
			return usageError{fmt.Sprintf("keys %s takes flags only, not %q", sub, strings.Join(words, " "))}
		}
		switch sub {
		case "create":
			if *role == "" {
				return usageError{"keys create needs --role operator|auditor|partner"}
			}
			return withDB("", false, func(db *database.DB) error {
				id, secret, err := partners.NewKeys(db.Pool).Create(ctx, partners.Role(*role), *partner)
				if err != nil {
					return err
				}
				progress("created %s key %s; the secret is shown once:", *role, id)
				fmt.Fprintln(stdout, secret)
				return nil
			})
		case "list":
			return withDB("", false, func(db *database.DB) error {
				list, err := partners.NewKeys(db.Pool).List(ctx)
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "id\trole\tpartner\tcreated\trevoked")
				for _, k := range list {
					partner, revoked := "-", "-"
					if k.Partner != nil {
						partner = *k.Partner
					}
					if k.RevokedAt != nil {
						revoked = k.RevokedAt.Format(time.RFC3339)
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", k.ID, k.Role, partner, k.CreatedAt.Format(time.RFC3339), revoked)
				}
				return tw.Flush()
			})
		case "revoke":
			if len(words) != 1 {
				return usageError{"keys revoke takes the key's id"}
			}
			return withDB("", false, func(db *database.DB) error {
				if err := partners.NewKeys(db.Pool).Revoke(ctx, words[0]); err != nil {
					return err
				}
				fmt.Fprintf(stdout, "revoked key %s\n", words[0])
				return nil
			})
		}
		return usageError{fmt.Sprintf("keys: unknown subcommand %q", sub)}

	case "partners":
		synopsis(fs, `coalition partners create ID NAME | list | suspend ID | activate ID`)
		a, err := parseWords(fs, args)
		if err != nil {
			return err
		}
		if len(a) == 0 {
			return usageError{"partners: say create ID NAME, list, suspend ID or activate ID"}
		}
		return withDB("", false, func(db *database.DB) error {
			store := partners.NewStore(db.Pool)
			switch {
			case a[0] == "create" && len(a) == 3:
				p, err := store.CreatePartner(ctx, a[1], a[2])
				if err != nil {
					return err
				}
				fmt.Fprintf(stdout, "created partner %s (%s)\n", p.ID, p.Name)
				return nil
			case a[0] == "list" && len(a) == 1:
				list, err := store.Partners(ctx)
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "id\tname\tstatus\tcreated")
				for _, p := range list {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.ID, p.Name, p.Status, p.CreatedAt.UTC().Format(time.RFC3339))
				}
				return tw.Flush()
			case (a[0] == "suspend" || a[0] == "activate") && len(a) == 2:
				status := partners.StatusSuspended
				if a[0] == "activate" {
					status = partners.StatusActive
				}
				p, err := store.SetPartnerStatus(ctx, a[1], status)
				if err != nil {
					return err
				}
				fmt.Fprintf(stdout, "partner %s is %s\n", p.ID, p.Status)
				return nil
			}
			return usageError{"partners: say create ID NAME, list, suspend ID or activate ID"}
		})

	case "contracts":
		synopsis(fs, `coalition contracts add PARTNER FILE.json   (- reads stdin)
    adds a contract version: the JSON body POST /v1/partners/{p}/contracts takes (see
    docs/openapi.yaml, Contract), checked as strictly; without effective_from it is in
    force now, and it may not take effect before now
coalition contracts list PARTNER`)
		a, err := parseWords(fs, args)
		if err != nil {
			return err
		}
		switch {
		case len(a) == 3 && a[0] == "add":
			var raw []byte
			var err error
			if a[2] == "-" {
				raw, err = io.ReadAll(io.LimitReader(os.Stdin, 1<<20))
			} else {
				raw, err = os.ReadFile(a[2])
			}
			if err != nil {
				return err
			}
			// The API's decoder: unknown fields, JSON numbers for amounts and bad scales
			// are refused, not stored as zero or as a float.
			k, err := api.DecodeContract(raw)
			if err != nil {
				return fmt.Errorf("contract %s: %w", a[2], err)
			}
			return withDB("", false, func(db *database.DB) error {
				v, err := partners.NewStore(db.Pool).AddContract(ctx, a[1], k, time.Now())
				if err != nil {
					return err
				}
				fmt.Fprintf(stdout, "partner %s: contract version %d in force from %s\n", a[1], v.Version, v.EffectiveFrom.UTC().Format(time.RFC3339))
				return nil
			})
		case len(a) == 2 && a[0] == "list":
			return withDB("", false, func(db *database.DB) error {
				list, err := partners.NewStore(db.Pool).Contracts(ctx, a[1])
				if err != nil {
					return err
				}
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(list)
			})
		}
		return usageError{"contracts: say add PARTNER FILE.json (- for stdin) or list PARTNER"}

	case "expire":
		if err := parseFlags(fs, args); err != nil {
			return err
		}
		return withDB("", false, func(db *database.DB) error {
			l := ledger.New(db.Pool)
			now := time.Now()
			// Holds first: points a timed-out hold gives back to an expired lot then expire
			// in the same run.
			h, err := l.ReleaseExpiredHolds(ctx, now, func(done int) { progress("voided %d holds so far", done) })
			if err != nil {
				return err
			}
			n, err := l.ExpireDue(ctx, now, func(done int) { progress("expired %d lots so far", done) })
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "expired %s, voided %s\n", ledger.Count(n, "lot", "lots"), ledger.Count(h, "timed-out hold", "timed-out holds"))
			return nil
		})

	case "serve":
		return serve(ctx, fs, args, withDB, progress)
	}
	return usageError{fmt.Sprintf("unknown command %q", cmd)}
}
