package audit

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shopspring/decimal"

	"github.com/coalitionledger/coalition/ledger"
)

// The export formats.
const (
	FormatJSONL   = "jsonl"   // one JSON object a line: header, checkpoints, entries, balances, end
	FormatCSV     = "csv"     // one row per entry, posting, lot movement, checkpoint and balance
	FormatHledger = "hledger" // an hledger journal: one transaction per entry
)

// ExportFormatName and ExportVersion identify the JSON-lines export in its header.
const (
	ExportFormatName = "coalition-journal" // the header's format
	ExportVersion    = 1                   // the header's version
)

// ExportHeader is the first line of a JSON-lines export.
type ExportHeader struct {
	Type        string    `json:"type"` // "header"
	Format      string    `json:"format"`
	Version     int       `json:"version"`
	Currency    string    `json:"currency"`
	PointsScale int32     `json:"points_scale"`
	From        int64     `json:"from"`      // first position exported
	To          int64     `json:"to"`        // last position exported
	PrevHash    string    `json:"prev_hash"` // hex hash of the entry before From
	ToHash      string    `json:"to_hash"`   // hex hash of the entry at To (the head's, when complete)
	Head        int64     `json:"head"`      // the journal's head when exported
	Complete    bool      `json:"complete"`  // From is 1 and To the head: the balances follow the entries
	PublicKey   string    `json:"public_key,omitempty"`
	ExportedAt  time.Time `json:"exported_at"`
}

// EntryRecord is an entry line of a JSON-lines export (and an entry of the journal
// route): every field of the hashed form, in the hashed form's own spelling — times in UTC
// with six decimals, amounts at their unit's scale, hashes in hex — so that the entry's
// hash is SHA-256 of the RFC 8785 JSON of the record without type and hash.
type EntryRecord struct {
	Type         string           `json:"type"` // "entry"
	Position     int64            `json:"position"`
	ID           string           `json:"id"`
	Kind         ledger.EntryKind `json:"kind"`
	Partner      string           `json:"partner"`
	Member       string           `json:"member"`
	Reference    string           `json:"reference"`
	BusinessTime string           `json:"business_time"`
	RecordedAt   string           `json:"recorded_at"`
	Metadata     json.RawMessage  `json:"metadata"`
	Reverses     string           `json:"reverses"`
	Postings     []PostingRecord  `json:"postings"`
	Movements    []MovementRecord `json:"lot_movements"`
	PrevHash     string           `json:"prev_hash"`
	Hash         string           `json:"hash"`
}

// PostingRecord is a posting of an EntryRecord; the amount is signed, debit positive.
type PostingRecord struct {
	Account string `json:"account"`
	Unit    string `json:"unit"`
	Amount  string `json:"amount"`
}

// MovementRecord is a lot movement of an EntryRecord; expires_at is "" but on the
// movement that creates a lot with an expiry.
type MovementRecord struct {
	Lot       string `json:"lot"`
	Issuer    string `json:"issuer"`
	Points    string `json:"points"`
	Consumer  string `json:"consumer"`
	Reason    string `json:"reason"`
	Rate      string `json:"rate"`
	ExpiresAt string `json:"expires_at"`
}

// BalanceRecord is an account's stored balance, after the entries of a complete export.
type BalanceRecord struct {
	Type    string          `json:"type"` // "balance"
	Account string          `json:"account"`
	Unit    string          `json:"unit"`
	Balance decimal.Decimal `json:"balance"`
}

// EndRecord is the last line of a JSON-lines export: without it the file was cut short.
type EndRecord struct {
	Type    string `json:"type"` // "end"
	Entries int64  `json:"entries"`
}

// ExportOptions say what to export and how.
type ExportOptions struct {
	Format    string
	From, To  int64             // positions; 0: the first entry, the head
	PublicKey ed25519.PublicKey // written in the header; nil: none
	Progress  func(position, last int64)
	Now       func() time.Time
}

