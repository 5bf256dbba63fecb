package settlement

import (
	"fmt"
	"sort"

	"github.com/shopspring/decimal"
)

// FeeItem is one earn or earn reversal of a run, as fees see it: the issuing partner, its
// points (negative for a reversal) and the earn's own fee_per_point.
type FeeItem struct {
	Partner     string
	Points      decimal.Decimal
	FeePerPoint decimal.Decimal
}

// Fees charges each partner Σ points × fee_per_point over items, rounded half-up to scale
// (the currency's minor unit) once per partner; the total may be negative (a credit).
//
// A negative total is rounded as the mirror of the same positive total (half away from
// zero), so that the credit posted the other way is exactly what the charge would be.
// Partners whose rounded total is zero are left out: there is nothing to post. It fails
// on an item without a partner or with a negative fee_per_point.
func Fees(items []FeeItem, scale int32) (map[string]decimal.Decimal, error) {
	sums := map[string]decimal.Decimal{}
	for i, it := range items {
		if it.Partner == "" {
			return nil, fmt.Errorf("fee item %d: no partner", i)
		}
		if it.FeePerPoint.IsNegative() {
			return nil, fmt.Errorf("fee item %d (%s): negative fee_per_point %s", i, it.Partner, it.FeePerPoint)
		}
		sums[it.Partner] = sums[it.Partner].Add(it.Points.Mul(it.FeePerPoint))
	}
	return roundFees(sums, scale), nil
}

// roundFees rounds each partner's unrounded fee to scale, leaving out the zeros.
func roundFees(sums map[string]decimal.Decimal, scale int32) map[string]decimal.Decimal {
	fees := make(map[string]decimal.Decimal, len(sums))
	for p, s := range sums {
		// decimal.Round rounds half away from zero: half-up on the magnitude.
		if f := s.Round(scale); !f.IsZero() {
			fees[p] = f
		}
	}
	return fees
}

// sortedKeys returns the sorted union of the keys of the maps.
func sortedKeys[V any](ms ...map[string]V) []string {
	seen := map[string]bool{}
	var out []string
	for _, m := range ms {
		for k := range m {
			if !seen[k] {
				seen[k] = true
				out = append(out, k)
			}
		}
	}
	sort.Strings(out)
	return out
}
