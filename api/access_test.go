package api

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/coalitionledger/coalition/partners"
)

// The principals of the access matrix, in the order of accessRow.want.
const (
	asOperator     = iota // an operator key
	asAuditor             // an auditor key
	asOwnPartner          // a partner key of the partner in the path ("alpha")
	asOtherPartner        // a partner key of another partner ("beta")
	asNoKey               // no Authorization header
	principalCount
)

var principalNames = [principalCount]string{"operator", "auditor", "own partner", "other partner", "no key"}

// matrix is the world the access matrix runs in: partners alpha and beta, each with a
// contract in force, and one key per principal.
type matrix struct {
	*env
	secrets    [principalCount]string
	lastMember string
}

// accessRow is one route of the access matrix: how to build a request that the operator
// could make successfully, and the exact status each principal gets. Every cell sends a
// fresh request (path, body and headers are built per cell), so rows that create things
// build unique ones.
type accessRow struct {
	route  string // "METHOD /pattern" as registered on the router
	path   func(m *matrix) string
	body   func(m *matrix) string   // nil: no body
	header func(m *matrix) []string // nil: none; pairs of name and value
	want   [principalCount]int
}

// fixed returns a constant path or body.
func fixed(s string) func(*matrix) string { return func(*matrix) string { return s } }

// accessRows is the matrix. Append a row for every new route.
var accessRows = []accessRow{
	{route: "GET /v1/coalition", path: fixed("/v1/coalition"),
		want: [principalCount]int{200, 200, 403, 403, 401}},
	{route: "PUT /v1/coalition", path: fixed("/v1/coalition"),
		body: fixed(`{"currency": "USD", "point_value": "0.01", "points_scale": 0, "time_zone": "UTC", "settlement_time": "02:00", "tiers": []}`),
		want: [principalCount]int{200, 403, 403, 403, 401}},
	{route: "POST /v1/partners", path: fixed("/v1/partners"),
		body: func(m *matrix) string { return fmt.Sprintf(`{"id": "p%d", "name": "P"}`, m.next()) },
		want: [principalCount]int{201, 403, 403, 403, 401}},
	{route: "GET /v1/partners", path: fixed("/v1/partners"),
		want: [principalCount]int{200, 200, 403, 403, 401}},
	{route: "GET /v1/partners/:partner", path: fixed("/v1/partners/alpha"),
		want: [principalCount]int{200, 200, 200, 403, 401}},
	{route: "PATCH /v1/partners/:partner", path: fixed("/v1/partners/alpha"), body: fixed(`{"status": "active"}`),
		want: [principalCount]int{200, 403, 403, 403, 401}},
	{route: "POST /v1/partners/:partner/contracts", path: fixed("/v1/partners/alpha/contracts"),
		body: func(m *matrix) string {
			return fmt.Sprintf(`{"effective_from": %q, "earn": {"points_per_unit": "1"}}`, future(24+m.next()))
		},
		want: [principalCount]int{201, 403, 403, 403, 401}},
	{route: "GET /v1/partners/:partner/contracts", path: fixed("/v1/partners/alpha/contracts"),
		want: [principalCount]int{200, 200, 200, 403, 401}},
	{route: "GET /v1/keys", path: fixed("/v1/keys"),
		want: [principalCount]int{200, 403, 403, 403, 401}},
	{route: "POST /v1/keys", path: fixed("/v1/keys"), body: fixed(`{"role": "auditor"}`),
		want: [principalCount]int{201, 403, 403, 403, 401}},
	{route: "DELETE /v1/keys/:key", path: func(m *matrix) string {
		id, _, err := m.keys.Create(context.Background(), partners.RoleAuditor, "")
		if err != nil {
			m.t.Fatal(err)
		}
		return "/v1/keys/" + id
	}, want: [principalCount]int{204, 403, 403, 403, 401}},
}

// routesWithoutAccessRows are registered routes that have no row in accessRows yet.
// Remove a route from here when its row is added.
var routesWithoutAccessRows = map[string]bool{}

