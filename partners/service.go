package partners

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/shopspring/decimal"

	"github.com/coalitionledger/coalition/ledger"
)

// Service runs the partners' operations: it resolves members, contracts and tiers, prices
// each request with the pure rules of this package, and posts the result through the
// ledger. It holds no state of its own.
type Service struct {
	Store  *Store
	Ledger *ledger.Ledger
	// Writer, when set, is the group-commit writer every single write posts through;
	// nil: each posts its own transaction with Ledger.Post.
	Writer *ledger.Writer
	Now    func() time.Time
	// PhoneRegion is the region of phone numbers written without a country code.
	PhoneRegion string
	// HoldDefault and HoldMax bound a hold's expires_in.
	HoldDefault, HoldMax time.Duration
}

// NewService returns a service with DESIGN's defaults: holds of 15 minutes, at most a day.
func NewService(store *Store, l *ledger.Ledger, now func() time.Time) *Service {
	return &Service{Store: store, Ledger: l, Now: now, PhoneRegion: "US", HoldDefault: 15 * time.Minute, HoldMax: 24 * time.Hour}
}

// Request is what every write carries besides its body: the partner it acts for, its
// idempotency key and a hash of the request body.
type Request struct {
	Partner        string
	IdempotencyKey string
	RequestHash    []byte
	// Terms, if set, are the partner's terms read once for many requests (the items of
	// one batch); nil: each request reads them.
	Terms *Terms
	// Reauthorize, if set, checks again that the request may act (its API key is still
	// live) before it is priced again because the terms changed under it: the change may
	// be the key's revocation.
	Reauthorize func(context.Context) error
}

// Terms are a partner, the coalition's settings and the partner's contract versions, as
// read at one moment, and the terms version they were read at. They are shared (the
// cache hands the same Terms to many requests): never change one.
type Terms struct {
	Partner   Partner
	Coalition Coalition
	Versions  []ContractVersion
	Version   int64
}

// ReadTerms returns a partner's terms: from the cache when the store has one, else read
// in one round trip.
func (s *Service) ReadTerms(ctx context.Context, partner string) (*Terms, error) {
	return s.Store.Terms(ctx, partner)
}

// EarnInput is an earn at a partner.
type EarnInput struct {
	Member       MemberRef
	Purchase     Purchase
	BusinessTime *time.Time // nil: now
	Reference    string
	// Metadata is the partner's own, a JSON object kept in the entry's metadata as client.
	Metadata json.RawMessage
}

// MemberBalance is a member and its balance after an operation.
type MemberBalance struct {
	ID      string          `json:"id"`
	Balance decimal.Decimal `json:"balance"`
	Held    decimal.Decimal `json:"held"`
}

// EntryRef names a journal entry in an answer.
type EntryRef struct {
	ID       string `json:"id"`
	Position int64  `json:"position"`
}

// LotRef is the lot an earn created.
type LotRef struct {
	ID        string     `json:"id"`
	ExpiresAt *time.Time `json:"expires_at"`
}

// EarnResult is the answer to an earn. Entry and Lot are nil when the purchase earned no
// points (under the contract's minimum): nothing was posted.
type EarnResult struct {
	Entry   *EntryRef     `json:"entry"`
	Points  string        `json:"points"`
	Member  MemberBalance `json:"member"`
	Lot     *LotRef       `json:"lot"`
	Pricing Price         `json:"pricing"`
	// Enrolled says the earn enrolled the member; the journal does not record it, so a
	// replay's answer (rebuilt from the journal) cannot say it, and the API leaves it out.
	Enrolled bool `json:"-"`
	Replayed bool `json:"-"`
}

// entryMeta is what a partner entry records of its terms: everything needed to recompute it.
type entryMeta struct {
	// Client is the partner's own metadata of the request, kept as it sent it.
	Client     json.RawMessage  `json:"client,omitempty"`
	Award      *awardMeta       `json:"award,omitempty"`
	Pricing    *Price           `json:"pricing,omitempty"`
	Redemption *RedemptionPrice `json:"redemption,omitempty"`
	Returned   *decimal.Decimal `json:"returned_amount,omitempty"`
}

// businessTime is the request's business time, or now, at the journal's microseconds.
func (s *Service) businessTime(t *time.Time) time.Time {
	if t == nil {
		return s.Now().UTC().Truncate(time.Microsecond)
	}
	return t.UTC().Truncate(time.Microsecond)
}

// activeTerms refuses a request for an unknown or suspended partner and returns the
// coalition's settings, the partner's contract in force at t and the terms version.
func (s *Service) activeTerms(ctx context.Context, r Request, t time.Time) (Coalition, Contract, int64, error) {
	terms, err := s.activePartnerTerms(ctx, r)
	if err != nil {
		return Coalition{}, Contract{}, 0, err
	}
	c, k, err := contractIn(terms.Coalition, terms.Versions, t)
	return c, k, terms.Version, err
}

// maxRepricing bounds how many times one request is priced: again each time the writer
// sends its entry back because the terms changed under it.
const maxRepricing = 3

// repriced runs op on r, and again on fresh terms while its entry comes back with
// ledger.ErrTermsChanged (after checking, with r.Reauthorize, that it may still act).
func repriced[T any](ctx context.Context, r Request, op func(Request) (T, error)) (T, error) {
	for attempt := 1; ; attempt++ {
		out, err := op(r)
		if !errors.Is(err, ledger.ErrTermsChanged) || attempt == maxRepricing {
			return out, err
		}
		if r.Reauthorize != nil {
			if err := r.Reauthorize(ctx); err != nil {
				var zero T
				return zero, err
			}
		}
		r.Terms = nil
	}
}

