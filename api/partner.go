package api

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/shopspring/decimal"

	"github.com/coalitionledger/coalition/audit"
	"github.com/coalitionledger/coalition/ledger"
	"github.com/coalitionledger/coalition/partners"
)

// MaxBatchItems bounds a /batch request.
const MaxBatchItems = ledger.MaxBatch

// registerPartnerRoutes adds the partner operations under /v1/partners/:partner.
func (s *Server) registerPartnerRoutes(g *echo.Group) {
	g.POST("/earns", s.partnerWrite(s.earn))
	g.POST("/redemptions", s.partnerWrite(s.redeem))
	g.POST("/holds", s.partnerWrite(s.hold))
	g.POST("/holds/:hold/capture", s.partnerWrite(s.capture))
	g.POST("/holds/:hold/void", s.partnerWrite(s.void))
	g.POST("/reversals", s.partnerWrite(s.reverse))
	g.POST("/batch", s.batch, partnerWriter, s.idempotentWrite) // items carry their own keys; the batch's is optional
	g.GET("/members/:member", s.member)
	g.GET("/holds/:hold", s.getHold)
	g.GET("/entries", s.entriesByReference)
}

// operation runs one partner write from its decoded body: it returns the status and body
// of the answer, or the error to answer with. replayed answers are told apart by the
// caller only for logging.
type operation func(c echo.Context, r partners.Request, body []byte) (int, any, error)

// renderStored turns a stored first answer back into the HTTP answer of its operation.
func (s *Server) renderStored(c echo.Context, res *ledger.Result) (int, any, error) {
	p := res.Entry
	switch p.Kind {
	case ledger.EntryEarn:
		return http.StatusCreated, partners.EarnResultOf(p), nil
	case ledger.EntryRedemption:
		return http.StatusCreated, partners.RedeemResultOf(p), nil
	case ledger.EntryHold, ledger.EntryCapture, ledger.EntryVoid:
		co, err := s.cfg.Store.Coalition(c.Request().Context())
		if err != nil {
			return 0, nil, err
		}
		return http.StatusCreated, partners.HoldResultOf(p, co.Currency), nil
	case ledger.EntryAward:
		return http.StatusCreated, partners.AwardResultOf(p), nil
	}
	return http.StatusCreated, partners.ReverseResultOf(p), nil
}

// partnerWrite wraps a partner write with what every one of them needs: the partner's
// authorisation, the Idempotency-Key, the replay of a stored first answer, and the
// recording of a refusal as the first answer.
func (s *Server) partnerWrite(op operation) echo.HandlerFunc {
	return func(c echo.Context) error {
		partner := c.Param("partner")
		if err := authorisePartnerWrite(c, partner); err != nil {
			return writeError(c, err)
		}
		body, err := readBody(c)
		if err != nil {
			return writeError(c, err)
		}
		r, err := s.idempotency(c, partner, body)
		if err != nil {
			return writeError(c, err)
		}
		status, answer, err := s.runOnce(c, r, body, op)
		if err != nil {
			return writeError(c, err)
		}
		return c.JSON(status, answer)
	}
}

// idempotency reads the request's Idempotency-Key and hashes the request.
func (s *Server) idempotency(c echo.Context, partner string, body []byte) (partners.Request, error) {
	key := c.Request().Header.Get("Idempotency-Key")
	if key == "" {
		return partners.Request{}, ledger.Errorf(CodeIdempotencyKeyRequired, "this write needs an Idempotency-Key header (a unique string per request, reused on retries)")
	}
	if len(key) > ledger.MaxTextLength {
		return partners.Request{}, ledger.Errorf(ledger.CodeInvalid, "Idempotency-Key is limited to %d bytes", ledger.MaxTextLength)
	}
	return partners.Request{Partner: partner, IdempotencyKey: key, RequestHash: requestHash(c.Request().Method, c.Request().URL.Path, body)}, nil
}

// requestHash identifies a request for idempotency: its method, path and body, the body
// as the JSON value it is (sameJSON), so that a retry sent through another serializer
// (other spacing, another key order, a /batch item sent alone) is the same request. A
// body that is not JSON is hashed as it is: it is refused as malformed either way.
func requestHash(method, path string, body []byte) []byte {
	h := sha256.New()
	h.Write([]byte(method + " " + path + "\n"))
	body = bytes.TrimSpace(body)
	if canonical, ok := sameJSON(body); ok {
		body = canonical
	}
	h.Write(body)
	return h.Sum(nil)
}

// sameJSON writes a JSON text without insignificant whitespace, with object keys sorted
// and strings escaped one way, so that two texts of the same value are the same bytes.
// Numbers keep their digits: RFC 8785 reads them as doubles, which would make metadata
// of 9007199254740993 and of 9007199254740992 one request (a replay where a 409 is due).
func sameJSON(text []byte) ([]byte, bool) {
	dec := json.NewDecoder(bytes.NewReader(text))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, false
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, false
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, false
	}
	return bytes.TrimSuffix(out.Bytes(), []byte("\n")), true
}

