package api

import (
	"context"
	"encoding/csv"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/shopspring/decimal"

	"github.com/coalitionledger/coalition/ledger"
	"github.com/coalitionledger/coalition/settlement"
)

// settled makes sure yesterday (UTC, the default coalition's zone) is settled with an
// instruction for alpha: the operator awards a member 500 points yesterday and alpha
// takes them at 0.01, so the operator owes alpha 5.00. It returns yesterday.
func (e *env) settled() string {
	e.t.Helper()
	ctx := context.Background()
	day := settlement.DayOf(time.Now(), time.UTC).Prev()
	if _, err := e.srv.runs.Get(ctx, day); err == nil {
		return day.String()
	}
	at := day.Start(time.UTC).Add(12 * time.Hour)
	member := ulid.Make().String()
	for _, en := range []ledger.Entry{
		{Kind: ledger.EntryAward, Partner: ledger.OperatorIssuer, Member: member, BusinessTime: at,
			Op: ledger.Issue{Points: decimal.NewFromInt(500), Issuer: ledger.OperatorIssuer}},
		{Kind: ledger.EntryRedemption, Partner: "alpha", Member: member, BusinessTime: at,
			Op: ledger.Consume{Points: decimal.NewFromInt(500), Consumer: "alpha", Rate: decimal.RequireFromString("0.01")}},
	} {
		if _, err := e.ledger.PostOne(ctx, en); err != nil {
			e.t.Fatal(err)
		}
	}
	if _, _, err := e.srv.runs.Run(ctx, day, nil); err != nil {
		e.t.Fatal(err)
	}
	return day.String()
}

func init() {
	day := func(m *matrix) string { return m.settled() }
	accessRows = append(accessRows,
		accessRow{route: "POST /v1/settlements", path: fixed("/v1/settlements"),
			body: func(m *matrix) string { return fmt.Sprintf(`{"business_date": %q}`, day(m)) },
			want: [principalCount]int{200, 403, 403, 403, 401}},
		accessRow{route: "GET /v1/settlements", path: fixed("/v1/settlements"),
			want: [principalCount]int{200, 200, 403, 403, 401}},
		accessRow{route: "GET /v1/settlements/:date", path: func(m *matrix) string { return "/v1/settlements/" + day(m) },
			want: [principalCount]int{200, 200, 403, 403, 401}},
		accessRow{route: "GET /v1/settlements/:date/check", path: func(m *matrix) string { return "/v1/settlements/" + day(m) + "/check" },
			want: [principalCount]int{200, 200, 403, 403, 401}},
		accessRow{route: "POST /v1/settlements/:date/instructions/:partner/confirm",
			path: func(m *matrix) string { return "/v1/settlements/" + day(m) + "/instructions/alpha/confirm" },
			want: [principalCount]int{201, 403, 403, 403, 401}},
		accessRow{route: "GET /v1/partners/:partner/settlements/:date",
			path: func(m *matrix) string { return "/v1/partners/alpha/settlements/" + day(m) },
			want: [principalCount]int{200, 200, 200, 403, 401}},
	)
}