// ExportSummary says what an export holds.
type ExportSummary struct {
	From     int64 `json:"from"`
	To       int64 `json:"to"`
	Entries  int64 `json:"entries"`
	Complete bool  `json:"complete"`
}

// Export writes the journal's entries in [From, To] to w in one of the formats, from one
// snapshot, a page at a time (memory does not grow with the journal).
func Export(ctx context.Context, pool *pgxpool.Pool, w io.Writer, o ExportOptions) (*ExportSummary, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	snap, err := openSnapshot(ctx, pool)
	if err != nil {
		return nil, err
	}
	defer snap.close(ctx)
	period, err := snap.period(o.From, o.To)
	if err != nil {
		return nil, err
	}
	from, to := period.From, period.To
	prev, err := snap.hashAt(ctx, from-1)
	if err != nil {
		return nil, err
	}
	toHash, err := snap.hashAt(ctx, to)
	if err != nil {
		return nil, err
	}
	sum := &ExportSummary{From: from, To: to, Complete: from == 1 && to == snap.head.Position}
	h := ExportHeader{Type: "header", Format: ExportFormatName, Version: ExportVersion, Currency: snap.units.Currency,
		PointsScale: snap.units.PointsScale, From: from, To: to, PrevHash: hex.EncodeToString(prev), ToHash: hex.EncodeToString(toHash),
		Head: snap.head.Position, Complete: sum.Complete, ExportedAt: o.Now().UTC().Truncate(time.Microsecond)}
	if o.PublicKey != nil {
		h.PublicKey = PublicKeyPEM(o.PublicKey)
	}
	var out exportWriter
	bw := bufio.NewWriterSize(w, 256<<10)
	switch o.Format {
	case FormatJSONL:
		out = &jsonlWriter{enc: json.NewEncoder(bw), units: snap.units}
	case FormatCSV:
		out = &csvWriter{w: csv.NewWriter(bw), units: snap.units}
	case FormatHledger:
		out = &hledgerWriter{w: bw, units: snap.units}
	default:
		return nil, ledger.Errorf(ledger.CodeInvalid, "export format %q is not one of jsonl, csv, hledger", o.Format)
	}
	if err := out.header(&h); err != nil {
		return nil, err
	}
	for i := range snap.checkpoints {
		// A complete export holds every checkpoint, even one past the head (which verify
		// then reports); a partial one those its entries reach.
		if sum.Complete || snap.checkpoints[i].Position <= to {
			if err := out.checkpoint(&snap.checkpoints[i]); err != nil {
				return nil, err
			}
		}
	}
	p := &pager{l: ledger.New(pool), after: from - 1, to: to}
	for {
		e, err := p.next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if err := out.entry(e); err != nil {
			return nil, err
		}
		sum.Entries++
		if o.Progress != nil && sum.Entries%pageSize == 0 {
			o.Progress(e.Position, to)
		}
	}
	if o.Progress != nil {
		o.Progress(to, to)
	}
	if sum.Complete {
		if err := snap.balances(ctx, out.balance); err != nil {
			return nil, err
		}
	}
	if err := out.end(sum.Entries); err != nil {
		return nil, err
	}
	if err := bw.Flush(); err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	return sum, nil
}

// exportWriter writes one format.
type exportWriter interface {
	header(*ExportHeader) error
	checkpoint(*Checkpoint) error
	entry(*ledger.Posted) error
	balance(ledger.AccountBalance) error
	end(entries int64) error
}

