package settlement

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/shopspring/decimal"

	"github.com/coalitionledger/coalition/ledger"
)

// Scales are the decimals a report writes amounts with: the currency's minor unit and
// the coalition's points scale.
type Scales struct {
	Currency string
	Money    int32
	Points   int32
}

// Outcome is a run's figures: the report as users read it, and the amounts the run
// posts and pays.
type Outcome struct {
	Report       Report
	Fees         map[string]decimal.Decimal // rounded, per partner, debit positive
	Nets         map[string]decimal.Decimal // position + fee, per partner, debit positive
	Instructions []Instruction
}

// Report is what a settlement run settled, written at the units' scales so that two
// derivations of the same run compare as equal values.
type Report struct {
	BusinessDate   string            `json:"business_date"`
	Currency       string            `json:"currency"`
	PreviousCutoff int64             `json:"previous_cutoff"`
	Cutoff         int64             `json:"cutoff"`
	Entries        int               `json:"entries"`
	Late           []LateDay         `json:"late"`
	Partners       []PartnerLine     `json:"partners"`
	Gross          []ObligationLine  `json:"gross"`
	Bilateral      []ObligationLine  `json:"bilateral"`
	Instructions   []InstructionLine `json:"instructions"`
	Totals         ReportTotals      `json:"totals"`
}

// LateDay counts the entries of an earlier business day that this run settles because
// they were recorded after that day's cut-off.
type LateDay struct {
	BusinessDate string `json:"business_date"`
	Entries      int    `json:"entries"`
}

// PartnerLine is one partner's side of a run. Money is debit positive: Owes is what its
// entries made it owe the others (and the operator for award points), OwedTo what they
// owe it, Position the difference, Net = Position + Fee, what its instruction settles.
type PartnerLine struct {
	Partner        string `json:"partner"`
	PointsIssued   string `json:"points_issued"`   // net of earn reversals
	PointsRedeemed string `json:"points_redeemed"` // net of redemption reversals
	FeePoints      string `json:"fee_points"`      // points issued less reversed, that fees are charged on
	Owes           string `json:"owes"`
	OwedTo         string `json:"owed_to"`
	Position       string `json:"position"`
	Fee            string `json:"fee"`
	Net            string `json:"net"`
}

// ObligationLine says that Debtor owes Creditor Amount.
type ObligationLine struct {
	Debtor   string `json:"debtor"`
	Creditor string `json:"creditor"`
	Amount   string `json:"amount"`
}

// InstructionLine is one payment between a partner and the operator.
type InstructionLine struct {
	Partner   string    `json:"partner"`
	Direction Direction `json:"direction"`
	Amount    string    `json:"amount"`
}

// ReportTotals are a run's control totals: Received − Paid = Fees − Awards.
type ReportTotals struct {
	Instructions int    `json:"instructions"`
	Received     string `json:"received"` // Σ pay_operator
	Paid         string `json:"paid"`     // Σ paid_by_operator
	Fees         string `json:"fees"`
	Awards       string `json:"awards"` // the value of award points taken at partners, which the operator pays
	Net          string `json:"net"`    // Received − Paid
}

