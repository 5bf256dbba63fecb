package settlement

import (
	"fmt"
	"sort"

	"github.com/shopspring/decimal"

	"github.com/coalitionledger/coalition/ledger"
)

// OperatorParty is the party name of the operator's own money (operator:awards) in the
// gross bilateral matrix.
const OperatorParty = ledger.OperatorIssuer

// Obligation says that Debtor owes Creditor Amount, a positive amount of money.
type Obligation struct {
	Debtor   string
	Creditor string
	Amount   decimal.Decimal
}

// Exposure is what a set of journal entries left the partners owing: their settlement
// positions, the gross bilateral matrix and the bilateral nets.
type Exposure struct {
	// Currency is the money unit of the legs; empty when the entries have no money legs.
	Currency string
	// Positions is each partner's sum of money legs on partner:<p>:settlement, debit
	// positive (the partner owes). Partners whose legs sum to zero are kept, at zero.
	Positions map[string]decimal.Decimal
	// Gross is who owes whom before netting, one row per ordered pair with a positive
	// amount, sorted by debtor then creditor. Each leg counts in the direction it was
	// posted, so a reversed redemption is a row back, which Bilateral cancels.
	Gross []Obligation
	// Bilateral is, for each unordered pair, the net of its two gross directions, with the
	// party that owes the net as Debtor; pairs whose directions cancel are left out.
	// Sorted by debtor then creditor.
	Bilateral []Obligation
}

// skipped are the entry kinds settlement itself posts: feeding them back into a run
// would count fees, moves and payments twice.
var skipped = map[ledger.EntryKind]bool{
	ledger.EntryFee:        true,
	ledger.EntrySettlement: true,
	ledger.EntryPayment:    true,
}

// Tally accumulates a run's entries one at a time, in constant memory per partner (a
// run reads a day of journal as a stream): the partners' settlement positions, the gross
// bilateral matrix, the points each partner issued and took, and the unrounded fees.
//
// Only money postings (unit ≠ PTS) count towards positions. Entries of kind fee,
// settlement and payment are skipped: they are what a run posts, and fees enter netting
// through Net's fees.
//
// The matrix is built over the parties of each consumption: partner:<p>:settlement is
// party p and operator:awards is OperatorParty; other money accounts (operator:fees,
// operator:bank, in_settlement) are not a bilateral counterparty and stay out of the
// matrix, though a partner's settlement leg against them still counts in its position.
// The engine writes the legs of each consumption together, in posting order: those of
// one sign (the issuers debited, or for a reversal the consumer debited), then those of
// the other; an entry may hold several consumptions (a capture that also repays a debt),
// so its legs are cut into such balanced groups, each matched on its own. Within a group
// each party's legs are summed; with one creditor every debtor owes it its amount, with
// one debtor it owes every creditor its amount: both exact. Legs that do not fall into
// balanced groups, or a group with several debtors and several creditors (as only an
// adjustment could post), are matched over the whole entry in order of party id,
// debtors against creditors, each pair taking the smaller of what is left (the
// north-west corner rule): deterministic and exact in total, but an allocation the
// journal does not state.
type Tally struct {
	currency  string
	positions map[string]decimal.Decimal
	gross     map[[2]string]decimal.Decimal
	owes      map[string]decimal.Decimal // Σ debit legs on a partner's settlement account
	owed      map[string]decimal.Decimal // Σ credit legs, as a positive amount
	issued    map[string]decimal.Decimal // net points debited to partner:<p>:issued
	redeemed  map[string]decimal.Decimal // net points credited to partner:<p>:redeemed
	feeBase   map[string]decimal.Decimal // net points of earns and earn reversals, for fees
	fees      map[string]decimal.Decimal // Σ points × fee_per_point, unrounded
	entries   int
}