// The partner operations: the operator may act for any partner, an auditor never writes,
// a partner key acts only for its own partner, and every partner reads any member.
func init() {
	writes := [principalCount]int{201, 403, 201, 403, 401}
	key := func(m *matrix) []string { return []string{"Idempotency-Key", fmt.Sprint("access-", m.next())} }
	card := func(m *matrix) string { return fmt.Sprint("card-", m.next()) }
	accessRows = append(accessRows,
		accessRow{route: "POST /v1/members", path: fixed("/v1/members"),
			body: func(m *matrix) string { return fmt.Sprintf(`{"card": %q}`, card(m)) },
			want: [principalCount]int{201, 403, 201, 201, 401}},
		accessRow{route: "POST /v1/members/:member/awards", header: key,
			path: func(m *matrix) string { return "/v1/members/" + m.member() + "/awards" },
			body: func(m *matrix) string { return `{"points": "5", "reason": "goodwill"}` },
			want: [principalCount]int{201, 403, 403, 403, 401}},
		accessRow{route: "POST /v1/partners/:partner/earns", path: fixed("/v1/partners/alpha/earns"), header: key,
			body: func(m *matrix) string {
				return fmt.Sprintf(`{"member": {"card": %q}, "amount": "10.00", "currency": "USD"}`, card(m))
			}, want: writes},
		accessRow{route: "POST /v1/partners/:partner/redemptions", path: fixed("/v1/partners/alpha/redemptions"), header: key,
			body: func(m *matrix) string { return fmt.Sprintf(`{"member": {"id": %q}, "points": "1"}`, m.member()) }, want: writes},
		accessRow{route: "POST /v1/partners/:partner/holds", path: fixed("/v1/partners/alpha/holds"), header: key,
			body: func(m *matrix) string { return fmt.Sprintf(`{"member": {"id": %q}, "points": "1"}`, m.member()) }, want: writes},
		accessRow{route: "POST /v1/partners/:partner/holds/:hold/capture", header: key,
			path: func(m *matrix) string { return "/v1/partners/alpha/holds/" + m.hold() + "/capture" }, want: writes},
		accessRow{route: "POST /v1/partners/:partner/holds/:hold/void", header: key,
			path: func(m *matrix) string { return "/v1/partners/alpha/holds/" + m.hold() + "/void" }, want: writes},
		accessRow{route: "POST /v1/partners/:partner/reversals", path: fixed("/v1/partners/alpha/reversals"), header: key,
			body: func(m *matrix) string { return fmt.Sprintf(`{"entry": %q}`, m.earn()) }, want: writes},
		accessRow{route: "POST /v1/partners/:partner/batch", path: fixed("/v1/partners/alpha/batch"),
			body: func(m *matrix) string {
				return fmt.Sprintf(`{"items": [{"type": "earn", "idempotency_key": "b-%d", "body": {"member": {"card": %q}, "amount": "1.00", "currency": "USD"}}]}`, m.next(), card(m))
			}, want: [principalCount]int{200, 403, 200, 403, 401}},
		accessRow{route: "GET /v1/partners/:partner/holds/:hold",
			path: func(m *matrix) string { return "/v1/partners/alpha/holds/" + m.hold() },
			want: [principalCount]int{200, 200, 200, 403, 401}},
		accessRow{route: "GET /v1/partners/:partner/members/:member",
			path: func(m *matrix) string { return "/v1/partners/alpha/members/" + m.member() },
			want: [principalCount]int{200, 200, 200, 403, 401}},
		accessRow{route: "GET /v1/partners/:partner/entries", path: fixed("/v1/partners/alpha/entries?reference=r-1"),
			want: [principalCount]int{200, 200, 200, 403, 401}},
	)
}

// earn posts an earn of 100 points at alpha for a new member and returns its entry id.
func (m *matrix) earn() string {
	m.t.Helper()
	res, err := m.srv.service().Earn(context.Background(), partners.Request{Partner: "alpha", IdempotencyKey: fmt.Sprint("seed-", m.next())},
		partners.EarnInput{Member: partners.MemberRef{Card: fmt.Sprint("seed-", m.next())}, Purchase: partners.Purchase{Amount: decimal.NewFromInt(100), Currency: "USD"}})
	if err != nil {
		m.t.Fatal(err)
	}
	m.lastMember = res.Member.ID
	return res.Entry.ID
}

// member returns a new member with 100 points from alpha.
func (m *matrix) member() string {
	m.earn()
	return m.lastMember
}

// hold returns an open hold of alpha on a new member.
func (m *matrix) hold() string {
	m.t.Helper()
	id := m.member()
	h, err := m.srv.service().Hold(context.Background(), partners.Request{Partner: "alpha", IdempotencyKey: fmt.Sprint("seed-", m.next())},
		partners.HoldInput{Member: partners.MemberRef{ID: id}, Points: decimal.NewFromInt(10)})
	if err != nil {
		m.t.Fatal(err)
	}
	return h.Hold.ID
}

func newMatrix(t *testing.T) *matrix {
	m := &matrix{env: newEnv(t)}
	own, other := m.partner("alpha"), m.partner("beta")
	m.contract("alpha")
	m.contract("beta")
	m.secrets = [principalCount]string{m.operator, m.auditor, own, other, ""}
	return m
}

// TestAccessMatrix sends every route as every principal and checks the exact status.
func TestAccessMatrix(t *testing.T) {
	t.Parallel()
	m := newMatrix(t)
	rows := map[string]bool{}
	for _, row := range accessRows {
		rows[row.route] = true
		method, _, _ := strings.Cut(row.route, " ")
		for who := range principalCount {
			t.Run(row.route+"/"+principalNames[who], func(t *testing.T) {
				var body any
				if row.body != nil {
					body = row.body(m)
				}
				var header []string
				if row.header != nil {
					header = row.header(m)
				}
				res := m.request(method, row.path(m), m.secrets[who], body, header...)
				if res.Status != row.want[who] {
					t.Fatalf("%s as %s: status %d, want %d; body: %s", row.route, principalNames[who], res.Status, row.want[who], res.Body)
				}
				switch res.Status {
				case 401:
					res.wantError(t, 401, "unauthorized")
				case 403:
					res.wantError(t, 403, "forbidden")
				}
			})
		}
	}
	// Every registered route has a row (or is listed as waiting for one).
	for route := range m.srv.protected {
		if !rows[route] && !routesWithoutAccessRows[route] {
			t.Errorf("route %s has no row in accessRows", route)
		}
		if rows[route] && routesWithoutAccessRows[route] {
			t.Errorf("route %s has a row: remove it from routesWithoutAccessRows", route)
		}
	}
	for route := range rows {
		if !m.srv.protected[route] {
			t.Errorf("accessRows has %s, which is not a registered route", route)
		}
	}
}
