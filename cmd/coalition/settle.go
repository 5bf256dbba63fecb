package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/coalitionledger/coalition/audit"
	"github.com/coalitionledger/coalition/internal/database"
	"github.com/coalitionledger/coalition/ledger"
	"github.com/coalitionledger/coalition/partners"
	"github.com/coalitionledger/coalition/settlement"
)

// settle runs, shows or checks a settlement run:
//
//	coalition settle --date D [--format table|json|csv] [--out FILE]
//	coalition settle --check --date D
//	coalition settle --due
//	coalition settle --confirm PARTNER --date D
func settle(ctx context.Context, fs *flag.FlagSet, args []string,
	withDB func(string, bool, func(*database.DB) error) error, stdout, stderr io.Writer) error {
	date := fs.String("date", "", "the business date to settle, YYYY-MM-DD, in the coalition's time zone")
	check := fs.Bool("check", false, "re-derive the run of --date from the journal and compare every figure")
	due := fs.Bool("due", false, "settle every day that is over and not settled yet, in order")
	confirm := fs.String("confirm", "", "confirm that the money of PARTNER's instruction of --date moved")
	format := fs.String("format", "table", "how to print the report: table, json or csv")
	out := fs.String("out", "", "write the report to this file instead of standard output")
	keyPath := checkpointKeyFlag(fs) // a run signs a checkpoint of the journal's head
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *format != "table" && *format != "json" && *format != "csv" {
		return usageError{fmt.Sprintf("--format is table, json or csv, not %q", *format)}
	}
	var day settlement.Day
	switch {
	case *due && (*date != "" || *check || *confirm != ""):
		return usageError{"--due settles every day that is over: it takes no --date, --check or --confirm"}
	case *check && *confirm != "":
		return usageError{"--check and --confirm are two commands: give one"}
	}
	if !*due {
		if *date == "" {
			if *check || *confirm != "" {
				return usageError{"settle needs --date YYYY-MM-DD: the day to check or confirm"}
			}
			return usageError{"settle needs --date YYYY-MM-DD (or --due)"}
		}
		d, err := settlement.ParseDay(*date)
		if err != nil {
			return usageError{err.(*ledger.Error).Message}
		}
		day = d
	}
	return withDB("", false, func(db *database.DB) error {
		l := ledger.New(db.Pool)
		runs := settlement.NewRuns(l, partners.NewStore(db.Pool), nil)
		if !*check && *confirm == "" {
			key, _, err := signingKey(keyPath, sayTo(stderr))
			if err != nil {
				return err
			}
			runs.WithCheckpointer(audit.NewCheckpointer(db.Pool, key, time.Now))
		}
		switch {
		case *due:
			made, err := runs.SettleDue(ctx, func(r *settlement.Run) {
				fmt.Fprintf(stdout, "settled %s: %d entries, %d instructions, fees %s %s\n",
					r.BusinessDate, r.Entries, r.Totals.Instructions, r.Totals.Fees, r.Currency)
			})
			if err == nil && len(made) == 0 {
				fmt.Fprintln(stdout, "nothing to settle: every day that is over is settled")
			}
			return err
		case *check:
			c, err := runs.Check(ctx, day)
			if err != nil {
				return err
			}
			if *format == "json" {
				return writeJSON(stdout, c)
			}
			for _, d := range c.Differences {
				fmt.Fprintf(stdout, "%s: the run says %q, the journal gives %q\n", d.Figure, d.Run, d.Journal)
			}
			if !c.Matches {
				return fmt.Errorf("the run of %s does not match the journal: %d of %d figures differ", day, len(c.Differences), c.Figures)
			}
			fmt.Fprintf(stdout, "the run of %s matches the journal: %d figures re-derived, all equal\n", day, c.Figures)
			return nil
		case *confirm != "":
			pay, confirmed, err := runs.Confirm(ctx, day, *confirm)
			if err != nil {
				return err
			}
			what := "confirmed"
			if !confirmed {
				what = "was confirmed already"
			}
			fmt.Fprintf(stdout, "%s's instruction of %s (%s %s %s) %s: payment entry %s\n",
				pay.Partner, day, pay.Direction, pay.Amount, pay.Currency, what, pay.PaymentEntry)
			return nil
		}
		// The report's file first: one that cannot be created fails before the settlement.
		w := stdout
		var outFile *outputFile
		if *out != "" {
			var err error
			if outFile, err = createOutput(*out); err != nil {
				return err
			}
			defer outFile.discard()
			w = outFile
		}
		m := newMeter(stderr, "settling "+day.String()+", entries read")
		run, created, err := runs.Run(ctx, day, m.Update)
		m.Done()
		if err != nil {
			return err
		}
		if !created {
			fmt.Fprintf(stderr, "%s was settled already, on %s by %s: showing that run\n", day, run.CreatedAt.Format("2006-01-02 15:04:05Z"), run.CreatedBy)
		}
		if err := writeReport(w, run, *format); err != nil {
			return err
		}
		if outFile != nil {
			if err := outFile.commit(); err != nil {
				return err
			}
			fmt.Fprintf(stderr, "report written to %s\n", *out)
		}
		return nil
	})
}

// writeReport writes a run in a format: a table for people, JSON or CSV for machines.
func writeReport(w io.Writer, run *settlement.Run, format string) error {
	switch format {
	case "json":
		return writeJSON(w, run)
	case "csv":
		return run.WriteCSV(w)
	}
	return run.WriteTable(w)
}

// writeJSON writes v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
