package api

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shopspring/decimal"

	"github.com/coalitionledger/coalition/audit"
	"github.com/coalitionledger/coalition/partners"
)

// testCheckpointer returns a checkpointer with a key made for the test.
func testCheckpointer(t *testing.T, pool *pgxpool.Pool) *audit.Checkpointer {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return audit.NewCheckpointer(pool, key, nil)
}

// The auditor's routes: auditors and the operator read; only the operator signs a
// checkpoint.
func init() {
	reads := [principalCount]int{200, 200, 403, 403, 401}
	accessRows = append(accessRows,
		accessRow{route: "GET /v1/trial-balance", path: fixed("/v1/trial-balance"), want: reads},
		accessRow{route: "GET /v1/accounts/:name", path: func(m *matrix) string {
			m.earn()
			return "/v1/accounts/partner:alpha:issued"
		}, want: reads},
		accessRow{route: "GET /v1/members/:member/statement",
			path: func(m *matrix) string { return "/v1/members/" + m.member() + "/statement" }, want: reads},
		accessRow{route: "GET /v1/journal", path: fixed("/v1/journal?limit=5"), want: reads},
		accessRow{route: "GET /v1/checkpoints", path: fixed("/v1/checkpoints"), want: reads},
		accessRow{route: "POST /v1/checkpoints", path: fixed("/v1/checkpoints"), body: fixed(`{"reason": "access matrix"}`),
			want: [principalCount]int{201, 403, 403, 403, 401}},
		accessRow{route: "GET /v1/verify", path: fixed("/v1/verify"), want: reads},
		accessRow{route: "GET /v1/reports/roll-forward", path: fixed("/v1/reports/roll-forward"), want: reads},
		accessRow{route: "GET /v1/reports/breakage", path: fixed("/v1/reports/breakage"), want: reads},
		accessRow{route: "GET /v1/audit-log", path: fixed("/v1/audit-log"), want: reads},
	)
}

// earnAt posts an earn of amount dollars at partner for the member with card.
func (e *env) earnAt(partner, card, amount string) *partners.EarnResult {
	e.t.Helper()
	res, err := e.srv.service().Earn(context.Background(), partners.Request{Partner: partner, IdempotencyKey: fmt.Sprint("audit-", e.next())},
		partners.EarnInput{Member: partners.MemberRef{Card: card}, Purchase: partners.Purchase{Amount: decimal.RequireFromString(amount), Currency: "USD"}})
	if err != nil {
		e.t.Fatal(err)
	}
	return res
}

func TestAuditorReadsTheBooks(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.partner("alpha")
	e.partner("beta")
	e.contract("alpha")
	e.contract("beta")
	e.earnAt("alpha", "c1", "100") // 1: 100 points of alpha
	e.earnAt("beta", "c1", "20")   // 2: 20 points of beta
	_, err := e.srv.service().Redeem(context.Background(), partners.Request{Partner: "beta", IdempotencyKey: "r1"},
		partners.RedeemInput{Member: partners.MemberRef{Card: "c1"}, Points: decimal.NewFromInt(30)}) // 3: 30 from alpha's lot (expiry first... both a year)
	if err != nil {
		t.Fatal(err)
	}

	var tb audit.TrialBalance
	e.request("GET", "/v1/trial-balance?position=2", e.auditor, nil).want(t, 200).decode(t, &tb)
	if tb.Position != 2 || tb.Totals["PTS"] != "0" || len(tb.Accounts) != 3 {
		t.Fatalf("trial balance at 2 = %+v", tb)
	}
	// Before the first entry every balance was zero: an empty trial balance at position 0.
	e.request("GET", "/v1/trial-balance?as_of=2000-01-01", e.auditor, nil).want(t, 200).decode(t, &tb)
	if tb.Position != 0 || len(tb.Accounts) != 0 || tb.Totals["PTS"] != "0" || tb.Totals["USD"] != "0.00" {
		t.Fatalf("trial balance before the first entry = %+v", tb)
	}
	e.request("GET", "/v1/trial-balance?partner=nobody", e.auditor, nil).wantError(t, 404, "not_found")

	// The account statement streams as one JSON object.
	var st struct {
		audit.StatementHead
		Postings []audit.StatementPosting `json:"postings"`
		audit.StatementTail
	}
	e.request("GET", "/v1/accounts/partner:alpha:issued?from=2", e.auditor, nil).want(t, 200).decode(t, &st)
	if st.Opening != "100" || len(st.Postings) != 0 || st.Closing != "100" || st.Account != "partner:alpha:issued" {
		t.Fatalf("statement = %+v", st)
	}
	e.request("GET", "/v1/accounts/member:c1", e.auditor, nil).wantError(t, 404, "not_found")
	e.request("GET", "/v1/accounts/nonsense", e.auditor, nil).wantError(t, 422, "invalid_account")

	var ms struct {
		audit.MemberHead
		Entries []audit.MemberLine `json:"entries"`
		audit.MemberTail
	}
	e.request("GET", "/v1/members/card:c1/statement", e.operator, nil).want(t, 200).decode(t, &ms)
	if len(ms.Entries) != 3 || ms.Closing != "90" || ms.Entries[2].Points != "-30" || len(ms.Entries[2].Movements) == 0 {
		t.Fatalf("member statement = %+v", ms)
	}
	e.request("GET", "/v1/members/card:nobody/statement", e.operator, nil).wantError(t, 404, "not_found")

	var page journalPage
	e.request("GET", "/v1/journal?after=1&limit=1", e.auditor, nil).want(t, 200).decode(t, &page)
	if len(page.Entries) != 1 || page.Entries[0].Position != 2 || page.Next != 2 || page.Head != 3 || len(page.Entries[0].Hash) != 64 {
		t.Fatalf("journal page = %+v", page)
	}
	e.request("GET", "/v1/journal?limit=0", e.auditor, nil).wantError(t, 422, "invalid_request")

	var cp audit.Checkpoint
	e.request("POST", "/v1/checkpoints", e.operator, nil).want(t, 201).decode(t, &cp)
	if cp.Position != 3 || cp.Reason != "on demand" {
		t.Fatalf("checkpoint = %+v", cp)
	}
	var list checkpointList
	e.request("GET", "/v1/checkpoints", e.auditor, nil).want(t, 200).decode(t, &list)
	pub, err := audit.ParsePublicKey([]byte(list.PublicKey))
	if err != nil || len(list.Checkpoints) != 1 || list.Checkpoints[0].Verify(pub) != nil {
		t.Fatalf("checkpoints = %+v (%v)", list, err)
	}

	var v audit.Verification
	e.request("GET", "/v1/verify", e.auditor, nil).want(t, 200).decode(t, &v)
	if !v.OK || v.Entries != 3 || v.Checkpoints != 1 || !v.TrustedKey {
		t.Fatalf("verify = %+v", v)
	}

	var rf audit.RollForward
	e.request("GET", "/v1/reports/roll-forward?from=2&to=3", e.auditor, nil).want(t, 200).decode(t, &rf)
	if rf.Total.Opening != "100" || rf.Total.Issued != "20" || rf.Total.Redeemed != "-30" || rf.Total.Closing != "90" || rf.Total.LotsRemaining != "90" {
		t.Fatalf("roll-forward = %+v", rf.Total)
	}
	var br audit.Breakage
	e.request("GET", "/v1/reports/breakage", e.auditor, nil).want(t, 200).decode(t, &br)
	if br.Total.Expired != "0" || len(br.Issuers) != 0 {
		t.Fatalf("breakage = %+v", br)
	}
	e.request("GET", "/v1/reports/breakage?from=tomorrow", e.auditor, nil).wantError(t, 422, "invalid_request")
}