func TestSettlementOverHTTP(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alpha := e.partner("alpha")
	e.partner("beta")
	day := e.settled()

	// The run exists: a POST answers it with 200 and posts nothing.
	var run settlement.Run
	e.request("POST", "/v1/settlements", e.operator, fmt.Sprintf(`{"business_date": %q}`, day)).want(t, 200).decode(t, &run)
	if run.BusinessDate != day || len(run.Instructions) != 1 || run.Instructions[0].Partner != "alpha" ||
		run.Instructions[0].Direction != settlement.PaidByOperator || run.Instructions[0].Amount != "5.00" ||
		run.Instructions[0].Status != settlement.PaymentPending || run.Totals.Awards != "5.00" {
		t.Fatalf("run %+v", run)
	}
	// Refusals: today is not over; a malformed date; a day with no run.
	today := settlement.DayOf(time.Now(), time.UTC).String()
	e.request("POST", "/v1/settlements", e.operator, fmt.Sprintf(`{"business_date": %q}`, today)).wantError(t, 409, "day_not_over")
	e.request("POST", "/v1/settlements", e.operator, `{"business_date": "10/06/2026"}`).wantError(t, 422, "invalid_request")
	e.request("GET", "/v1/settlements/2001-01-01", e.operator, nil).wantError(t, 404, "not_found")
	e.request("GET", "/v1/settlements/yesterday", e.operator, nil).wantError(t, 422, "invalid_request")

	// The report as CSV.
	res := e.request("GET", "/v1/settlements/"+day, e.auditor, nil, "Accept", "text/csv").want(t, 200)
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/csv") {
		t.Fatalf("content type %q", ct)
	}
	rows, err := csv.NewReader(strings.NewReader(string(res.Body))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range rows {
		if r[0] == "instruction" && r[1] == "alpha" && r[3] == "paid_by_operator" && r[4] == "5.00" {
			found = true
		}
	}
	if !found || rows[0][0] != "section" {
		t.Fatalf("csv:\n%s", res.Body)
	}

	// The check, the partner's own side, then the confirmation, twice.
	var check settlement.Check
	e.request("GET", "/v1/settlements/"+day+"/check", e.auditor, nil).want(t, 200).decode(t, &check)
	if !check.Matches {
		t.Fatalf("check %+v", check)
	}
	var view settlement.PartnerView
	e.request("GET", "/v1/partners/alpha/settlements/"+day, alpha, nil).want(t, 200).decode(t, &view)
	if view.Partner.Net != "-5.00" || view.Instruction == nil || view.Instruction.Amount != "5.00" || len(view.Gross) != 1 {
		t.Fatalf("alpha's side %+v", view)
	}
	var pay settlement.Payment
	e.request("POST", "/v1/settlements/"+day+"/instructions/alpha/confirm", e.operator, nil).want(t, 201).decode(t, &pay)
	if pay.Status != settlement.PaymentConfirmed || pay.PaymentEntry == "" {
		t.Fatalf("payment %+v", pay)
	}
	var again settlement.Payment
	e.request("POST", "/v1/settlements/"+day+"/instructions/alpha/confirm", e.operator, nil).want(t, 200).decode(t, &again)
	if again.PaymentEntry != pay.PaymentEntry {
		t.Fatalf("second confirmation %+v", again)
	}
	e.request("POST", "/v1/settlements/"+day+"/instructions/beta/confirm", e.operator, nil).wantError(t, 404, "not_found")

	// The partner's side as CSV, in the report's columns, with the payment's state.
	res = e.request("GET", "/v1/partners/alpha/settlements/"+day, alpha, nil, "Accept", "text/csv").want(t, 200)
	if ct, cd := res.Header.Get("Content-Type"), res.Header.Get("Content-Disposition"); !strings.HasPrefix(ct, "text/csv") ||
		!strings.Contains(cd, "settlement-"+day+"-alpha.csv") {
		t.Fatalf("content type %q, disposition %q", ct, cd)
	}
	if rows, err = csv.NewReader(strings.NewReader(string(res.Body))).ReadAll(); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range rows[1:] {
		got[r[0]+"/"+r[1]+"/"+r[3]] = r[4]
		if r[1] == "beta" && r[0] == "partner" {
			t.Errorf("alpha's CSV holds beta's line: %v", r)
		}
	}
	if rows[0][0] != "section" || got["run//business_date"] != day || got["partner/alpha/net"] != "-5.00" ||
		got["instruction/alpha/paid_by_operator"] != "5.00" || got["payment/alpha/status"] != settlement.PaymentConfirmed ||
		got["payment/alpha/payment_entry"] != pay.PaymentEntry {
		t.Fatalf("alpha's side as CSV:\n%s", res.Body)
	}
	var list settlementList
	e.request("GET", "/v1/settlements", e.auditor, nil).want(t, 200).decode(t, &list)
	if len(list.Settlements) != 1 || list.Settlements[0].Pending != 0 {
		t.Fatalf("list %+v", list)
	}
}
