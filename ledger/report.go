package ledger

import (
	"fmt"
	"io"
	"sort"
	"text/tabwriter"

	"github.com/shopspring/decimal"
)

// WriteTable writes the trial balance as an aligned text table: every account with its
// debit or credit balance, then the total per unit.
func (tb *TrialBalance) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "account\tunit\tdebit\tcredit\t\n")
	for _, a := range tb.Accounts {
		if a.Balance.IsZero() {
			continue
		}
		dr, cr := "", ""
		if a.Balance.IsPositive() {
			dr = formatAmount(a.Balance, a.Unit)
		} else {
			cr = formatAmount(a.Balance.Neg(), a.Unit)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", a.Account, a.Unit, dr, cr)
	}
	units := make([]string, 0, len(tb.Totals))
	for u := range tb.Totals {
		units = append(units, u)
	}
	sort.Strings(units)
	for _, u := range units {
		fmt.Fprintf(tw, "total (debits − credits)\t%s\t%s\t\t\n", u, formatAmount(tb.Totals[u], u))
	}
	return tw.Flush()
}

// formatAmount writes money at its currency's minor unit and points as they are.
func formatAmount(d decimal.Decimal, unit string) string {
	if unit != Points {
		if scale, err := CurrencyScale(unit); err == nil {
			return d.StringFixed(scale)
		}
	}
	return d.String()
}