// runOnce runs the operation and records a refusal as the first answer to its key. A
// replay is not looked up first: the writer finds the key's first answer under the key's
// lock and returns it, and a replay whose operation is refused before it reaches the
// writer gets the first answer from Refuse. Either way the answer says it was replayed.
func (s *Server) runOnce(c echo.Context, r partners.Request, body []byte, op operation) (int, any, error) {
	ctx := c.Request().Context()
	r.Reauthorize = s.reauthorize(c)
	for attempt := 1; ; attempt++ {
		// The version of the terms the operation decides on (at least): a refusal is
		// stored only if the terms have not changed since.
		version, err := s.cache.Version(ctx)
		if err != nil {
			return 0, nil, err
		}
		status, answer, opErr := op(c, r, body)
		status, answer, err = s.answerOnce(c, r, status, answer, opErr, version)
		if !refusedOnTerms(opErr) || !errors.Is(err, ledger.ErrTermsChanged) || attempt == maxRedecisions {
			return status, answer, err
		}
		// Decided on cached terms that have changed since: decide again, on fresh ones,
		// if the key still may.
		if err := r.Reauthorize(ctx); err != nil {
			return 0, nil, err
		}
		r.Terms = nil
	}
}

// maxRedecisions bounds how many times runOnce decides one request again because the
// terms it was refused on changed meanwhile.
const maxRedecisions = 3

// refusedOnTerms reports whether err is a refusal decided before the engine, which is to
// be stored as the key's first answer. A conflict is not an answer to the request, and
// a key found revoked when the request was decided again (Reauthorize) is about the key,
// not the request.
func refusedOnTerms(err error) bool {
	var lerr *ledger.Error
	return errors.As(err, &lerr) && !lerr.Stored() && lerr.Code != ledger.CodeIdempotencyConflict && lerr.Code != CodeUnauthorized
}

// answerOnce turns an operation's outcome into the answer: a refusal decided before the
// engine is stored as the key's first answer (at the terms version it was decided at),
// unless the key has one already (this is a replay), which is then the answer.
func (s *Server) answerOnce(c echo.Context, r partners.Request, status int, answer any, err error, version int64) (int, any, error) {
	ctx := c.Request().Context()
	var lerr *ledger.Error
	if errors.As(err, &lerr) && lerr.Stored() {
		if lerr.Replayed() {
			c.Response().Header().Set("Idempotent-Replayed", "true")
		}
		return 0, nil, lerr
	}
	if refusedOnTerms(err) {
		res, rerr := s.cfg.Ledger.Refuse(ctx, r.Partner, r.IdempotencyKey, r.RequestHash, lerr, version)
		if rerr != nil {
			return 0, nil, rerr
		}
		if res.Replayed {
			c.Response().Header().Set("Idempotent-Replayed", "true")
		}
		if res.Entry != nil {
			return s.renderStored(c, &res)
		}
		return 0, nil, res.Err
	}
	if err != nil {
		return 0, nil, err
	}
	if replayed, ok := answer.(interface{ WasReplayed() bool }); ok && replayed.WasReplayed() {
		c.Response().Header().Set("Idempotent-Replayed", "true")
	}
	return status, answer, nil
}

// memberJSON is a member as a request body names it.
type memberJSON struct {
	ID    string `json:"id,omitempty"`
	Phone string `json:"phone,omitempty"`
	Card  string `json:"card,omitempty"`
}

func (m *memberJSON) ref() (partners.MemberRef, error) {
	if m == nil {
		return partners.MemberRef{}, ledger.Errorf(ledger.CodeInvalid, "member is required: {\"id\"}, {\"phone\"} or {\"card\"}").With("field", "member")
	}
	return partners.MemberRef{ID: m.ID, Phone: m.Phone, Card: m.Card}, nil
}

type lineJSON struct {
	Category string `json:"category"`
	Amount   string `json:"amount"`
}

type earnJSON struct {
	Member        *memberJSON     `json:"member"`
	Amount        string          `json:"amount"`
	Currency      string          `json:"currency"`
	Category      string          `json:"category"`
	PaymentMethod string          `json:"payment_method"`
	Lines         []lineJSON      `json:"lines"`
	BusinessTime  *time.Time      `json:"business_time"`
	Reference     string          `json:"reference"`
	Metadata      json.RawMessage `json:"metadata"`
}

// scales are the decimals a request's amounts may have: the coalition's currency and
// points. One request reads them once, however many amounts it carries.
type scales struct {
	moneyScale, pointsScale int32
	currency                string
}

// ctxScales is where a /batch leaves the scales it read once for all its items.
const ctxScales = "coalition.scales"

func (s *Server) scales(c echo.Context) (scales, error) {
	if sc, ok := c.Get(ctxScales).(scales); ok {
		return sc, nil
	}
	coal, err := s.cfg.Store.Coalition(c.Request().Context())
	if err != nil {
		return scales{}, err
	}
	return scalesOf(coal)
}

func scalesOf(coal partners.Coalition) (scales, error) {
	money, err := coal.MoneyScale()
	if err != nil {
		return scales{}, err
	}
	return scales{moneyScale: money, pointsScale: coal.PointsScale, currency: coal.Currency}, nil
}