// activePartnerTerms returns the request's terms (read in one round trip unless the
// request carries them) and refuses an unknown or suspended partner.
func (s *Service) activePartnerTerms(ctx context.Context, r Request) (*Terms, error) {
	terms, err := s.partnerTerms(ctx, r)
	if err != nil {
		return nil, err
	}
	if err := terms.refuseSuspended(); err != nil {
		return nil, err
	}
	return terms, nil
}

// refuseSuspended refuses a write of a partner that is not active.
func (t *Terms) refuseSuspended() error {
	if t.Partner.Status != StatusActive {
		return ledger.Errorf(CodePartnerSuspended, "partner %s is suspended: its writes are refused until the operator makes it active again (its open holds can still be voided)", t.Partner.ID)
	}
	return nil
}

// partnerTerms returns the request's terms: those it carries, or the partner's read now.
func (s *Service) partnerTerms(ctx context.Context, r Request) (*Terms, error) {
	if r.Terms != nil && r.Terms.Partner.ID == r.Partner {
		return r.Terms, nil
	}
	return s.ReadTerms(ctx, r.Partner)
}

// contractIn picks the contract version in force at t, with the coalition's defaults.
func contractIn(c Coalition, versions []ContractVersion, t time.Time) (Coalition, Contract, error) {
	terms := make([]Contract, len(versions))
	for i, v := range versions {
		terms[i] = v.Contract
		terms[i].version = v.Version
	}
	k, err := ContractAt(terms, t)
	if err != nil {
		return Coalition{}, Contract{}, err
	}
	return c, k.WithDefaults(c), nil
}

// Tier returns the tier an earn at business time t would get: from the member's net
// points earned over the business days D−365 … D−1.
func (s *Service) Tier(ctx context.Context, c Coalition, member string, t time.Time) (Tier, bool, error) {
	from, to, err := tierDays(c, t)
	if err != nil {
		return Tier{}, false, err
	}
	earned, err := s.Ledger.EarnedBetween(ctx, member, from, to)
	if err != nil {
		return Tier{}, false, err
	}
	tier, ok := c.TierFor(earned)
	return tier, ok, nil
}

// tierDays returns the business days [from, to) whose points set the tier of an earn at
// t: D−365 … D−1, as dates in the coalition's time zone.
func tierDays(c Coalition, t time.Time) (from, to string, err error) {
	loc, err := c.Location()
	if err != nil {
		return "", "", err
	}
	// Calendar arithmetic on the date alone: AddDate on a local time lands a day early
	// when the date 365 days back has no midnight (a daylight-saving change at 00:00).
	y, m, d := t.In(loc).Date()
	return time.Date(y, m, d-365, 0, 0, 0, 0, time.UTC).Format(time.DateOnly), time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Format(time.DateOnly), nil
}

func metadata(m entryMeta) json.RawMessage {
	raw, _ := json.Marshal(m)
	return raw
}

func readMeta(p *ledger.Posted) entryMeta {
	var m entryMeta
	_ = json.Unmarshal(p.Metadata, &m)
	return m
}

func memberOf(p *ledger.Posted) MemberBalance {
	mb := MemberBalance{ID: p.Member}
	if p.MemberBalance != nil {
		mb.Balance = *p.MemberBalance
	}
	if p.MemberHeld != nil {
		mb.Held = *p.MemberHeld
	}
	return mb
}

// Earn prices a purchase at the partner and credits the points to the member, enrolling
// an unknown phone or card on the spot.
func (s *Service) Earn(ctx context.Context, r Request, in EarnInput) (*EarnResult, error) {
	return repriced(ctx, r, func(r Request) (*EarnResult, error) {
		e, res, err := s.EarnEntry(ctx, r, in)
		if err != nil || e == nil {
			return res, err
		}
		posted, replayed, err := s.postOne(ctx, *e)
		if err != nil {
			return nil, err
		}
		out := EarnResultOf(posted)
		out.Enrolled, out.Replayed = res.Enrolled, replayed
		return out, nil
	})
}

// EarnEntry builds the journal entry of an earn without posting it. A purchase that
// earns nothing returns no entry and its answer.
func (s *Service) EarnEntry(ctx context.Context, r Request, in EarnInput) (*ledger.Entry, *EarnResult, error) {
	out, err := s.PriceEntries(ctx, []PriceItem{{Request: r, Earn: &in}})
	if err != nil {
		return nil, nil, err
	}
	p := out[0]
	if p.Err != nil {
		return nil, nil, p.Err
	}
	if p.Entry == nil {
		return nil, p.Zero, nil
	}
	return p.Entry, &EarnResult{Enrolled: p.Enrolled}, nil
}

// PriceItem is an earn or a redemption to price: exactly one of Earn and Redeem is set.
type PriceItem struct {
	Request Request
	Earn    *EarnInput
	Redeem  *RedeemInput
}

// Priced is an item priced: the journal entry to post; for an earn that earns nothing,
// no entry and its answer (Zero); or the refusal (Err, an *ledger.Error), which was
// decided before the engine and is to be stored as the item's first answer.
type Priced struct {
	Entry    *ledger.Entry
	Zero     *EarnResult
	Enrolled bool // the earn enrolled its member
	Err      error
}

