package ledger

import (
	"bytes"
	"encoding/json"
	"sort"
	"time"

	"github.com/gowebpki/jcs"
	"github.com/shopspring/decimal"
)

// Window is how far from the present an entry's business time may lie.
type Window struct {
	Past   time.Duration
	Future time.Duration
}

// DefaultWindow is DESIGN's business-time window: seven days back, five minutes ahead.
var DefaultWindow = Window{Past: 7 * 24 * time.Hour, Future: 5 * time.Minute}

// DuplicateReference is the refusal of an entry whose reference its partner already used
// for an entry of its kind.
func DuplicateReference(partner string, kind EntryKind, reference string) *Error {
	return Errorf(CodeDuplicateReference, "reference %q was already used by partner %s for an entry of kind %s", reference, partner, kind).
		With("reference", reference)
}

// Check refuses a business time outside the window around now; an import (imported) may
// lie any distance in the past.
func (w Window) Check(businessTime, now time.Time, imported bool) *Error {
	if !imported && businessTime.Before(now.Add(-w.Past)) {
		return Errorf(CodeBusinessTime, "business time %s is more than %s in the past", businessTime.UTC().Format(time.RFC3339), Span(w.Past)).
			With("field", "business_time")
	}
	if businessTime.After(now.Add(w.Future)) {
		return Errorf(CodeBusinessTime, "business time %s is more than %s in the future", businessTime.UTC().Format(time.RFC3339), Span(w.Future)).
			With("field", "business_time")
	}
	return nil
}

// lotState is a lot during planning, with its place in the consumption order.
type lotState struct {
	Lot
	order int64 // the lot's position, or a later number for lots created in this batch
	dirty bool
	fresh bool
}

// debtState is a debt during planning.
type debtState struct {
	Debt
	dirty bool
	fresh bool
}

// holdLot is the part of one lot a hold reserves.
type holdLot struct {
	lot    string
	points decimal.Decimal
}

// holdState is a hold during planning.
type holdState struct {
	Hold
	lots  []holdLot
	dirty bool
	fresh bool
}

// memberState is a member's locked books during planning.
type memberState struct {
	balance  decimal.Decimal // credit balance of member:<id>: points owed to the member
	held     decimal.Decimal // credit balance of member:<id>:held
	lots     []lotState      // consumption order: earliest expiry first (never last), then oldest
	debts    []debtState     // oldest first
	holds    []holdState     // the holds the batch names or creates
	reversed map[string]decimal.Decimal
	earned   map[string]decimal.Decimal // net points earned by business day, this batch's change
}

func (m *memberState) clone() *memberState {
	c := *m
	c.lots = append([]lotState(nil), m.lots...)
	c.debts = append([]debtState(nil), m.debts...)
	c.holds = make([]holdState, len(m.holds))
	for i, h := range m.holds {
		h.lots = append([]holdLot(nil), h.lots...)
		c.holds[i] = h
	}
	c.reversed = make(map[string]decimal.Decimal, len(m.reversed))
	for k, v := range m.reversed {
		c.reversed[k] = v
	}
	c.earned = make(map[string]decimal.Decimal, len(m.earned))
	for k, v := range m.earned {
		c.earned[k] = v
	}
	return &c
}

func (m *memberState) lot(id string) *lotState {
	for i := range m.lots {
		if m.lots[i].ID == id {
			return &m.lots[i]
		}
	}
	return nil
}

func (m *memberState) hold(id string) *holdState {
	for i := range m.holds {
		if m.holds[i].ID == id {
			return &m.holds[i]
		}
	}
	return nil
}

// available is what the member may spend at business time at: the points of its lots
// that are neither held nor past their expiry, whether or not the expiry job has run.
func (m *memberState) available(at time.Time) decimal.Decimal {
	sum := decimal.Zero
	for i := range m.lots {
		sum = sum.Add(m.lots[i].spendable(at))
	}
	return sum
}

// spendable is the lot's available points at business time at: none once it has expired
// (the expiry job turns them into breakage later; until then they may not be spent).
func (l *lotState) spendable(at time.Time) decimal.Decimal {
	if l.ExpiresAt != nil && !at.Before(*l.ExpiresAt) {
		return decimal.Zero
	}
	return l.Available()
}

func lotBefore(a, b *lotState) bool {
	switch {
	case a.ExpiresAt == nil && b.ExpiresAt != nil:
		return false
	case a.ExpiresAt != nil && b.ExpiresAt == nil:
		return true
	case a.ExpiresAt != nil && !a.ExpiresAt.Equal(*b.ExpiresAt):
		return a.ExpiresAt.Before(*b.ExpiresAt)
	}
	return a.order < b.order
}