// withTerms reads the partner's terms once for a request (an earn, a redemption, a hold,
// a capture, a void), so that parsing its amounts and serving it share one round trip.
// On failure it leaves r alone: the service reads them again and reports the error.
func (s *Server) withTerms(c echo.Context, r *partners.Request) {
	if r.Terms != nil {
		return
	}
	terms, err := s.service().ReadTerms(c.Request().Context(), r.Partner)
	if err != nil {
		return
	}
	if sc, err := scalesOf(terms.Coalition); err == nil {
		c.Set(ctxScales, sc)
	}
	r.Terms = terms
}

// money parses an optional amount field in the coalition's currency.
func (sc scales) money(field, v string) (decimal.Decimal, error) {
	if v == "" {
		return decimal.Zero, nil
	}
	return parseAmount(field, v, sc.moneyScale)
}

// points parses an optional points field at the coalition's points scale.
func (sc scales) points(field, v string) (decimal.Decimal, error) {
	if v == "" {
		return decimal.Zero, nil
	}
	return parseAmount(field, v, sc.pointsScale)
}

// part parses an optional field that, when given, must be more than zero: a redemption's
// points or value, and the fields whose absence means "all of it" (a capture's points, a
// reversal's amount or points), where a till that sent "0" for "nothing" would otherwise
// take everything.
func part(parse func(field, v string) (decimal.Decimal, error), field, v string) (decimal.Decimal, error) {
	d, err := parse(field, v)
	if err != nil || v == "" || d.IsPositive() {
		return d, err
	}
	return d, ledger.Errorf(ledger.CodeInvalidAmount, "%s must be greater than zero", field).With("field", field)
}

func (s *Server) earnInput(c echo.Context, body []byte) (partners.EarnInput, error) {
	var in earnJSON
	if err := decodeBytes(body, &in); err != nil {
		return partners.EarnInput{}, err
	}
	ref, err := in.Member.ref()
	if err != nil {
		return partners.EarnInput{}, err
	}
	if in.Currency == "" {
		return partners.EarnInput{}, ledger.Errorf(ledger.CodeInvalid, "currency is required with the amount").With("field", "currency")
	}
	sc, err := s.scales(c)
	if err != nil {
		return partners.EarnInput{}, err
	}
	// The currency before the amounts: a USD amount sent to a JPY coalition is in the wrong
	// currency, not at the wrong scale.
	if err := partners.CheckCurrency(in.Currency, sc.currency); err != nil {
		return partners.EarnInput{}, err
	}
	amount, err := sc.money("amount", in.Amount)
	if err != nil {
		return partners.EarnInput{}, err
	}
	p := partners.Purchase{Amount: amount, Currency: in.Currency, Category: in.Category, PaymentMethod: in.PaymentMethod}
	for i, l := range in.Lines {
		a, err := sc.money("lines["+itoa(i)+"].amount", l.Amount)
		if err != nil {
			return partners.EarnInput{}, err
		}
		p.Lines = append(p.Lines, partners.Line{Category: l.Category, Amount: a})
	}
	if in.Amount == "" && len(in.Lines) == 0 {
		return partners.EarnInput{}, ledger.Errorf(ledger.CodeInvalid, "an earn needs an amount or lines").With("field", "amount")
	}
	meta, err := clientMetadata(in.Metadata)
	if err != nil {
		return partners.EarnInput{}, err
	}
	return partners.EarnInput{Member: ref, Purchase: p, BusinessTime: in.BusinessTime, Reference: in.Reference, Metadata: meta}, nil
}

// clientMetadata checks a request's own metadata: absent, null or a JSON object, which the
// entry keeps under metadata.client.
func clientMetadata(raw json.RawMessage) (json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if raw[0] != '{' {
		return nil, ledger.Errorf(ledger.CodeInvalid, "metadata must be a JSON object").With("field", "metadata")
	}
	if len(raw) > ledger.MaxMetadataBytes/2 {
		return nil, ledger.Errorf(ledger.CodeInvalid, "metadata is limited to %d bytes", ledger.MaxMetadataBytes/2).With("field", "metadata")
	}
	return raw, nil
}

func (s *Server) earn(c echo.Context, r partners.Request, body []byte) (int, any, error) {
	s.withTerms(c, &r)
	in, err := s.earnInput(c, body)
	if err != nil {
		return 0, nil, err
	}
	ctx := c.Request().Context()
	res, err := s.service().Earn(ctx, r, in)
	if err != nil {
		return 0, nil, err
	}
	if res.Entry == nil {
		// Nothing was posted, so nothing checked the key: one that has a first answer
		// gets it (or a conflict, for another request).
		stored, err := s.cfg.Ledger.Lookup(ctx, r.Partner, r.IdempotencyKey, r.RequestHash)
		if err != nil {
			return 0, nil, err
		}
		if stored != nil && stored.Err != nil {
			return 0, nil, stored.Refusal()
		}
		if stored != nil {
			c.Response().Header().Set("Idempotent-Replayed", "true")
			return s.renderStored(c, stored)
		}
		return http.StatusOK, res, nil
	}
	s.countEntry(string(ledger.EntryEarn), res.Replayed)
	return http.StatusCreated, res, nil
}