// Settle computes a run's outcome from the tally of its entries: fees rounded once per
// partner, multilateral netting through the operator, and the report.
func Settle(t *Tally, w Window, late map[Day]int, sc Scales) *Outcome {
	ex := t.Exposure()
	fees := roundFees(t.fees, sc.Money)
	o := &Outcome{Fees: fees, Nets: map[string]decimal.Decimal{}, Instructions: Net(ex.Positions, fees)}
	money := func(d decimal.Decimal) string { return d.StringFixed(sc.Money) }
	points := func(d decimal.Decimal) string { return d.StringFixed(sc.Points) }
	r := Report{
		BusinessDate: w.Day.String(), Currency: sc.Currency, PreviousCutoff: w.PreviousCutoff, Cutoff: w.Cutoff,
		Entries: t.Entries(), Late: []LateDay{}, Partners: []PartnerLine{},
		Gross: obligationLines(ex.Gross, money), Bilateral: obligationLines(ex.Bilateral, money),
		Instructions: []InstructionLine{},
	}
	for d, n := range late {
		r.Late = append(r.Late, LateDay{BusinessDate: d.String(), Entries: n})
	}
	sort.Slice(r.Late, func(i, j int) bool { return r.Late[i].BusinessDate < r.Late[j].BusinessDate })
	awards := decimal.Zero
	for _, p := range sortedKeys(ex.Positions, fees, t.issued, t.redeemed, t.feeBase) {
		pos := ex.Positions[p]
		awards = awards.Sub(pos)
		net := pos.Add(fees[p])
		if !net.IsZero() {
			o.Nets[p] = net
		}
		r.Partners = append(r.Partners, PartnerLine{
			Partner: p, PointsIssued: points(t.issued[p]), PointsRedeemed: points(t.redeemed[p]),
			FeePoints: points(t.feeBase[p]), Owes: money(t.owes[p]), OwedTo: money(t.owed[p]),
			Position: money(pos), Fee: money(fees[p]), Net: money(net),
		})
	}
	received, paid := Totals(o.Instructions)
	feeTotal := decimal.Zero
	for _, f := range fees {
		feeTotal = feeTotal.Add(f)
	}
	for _, in := range o.Instructions {
		r.Instructions = append(r.Instructions, InstructionLine{Partner: in.Partner, Direction: in.Direction, Amount: money(in.Amount)})
	}
	r.Totals = ReportTotals{
		Instructions: len(o.Instructions), Received: money(received), Paid: money(paid),
		Fees: money(feeTotal), Awards: money(awards), Net: money(received.Sub(paid)),
	}
	o.Report = r
	return o
}

func obligationLines(os []Obligation, money func(decimal.Decimal) string) []ObligationLine {
	out := make([]ObligationLine, len(os))
	for i, o := range os {
		out[i] = ObligationLine{Debtor: o.Debtor, Creditor: o.Creditor, Amount: money(o.Amount)}
	}
	return out
}

// runMeta is the metadata of the entries a run posts: enough to find the run, and its
// window, from the journal alone.
type runMeta struct {
	Settlement Window `json:"settlement"`
}

// Entries returns the entries a run posts, all by the operator and dated the last
// microsecond of the run's day: a fee entry for each partner with a fee (Dr its
// settlement, Cr operator:fees, the other way round for a credit), then a move for each
// partner with a net (its net from settlement to in_settlement). Each has the reference
// <day>/<partner>, unique per kind forever, so that a day cannot be posted twice.
func (o *Outcome) Entries(w Window, loc *time.Location) []ledger.Entry {
	meta, _ := json.Marshal(runMeta{Settlement: w})
	at := w.Day.Last(loc)
	entry := func(kind ledger.EntryKind, p string, postings ...ledger.Posting) ledger.Entry {
		return ledger.Entry{Kind: kind, Partner: ledger.OperatorIssuer, Reference: w.Day.String() + "/" + p,
			BusinessTime: at, Import: true, Metadata: meta, Postings: postings}
	}
	var out []ledger.Entry
	for _, p := range sortedKeys(o.Fees) {
		settlement := ledger.PartnerAccount(p, "settlement")
		out = append(out, entry(ledger.EntryFee, p,
			ledger.Posting{Account: settlement, Unit: o.Report.Currency, Amount: o.Fees[p]},
			ledger.Posting{Account: "operator:fees", Unit: o.Report.Currency, Amount: o.Fees[p].Neg()}))
	}
	for _, p := range sortedKeys(o.Nets) {
		out = append(out, entry(ledger.EntrySettlement, p,
			ledger.Posting{Account: ledger.PartnerAccount(p, "in_settlement"), Unit: o.Report.Currency, Amount: o.Nets[p]},
			ledger.Posting{Account: ledger.PartnerAccount(p, "settlement"), Unit: o.Report.Currency, Amount: o.Nets[p].Neg()}))
	}
	return out
}

// WriteCSV writes the report as one table with the columns section, party, counterparty,
// measure and value, a row per figure, so that spreadsheets and scripts read every part
// of it the same way.
func (r *Report) WriteCSV(w io.Writer) error { return r.writeCSV(w, nil) }