// NewEntryRecord returns the export line of an entry (the journal route answers the same).
func NewEntryRecord(e *ledger.Posted, u ledger.Units) *EntryRecord {
	meta := e.Metadata
	if len(meta) == 0 {
		meta = json.RawMessage(`{}`)
	}
	r := &EntryRecord{Type: "entry", Position: e.Position, ID: e.ID, Kind: e.Kind, Partner: e.Partner, Member: e.Member,
		Reference: e.Reference, BusinessTime: e.BusinessTime.UTC().Format(ledger.TimeFormat), RecordedAt: e.RecordedAt.UTC().Format(ledger.TimeFormat),
		Metadata: meta, Reverses: e.Reverses, Postings: make([]PostingRecord, len(e.Postings)), Movements: make([]MovementRecord, len(e.Movements)),
		PrevHash: hex.EncodeToString(e.PrevHash), Hash: hex.EncodeToString(e.Hash)}
	for i, p := range e.Postings {
		r.Postings[i] = PostingRecord{Account: p.Account, Unit: p.Unit, Amount: formatUnit(u, p.Unit, p.Amount)}
	}
	for i, m := range e.Movements {
		r.Movements[i] = MovementRecord{Lot: m.Lot, Issuer: m.Issuer, Points: ledger.AtScale(m.Points, u.PointsScale), Consumer: m.Consumer,
			Reason: m.Reason, Rate: m.Rate.String()}
		if m.ExpiresAt != nil {
			r.Movements[i].ExpiresAt = m.ExpiresAt.UTC().Format(ledger.TimeFormat)
		}
	}
	return r
}

// posted returns the entry an export line describes.
func (r *EntryRecord) posted() (*ledger.Posted, error) {
	fail := func(field string, err error) (*ledger.Posted, error) {
		return nil, fmt.Errorf("entry %d: %s: %w", r.Position, field, err)
	}
	prev, err := hex.DecodeString(r.PrevHash)
	if err != nil {
		return fail("prev_hash", err)
	}
	hash, err := hex.DecodeString(r.Hash)
	if err != nil {
		return fail("hash", err)
	}
	bt, err := time.Parse(time.RFC3339Nano, r.BusinessTime)
	if err != nil {
		return fail("business_time", err)
	}
	rt, err := time.Parse(time.RFC3339Nano, r.RecordedAt)
	if err != nil {
		return fail("recorded_at", err)
	}
	e := &ledger.Posted{ID: r.ID, Position: r.Position, Kind: r.Kind, Partner: r.Partner, Member: r.Member, Reference: r.Reference,
		BusinessTime: bt.UTC(), RecordedAt: rt.UTC(), Metadata: r.Metadata, Reverses: r.Reverses,
		Postings: make([]ledger.Posting, len(r.Postings)), Movements: make([]ledger.Movement, len(r.Movements)), PrevHash: prev, Hash: hash}
	for i, p := range r.Postings {
		amount, err := decimal.NewFromString(p.Amount)
		if err != nil {
			return fail("posting amount", err)
		}
		e.Postings[i] = ledger.Posting{Account: p.Account, Unit: p.Unit, Amount: amount}
	}
	for i, m := range r.Movements {
		points, err := decimal.NewFromString(m.Points)
		if err != nil {
			return fail("movement points", err)
		}
		rate, err := decimal.NewFromString(m.Rate)
		if err != nil {
			return fail("movement rate", err)
		}
		mv := ledger.Movement{Lot: m.Lot, Issuer: m.Issuer, Points: points, Consumer: m.Consumer, Reason: m.Reason, Rate: rate}
		if m.ExpiresAt != "" {
			t, err := time.Parse(time.RFC3339Nano, m.ExpiresAt)
			if err != nil {
				return fail("movement expires_at", err)
			}
			t = t.UTC()
			mv.ExpiresAt = &t
		}
		e.Movements[i] = mv
	}
	return e, nil
}

type jsonlWriter struct {
	enc   *json.Encoder
	units ledger.Units
}

func (j *jsonlWriter) header(h *ExportHeader) error { return j.write(h) }
func (j *jsonlWriter) checkpoint(cp *Checkpoint) error {
	return j.write(cp.Record("checkpoint"))
}
func (j *jsonlWriter) entry(e *ledger.Posted) error { return j.write(NewEntryRecord(e, j.units)) }
func (j *jsonlWriter) balance(b ledger.AccountBalance) error {
	return j.write(BalanceRecord{Type: "balance", Account: b.Account, Unit: b.Unit, Balance: b.Balance})
}
func (j *jsonlWriter) end(n int64) error { return j.write(EndRecord{Type: "end", Entries: n}) }
func (j *jsonlWriter) write(v any) error {
	if err := j.enc.Encode(v); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	return nil
}