// MaxPriceItems bounds the items PriceEntries prices at once.
const MaxPriceItems = ledger.MaxBatch

// PriceEntries prices earns and redemptions without posting them, the members of all of
// them resolved in one round trip (and enrolled: an earn for an unknown phone or card
// enrols it, once however many items name it, unless the earn is refused). Each item is
// answered on its own; the error is a failure of them all (nothing was enrolled).
func (s *Service) PriceEntries(ctx context.Context, items []PriceItem) ([]Priced, error) {
	if len(items) > MaxPriceItems {
		return nil, ledger.Errorf(ledger.CodeBatchTooLarge, "at most %d items are priced at once, not %d", MaxPriceItems, len(items))
	}
	out := make([]Priced, len(items))
	type plan struct {
		bt       time.Time
		c        Coalition
		k        Contract
		version  int64
		newPrice Price
		newErr   error
	}
	plans := make([]plan, len(items))
	var lookups []memberLookup
	var lookupOf []int // item of each lookup
	for i, it := range items {
		p := &plans[i]
		var ref MemberRef
		var bt *time.Time
		switch {
		case it.Earn != nil:
			ref, bt = it.Earn.Member, it.Earn.BusinessTime
		case it.Redeem != nil:
			ref, bt = it.Redeem.Member, it.Redeem.BusinessTime
		default:
			return nil, errors.New("price entries: an item is neither an earn nor a redemption")
		}
		p.bt = s.businessTime(bt)
		// The window first: a request dated outside it hears so (not that no contract was
		// in force then), and enrols nobody. The ledger checks it again under its lock.
		if err := s.Ledger.Window().Check(p.bt, s.Now(), false); err != nil {
			out[i].Err = err
			continue
		}
		var err error
		if p.c, p.k, p.version, err = s.activeTerms(ctx, it.Request, p.bt); err != nil {
			out[i].Err = err
			continue
		}
		if ref, err = ref.normalize(s.PhoneRegion); err != nil {
			out[i].Err = err
			continue
		}
		l := memberLookup{ref: ref}
		if it.Earn != nil {
			// The price as a new member (no tier history) comes first: it says whether an
			// unknown phone or card is enrolled (a refused earn enrols nobody), and the
			// member, its tier and the enrolment then take one round trip. An earn that
			// posts answers only after its entry's synchronous commit, which makes the
			// enrolment durable too; one that earns nothing posts nothing, so its enrolment
			// must wait for its own flush.
			newMult := decimal.NewFromInt(1)
			if tier, ok := p.c.TierFor(decimal.Zero); ok {
				newMult = tier.Multiplier
			}
			p.newPrice, p.newErr = PriceEarn(p.c, p.k, it.Earn.Purchase, newMult, p.bt)
			if l.from, l.to, err = tierDays(p.c, p.bt); err != nil {
				out[i].Err = err
				continue
			}
			l.enrol, l.durable = p.newErr == nil, !p.newPrice.Points.IsPositive()
			l.partner, l.reference = it.Request.Partner, it.Earn.Reference
		}
		lookups, lookupOf = append(lookups, l), append(lookupOf, i)
	}
	if len(lookups) == 0 {
		return out, nil
	}
	members, err := s.Store.resolveMembers(ctx, lookups)
	if err != nil {
		return nil, err
	}
	// The points each member earns in this run, by business day: a later earn's tier counts
	// the ones on its tier's days, as it would had they been posted one by one.
	type dayPoints struct {
		day    string
		points decimal.Decimal
	}
	earnedInRun := map[string][]dayPoints{}
	// An earn the writer will refuse for its reference (used before, or earlier in this
	// run) raises no later earn's tier. Only a member with two earns in the run needs to
	// know.
	usedRefs, err := s.usedRunReferences(ctx, items, members, lookupOf)
	if err != nil {
		return nil, err
	}
	for j, m := range members {
		i := lookupOf[j]
		if items[i].Earn != nil {
			if m.ID == "" && lookups[j].ref.ID != "" {
				out[i].Err = ledger.Errorf(ledger.CodeNotFound, "no member is known by %s", lookups[j].ref).With("field", "member")
				continue
			}
			for _, dp := range earnedInRun[m.ID] {
				if dp.day >= lookups[j].from && dp.day < lookups[j].to {
					m.earned, m.enrolled = m.earned.Add(dp.points), false // priced on its tier, not as new
				}
			}
			out[i] = s.priceEarn(ctx, items[i].Request, *items[i].Earn, plans[i].bt, plans[i].c, plans[i].k, plans[i].version,
				plans[i].newPrice, plans[i].newErr, m)
			ref := usedRef{items[i].Request.Partner, items[i].Earn.Reference}
			if ref.reference != "" {
				if usedRefs[ref] {
					continue
				}
				if out[i].Entry != nil {
					usedRefs[ref] = true
				}
			}
			if e := out[i].Entry; e != nil && m.ID != "" {
				if loc, err := plans[i].c.Location(); err == nil {
					earnedInRun[m.ID] = append(earnedInRun[m.ID], dayPoints{e.BusinessTime.In(loc).Format(time.DateOnly), e.Op.(ledger.Issue).Points})
				}
			}
			continue
		}
		in := items[i].Redeem
		if m.ID == "" {
			out[i].Err = ledger.Errorf(ledger.CodeNotFound, "no member is known by %s", lookups[j].ref).With("field", "member")
			continue
		}
		price, err := PriceRedemption(plans[i].c, plans[i].k, Redeem{Points: in.Points, Value: in.Value}, in.PurchaseAmount)
		if err != nil {
			out[i].Err = err
			continue
		}
		r := items[i].Request
		out[i].Entry = &ledger.Entry{
			Kind: ledger.EntryRedemption, Partner: r.Partner, Member: m.ID, Reference: in.Reference,
			IdempotencyKey: r.IdempotencyKey, RequestHash: r.RequestHash, BusinessTime: plans[i].bt,
			Metadata:     metadata(entryMeta{Redemption: &price}),
			Op:           ledger.Consume{Points: price.Points, Consumer: r.Partner, Rate: price.RedeemRate},
			TermsVersion: plans[i].version,
		}
	}
	return out, nil
}

