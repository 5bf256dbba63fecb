package partners

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/oklog/ulid/v2"
	"github.com/shopspring/decimal"

	"github.com/coalitionledger/coalition/audit"
	"github.com/coalitionledger/coalition/internal/pg"
	"github.com/coalitionledger/coalition/ledger"
)

// Partner is a brand of the coalition.
type Partner struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Status    string    `json:"status"`
	CreatedAt time.Time `json:"created_at"`
}

// Partner statuses: a suspended partner's requests are refused.
const (
	StatusActive    = "active"
	StatusSuspended = "suspended"
)

// Codes of the partners package, in addition to ledger's.
const (
	CodePartnerSuspended ledger.Code = "partner_suspended"
	CodeSettingsFrozen   ledger.Code = "settings_frozen"
)

// ContractVersion is a contract as stored: its version number, the terms, and when it was
// added.
type ContractVersion struct {
	Version int `json:"version"`
	Contract
	CreatedAt time.Time `json:"created_at"`
}

// Store keeps the coalition's settings, partners, contract versions and members.
type Store struct {
	pool     *pgxpool.Pool
	cache    *Cache // nil: Terms reads the database every time
	resolver *resolver
}

// NewStore returns the store over pool (from pg.Connect).
func NewStore(pool *pgxpool.Pool) *Store {
	s := &Store{pool: pool}
	s.resolver = &resolver{run: s.resolveTrip}
	return s
}

// Coalition returns the coalition's settings.
func (s *Store) Coalition(ctx context.Context) (Coalition, error) {
	var c Coalition
	var tiers []byte
	err := s.pool.QueryRow(ctx, `SELECT currency, point_value, points_scale, time_zone, settlement_time, tiers FROM coalition`).
		Scan(&c.Currency, &c.PointValue, &c.PointsScale, &c.TimeZone, &c.SettlementTime, &tiers)
	if err != nil {
		return Coalition{}, fmt.Errorf("coalition settings: %w", err)
	}
	if err := json.Unmarshal(tiers, &c.Tiers); err != nil {
		return Coalition{}, fmt.Errorf("coalition tiers: %w", err)
	}
	if c.Tiers == nil {
		c.Tiers = []Tier{}
	}
	return c, nil
}