// NewTally returns an empty tally.
func NewTally() *Tally {
	return &Tally{
		positions: map[string]decimal.Decimal{}, gross: map[[2]string]decimal.Decimal{},
		owes: map[string]decimal.Decimal{}, owed: map[string]decimal.Decimal{},
		issued: map[string]decimal.Decimal{}, redeemed: map[string]decimal.Decimal{},
		feeBase: map[string]decimal.Decimal{}, fees: map[string]decimal.Decimal{},
	}
}

// Add counts one entry. feePerPoint is the fee_per_point of the earn the entry issued or
// reversed (for an earn, its own; for an earn reversal, its original's); it is ignored
// for other kinds. It fails on a posting whose account is not in the chart, on money
// legs in two currencies, on an entry whose money legs do not balance and on a negative
// fee_per_point; the tally is then unusable.
func (t *Tally) Add(e *ledger.Posted, feePerPoint decimal.Decimal) error {
	if skipped[e.Kind] {
		return nil
	}
	if feePerPoint.IsNegative() {
		return fmt.Errorf("entry %s: negative fee_per_point %s", e.ID, feePerPoint)
	}
	t.entries++
	charged := e.Kind == ledger.EntryEarn || e.Kind == ledger.EntryEarnReversal
	var legs []leg
	sum := decimal.Zero
	for _, p := range e.Postings {
		acct, perr := ledger.ParseAccount(p.Account)
		if perr != nil {
			return fmt.Errorf("entry %s: %w", e.ID, perr)
		}
		if p.Unit == ledger.Points {
			switch {
			case acct.Kind == ledger.KindPartnerIssued && acct.Partner != ledger.OperatorIssuer:
				t.issued[acct.Partner] = t.issued[acct.Partner].Add(p.Amount)
				if charged {
					t.feeBase[acct.Partner] = t.feeBase[acct.Partner].Add(p.Amount)
					t.fees[acct.Partner] = t.fees[acct.Partner].Add(p.Amount.Mul(feePerPoint))
				}
			case acct.Kind == ledger.KindPartnerRedeemed:
				t.redeemed[acct.Partner] = t.redeemed[acct.Partner].Sub(p.Amount)
			}
			continue
		}
		if t.currency == "" {
			t.currency = p.Unit
		} else if p.Unit != t.currency {
			return fmt.Errorf("entry %s: money in %s and %s: a coalition settles in one currency", e.ID, t.currency, p.Unit)
		}
		if !acct.IsMoney() {
			return fmt.Errorf("entry %s: %s posted in %s but holds points", e.ID, p.Account, p.Unit)
		}
		sum = sum.Add(p.Amount)
		switch acct.Kind {
		case ledger.KindPartnerSettlement:
			t.positions[acct.Partner] = t.positions[acct.Partner].Add(p.Amount)
			if p.Amount.IsPositive() {
				t.owes[acct.Partner] = t.owes[acct.Partner].Add(p.Amount)
			} else {
				t.owed[acct.Partner] = t.owed[acct.Partner].Sub(p.Amount)
			}
			legs = append(legs, leg{acct.Partner, p.Amount})
		case ledger.KindOperatorAwards:
			legs = append(legs, leg{OperatorParty, p.Amount})
		}
	}
	if !sum.IsZero() {
		return fmt.Errorf("entry %s: money legs sum to %s, not zero", e.ID, sum)
	}
	for _, g := range consumptions(legs) {
		for _, o := range match(g) {
			k := [2]string{o.Debtor, o.Creditor}
			t.gross[k] = t.gross[k].Add(o.Amount)
		}
	}
	return nil
}

// leg is one money posting of a bilateral party.
type leg struct {
	party  string
	amount decimal.Decimal
}