// usedRunReferences are the earn references of PriceEntries' items that their partners
// already used, among the earns of members who earn more than once in the run.
func (s *Service) usedRunReferences(ctx context.Context, items []PriceItem, members []resolvedMember, lookupOf []int) (map[usedRef]bool, error) {
	earns := map[string]int{}
	for j, m := range members {
		if items[lookupOf[j]].Earn != nil && m.ID != "" {
			earns[m.ID]++
		}
	}
	var refs []usedRef
	for j, m := range members {
		if it := items[lookupOf[j]]; it.Earn != nil && earns[m.ID] > 1 && it.Earn.Reference != "" {
			refs = append(refs, usedRef{it.Request.Partner, it.Earn.Reference})
		}
	}
	return s.Store.usedEarnReferences(ctx, refs)
}

// priceEarn prices an earn for its resolved member: at the new member's price when the
// member is new (enrolled now) or unknown, else at its tier's.
func (s *Service) priceEarn(ctx context.Context, r Request, in EarnInput, bt time.Time, c Coalition, k Contract, version int64,
	newPrice Price, newErr error, m resolvedMember) Priced {
	price := newPrice
	switch {
	case m.usedReference:
		return Priced{Err: ledger.DuplicateReference(r.Partner, ledger.EntryEarn, in.Reference)}
	case m.ID == "" && newErr == nil:
		// resolveMembers enrols every unknown phone or card whose new price stands.
		return Priced{Err: fmt.Errorf("earn for %s: the member was neither found nor enrolled", in.Member)}
	case m.ID == "" || m.enrolled:
		if newErr != nil {
			// Unknown and not enrolled (or enrolled by another item): the new member's
			// price was refused.
			return Priced{Err: newErr}
		}
	default:
		mult := decimal.NewFromInt(1)
		if tier, ok := c.TierFor(m.earned); ok {
			mult = tier.Multiplier
		}
		var err error
		if price, err = PriceEarn(c, k, in.Purchase, mult, bt); err != nil {
			return Priced{Err: err}
		}
	}
	if !price.Points.IsPositive() {
		bal, err := s.Ledger.Balance(ctx, ledger.MemberAccount(m.ID))
		if err != nil {
			return Priced{Err: err}
		}
		held, err := s.Ledger.Balance(ctx, ledger.MemberHeldAccount(m.ID))
		if err != nil {
			return Priced{Err: err}
		}
		return Priced{Zero: &EarnResult{Points: price.Points.String(), Member: MemberBalance{ID: m.ID, Balance: bal.Neg(), Held: held.Neg()},
			Pricing: price, Enrolled: m.enrolled}, Enrolled: m.enrolled}
	}
	return Priced{Enrolled: m.enrolled, Entry: &ledger.Entry{
		Kind: ledger.EntryEarn, Partner: r.Partner, Member: m.ID, Reference: in.Reference,
		IdempotencyKey: r.IdempotencyKey, RequestHash: r.RequestHash, BusinessTime: bt,
		Metadata:     metadata(entryMeta{Client: in.Metadata, Pricing: &price}),
		Op:           ledger.Issue{Points: price.Points, Issuer: r.Partner, ExpiresAt: price.ExpiresAt},
		TermsVersion: version,
	}}
}

// EarnResultOf rebuilds an earn's answer from its journal entry alone, so that a replay
// answers exactly as the first request was answered.
func EarnResultOf(p *ledger.Posted) *EarnResult {
	meta := readMeta(p)
	out := &EarnResult{Entry: &EntryRef{ID: p.ID, Position: p.Position}, Member: memberOf(p)}
	if meta.Pricing != nil {
		out.Pricing = *meta.Pricing
		out.Points = meta.Pricing.Points.String()
	}
	if p.Lot != nil {
		out.Lot = &LotRef{ID: p.Lot.ID, ExpiresAt: p.Lot.ExpiresAt}
	}
	return out
}

// postOne posts one entry, through the group-commit writer when there is one, and
// returns it, whether it was a replay, or the refusal.
func (s *Service) postOne(ctx context.Context, e ledger.Entry) (*ledger.Posted, bool, error) {
	var res ledger.Result
	if s.Writer != nil {
		r, err := s.Writer.Post(ctx, e)
		if err != nil {
			return nil, false, err
		}
		res = r
	} else {
		r, err := s.Ledger.Post(ctx, []ledger.Entry{e})
		if err != nil {
			return nil, false, err
		}
		res = r[0]
	}
	if res.TermsChanged() {
		return nil, false, ledger.ErrTermsChanged
	}
	if res.Err != nil {
		return nil, res.Replayed, res.Refusal()
	}
	return res.Entry, res.Replayed, nil
}