type redeemJSON struct {
	Member         *memberJSON `json:"member"`
	Points         string      `json:"points"`
	Value          string      `json:"value"`
	PurchaseAmount string      `json:"purchase_amount"`
	BusinessTime   *time.Time  `json:"business_time"`
	Reference      string      `json:"reference"`
	ExpiresIn      *int64      `json:"expires_in"` // holds only: seconds
}

func (s *Server) redeemInput(c echo.Context, body []byte, hold bool) (partners.RedeemInput, *int64, error) {
	var in redeemJSON
	if err := decodeBytes(body, &in); err != nil {
		return partners.RedeemInput{}, nil, err
	}
	if !hold && in.ExpiresIn != nil {
		return partners.RedeemInput{}, nil, ledger.Errorf(ledger.CodeInvalid, "expires_in belongs to holds").With("field", "expires_in")
	}
	ref, err := in.Member.ref()
	if err != nil {
		return partners.RedeemInput{}, nil, err
	}
	if (in.Points == "") == (in.Value == "") {
		return partners.RedeemInput{}, nil, ledger.Errorf(ledger.CodeInvalid, "give either points or value").With("field", "points")
	}
	out := partners.RedeemInput{Member: ref, BusinessTime: in.BusinessTime, Reference: in.Reference}
	sc, err := s.scales(c)
	if err != nil {
		return out, nil, err
	}
	if out.Points, err = part(sc.points, "points", in.Points); err != nil {
		return out, nil, err
	}
	if out.Value, err = part(sc.money, "value", in.Value); err != nil {
		return out, nil, err
	}
	if in.PurchaseAmount != "" {
		pa, err := sc.money("purchase_amount", in.PurchaseAmount)
		if err != nil {
			return out, nil, err
		}
		out.PurchaseAmount = &pa
	}
	return out, in.ExpiresIn, nil
}

func (s *Server) redeem(c echo.Context, r partners.Request, body []byte) (int, any, error) {
	s.withTerms(c, &r)
	in, _, err := s.redeemInput(c, body, false)
	if err != nil {
		return 0, nil, err
	}
	res, err := s.service().Redeem(c.Request().Context(), r, in)
	if err != nil {
		return 0, nil, err
	}
	s.countEntry(string(ledger.EntryRedemption), res.Replayed)
	return http.StatusCreated, res, nil
}

func (s *Server) hold(c echo.Context, r partners.Request, body []byte) (int, any, error) {
	s.withTerms(c, &r)
	in, expiresIn, err := s.redeemInput(c, body, true)
	if err != nil {
		return 0, nil, err
	}
	h := partners.HoldInput{Member: in.Member, Points: in.Points, Value: in.Value, PurchaseAmount: in.PurchaseAmount,
		BusinessTime: in.BusinessTime, Reference: in.Reference}
	if expiresIn != nil {
		if *expiresIn <= 0 {
			return 0, nil, ledger.Errorf(ledger.CodeInvalid, "expires_in is a number of seconds greater than zero").With("field", "expires_in")
		}
		h.ExpiresIn = time.Duration(*expiresIn) * time.Second
	}
	res, err := s.service().Hold(c.Request().Context(), r, h)
	if err != nil {
		return 0, nil, err
	}
	s.countEntry(string(ledger.EntryHold), res.Replayed)
	return http.StatusCreated, res, nil
}

type captureJSON struct {
	Points string `json:"points"`
}

func (s *Server) capture(c echo.Context, r partners.Request, body []byte) (int, any, error) {
	var in captureJSON
	if len(bytes.TrimSpace(body)) > 0 {
		if err := decodeBytes(body, &in); err != nil {
			return 0, nil, err
		}
	}
	s.withTerms(c, &r)
	sc, err := s.scales(c)
	if err != nil {
		return 0, nil, err
	}
	pts, err := part(sc.points, "points", in.Points)
	if err != nil {
		return 0, nil, err
	}
	res, err := s.service().Capture(c.Request().Context(), r, c.Param("hold"), pts)
	if err != nil {
		return 0, nil, err
	}
	s.countEntry(string(ledger.EntryCapture), res.Replayed)
	return http.StatusCreated, res, nil
}

func (s *Server) void(c echo.Context, r partners.Request, body []byte) (int, any, error) {
	if err := noFields(body); err != nil {
		return 0, nil, err
	}
	s.withTerms(c, &r)
	res, err := s.service().Void(c.Request().Context(), r, c.Param("hold"))
	if err != nil {
		return 0, nil, err
	}
	s.countEntry(string(ledger.EntryVoid), res.Replayed)
	return http.StatusCreated, res, nil
}

type reversalJSON struct {
	Entry             string     `json:"entry"`
	OriginalReference string     `json:"original_reference"`
	OriginalKind      string     `json:"original_kind"`
	Amount            string     `json:"amount"`
	Points            string     `json:"points"`
	Reference         string     `json:"reference"`
	BusinessTime      *time.Time `json:"business_time"`
}

