package settlement

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"

	"github.com/coalitionledger/coalition/ledger"
)

// Check is the outcome of re-deriving a run from the journal: Matches when every figure
// of the run (its report, the entries it posted, its instructions) is what the journal
// gives again.
type Check struct {
	BusinessDate string       `json:"business_date"`
	Matches      bool         `json:"matches"`
	Figures      int          `json:"figures"` // how many figures were compared
	Differences  []Difference `json:"differences"`
}

// Difference is one figure the run and the journal disagree on.
type Difference struct {
	Figure  string `json:"figure"`
	Run     string `json:"run"`
	Journal string `json:"journal"`
}

// Check re-derives the run of day from the journal alone (its window is the one the run
// recorded, and the previous run's cut-off must be the run's previous cut-off) and
// compares every figure: the report, the fee and move entries posted under the run's
// references, and the instructions.
func (r *Runs) Check(ctx context.Context, day Day) (*Check, error) {
	rc, err := r.settings(ctx)
	if err != nil {
		return nil, err
	}
	var stored []byte
	w := Window{Day: day}
	err = r.pool.QueryRow(ctx, `SELECT cutoff, previous_cutoff, report FROM settlement_runs WHERE business_date = $1`, day.String()).
		Scan(&w.Cutoff, &w.PreviousCutoff, &stored)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ledger.Errorf(ledger.CodeNotFound, "%s has no settlement run", day).With("business_date", day.String())
	}
	if err != nil {
		return nil, fmt.Errorf("check %s: %w", day, err)
	}
	c := &Check{BusinessDate: day.String(), Differences: []Difference{}}
	differ := func(figure, run, journal string) {
		c.Figures++
		if run != journal {
			c.Differences = append(c.Differences, Difference{Figure: figure, Run: run, Journal: journal})
		}
	}

	var prev int64
	if err := r.pool.QueryRow(ctx, `SELECT COALESCE((SELECT cutoff FROM settlement_runs WHERE business_date < $1
		ORDER BY business_date DESC LIMIT 1), 0)`, day.String()).Scan(&prev); err != nil {
		return nil, fmt.Errorf("check %s: %w", day, err)
	}
	differ("previous_cutoff (the cut-off of the run before)", fmt.Sprint(w.PreviousCutoff), fmt.Sprint(prev))

	out, err := derive(ctx, r.pool, w, rc, nil)
	if err != nil {
		return nil, fmt.Errorf("check %s: %w", day, err)
	}
	var report any
	if err := json.Unmarshal(stored, &report); err != nil {
		return nil, fmt.Errorf("check %s: stored report: %w", day, err)
	}
	fresh, _ := json.Marshal(out.Report)
	var derived any
	_ = json.Unmarshal(fresh, &derived)
	runFigures, journalFigures := flatten("report", report), flatten("report", derived)
	for _, k := range sortedKeys(runFigures, journalFigures) {
		differ(k, runFigures[k], journalFigures[k])
	}

	// The entries the run posted, by the reference each carries.
	posted := map[string]string{}
	rows, err := r.pool.Query(ctx, `SELECT e.kind, e.reference, p.account, p.amount FROM entries e JOIN postings p ON p.position = e.position
		WHERE e.partner_id = $1 AND e.kind IN ('fee', 'settlement') AND e.reference LIKE $2`,
		ledger.OperatorIssuer, day.String()+"/%")
	if err != nil {
		return nil, fmt.Errorf("check %s: %w", day, err)
	}
	var kind, ref, account string
	var amount decimal.Decimal
	if _, err := pgx.ForEachRow(rows, []any{&kind, &ref, &account, &amount}, func() error {
		p := strings.TrimPrefix(ref, day.String()+"/")
		switch {
		case kind == string(ledger.EntryFee) && account == ledger.PartnerAccount(p, "settlement"):
			posted["fee entry of "+p] = amount.StringFixed(rc.scales.Money)
		case kind == string(ledger.EntrySettlement) && account == ledger.PartnerAccount(p, "in_settlement"):
			posted["move to in_settlement of "+p] = amount.StringFixed(rc.scales.Money)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("check %s: %w", day, err)
	}
	want := map[string]string{}
	for p, f := range out.Fees {
		want["fee entry of "+p] = f.StringFixed(rc.scales.Money)
	}
	for p, n := range out.Nets {
		want["move to in_settlement of "+p] = n.StringFixed(rc.scales.Money)
	}
	for _, k := range sortedKeys(posted, want) {
		differ("journal: "+k, posted[k], want[k])
	}

	// The instructions as the run wrote them.
	rows, err = r.pool.Query(ctx, `SELECT partner_id, direction, amount FROM settlement_instructions WHERE business_date = $1`, day.String())
	if err != nil {
		return nil, fmt.Errorf("check %s: %w", day, err)
	}
	written := map[string]string{}
	var partner, dir string
	if _, err := pgx.ForEachRow(rows, []any{&partner, &dir, &amount}, func() error {
		written["instruction of "+partner] = dir + " " + amount.StringFixed(rc.scales.Money)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("check %s: %w", day, err)
	}
	netted := map[string]string{}
	for _, in := range out.Instructions {
		netted["instruction of "+in.Partner] = string(in.Direction) + " " + in.Amount.StringFixed(rc.scales.Money)
	}
	for _, k := range sortedKeys(written, netted) {
		differ(k, written[k], netted[k])
	}
	// Each confirmation, as the instructions record it and as the journal posted it: the
	// payment entry under the reference <day>/<partner>, through operator:bank.
	rows, err = r.pool.Query(ctx, `SELECT partner_id, direction, amount, payment_entry FROM settlement_instructions
		WHERE business_date = $1 AND payment_entry IS NOT NULL`, day.String())
	if err != nil {
		return nil, fmt.Errorf("check %s: %w", day, err)
	}
	recorded := map[string]string{}
	var entry string
	if _, err := pgx.ForEachRow(rows, []any{&partner, &dir, &amount, &entry}, func() error {
		recorded["payment of "+partner] = entry + " " + dir + " " + amount.StringFixed(rc.scales.Money)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("check %s: %w", day, err)
	}
	rows, err = r.pool.Query(ctx, `SELECT e.id, e.reference, p.amount FROM entries e JOIN postings p ON p.position = e.position
		WHERE e.partner_id = $1 AND e.kind = 'payment' AND e.reference LIKE $2 AND p.account = 'operator:bank'`,
		ledger.OperatorIssuer, day.String()+"/%")
	if err != nil {
		return nil, fmt.Errorf("check %s: %w", day, err)
	}
	paid := map[string]string{}
	if _, err := pgx.ForEachRow(rows, []any{&entry, &ref, &amount}, func() error {
		d := PayOperator
		if amount.IsNegative() {
			d = PaidByOperator
		}
		paid["payment of "+strings.TrimPrefix(ref, day.String()+"/")] = entry + " " + string(d) + " " + amount.Abs().StringFixed(rc.scales.Money)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("check %s: %w", day, err)
	}
	for _, k := range sortedKeys(recorded, paid) {
		differ(k, recorded[k], paid[k])
	}
	c.Matches = len(c.Differences) == 0
	return c, nil
}

// flatten turns a decoded JSON value into figure name → value; list items are named by
// their partner, or debtor→creditor, or business date when they have one.
func flatten(prefix string, v any) map[string]string {
	out := map[string]string{}
	var walk func(string, any)
	walk = func(path string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				walk(path+"."+k, e)
			}
		case []any:
			out[path+".count"] = fmt.Sprint(len(x))
			for i, e := range x {
				walk(fmt.Sprintf("%s[%s]", path, itemName(i, e)), e)
			}
		default:
			out[path] = fmt.Sprint(x)
		}
	}
	walk(prefix, v)
	return out
}

func itemName(i int, v any) string {
	m, ok := v.(map[string]any)
	switch {
	case !ok:
	case m["partner"] != nil:
		return fmt.Sprint(m["partner"])
	case m["debtor"] != nil:
		return fmt.Sprintf("%v→%v", m["debtor"], m["creditor"])
	case m["business_date"] != nil:
		return fmt.Sprint(m["business_date"])
	}
	return fmt.Sprint(i)
}