// csvRow writes one row of the report's CSV.
type csvRow func(section, party, counterparty, measure, value string)

// writeCSV writes the report, and after its instructions what more writes (nil: nothing).
func (r *Report) writeCSV(w io.Writer, more func(row csvRow)) error {
	return writeCSVTable(w, func(row csvRow) { r.csvRows(row, more) })
}

// writeCSVTable writes the header of the reports' CSV table and then the rows of rows.
func writeCSVTable(w io.Writer, rows func(row csvRow)) error {
	cw := csv.NewWriter(w)
	row := func(section, party, counterparty, measure, value string) {
		_ = cw.Write([]string{section, party, counterparty, measure, value})
	}
	row("section", "party", "counterparty", "measure", "value")
	rows(row)
	cw.Flush()
	return cw.Error()
}

// WriteCSV writes a partner's side in the columns of the run's CSV (Report.WriteCSV): the
// run's date, currency and cut-off, its line, its gross and bilateral rows, its
// instruction and the payment's state.
func (v PartnerView) WriteCSV(w io.Writer) error {
	return writeCSVTable(w, func(row csvRow) {
		row("run", "", "", "business_date", v.BusinessDate)
		row("run", "", "", "currency", v.Currency)
		row("run", "", "", "cutoff", strconv.FormatInt(v.Cutoff, 10))
		v.Partner.csvRows(row)
		obligationRows(row, "gross", v.Gross)
		obligationRows(row, "bilateral", v.Bilateral)
		if v.Instruction != nil {
			v.Instruction.InstructionLine.csvRows(row)
			v.Instruction.paymentRows(row)
		}
	})
}

// csvRows writes the report's rows, and after its instructions what more writes.
func (r *Report) csvRows(row csvRow, more func(row csvRow)) {
	row("run", "", "", "business_date", r.BusinessDate)
	row("run", "", "", "currency", r.Currency)
	row("run", "", "", "previous_cutoff", strconv.FormatInt(r.PreviousCutoff, 10))
	row("run", "", "", "cutoff", strconv.FormatInt(r.Cutoff, 10))
	row("run", "", "", "entries", strconv.Itoa(r.Entries))
	for _, l := range r.Late {
		row("late", l.BusinessDate, "", "entries", strconv.Itoa(l.Entries))
	}
	for _, p := range r.Partners {
		p.csvRows(row)
	}
	obligationRows(row, "gross", r.Gross)
	obligationRows(row, "bilateral", r.Bilateral)
	for _, in := range r.Instructions {
		in.csvRows(row)
	}
	if more != nil {
		more(row)
	}
	t := r.Totals
	row("totals", "", "", "instructions", strconv.Itoa(t.Instructions))
	row("totals", "", "", "received", t.Received)
	row("totals", "", "", "paid", t.Paid)
	row("totals", "", "", "fees", t.Fees)
	row("totals", "", "", "awards", t.Awards)
	row("totals", "", "", "net", t.Net)
}

// csvRows writes the partner's line, a row per figure.
func (p PartnerLine) csvRows(row csvRow) {
	for _, m := range [][2]string{
		{"points_issued", p.PointsIssued}, {"points_redeemed", p.PointsRedeemed}, {"fee_points", p.FeePoints},
		{"owes", p.Owes}, {"owed_to", p.OwedTo}, {"position", p.Position}, {"fee", p.Fee}, {"net", p.Net},
	} {
		row("partner", p.Partner, "", m[0], m[1])
	}
}

// obligationRows writes the rows of a gross or bilateral section.
func obligationRows(row csvRow, section string, lines []ObligationLine) {
	for _, o := range lines {
		row(section, o.Debtor, o.Creditor, "owes", o.Amount)
	}
}

// csvRows writes the instruction.
func (in InstructionLine) csvRows(row csvRow) {
	row("instruction", in.Partner, ledger.OperatorIssuer, string(in.Direction), in.Amount)
}

// WriteTable writes the report for a terminal: the partners' lines, the gross matrix,
// the bilateral nets, the instructions and the control totals.
func (r *Report) WriteTable(w io.Writer) error { return r.writeTable(w, nil) }

