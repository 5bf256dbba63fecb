package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/shopspring/decimal"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/coalitionledger/coalition/internal/pgtest"
	"github.com/coalitionledger/coalition/ledger"
	"github.com/coalitionledger/coalition/partners"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// env is one API server over its own database, reached through real HTTP.
type env struct {
	t        *testing.T
	pool     *pgxpool.Pool
	store    *partners.Store
	keys     *partners.Keys
	ledger   *ledger.Ledger
	srv      *Server
	http     *httptest.Server
	logs     *observer.ObservedLogs
	operator string // secret of an operator key
	auditor  string // secret of an auditor key
	seq      atomic.Int64
}

// envOption adjusts the server's Config before New.
type envOption func(*Config)

// newEnv starts a server on a fresh database with an operator and an auditor key.
func newEnv(t *testing.T, opts ...envOption) *env {
	t.Helper()
	pool := pgtest.Pool(t)
	core, logs := observer.New(zap.DebugLevel)
	e := &env{t: t, pool: pool, store: partners.NewStore(pool), keys: partners.NewKeys(pool), ledger: ledger.New(pool), logs: logs}
	cfg := Config{Store: e.store, Keys: e.keys, Ledger: e.ledger, Logger: zap.New(core), Registry: prometheus.NewRegistry(),
		Checkpointer: testCheckpointer(t, pool)} // audit_test.go
	for _, o := range opts {
		o(&cfg)
	}
	e.srv = New(cfg)
	e.http = httptest.NewServer(e.srv.Handler())
	t.Cleanup(e.http.Close)
	t.Cleanup(func() { _ = e.srv.Close(context.Background()) }) // drains the server's writer
	e.operator = e.key(partners.RoleOperator, "")
	e.auditor = e.key(partners.RoleAuditor, "")
	return e
}

// key makes an API key directly in the store and returns its secret.
func (e *env) key(role partners.Role, partner string) string {
	e.t.Helper()
	_, secret, err := e.keys.Create(context.Background(), role, partner)
	if err != nil {
		e.t.Fatalf("create %s key: %v", role, err)
	}
	return secret
}

// partner creates a partner through the store and returns a partner key for it.
func (e *env) partner(id string) string {
	e.t.Helper()
	if _, err := e.store.CreatePartner(context.Background(), id, "Partner "+id); err != nil {
		e.t.Fatalf("create partner %s: %v", id, err)
	}
	return e.key(partners.RolePartner, id)
}

// contract adds a contract version in force from now: 1 point per unit, points worth the
// coalition's point value, expiring after a year.
func (e *env) contract(partner string) {
	e.t.Helper()
	days := 365
	now := time.Now()
	k := partners.Contract{EffectiveFrom: now, Earn: partners.EarnRate{PointsPerUnit: decPtr("1")}, ExpiryDays: &days}
	if _, err := e.store.AddContract(context.Background(), partner, k, now); err != nil {
		e.t.Fatalf("contract for %s: %v", partner, err)
	}
}

// next returns a number unique within the env, for ids and times.
func (e *env) next() int64 { return e.seq.Add(1) }

// response is an HTTP answer, read whole.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

// request sends a request with a bearer secret ("" for none) and a body (a string sent as
// it is, []byte, nil for none, or any other value as JSON), plus header pairs.
func (e *env) request(method, path, secret string, body any, header ...string) response {
	e.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	case []byte:
		r = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		r = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, e.http.URL+path, r)
	if err != nil {
		e.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return e.send(req)
}

// send sends a prepared request.
func (e *env) send(req *http.Request) response {
	e.t.Helper()
	res, err := e.http.Client().Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	e.checkAgainstOpenAPI(req, res, raw)
	return response{Status: res.StatusCode, Header: res.Header, Body: raw}
}

var openAPI struct {
	once   sync.Once
	router routers.Router
	err    error
}