func (m *memberState) sortLots() {
	sort.SliceStable(m.lots, func(i, j int) bool { return lotBefore(&m.lots[i], &m.lots[j]) })
}

// consumption is an earlier redemption as a Restore sees it: which lots it took, how much
// of each has come back, and the money legs it charged each issuer.
type consumption struct {
	entry    string
	kind     EntryKind
	member   string
	consumer string
	lots     []string // in the order the consumption took them
	taken    map[string]decimal.Decimal
	restored map[string]decimal.Decimal
	issuer   map[string]string
	rate     decimal.Decimal
	money    map[string]decimal.Decimal // per issuer account: money charged
}

// moneyBack is the money a consumption has given back to issuer account acct once the
// points restored so far are back: its charge in proportion to the restored points,
// truncated, and exactly the charge once all the account's points are back. Each restore
// gives back the growth of this figure, so the cumulative sum needs no memory of its own.
func (c *consumption) moneyBack(acct string, scale int32) decimal.Decimal {
	taken, restored := decimal.Zero, decimal.Zero
	for _, id := range c.lots {
		if SettlementAccount(c.issuer[id]) == acct {
			taken = taken.Add(c.taken[id])
			restored = restored.Add(c.restored[id])
		}
	}
	if taken.IsZero() || !restored.LessThan(taken) {
		return c.money[acct]
	}
	return c.money[acct].Mul(restored).Div(taken).Truncate(scale)
}

// original is an entry that a new entry reverses.
type original struct {
	kind    EntryKind
	partner string
	member  string
}

// books is the locked state a batch is planned against. It is loaded by the store and
// changed only by plan, entry by entry; a rejected entry leaves it as it was.
type books struct {
	units        Units
	zone         *time.Location // the coalition's time zone: business days
	now          time.Time
	window       Window
	newID        func() string
	members      map[string]*memberState
	consumptions map[string]*consumption
	originals    map[string]original
	references   map[string]bool // referenceKey → taken
	nextOrder    int64
}

func referenceKey(partner string, kind EntryKind, ref string) string {
	return partner + "\x00" + string(kind) + "\x00" + ref
}

// planned is an accepted entry before it has a position.
type planned struct {
	id        string
	entry     *Entry
	metadata  json.RawMessage
	postings  []Posting
	movements []Movement
	lot       *Lot
	hold      *Hold
	balance   *decimal.Decimal
	held      *decimal.Decimal
}

// validate checks what can be checked of an entry without the books.
func validate(e *Entry) *Error {
	if !entryKinds[e.Kind] {
		return Errorf(CodeInvalid, "unknown entry kind %q", e.Kind)
	}
	if e.Partner != OperatorIssuer && !ValidPartnerID(e.Partner) {
		return Errorf(CodeInvalid, "partner %q is not a partner id (lower-case letters, digits, - and _)", e.Partner)
	}
	if e.Member != "" && !ValidMemberID(e.Member) {
		return Errorf(CodeInvalid, "member %q is not a member id", e.Member)
	}
	if len(e.Reference) > MaxTextLength || len(e.IdempotencyKey) > MaxTextLength || len(e.Reverses) > MaxTextLength {
		return Errorf(CodeInvalid, "reference, idempotency key and reversed entry id are limited to %d bytes", MaxTextLength)
	}
	if e.BusinessTime.IsZero() {
		return Errorf(CodeInvalid, "business time is required")
	}
	if e.Import && e.Partner != OperatorIssuer {
		return Errorf(CodeForbidden, "only the operator may import history older than the business-time window")
	}
	if len(e.Postings) > MaxPostings {
		return Errorf(CodeTooManyPostings, "an entry has at most %d postings, this one has %d", MaxPostings, len(e.Postings))
	}
	if e.Op == nil && len(e.Postings) < 2 {
		return Errorf(CodeUnbalanced, "an entry needs at least two postings or a lot operation")
	}
	if e.Op != nil && e.Member == "" {
		return Errorf(CodeInvalid, "a lot operation needs the member it concerns")
	}
	if e.Op != nil && len(e.Postings) > 0 {
		return Errorf(CodeInvalid, "an entry with a lot operation takes no postings of its own: the engine derives them")
	}
	if len(e.Metadata) > MaxMetadataBytes {
		return Errorf(CodeInvalid, "metadata is limited to %d bytes", MaxMetadataBytes)
	}
	for _, p := range e.Postings {
		a, err := ParseAccount(p.Account)
		if err != nil {
			return err
		}
		if !a.IsMoney() {
			return Errorf(CodeInvalidAccount, "%s holds points: points move only through lot operations (earn, redeem, hold, reverse, expire), so that lots and accounts agree", p.Account)
		}
	}
	return nil
}