// SetCoalition replaces the coalition's settings after validating them. The currency,
// points scale and time zone cannot change once the journal has an entry.
func (s *Store) SetCoalition(ctx context.Context, c Coalition) error {
	if err := c.Validate(); err != nil {
		return err
	}
	tiers, err := json.Marshal(c.Tiers)
	if err != nil {
		return err
	}
	var frozen string // the first frozen setting this change touches
	err = change(ctx, s.pool, s.cache, func(tx pgx.Tx) error {
		var was Coalition
		if err := tx.QueryRow(ctx, `SELECT currency, points_scale, time_zone FROM coalition`).Scan(&was.Currency, &was.PointsScale, &was.TimeZone); err != nil {
			return err
		}
		switch {
		case was.Currency != c.Currency:
			frozen = "currency"
		case was.PointsScale != c.PointsScale:
			frozen = "points_scale"
		case was.TimeZone != c.TimeZone:
			frozen = "time_zone"
		}
		// A contract is in the coalition's currency: changing the currency under one would
		// refuse every request of its partner with an error its till cannot fix.
		var partner, currency string
		err := tx.QueryRow(ctx, `SELECT partner_id, terms->>'currency' FROM contracts WHERE terms->>'currency' <> $1
			ORDER BY partner_id, version LIMIT 1`, c.Currency).Scan(&partner, &currency)
		if err == nil {
			return ledger.Errorf(CodeSettingsFrozen, "partner %s has a contract in %s: the currency cannot become %s while contracts are in another", partner, currency, c.Currency).
				With("field", "currency").With("partner", partner)
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE coalition SET currency = $1, point_value = $2, points_scale = $3, time_zone = $4,
			settlement_time = $5, tiers = $6`, c.Currency, c.PointValue, c.PointsScale, c.TimeZone, c.SettlementTime, tiers); err != nil {
			return err
		}
		return audit.RecordAs(ctx, tx, audit.ActionCoalitionChanged, c)
	})
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23514" && frozen != "" {
		return ledger.Errorf(CodeSettingsFrozen, "%s cannot change: the currency, points scale and time zone freeze at the journal's first entry", frozen).
			With("field", frozen)
	}
	if err != nil {
		return fmt.Errorf("set coalition settings: %w", err)
	}
	return nil
}

// CreatePartner adds an active partner.
func (s *Store) CreatePartner(ctx context.Context, id, name string) (Partner, error) {
	if !ledger.ValidPartnerID(id) || id == ledger.OperatorIssuer {
		return Partner{}, ledger.Errorf(ledger.CodeInvalid, "partner id %q must be a slug of lower-case letters, digits, - and _ (at most 63), and not \"operator\"", id).With("field", "id")
	}
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 200 {
		return Partner{}, ledger.Errorf(ledger.CodeInvalid, "a partner needs a name of 1 to 200 characters").With("field", "name")
	}
	var p Partner
	err := change(ctx, s.pool, s.cache, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `INSERT INTO partners (id, name) VALUES ($1, $2) RETURNING id, name, status, created_at`, id, name).
			Scan(&p.ID, &p.Name, &p.Status, &p.CreatedAt); err != nil {
			return err
		}
		return audit.RecordAs(ctx, tx, audit.ActionPartnerCreated, p)
	})
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		return Partner{}, ledger.Errorf(ledger.CodeDuplicateReference, "partner %s already exists", id)
	}
	if err != nil {
		return Partner{}, fmt.Errorf("create partner %s: %w", id, err)
	}
	return p, nil
}

// Partners lists every partner by id.
func (s *Store) Partners(ctx context.Context) ([]Partner, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, name, status, created_at FROM partners ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("partners: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowToStructByPos[Partner])
}

// Partner returns one partner, or a not_found error.
func (s *Store) Partner(ctx context.Context, id string) (Partner, error) {
	var p Partner
	err := s.pool.QueryRow(ctx, `SELECT id, name, status, created_at FROM partners WHERE id = $1`, id).
		Scan(&p.ID, &p.Name, &p.Status, &p.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Partner{}, ledger.Errorf(ledger.CodeNotFound, "partner %s does not exist", id)
	}
	if err != nil {
		return Partner{}, fmt.Errorf("partner %s: %w", id, err)
	}
	return p, nil
}

// SetPartnerStatus suspends or reactivates a partner.
func (s *Store) SetPartnerStatus(ctx context.Context, id, status string) (Partner, error) {
	if status != StatusActive && status != StatusSuspended {
		return Partner{}, ledger.Errorf(ledger.CodeInvalid, "status must be active or suspended").With("field", "status")
	}
	var p Partner
	err := change(ctx, s.pool, s.cache, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `UPDATE partners SET status = $2 WHERE id = $1 RETURNING id, name, status, created_at`, id, status).
			Scan(&p.ID, &p.Name, &p.Status, &p.CreatedAt); err != nil {
			return err
		}
		return audit.RecordAs(ctx, tx, audit.ActionPartnerStatusChanged, map[string]string{"id": p.ID, "status": p.Status})
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return Partner{}, ledger.Errorf(ledger.CodeNotFound, "partner %s does not exist", id)
	}
	if err != nil {
		return Partner{}, fmt.Errorf("partner %s: %w", id, err)
	}
	return p, nil
}

// AddContract adds a contract version for the partner at record time now. Terms never
// rewrite history: a version takes effect no earlier than now, and one without an
// effective time takes effect now.
func (s *Store) AddContract(ctx context.Context, partner string, k Contract, now time.Time) (ContractVersion, error) {
	var out ContractVersion
	if k.EffectiveFrom.IsZero() {
		k.EffectiveFrom = now
	}
	err := change(ctx, s.pool, s.cache, func(tx pgx.Tx) error {
		// Serialise versions of one partner.
		tag, err := tx.Exec(ctx, `SELECT 1 FROM partners WHERE id = $1 FOR UPDATE`, partner)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return ledger.Errorf(ledger.CodeNotFound, "partner %s does not exist", partner)
		}
		c, err := s.Coalition(ctx)
		if err != nil {
			return err
		}
		existing, err := contractsTx(ctx, tx, partner)
		if err != nil {
			return err
		}
		terms := make([]Contract, len(existing))
		for i, v := range existing {
			terms[i] = v.Contract
		}
		if err := ValidateNewVersion(terms, k, c, now); err != nil {
			return err
		}
		// Defaults are written out now: a later change of the point value reprices nothing.
		k = k.WithDefaults(c)
		raw, err := json.Marshal(k)
		if err != nil {
			return err
		}
		out = ContractVersion{Version: len(existing) + 1, Contract: k, CreatedAt: now.UTC()}
		if _, err := tx.Exec(ctx, `INSERT INTO contracts (partner_id, version, effective_from, terms, created_at) VALUES ($1, $2, $3, $4, $5)`,
			partner, out.Version, k.EffectiveFrom, raw, out.CreatedAt); err != nil {
			return err
		}
		return audit.RecordAs(ctx, tx, audit.ActionContractAdded, map[string]any{"partner": partner, "version": out})
	})
	if err != nil {
		return ContractVersion{}, err
	}
	return out, nil
}

// PartnerTerms reads a partner's terms in one round trip (four pipelined statements):
// what pricing a request needs, stamped with the terms version, which it reads first so
// that the terms are at least as new as their stamp.
func (s *Store) PartnerTerms(ctx context.Context, id string) (*Terms, error) {
	var p Partner
	var c Coalition
	var tiers []byte
	var versions []ContractVersion
	var version int64
	found := false
	b := &pgx.Batch{}
	b.Queue(`SELECT terms_version FROM journal_head`).QueryRow(func(r pgx.Row) error { return r.Scan(&version) })
	b.Queue(`SELECT id, name, status, created_at FROM partners WHERE id = $1`, id).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			found = true
			if err := rows.Scan(&p.ID, &p.Name, &p.Status, &p.CreatedAt); err != nil {
				return err
			}
		}
		return rows.Err()
	})
	b.Queue(`SELECT currency, point_value, points_scale, time_zone, settlement_time, tiers FROM coalition`).QueryRow(func(r pgx.Row) error {
		return r.Scan(&c.Currency, &c.PointValue, &c.PointsScale, &c.TimeZone, &c.SettlementTime, &tiers)
	})
	b.Queue(`SELECT version, terms, created_at FROM contracts WHERE partner_id = $1 ORDER BY version`, id).Query(func(rows pgx.Rows) error {
		var err error
		versions, err = pgx.CollectRows(rows, scanContractVersion)
		return err
	})
	if err := pg.SendBatch(ctx, s.pool, b); err != nil {
		return nil, fmt.Errorf("terms of partner %s: %w", id, err)
	}
	if !found {
		return nil, ledger.Errorf(ledger.CodeNotFound, "partner %s does not exist", id)
	}
	if err := json.Unmarshal(tiers, &c.Tiers); err != nil {
		return nil, fmt.Errorf("coalition tiers: %w", err)
	}
	if c.Tiers == nil {
		c.Tiers = []Tier{}
	}
	return &Terms{Partner: p, Coalition: c, Versions: versions, Version: version}, nil
}

// Contracts lists a partner's contract versions, oldest first.
func (s *Store) Contracts(ctx context.Context, partner string) ([]ContractVersion, error) {
	list, err := contractsTx(ctx, s.pool, partner)
	if err == nil && len(list) == 0 {
		// No versions: is there such a partner at all?
		if _, err := s.Partner(ctx, partner); err != nil {
			return nil, err
		}
	}
	return list, err
}

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func contractsTx(ctx context.Context, q querier, partner string) ([]ContractVersion, error) {
	rows, err := q.Query(ctx, `SELECT version, terms, created_at FROM contracts WHERE partner_id = $1 ORDER BY version`, partner)
	if err != nil {
		return nil, fmt.Errorf("contracts of %s: %w", partner, err)
	}
	return pgx.CollectRows(rows, scanContractVersion)
}

func scanContractVersion(r pgx.CollectableRow) (ContractVersion, error) {
	var v ContractVersion
	var raw []byte
	if err := r.Scan(&v.Version, &raw, &v.CreatedAt); err != nil {
		return v, err
	}
	return v, json.Unmarshal(raw, &v.Contract)
}

// Member is a member of the coalition and how tills find it.
type Member struct {
	ID        string    `json:"id"`
	Phone     string    `json:"phone,omitempty"`
	Card      string    `json:"card,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// MemberRef names a member as a request does: by id, phone or card (exactly one).
type MemberRef struct {
	ID    string `json:"id,omitempty"`
	Phone string `json:"phone,omitempty"`
	Card  string `json:"card,omitempty"`
}

// ParseMemberRef reads a member as a path names it: an id, "phone:+7916…" or "card:N".
func ParseMemberRef(s string) (MemberRef, error) {
	switch {
	case strings.HasPrefix(s, "phone:"):
		return MemberRef{Phone: strings.TrimPrefix(s, "phone:")}, nil
	case strings.HasPrefix(s, "card:"):
		return MemberRef{Card: strings.TrimPrefix(s, "card:")}, nil
	case ledger.ValidMemberID(s):
		return MemberRef{ID: s}, nil
	}
	return MemberRef{}, ledger.Errorf(ledger.CodeInvalid, "member %q is not an id, phone:+E164 or card:NUMBER", s)
}

// maxCard bounds a card number's length.
const maxCard = 64

// normalize checks the reference and brings a phone number to E.164.
func (r MemberRef) normalize(region string) (MemberRef, error) {
	n := 0
	for _, v := range []string{r.ID, r.Phone, r.Card} {
		if v != "" {
			n++
		}
	}
	if n != 1 {
		return r, ledger.Errorf(ledger.CodeInvalid, "name the member by exactly one of id, phone or card").With("field", "member")
	}
	if r.ID != "" && !ledger.ValidMemberID(r.ID) {
		return r, ledger.Errorf(ledger.CodeInvalid, "member id %q is not a member id", r.ID).With("field", "member.id")
	}
	if r.Phone != "" {
		p, err := NormalizePhone(r.Phone, region)
		var perr *ledger.Error
		if errors.As(err, &perr) {
			return r, perr.With("field", "member.phone")
		}
		if err != nil {
			return r, err
		}
		r.Phone = p
	}
	if r.Card != "" && (len(r.Card) > maxCard || strings.TrimSpace(r.Card) != r.Card || !utf8.ValidString(r.Card) || strings.ContainsRune(r.Card, 0)) {
		return r, ledger.Errorf(ledger.CodeInvalid, "card number must be 1 to %d characters of UTF-8 without surrounding spaces", maxCard).With("field", "member.card")
	}
	return r, nil
}

// FindMember returns the member the reference names, or not_found.
func (s *Store) FindMember(ctx context.Context, ref MemberRef, region string) (Member, error) {
	ref, err := ref.normalize(region)
	if err != nil {
		return Member{}, err
	}
	ms, err := s.resolveMembers(ctx, []memberLookup{{ref: ref}})
	if err != nil {
		return Member{}, fmt.Errorf("find member: %w", err)
	}
	if ms[0].ID == "" {
		return Member{}, ledger.Errorf(ledger.CodeNotFound, "no member is known by %s", ref)
	}
	return ms[0].Member, nil
}

// String describes the reference for messages (an id, or the kind of identifier).
func (r MemberRef) String() string {
	switch {
	case r.ID != "":
		return "id " + r.ID
	case r.Phone != "":
		return "phone " + r.Phone
	}
	return "card " + r.Card
}

// resolvedMember is a member as a request resolves it: found, with its net points earned
// over the tier's days; enrolled on the spot; or neither (ID empty: unknown, and not
// enrolled).
type resolvedMember struct {
	Member
	earned   decimal.Decimal
	enrolled bool
	// usedReference: unknown and not enrolled, because its earn's reference was used.
	usedReference bool
}

// memberLookup is one request's member to resolve: the reference (normalised), the
// business days [from, to) of its tier (empty: no tier wanted), and whether an unknown
// phone or card is to be enrolled, and then durably (see resolveMembers).
type memberLookup struct {
	ref            MemberRef
	from, to       string
	enrol, durable bool
	// partner and reference are an enrolling earn's: a phone or card is not enrolled for
	// an earn whose reference the partner already used, which is refused anyway.
	partner, reference string
}

// The member look-ups, one per identifier, each by its own unique index (no OR for the
// planner): $1 the identifiers, $2 and $3 the first and the end of each one's tier days
// (” for none); i is the 1-based place in the arrays.
const (
	findMembersByID    = findMembers + `m.id = w.value`
	findMembersByPhone = findMembers + `m.phone = w.value`
	findMembersByCard  = findMembers + `m.card = w.value`
	findMembers        = `SELECT w.i, m.id, m.phone, m.card, m.created_at,
		       (SELECT COALESCE(sum(d.points), 0) FROM member_earned_days d
		         WHERE d.member_id = m.id AND d.day >= NULLIF(w.from_day, '')::date AND d.day < NULLIF(w.to_day, '')::date)
		  FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS w(value, from_day, to_day, i)
		  JOIN members m ON `
	// enrolMembers inserts the new members whose phone or card nobody holds yet, in the
	// order given (sorted, so that two requests enrolling the same cards never wait on
	// each other crosswise); a phone or card enrolled meanwhile is left out.
	// A member is not enrolled for an earn whose reference ($5, of partner $4; '' for
	// none) the partner already used: the earn would be refused as a duplicate.
	enrolMembers = `INSERT INTO members (id, phone, card)
		SELECT n.id, NULLIF(n.phone, ''), NULLIF(n.card, '')
		  FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) WITH ORDINALITY AS n(id, phone, card, partner, ref, i)
		  LEFT JOIN LATERAL (` + usedReference + `) u ON true
		 WHERE u.used IS NULL
		 ORDER BY n.i
		ON CONFLICT DO NOTHING RETURNING id, phone, card, created_at`
	// usedEarnReferences are the earn references of $2 (of partners $1) already used.
	usedEarnReferences = `SELECT n.partner, n.ref FROM unnest($1::text[], $2::text[]) AS n(partner, ref)
		 CROSS JOIN LATERAL (` + usedReference + `) u`
	// usedReference finds n's reference among the partner's earns, by the unique index.
	// Written as a LATERAL look-up so that the plan is a look-up per reference whatever
	// the size of entries when the connection first planned it (a generic plan made while
	// entries was small hashed all of it, and kept doing so as it grew).
	usedReference = `SELECT true AS used FROM entries e
		 WHERE n.ref <> '' AND e.partner_id = n.partner AND e.kind = 'earn' AND e.reference = n.ref LIMIT 1`
)

// maxResolveTries bounds the look-ups of a phone or card that another request enrols
// between this one's look-up and its insert.
const maxResolveTries = 3

// resolveMembers resolves a request's members (see resolveTrip), in a round trip it may
// share with other requests'.
func (s *Store) resolveMembers(ctx context.Context, lookups []memberLookup) ([]resolvedMember, error) {
	return s.resolver.resolve(ctx, lookups)
}

// resolveTrip resolves many members in one round trip: each lookup's member by id,
// phone or card, with its net points earned over its tier days; and the unknown phones
// and cards to enrol are enrolled, each once however many lookups name it (they all get
// that member). An unknown id, or an unknown phone or card not to enrol, resolves to no
// member (ID empty).
//
// Enrolments wait for their WAL flush only if a lookup asks for it (durable): an earn
// that posts an entry enrols its member without, because nobody is answered before the
// earn's own entry commits synchronously, later in the same WAL, and that flush makes the
// member durable too. If the server crashes first, the till's retry simply enrols the
// member again. A phone or card enrolled by another request between the look-up and the
// insert is looked up again.
func (s *Store) resolveTrip(ctx context.Context, lookups []memberLookup) ([]resolvedMember, error) {
	out := make([]resolvedMember, len(lookups))
	todo := make([]int, len(lookups))
	for i := range todo {
		todo[i] = i
	}
	for try := 0; try < maxResolveTries && len(todo) > 0; try++ {
		var err error
		if todo, err = s.resolveOnce(ctx, lookups, todo, out); err != nil {
			return nil, fmt.Errorf("resolve %d members: %w", len(lookups), err)
		}
	}
	if len(todo) > 0 {
		return nil, fmt.Errorf("resolve members: %s was enrolled and not found %d times", lookups[todo[0]].ref, maxResolveTries)
	}
	return out, nil
}

// memberKey is a lookup's identifier: which column, and the value.
type memberKey struct{ column, value string }

func keyOf(r MemberRef) memberKey {
	switch {
	case r.Phone != "":
		return memberKey{"phone", r.Phone}
	case r.Card != "":
		return memberKey{"card", r.Card}
	}
	return memberKey{"id", r.ID}
}

// resolveOnce runs one round trip for the lookups todo, fills in out, and returns the
// lookups to try again: those whose phone or card another request enrolled meanwhile.
func (s *Store) resolveOnce(ctx context.Context, lookups []memberLookup, todo []int, out []resolvedMember) ([]int, error) {
	// The distinct (identifier, tier days) asked for, per column.
	type window struct {
		key      memberKey
		from, to string
	}
	type column struct {
		sql              string
		values, from, to []string
		at               map[window]int // place in the arrays
	}
	columns := map[string]*column{
		"id":    {sql: findMembersByID, at: map[window]int{}},
		"phone": {sql: findMembersByPhone, at: map[window]int{}},
		"card":  {sql: findMembersByCard, at: map[window]int{}},
	}
	enrol := map[memberKey]bool{}
	// The reference of the earns that enrol each key, when they all name the same one:
	// the key is enrolled only if that reference is still free.
	onlyRef := map[memberKey]usedRef{}
	durable := false
	for _, i := range todo {
		l := lookups[i]
		k := keyOf(l.ref)
		col := columns[k.column]
		w := window{k, l.from, l.to}
		if _, ok := col.at[w]; !ok {
			col.at[w] = len(col.values)
			col.values, col.from, col.to = append(col.values, k.value), append(col.from, l.from), append(col.to, l.to)
		}
		if l.enrol && k.column != "id" {
			r := usedRef{l.partner, l.reference}
			if prev, ok := onlyRef[k]; ok && prev != r {
				r = usedRef{}
			}
			onlyRef[k] = r
			enrol[k] = true
			durable = durable || l.durable
		}
	}
	found := map[window]resolvedMember{}
	// One round trip: the transaction, its settings and the statements, pipelined. The
	// look-ups name members by key; planned anew on every call they cost five times
	// their execution.
	b := &pgx.Batch{}
	b.Queue(`BEGIN`)
	b.Queue(pg.PlanByKey)
	if len(enrol) > 0 && !durable {
		b.Queue(`SET LOCAL synchronous_commit = off`)
	}
	for _, name := range []string{"id", "phone", "card"} {
		col := columns[name]
		if len(col.values) == 0 {
			continue
		}
		windows := make([]window, len(col.values))
		for w, at := range col.at {
			windows[at] = w
		}
		b.Queue(col.sql, col.values, col.from, col.to).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var at int
				var m resolvedMember
				var phone, card *string
				if err := rows.Scan(&at, &m.ID, &phone, &card, &m.CreatedAt, &m.earned); err != nil {
					return err
				}
				if at < 1 || at > len(windows) {
					return fmt.Errorf("member look-up answered place %d of %d", at, len(windows))
				}
				m.Phone, m.Card = deref(phone), deref(card)
				found[windows[at-1]] = m
			}
			return rows.Err()
		})
	}
	enrolled := map[memberKey]Member{}
	taken := map[usedRef]bool{}
	if len(enrol) > 0 {
		keys := make([]memberKey, 0, len(enrol))
		for k := range enrol {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool {
			if keys[i].column != keys[j].column {
				return keys[i].column < keys[j].column
			}
			return keys[i].value < keys[j].value
		})
		ids, phones, cards := make([]string, len(keys)), make([]string, len(keys)), make([]string, len(keys))
		refPartners, refs := make([]string, len(keys)), make([]string, len(keys))
		anyRef := false
		for i, k := range keys {
			ids[i] = ulid.Make().String()
			if k.column == "phone" {
				phones[i] = k.value
			} else {
				cards[i] = k.value
			}
			refPartners[i], refs[i] = onlyRef[k].partner, onlyRef[k].reference
			anyRef = anyRef || refs[i] != ""
		}
		if anyRef {
			b.Queue(usedEarnReferences, refPartners, refs).Query(func(rows pgx.Rows) error {
				var r usedRef
				_, err := pgx.ForEachRow(rows, []any{&r.partner, &r.reference}, func() error {
					taken[r] = true
					return nil
				})
				return err
			})
		}
		b.Queue(enrolMembers, ids, phones, cards, refPartners, refs).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var m Member
				var phone, card *string
				if err := rows.Scan(&m.ID, &phone, &card, &m.CreatedAt); err != nil {
					return err
				}
				m.Phone, m.Card = deref(phone), deref(card)
				enrolled[keyOf(MemberRef{Phone: m.Phone, Card: m.Card})] = m
			}
			return rows.Err()
		})
	}
	b.Queue(`COMMIT`)
	if err := pg.SendBatch(ctx, s.pool, b); err != nil {
		return nil, err
	}
	var again []int
	enrolling := map[memberKey]bool{} // an enrolling lookup of the key came at or before this one
	for _, i := range todo {
		l := lookups[i]
		k := keyOf(l.ref)
		if m, ok := found[window{k, l.from, l.to}]; ok {
			out[i] = m
			continue
		}
		enrolling[k] = enrolling[k] || l.enrol
		if m, ok := enrolled[k]; ok {
			if !enrolling[k] {
				// Enrolled for a later item (lookups come in the items' order): sent alone,
				// this one would not find the member yet.
				out[i] = resolvedMember{}
				continue
			}
			out[i] = resolvedMember{Member: m, earned: decimal.Zero, enrolled: true}
			continue
		}
		if enrol[k] && l.enrol && taken[onlyRef[k]] {
			// Not enrolled: the earn's reference is used, and the writer would refuse it.
			out[i] = resolvedMember{usedReference: true}
			continue
		}
		if enrol[k] && !taken[onlyRef[k]] {
			// Enrolled by another request after the look-up: look it up again.
			again = append(again, i)
			continue
		}
		out[i] = resolvedMember{}
	}
	return again, nil
}

