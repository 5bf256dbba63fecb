package ledger

import (
	"sort"

	"github.com/shopspring/decimal"
)

// Weight is one party's claim in a split: its key (the issuer id, for ties) and its points.
type Weight struct {
	Key    string
	Points decimal.Decimal
}

// Split divides total, an amount at scale decimals, over the weights in proportion to
// their points, in integer minor units: party i gets ⌊T·pᵢ/R⌋ and the leftover units go
// one each in order of the largest remainder, ties by key. The shares sum to total
// exactly and come back in the order of weights. Weights must be positive.
func Split(total decimal.Decimal, scale int32, weights []Weight) []decimal.Decimal {
	shares := make([]decimal.Decimal, len(weights))
	if len(weights) == 0 {
		return shares
	}
	units := total.Shift(scale)
	sum := decimal.Zero
	for _, w := range weights {
		sum = sum.Add(w.Points)
	}
	rems := make([]decimal.Decimal, len(weights))
	given := decimal.Zero
	for i, w := range weights {
		q, r := units.Mul(w.Points).QuoRem(sum, 0)
		shares[i], rems[i] = q, r
		given = given.Add(q)
	}
	order := make([]int, len(weights))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool {
		ra, rb := rems[order[a]], rems[order[b]]
		if c := ra.Cmp(rb); c != 0 {
			return c > 0
		}
		return weights[order[a]].Key < weights[order[b]].Key
	})
	leftover := units.Sub(given).IntPart()
	for i := int64(0); i < leftover; i++ {
		shares[order[i]] = shares[order[i]].Add(decimal.NewFromInt(1))
	}
	for i := range shares {
		shares[i] = shares[i].Shift(-scale)
	}
	return shares
}