// CSVColumns are the columns of the CSV export. The record column says what a row is:
// "entry", "posting", "movement", "checkpoint" or "balance"; each kind fills the columns
// that apply to it.
var CSVColumns = []string{"record", "position", "entry_id", "kind", "partner", "member", "reference",
	"business_time", "recorded_at", "reverses", "metadata", "prev_hash", "hash", "seq", "account", "unit", "amount",
	"lot", "issuer", "points", "consumer", "reason", "rate", "expires_at", "public_key", "signature"}

type csvWriter struct {
	w     *csv.Writer
	units ledger.Units
	row   []string
}

func (c *csvWriter) put(fields map[string]string) error {
	if c.row == nil {
		c.row = make([]string, len(CSVColumns))
	}
	for i, col := range CSVColumns {
		c.row[i] = fields[col]
	}
	if err := c.w.Write(c.row); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	return nil
}

func (c *csvWriter) header(*ExportHeader) error {
	if err := c.w.Write(CSVColumns); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	return nil
}

func (c *csvWriter) checkpoint(cp *Checkpoint) error {
	return c.put(map[string]string{"record": "checkpoint", "position": strconv.FormatInt(cp.Position, 10), "hash": cp.Hash,
		"recorded_at": cp.SignedAt.UTC().Format(ledger.TimeFormat), "reason": cp.Reason, "public_key": cp.PublicKey, "signature": cp.Signature,
		"seq": strconv.FormatInt(cp.ID, 10)})
}

func (c *csvWriter) entry(e *ledger.Posted) error {
	pos := strconv.FormatInt(e.Position, 10)
	meta := string(e.Metadata)
	if meta == "" {
		meta = "{}"
	}
	if err := c.put(map[string]string{"record": "entry", "position": pos, "entry_id": e.ID, "kind": string(e.Kind),
		"partner": e.Partner, "member": e.Member, "reference": e.Reference,
		"business_time": e.BusinessTime.UTC().Format(ledger.TimeFormat), "recorded_at": e.RecordedAt.UTC().Format(ledger.TimeFormat),
		"reverses": e.Reverses, "metadata": meta, "prev_hash": hex.EncodeToString(e.PrevHash), "hash": hex.EncodeToString(e.Hash)}); err != nil {
		return err
	}
	for i, p := range e.Postings {
		if err := c.put(map[string]string{"record": "posting", "position": pos, "entry_id": e.ID, "seq": strconv.Itoa(i),
			"account": p.Account, "unit": p.Unit, "amount": formatUnit(c.units, p.Unit, p.Amount)}); err != nil {
			return err
		}
	}
	for i, m := range e.Movements {
		exp := ""
		if m.ExpiresAt != nil {
			exp = m.ExpiresAt.UTC().Format(ledger.TimeFormat)
		}
		if err := c.put(map[string]string{"record": "movement", "position": pos, "entry_id": e.ID, "seq": strconv.Itoa(i),
			"lot": m.Lot, "issuer": m.Issuer, "points": formatUnit(c.units, ledger.Points, m.Points), "consumer": m.Consumer,
			"reason": m.Reason, "rate": m.Rate.String(), "expires_at": exp}); err != nil {
			return err
		}
	}
	return nil
}

func (c *csvWriter) balance(b ledger.AccountBalance) error {
	return c.put(map[string]string{"record": "balance", "account": b.Account, "unit": b.Unit, "amount": formatUnit(c.units, b.Unit, b.Balance)})
}

func (c *csvWriter) end(int64) error {
	c.w.Flush()
	if err := c.w.Error(); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	return nil
}