// usedRef is a partner's earn reference.
type usedRef struct{ partner, reference string }

// usedEarnReferences are those of refs that their partners already used for an earn.
func (s *Store) usedEarnReferences(ctx context.Context, refs []usedRef) (map[usedRef]bool, error) {
	used := map[usedRef]bool{}
	if len(refs) == 0 {
		return used, nil
	}
	partnerIDs, references := make([]string, len(refs)), make([]string, len(refs))
	for i, r := range refs {
		partnerIDs[i], references[i] = r.partner, r.reference
	}
	rows, err := s.pool.Query(ctx, usedEarnReferences, partnerIDs, references)
	if err != nil {
		return nil, err
	}
	var r usedRef
	_, err = pgx.ForEachRow(rows, []any{&r.partner, &r.reference}, func() error {
		used[r] = true
		return nil
	})
	return used, err
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// Enrol creates a member with a phone (E.164) and/or a card number.
func (s *Store) Enrol(ctx context.Context, phone, card string) (Member, error) {
	m := Member{ID: ulid.Make().String(), Phone: phone, Card: card}
	var p, c *string
	if phone != "" {
		p = &phone
	}
	if card != "" {
		c = &card
	}
	err := s.pool.QueryRow(ctx, `INSERT INTO members (id, phone, card) VALUES ($1, $2, $3) RETURNING created_at`, m.ID, p, c).Scan(&m.CreatedAt)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		return Member{}, ledger.Errorf(ledger.CodeDuplicateReference, "a member with this phone or card already exists")
	}
	if err != nil {
		return Member{}, fmt.Errorf("enrol member: %w", err)
	}
	return m, nil
}