func (s *Server) reverse(c echo.Context, r partners.Request, body []byte) (int, any, error) {
	var in reversalJSON
	if err := decodeBytes(body, &in); err != nil {
		return 0, nil, err
	}
	if in.Entry != "" && in.OriginalReference != "" {
		return 0, nil, ledger.Errorf(ledger.CodeInvalid, "name the original by entry or by original_reference, not both").With("field", "original_reference")
	}
	out := partners.ReverseInput{Entry: in.Entry, Reference: in.OriginalReference, Kind: ledger.EntryKind(in.OriginalKind),
		NewReference: in.Reference, BusinessTime: in.BusinessTime}
	if k := out.Kind; in.OriginalReference != "" && k != ledger.EntryEarn && k != ledger.EntryRedemption && k != ledger.EntryCapture {
		return 0, nil, ledger.Errorf(ledger.CodeInvalid, "original_kind must be earn, redemption or capture with original_reference").With("field", "original_kind")
	}
	sc, err := s.scales(c)
	if err != nil {
		return 0, nil, err
	}
	if out.Amount, err = part(sc.money, "amount", in.Amount); err != nil {
		return 0, nil, err
	}
	if out.Points, err = part(sc.points, "points", in.Points); err != nil {
		return 0, nil, err
	}
	res, err := s.service().Reverse(c.Request().Context(), r, out)
	if err != nil {
		return 0, nil, err
	}
	s.countEntry("reversal", res.Replayed)
	return http.StatusCreated, res, nil
}

// itemRoutes is the route of each item type sent alone, under /v1/partners/{partner}.
var itemRoutes = map[string]string{"earn": "/earns", "redemption": "/redemptions", "hold": "/holds", "reversal": "/reversals"}

// batchJSON is many partner writes in one request, each with its own idempotency key.
type batchJSON struct {
	Items []batchItemJSON `json:"items"`
}

type batchItemJSON struct {
	Type           string          `json:"type"` // earn, redemption, hold, capture, void, reversal
	IdempotencyKey string          `json:"idempotency_key"`
	Hold           string          `json:"hold"` // capture and void
	Body           json.RawMessage `json:"body"`
}

// batchAnswer is the answer to one item: the status it would have had alone, and its body.
type batchAnswer struct {
	Status int `json:"status"`
	Body   any `json:"body"`
	// Replayed marks an item answered with the stored first answer to its key, as the
	// header Idempotent-Replayed marks a request sent alone.
	Replayed bool `json:"replayed,omitempty"`
}