// consumptions cuts an entry's legs into the parties of each consumption: runs of legs
// of one sign followed by legs of the other, each group balanced and with one debtor or
// one creditor. If the legs do not cut that way, the whole entry is one group.
func consumptions(legs []leg) []map[string]decimal.Decimal {
	var groups [][]leg
	var cur []leg
	sign, flipped := 0, false
	for _, l := range legs {
		s := l.amount.Sign()
		switch {
		case s == 0:
			continue
		case len(cur) == 0:
			sign, flipped = s, false
		case s != sign:
			flipped = true
		case flipped: // the first sign again: the next consumption starts
			groups, cur = append(groups, cur), nil
			sign, flipped = s, false
		}
		cur = append(cur, l)
	}
	if len(cur) > 0 {
		groups = append(groups, cur)
	}
	whole := map[string]decimal.Decimal{}
	var out []map[string]decimal.Decimal
	exact := true
	for _, g := range groups {
		parties := map[string]decimal.Decimal{}
		total := decimal.Zero
		for _, l := range g {
			parties[l.party] = parties[l.party].Add(l.amount)
			whole[l.party] = whole[l.party].Add(l.amount)
			total = total.Add(l.amount)
		}
		var debtors, creditors int
		for _, a := range parties {
			switch a.Sign() {
			case 1:
				debtors++
			case -1:
				creditors++
			}
		}
		if !total.IsZero() || (debtors > 1 && creditors > 1) {
			exact = false
		}
		out = append(out, parties)
	}
	if !exact {
		return []map[string]decimal.Decimal{whole}
	}
	return out
}

// Entries returns how many entries the tally counted (those of the kinds it skips not
// included).
func (t *Tally) Entries() int { return t.entries }

// Exposure returns the positions, the gross bilateral matrix and the bilateral nets of
// the entries counted so far.
func (t *Tally) Exposure() Exposure {
	ex := Exposure{Currency: t.currency, Positions: map[string]decimal.Decimal{}}
	for p, v := range t.positions {
		ex.Positions[p] = v
	}
	for k, amt := range t.gross {
		ex.Gross = append(ex.Gross, Obligation{Debtor: k[0], Creditor: k[1], Amount: amt})
	}
	sortObligations(ex.Gross)
	ex.Bilateral = bilateral(t.gross)
	return ex
}

// match pairs one consumption's debtors with its creditors as Tally documents.
func match(parties map[string]decimal.Decimal) []Obligation {
	var debtors, creditors []string
	for p, amt := range parties {
		switch amt.Sign() {
		case 1:
			debtors = append(debtors, p)
		case -1:
			creditors = append(creditors, p)
		}
	}
	sort.Strings(debtors)
	sort.Strings(creditors)
	owes := make([]decimal.Decimal, len(debtors))
	for i, d := range debtors {
		owes[i] = parties[d]
	}
	owed := make([]decimal.Decimal, len(creditors))
	for j, c := range creditors {
		owed[j] = parties[c].Neg()
	}
	var out []Obligation
	i, j := 0, 0
	for i < len(debtors) && j < len(creditors) {
		amt := decimal.Min(owes[i], owed[j])
		out = append(out, Obligation{Debtor: debtors[i], Creditor: creditors[j], Amount: amt})
		owes[i] = owes[i].Sub(amt)
		owed[j] = owed[j].Sub(amt)
		if owes[i].IsZero() {
			i++
		}
		if owed[j].IsZero() {
			j++
		}
	}
	return out
}

// bilateral nets the two directions of every unordered pair of the gross matrix.
func bilateral(gross map[[2]string]decimal.Decimal) []Obligation {
	var out []Obligation
	for k, amt := range gross {
		a, b := k[0], k[1]
		back := gross[[2]string{b, a}]
		if _, both := gross[[2]string{b, a}]; both && b < a {
			continue // the pair is handled from its other direction
		}
		switch n := amt.Sub(back); n.Sign() {
		case 1:
			out = append(out, Obligation{Debtor: a, Creditor: b, Amount: n})
		case -1:
			out = append(out, Obligation{Debtor: b, Creditor: a, Amount: n.Neg()})
		}
	}
	sortObligations(out)
	return out
}

func sortObligations(os []Obligation) {
	sort.Slice(os, func(i, j int) bool {
		if os[i].Debtor != os[j].Debtor {
			return os[i].Debtor < os[j].Debtor
		}
		return os[i].Creditor < os[j].Creditor
	})
}