// RedeemInput is a redemption at a partner: by points or by the money value wanted.
type RedeemInput struct {
	Member         MemberRef
	Points         decimal.Decimal // zero: by value
	Value          decimal.Decimal // zero: by points
	PurchaseAmount *decimal.Decimal
	BusinessTime   *time.Time
	Reference      string
}

// RedeemResult is the answer to a redemption.
type RedeemResult struct {
	Entry    EntryRef         `json:"entry"`
	Points   string           `json:"points"`
	Value    Money            `json:"value"`
	Member   MemberBalance    `json:"member"`
	Pricing  *RedemptionPrice `json:"pricing,omitempty"`
	Replayed bool             `json:"-"`
}

// RedeemEntry builds the journal entry of a redemption without posting it.
func (s *Service) RedeemEntry(ctx context.Context, r Request, in RedeemInput) (*ledger.Entry, error) {
	out, err := s.PriceEntries(ctx, []PriceItem{{Request: r, Redeem: &in}})
	if err != nil {
		return nil, err
	}
	return out[0].Entry, out[0].Err
}

// Redeem takes points from the member in payment at the partner.
func (s *Service) Redeem(ctx context.Context, r Request, in RedeemInput) (*RedeemResult, error) {
	return repriced(ctx, r, func(r Request) (*RedeemResult, error) {
		e, err := s.RedeemEntry(ctx, r, in)
		if err != nil {
			return nil, err
		}
		posted, replayed, err := s.postOne(ctx, *e)
		if err != nil {
			return nil, err
		}
		out := RedeemResultOf(posted)
		out.Replayed = replayed
		return out, nil
	})
}

// RedeemResultOf rebuilds a redemption's (or a capture's) answer from its entry.
func RedeemResultOf(p *ledger.Posted) *RedeemResult {
	meta := readMeta(p)
	out := &RedeemResult{Entry: EntryRef{ID: p.ID, Position: p.Position}, Member: memberOf(p), Pricing: meta.Redemption}
	pts := decimal.Zero
	for _, m := range p.Movements {
		if m.Reason == ledger.ReasonRedeem {
			pts = pts.Sub(m.Points)
		}
	}
	out.Points = pts.String()
	if meta.Redemption != nil {
		out.Value = Money{Amount: ledger.RoundHalfUp(meta.Redemption.RedeemRate.Mul(pts), valueScale(meta.Redemption)), Currency: meta.Redemption.Value.Currency}
	}
	return out
}

// valueScale is the minor-unit scale of a priced redemption's currency.
func valueScale(p *RedemptionPrice) int32 {
	scale, err := ledger.CurrencyScale(p.Value.Currency)
	if err != nil {
		return 2
	}
	return scale
}

// HoldInput reserves points at a partner until they are captured or voided.
type HoldInput struct {
	Member         MemberRef
	Points         decimal.Decimal
	Value          decimal.Decimal
	PurchaseAmount *decimal.Decimal
	ExpiresIn      time.Duration // zero: the default
	BusinessTime   *time.Time
	Reference      string
}

// HoldResult is the answer to a hold, a capture or a void.
type HoldResult struct {
	Entry    EntryRef      `json:"entry"`
	Hold     HoldView      `json:"hold"`
	Points   string        `json:"points,omitempty"` // captured
	Value    *Money        `json:"value,omitempty"`  // of the captured points
	Member   MemberBalance `json:"member"`
	Replayed bool          `json:"-"`
}

// HoldView is a hold as the API shows it.
type HoldView struct {
	ID        string          `json:"id"`
	Points    decimal.Decimal `json:"points"`
	Held      decimal.Decimal `json:"held"`
	Status    string          `json:"status"`
	ExpiresAt time.Time       `json:"expires_at"`
}

// HoldViewOf is h as the API shows it.
func HoldViewOf(h *ledger.Hold) HoldView {
	return HoldView{ID: h.ID, Points: h.Points, Held: h.Held, Status: h.Status, ExpiresAt: h.ExpiresAt}
}

// HoldResultOf rebuilds the answer to a hold, capture or void from its entry; currency is
// the coalition's, in which a capture's value is stated (a capture of the partner's own
// points has no money legs to tell it).
func HoldResultOf(p *ledger.Posted, currency string) *HoldResult {
	out := &HoldResult{Entry: EntryRef{ID: p.ID, Position: p.Position}, Member: memberOf(p)}
	if p.Hold != nil {
		out.Hold = HoldViewOf(p.Hold)
	}
	if p.Kind == ledger.EntryCapture && p.Hold != nil {
		pts := decimal.Zero
		for _, m := range p.Movements {
			if m.Reason == ledger.ReasonRedeem {
				pts = pts.Sub(m.Points)
			}
		}
		scale, _ := ledger.CurrencyScale(currency)
		out.Points = pts.String()
		out.Value = &Money{Amount: ledger.RoundHalfUp(pts.Mul(p.Hold.Rate), scale), Currency: currency}
	}
	return out
}