// batch answers each item as its own request would have been answered. Items run in
// order; each is idempotent under its own key.
func (s *Server) batch(c echo.Context) error {
	partner := c.Param("partner")
	var in batchJSON
	if err := decode(c, &in); err != nil {
		return writeError(c, err)
	}
	if len(in.Items) == 0 {
		return writeError(c, ledger.Errorf(ledger.CodeEmptyBatch, "a batch needs at least one item"))
	}
	if len(in.Items) > MaxBatchItems {
		return writeError(c, ledger.Errorf(ledger.CodeBatchTooLarge, "a batch holds at most %d items, this one has %d: send the rest in another", MaxBatchItems, len(in.Items)).
			With("limit", MaxBatchItems))
	}
	ops := map[string]operation{"earn": s.earn, "redemption": s.redeem, "hold": s.hold, "capture": s.capture, "void": s.void, "reversal": s.reverse}
	answers := make([]batchAnswer, len(in.Items))
	// Earns and redemptions are priced together and posted together, as one group of the
	// group-commit writer (one shared transaction); any other item first flushes them, so
	// that every item sees those before it.
	var pending []ledger.Entry
	var pendingAt []int
	var pendingReq []partners.Request
	pendingKeys := map[string]bool{}
	var itemContext func(item batchItemJSON) echo.Context
	flush := func() {
		if len(pending) == 0 {
			return
		}
		res, err := s.service().Writer.PostGroup(c.Request().Context(), pending)
		for j, i := range pendingAt {
			switch {
			case err != nil:
				answers[i] = errorAnswer(err)
			case res[j].TermsChanged():
				// Priced on terms that changed meanwhile: this item alone, priced again.
				item := in.Items[i]
				answers[i] = s.rerunItem(itemContext(item), pendingReq[j], item, ops[item.Type])
			case res[j].Err != nil:
				answers[i] = errorAnswer(res[j].Refusal())
			default:
				status, body, rerr := s.renderStored(c, &res[j])
				if rerr != nil {
					answers[i] = errorAnswer(rerr)
					continue
				}
				answers[i] = batchAnswer{Status: status, Body: body, Replayed: res[j].Replayed}
				s.countEntry(string(res[j].Entry.Kind), res[j].Replayed)
			}
		}
		pending, pendingAt, pendingReq, pendingKeys = nil, nil, nil, map[string]bool{}
	}
	// What every item needs and one round trip can read for all: the amount scales, the
	// partner's terms, and the stored answers of keys used once in this batch (a key
	// used twice is looked up again after its first use is posted).
	ctx := c.Request().Context()
	shared := partners.Request{Partner: partner}
	s.withTerms(c, &shared) // on error each item reads and reports it
	terms := shared.Terms
	sc, scErr := s.scales(c)
	uses := map[string]int{}
	for _, item := range in.Items {
		uses[item.IdempotencyKey]++
	}
	var onceKeys []string
	var onceHashes [][]byte
	onceAt := map[int]int{}
	for i, item := range in.Items {
		if (item.Type == "earn" || item.Type == "redemption") && item.IdempotencyKey != "" && uses[item.IdempotencyKey] == 1 {
			onceAt[i] = len(onceKeys)
			onceKeys = append(onceKeys, item.IdempotencyKey)
			onceHashes = append(onceHashes, requestHash(http.MethodPost, "/v1/partners/"+partner+itemRoutes[item.Type], item.Body))
		}
	}
	stored, err := s.cfg.Ledger.LookupMany(ctx, partner, onceKeys, onceHashes)
	if err != nil {
		return writeError(c, err)
	}
	// Consecutive earns and redemptions with keys used once are priced together (their
	// members resolved in one round trip), since nothing between them is posted before
	// they are anyway.
	priced := make([]pricedItem, len(in.Items))
	itemContext = func(item batchItemJSON) echo.Context {
		ic := c.Echo().NewContext(c.Request(), c.Response())
		ic.SetParamNames("partner", "hold")
		ic.SetParamValues(partner, item.Hold)
		if scErr == nil {
			ic.Set(ctxScales, sc)
		}
		return ic
	}
	priceRun := func(from int) {
		to := from
		for to < len(in.Items) {
			if _, ok := onceAt[to]; !ok || len(in.Items[to].IdempotencyKey) > ledger.MaxTextLength {
				break
			}
			to++
		}
		reqs := make([]partners.Request, to-from)
		pre := make([]*ledger.Result, to-from)
		for i := from; i < to; i++ {
			reqs[i-from] = partners.Request{Partner: partner, IdempotencyKey: in.Items[i].IdempotencyKey, Terms: terms,
				RequestHash: onceHashes[onceAt[i]]}
			pre[i-from] = stored[onceAt[i]]
		}
		copy(priced[from:to], s.batchEntries(c, itemContext, reqs, in.Items[from:to], pre, true))
	}
	for i, item := range in.Items {
		if _, once := onceAt[i]; once && !priced[i].done && len(item.IdempotencyKey) <= ledger.MaxTextLength {
			priceRun(i)
		}
		op, ok := ops[item.Type]
		if !ok {
			answers[i] = errorAnswer(ledger.Errorf(ledger.CodeInvalid, "item type %q is not one of earn, redemption, hold, capture, void, reversal", item.Type).With("field", "type"))
			continue
		}
		if item.IdempotencyKey == "" {
			answers[i] = errorAnswer(ledger.Errorf(CodeIdempotencyKeyRequired, "every item needs its own idempotency_key (1 to %d bytes)", ledger.MaxTextLength).With("field", "idempotency_key"))
			continue
		}
		if len(item.IdempotencyKey) > ledger.MaxTextLength {
			// As the header would be answered on the item's request alone.
			answers[i] = errorAnswer(ledger.Errorf(ledger.CodeInvalid, "idempotency_key is limited to %d bytes", ledger.MaxTextLength).With("field", "idempotency_key"))
			continue
		}
		if (item.Type == "capture" || item.Type == "void") && item.Hold == "" {
			answers[i] = errorAnswer(ledger.Errorf(ledger.CodeInvalid, "a %s item names its hold: \"hold\": \"<hold id>\"", item.Type).With("field", "hold"))
			continue
		}
		// An item is hashed as the same request sent alone to its own route, so that its
		// key means the same in a batch and out of one.
		path := "/v1/partners/" + partner + itemRoutes[item.Type]
		if item.Type == "capture" || item.Type == "void" {
			path = "/v1/partners/" + partner + "/holds/" + item.Hold + "/" + item.Type
		}
		r := partners.Request{Partner: partner, IdempotencyKey: item.IdempotencyKey, RequestHash: requestHash(http.MethodPost, path, item.Body),
			Terms: terms}
		if pendingKeys[item.IdempotencyKey] {
			flush() // a repeat of a waiting item: the first use of the key goes first
		}
		ic := itemContext(item)
		if item.Type == "earn" || item.Type == "redemption" {
			p := priced[i]
			if !p.done {
				p = s.batchEntries(c, itemContext, []partners.Request{r}, []batchItemJSON{item}, nil, false)[0]
			}
			e, answer, err := p.e, p.answer, p.err
			switch {
			case errors.Is(err, ledger.ErrTermsChanged):
				// Refused on terms that changed meanwhile: this item alone, decided again.
				flush()
				answers[i] = s.rerunItem(ic, r, item, ops[item.Type])
			case err != nil:
				answers[i] = errorAnswer(err)
			case e != nil:
				pending, pendingAt, pendingReq = append(pending, *e), append(pendingAt, i), append(pendingReq, r)
				pendingKeys[item.IdempotencyKey] = true
			default:
				answers[i] = answer
			}
			continue
		}
		flush()
		answers[i] = s.runItem(ic, r, item.Body, op)
	}
	flush()
	c.Response().Header().Del("Idempotent-Replayed")
	if slices.ContainsFunc(answers, func(a batchAnswer) bool { return a.Status >= http.StatusInternalServerError }) {
		c.Set(ctxHolds5xx, true) // a batch key keeps no answer that a retry must not repeat
	}
	if slices.ContainsFunc(answers, batchAnswer.retryLater) {
		c.Response().Header().Set(echo.HeaderRetryAfter, retryAfterSeconds) // an item is to be sent again
	}
	return c.JSON(http.StatusOK, map[string]any{"items": answers})
}