// canonicalMetadata returns the metadata as canonical JSON, "{}" when empty.
func canonicalMetadata(raw json.RawMessage) (json.RawMessage, *Error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return json.RawMessage(`{}`), nil
	}
	// The transform parses the text whole (a syntax error is its error); what it gives
	// back must be an object.
	out, err := jcs.Transform(raw)
	if err != nil || len(out) == 0 || out[0] != '{' {
		return nil, Errorf(CodeInvalid, "metadata must be a JSON object")
	}
	if bytes.Contains(raw, []byte(`\u0000`)) {
		return nil, Errorf(CodeInvalid, "metadata may not contain NUL characters")
	}
	return out, nil
}

// plan checks one entry against the books and, when it is accepted, changes the books as
// posting it will. A rejected entry leaves the books untouched.
func (b *books) plan(e *Entry) (*planned, *Error) {
	if err := validate(e); err != nil {
		return nil, err
	}
	if err := b.window.Check(e.BusinessTime, b.now, e.Import); err != nil {
		return nil, err
	}
	// A capture or void carries its hold's reference, and its hold's state, not the
	// reference, is what refuses a second one (hold_not_open).
	if e.Reference != "" && e.Kind != EntryCapture && e.Kind != EntryVoid && b.references[referenceKey(e.Partner, e.Kind, e.Reference)] {
		return nil, DuplicateReference(e.Partner, e.Kind, e.Reference)
	}
	meta, err := e.canonicalMeta()
	if err != nil {
		return nil, err
	}
	p := &planned{id: b.newID(), entry: e, metadata: meta}
	for _, leg := range e.Postings {
		a, _ := ParseAccount(leg.Account)
		unit := a.Unit(b.units)
		if leg.Unit != "" && leg.Unit != unit {
			return nil, Errorf(CodeUnknownUnit, "account %s holds %s, not %s", leg.Account, unit, leg.Unit)
		}
		if err := b.units.Check(unit, leg.Amount.Abs()); err != nil {
			return nil, err
		}
		p.postings = append(p.postings, Posting{Account: leg.Account, Unit: unit, Amount: leg.Amount})
	}
	if e.Reverses != "" {
		if _, ok := b.originals[e.Reverses]; !ok {
			return nil, Errorf(CodeNotFound, "entry %s, which this entry reverses, does not exist", e.Reverses)
		}
	}
	if e.Op != nil {
		m := b.members[e.Member]
		work := m.clone()
		if err := b.planOp(p, work); err != nil {
			return nil, err
		}
		bal, held := work.balance, work.held
		p.balance, p.held = &bal, &held
		if err := checkBalanced(p.postings); err != nil {
			// The engine derived these legs itself: an imbalance is a bug, not bad input.
			panic("ledger: derived postings do not balance: " + err.Message)
		}
		b.members[e.Member] = work
	} else if err := checkBalanced(p.postings); err != nil {
		return nil, err
	}
	if e.Reference != "" {
		b.references[referenceKey(e.Partner, e.Kind, e.Reference)] = true
	}
	b.originals[p.id] = original{kind: e.Kind, partner: e.Partner, member: e.Member}
	return p, nil
}

// checkBalanced reports an entry whose debits and credits differ in some unit.
func checkBalanced(postings []Posting) *Error {
	sums := map[string]decimal.Decimal{}
	for _, p := range postings {
		sums[p.Unit] = sums[p.Unit].Add(p.Amount)
	}
	for unit, s := range sums {
		if !s.IsZero() {
			return Errorf(CodeUnbalanced, "debits and credits differ by %s %s", s, unit).With("unit", unit)
		}
	}
	return nil
}

func (b *books) pts(account string, amount decimal.Decimal) Posting {
	return Posting{Account: account, Unit: Points, Amount: amount}
}

func (b *books) money(account string, amount decimal.Decimal) Posting {
	return Posting{Account: account, Unit: b.units.Currency, Amount: amount}
}

func (b *books) checkPoints(points decimal.Decimal) *Error {
	return CheckAmount(points, b.units.PointsScale, Points)
}

func checkRate(rate decimal.Decimal) *Error {
	if rate.IsNegative() || rate.GreaterThan(MaxAmount) {
		return Errorf(CodeInvalidAmount, "rate %s is outside 0..%s", rate, MaxAmount)
	}
	return nil
}

// actsFor refuses an entry whose partner is neither owner nor the operator: a partner
// posts only its own earns, redemptions, holds and their reversals.
func actsFor(e *Entry, owner, what string) *Error {
	if e.Partner == owner || e.Partner == OperatorIssuer {
		return nil
	}
	return Errorf(CodeForbidden, "%s belongs to partner %s, not to %s", what, owner, e.Partner)
}

