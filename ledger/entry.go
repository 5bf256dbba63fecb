package ledger

import (
	"encoding/json"
	"time"

	"github.com/shopspring/decimal"
)

// EntryKind says what business event an entry records.
type EntryKind string

// The kinds of journal entry.
const (
	EntryEarn               EntryKind = "earn"
	EntryAward              EntryKind = "award"
	EntryRedemption         EntryKind = "redemption"
	EntryEarnReversal       EntryKind = "earn_reversal"
	EntryRedemptionReversal EntryKind = "redemption_reversal"
	EntryHold               EntryKind = "hold"
	EntryCapture            EntryKind = "capture"
	EntryVoid               EntryKind = "void"
	EntryExpiry             EntryKind = "expiry"
	EntryFee                EntryKind = "fee"
	EntrySettlement         EntryKind = "settlement"
	EntryPayment            EntryKind = "payment"
	EntryAdjustment         EntryKind = "adjustment"
)

var entryKinds = map[EntryKind]bool{
	EntryEarn: true, EntryAward: true, EntryRedemption: true, EntryEarnReversal: true,
	EntryRedemptionReversal: true, EntryHold: true, EntryCapture: true, EntryVoid: true,
	EntryExpiry: true, EntryFee: true, EntrySettlement: true, EntryPayment: true, EntryAdjustment: true,
}

// Limits of one entry and one batch.
const (
	MaxPostings      = 32
	MaxBatch         = 1000
	MaxMetadataBytes = 8 << 10
	MaxTextLength    = 200
)

// Posting is one leg of an entry: a signed amount on an account, debit positive.
type Posting struct {
	Account string          `json:"account"`
	Unit    string          `json:"unit"`
	Amount  decimal.Decimal `json:"amount"`
}

// Debit returns a posting that debits account by amount.
func Debit(account string, amount decimal.Decimal) Posting {
	return Posting{Account: account, Amount: amount}
}

// Credit returns a posting that credits account by amount.
func Credit(account string, amount decimal.Decimal) Posting {
	return Posting{Account: account, Amount: amount.Neg()}
}

// IsDebit reports whether the posting debits its account.
func (p Posting) IsDebit() bool { return p.Amount.IsPositive() }

// Entry is a request to record one business event. Member operations (earn, redeem,
// reverse, expire) name a LotOp and let the engine derive their postings from the
// member's locked lots; other entries (fees, settlement moves, payments) give their
// postings, which may not touch member accounts.
type Entry struct {
	Kind           EntryKind
	Partner        string // the partner the request came from, or "operator"
	Member         string // the member the entry concerns, for member operations
	Reference      string // unique per partner and kind, forever
	IdempotencyKey string // scoped to Partner
	// RequestHash identifies the client's request for idempotency; when nil the engine
	// hashes the entry itself.
	RequestHash  []byte
	BusinessTime time.Time
	// Import lets the operator record history older than the business-time window.
	Import   bool
	Metadata json.RawMessage // a JSON object, or nil
	Reverses string          // the id of the entry this one reverses
	Postings []Posting
	Op       LotOp
	// TermsVersion is the terms version (journal_head.terms_version) the entry was priced
	// at; the engine sends the entry back with ErrTermsChanged, writing nothing, if the
	// version has moved since. Zero: the entry depends on no cached terms.
	TermsVersion int64 `json:"-"`

	// meta is Metadata in canonical form (or metaErr), worked out before the batch's
	// transaction so that the writer does not do it while it holds the journal head.
	meta     json.RawMessage
	metaErr  *Error
	metaDone bool
}

// canonicalMeta returns the entry's metadata in canonical form, or why it is refused.
func (e *Entry) canonicalMeta() (json.RawMessage, *Error) {
	if !e.metaDone {
		e.meta, e.metaErr = canonicalMetadata(e.Metadata)
		e.metaDone = true
	}
	return e.meta, e.metaErr
}

// LotOp is an operation on a member's points lots; the engine resolves it against the
// locked lots into postings and lot movements.
type LotOp interface{ lotOp() }

// Issue credits Points to the member in a new lot issued by Issuer: Dr
// partner:Issuer:issued, Cr member. Any debt the member owes is repaid from it first.
type Issue struct {
	Points    decimal.Decimal
	Issuer    string
	ExpiresAt *time.Time // nil: never
}

// Consume takes Points from the member's available lots, earliest expiry first, on
// behalf of Consumer (a redemption or a capture): Dr member, Cr partner:Consumer:redeemed,
// and for every other issuer whose lots it took, Dr that issuer's settlement account, Cr
// the consumer's, with the issuer's share of round_half_up(Points × Rate).
type Consume struct {
	Points   decimal.Decimal
	Consumer string
	Rate     decimal.Decimal // money per point at the consumer's redeem rate
}

// Clawback reverses Points of the earn that created Lot, on behalf of the lot's issuer
// (zero points records a return that reverses none yet):
// first from the lot's available points, then from the points of the lot that expired
// (out of partner:<issuer>:expired), then from the member's other lots (a consumption by
// the issuer at Rate), and what is still missing becomes the member's debt.
type Clawback struct {
	Lot    string
	Points decimal.Decimal
	Rate   decimal.Decimal // the issuer's redeem rate, for consumption of other issuers' lots
}

// Restore gives Points of an earlier consumption (the entry Of, a redemption) back into
// the lots it took them from, with their original expiry, and reverses the money legs in
// proportion. Points zero restores everything not yet restored.
type Restore struct {
	Of     string
	Points decimal.Decimal
}

// Expire moves the available points of a lot past its expiry to its issuer's expired
// account: Dr member, Cr partner:<issuer>:expired.
type Expire struct {
	Lot string
}