// Operator actions over HTTP land in the audit log with the key that made them, in the
// action's own transaction; a replay or a refusal is not an action, and a key's secret
// is never recorded. (The env's own keys, made directly in the store, are the system's.)
func TestOperatorActionsAreAudited(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.request("POST", "/v1/partners", e.operator, `{"id": "gamma", "name": "Gamma"}`, "Idempotency-Key", "p1").want(t, 201)
	e.request("POST", "/v1/partners", e.operator, `{"id": "gamma", "name": "Gamma"}`, "Idempotency-Key", "p1").want(t, 201)
	e.request("POST", "/v1/partners", e.operator, `{"id": "gamma", "name": "Gamma"}`).want(t, 409)
	e.request("POST", "/v1/partners/gamma/contracts", e.operator,
		fmt.Sprintf(`{"effective_from": %q, "earn": {"points_per_unit": "1"}}`, time.Now().Add(time.Hour).UTC().Format(time.RFC3339))).want(t, 201)
	var key createdKey
	e.request("POST", "/v1/keys", e.operator, `{"role": "partner", "partner": "gamma"}`).want(t, 201).decode(t, &key)
	e.request("DELETE", "/v1/keys/"+key.ID, e.operator, nil).want(t, 204)
	e.request("PATCH", "/v1/partners/gamma", e.operator, `{"status": "suspended"}`).want(t, 200)
	e.request("POST", "/v1/checkpoints", e.operator, `{"reason": "audited"}`).want(t, 201)

	res := e.request("GET", "/v1/audit-log", e.auditor, nil).want(t, 200)
	if strings.Contains(string(res.Body), key.Secret) {
		t.Fatal("the audit log holds a key's secret")
	}
	var page auditLogPage
	res.decode(t, &page)
	var actions []string
	var events []audit.Event
	for _, ev := range page.Events {
		if ev.Actor == "system" {
			continue
		}
		events = append(events, ev)
		actions = append(actions, ev.Action)
		if !strings.HasPrefix(ev.Actor, "key:") || !strings.HasSuffix(ev.Actor, "(operator)") {
			t.Errorf("event %d: actor %q", ev.ID, ev.Actor)
		}
	}
	want := []string{audit.ActionPartnerCreated, audit.ActionContractAdded, audit.ActionKeyCreated, audit.ActionKeyRevoked,
		audit.ActionPartnerStatusChanged, audit.ActionCheckpointSigned}
	if strings.Join(actions, " ") != strings.Join(want, " ") {
		t.Fatalf("actions = %v, want %v", actions, want)
	}
	var details map[string]string
	if err := json.Unmarshal(events[2].Details, &details); err != nil || details["id"] != key.ID || details["partner"] != "gamma" {
		t.Fatalf("key.created details = %s (%v)", events[2].Details, err)
	}
	// A page after the last event is empty; an action filter keeps one kind.
	e.request("GET", fmt.Sprintf("/v1/audit-log?after=%d", page.Next), e.auditor, nil).want(t, 200).decode(t, &page)
	if len(page.Events) != 0 {
		t.Fatalf("after the last: %+v", page.Events)
	}
	e.request("GET", "/v1/audit-log?action=key.revoked", e.auditor, nil).want(t, 200).decode(t, &page)
	if len(page.Events) != 1 {
		t.Fatalf("key.revoked events = %+v", page.Events)
	}
}