func (b *books) planOp(p *planned, m *memberState) *Error {
	e := p.entry
	switch op := e.Op.(type) {
	case Issue:
		return b.planIssue(p, m, op)
	case Consume:
		return b.planConsume(p, m, op)
	case Clawback:
		return b.planClawback(p, m, op)
	case Restore:
		return b.planRestore(p, m, op)
	case Expire:
		return b.planExpire(p, m, op)
	case Reserve:
		return b.planReserve(p, m, op)
	case Capture:
		return b.planCapture(p, m, op)
	case Release:
		return b.planRelease(p, m, op)
	}
	return Errorf(CodeInvalid, "unknown lot operation %T", e.Op)
}

func (b *books) planIssue(p *planned, m *memberState, op Issue) *Error {
	if err := b.checkPoints(op.Points); err != nil {
		return err
	}
	if op.Issuer != OperatorIssuer && !ValidPartnerID(op.Issuer) {
		return Errorf(CodeInvalid, "issuer %q is not a partner id", op.Issuer)
	}
	if err := actsFor(p.entry, op.Issuer, "an earn issued by "+op.Issuer); err != nil {
		return err
	}
	if op.ExpiresAt != nil {
		exp := op.ExpiresAt.UTC().Truncate(time.Microsecond)
		op.ExpiresAt = &exp
	}
	if op.ExpiresAt != nil && !op.ExpiresAt.After(p.entry.BusinessTime) {
		return Errorf(CodeInvalid, "the lot would expire (%s) before its business time", op.ExpiresAt.UTC().Format(time.RFC3339))
	}
	b.nextOrder++
	day := p.entry.BusinessTime.In(b.zone).Format(time.DateOnly)
	m.earned[day] = m.earned[day].Add(op.Points)
	lot := lotState{
		Lot: Lot{
			ID: b.newID(), Member: p.entry.Member, Issuer: op.Issuer, Entry: p.id,
			Points: op.Points, Remaining: op.Points, Held: decimal.Zero, Expired: decimal.Zero, ExpiresAt: op.ExpiresAt,
			BusinessDay: day,
		},
		order: b.nextOrder, dirty: true, fresh: true,
	}
	m.lots = append(m.lots, lot)
	m.sortLots()
	created := lot.Lot
	p.lot = &created
	p.postings = append(p.postings,
		b.pts(PartnerAccount(op.Issuer, "issued"), op.Points),
		b.pts(MemberAccount(p.entry.Member), op.Points.Neg()))
	p.movements = append(p.movements, Movement{Lot: lot.ID, Issuer: op.Issuer, Points: op.Points, Reason: ReasonEarn, ExpiresAt: op.ExpiresAt})
	m.balance = m.balance.Add(op.Points)
	b.repayDebts(p, m)
	return nil
}

// take is the part of one lot that a consumption takes.
type take struct {
	lot    string
	issuer string
	points decimal.Decimal
}

// consumeLots takes up to points from the member's available lots not yet expired at the
// entry's business time, earliest expiry first, skipping the lot named by skip, and
// records the movements.
func (b *books) consumeLots(p *planned, m *memberState, points decimal.Decimal, consumer string, rate decimal.Decimal, reason, skip string) []take {
	var takes []take
	left := points
	for i := range m.lots {
		if !left.IsPositive() {
			break
		}
		l := &m.lots[i]
		if l.ID == skip {
			continue
		}
		avail := l.spendable(p.entry.BusinessTime)
		if !avail.IsPositive() {
			continue
		}
		x := decimal.Min(avail, left)
		l.Remaining = l.Remaining.Sub(x)
		l.dirty = true
		left = left.Sub(x)
		takes = append(takes, take{lot: l.ID, issuer: l.Issuer, points: x})
		p.movements = append(p.movements, Movement{Lot: l.ID, Issuer: l.Issuer, Points: x.Neg(), Consumer: consumer, Reason: reason, Rate: rate})
	}
	return takes
}

// charges is DESIGN's rule for a consumption: the value of the points taken,
// round_half_up(points × rate), split over the issuers by points; every issuer other than
// the consumer owes the consumer its share. It returns the share per issuer's settlement
// account.
func (b *books) charges(takes []take, consumer string, rate decimal.Decimal) map[string]decimal.Decimal {
	charged := map[string]decimal.Decimal{}
	perIssuer := map[string]decimal.Decimal{}
	total := decimal.Zero
	for _, t := range takes {
		perIssuer[t.issuer] = perIssuer[t.issuer].Add(t.points)
		total = total.Add(t.points)
	}
	if total.IsZero() {
		return charged
	}
	weights := make([]Weight, 0, len(perIssuer))
	for issuer, pts := range perIssuer {
		weights = append(weights, Weight{Key: issuer, Points: pts})
	}
	sort.Slice(weights, func(i, j int) bool { return weights[i].Key < weights[j].Key })
	value := RoundHalfUp(total.Mul(rate), b.units.MoneyScale)
	shares := Split(value, b.units.MoneyScale, weights)
	for i, w := range weights {
		if w.Key != consumer && shares[i].IsPositive() {
			charged[SettlementAccount(w.Key)] = shares[i]
		}
	}
	return charged
}

