package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/coalitionledger/coalition/audit"
	"github.com/coalitionledger/coalition/internal/database"
	"github.com/coalitionledger/coalition/ledger"
	"github.com/coalitionledger/coalition/partners"
)

const reportUsage = `coalition report trial-balance|account NAME|member MEMBER|roll-forward|breakage [flags]

  trial-balance   every account and the totals per unit (--position P or --as-of TIME; --partner P)
  account NAME    opening balance, postings and closing balance (--from, --to)
  member MEMBER   a member's entries and the lots each touched (id, phone:+…, card:…; --from, --to)
  roll-forward    the liability roll-forward per issuer and in total (--from, --to)
  breakage        points expired per issuer, with their value (--from, --to)

--from and --to take a journal position or a record time (RFC 3339, or YYYY-MM-DD in UTC).
--format csv (the default) or json.`

// reportCommand prints one of the auditor's reports as CSV or JSON.
func reportCommand(ctx context.Context, fs *flag.FlagSet, args []string,
	withDB func(string, bool, func(*database.DB) error) error, stdout io.Writer) error {
	format := fs.String("format", "csv", "csv or json")
	from := fs.String("from", "", "first position or record time of the period (default: the first entry)")
	to := fs.String("to", "", "last position or record time of the period (default: the head)")
	position := fs.Int64("position", 0, "trial-balance: the journal position (0: the head)")
	asOf := fs.String("as-of", "", "trial-balance: a record time (RFC 3339 or YYYY-MM-DD)")
	partner := fs.String("partner", "", "trial-balance: only this partner's accounts")
	if len(args) == 0 {
		return usageError{reportUsage}
	}
	which, rest := args[0], args[1:]
	switch which {
	case "trial-balance", "account", "member", "roll-forward", "breakage":
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(fs.Output(), reportUsage)
		return flag.ErrHelp
	default: // say so before touching the database
		return usageError{fmt.Sprintf("unknown report %q: %s", which, reportUsage)}
	}
	var name string
	if which == "account" || which == "member" {
		if len(rest) == 0 || strings.HasPrefix(rest[0], "-") {
			// --help, or a flag where the name belongs: say how, before anything is written.
			return usageError{fmt.Sprintf("report %s needs its name first, then flags: %s", which, reportUsage)}
		}
		name, rest = rest[0], rest[1:]
	}
	if err := fs.Parse(rest); err != nil {
		return err
	}
	if *format != "csv" && *format != "json" {
		return usageError{"--format is csv or json"}
	}
	if *position != 0 && *asOf != "" {
		return usageError{"--position and --as-of both name the moment: give one"}
	}
	if *position < 0 {
		return usageError{"--position takes a journal position, a whole number ≥ 0 (0: the head)"}
	}
	return withDB("", false, func(db *database.DB) error {
		r := audit.NewReports(db.Pool)
		period, err := r.ParsePeriod(ctx, *from, *to)
		if err != nil {
			return err
		}
		fromPos, toPos := period.From, period.To
		out := &reportWriter{json: *format == "json", w: stdout, csv: csv.NewWriter(stdout)}
		defer out.csv.Flush()
		switch which {
		case "trial-balance":
			pos := *position
			if *asOf != "" {
				if pos, err = r.ParseBound(ctx, *asOf, false); err != nil {
					return err
				}
				if pos == 0 {
					pos = ledger.BeforeFirstEntry // every balance was zero then
				}
			}
			tb, err := r.TrialBalance(ctx, pos, *partner)
			if err != nil {
				return err
			}
			if out.json {
				return out.encode(tb)
			}
			out.row("account", "unit", "balance")
			for _, a := range tb.Accounts {
				out.row(a.Account, a.Unit, a.Balance)
			}
			for _, u := range []string{ledger.Points, currencyOf(tb)} {
				out.row("total", u, tb.Totals[u])
			}
			return out.flush()

		case "account":
			var tail *audit.StatementTail
			if out.json {
				var head audit.StatementHead
				var lines []audit.StatementPosting
				tail, err = r.AccountStatement(ctx, name, fromPos, toPos, func(h audit.StatementHead) error { head = h; return nil },
					func(p audit.StatementPosting) error { lines = append(lines, p); return nil })
				if err != nil {
					return err
				}
				return out.encode(struct {
					audit.StatementHead
					Postings []audit.StatementPosting `json:"postings"`
					*audit.StatementTail
				}{head, nonNil(lines), tail})
			}
			tail, err = r.AccountStatement(ctx, name, fromPos, toPos, func(h audit.StatementHead) error {
				// The header once the account is known: an unknown one prints only its error.
				out.row("position", "entry", "kind", "partner", "reference", "business_time", "recorded_at", "amount", "balance")
				out.row(strconv.FormatInt(h.From-1, 10), "", "opening", "", "", "", "", "", h.Opening)
				return nil
			}, func(p audit.StatementPosting) error {
				out.row(strconv.FormatInt(p.Position, 10), p.Entry, string(p.Kind), p.Partner, p.Reference,
					p.BusinessTime.Format(ledger.TimeFormat), p.RecordedAt.Format(ledger.TimeFormat), p.Amount, p.Balance)
				return out.err()
			})
			if err != nil {
				return err
			}
			out.row("", "", "closing", "", "", "", "", "", tail.Closing)
			return out.flush()

		case "member":
			ref, err := partners.ParseMemberRef(name)
			if err != nil {
				return err
			}
			svc := partners.NewService(partners.NewStore(db.Pool), ledger.New(db.Pool), time.Now)
			m, err := svc.Store.FindMember(ctx, ref, svc.PhoneRegion)
			if err != nil {
				return err
			}
			if out.json {
				var head audit.MemberHead
				var lines []audit.MemberLine
				tail, err := r.MemberStatement(ctx, m.ID, fromPos, toPos, func(h audit.MemberHead) error { head = h; return nil },
					func(l audit.MemberLine) error { lines = append(lines, l); return nil })
				if err != nil {
					return err
				}
				return out.encode(struct {
					audit.MemberHead
					Entries []audit.MemberLine `json:"entries"`
					*audit.MemberTail
				}{head, nonNil(lines), tail})
			}
			out.row("position", "entry", "kind", "partner", "reference", "business_time", "recorded_at", "points", "held", "balance", "held_balance",
				"lot", "issuer", "lot_points", "consumer", "reason")
			tail, err := r.MemberStatement(ctx, m.ID, fromPos, toPos, func(h audit.MemberHead) error {
				out.row(strconv.FormatInt(h.From-1, 10), "", "opening", "", "", "", "", "", "", h.Opening, h.OpeningHeld, "", "", "", "", "")
				return nil
			}, func(l audit.MemberLine) error {
				base := []string{strconv.FormatInt(l.Position, 10), l.Entry, string(l.Kind), l.Partner, l.Reference,
					l.BusinessTime.Format(ledger.TimeFormat), l.RecordedAt.Format(ledger.TimeFormat), l.Points, l.Held, l.Balance, l.HeldBalance}
				if len(l.Movements) == 0 {
					out.row(append(base, "", "", "", "", "")...)
				}
				// One row per lot movement, the entry's columns repeated.
				for _, mv := range l.Movements {
					out.row(append(base, mv.Lot, mv.Issuer, mv.Points.String(), mv.Consumer, mv.Reason)...)
				}
				return out.err()
			})
			if err != nil {
				return err
			}
			out.row("", "", "closing", "", "", "", "", "", "", tail.Closing, tail.ClosingHeld, "", "", "", "", "") // as wide as the header
			return out.flush()

		case "roll-forward":
			rf, err := r.RollForward(ctx, fromPos, toPos)
			if err != nil {
				return err
			}
			if out.json {
				return out.encode(rf)
			}
			out.row("issuer", "opening", "issued", "redeemed", "expired", "reversals", "closing", "lots_remaining", "debts", "exposure")
			for _, l := range append(rf.Issuers, rf.Total) {
				out.row(l.Issuer, l.Opening, l.Issued, l.Redeemed, l.Expired, l.Reversals, l.Closing, l.LotsRemaining, l.Debts, l.Exposure)
			}
			return out.flush()

		case "breakage":
			b, err := r.Breakage(ctx, fromPos, toPos)
			if err != nil {
				return err
			}
			if out.json {
				return out.encode(b)
			}
			out.row("issuer", "expired", "unexpired", "net", "value")
			for _, l := range append(b.Issuers, b.Total) {
				out.row(l.Issuer, l.Expired, l.Unexpired, l.Net, l.Value)
			}
			return out.flush()
		}
		return usageError{reportUsage}
	})
}

// currencyOf returns the money unit of a trial balance's totals.
func currencyOf(tb *audit.TrialBalance) string {
	for u := range tb.Totals {
		if u != ledger.Points {
			return u
		}
	}
	return ""
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// reportWriter writes a report's rows as CSV, or the report as indented JSON.
type reportWriter struct {
	json bool
	w    io.Writer
	csv  *csv.Writer
}

func (r *reportWriter) row(fields ...string) { _ = r.csv.Write(fields) }
func (r *reportWriter) err() error           { return r.csv.Error() }
func (r *reportWriter) flush() error {
	r.csv.Flush()
	return r.csv.Error()
}
func (r *reportWriter) encode(v any) error {
	enc := json.NewEncoder(r.w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
