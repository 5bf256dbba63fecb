package settlement

import "github.com/shopspring/decimal"

// Direction says which way an instruction's money goes between a partner and the operator.
type Direction string

// The directions of a payment instruction.
const (
	PayOperator    Direction = "pay_operator"     // the partner pays the operator
	PaidByOperator Direction = "paid_by_operator" // the operator pays the partner
)

// Instruction is one payment between a partner and the operator; Amount is positive.
type Instruction struct {
	Partner   string
	Direction Direction
	Amount    decimal.Decimal
}

// Net nets positions and fees multilaterally through the operator: each partner's net is
// its settlement position (debit positive) plus its fee; a net debit pays the operator, a
// net credit is paid by it, a zero net gets no instruction. At most one instruction per
// partner, sorted by partner id.
//
// Σ received − Σ paid = Σ fees + Σ positions; the positions of a run sum to zero unless
// operator:awards paid for consumed award points, which the operator then pays out.
func Net(positions, fees map[string]decimal.Decimal) []Instruction {
	var out []Instruction
	for _, p := range sortedKeys(positions, fees) {
		n := positions[p].Add(fees[p])
		switch n.Sign() {
		case 1:
			out = append(out, Instruction{Partner: p, Direction: PayOperator, Amount: n})
		case -1:
			out = append(out, Instruction{Partner: p, Direction: PaidByOperator, Amount: n.Neg()})
		}
	}
	return out
}

// Totals returns what the operator receives and what it pays under instructions.
func Totals(instructions []Instruction) (received, paid decimal.Decimal) {
	for _, in := range instructions {
		switch in.Direction {
		case PayOperator:
			received = received.Add(in.Amount)
		case PaidByOperator:
			paid = paid.Add(in.Amount)
		}
	}
	return received, paid
}