// moneyLegs posts the charges of a consumption and returns them.
func (b *books) moneyLegs(p *planned, takes []take, consumer string, rate decimal.Decimal) map[string]decimal.Decimal {
	charged := b.charges(takes, consumer, rate)
	accounts := make([]string, 0, len(charged))
	for acct := range charged {
		accounts = append(accounts, acct)
	}
	sort.Strings(accounts)
	owed := decimal.Zero
	for _, acct := range accounts {
		p.postings = append(p.postings, b.money(acct, charged[acct]))
		owed = owed.Add(charged[acct])
	}
	if owed.IsPositive() {
		p.postings = append(p.postings, b.money(SettlementAccount(consumer), owed.Neg()))
	}
	return charged
}

// repayDebts pays the member's debts, oldest first, out of the points that just came in:
// a consumption by each clawing partner at the rate of its clawback.
func (b *books) repayDebts(p *planned, m *memberState) {
	for i := range m.debts {
		d := &m.debts[i]
		if !d.Outstanding.IsPositive() {
			continue
		}
		avail := m.available(p.entry.BusinessTime)
		if !avail.IsPositive() {
			return
		}
		x := decimal.Min(avail, d.Outstanding)
		takes := b.consumeLots(p, m, x, d.Partner, d.Rate, ReasonDebt, "")
		b.moneyLegs(p, takes, d.Partner, d.Rate)
		d.Outstanding = d.Outstanding.Sub(x)
		d.dirty = true
	}
}

// checkSpend refuses a redemption or a hold the member cannot make: bad points, consumer
// or rate, a partner acting for another, or fewer points available than asked for.
func (b *books) checkSpend(p *planned, m *memberState, points decimal.Decimal, consumer string, rate decimal.Decimal, what string) *Error {
	if err := b.checkPoints(points); err != nil {
		return err
	}
	if !ValidPartnerID(consumer) {
		return Errorf(CodeInvalid, "consumer %q is not a partner id", consumer)
	}
	if err := actsFor(p.entry, consumer, what+" "+consumer); err != nil {
		return err
	}
	if err := checkRate(rate); err != nil {
		return err
	}
	if avail := m.available(p.entry.BusinessTime); avail.LessThan(points) {
		return Errorf(CodeInsufficientPoints, "the member has %s points available, %s were asked for", avail, points).
			With("available", avail.String()).With("requested", points.String())
	}
	return nil
}

// recordConsumption keeps what a redemption or capture took, so that a later entry of the
// same batch can reverse it.
func (b *books) recordConsumption(p *planned, takes []take, consumer string, rate decimal.Decimal, charged map[string]decimal.Decimal) {
	c := &consumption{entry: p.id, kind: p.entry.Kind, member: p.entry.Member, consumer: consumer,
		taken: map[string]decimal.Decimal{}, restored: map[string]decimal.Decimal{}, issuer: map[string]string{},
		rate: rate, money: charged}
	for _, t := range takes {
		c.lots = append(c.lots, t.lot)
		c.taken[t.lot] = t.points
		c.issuer[t.lot] = t.issuer
	}
	b.consumptions[p.id] = c
}

func (b *books) planConsume(p *planned, m *memberState, op Consume) *Error {
	if err := b.checkSpend(p, m, op.Points, op.Consumer, op.Rate, "a redemption at"); err != nil {
		return err
	}
	takes := b.consumeLots(p, m, op.Points, op.Consumer, op.Rate, ReasonRedeem, "")
	p.postings = append(p.postings,
		b.pts(MemberAccount(p.entry.Member), op.Points),
		b.pts(PartnerAccount(op.Consumer, "redeemed"), op.Points.Neg()))
	charged := b.moneyLegs(p, takes, op.Consumer, op.Rate)
	m.balance = m.balance.Sub(op.Points)
	b.recordConsumption(p, takes, op.Consumer, op.Rate, charged)
	return nil
}

