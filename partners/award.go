package partners

import (
	"context"
	"time"

	"github.com/shopspring/decimal"

	"github.com/coalitionledger/coalition/ledger"
)

// AwardInput is points the coalition gives a member (a bonus, goodwill after a
// complaint), issued by the reserved issuer operator.
type AwardInput struct {
	Member MemberRef
	Points decimal.Decimal
	// Reason says why, for the member's statement and the auditor (required).
	Reason string
	// ExpiryDays is how long the points last (nil: they never expire); they expire at the
	// end of that business day, as a partner's do.
	ExpiryDays   *int
	BusinessTime *time.Time // nil: now
	Reference    string
	// Import records older history (DESIGN: the operator may import it): BusinessTime may
	// lie before the business-time window, though never after it.
	Import bool
}

// AwardResult is the answer to an award.
type AwardResult struct {
	Entry    EntryRef      `json:"entry"`
	Points   string        `json:"points"`
	Reason   string        `json:"reason"`
	Member   MemberBalance `json:"member"`
	Lot      *LotRef       `json:"lot"`
	Replayed bool          `json:"-"`
}

// awardMeta is what an award's entry records besides its postings.
type awardMeta struct {
	Reason string `json:"reason"`
}

// maxAwardDays bounds an award's expiry_days (a hundred years).
const maxAwardDays = 36500

// Award issues points to a member from the operator: Dr operator's issued points, Cr the
// member, in a lot like an earn's. When another partner later takes them, the consumption
// leg debits operator:awards (DESIGN). key makes it idempotent: a retry with the same key
// and hash gets the first answer.
func (s *Service) Award(ctx context.Context, key string, hash []byte, in AwardInput) (*AwardResult, error) {
	if in.Reason == "" || len(in.Reason) > ledger.MaxTextLength {
		return nil, invalid("reason", "give the award's reason, 1 to %d bytes", ledger.MaxTextLength)
	}
	if in.ExpiryDays != nil && (*in.ExpiryDays < 1 || *in.ExpiryDays > maxAwardDays) {
		return nil, invalid("expiry_days", "expiry_days is 1 to %d, or leave it out for points that never expire", maxAwardDays)
	}
	bt := s.businessTime(in.BusinessTime)
	if in.Import && in.BusinessTime == nil {
		return nil, invalid("business_time", "an import needs the business_time of the history it records")
	}
	if err := s.Ledger.Window().Check(bt, s.Now(), in.Import); err != nil {
		return nil, err
	}
	c, err := s.Store.Coalition(ctx)
	if err != nil {
		return nil, err
	}
	if err := ledger.CheckAmount(in.Points, c.PointsScale, ledger.Points); err != nil {
		return nil, err.With("field", "points")
	}
	m, err := s.Store.FindMember(ctx, in.Member, s.PhoneRegion)
	if err != nil {
		return nil, err
	}
	expires, err := LotExpiry(c, Contract{ExpiryDays: in.ExpiryDays}, bt)
	if err != nil {
		return nil, err
	}
	posted, replayed, err := s.postOne(ctx, ledger.Entry{
		Kind: ledger.EntryAward, Partner: ledger.OperatorIssuer, Member: m.ID, Reference: in.Reference,
		IdempotencyKey: key, RequestHash: hash, BusinessTime: bt, Import: in.Import,
		Metadata: metadata(entryMeta{Award: &awardMeta{Reason: in.Reason}}),
		Op:       ledger.Issue{Points: in.Points, Issuer: ledger.OperatorIssuer, ExpiresAt: expires},
	})
	if err != nil {
		return nil, err
	}
	out := AwardResultOf(posted)
	out.Replayed = replayed
	return out, nil
}

// AwardResultOf rebuilds an award's answer from its journal entry alone.
func AwardResultOf(p *ledger.Posted) *AwardResult {
	out := &AwardResult{Entry: EntryRef{ID: p.ID, Position: p.Position}, Member: memberOf(p)}
	if meta := readMeta(p); meta.Award != nil {
		out.Reason = meta.Award.Reason
	}
	if p.Lot != nil {
		out.Points = p.Lot.Points.String()
		out.Lot = &LotRef{ID: p.Lot.ID, ExpiresAt: p.Lot.ExpiresAt}
	}
	return out
}