// Reserve holds Points of the member's available lots, earliest expiry first, for
// Consumer until ExpiresAt: Dr member, Cr member:held. Rate is the consumer's redeem rate
// now, at which a capture is priced.
type Reserve struct {
	Points    decimal.Decimal
	Consumer  string
	Rate      decimal.Decimal
	ExpiresAt time.Time
}

// Capture turns Points of an open hold (zero: all of it) into a redemption by the hold's
// partner at the hold's rate, and releases the rest of the hold.
type Capture struct {
	Hold   string
	Points decimal.Decimal
}

// Release gives all the points of an open hold back to the member (a void or a timeout).
type Release struct {
	Hold string
}

func (Reserve) lotOp() {}
func (Capture) lotOp() {}
func (Release) lotOp() {}

func (Issue) lotOp()    {}
func (Consume) lotOp()  {}
func (Clawback) lotOp() {}
func (Restore) lotOp()  {}
func (Expire) lotOp()   {}

// Movement is a change to a lot recorded by an entry: signed points (negative: out of the
// lot), the partner that consumed them, and why.
type Movement struct {
	Lot      string          `json:"lot"`
	Issuer   string          `json:"issuer"`
	Points   decimal.Decimal `json:"points"`
	Consumer string          `json:"consumer"`
	Reason   string          `json:"reason"`
	// Rate is the consumer's money per point for a consumption (redeem, clawback, debt):
	// the terms its money legs, and any later reversal of them, follow from.
	Rate decimal.Decimal `json:"rate"`
	// ExpiresAt is the new lot's expiry, on the movement that creates it.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// Reasons of lot movements.
const (
	ReasonEarn     = "earn"     // a lot is created
	ReasonRedeem   = "redeem"   // consumed by a redemption or capture
	ReasonReversal = "reversal" // taken back by the reversal of the lot's own earn
	ReasonClawback = "clawback" // taken from another lot by an earn reversal
	ReasonDebt     = "debt"     // taken to repay a member's debt
	ReasonRestore  = "restore"  // given back by a redemption reversal
	ReasonExpire   = "expire"   // expired to breakage
	ReasonUnexpire = "unexpire" // expired points taken back out of breakage by a reversal
)

// Lot is a member's parcel of points from one earn.
type Lot struct {
	ID        string          `json:"id"`
	Member    string          `json:"member"`
	Issuer    string          `json:"issuer"`
	Entry     string          `json:"entry"`
	Position  int64           `json:"position"`
	Points    decimal.Decimal `json:"points"`
	Remaining decimal.Decimal `json:"remaining"`
	Held      decimal.Decimal `json:"held"`
	Expired   decimal.Decimal `json:"expired"`
	ExpiresAt *time.Time      `json:"expires_at"`
	// BusinessDay is the date of the earn's business time in the coalition's time zone
	// ("2006-01-02"), the day its points count towards the member's tier.
	BusinessDay string `json:"business_day,omitempty"`
}

// Available returns the lot's points that are neither held nor gone.
func (l *Lot) Available() decimal.Decimal { return l.Remaining.Sub(l.Held) }

// Debt is points a clawback took that the member did not have, owed to Partner.
type Debt struct {
	ID          string          `json:"id"`
	Member      string          `json:"member"`
	Partner     string          `json:"partner"`
	Entry       string          `json:"entry"`
	Position    int64           `json:"position"`
	Points      decimal.Decimal `json:"points"`
	Outstanding decimal.Decimal `json:"outstanding"`
	Rate        decimal.Decimal `json:"rate"`
}

// Hold is points reserved for a partner until captured, voided or timed out.
type Hold struct {
	ID        string          `json:"id"`
	Member    string          `json:"member"`
	Partner   string          `json:"partner"`
	Entry     string          `json:"entry"`
	Position  int64           `json:"position"`
	Points    decimal.Decimal `json:"points"`
	Held      decimal.Decimal `json:"held"`
	Rate      decimal.Decimal `json:"rate"`
	ExpiresAt time.Time       `json:"expires_at"`
	Status    string          `json:"status"`
}

// Expired reports whether the hold is open past its expiry at now: it can then only be
// voided, by its partner or by the timeout job.
func (h *Hold) Expired(now time.Time) bool { return h.Status == HoldOpen && now.After(h.ExpiresAt) }

// Hold statuses.
const (
	HoldOpen     = "open"
	HoldCaptured = "captured"
	HoldVoided   = "voided"
)

// Posted is an entry as the journal holds it.
type Posted struct {
	ID           string          `json:"id"`
	Position     int64           `json:"position"`
	Kind         EntryKind       `json:"kind"`
	Partner      string          `json:"partner"`
	Member       string          `json:"member,omitempty"`
	Reference    string          `json:"reference,omitempty"`
	BusinessTime time.Time       `json:"business_time"`
	RecordedAt   time.Time       `json:"recorded_at"`
	Metadata     json.RawMessage `json:"metadata"`
	Reverses     string          `json:"reverses,omitempty"`
	Postings     []Posting       `json:"postings"`
	Movements    []Movement      `json:"lot_movements"`
	PrevHash     []byte          `json:"prev_hash"`
	Hash         []byte          `json:"hash"`

	// What the entry did to its member, for the answer to the client.
	Lot           *Lot             `json:"lot,omitempty"`
	Hold          *Hold            `json:"hold,omitempty"`
	MemberBalance *decimal.Decimal `json:"member_balance,omitempty"`
	MemberHeld    *decimal.Decimal `json:"member_held,omitempty"`
}

// Result is the answer to one entry of a batch: the posted entry or the rule that refused
// it. Replayed is set when the answer is the stored first answer to the same
// idempotency key.
type Result struct {
	Entry    *Posted `json:"entry,omitempty"`
	Err      *Error  `json:"error,omitempty"`
	Replayed bool    `json:"-"`
}