// Hold reserves points for the partner; a capture turns them into a redemption at the
// hold's price (DESIGN: "a capture is priced at the hold's time").
func (s *Service) Hold(ctx context.Context, r Request, in HoldInput) (*HoldResult, error) {
	bt := s.businessTime(in.BusinessTime)
	expiresIn := in.ExpiresIn
	if expiresIn == 0 {
		expiresIn = s.HoldDefault
	}
	if expiresIn < 0 || expiresIn > s.HoldMax {
		return nil, ledger.Errorf(ledger.CodeInvalid, "expires_in must be 1 to %d seconds (%s)", int64(s.HoldMax/time.Second), ledger.Span(s.HoldMax)).With("field", "expires_in")
	}
	return repriced(ctx, r, func(r Request) (*HoldResult, error) {
		// A hold is priced as the redemption its capture will be, and reserves instead.
		e, err := s.RedeemEntry(ctx, r, RedeemInput{Member: in.Member, Points: in.Points, Value: in.Value,
			PurchaseAmount: in.PurchaseAmount, BusinessTime: &bt, Reference: in.Reference})
		if err != nil {
			return nil, err
		}
		consume := e.Op.(ledger.Consume)
		e.Kind = ledger.EntryHold
		e.Op = ledger.Reserve{Points: consume.Points, Consumer: consume.Consumer, Rate: consume.Rate, ExpiresAt: s.Now().UTC().Add(expiresIn)}
		posted, replayed, err := s.postOne(ctx, *e)
		if err != nil {
			return nil, err
		}
		out := HoldResultOf(posted, "") // a hold has no value yet: its capture has
		out.Replayed = replayed
		return out, nil
	})
}

// Capture turns points of an open hold (zero: all of it) into a redemption at the hold's
// price and releases the rest.
func (s *Service) Capture(ctx context.Context, r Request, holdID string, points decimal.Decimal) (*HoldResult, error) {
	return s.settleHold(ctx, r, holdID, ledger.EntryCapture, ledger.Capture{Hold: holdID, Points: points})
}

// Void gives all the points of an open hold back.
func (s *Service) Void(ctx context.Context, r Request, holdID string) (*HoldResult, error) {
	return s.settleHold(ctx, r, holdID, ledger.EntryVoid, ledger.Release{Hold: holdID})
}

func (s *Service) settleHold(ctx context.Context, r Request, holdID string, kind ledger.EntryKind, op ledger.LotOp) (*HoldResult, error) {
	return repriced(ctx, r, func(r Request) (*HoldResult, error) {
		terms, err := s.partnerTerms(ctx, r)
		if err == nil && kind != ledger.EntryVoid {
			// A void only gives the member's points back: a suspended partner may still
			// release what its tills hold rather than keep them held until the timeout.
			err = terms.refuseSuspended()
		}
		if err != nil {
			return nil, err
		}
		h, err := s.Ledger.HoldOf(ctx, r.Partner, holdID)
		if err != nil {
			return nil, err
		}
		// The hold's own entry: its reference, which the capture or void carries too (so
		// that the partner finds, and reverses, a redemption made as a hold by the
		// reference it gave), and its business time, at which a capture is priced.
		held, err := s.Ledger.Entry(ctx, h.Entry)
		if err != nil {
			return nil, err
		}
		if c, ok := op.(ledger.Capture); ok && c.Points.IsPositive() && h.Status == ledger.HoldOpen {
			if err := s.checkCapture(terms, held, c.Points); err != nil {
				return nil, err
			}
		}
		posted, replayed, err := s.postOne(ctx, ledger.Entry{
			Kind: kind, Partner: r.Partner, Member: h.Member, Reference: held.Reference, IdempotencyKey: r.IdempotencyKey,
			RequestHash: r.RequestHash, BusinessTime: s.Now().UTC(), Op: op, TermsVersion: terms.Version,
			Metadata: ledger.HoldMetadata(holdID),
		})
		if err != nil {
			return nil, err
		}
		out := HoldResultOf(posted, terms.Coalition.Currency)
		out.Replayed = replayed
		return out, nil
	})
}

// checkCapture holds a partial capture to the redemption rules of the contract in force
// when the hold was made, the time a capture is priced at.
func (s *Service) checkCapture(terms *Terms, hold *ledger.Posted, points decimal.Decimal) error {
	c, k, err := contractIn(terms.Coalition, terms.Versions, hold.BusinessTime)
	if err != nil {
		return err
	}
	return CheckCapture(c, k, points)
}

// ReverseInput reverses an earlier earn or redemption of the partner, whole or in part.
// The original is named by entry id or by its reference.
type ReverseInput struct {
	Entry     string
	Reference string // the original's reference, with Kind
	Kind      ledger.EntryKind
	// Amount is the part of the purchase returned (an earn reversal); zero: all of it.
	Amount decimal.Decimal
	// Points is the part of a redemption given back; zero: all that is left.
	Points       decimal.Decimal
	NewReference string
	// BusinessTime is when the return happened (a till that uploads late); nil: now. It
	// must lie within the business-time window and not before the original.
	BusinessTime *time.Time
}

// ReverseResult is the answer to a reversal.
type ReverseResult struct {
	Entry    EntryRef      `json:"entry"`
	Reverses string        `json:"reverses"`
	Points   string        `json:"points"`
	Member   MemberBalance `json:"member"`
	Replayed bool          `json:"-"`
}

// Reverse reverses an earn (points back pro rata to the returned part of the purchase,
// cumulatively) or a redemption or capture (points back into their lots).
func (s *Service) Reverse(ctx context.Context, r Request, in ReverseInput) (*ReverseResult, error) {
	return repriced(ctx, r, func(r Request) (*ReverseResult, error) { return s.reverse(ctx, r, in) })
}

