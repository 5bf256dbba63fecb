package settlement_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shopspring/decimal"

	"github.com/coalitionledger/coalition/internal/pgtest"
	"github.com/coalitionledger/coalition/ledger"
	"github.com/coalitionledger/coalition/partners"
	"github.com/coalitionledger/coalition/settlement"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

func ptr[T any](v T) *T { return &v }

var moscow, _ = time.LoadLocation("Europe/Moscow")

// day0 is the fixture's first business day; its clock starts at noon of it, Moscow time.
var day0, _ = settlement.ParseDay("2026-06-10")

// fixture is a RUB coalition in Moscow time of three partners: fuel (fee 0.2 a point),
// shop (redeems at 0.5 a point, fee 0.1) and solo (fee 0.05), each issuing 1 point per
// 10 RUB with no expiry.
type fixture struct {
	pool  *pgxpool.Pool
	store *partners.Store
	l     *ledger.Ledger
	svc   *partners.Service
	runs  *settlement.Runs
	mu    sync.Mutex
	now   time.Time
	keys  int
}

type fataler interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	return newFixtureOn(t, pgtest.Pool(t))
}

func newFixtureOn(t fataler, pool *pgxpool.Pool) *fixture {
	t.Helper()
	ctx := context.Background()
	f := &fixture{pool: pool, store: partners.NewStore(pool), now: day0.Start(moscow).Add(12 * time.Hour)}
	f.l = ledger.New(pool, ledger.WithClock(f.clock))
	f.svc = partners.NewService(f.store, f.l, f.clock)
	f.runs = settlement.NewRuns(f.l, f.store, f.clock)
	c := partners.DefaultCoalition()
	c.Currency, c.PointValue, c.TimeZone = "RUB", dec("1"), "Europe/Moscow"
	if err := f.store.SetCoalition(ctx, c); err != nil {
		t.Fatal(err)
	}
	for id, k := range map[string]partners.Contract{
		"fuel": {RedeemRate: ptr(dec("1")), FeePerPoint: dec("0.2")},
		"shop": {RedeemRate: ptr(dec("0.5")), FeePerPoint: dec("0.1")},
		"solo": {RedeemRate: ptr(dec("1")), FeePerPoint: dec("0.05")},
	} {
		if _, err := f.store.CreatePartner(ctx, id, id); err != nil {
			t.Fatal(err)
		}
		k.Earn = partners.EarnRate{PointsPerUnit: ptr(dec("0.1"))}
		k.EffectiveFrom, k.Currency = f.now.Add(-30*24*time.Hour), "RUB"
		if _, err := f.store.AddContract(ctx, id, k, f.now.Add(-30*24*time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func (f *fixture) clock() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fixture) setNow(t time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = t
}

func (f *fixture) req(partner string) partners.Request {
	f.keys++
	key := fmt.Sprint("k", f.keys)
	return partners.Request{Partner: partner, IdempotencyKey: key, RequestHash: []byte(key)}
}

func (f *fixture) earn(t fataler, partner, card, amount string, at *time.Time) *partners.EarnResult {
	t.Helper()
	res, err := f.svc.Earn(context.Background(), f.req(partner), partners.EarnInput{
		Member: partners.MemberRef{Card: card}, Purchase: partners.Purchase{Amount: dec(amount), Currency: "RUB"}, BusinessTime: at})
	if err != nil {
		t.Fatalf("earn at %s: %v", partner, err)
	}
	return res
}

func (f *fixture) redeem(t fataler, partner, card, points string) *partners.RedeemResult {
	t.Helper()
	res, err := f.svc.Redeem(context.Background(), f.req(partner), partners.RedeemInput{
		Member: partners.MemberRef{Card: card}, Points: dec(points)})
	if err != nil {
		t.Fatalf("redeem at %s: %v", partner, err)
	}
	return res
}

func (f *fixture) balance(t fataler, account string) decimal.Decimal {
	t.Helper()
	b, err := f.l.Balance(context.Background(), account)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (f *fixture) head(t fataler) int64 {
	t.Helper()
	h, err := f.l.Head(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return h.Position
}

// day posts the hand-computed day of the tests: cross-partner redemptions both ways
// between fuel and shop, a partial return, and solo, whose members redeem only at solo.
func (f *fixture) day(t fataler) {
	t.Helper()
	f.earn(t, "fuel", "m1", "1000", nil) // fuel lot 100, fee base 100 × 0.2
	f.earn(t, "shop", "m1", "600", nil)  // shop lot 60
	// 130 points at shop's 0.5: 65.00 split by points, fuel's 100 → 50.00 owed to shop.
	f.redeem(t, "shop", "m1", "130")
	f.earn(t, "solo", "m2", "2000", nil) // 200 points, fee 10.00
	f.redeem(t, "solo", "m2", "50")      // its own points: no money
	shopEarn := f.earn(t, "shop", "m3", "1000", nil)
	f.redeem(t, "fuel", "m3", "40") // shop's points at fuel's 1.00: 40.00 owed to fuel
	// Half the shop purchase comes back: 50 of its 100 points reversed, fee base −50.
	if _, err := f.svc.Reverse(context.Background(), f.req("shop"), partners.ReverseInput{Entry: shopEarn.Entry.ID, Amount: dec("500")}); err != nil {
		t.Fatal(err)
	}
}

// nextMorning moves the clock to 03:00 of the day after d, Moscow time.
func (f *fixture) nextMorning(d settlement.Day) { f.setNow(d.End(moscow).Add(3 * time.Hour)) }

func TestRunSettlesADayByHand(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	f.day(t)
	f.nextMorning(day0)
	run, created, err := f.runs.Run(ctx, day0, nil)
	if err != nil || !created {
		t.Fatalf("run: %v %v", created, err)
	}
	r := run.Report
	if r.BusinessDate != "2026-06-10" || r.Currency != "RUB" || r.PreviousCutoff != 0 || r.Entries != 8 || len(r.Late) != 0 {
		t.Errorf("run header %+v", r)
	}
	want := []settlement.PartnerLine{
		{Partner: "fuel", PointsIssued: "100", PointsRedeemed: "40", FeePoints: "100", Owes: "50.00", OwedTo: "40.00", Position: "10.00", Fee: "20.00", Net: "30.00"},
		{Partner: "shop", PointsIssued: "110", PointsRedeemed: "130", FeePoints: "110", Owes: "40.00", OwedTo: "50.00", Position: "-10.00", Fee: "11.00", Net: "1.00"},
		{Partner: "solo", PointsIssued: "200", PointsRedeemed: "50", FeePoints: "200", Owes: "0.00", OwedTo: "0.00", Position: "0.00", Fee: "10.00", Net: "10.00"},
	}
	if !reflect.DeepEqual(r.Partners, want) {
		t.Errorf("partners\n got %+v\nwant %+v", r.Partners, want)
	}
	if want := []settlement.ObligationLine{{Debtor: "fuel", Creditor: "shop", Amount: "50.00"}, {Debtor: "shop", Creditor: "fuel", Amount: "40.00"}}; !reflect.DeepEqual(r.Gross, want) {
		t.Errorf("gross %+v", r.Gross)
	}
	if want := []settlement.ObligationLine{{Debtor: "fuel", Creditor: "shop", Amount: "10.00"}}; !reflect.DeepEqual(r.Bilateral, want) {
		t.Errorf("bilateral %+v", r.Bilateral)
	}
	wantIns := []string{"fuel pay_operator 30.00 pending", "shop pay_operator 1.00 pending", "solo pay_operator 10.00 pending"}
	if got := payments(run); !reflect.DeepEqual(got, wantIns) {
		t.Errorf("instructions %v, want %v", got, wantIns)
	}
	if tt := r.Totals; tt.Instructions != 3 || tt.Received != "41.00" || tt.Paid != "0.00" || tt.Fees != "41.00" || tt.Awards != "0.00" || tt.Net != "41.00" {
		t.Errorf("totals %+v", tt)
	}
	// The books: every settlement account moved out whole, in_settlement holds the
	// instruction, the fees are the operator's.
	for p, ins := range map[string]string{"fuel": "30", "shop": "1", "solo": "10"} {
		if b := f.balance(t, "partner:"+p+":settlement"); !b.IsZero() {
			t.Errorf("%s settlement %s, want 0", p, b)
		}
		if b := f.balance(t, "partner:"+p+":in_settlement"); !b.Equal(dec(ins)) {
			t.Errorf("%s in_settlement %s, want %s", p, b, ins)
		}
	}
	if b := f.balance(t, "operator:fees"); !b.Equal(dec("-41")) {
		t.Errorf("operator:fees %s, want −41 (a credit)", b)
	}
	// Exactly once: a second call answers the same run and posts nothing.
	head := f.head(t)
	again, created, err := f.runs.Run(ctx, day0, nil)
	if err != nil || created || !reflect.DeepEqual(again.Report, run.Report) || f.head(t) != head {
		t.Fatalf("second run: created %v, err %v, head %d → %d", created, err, head, f.head(t))
	}
	check, err := f.runs.Check(ctx, day0)
	if err != nil || !check.Matches || check.Figures < 40 {
		t.Fatalf("check %+v %v", check, err)
	}
	assertBooks(t, f)
}

func payments(run *settlement.Run) []string {
	var out []string
	for _, p := range run.Instructions {
		out = append(out, fmt.Sprintf("%s %s %s %s", p.Partner, p.Direction, p.Amount, p.Status))
	}
	return out
}

func assertBooks(t fataler, f *fixture) {
	t.Helper()
	bad, err := f.l.CheckBalances(context.Background())
	if err != nil || len(bad) > 0 {
		t.Fatalf("balances against postings: %v %v", bad, err)
	}
	if err := f.l.VerifyChain(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
}

func TestRunExactlyOnceUnderConcurrentStarts(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.day(t)
	f.nextMorning(day0)
	const n = 6
	var wg sync.WaitGroup
	runs := make([]*settlement.Run, n)
	created := make([]bool, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runs[i], created[i], errs[i] = f.runs.Run(context.Background(), day0, nil)
		}()
	}
	wg.Wait()
	made := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("run %d: %v", i, errs[i])
		}
		if created[i] {
			made++
		}
		if !reflect.DeepEqual(runs[i].Report, runs[0].Report) {
			t.Errorf("run %d answered another report", i)
		}
	}
	var fees, moves int
	if err := f.pool.QueryRow(context.Background(), `SELECT count(*) FILTER (WHERE kind = 'fee'), count(*) FILTER (WHERE kind = 'settlement') FROM entries`).Scan(&fees, &moves); err != nil {
		t.Fatal(err)
	}
	if made != 1 || fees != 3 || moves != 3 {
		t.Fatalf("%d runs made, %d fee entries, %d moves; want 1, 3, 3", made, fees, moves)
	}
}

// A run whose context is cancelled inside its transaction leaves nothing behind; the next
// attempt settles the day whole.
func TestRunCrashLeavesNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.day(t)
	f.nextMorning(day0)
	head := f.head(t)
	ctx, cancel := context.WithCancel(context.Background())
	_, _, err := f.runs.Run(ctx, day0, func(done, total int64) { cancel() })
	if err == nil {
		t.Fatal("a run cancelled mid-way succeeded")
	}
	var runs int
	if err := f.pool.QueryRow(context.Background(), `SELECT count(*) FROM settlement_runs`).Scan(&runs); err != nil {
		t.Fatal(err)
	}
	if runs != 0 || f.head(t) != head {
		t.Fatalf("after the crash: %d runs, head %d → %d", runs, head, f.head(t))
	}
	due, err := f.runs.SettleDue(context.Background(), nil)
	if err != nil || len(due) != 1 || due[0].Totals.Received != "41.00" {
		t.Fatalf("the next start: %+v %v", due, err)
	}
}

// An entry of a settled day recorded after its cut-off is settled by the next run, which
// says so; an entry of the next day recorded before the cut-off waits for its own day.
func TestLateEntriesGoToTheNextRun(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	f.earn(t, "fuel", "m1", "1000", nil)
	// 00:30 of day 1: a till posts an earn of day 1 before day 0 is settled.
	f.setNow(day0.End(moscow).Add(30 * time.Minute))
	early := day0.End(moscow).Add(10 * time.Minute)
	f.earn(t, "shop", "m2", "500", &early)
	f.setNow(day0.End(moscow).Add(time.Hour))
	run0, _, err := f.runs.Run(ctx, day0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if run0.Entries != 1 || len(run0.Partners) != 1 || run0.Partners[0].Partner != "fuel" {
		t.Fatalf("run of day 0 settled %+v", run0.Report)
	}
	// Then an offline till uploads a sale of day 0.
	late := day0.End(moscow).Add(-time.Hour)
	f.earn(t, "solo", "m3", "300", &late)
	day1 := day0.Next()
	f.setNow(day1.End(moscow).Add(2 * time.Hour))
	run1, _, err := f.runs.Run(ctx, day1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if run1.Entries != 2 || !reflect.DeepEqual(run1.Late, []settlement.LateDay{{BusinessDate: "2026-06-10", Entries: 1}}) {
		t.Fatalf("run of day 1: %d entries, late %+v", run1.Entries, run1.Late)
	}
	if got := payments(run1); !reflect.DeepEqual(got, []string{"shop pay_operator 5.00 pending", "solo pay_operator 1.50 pending"}) {
		t.Fatalf("run of day 1 instructions %v", got)
	}
	// In the CSV the late day is the row's party and its count a measure like any other.
	var csvOut strings.Builder
	if err := run1.WriteCSV(&csvOut); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(csvOut.String(), "\nlate,2026-06-10,,entries,1\n") {
		t.Fatalf("the late row in the CSV:\n%s", csvOut.String())
	}
	for _, d := range []settlement.Day{day0, day1} {
		if c, err := f.runs.Check(ctx, d); err != nil || !c.Matches {
			t.Fatalf("check %s: %+v %v", d, c, err)
		}
	}
}

func TestRunsGoDayAfterDay(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	code := func(err error) ledger.Code {
		var e *ledger.Error
		if errors.As(err, &e) {
			return e.Code
		}
		return ""
	}
	if _, _, err := f.runs.Run(ctx, day0, nil); code(err) != settlement.CodeDayNotOver {
		t.Fatalf("a run of today: %v", err)
	}
	f.day(t)
	f.setNow(day0.Next().Next().End(moscow).Add(time.Hour)) // two days later
	if _, _, err := f.runs.Run(ctx, day0.Next(), nil); code(err) != settlement.CodePreviousDayUnsettled {
		t.Fatalf("a run past an unsettled day: %v", err)
	}
	made, err := f.runs.SettleDue(ctx, nil)
	if err != nil || len(made) != 3 || made[0].BusinessDate != day0.String() || made[1].Entries != 0 || len(made[1].Instructions) != 0 {
		t.Fatalf("settle due: %v %v", len(made), err)
	}
	// A day with no entries says so in its header, with its cut-off, not as a range.
	var table strings.Builder
	if err := made[2].WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	if head, _, _ := strings.Cut(table.String(), "\n"); !strings.HasSuffix(head, fmt.Sprintf(": 0 entries, journal cut-off at position %d", made[2].Cutoff)) {
		t.Fatalf("the empty day's header: %s", head)
	}
	if _, _, err := f.runs.Run(ctx, day0.Prev(), nil); code(err) != settlement.CodeBeforeFirstRun {
		t.Fatalf("a run before the first: %v", err)
	}
	if _, err := f.runs.Get(ctx, day0.Prev()); code(err) != ledger.CodeNotFound {
		t.Fatalf("an unknown run: %v", err)
	}
	list, err := f.runs.List(ctx, 10)
	if err != nil || len(list) != 3 || list[0].BusinessDate != day0.Next().Next().String() || list[2].Pending != 3 {
		t.Fatalf("list %+v %v", list, err)
	}
}

func TestConfirmPostsThroughTheBank(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	// An award consumed at shop makes the operator pay shop.
	f.day(t)
	if _, err := f.l.PostOne(ctx, ledger.Entry{Kind: ledger.EntryAward, Partner: ledger.OperatorIssuer, Member: "01J00000000000000000000000",
		BusinessTime: f.now, Op: ledger.Issue{Points: dec("100"), Issuer: ledger.OperatorIssuer}}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.l.PostOne(ctx, ledger.Entry{Kind: ledger.EntryRedemption, Partner: "shop", Member: "01J00000000000000000000000",
		BusinessTime: f.now, Op: ledger.Consume{Points: dec("100"), Consumer: "shop", Rate: dec("0.5")}}); err != nil {
		t.Fatal(err)
	}
	f.nextMorning(day0)
	run, _, err := f.runs.Run(ctx, day0, nil)
	if err != nil {
		t.Fatal(err)
	}
	// shop: −10 + 11 fee − 50 for the award points = −49: the operator pays it.
	if got := payments(run); !reflect.DeepEqual(got, []string{"fuel pay_operator 30.00 pending", "shop paid_by_operator 49.00 pending", "solo pay_operator 10.00 pending"}) {
		t.Fatalf("instructions %v", got)
	}
	if tt := run.Totals; tt.Received != "40.00" || tt.Paid != "49.00" || tt.Fees != "41.00" || tt.Awards != "50.00" || tt.Net != "-9.00" {
		t.Fatalf("totals %+v", tt)
	}
	for _, p := range []string{"fuel", "shop", "solo"} {
		pay, confirmed, err := f.runs.Confirm(ctx, day0, p)
		if err != nil || !confirmed || pay.Status != settlement.PaymentConfirmed || pay.PaymentEntry == "" || pay.ConfirmedAt == nil {
			t.Fatalf("confirm %s: %+v %v %v", p, pay, confirmed, err)
		}
		if b := f.balance(t, "partner:"+p+":in_settlement"); !b.IsZero() {
			t.Errorf("%s in_settlement %s after payment", p, b)
		}
	}
	if b := f.balance(t, "operator:bank"); !b.Equal(dec("-9")) {
		t.Errorf("operator:bank %s, want −9: received 40, paid 49", b)
	}
	head := f.head(t)
	again, confirmed, err := f.runs.Confirm(ctx, day0, "shop")
	if err != nil || confirmed || again.Status != settlement.PaymentConfirmed || f.head(t) != head {
		t.Fatalf("a second confirmation: %+v %v %v", again, confirmed, err)
	}
	for _, tc := range []struct {
		day     settlement.Day
		partner string
	}{{day0, "nobody"}, {day0.Next(), "fuel"}} {
		if _, _, err := f.runs.Confirm(ctx, tc.day, tc.partner); ledger.ErrorCode(err) != ledger.CodeNotFound {
			t.Errorf("confirm %s %s: %v, want not_found", tc.day, tc.partner, err)
		}
	}
	if c, err := f.runs.Check(ctx, day0); err != nil || !c.Matches {
		t.Fatalf("check after payments %+v %v", c, err)
	}
	// The report as a file says what is paid: each instruction's status and entry.
	stored, err := f.runs.Get(ctx, day0)
	if err != nil {
		t.Fatal(err)
	}
	var csvOut, table strings.Builder
	if err := stored.WriteCSV(&csvOut); err != nil {
		t.Fatal(err)
	}
	if err := stored.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"fuel", "shop", "solo"} {
		if !strings.Contains(csvOut.String(), "payment,"+p+",operator,status,confirmed\n") ||
			!strings.Contains(csvOut.String(), "payment,"+p+",operator,payment_entry,") {
			t.Fatalf("the CSV does not say %s is paid:\n%s", p, csvOut.String())
		}
	}
	if strings.Count(table.String(), "confirmed 20") != 3 {
		t.Fatalf("the table does not say the three are paid:\n%s", table.String())
	}
	assertBooks(t, f)
}

// A figure changed behind the run's back is found by the check.
func TestCheckFindsATamperedRun(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	f.day(t)
	f.nextMorning(day0)
	if _, _, err := f.runs.Run(ctx, day0, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := f.pool.Exec(ctx, `ALTER TABLE settlement_runs DISABLE TRIGGER USER;
		UPDATE settlement_runs SET report = jsonb_set(report, '{partners,0,fee}', '"21.00"');
		ALTER TABLE settlement_runs ENABLE TRIGGER USER`); err != nil {
		t.Fatal(err)
	}
	c, err := f.runs.Check(ctx, day0)
	if err != nil || c.Matches || len(c.Differences) != 1 || c.Differences[0].Figure != "report.partners[fuel].fee" ||
		c.Differences[0].Run != "21.00" || c.Differences[0].Journal != "20.00" {
		t.Fatalf("check %+v %v", c, err)
	}
}

// The scheduler's tick settles a day once the coalition's settlement_time (02:00 Moscow
// time) has come on the day after it; a start settles every day that is over at once.
func TestSettleScheduledWaitsForTheSettlementTime(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	f.day(t)
	f.setNow(day0.End(moscow).Add(time.Hour + 59*time.Minute))
	if made, err := f.runs.SettleScheduled(ctx, nil); err != nil || len(made) != 0 {
		t.Fatalf("at 01:59: %d runs, %v", len(made), err)
	}
	f.setNow(day0.End(moscow).Add(2 * time.Hour))
	if made, err := f.runs.SettleScheduled(ctx, nil); err != nil || len(made) != 1 || made[0].BusinessDate != "2026-06-10" {
		t.Fatalf("at 02:00: %+v, %v", made, err)
	}
}
