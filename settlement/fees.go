package settlement

import (
	"sort"

	"github.com/shopspring/decimal"
)

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