// pricedItem is an earn or a redemption of a batch, prepared: the entry to post, or the
// item's answer (a stored first answer, an earn that earns nothing), or its error.
type pricedItem struct {
	e      *ledger.Entry
	answer batchAnswer
	err    error
	done   bool
}

// batchEntries prepares earns and redemptions of a batch together: the stored first
// answer of a replay, the answer of an earn that earns nothing, or the entry to post,
// their members resolved in one round trip. A refusal before the engine is recorded as
// the item's first answer. With looked true, pre holds each key's stored answer as the
// batch looked it up with the others (nil: a new key); else each key is looked up here.
func (s *Server) batchEntries(c echo.Context, itemContext func(batchItemJSON) echo.Context, reqs []partners.Request,
	items []batchItemJSON, pre []*ledger.Result, looked bool) []pricedItem {
	ctx := c.Request().Context()
	out := make([]pricedItem, len(items))
	var toPrice []partners.PriceItem
	var at []int
	for i, item := range items {
		out[i].done = true
		r := reqs[i]
		var stored *ledger.Result
		if looked {
			stored = pre[i]
		} else {
			var err error
			if stored, err = s.cfg.Ledger.Lookup(ctx, r.Partner, r.IdempotencyKey, r.RequestHash); err != nil {
				out[i].err = err
				continue
			}
		}
		ic := itemContext(item)
		if stored != nil {
			if stored.Err != nil {
				out[i].err = stored.Refusal()
				continue
			}
			status, body, err := s.renderStored(ic, stored)
			out[i].answer, out[i].err = batchAnswer{Status: status, Body: body, Replayed: stored.Replayed}, err
			continue
		}
		p := partners.PriceItem{Request: r}
		var err error
		if item.Type == "earn" {
			var in partners.EarnInput
			in, err = s.earnInput(ic, item.Body)
			p.Earn = &in
		} else {
			var in partners.RedeemInput
			in, _, err = s.redeemInput(ic, item.Body, false)
			p.Redeem = &in
		}
		if err != nil {
			out[i] = s.refuseItem(ic, r, err)
			continue
		}
		toPrice, at = append(toPrice, p), append(at, i)
	}
	if len(toPrice) == 0 {
		return out
	}
	res, err := s.service().PriceEntries(ctx, toPrice)
	for j, i := range at {
		switch {
		case err != nil:
			out[i].err = err
		case res[j].Err != nil:
			out[i] = s.refuseItem(itemContext(items[i]), reqs[i], res[j].Err)
		case res[j].Entry == nil:
			out[i].answer = batchAnswer{Status: http.StatusOK, Body: res[j].Zero}
		default:
			out[i].e = res[j].Entry
		}
	}
	return out
}

// refuseItem records a refusal before the engine as the first answer to the item's key,
// unless the key has one already, which is then the answer.
func (s *Server) refuseItem(c echo.Context, r partners.Request, err error) pricedItem {
	version := int64(0)
	if r.Terms != nil {
		version = r.Terms.Version
	} else if refusedOnTerms(err) {
		var verr error
		if version, verr = s.cache.Version(c.Request().Context()); verr != nil {
			return pricedItem{err: verr, done: true}
		}
	}
	// On terms that have changed since, nothing is stored (ErrTermsChanged): the batch
	// runs the item again alone.
	status, body, err := s.answerOnce(c, r, 0, nil, err, version)
	if err != nil {
		return pricedItem{err: err, done: true}
	}
	return pricedItem{answer: batchAnswer{Status: status, Body: body}, done: true}
}

// rerunItem runs an item of a batch again alone, on fresh terms, after the terms it was
// decided on changed (if its key still may act: the change may be its revocation).
func (s *Server) rerunItem(c echo.Context, r partners.Request, item batchItemJSON, op operation) batchAnswer {
	if err := s.reauthorize(c)(c.Request().Context()); err != nil {
		return errorAnswer(err)
	}
	r.Terms = nil
	return s.runItem(c, r, item.Body, op)
}