func (s *Service) reverse(ctx context.Context, r Request, in ReverseInput) (*ReverseResult, error) {
	terms, err := s.activePartnerTerms(ctx, r)
	if err != nil {
		return nil, err
	}
	var orig *ledger.Posted
	switch {
	case in.Entry != "":
		orig, err = s.Ledger.Entry(ctx, in.Entry)
	case in.Reference != "":
		orig, err = s.Ledger.EntryByReference(ctx, r.Partner, in.Kind, in.Reference)
		if in.Kind == ledger.EntryRedemption && ledger.ErrorCode(err) == ledger.CodeNotFound {
			// A redemption made as a hold is its capture, which carries the hold's reference.
			if c, cerr := s.Ledger.EntryByReference(ctx, r.Partner, ledger.EntryCapture, in.Reference); cerr == nil {
				orig, err = c, nil
			}
		}
	default:
		err = ledger.Errorf(ledger.CodeInvalid, "name the entry to reverse by entry or by reference").With("field", "entry")
	}
	if err != nil {
		return nil, err
	}
	if orig.Partner != r.Partner {
		return nil, ledger.Errorf(ledger.CodeNotFound, "entry %s of partner %s does not exist", orig.ID, r.Partner)
	}
	if bt := s.businessTime(in.BusinessTime); bt.Before(orig.BusinessTime) {
		return nil, ledger.Errorf(ledger.CodeInvalid, "a return cannot happen before its purchase: business_time %s is before the original's, %s",
			bt.Format(time.RFC3339), orig.BusinessTime.UTC().Format(time.RFC3339)).With("field", "business_time")
	}
	// The window before the contract: a reversal dated outside it hears so, not that no
	// contract was in force then. The ledger checks it again under its lock.
	if err := s.Ledger.Window().Check(s.businessTime(in.BusinessTime), s.Now(), false); err != nil {
		return nil, err
	}
	e := ledger.Entry{Partner: r.Partner, Member: orig.Member, Reference: in.NewReference, Reverses: orig.ID,
		IdempotencyKey: r.IdempotencyKey, RequestHash: r.RequestHash, BusinessTime: s.businessTime(in.BusinessTime), TermsVersion: terms.Version}
	switch orig.Kind {
	case ledger.EntryEarn:
		if !in.Points.IsZero() {
			return nil, ledger.Errorf(ledger.CodeInvalid, "entry %s is an earn: give amount, the part of the purchase returned, not points", orig.ID).With("field", "points")
		}
		meta := readMeta(orig)
		if meta.Pricing == nil || orig.Lot == nil && len(orig.Movements) == 0 {
			return nil, ledger.Errorf(ledger.CodeInvalid, "entry %s cannot be reversed: it records no pricing", orig.ID)
		}
		points, returned, err := s.earnReversalPoints(ctx, orig, *meta.Pricing, in.Amount)
		if err != nil {
			return nil, err
		}
		// Taking other issuers' points is a consumption now, at the rate in force now.
		c, k, err := contractIn(terms.Coalition, terms.Versions, e.BusinessTime)
		if err != nil {
			return nil, err
		}
		rate := k.EffectiveRedeemRate(c)
		e.Kind = ledger.EntryEarnReversal
		e.Metadata = metadata(entryMeta{Returned: &returned})
		e.Op = ledger.Clawback{Lot: orig.Movements[0].Lot, Points: points, Rate: rate}
	case ledger.EntryRedemption, ledger.EntryCapture:
		if !in.Amount.IsZero() {
			return nil, ledger.Errorf(ledger.CodeInvalid, "entry %s is a %s: give points, the points given back, not amount", orig.ID, orig.Kind).With("field", "amount")
		}
		e.Kind = ledger.EntryRedemptionReversal
		e.Op = ledger.Restore{Of: orig.ID, Points: in.Points}
	default:
		return nil, ledger.Errorf(ledger.CodeInvalid, "an entry of kind %s cannot be reversed by a partner", orig.Kind)
	}
	posted, replayed, err := s.postOne(ctx, e)
	if err != nil {
		return nil, err
	}
	out := ReverseResultOf(posted)
	out.Replayed = replayed
	return out, nil
}

// ReverseResultOf rebuilds the answer to a reversal from its entry: the points it took back
// (or gave back) are its points debits.
func ReverseResultOf(p *ledger.Posted) *ReverseResult {
	pts := decimal.Zero
	for _, leg := range p.Postings {
		if leg.Unit == ledger.Points && leg.IsDebit() {
			pts = pts.Add(leg.Amount)
		}
	}
	return &ReverseResult{Entry: EntryRef{ID: p.ID, Position: p.Position}, Reverses: p.Reverses, Points: pts.String(), Member: memberOf(p)}
}