// checkAgainstOpenAPI fails the test when a JSON answer of a documented operation does
// not match docs/openapi.yaml: its status must be one the operation lists, and its body
// the schema given for it. Every answer of every test here is held to the document, which
// is what clients generate their code from.
func (e *env) checkAgainstOpenAPI(req *http.Request, res *http.Response, body []byte) {
	e.t.Helper()
	openAPI.once.Do(func() {
		doc, err := openapi3.NewLoader().LoadFromFile("../docs/openapi.yaml")
		if err == nil {
			openAPI.router, err = legacy.NewRouter(doc)
		}
		openAPI.err = err
	})
	if openAPI.err != nil {
		e.t.Fatalf("docs/openapi.yaml: %v", openAPI.err)
	}
	if !strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
		return
	}
	// The document's server is the default address; the route is found as if there.
	at := req.Clone(context.Background())
	at.URL.Scheme, at.URL.Host, at.Host = "http", "127.0.0.1:8080", "127.0.0.1:8080"
	route, params, err := openAPI.router.FindRoute(at)
	if err != nil {
		// Only a path nobody serves (a 404 or 405) or one outside /v1 (/healthz) may be
		// missing from the document.
		if strings.HasPrefix(req.URL.Path, "/v1/") && res.StatusCode != http.StatusNotFound && res.StatusCode != http.StatusMethodNotAllowed {
			e.t.Errorf("%s %s answered %d, but docs/openapi.yaml has no such route: %v", req.Method, req.URL.Path, res.StatusCode, err)
		}
		return
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: at, PathParams: params, Route: route},
		Status:                 res.StatusCode,
		Header:                 res.Header,
		Body:                   io.NopCloser(bytes.NewReader(body)),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true},
	}
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		e.t.Errorf("%s %s answered %d %s, which docs/openapi.yaml does not describe: %v", req.Method, req.URL.Path, res.StatusCode, body, err)
	}
}

// want fails the test unless the answer has the status.
func (r response) want(t testing.TB, status int) response {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status = %d, want %d; body: %s", r.Status, status, r.Body)
	}
	return r
}

// decode decodes the answer's JSON body into v.
func (r response) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
}

// apiError is the error body, read strictly: exactly {"error": {code, message, details}}.
type apiError struct {
	Code    string         `json:"code"`
	Message string         `json:"message"`
	Details map[string]any `json:"details"`
}

// wantError fails the test unless the answer is an error of the status and code in
// exactly the documented shape, and returns it.
func (r response) wantError(t testing.TB, status int, code string) apiError {
	t.Helper()
	r.want(t, status)
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type = %q, want application/json", ct)
	}
	var envelope struct {
		Error *apiError `json:"error"`
	}
	dec := json.NewDecoder(bytes.NewReader(r.Body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&envelope); err != nil || envelope.Error == nil {
		t.Fatalf("error body %s is not {\"error\": {code, message, details}}: %v", r.Body, err)
	}
	var raw map[string]map[string]json.RawMessage
	if err := json.Unmarshal(r.Body, &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"code", "message", "details"} {
		if _, ok := raw["error"][k]; !ok {
			t.Fatalf("error body %s has no %q", r.Body, k)
		}
	}
	got := *envelope.Error
	if got.Code != code {
		t.Fatalf("error code = %q, want %q; body: %s", got.Code, code, r.Body)
	}
	if got.Message == "" || got.Details == nil {
		t.Fatalf("error %s needs a message and a details object", r.Body)
	}
	return got
}

func decPtr(s string) *decimal.Decimal { d := decimal.RequireFromString(s); return &d }

// jsonString quotes s as a JSON string.
func jsonString(s string) string {
	raw, _ := json.Marshal(s)
	return string(raw)
}

// future returns an RFC 3339 time n hours from now, for contract versions that must not
// collide.
func future(n int64) string {
	return time.Now().Add(time.Duration(n) * time.Hour).UTC().Format(time.RFC3339)
}