// writeTable writes the table, each instruction followed by its state when state is set.
func (r *Report) writeTable(w io.Writer, state func(partner string) string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	// The cut-off, not a range: a run also settles its day's entries recorded before the
	// run before it, and reads later days' entries, which it leaves to their own runs.
	fmt.Fprintf(w, "Settlement of %s (%s): %s, journal cut-off at position %d\n",
		r.BusinessDate, r.Currency, ledger.Count(r.Entries, "entry", "entries"), r.Cutoff)
	for _, l := range r.Late {
		fmt.Fprintf(w, "  of them %s of %s (recorded after that day's cut-off)\n", ledger.Count(l.Entries, "late entry", "late entries"), l.BusinessDate)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(tw, "partner\tpoints issued\tpoints redeemed\towes\towed to\tposition\tfee\tnet\t")
	for _, p := range r.Partners {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", p.Partner, p.PointsIssued, p.PointsRedeemed,
			p.Owes, p.OwedTo, p.Position, p.Fee, p.Net)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	section := func(title string, os []ObligationLine) error {
		fmt.Fprintf(w, "\n%s\n", title)
		if len(os) == 0 {
			fmt.Fprintln(w, "  (none)")
			return nil
		}
		for _, o := range os {
			fmt.Fprintf(tw, "  %s\towes\t%s\t%s\t\n", o.Debtor, o.Creditor, o.Amount)
		}
		return tw.Flush()
	}
	if err := section("Gross, who owes whom before netting:", r.Gross); err != nil {
		return err
	}
	if err := section("Bilateral nets:", r.Bilateral); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nPayment instructions, netted through the operator:")
	if len(r.Instructions) == 0 {
		fmt.Fprintln(w, "  (none)")
	}
	for _, in := range r.Instructions {
		what := "pays the operator"
		if in.Direction == PaidByOperator {
			what = "is paid by the operator"
		}
		if state != nil {
			fmt.Fprintf(tw, "  %s\t%s\t%s %s\t%s\t\n", in.Partner, what, in.Amount, r.Currency, state(in.Partner))
			continue
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s %s\t\n", in.Partner, what, in.Amount, r.Currency)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	t := r.Totals
	_, err := fmt.Fprintf(w, "\nControl totals: %d instructions; operator receives %s, pays %s, net %s = fees %s − awards %s\n",
		t.Instructions, t.Received, t.Paid, t.Net, t.Fees, t.Awards)
	return err
}

// WriteCSV writes the run's report (Report.WriteCSV) with who made the run and when, and
// each instruction's payment state: status, and once confirmed when and by which entry.
func (r *Run) WriteCSV(w io.Writer) error {
	return r.Report.writeCSV(w, func(row csvRow) {
		row("run", "", "", "created_at", r.CreatedAt.UTC().Format(time.RFC3339Nano))
		row("run", "", "", "created_by", r.CreatedBy)
		for _, p := range r.Instructions {
			p.paymentRows(row)
		}
	})
}

// paymentRows writes the state of an instruction's payment: its status, and once
// confirmed when and by which entry (times as the JSON answer gives them).
func (p Payment) paymentRows(row csvRow) {
	row("payment", p.Partner, ledger.OperatorIssuer, "status", p.Status)
	if p.ConfirmedAt != nil {
		row("payment", p.Partner, ledger.OperatorIssuer, "confirmed_at", p.ConfirmedAt.UTC().Format(time.RFC3339Nano))
		row("payment", p.Partner, ledger.OperatorIssuer, "payment_entry", p.PaymentEntry)
	}
}

// WriteTable writes the run's report (Report.WriteTable) with each instruction's payment
// state: pending, or confirmed and when.
func (r *Run) WriteTable(w io.Writer) error {
	return r.Report.writeTable(w, func(partner string) string {
		for _, p := range r.Instructions {
			if p.Partner == partner && p.ConfirmedAt != nil {
				return p.Status + " " + p.ConfirmedAt.UTC().Format(time.RFC3339)
			}
			if p.Partner == partner {
				return p.Status
			}
		}
		return ""
	})
}