// earnReversalPoints applies DESIGN's cumulative rule: after this return, the points
// reversed so far are round_down(points × returned ÷ purchase amount); this reversal
// takes the difference, which may be zero. Returning more than the purchase is refused.
// Two returns of one earn sent at the same moment may both start from the same returned
// amount: the engine still never reverses more than the earn issued.
func (s *Service) earnReversalPoints(ctx context.Context, orig *ledger.Posted, price Price, amount decimal.Decimal) (decimal.Decimal, decimal.Decimal, error) {
	before, err := s.Ledger.ReturnedSoFar(ctx, orig.ID)
	if err != nil {
		return decimal.Zero, decimal.Zero, err
	}
	if amount.IsZero() {
		amount = price.Amount.Sub(before)
	}
	if !amount.IsPositive() {
		return decimal.Zero, decimal.Zero, ledger.Errorf(ledger.CodeReversalTooLarge, "the whole purchase of entry %s has already been returned", orig.ID)
	}
	after := before.Add(amount)
	if after.GreaterThan(price.Amount) {
		scale, _ := ledger.CurrencyScale(price.Currency)
		money := func(d decimal.Decimal) string { return d.StringFixed(scale) }
		return decimal.Zero, decimal.Zero, ledger.Errorf(ledger.CodeReversalTooLarge, "%s %s of the purchase of %s %s is left to return, %s %s was asked for",
			money(price.Amount.Sub(before)), price.Currency, money(price.Amount), price.Currency, money(amount), price.Currency).
			With("returnable", money(price.Amount.Sub(before)))
	}
	target := func(returned decimal.Decimal) decimal.Decimal {
		return price.Points.Mul(returned).Div(price.Amount).Truncate(price.PointsScale)
	}
	// A return too small to reverse a point yet is still recorded (an entry of zero
	// points), so that it counts towards the next return's rounding.
	return target(after).Sub(target(before)), amount, nil
}

// MemberView is what any partner may read of a member: balance, held points, tier and the
// points about to expire.
type MemberView struct {
	ID       string          `json:"id"`
	Phone    string          `json:"phone,omitempty"`
	Card     string          `json:"card,omitempty"`
	Balance  decimal.Decimal `json:"balance"`
	Held     decimal.Decimal `json:"held"`
	Tier     *string         `json:"tier"`
	Expiring []Expiring      `json:"expiring"`
}

// Expiring is points that expire at a time.
type Expiring struct {
	Points    decimal.Decimal `json:"points"`
	ExpiresAt time.Time       `json:"expires_at"`
}

// ExpiringWindow is how far ahead a member answer lists expiring points.
const ExpiringWindow = 30 * 24 * time.Hour

// Member returns the member's balance, tier (the one an earn made now would get) and the
// points that expire in the next 30 days.
func (s *Service) Member(ctx context.Context, ref MemberRef) (*MemberView, error) {
	m, err := s.Store.FindMember(ctx, ref, s.PhoneRegion)
	if err != nil {
		return nil, err
	}
	now := s.Now().UTC()
	v := &MemberView{ID: m.ID, Phone: m.Phone, Card: m.Card, Expiring: []Expiring{}}
	bal, err := s.Ledger.Balance(ctx, ledger.MemberAccount(m.ID))
	if err != nil {
		return nil, err
	}
	held, err := s.Ledger.Balance(ctx, ledger.MemberHeldAccount(m.ID))
	if err != nil {
		return nil, err
	}
	v.Balance, v.Held = bal.Neg(), held.Neg()
	c, err := s.Store.Coalition(ctx)
	if err != nil {
		return nil, err
	}
	tier, ok, err := s.Tier(ctx, c, m.ID, now)
	if err != nil {
		return nil, err
	}
	if ok {
		v.Tier = &tier.Name
	}
	lots, err := s.Ledger.Lots(ctx, m.ID)
	if err != nil {
		return nil, err
	}
	for _, l := range lots {
		if l.ExpiresAt == nil || l.ExpiresAt.After(now.Add(ExpiringWindow)) || !l.Available().IsPositive() {
			continue
		}
		if n := len(v.Expiring); n > 0 && v.Expiring[n-1].ExpiresAt.Equal(*l.ExpiresAt) {
			v.Expiring[n-1].Points = v.Expiring[n-1].Points.Add(l.Available())
			continue
		}
		v.Expiring = append(v.Expiring, Expiring{Points: l.Available(), ExpiresAt: *l.ExpiresAt})
	}
	return v, nil
}

// Enrol creates a member with a phone number and/or a card.
func (s *Service) Enrol(ctx context.Context, phone, card string) (Member, error) {
	ref := MemberRef{Phone: phone}
	if phone == "" {
		ref = MemberRef{Card: card}
	}
	if phone != "" && card != "" {
		if _, err := (MemberRef{Card: card}).normalize(s.PhoneRegion); err != nil {
			return Member{}, err
		}
	}
	norm, err := ref.normalize(s.PhoneRegion)
	if err != nil {
		return Member{}, err
	}
	if phone != "" {
		phone = norm.Phone
	}
	return s.Store.Enrol(ctx, phone, card)
}

// WasReplayed reports whether the answer is the stored first answer to an earlier request.
func (r *EarnResult) WasReplayed() bool { return r.Replayed }

// WasReplayed reports whether the answer is the stored first answer to an earlier request.
func (r *RedeemResult) WasReplayed() bool { return r.Replayed }

// WasReplayed reports whether the answer is the stored first answer to an earlier request.
func (r *HoldResult) WasReplayed() bool { return r.Replayed }

// WasReplayed reports whether the answer is the stored first answer to an earlier request.
func (r *ReverseResult) WasReplayed() bool { return r.Replayed }

// WasReplayed reports whether the answer is the stored first answer to an earlier request.
func (r *AwardResult) WasReplayed() bool { return r.Replayed }
