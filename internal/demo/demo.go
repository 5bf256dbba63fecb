// Package demo runs `coalition demo`: a coalition of five partners shaped like the ones a
// coalition has, a few thousand members, a day of generated traffic posted through the
// same partner service the HTTP API uses (earns, cross-partner redemptions, holds,
// returns), the night's settlement with its report, the trial balance and a verification
// of the journal.
package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shopspring/decimal"

	"github.com/coalitionledger/coalition/audit"
	"github.com/coalitionledger/coalition/ledger"
	"github.com/coalitionledger/coalition/partners"
	"github.com/coalitionledger/coalition/settlement"
)

// Options shape a demo run; the zero value of each field takes its default.
type Options struct {
	Members   int       // members enrolled (3,000)
	Earns     int       // earns in the day (12,000)
	Seed      uint64    // of the traffic's random choices (1)
	ReportDir string    // where the report files go (a coalition-demo folder in the temp dir)
	Now       time.Time // the wall clock (time.Now())
	// Progress, if not nil, is told how many of the day's operations are done, of total.
	Progress func(done, total int64)
	// Checkpointer, if not nil, signs a checkpoint of the journal at the settlement run.
	Checkpointer *audit.Checkpointer
}

func (o *Options) defaults() {
	if o.Members <= 0 {
		o.Members = 3000
	}
	if o.Earns <= 0 {
		o.Earns = 12000
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.ReportDir == "" {
		o.ReportDir = filepath.Join(os.TempDir(), "coalition-demo")
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
}

// partner is one of the demo's partners: its terms, its share of the day's traffic and
// how its tills name a member and build a purchase.
type partner struct {
	id, name, terms string
	share           float64
	contract        partners.Contract
	purchase        func(r *rand.Rand) partners.Purchase
	identify        func(m member) partners.MemberRef
}

type member struct{ id, phone, card string }

func d(s string) decimal.Decimal { return decimal.RequireFromString(s) }

func ptr[T any](v T) *T { return &v }

// money returns a random amount of whole roubles in [lo, hi).
func money(r *rand.Rand, lo, hi int) decimal.Decimal {
	return decimal.NewFromInt(int64(lo + r.IntN(hi-lo)))
}

func byID(m member) partners.MemberRef    { return partners.MemberRef{ID: m.id} }
func byPhone(m member) partners.MemberRef { return partners.MemberRef{Phone: m.phone} }
func byCard(m member) partners.MemberRef  { return partners.MemberRef{Card: m.card} }

// coalition returns the demo's five partners.
func coalition() []partner {
	return []partner{
		{id: "freshmart", name: "FreshMart Grocery", share: 0.35,
			terms:    "1 point per 10 RUB; points pay at most 20% of a purchase",
			contract: partners.Contract{Earn: partners.EarnRate{PointsPerUnit: ptr(d("0.1"))}, MaxShare: ptr(d("0.2")), ExpiryDays: ptr(365), FeePerPoint: d("0.005")},
			purchase: func(r *rand.Rand) partners.Purchase {
				return partners.Purchase{Amount: money(r, 250, 6000), Currency: "RUB", Category: "grocery"}
			},
			identify: byCard},
		{id: "fuelco", name: "FuelCo", share: 0.30,
			terms:    "1 point per 10 RUB on fuel, 3 per 10 RUB on shop goods",
			contract: partners.Contract{Earn: partners.EarnRate{PointsPerUnit: ptr(d("0.1"))}, CategoryMultipliers: map[string]decimal.Decimal{"shop": d("3")}, ExpiryDays: ptr(365), FeePerPoint: d("0.006")},
			purchase: func(r *rand.Rand) partners.Purchase {
				lines := []partners.Line{{Category: "fuel", Amount: money(r, 1200, 4500)}}
				if r.IntN(3) == 0 {
					lines = append(lines, partners.Line{Category: "shop", Amount: money(r, 80, 900)})
				}
				return partners.Purchase{Currency: "RUB", Lines: lines}
			},
			identify: byCard},
		{id: "webshop", name: "WebShop", share: 0.15,
			terms:    "3% back in points; points expire after 90 days",
			contract: partners.Contract{Earn: partners.EarnRate{PercentBack: ptr(d("3"))}, ExpiryDays: ptr(90), FeePerPoint: d("0.004")},
			purchase: func(r *rand.Rand) partners.Purchase {
				return partners.Purchase{Amount: money(r, 400, 9000), Currency: "RUB"}
			},
			identify: byID},
		{id: "modeno", name: "Modeno Fashion", share: 0.10,
			terms:    "1 point per 10 RUB, ×2 paying with Modeno's own card",
			contract: partners.Contract{Earn: partners.EarnRate{PointsPerUnit: ptr(d("0.1"))}, PaymentMethodMultipliers: map[string]decimal.Decimal{"own_card": d("2")}, ExpiryDays: ptr(365), FeePerPoint: d("0.008")},
			purchase: func(r *rand.Rand) partners.Purchase {
				p := partners.Purchase{Amount: money(r, 1500, 18000), Currency: "RUB", PaymentMethod: "bank_card"}
				if r.IntN(3) == 0 {
					p.PaymentMethod = "own_card"
				}
				return p
			},
			identify: byCard},
		{id: "electra", name: "Electra Electronics", share: 0.10,
			terms:    "1 point per 20 RUB; members named by phone at the till",
			contract: partners.Contract{Earn: partners.EarnRate{PointsPerUnit: ptr(d("0.05"))}, ExpiryDays: ptr(365), FeePerPoint: d("0.01")},
			purchase: func(r *rand.Rand) partners.Purchase {
				return partners.Purchase{Amount: money(r, 1500, 60000), Currency: "RUB"}
			},
			identify: byPhone},
	}
}

// tally counts the day's operations by outcome.
type tally struct {
	mu      sync.Mutex
	posted  map[string]int
	refused map[string]map[ledger.Code]int
}

func (t *tally) add(op string, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err == nil {
		t.posted[op]++
		return
	}
	if t.refused[op] == nil {
		t.refused[op] = map[ledger.Code]int{}
	}
	t.refused[op][ledger.ErrorCode(err)]++
}

func (t *tally) line(op string) string {
	s := fmt.Sprintf("%6d posted", t.posted[op])
	var codes []string
	n := 0
	for c, k := range t.refused[op] {
		codes = append(codes, fmt.Sprintf("%s %d", c, k))
		n += k
	}
	sort.Strings(codes)
	if n > 0 {
		s += fmt.Sprintf(", %d refused (%s)", n, strings.Join(codes, ", "))
	}
	return s
}

// Run sets the coalition up on the empty database behind pool, posts a day of traffic
// (yesterday, in the coalition's time zone), settles it and writes what happened to w.
func Run(ctx context.Context, pool *pgxpool.Pool, w io.Writer, opts Options) error {
	opts.defaults()
	started := time.Now()
	store := partners.NewStore(pool)
	// The day is played on its own clock; the settlement and what follows run now.
	clock := &simClock{}
	l := ledger.New(pool, ledger.WithClock(clock.Now))
	svc := partners.NewService(store, l, clock.Now)
	svc.PhoneRegion = "RU"
	runs := settlement.NewRuns(l, store, clock.Now).WithCheckpointer(opts.Checkpointer)

	c := partners.DefaultCoalition()
	c.Currency, c.PointValue, c.TimeZone, c.SettlementTime = "RUB", d("0.10"), "Europe/Moscow", "02:00"
	c.Tiers = []partners.Tier{{Name: "basic", Threshold: d("0"), Multiplier: d("1")},
		{Name: "silver", Threshold: d("2000"), Multiplier: d("1.25")}, {Name: "gold", Threshold: d("10000"), Multiplier: d("1.5")}}
	if err := store.SetCoalition(ctx, c); err != nil {
		return err
	}
	loc, err := c.Location()
	if err != nil {
		return err
	}
	day := settlement.DayOf(opts.Now, loc).Prev()
	// The coalition was set up two days ago, so that its contracts were in force all day.
	setup := day.Start(loc).Add(-24 * time.Hour)
	ps := coalition()
	fmt.Fprintf(w, "Coalition Ledger demo: a coalition's day, settled\n\n")
	fmt.Fprintf(w, "The coalition settles in %s; a point is worth %s %s; its day is %s's, settled nightly at %s.\n\n",
		c.Currency, c.PointValue.StringFixed(2), c.Currency, c.TimeZone, c.SettlementTime)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  partner\tname\tterms\tfee per point\t")
	for _, p := range ps {
		if _, err := store.CreatePartner(ctx, p.id, p.name); err != nil {
			return err
		}
		k := p.contract
		k.EffectiveFrom, k.Currency = setup, c.Currency
		if _, err := store.AddContract(ctx, p.id, k, setup); err != nil {
			return fmt.Errorf("contract of %s: %w", p.id, err)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s %s\t\n", p.id, p.name, p.terms, k.FeePerPoint, c.Currency)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	members, err := enrol(ctx, svc, opts.Members)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "\n%d members enrolled, each with a phone number and a loyalty card.\n", len(members))

	t := &tally{posted: map[string]int{}, refused: map[string]map[ledger.Code]int{}}
	tr := &traffic{svc: svc, l: l, ps: ps, members: members, day: day, loc: loc, t: t, clock: clock,
		r: rand.New(rand.NewPCG(opts.Seed, 0x5eed)), progress: opts.Progress}
	trafficStart := time.Now()
	err = tr.run(ctx, opts.Earns)
	clock.set(time.Time{})
	if err != nil {
		return err
	}
	took := time.Since(trafficStart)
	fmt.Fprintf(w, "\nThe traffic of %s, 07:00 to 23:00, through the partner service the API uses:\n", day)
	for _, op := range []string{"earn", "redemption", "hold", "capture", "void", "return", "redemption reversal"} {
		fmt.Fprintf(w, "  %-20s %s\n", op+"s", t.line(op))
	}
	head, err := l.Head(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "  %d journal entries in %s (%.0f a second)\n", head.Position, took.Round(100*time.Millisecond), float64(head.Position)/took.Seconds())

	fmt.Fprintf(w, "\nThe night's settlement:\n\n")
	run, _, err := runs.Run(ctx, day, nil)
	if err != nil {
		return err
	}
	if err := run.WriteTable(w); err != nil {
		return err
	}
	check, err := runs.Check(ctx, day)
	if err != nil {
		return err
	}
	if !check.Matches {
		return fmt.Errorf("the run of %s does not re-derive from the journal: %+v", day, check.Differences)
	}
	fmt.Fprintf(w, "Check: the run re-derived from the journal alone, %d figures, all equal.\n", check.Figures)
	if opts.Checkpointer != nil {
		cps, err := audit.Checkpoints(ctx, pool, 0, 10)
		if err != nil {
			return err
		}
		for _, cp := range cps {
			fmt.Fprintf(w, "Checkpoint %d (%s) signs position %d, head hash %s…, with the operator's ed25519 key.\n",
				cp.ID, cp.Reason, cp.Position, cp.Hash[:16])
		}
	}

	tb, err := l.TrialBalance(ctx, 0)
	if err != nil {
		return err
	}
	folded, inTrial := foldMembers(tb)
	fmt.Fprintf(w, "\nTrial balance at position %d (the accounts of the %d members who took part summed on one line):\n\n", tb.Position, inTrial)
	if err := folded.WriteTable(w); err != nil {
		return err
	}
	v, err := audit.VerifyDatabase(ctx, pool, audit.VerifyOptions{PublicKey: opts.Checkpointer.PublicKey()})
	if err != nil {
		return err
	}
	if !v.OK {
		return fmt.Errorf("the journal does not verify: %s", v.Failure)
	}
	fmt.Fprintf(w, "\nJournal verified as an auditor would: %d entries, hash chain intact, checkpoints signed (%d), %d balances equal their postings, every lot its movements.\n",
		v.Entries, v.Checkpoints, v.Accounts)

	files, err := writeReports(opts.ReportDir, run)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "\nThe full report: %s\n", strings.Join(files, " and "))
	fmt.Fprintf(w, "Done in %s. Run it again for a fresh coalition: the demo recreates its database, coalition_demo, each time.\n",
		time.Since(started).Round(100*time.Millisecond))
	fmt.Fprintf(w, "Its books stay there for every other command: add --database coalition_demo, as in\n  coalition verify --database coalition_demo\n")
	if len(run.Instructions) > 0 {
		fmt.Fprintf(w, "  coalition settle --confirm %s --date %s --database coalition_demo\n", run.Instructions[0].Partner, day)
	}
	return nil
}

// enrol enrols n members, each with a Russian mobile number and a card, four at a time.
func enrol(ctx context.Context, svc *partners.Service, n int) ([]member, error) {
	out := make([]member, n)
	errs := make(chan error, 4)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 4 {
				m, err := svc.Enrol(ctx, fmt.Sprintf("+7916%07d", 1000000+i), fmt.Sprintf("7000%08d", i))
				if err != nil {
					errs <- fmt.Errorf("enrol member %d: %w", i, err)
					return
				}
				out[i] = member{id: m.ID, phone: m.Phone, card: m.Card}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return out, <-errs
}

// foldMembers returns the trial balance with the member accounts summed into
// member:* and member:*:held, and how many members have an account.
func foldMembers(tb *ledger.TrialBalance) (*ledger.TrialBalance, int) {
	out := &ledger.TrialBalance{Position: tb.Position, Totals: tb.Totals}
	sums := map[string]decimal.Decimal{}
	members := 0
	for _, a := range tb.Accounts {
		acct, err := ledger.ParseAccount(a.Account)
		switch {
		case err == nil && acct.Kind == ledger.KindMember:
			sums["member:*"] = sums["member:*"].Add(a.Balance)
			members++
		case err == nil && acct.Kind == ledger.KindMemberHeld:
			sums["member:*:held"] = sums["member:*:held"].Add(a.Balance)
		default:
			out.Accounts = append(out.Accounts, a)
		}
	}
	for _, name := range []string{"member:*", "member:*:held"} {
		out.Accounts = append(out.Accounts, ledger.AccountBalance{Account: name, Unit: ledger.Points, Balance: sums[name]})
	}
	return out, members
}

// writeReports writes the run's report as JSON and CSV into dir and returns the paths.
func writeReports(dir string, run *settlement.Run) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	base := filepath.Join(dir, "settlement-"+run.BusinessDate)
	raw, err := json.MarshalIndent(run, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(base+".json", append(raw, '\n'), 0o644); err != nil {
		return nil, err
	}
	f, err := os.Create(base + ".csv")
	if err != nil {
		return nil, err
	}
	if err := run.WriteCSV(f); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	return []string{base + ".json", base + ".csv"}, nil
}