// runItem runs an item of a batch as its own request, through runOnce, and answers it.
// The item shares the batch's response, where runOnce marks a replay in the header: the
// mark is moved onto the item.
func (s *Server) runItem(c echo.Context, r partners.Request, body []byte, op operation) batchAnswer {
	status, answer, err := s.runOnce(c, r, body, op)
	replayed := c.Response().Header().Get("Idempotent-Replayed") == "true"
	c.Response().Header().Del("Idempotent-Replayed")
	if err != nil {
		a := errorAnswer(err)
		a.Replayed = a.Replayed || replayed
		return a
	}
	return batchAnswer{Status: status, Body: answer, Replayed: replayed}
}

// retryLater reports whether the item's answer asks for it to be sent again after a
// pause, as the same answer to a request alone would with Retry-After.
func (a batchAnswer) retryLater() bool {
	r, ok := a.Body.(errorResponse)
	return ok && retryLater(r.Error.Code)
}

// errorAnswer is an item's answer to err, marked replayed when err is a stored refusal
// answering an earlier request.
func errorAnswer(err error) batchAnswer {
	status, body := errorBody(err)
	var lerr *ledger.Error
	return batchAnswer{Status: status, Body: body, Replayed: errors.As(err, &lerr) && lerr.Replayed()}
}

// authorisePartnerRead lets a partner's key, the operator or an auditor read a partner's
// side; for the latter two the partner must exist (a partner key proves its own does).
func (s *Server) authorisePartnerRead(c echo.Context, partner string) error {
	if err := authorisePartner(c, partner); err != nil {
		return err
	}
	if principal(c).Role == partners.RolePartner {
		return nil
	}
	_, err := s.cfg.Store.Partner(c.Request().Context(), partner)
	return err
}

// member answers a partner's look-up of a member: balance, held, tier, expiring points.
func (s *Server) member(c echo.Context) error {
	if err := knownQuery(c); err != nil {
		return writeError(c, err)
	}
	if err := s.authorisePartnerRead(c, c.Param("partner")); err != nil {
		return writeError(c, err)
	}
	ref, err := memberParam(c)
	if err != nil {
		return writeError(c, err)
	}
	v, err := s.service().Member(c.Request().Context(), ref)
	if err != nil {
		return writeError(c, err)
	}
	return c.JSON(http.StatusOK, v)
}

// holdAnswer is a hold as its partner reads it: what it reserves, its state, the entry
// that made it and the entries that settled it.
type holdAnswer struct {
	partners.HoldView
	Partner string             `json:"partner"`
	Member  memberID           `json:"member"`
	Entry   partners.EntryRef  `json:"entry"`
	Expired bool               `json:"expired"` // past expires_at: it can only be voided, or wait for the timeout job
	Settled []ledger.HoldEvent `json:"settled_by"`
}

// memberID names a member in an answer that shows nothing else of it.
type memberID struct {
	ID string `json:"id"`
}

// getHold answers one of a partner's holds; another partner's is not found.
func (s *Server) getHold(c echo.Context) error {
	partner := c.Param("partner")
	if err := s.authorisePartnerRead(c, partner); err != nil {
		return writeError(c, err)
	}
	if err := knownQuery(c); err != nil {
		return writeError(c, err)
	}
	ctx := c.Request().Context()
	h, err := s.cfg.Ledger.HoldOf(ctx, partner, c.Param("hold"))
	if err != nil {
		return writeError(c, err)
	}
	events, err := s.cfg.Ledger.HoldEvents(ctx, h)
	if err != nil {
		return writeError(c, err)
	}
	if events == nil {
		events = []ledger.HoldEvent{}
	}
	return c.JSON(http.StatusOK, holdAnswer{
		HoldView: partners.HoldViewOf(h),
		Partner:  h.Partner, Member: memberID{h.Member}, Entry: partners.EntryRef{ID: h.Entry, Position: h.Position},
		Expired: h.Expired(s.cfg.Ledger.Now()), Settled: events,
	})
}

// entryList is the answer listing a partner's entries.
type entryList struct {
	Entries []*audit.EntryRecord `json:"entries"`
}

// entriesByReference answers a partner's own entries with a reference, one per kind at
// most (an earn, its hold, its redemption...), in journal order; none is an empty list.
func (s *Server) entriesByReference(c echo.Context) error {
	partner := c.Param("partner")
	if err := s.authorisePartnerRead(c, partner); err != nil {
		return writeError(c, err)
	}
	if err := knownQuery(c, "reference"); err != nil {
		return writeError(c, err)
	}
	ref := c.QueryParam("reference")
	if ref == "" {
		return writeError(c, ledger.Errorf(ledger.CodeInvalid, "reference is required: ?reference=R").With("field", "reference"))
	}
	ctx := c.Request().Context()
	entries, err := s.cfg.Ledger.EntriesByReference(ctx, partner, ref)
	if err != nil {
		return writeError(c, err)
	}
	list := entryList{Entries: make([]*audit.EntryRecord, 0, len(entries))}
	if len(entries) > 0 {
		units, err := s.cfg.Ledger.Units(ctx)
		if err != nil {
			return writeError(c, err)
		}
		for i := range entries {
			list.Entries = append(list.Entries, audit.NewEntryRecord(&entries[i], units))
		}
	}
	return c.JSON(http.StatusOK, list)
}
