// Package demo runs `coalition demo`: a small coalition's day posted through the ledger
// engine, narrated step by step, ending with the trial balance and a verification of the
// journal. It only posts through ledger.Ledger, the way every other caller does.
package demo

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/shopspring/decimal"

	"github.com/coalitionledger/coalition/ledger"
)

// pointValue is the demo coalition's value of one point, in its currency.
var pointValue = decimal.RequireFromString("0.01")

// Run posts the demo's entries through l and writes what happens to w.
func Run(ctx context.Context, l *ledger.Ledger, w io.Writer, now time.Time) error {
	anna, boris := ulid.Make().String(), ulid.Make().String()
	pts := func(n int64) decimal.Decimal { return decimal.NewFromInt(n) }
	in := func(days int) *time.Time { t := now.AddDate(0, 0, days); return &t }
	step := 0
	post := func(what string, e ledger.Entry) (*ledger.Posted, error) {
		step++
		e.IdempotencyKey = fmt.Sprintf("demo-%d", step)
		if e.BusinessTime.IsZero() {
			e.BusinessTime = now
		}
		p, err := l.PostOne(ctx, e)
		if code := ledger.ErrorCode(err); code != "" {
			fmt.Fprintf(w, "%2d. %-58s refused: %s\n", step, what, err)
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("demo step %d (%s): %w", step, what, err)
		}
		balance := ""
		if p.MemberBalance != nil {
			balance = fmt.Sprintf("member balance %s", p.MemberBalance)
		}
		fmt.Fprintf(w, "%2d. %-58s #%d %s\n", step, what, p.Position, balance)
		return p, nil
	}
	earn := func(member, partner string, points int64, expires *time.Time) ledger.Entry {
		return ledger.Entry{Kind: ledger.EntryEarn, Partner: partner, Member: member,
			Op: ledger.Issue{Points: pts(points), Issuer: partner, ExpiresAt: expires}}
	}
	redeem := func(member, partner string, points int64) ledger.Entry {
		return ledger.Entry{Kind: ledger.EntryRedemption, Partner: partner, Member: member,
			Op: ledger.Consume{Points: pts(points), Consumer: partner, Rate: pointValue}}
	}

	fmt.Fprintf(w, "A coalition day through the ledger engine (point value %s per point)\n\n", pointValue)
	fuel, err := post("Anna fills up at fuelco: 450 points, expire in 365 days", earn(anna, "fuelco", 450, in(365)))
	if err != nil {
		return err
	}
	if _, err := post("Anna buys a phone at electro: 1200 points", earn(anna, "electro", 1200, nil)); err != nil {
		return err
	}
	old := earn(boris, "webshop", 300, in(-2))
	old.Partner, old.BusinessTime, old.Import = ledger.OperatorIssuer, now.AddDate(0, 0, -92), true // the operator imports history
	oldLot, err := post("(history) Boris's 300 webshop points, 90-day expiry", old)
	if err != nil {
		return err
	}
	if _, err := post("Boris shops at grocer: 80 points", earn(boris, "grocer", 80, in(180))); err != nil {
		return err
	}
	red, err := post("Anna pays 1000 points at fashion (cross-partner)", redeem(anna, "fashion", 1000))
	if err != nil {
		return err
	}
	if oldLot != nil {
		if _, err := post("Boris's webshop lot has expired (breakage)", ledger.Entry{
			Kind: ledger.EntryExpiry, Partner: "operator", Member: boris, Op: ledger.Expire{Lot: oldLot.Lot.ID}}); err != nil {
			return err
		}
	}
	if _, err := post("Boris tries to pay 500 points at grocer", redeem(boris, "grocer", 500)); err != nil {
		return err
	}
	if red != nil {
		if _, err := post("fashion refunds 200 of Anna's redeemed points", ledger.Entry{
			Kind: ledger.EntryRedemptionReversal, Partner: "fashion", Member: anna,
			Op: ledger.Restore{Of: red.ID, Points: pts(200)}}); err != nil {
			return err
		}
	}
	if fuel != nil {
		if _, err := post("Anna returns the fuel: fuelco reverses all 450", ledger.Entry{
			Kind: ledger.EntryEarnReversal, Partner: "fuelco", Member: anna,
			Op: ledger.Clawback{Lot: fuel.Lot.ID, Points: pts(450), Rate: pointValue}}); err != nil {
			return err
		}
	}
	if _, err := post("Boris pays 80 points at fuelco (cross-partner)", redeem(boris, "fuelco", 80)); err != nil {
		return err
	}

	tb, err := l.TrialBalance(ctx, 0)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "\nTrial balance at position %d (debit balances positive):\n\n", tb.Position)
	if err := tb.WriteTable(w); err != nil {
		return err
	}
	if err := l.VerifyChain(ctx, nil); err != nil {
		return fmt.Errorf("the demo journal does not verify: %w", err)
	}
	mismatch, err := l.CheckBalances(ctx)
	if err != nil {
		return err
	}
	if len(mismatch) > 0 {
		return fmt.Errorf("balances differ from their postings: %+v", mismatch)
	}
	fmt.Fprintf(w, "\nJournal verified: %d entries, hash chain intact, every balance equals its postings.\n", tb.Position)
	return nil
}