func (b *books) planReserve(p *planned, m *memberState, op Reserve) *Error {
	if !op.ExpiresAt.After(p.entry.BusinessTime) {
		return Errorf(CodeInvalid, "the hold would expire (%s) before its business time", op.ExpiresAt.UTC().Format(time.RFC3339))
	}
	if err := b.checkSpend(p, m, op.Points, op.Consumer, op.Rate, "a hold for"); err != nil {
		return err
	}
	h := holdState{
		Hold: Hold{ID: b.newID(), Member: p.entry.Member, Partner: op.Consumer, Entry: p.id, Points: op.Points,
			Held: op.Points, Rate: op.Rate, ExpiresAt: op.ExpiresAt.UTC().Truncate(time.Microsecond), Status: HoldOpen},
		dirty: true, fresh: true,
	}
	left := op.Points
	for i := range m.lots {
		if !left.IsPositive() {
			break
		}
		l := &m.lots[i]
		x := decimal.Min(l.spendable(p.entry.BusinessTime), left)
		if !x.IsPositive() {
			continue
		}
		l.Held = l.Held.Add(x)
		l.dirty = true
		left = left.Sub(x)
		h.lots = append(h.lots, holdLot{lot: l.ID, points: x})
	}
	m.holds = append(m.holds, h)
	created := h.Hold
	p.hold = &created
	p.postings = append(p.postings,
		b.pts(MemberAccount(p.entry.Member), op.Points),
		b.pts(MemberHeldAccount(p.entry.Member), op.Points.Neg()))
	m.balance = m.balance.Sub(op.Points)
	m.held = m.held.Add(op.Points)
	return nil
}

// openHold returns the member's open hold that the entry's partner may settle, or the
// refusal.
func openHold(p *planned, m *memberState, id string) (*holdState, *Error) {
	h := m.hold(id)
	if h == nil {
		return nil, Errorf(CodeNotFound, "hold %s of member %s does not exist", id, p.entry.Member)
	}
	if h.Status != HoldOpen {
		return nil, Errorf(CodeHoldNotOpen, "hold %s is already %s", id, h.Status).With("status", h.Status)
	}
	if err := actsFor(p.entry, h.Partner, "hold "+h.ID); err != nil {
		return nil, err
	}
	return h, nil
}

func (b *books) planCapture(p *planned, m *memberState, op Capture) *Error {
	h, err := openHold(p, m, op.Hold)
	if err != nil {
		return err
	}
	if p.entry.BusinessTime.After(h.ExpiresAt) || h.Expired(b.now) {
		return Errorf(CodeHoldExpired, "hold %s expired at %s: it can only be voided", h.ID, h.ExpiresAt.Format(time.RFC3339)).
			With("expires_at", h.ExpiresAt.UTC().Format(time.RFC3339Nano))
	}
	points := op.Points
	if points.IsZero() {
		points = h.Held
	}
	if err := b.checkPoints(points); err != nil {
		return err
	}
	if points.GreaterThan(h.Held) {
		return Errorf(CodeCaptureTooLarge, "hold %s reserves %s points, %s were asked for", h.ID, h.Held, points).With("held", h.Held.String())
	}
	var takes []take
	left := points
	for i := range h.lots {
		hl := &h.lots[i]
		lot := m.lot(hl.lot)
		x := decimal.Min(left, hl.points)
		if x.IsPositive() {
			lot.Remaining = lot.Remaining.Sub(x)
			takes = append(takes, take{lot: lot.ID, issuer: lot.Issuer, points: x})
			p.movements = append(p.movements, Movement{Lot: lot.ID, Issuer: lot.Issuer, Points: x.Neg(), Consumer: h.Partner, Reason: ReasonRedeem, Rate: h.Rate})
			left = left.Sub(x)
		}
		// Whatever the capture does not take is released.
		lot.Held = lot.Held.Sub(hl.points)
		lot.dirty = true
		hl.points = decimal.Zero
	}
	rest := h.Held.Sub(points)
	p.postings = append(p.postings,
		b.pts(MemberHeldAccount(p.entry.Member), h.Held),
		b.pts(PartnerAccount(h.Partner, "redeemed"), points.Neg()))
	if rest.IsPositive() {
		p.postings = append(p.postings, b.pts(MemberAccount(p.entry.Member), rest.Neg()))
	}
	charged := b.moneyLegs(p, takes, h.Partner, h.Rate)
	m.held = m.held.Sub(h.Held)
	m.balance = m.balance.Add(rest)
	h.Held, h.Status, h.dirty = decimal.Zero, HoldCaptured, true
	settled := h.Hold
	p.hold = &settled
	b.recordConsumption(p, takes, h.Partner, h.Rate, charged)
	b.repayDebts(p, m)
	return nil
}

