package ledger

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"reflect"
	"sort"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/oklog/ulid/v2"
	"github.com/shopspring/decimal"

	"github.com/coalitionledger/coalition/internal/pg"
)

// Ledger posts entries to the journal and reads the books, in PostgreSQL.
type Ledger struct {
	pool   *pgxpool.Pool
	clock  func() time.Time
	window Window
	newID  func() string
	// onTerms, if set, is told the terms version every batch reads under the head.
	onTerms atomic.Pointer[func(int64)]
}

// Option configures a Ledger.
type Option func(*Ledger)

// WithClock makes the ledger read the time from clock (record times and the business-time
// window).
func WithClock(clock func() time.Time) Option { return func(l *Ledger) { l.clock = clock } }

// WithWindow sets how far from now business times may lie.
func WithWindow(w Window) Option { return func(l *Ledger) { l.window = w } }

// New returns a ledger over pool, whose connections must come from pg.Connect.
func New(pool *pgxpool.Pool, opts ...Option) *Ledger {
	l := &Ledger{pool: pool, clock: time.Now, window: DefaultWindow, newID: func() string { return ulid.Make().String() }}
	for _, o := range opts {
		o(l)
	}
	return l
}

// ObserveTerms has the ledger tell observe the terms version that each batch reads under
// the journal head's lock, so that a cache of the terms learns of a change at the next
// post.
func (l *Ledger) ObserveTerms(observe func(version int64)) { l.onTerms.Store(&observe) }

// Now is the ledger's time (its clock, WithClock).
func (l *Ledger) Now() time.Time { return l.clock() }

// Window returns how far from now the ledger lets business times lie.
func (l *Ledger) Window() Window { return l.window }

// Pool returns the ledger's connection pool.
func (l *Ledger) Pool() *pgxpool.Pool { return l.pool }

// Post writes a batch of entries in one transaction and answers each: an entry that
// breaks a rule is refused with its reason and does not stop the others. A replay of an
// idempotency key returns the first answer; the same key with another request is refused
// with CodeIdempotencyConflict. The error is non-nil only when the batch as a whole could
// not be written (an empty or oversized batch, a database failure); then nothing was.
func (l *Ledger) Post(ctx context.Context, entries []Entry) ([]Result, error) {
	return l.post(ctx, entries, false)
}

// PostAll writes a batch all or nothing: if any entry is refused, none is written, the
// refused entries carry their reasons and the others CodeBatchAborted.
func (l *Ledger) PostAll(ctx context.Context, entries []Entry) ([]Result, error) {
	return l.post(ctx, entries, true)
}

// PostOne posts a single entry and returns its answer; a refusal comes back as the error.
func (l *Ledger) PostOne(ctx context.Context, e Entry) (*Posted, error) {
	res, err := l.Post(ctx, []Entry{e})
	if err != nil {
		return nil, err
	}
	if res[0].Err != nil {
		return nil, res[0].Err
	}
	return res[0].Entry, nil
}

// errAborted rolls back an all-or-nothing batch that had a refusal.
var errAborted = errors.New("batch aborted")

// ErrTermsChanged is the answer to an entry priced at a terms version older than the
// journal's (Entry.TermsVersion): nothing was written and no answer was stored for its
// idempotency key. Price it again on fresh terms and post it again.
var ErrTermsChanged = errors.New("the partner's terms, the coalition's settings or the API keys changed while the request was priced; nothing was written")

// TermsChanged reports whether a result is an entry sent back for ErrTermsChanged.
func (r Result) TermsChanged() bool { return r.Err != nil && r.Err.Code == CodeTermsChanged }

// Refusal returns the result's refusal (nil if the entry was accepted), for an entry with
// an idempotency key posted by Post or the writer (an all-or-nothing batch that is
// refused stores nothing): marked Stored when the engine stored it as the key's first
// answer (every refusal but a conflict, changed terms or an aborted batch), and Replayed
// when it answered an earlier request.
func (r Result) Refusal() *Error {
	if r.Err == nil {
		return nil
	}
	e := *r.Err
	e.stored = r.Err.Code != CodeIdempotencyConflict && r.Err.Code != CodeTermsChanged && r.Err.Code != CodeBatchAborted
	e.replayed = r.Replayed
	return &e
}

func (l *Ledger) post(ctx context.Context, entries []Entry, atomic bool) ([]Result, error) {
	work, hashes, err := prepare(entries)
	if err != nil {
		return nil, err
	}
	var results []Result
	// Two round trips: BEGIN rides with the reads, COMMIT with the writes.
	err = pg.InPipelinedTx(ctx, l.pool, func(tx pg.Sender) (*pgx.Batch, error) {
		fresh := make([]Entry, len(work))
		copy(fresh, work)
		var writes *pgx.Batch
		var err error
		results, writes, err = l.postTx(ctx, tx, fresh, hashes, atomic)
		return writes, err
	})
	if errors.Is(err, errAborted) {
		return results, nil
	}
	if err != nil {
		return nil, fmt.Errorf("post %d entries: %w", len(entries), err)
	}
	return results, nil
}