// formatUnit writes an amount at its unit's scale, never rounding a changed one.
func formatUnit(u ledger.Units, unit string, d decimal.Decimal) string {
	scale, err := u.Scale(unit)
	if err != nil {
		return d.String()
	}
	return ledger.AtScale(d, scale)
}

// hledgerWriter writes an hledger journal: the commodities PTS and the coalition's
// currency declared at their scale, then one transaction per entry dated by its record
// time (UTC), with the position as its code and the entry's id, kind and times as tags.
type hledgerWriter struct {
	w     *bufio.Writer
	units ledger.Units
}

func (h *hledgerWriter) header(x *ExportHeader) error {
	fmt.Fprintf(h.w, "; Coalition Ledger journal, positions %d to %d of %d, exported %s\n", x.From, x.To, x.Head, x.ExportedAt.Format(ledger.TimeFormat))
	fmt.Fprintf(h.w, "; debits are positive; every transaction balances per commodity\n")
	if !x.Complete {
		fmt.Fprintf(h.w, "; a partial export: balances are the movements of these positions only\n")
	}
	if x.PublicKey != "" {
		for _, line := range strings.Split(strings.TrimSpace(x.PublicKey), "\n") {
			fmt.Fprintf(h.w, "; %s\n", line)
		}
	}
	fmt.Fprintf(h.w, "\ndecimal-mark .\n")
	fmt.Fprintf(h.w, "commodity %s %s\n", sampleAmount(h.units.PointsScale), ledger.Points)
	fmt.Fprintf(h.w, "commodity %s %s\n\n", sampleAmount(h.units.MoneyScale), h.units.Currency)
	return nil
}

// sampleAmount is the amount a commodity directive declares its format with: 1000 at
// scale, always with its decimal point ("1000." at scale 0), which hledger requires.
func sampleAmount(scale int32) string {
	s := decimal.NewFromInt(1000).StringFixed(scale)
	if scale == 0 {
		s += "."
	}
	return s
}

func (h *hledgerWriter) checkpoint(cp *Checkpoint) error {
	_, err := fmt.Fprintf(h.w, "; checkpoint %d: position %d hash %s signed %s (%s) key %s signature %s\n",
		cp.ID, cp.Position, cp.Hash, cp.SignedAt.UTC().Format(ledger.TimeFormat), oneLine(cp.Reason), cp.PublicKey, cp.Signature)
	return err
}

func (h *hledgerWriter) entry(e *ledger.Posted) error {
	desc := string(e.Kind) + " " + e.Partner
	if e.Member != "" {
		desc += " " + e.Member
	}
	fmt.Fprintf(h.w, "%s * (%d) %s  ; entry:%s, kind:%s, business_time:%s, recorded_at:%s\n",
		e.RecordedAt.UTC().Format("2006-01-02"), e.Position, desc, e.ID, e.Kind,
		e.BusinessTime.UTC().Format(ledger.TimeFormat), e.RecordedAt.UTC().Format(ledger.TimeFormat))
	if e.Reference != "" {
		fmt.Fprintf(h.w, "    ; reference: %s\n", oneLine(e.Reference))
	}
	if e.Reverses != "" {
		fmt.Fprintf(h.w, "    ; reverses: %s\n", e.Reverses)
	}
	if len(e.Postings) == 0 {
		fmt.Fprintf(h.w, "    ; no postings\n")
	}
	for _, p := range e.Postings {
		fmt.Fprintf(h.w, "    %s  %s %s\n", p.Account, formatUnit(h.units, p.Unit, p.Amount), p.Unit)
	}
	_, err := fmt.Fprintln(h.w)
	return err
}

func (h *hledgerWriter) balance(ledger.AccountBalance) error { return nil }

func (h *hledgerWriter) end(n int64) error {
	_, err := fmt.Fprintf(h.w, "; end: %d entries\n", n)
	return err
}

// oneLine makes free text safe inside an hledger comment: one line, no tabs.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}