func (b *books) planRelease(p *planned, m *memberState, op Release) *Error {
	h, err := openHold(p, m, op.Hold)
	if err != nil {
		return err
	}
	for i := range h.lots {
		hl := &h.lots[i]
		lot := m.lot(hl.lot)
		lot.Held = lot.Held.Sub(hl.points)
		lot.dirty = true
		hl.points = decimal.Zero
	}
	p.postings = append(p.postings,
		b.pts(MemberHeldAccount(p.entry.Member), h.Held),
		b.pts(MemberAccount(p.entry.Member), h.Held.Neg()))
	m.held = m.held.Sub(h.Held)
	m.balance = m.balance.Add(h.Held)
	h.Held, h.Status, h.dirty = decimal.Zero, HoldVoided, true
	released := h.Hold
	p.hold = &released
	b.repayDebts(p, m)
	return nil
}

func (b *books) planClawback(p *planned, m *memberState, op Clawback) *Error {
	// Zero points records a return that reverses no points yet (a small part of a
	// purchase): an entry without postings, so that the returned amount in its metadata
	// counts towards the next return's cumulative rounding.
	if !op.Points.IsZero() {
		if err := b.checkPoints(op.Points); err != nil {
			return err
		}
	}
	if err := checkRate(op.Rate); err != nil {
		return err
	}
	lot := m.lot(op.Lot)
	if lot == nil {
		return Errorf(CodeNotFound, "lot %s of member %s does not exist", op.Lot, p.entry.Member)
	}
	if err := actsFor(p.entry, lot.Issuer, "the earn that issued lot "+lot.ID); err != nil {
		return err
	}
	if p.entry.Reverses == "" {
		p.entry.Reverses = lot.Entry
	} else if p.entry.Reverses != lot.Entry {
		return Errorf(CodeInvalid, "lot %s was created by entry %s, not by %s", lot.ID, lot.Entry, p.entry.Reverses)
	}
	done := m.reversed[lot.Entry]
	if done.Add(op.Points).GreaterThan(lot.Points) {
		return Errorf(CodeReversalTooLarge, "the earn issued %s points and %s are already reversed: at most %s more can be", lot.Points, done, lot.Points.Sub(done)).
			With("reversible", lot.Points.Sub(done).String())
	}
	issuer := lot.Issuer
	left := op.Points

	fromLot := decimal.Min(left, lot.Available())
	if fromLot.IsPositive() {
		lot.Remaining = lot.Remaining.Sub(fromLot)
		lot.dirty = true
		left = left.Sub(fromLot)
		p.movements = append(p.movements, Movement{Lot: lot.ID, Issuer: issuer, Points: fromLot.Neg(), Consumer: issuer, Reason: ReasonReversal})
	}
	fromExpired := decimal.Min(left, lot.Expired)
	if fromExpired.IsPositive() {
		lot.Expired = lot.Expired.Sub(fromExpired)
		lot.dirty = true
		left = left.Sub(fromExpired)
		p.movements = append(p.movements,
			Movement{Lot: lot.ID, Issuer: issuer, Points: fromExpired, Consumer: issuer, Reason: ReasonUnexpire},
			Movement{Lot: lot.ID, Issuer: issuer, Points: fromExpired.Neg(), Consumer: issuer, Reason: ReasonReversal})
	}
	takes := b.consumeLots(p, m, left, issuer, op.Rate, ReasonClawback, lot.ID)
	fromOthers := decimal.Zero
	for _, t := range takes {
		fromOthers = fromOthers.Add(t.points)
	}
	left = left.Sub(fromOthers)
	if left.IsPositive() {
		m.debts = append(m.debts, debtState{
			Debt: Debt{ID: b.newID(), Member: p.entry.Member, Partner: issuer, Entry: p.id,
				Points: left, Outstanding: left, Rate: op.Rate},
			dirty: true, fresh: true,
		})
	}
	fromMember := op.Points.Sub(fromExpired)
	if fromMember.IsPositive() {
		p.postings = append(p.postings, b.pts(MemberAccount(p.entry.Member), fromMember))
	}
	if fromExpired.IsPositive() {
		p.postings = append(p.postings, b.pts(PartnerAccount(issuer, "expired"), fromExpired))
	}
	if op.Points.IsPositive() {
		p.postings = append(p.postings, b.pts(PartnerAccount(issuer, "issued"), op.Points.Neg()))
	}
	b.moneyLegs(p, takes, issuer, op.Rate)
	m.balance = m.balance.Sub(fromMember)
	m.reversed[lot.Entry] = done.Add(op.Points)
	// A reversal counts against the tier on the original earn's day.
	if lot.BusinessDay != "" {
		m.earned[lot.BusinessDay] = m.earned[lot.BusinessDay].Sub(op.Points)
	}
	return nil
}