// PostAllIn posts a batch all or nothing inside the caller's transaction, so that a job
// (a settlement run, a confirmed payment) commits its entries together with its own
// rows. A refused entry comes back as the error, an *Error, and the caller must then
// roll back; so must it on any other error.
func (l *Ledger) PostAllIn(ctx context.Context, tx pgx.Tx, entries []Entry) ([]*Posted, error) {
	work, hashes, err := prepare(entries)
	if err != nil {
		return nil, err
	}
	results, writes, err := l.postTx(ctx, tx, work, hashes, true)
	if err == nil && writes.Len() > 0 {
		err = tx.SendBatch(ctx, writes).Close()
	}
	if errors.Is(err, errAborted) {
		for _, r := range results {
			if r.Err != nil && r.Err.Code != CodeBatchAborted {
				return nil, r.Err
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("post %d entries: %w", len(entries), err)
	}
	posted := make([]*Posted, len(results))
	for i, r := range results {
		posted[i] = r.Entry
	}
	return posted, nil
}

// prepare checks a batch's size and copies it, since the planner fills in Reverses on
// its copies, with the request hash of each entry that has an idempotency key.
func prepare(entries []Entry) ([]Entry, [][]byte, error) {
	if len(entries) == 0 {
		return nil, nil, Errorf(CodeEmptyBatch, "a batch needs at least one entry")
	}
	if len(entries) > MaxBatch {
		return nil, nil, Errorf(CodeBatchTooLarge, "a batch holds at most %d entries, this one has %d", MaxBatch, len(entries))
	}
	work := make([]Entry, len(entries))
	copy(work, entries)
	hashes := make([][]byte, len(work))
	for i := range work {
		work[i].canonicalMeta()
		if work[i].IdempotencyKey != "" {
			hashes[i] = work[i].RequestHash
			if hashes[i] == nil {
				hashes[i] = requestHash(&work[i])
			}
		}
	}
	return work, hashes, nil
}

// requestHash identifies an entry request for idempotency when the caller gave none.
func requestHash(e *Entry) []byte {
	raw, _ := json.Marshal(struct {
		Entry
		OpType string
	}{*e, reflect.TypeOf(e.Op).String()})
	sum := sha256.Sum256(raw)
	return sum[:]
}

func lockID(parts ...string) int64 {
	h := fnv.New64a()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return int64(h.Sum64())
}

// lockSet is what the first round trip of a batch locks and loads.
type lockSet struct {
	advisory    []int64
	keyPartners []string
	keys        []string
	refPartners []string
	refKinds    []string
	refs        []string
	members     []string // sorted
	spenders    []string // members with an entry other than an issue: their lots are needed
	accounts    []string // member accounts, sorted
	lots        []string // lots named by clawbacks and expiries
	clawLots    []string
	restores    []string // consumption entries being restored
	originals   []string // entries named by Reverses or Restore
	holds       []string // holds named by captures and releases
}

func collectLocks(entries []Entry) lockSet {
	var s lockSet
	adv := map[int64]bool{}
	members := map[string]bool{}
	add := func(list *[]string, v string) {
		if v != "" {
			*list = append(*list, v)
		}
	}
	for _, e := range entries {
		if e.IdempotencyKey != "" {
			adv[lockID("key", e.Partner, e.IdempotencyKey)] = true
			s.keyPartners = append(s.keyPartners, e.Partner)
			s.keys = append(s.keys, e.IdempotencyKey)
		}
		if e.Reference != "" {
			adv[lockID("ref", e.Partner, string(e.Kind), e.Reference)] = true
			s.refPartners = append(s.refPartners, e.Partner)
			s.refKinds = append(s.refKinds, string(e.Kind))
			s.refs = append(s.refs, e.Reference)
		}
		if e.Op != nil && ValidMemberID(e.Member) {
			_, issue := e.Op.(Issue)
			members[e.Member] = members[e.Member] || !issue
		}
		add(&s.originals, e.Reverses)
		switch op := e.Op.(type) {
		case Clawback:
			add(&s.lots, op.Lot)
			add(&s.clawLots, op.Lot)
		case Expire:
			add(&s.lots, op.Lot)
		case Restore:
			add(&s.restores, op.Of)
			add(&s.originals, op.Of)
		case Capture:
			add(&s.holds, op.Hold)
		case Release:
			add(&s.holds, op.Hold)
		}
	}
	for id := range adv {
		s.advisory = append(s.advisory, id)
	}
	sort.Slice(s.advisory, func(i, j int) bool { return s.advisory[i] < s.advisory[j] })
	for m, spends := range members {
		s.members = append(s.members, m)
		if spends {
			s.spenders = append(s.spenders, m)
		}
	}
	sort.Strings(s.members)
	for _, m := range s.members {
		s.accounts = append(s.accounts, MemberAccount(m), MemberHeldAccount(m))
	}
	return s
}

// The writer's look-ups by a list of keys are LATERAL, one index look-up per key,
// whatever the size of the table when the connection made its generic plan: that of
// `(partner_id, kind, reference) IN (SELECT * FROM unnest(…))`, made while entries was
// small, hashed the whole reference index on every batch as the journal grew (7 ms a
// batch at 30,000 entries).
const (
	// storedKeysSQL reads the stored answers of keys $2 of partners $1.
	storedKeysSQL = `SELECT n.partner, n.key, k.request_hash, k.result FROM unnest($1::text[], $2::text[]) AS n(partner, key)
		CROSS JOIN LATERAL (SELECT request_hash, result FROM idempotency_keys
		 WHERE partner_id = n.partner AND key = n.key OFFSET 0) k`
	// memberLotsSQL loads, of members $1, the lots that hold points of the members who
	// spend ($4) or who owe a debt that an earn repays (a member who only earns needs
	// none of them, and a hot member has hundreds), and the lots that reversals and
	// expiries name ($2) and that the restored consumptions took ($3). Indexed look-ups,
	// not one OR that would scan every lot ever issued.
	memberLotsSQL = `SELECT id, member_id, issuer, entry_id, position, points, remaining, held, expired, expires_at, COALESCE(business_day::text, '')
		  FROM lots WHERE member_id = ANY($4) AND remaining > 0
		UNION
		SELECT l.id, l.member_id, l.issuer, l.entry_id, l.position, l.points, l.remaining, l.held, l.expired, l.expires_at,
		       COALESCE(l.business_day::text, '')
		  FROM (SELECT DISTINCT member_id FROM debts WHERE member_id = ANY($1) AND outstanding > 0) d
		 CROSS JOIN LATERAL (SELECT * FROM lots WHERE member_id = d.member_id AND remaining > 0 OFFSET 0) l
		UNION
		SELECT id, member_id, issuer, entry_id, position, points, remaining, held, expired, expires_at, COALESCE(business_day::text, '')
		  FROM lots WHERE id = ANY($2) AND member_id = ANY($1)
		UNION
		SELECT l.id, l.member_id, l.issuer, l.entry_id, l.position, l.points, l.remaining, l.held, l.expired, l.expires_at,
		       COALESCE(l.business_day::text, '')
		  FROM lots l JOIN lot_movements m ON m.lot_id = l.id
		 WHERE m.entry_id = ANY($3) AND l.member_id = ANY($1)`
	// usedReferencesSQL finds which of references $3 (of kinds $2, partners $1) are used.
	usedReferencesSQL = `SELECT n.partner, n.kind, n.ref FROM unnest($1::text[], $2::text[], $3::text[]) AS n(partner, kind, ref)
		CROSS JOIN LATERAL (SELECT FROM entries e
		 WHERE e.partner_id = n.partner AND e.kind = n.kind AND e.reference = n.ref LIMIT 1) u`
)

type storedKey struct {
	hash   []byte
	result []byte
}

func (l *Ledger) postTx(ctx context.Context, tx pg.Sender, entries []Entry, hashes [][]byte, atomic bool) ([]Result, *pgx.Batch, error) {
	now := l.clock().UTC().Truncate(time.Microsecond)
	locks := collectLocks(entries)
	bk := &books{
		now: now, window: l.window, newID: l.newID,
		members: map[string]*memberState{}, consumptions: map[string]*consumption{},
		originals: map[string]original{}, references: map[string]bool{},
	}
	for _, m := range locks.members {
		bk.members[m] = &memberState{reversed: map[string]decimal.Decimal{}, earned: map[string]decimal.Decimal{}}
	}
	stored := map[string]storedKey{}
	var head struct {
		position     int64
		hash         []byte
		recordedAt   time.Time
		termsVersion int64
	}

	// Round trip 1: lock, in this order, the idempotency keys and references (advisory),
	// the member accounts (sorted), then the journal head; and load what planning needs.
	b := &pgx.Batch{}
	// These reads name rows by key: planned once per connection (again after a table is
	// analysed). The settings are reset before the writes: a generic plan of the lots
	// update, made while the table was small, joins it by a full index scan, and would
	// keep doing so on every batch as the table grows.
	b.Queue(pg.PlanByKey)
	if len(locks.advisory) > 0 {
		b.Queue(`SELECT count(pg_advisory_xact_lock(k)) FROM (SELECT unnest($1::bigint[]) AS k ORDER BY 1) s`, locks.advisory)
	}
	if len(locks.keys) > 0 {
		b.Queue(storedKeysSQL, locks.keyPartners, locks.keys).
			Query(func(rows pgx.Rows) error {
				var p, k string
				var sk storedKey
				_, err := pgx.ForEachRow(rows, []any{&p, &k, &sk.hash, &sk.result}, func() error {
					stored[p+"\x00"+k] = storedKey{hash: append([]byte(nil), sk.hash...), result: append([]byte(nil), sk.result...)}
					return nil
				})
				return err
			})
	}
	if len(locks.refs) > 0 {
		b.Queue(usedReferencesSQL, locks.refPartners, locks.refKinds, locks.refs).
			Query(func(rows pgx.Rows) error {
				var p, k, r string
				_, err := pgx.ForEachRow(rows, []any{&p, &k, &r}, func() error {
					bk.references[referenceKey(p, EntryKind(k), r)] = true
					return nil
				})
				return err
			})
	}
	if len(locks.members) > 0 {
		// Each member's points account, made if missing: its row lock stands for the
		// member's. The held account is made by the first hold's balance update (most
		// members never hold points: one row less per member).
		b.Queue(`INSERT INTO accounts (name, kind, unit, member_id)
			SELECT 'member:' || m, 'member', 'PTS', m FROM unnest($1::text[]) AS m ORDER BY 1
			ON CONFLICT (name) DO NOTHING`, locks.members)
		// Locked first, read after: a statement that waits for a row lock sees the locked row
		// as its holder committed it, but not rows that holder inserted (a member's held
		// account, made by its first hold); the next statement's snapshot does.
		b.Queue(`SELECT count(*) FROM (SELECT FROM accounts WHERE name = ANY($1) ORDER BY name FOR NO KEY UPDATE) s`, locks.accounts)
		b.Queue(`SELECT name, balance FROM accounts WHERE name = ANY($1)`, locks.accounts).
			Query(func(rows pgx.Rows) error {
				var name string
				var bal decimal.Decimal
				_, err := pgx.ForEachRow(rows, []any{&name, &bal}, func() error {
					a, _ := ParseAccount(name)
					if m := bk.members[a.Member]; m != nil {
						if a.Kind == KindMember {
							m.balance = bal.Neg()
						} else {
							m.held = bal.Neg()
						}
					}
					return nil
				})
				return err
			})
		b.Queue(memberLotsSQL, locks.members, locks.lots, locks.restores, locks.spenders).
			Query(func(rows pgx.Rows) error {
				var lot Lot
				_, err := pgx.ForEachRow(rows, []any{&lot.ID, &lot.Member, &lot.Issuer, &lot.Entry, &lot.Position,
					&lot.Points, &lot.Remaining, &lot.Held, &lot.Expired, &lot.ExpiresAt, &lot.BusinessDay}, func() error {
					l := lot
					if l.ExpiresAt != nil {
						t := l.ExpiresAt.UTC()
						l.ExpiresAt = &t
					}
					m := bk.members[l.Member]
					m.lots = append(m.lots, lotState{Lot: l, order: l.Position})
					return nil
				})
				return err
			})
		b.Queue(`SELECT id, member_id, partner_id, entry_id, position, points, outstanding, rate
			  FROM debts WHERE member_id = ANY($1) AND outstanding > 0 ORDER BY position, id`, locks.members).
			Query(func(rows pgx.Rows) error {
				var d Debt
				_, err := pgx.ForEachRow(rows, []any{&d.ID, &d.Member, &d.Partner, &d.Entry, &d.Position, &d.Points, &d.Outstanding, &d.Rate}, func() error {
					m := bk.members[d.Member]
					m.debts = append(m.debts, debtState{Debt: d})
					return nil
				})
				return err
			})
	}
	if len(locks.holds) > 0 && len(locks.members) > 0 {
		queueHolds(b, bk, locks.holds)
	}
	if len(locks.clawLots) > 0 {
		// The reversals of each lot's earn, found from the lot (OFFSET 0 keeps the planner
		// from joining the other way round: a generic plan merged all of entries'
		// reversals, every one ever posted, on every batch with a reversal).
		b.Queue(`SELECT l.member_id, l.entry_id, COALESCE(sum(-p.amount), 0)
			  FROM lots l
			  CROSS JOIN LATERAL (SELECT e.position FROM entries e WHERE e.reverses = l.entry_id OFFSET 0) e
			  JOIN postings p ON p.position = e.position AND p.account = 'partner:' || l.issuer || ':issued'
			 WHERE l.id = ANY($1)
			 GROUP BY 1, 2`, locks.clawLots).
			Query(func(rows pgx.Rows) error {
				var member, entry string
				var done decimal.Decimal
				_, err := pgx.ForEachRow(rows, []any{&member, &entry, &done}, func() error {
					if m := bk.members[member]; m != nil {
						m.reversed[entry] = done
					}
					return nil
				})
				return err
			})
	}
	if len(locks.originals) > 0 {
		b.Queue(`SELECT id, kind, partner_id, COALESCE(member_id, '') FROM entries WHERE id = ANY($1)`, locks.originals).
			Query(func(rows pgx.Rows) error {
				var id, kind, partner, member string
				_, err := pgx.ForEachRow(rows, []any{&id, &kind, &partner, &member}, func() error {
					bk.originals[id] = original{kind: EntryKind(kind), partner: partner, member: member}
					return nil
				})
				return err
			})
	}
	if len(locks.restores) > 0 {
		l.queueConsumptions(b, bk, locks.restores)
	}
	b.Queue(`SELECT position, hash, recorded_at, terms_version FROM journal_head FOR UPDATE`).QueryRow(func(r pgx.Row) error {
		return r.Scan(&head.position, &head.hash, &head.recordedAt, &head.termsVersion)
	})
	// The settings are read under the head lock, which a change of them takes too: a
	// batch never posts in a currency or scale that changed after it read them.
	var currency, zone string
	var pointsScale int32
	b.Queue(`SELECT currency, points_scale, time_zone FROM coalition`).QueryRow(func(r pgx.Row) error {
		return r.Scan(&currency, &pointsScale, &zone)
	})
	b.Queue(`SET LOCAL plan_cache_mode TO DEFAULT`)
	b.Queue(`SET LOCAL enable_seqscan TO DEFAULT`)
	b.Queue(`SET LOCAL jit TO DEFAULT`)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, nil, err
	}
	if observe := l.onTerms.Load(); observe != nil {
		(*observe)(head.termsVersion)
	}
	units, err := NewUnits(currency, pointsScale)
	if err != nil {
		return nil, nil, fmt.Errorf("coalition settings: %w", err)
	}
	bk.units = units
	if bk.zone, err = LoadZone(zone); err != nil {
		return nil, nil, fmt.Errorf("coalition time zone %q: %w", zone, err)
	}
	// Lots created by this batch come after every lot already in the journal.
	bk.nextOrder = head.position
	bk.chargeConsumptions()
	for _, m := range bk.members {
		m.sortLots()
	}

	// Plan every entry in order against the locked books.
	results := make([]Result, len(entries))
	plans := make([]*planned, len(entries))
	firstOfKey := map[string]int{}
	repeats := map[int]int{} // a later use of a key in this batch → its first use
	refused := false
	for i := range entries {
		e := &entries[i]
		if e.IdempotencyKey != "" {
			k := e.Partner + "\x00" + e.IdempotencyKey
			if sk, ok := stored[k]; ok {
				results[i] = replay(sk, hashes[i], e)
				continue
			}
		}
		if e.TermsVersion != 0 && e.TermsVersion != head.termsVersion {
			// Priced on terms that have changed since: back to the caller, unwritten, its
			// key left free (a stored first answer above still wins).
			results[i] = Result{Err: Errorf(CodeTermsChanged, "%s", ErrTermsChanged).With("terms_version", head.termsVersion)}
			refused = true
			continue
		}
		if e.IdempotencyKey != "" {
			k := e.Partner + "\x00" + e.IdempotencyKey
			if j, ok := firstOfKey[k]; ok {
				repeats[i] = j
				continue
			}
			firstOfKey[k] = i
		}
		p, perr := bk.plan(e)
		if perr != nil {
			results[i] = Result{Err: perr}
			refused = true
			continue
		}
		plans[i] = p
	}
	if atomic && refused {
		for i := range results {
			if results[i].Err == nil && !results[i].Replayed {
				results[i] = Result{Err: Errorf(CodeBatchAborted, "another entry of this all-or-nothing batch was refused; nothing was written")}
			}
		}
		return results, nil, errAborted
	}

	// Positions, record time and the hash chain for the whole batch in one step.
	recordedAt := now
	if head.recordedAt.After(recordedAt) {
		recordedAt = head.recordedAt.UTC()
	}
	prev := head.hash
	position := head.position
	lotPosition := map[string]int64{}
	for i, p := range plans {
		if p == nil {
			continue
		}
		position++
		e := p.entry
		posted := &Posted{
			ID: p.id, Position: position, Kind: e.Kind, Partner: e.Partner, Member: e.Member, Reference: e.Reference,
			BusinessTime: e.BusinessTime.UTC().Truncate(time.Microsecond), RecordedAt: recordedAt,
			Metadata: p.metadata, Reverses: e.Reverses, Postings: p.postings, Movements: p.movements, PrevHash: prev,
			Lot: p.lot, Hold: p.hold, MemberBalance: p.balance, MemberHeld: p.held,
		}
		if posted.Movements == nil {
			posted.Movements = []Movement{}
		}
		if posted.Lot != nil {
			posted.Lot.Position = position
		}
		if posted.Hold != nil && posted.Hold.Entry == p.id {
			posted.Hold.Position = position
		}
		lotPosition[p.id] = position
		h, err := entryHash(posted, units) // p.metadata is canonical already
		if err != nil {
			return nil, nil, err
		}
		posted.Hash = h
		prev = h
		results[i] = Result{Entry: posted}
	}
	for i, j := range repeats {
		first, err := json.Marshal(results[j])
		if err != nil {
			return nil, nil, err
		}
		results[i] = replay(storedKey{hash: hashes[j], result: first}, hashes[i], &entries[i])
	}

	writes, err := l.write(units, entries, hashes, results, plans, bk, lotPosition, position, prev, recordedAt)
	if err != nil {
		return nil, nil, err
	}
	return results, writes, nil
}

// replay answers a reused idempotency key: the stored first answer, or a conflict when the
// request differs.
func replay(sk storedKey, hash []byte, e *Entry) Result {
	if !bytes.Equal(sk.hash, hash) {
		return Result{Err: keyConflict(e.IdempotencyKey, "a different request of partner "+e.Partner)}
	}
	var r Result
	if err := json.Unmarshal(sk.result, &r); err != nil {
		return Result{Err: Errorf(CodeIdempotencyConflict, "the stored answer to idempotency key %q cannot be read", e.IdempotencyKey)}
	}
	r.Replayed = true
	return r
}

// queueHolds loads the holds that captures and releases name, with the lots they reserve,
// into their members' books (the members are locked, and so are their holds).
func queueHolds(b *pgx.Batch, bk *books, ids []string) {
	b.Queue(`SELECT h.id, h.member_id, h.partner_id, h.entry_id, h.position, h.points, h.held, h.rate, h.expires_at, h.status,
			COALESCE(array_agg(l.lot_id ORDER BY l.seq) FILTER (WHERE l.lot_id IS NOT NULL), '{}'),
			COALESCE(array_agg(l.points ORDER BY l.seq) FILTER (WHERE l.lot_id IS NOT NULL), '{}')
		  FROM holds h LEFT JOIN hold_lots l ON l.hold_id = h.id
		 WHERE h.id = ANY($1) AND h.member_id = ANY($2)
		 GROUP BY h.id`, ids, keysOf(bk.members)).
		Query(func(rows pgx.Rows) error {
			var h Hold
			var lots []string
			var points []decimal.Decimal
			_, err := pgx.ForEachRow(rows, []any{&h.ID, &h.Member, &h.Partner, &h.Entry, &h.Position, &h.Points, &h.Held,
				&h.Rate, &h.ExpiresAt, &h.Status, &lots, &points}, func() error {
				hs := holdState{Hold: h}
				hs.ExpiresAt = hs.ExpiresAt.UTC()
				for i := range lots {
					hs.lots = append(hs.lots, holdLot{lot: lots[i], points: points[i]})
				}
				m := bk.members[h.Member]
				m.holds = append(m.holds, hs)
				return nil
			})
			return err
		})
}

func keysOf[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// queueConsumptions loads the redemptions that Restore operations give back: the lots
// they took, what has come back so far, and their money legs.
func (l *Ledger) queueConsumptions(b *pgx.Batch, bk *books, of []string) {
	get := func(id string) *consumption {
		c := bk.consumptions[id]
		if c == nil {
			c = &consumption{entry: id, taken: map[string]decimal.Decimal{}, restored: map[string]decimal.Decimal{},
				issuer: map[string]string{}}
			bk.consumptions[id] = c
		}
		return c
	}
	b.Queue(`SELECT m.entry_id, e.kind, e.member_id, m.lot_id, m.issuer, -m.points, m.consumer, m.rate
		  FROM lot_movements m JOIN entries e ON e.id = m.entry_id
		 WHERE m.entry_id = ANY($1) AND m.reason = 'redeem'
		 ORDER BY m.position, m.seq`, of).
		Query(func(rows pgx.Rows) error {
			var entry, kind, member, lot, issuer, consumer string
			var pts, rate decimal.Decimal
			_, err := pgx.ForEachRow(rows, []any{&entry, &kind, &member, &lot, &issuer, &pts, &consumer, &rate}, func() error {
				c := get(entry)
				c.kind, c.member, c.consumer, c.rate = EntryKind(kind), member, consumer, rate
				if _, ok := c.taken[lot]; !ok {
					c.lots = append(c.lots, lot)
				}
				c.taken[lot] = c.taken[lot].Add(pts)
				c.issuer[lot] = issuer
				return nil
			})
			return err
		})
	b.Queue(`SELECT e.reverses, m.lot_id, sum(m.points)
		  FROM entries e JOIN lot_movements m ON m.entry_id = e.id
		 WHERE e.reverses = ANY($1) AND m.reason = 'restore'
		 GROUP BY 1, 2`, of).
		Query(func(rows pgx.Rows) error {
			var entry, lot string
			var pts decimal.Decimal
			_, err := pgx.ForEachRow(rows, []any{&entry, &lot, &pts}, func() error {
				get(entry).restored[lot] = pts
				return nil
			})
			return err
		})
}

// chargeConsumptions works out what each loaded consumption charged, from the points it
// took and its rate, by the same rule that charged it: never from the entry's postings,
// which may also hold the legs of a debt repaid in the same entry.
func (bk *books) chargeConsumptions() {
	for _, c := range bk.consumptions {
		takes := make([]take, 0, len(c.lots))
		for _, id := range c.lots {
			takes = append(takes, take{lot: id, issuer: c.issuer[id], points: c.taken[id]})
		}
		c.money = bk.charges(takes, c.consumer, c.rate)
	}
}

// write is the second round trip: every row of the batch, then the new head.
func (l *Ledger) write(units Units, entries []Entry, hashes [][]byte, results []Result,
	plans []*planned, bk *books, lotPosition map[string]int64, position int64, headHash []byte, recordedAt time.Time) (*pgx.Batch, error) {
	var (
		eID, eKind, ePartner, eMember, eRef, eReverses []string
		ePos                                           []int64
		eBiz, eRec                                     []time.Time
		eMeta                                          []string
		ePrev, eHash                                   [][]byte

		pPos                                  []int64
		pSeq                                  []int32
		pEntry, pAccount, pUnit, pMember      []string
		pAmount                               []decimal.Decimal
		mPos                                  []int64
		mSeq                                  []int32
		mEntry, mLot, mMember, mIssuer, mCons []string
		mReason                               []string
		mPoints, mRate                        []decimal.Decimal
		mExpires                              []*time.Time
	)
	deltas := map[string]decimal.Decimal{}
	for _, r := range results {
		if r.Entry == nil || r.Replayed {
			continue
		}
		e := r.Entry
		eID = append(eID, e.ID)
		ePos = append(ePos, e.Position)
		eKind = append(eKind, string(e.Kind))
		ePartner = append(ePartner, e.Partner)
		eMember = append(eMember, e.Member)
		eRef = append(eRef, e.Reference)
		eBiz = append(eBiz, e.BusinessTime)
		eRec = append(eRec, e.RecordedAt)
		eMeta = append(eMeta, string(e.Metadata))
		eReverses = append(eReverses, e.Reverses)
		ePrev = append(ePrev, e.PrevHash)
		eHash = append(eHash, e.Hash)
		for i, p := range e.Postings {
			a, _ := ParseAccount(p.Account)
			pPos = append(pPos, e.Position)
			pSeq = append(pSeq, int32(i))
			pEntry = append(pEntry, e.ID)
			pAccount = append(pAccount, p.Account)
			pUnit = append(pUnit, p.Unit)
			pAmount = append(pAmount, p.Amount)
			pMember = append(pMember, a.Member)
			deltas[p.Account] = deltas[p.Account].Add(p.Amount)
		}
		for i, m := range e.Movements {
			mPos = append(mPos, e.Position)
			mSeq = append(mSeq, int32(i))
			mEntry = append(mEntry, e.ID)
			mLot = append(mLot, m.Lot)
			mMember = append(mMember, e.Member)
			mIssuer = append(mIssuer, m.Issuer)
			mPoints = append(mPoints, m.Points)
			mCons = append(mCons, m.Consumer)
			mReason = append(mReason, m.Reason)
			mRate = append(mRate, m.Rate)
			mExpires = append(mExpires, m.ExpiresAt)
		}
	}

	b := &pgx.Batch{}
	if len(eID) > 0 {
		b.Queue(`INSERT INTO entries (id, position, kind, partner_id, member_id, reference, business_time, recorded_at,
				metadata, reverses, prev_hash, hash)
			SELECT id, pos, kind, partner, NULLIF(member, ''), NULLIF(ref, ''), biz, rec, meta::jsonb, NULLIF(rev, ''), prev, hash
			  FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[],
			              $8::timestamptz[], $9::text[], $10::text[], $11::bytea[], $12::bytea[])
			    AS t(id, pos, kind, partner, member, ref, biz, rec, meta, rev, prev, hash)`,
			eID, ePos, eKind, ePartner, eMember, eRef, eBiz, eRec, eMeta, eReverses, ePrev, eHash)

		// Account balances, in name order: member accounts are already locked, the others
		// are locked here, under the journal head, so no two writers can cross.
		names := make([]string, 0, len(deltas))
		for n := range deltas {
			names = append(names, n)
		}
		sort.Strings(names)
		aKind, aUnit, aMember, aPartner := make([]string, len(names)), make([]string, len(names)), make([]string, len(names)), make([]string, len(names))
		aDelta := make([]decimal.Decimal, len(names))
		for i, n := range names {
			a, _ := ParseAccount(n)
			aKind[i], aUnit[i], aMember[i], aPartner[i], aDelta[i] = string(a.Kind), a.Unit(units), a.Member, a.Partner, deltas[n]
		}
		b.Queue(`INSERT INTO accounts (name, kind, unit, member_id, partner_id, balance)
			SELECT name, kind, unit, NULLIF(member, ''), NULLIF(partner, ''), delta
			  FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::numeric[])
			    AS t(name, kind, unit, member, partner, delta)
			 ORDER BY name
			ON CONFLICT (name) DO UPDATE SET balance = accounts.balance + EXCLUDED.balance`,
			names, aKind, aUnit, aMember, aPartner, aDelta)
		b.Queue(`INSERT INTO postings (position, seq, entry_id, account, unit, amount, member_id)
			SELECT pos, seq, entry, account, unit, amount, NULLIF(member, '')
			  FROM unnest($1::bigint[], $2::int[], $3::text[], $4::text[], $5::text[], $6::numeric[], $7::text[])
			    AS t(pos, seq, entry, account, unit, amount, member)`,
			pPos, pSeq, pEntry, pAccount, pUnit, pAmount, pMember)
	}
	l.queueLots(b, bk, lotPosition)
	if len(mLot) > 0 {
		b.Queue(`INSERT INTO lot_movements (position, seq, entry_id, lot_id, member_id, issuer, points, consumer, reason, rate, expires_at)
			SELECT * FROM unnest($1::bigint[], $2::int[], $3::text[], $4::text[], $5::text[], $6::text[], $7::numeric[], $8::text[],
			                     $9::text[], $10::numeric[], $11::timestamptz[])`,
			mPos, mSeq, mEntry, mLot, mMember, mIssuer, mPoints, mCons, mReason, mRate, mExpires)
	}

	// Idempotency records: the first answer to each key, refusals included.
	var kPartner, kKey []string
	var kHash [][]byte
	var kEntry []string
	var kResult []string
	for i, r := range results {
		e := &entries[i]
		if e.IdempotencyKey == "" || r.Replayed || (r.Err != nil && (r.Err.Code == CodeIdempotencyConflict || r.Err.Code == CodeTermsChanged)) {
			continue
		}
		raw, err := json.Marshal(r)
		if err != nil {
			return nil, fmt.Errorf("store answer: %w", err)
		}
		kPartner = append(kPartner, e.Partner)
		kKey = append(kKey, e.IdempotencyKey)
		kHash = append(kHash, hashes[i])
		id := ""
		if r.Entry != nil {
			id = r.Entry.ID
		}
		kEntry = append(kEntry, id)
		kResult = append(kResult, string(raw))
	}
	if len(kKey) > 0 {
		b.Queue(`INSERT INTO idempotency_keys (partner_id, key, request_hash, entry_id, result, created_at)
			SELECT partner, key, hash, NULLIF(entry, ''), result::json, $6
			  FROM unnest($1::text[], $2::text[], $3::bytea[], $4::text[], $5::text[]) AS t(partner, key, hash, entry, result)`,
			kPartner, kKey, kHash, kEntry, kResult, recordedAt)
	}
	if len(eID) > 0 {
		b.Queue(`UPDATE journal_head SET position = $1, hash = $2, recorded_at = $3`, position, headHash, recordedAt)
	}
	return b, nil
}

// queueLots writes the lots and debts the batch created or changed, in their final state.
func (l *Ledger) queueLots(b *pgx.Batch, bk *books, lotPosition map[string]int64) {
	var (
		nID, nMember, nIssuer, nEntry        []string
		nPos                                 []int64
		nPoints, nRemaining, nHeld, nExpired []decimal.Decimal
		nExpires                             []*time.Time
		nDay                                 []string
		eMember, eDay                        []string
		ePoints                              []decimal.Decimal
		uID                                  []string
		uRemaining, uHeld, uExpired          []decimal.Decimal
		dID, dMember, dPartner, dEntry       []string
		dPos                                 []int64
		dPoints, dOutstanding, dRate         []decimal.Decimal
		udID                                 []string
		udOutstanding                        []decimal.Decimal
		hs                                   holdRows
	)
	members := make([]string, 0, len(bk.members))
	for m := range bk.members {
		members = append(members, m)
	}
	sort.Strings(members)
	for _, id := range members {
		m := bk.members[id]
		for _, lot := range m.lots {
			switch {
			case lot.fresh:
				nID, nMember, nIssuer, nEntry = append(nID, lot.ID), append(nMember, lot.Member), append(nIssuer, lot.Issuer), append(nEntry, lot.Entry)
				nPos = append(nPos, lotPosition[lot.Entry])
				nPoints, nRemaining, nHeld, nExpired = append(nPoints, lot.Points), append(nRemaining, lot.Remaining), append(nHeld, lot.Held), append(nExpired, lot.Expired)
				nExpires = append(nExpires, lot.ExpiresAt)
				nDay = append(nDay, lot.BusinessDay)
			case lot.dirty:
				uID = append(uID, lot.ID)
				uRemaining, uHeld, uExpired = append(uRemaining, lot.Remaining), append(uHeld, lot.Held), append(uExpired, lot.Expired)
			}
		}
		for _, d := range m.debts {
			switch {
			case d.fresh:
				dID, dMember, dPartner, dEntry = append(dID, d.ID), append(dMember, d.Member), append(dPartner, d.Partner), append(dEntry, d.Entry)
				dPos = append(dPos, lotPosition[d.Entry])
				dPoints, dOutstanding, dRate = append(dPoints, d.Points), append(dOutstanding, d.Outstanding), append(dRate, d.Rate)
			case d.dirty:
				udID, udOutstanding = append(udID, d.ID), append(udOutstanding, d.Outstanding)
			}
		}
		for _, h := range m.holds {
			hs.add(h, lotPosition)
		}
		for _, day := range keysOf(m.earned) {
			if !m.earned[day].IsZero() {
				eMember, eDay, ePoints = append(eMember, id), append(eDay, day), append(ePoints, m.earned[day])
			}
		}
	}
	hs.queue(b)
	if len(nID) > 0 {
		b.Queue(`INSERT INTO lots (id, member_id, issuer, entry_id, position, points, remaining, held, expired, expires_at, business_day)
			SELECT id, member, issuer, entry, pos, points, remaining, held, expired, expires, NULLIF(day, '')::date
			  FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::numeric[], $7::numeric[],
			              $8::numeric[], $9::numeric[], $10::timestamptz[], $11::text[])
			    AS t(id, member, issuer, entry, pos, points, remaining, held, expired, expires, day)`,
			nID, nMember, nIssuer, nEntry, nPos, nPoints, nRemaining, nHeld, nExpired, nExpires, nDay)
	}
	if len(eMember) > 0 {
		b.Queue(`INSERT INTO member_earned_days (member_id, day, points)
			SELECT member, day::date, points FROM unnest($1::text[], $2::text[], $3::numeric[]) AS t(member, day, points)
			ON CONFLICT (member_id, day) DO UPDATE SET points = member_earned_days.points + EXCLUDED.points`,
			eMember, eDay, ePoints)
	}
	if len(uID) > 0 {
		b.Queue(`UPDATE lots SET remaining = u.remaining, held = u.held, expired = u.expired
			  FROM unnest($1::text[], $2::numeric[], $3::numeric[], $4::numeric[]) AS u(id, remaining, held, expired)
			 WHERE lots.id = u.id`, uID, uRemaining, uHeld, uExpired)
	}
	if len(dID) > 0 {
		b.Queue(`INSERT INTO debts (id, member_id, partner_id, entry_id, position, points, outstanding, rate)
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::numeric[], $7::numeric[], $8::numeric[])`,
			dID, dMember, dPartner, dEntry, dPos, dPoints, dOutstanding, dRate)
	}
	if len(udID) > 0 {
		b.Queue(`UPDATE debts SET outstanding = u.outstanding
			  FROM unnest($1::text[], $2::numeric[]) AS u(id, outstanding) WHERE debts.id = u.id`, udID, udOutstanding)
	}
}

// holdRows collects the holds a batch creates or changes.
type holdRows struct {
	id, member, partner, entry, status []string
	position                           []int64
	points, held, rate                 []decimal.Decimal
	expires                            []time.Time
	uID, uStatus                       []string
	uHeld                              []decimal.Decimal
	lHold, lLot                        []string
	lSeq                               []int32
	lPoints                            []decimal.Decimal
}

func (r *holdRows) add(h holdState, lotPosition map[string]int64) {
	switch {
	case h.fresh:
		r.id, r.member, r.partner, r.entry, r.status = append(r.id, h.ID), append(r.member, h.Member), append(r.partner, h.Partner), append(r.entry, h.Entry), append(r.status, h.Status)
		r.position = append(r.position, lotPosition[h.Entry])
		r.points, r.held, r.rate = append(r.points, h.Points), append(r.held, h.Held), append(r.rate, h.Rate)
		r.expires = append(r.expires, h.ExpiresAt)
	case h.dirty:
		r.uID, r.uStatus, r.uHeld = append(r.uID, h.ID), append(r.uStatus, h.Status), append(r.uHeld, h.Held)
	default:
		return
	}
	for i, hl := range h.lots {
		r.lHold, r.lLot, r.lSeq, r.lPoints = append(r.lHold, h.ID), append(r.lLot, hl.lot), append(r.lSeq, int32(i)), append(r.lPoints, hl.points)
	}
}

func (r *holdRows) queue(b *pgx.Batch) {
	if len(r.id) > 0 {
		b.Queue(`INSERT INTO holds (id, member_id, partner_id, entry_id, position, points, held, rate, expires_at, status)
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::numeric[], $7::numeric[],
			                     $8::numeric[], $9::timestamptz[], $10::text[])`,
			r.id, r.member, r.partner, r.entry, r.position, r.points, r.held, r.rate, r.expires, r.status)
	}
	if len(r.uID) > 0 {
		b.Queue(`UPDATE holds SET held = u.held, status = u.status
			  FROM unnest($1::text[], $2::numeric[], $3::text[]) AS u(id, held, status) WHERE holds.id = u.id`,
			r.uID, r.uHeld, r.uStatus)
	}
	if len(r.lHold) > 0 {
		b.Queue(`INSERT INTO hold_lots (hold_id, seq, lot_id, points)
			SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::numeric[])
			ON CONFLICT (hold_id, seq) DO UPDATE SET points = EXCLUDED.points`,
			r.lHold, r.lSeq, r.lLot, r.lPoints)
	}
}