func (b *books) planRestore(p *planned, m *memberState, op Restore) *Error {
	c := b.consumptions[op.Of]
	if c == nil || c.member != p.entry.Member {
		return Errorf(CodeNotFound, "redemption %s of member %s does not exist", op.Of, p.entry.Member)
	}
	if err := actsFor(p.entry, c.consumer, "redemption "+c.entry); err != nil {
		return err
	}
	if p.entry.Reverses == "" {
		p.entry.Reverses = c.entry
	} else if p.entry.Reverses != c.entry {
		return Errorf(CodeInvalid, "a restore reverses the consumption it restores (%s), not %s", c.entry, p.entry.Reverses)
	}
	outstanding := decimal.Zero
	for _, id := range c.lots {
		outstanding = outstanding.Add(c.taken[id].Sub(c.restored[id]))
	}
	points := op.Points
	if points.IsZero() {
		points = outstanding
	}
	if !points.IsPositive() {
		return Errorf(CodeReversalTooLarge, "everything redemption %s took has already been given back", c.entry)
	}
	if err := b.checkPoints(points); err != nil {
		return err
	}
	if points.GreaterThan(outstanding) {
		return Errorf(CodeReversalTooLarge, "redemption %s has %s points left to give back, %s were asked for", c.entry, outstanding, points).
			With("reversible", outstanding.String())
	}
	for _, id := range c.lots {
		if m.lot(id) == nil {
			return Errorf(CodeNotFound, "lot %s of redemption %s is missing", id, c.entry)
		}
	}
	issuers := make([]string, 0, len(c.money))
	for acct := range c.money {
		issuers = append(issuers, acct)
	}
	sort.Strings(issuers)
	before := make(map[string]decimal.Decimal, len(issuers))
	for _, acct := range issuers {
		before[acct] = c.moneyBack(acct, b.units.MoneyScale)
	}
	left := points
	for i := len(c.lots) - 1; i >= 0 && left.IsPositive(); i-- {
		id := c.lots[i]
		x := decimal.Min(left, c.taken[id].Sub(c.restored[id]))
		if !x.IsPositive() {
			continue
		}
		lot := m.lot(id)
		lot.Remaining = lot.Remaining.Add(x)
		lot.dirty = true
		c.restored[id] = c.restored[id].Add(x)
		left = left.Sub(x)
		p.movements = append(p.movements, Movement{Lot: id, Issuer: lot.Issuer, Points: x, Consumer: c.consumer, Reason: ReasonRestore, Rate: c.rate})
	}
	m.sortLots()
	p.postings = append(p.postings,
		b.pts(PartnerAccount(c.consumer, "redeemed"), points),
		b.pts(MemberAccount(p.entry.Member), points.Neg()))
	back := decimal.Zero
	for _, acct := range issuers {
		delta := c.moneyBack(acct, b.units.MoneyScale).Sub(before[acct])
		if delta.IsPositive() {
			p.postings = append(p.postings, b.money(acct, delta.Neg()))
			back = back.Add(delta)
		}
	}
	if back.IsPositive() {
		p.postings = append(p.postings, b.money(SettlementAccount(c.consumer), back))
	}
	m.balance = m.balance.Add(points)
	b.repayDebts(p, m)
	return nil
}

func (b *books) planExpire(p *planned, m *memberState, op Expire) *Error {
	if p.entry.Partner != OperatorIssuer {
		return Errorf(CodeForbidden, "only the operator expires points")
	}
	lot := m.lot(op.Lot)
	if lot == nil {
		return Errorf(CodeNotFound, "lot %s of member %s does not exist", op.Lot, p.entry.Member)
	}
	if lot.ExpiresAt == nil || lot.ExpiresAt.After(p.entry.BusinessTime) {
		return Errorf(CodeLotNotExpired, "lot %s has not expired at %s", lot.ID, p.entry.BusinessTime.UTC().Format(time.RFC3339))
	}
	x := lot.Available()
	if !x.IsPositive() {
		return Errorf(CodeNothingToExpire, "lot %s has no available points left to expire", lot.ID)
	}
	lot.Remaining = lot.Remaining.Sub(x)
	lot.Expired = lot.Expired.Add(x)
	lot.dirty = true
	p.movements = append(p.movements, Movement{Lot: lot.ID, Issuer: lot.Issuer, Points: x.Neg(), Reason: ReasonExpire})
	p.postings = append(p.postings,
		b.pts(MemberAccount(p.entry.Member), x),
		b.pts(PartnerAccount(lot.Issuer, "expired"), x.Neg()))
	m.balance = m.balance.Sub(x)
	return nil
}
