package api

import (
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/coalitionledger/coalition/ledger"
	"github.com/coalitionledger/coalition/partners"
)

// enrolJSON is the body of POST /v1/members.
type enrolJSON struct {
	Phone string `json:"phone"`
	Card  string `json:"card"`
}

// enrol creates a member with a phone number and/or a card; operators and partners may.
func (s *Server) enrol(c echo.Context) error {
	p := principal(c)
	if p.Role != partners.RoleOperator && p.Role != partners.RolePartner {
		return writeError(c, errForbidden("only the operator and partners enrol members"))
	}
	var in enrolJSON
	if err := decode(c, &in); err != nil {
		return writeError(c, err)
	}
	m, err := s.service().Enrol(c.Request().Context(), in.Phone, in.Card)
	if err != nil {
		return writeError(c, err)
	}
	return c.JSON(http.StatusCreated, m)
}

// awardJSON is the body of POST /v1/members/{member}/awards.
type awardJSON struct {
	Points       string     `json:"points"`
	Reason       string     `json:"reason"`
	ExpiryDays   *int       `json:"expiry_days"`
	BusinessTime *time.Time `json:"business_time"`
	Reference    string     `json:"reference"`
	Import       bool       `json:"import"`
}

// award gives a member points from the operator (a bonus, goodwill): 201 with the entry
// and the member's balance. It needs an Idempotency-Key, scoped to the operator: a retry
// gets the first answer, a refusal included, and the same key with another body is a 409.
func (s *Server) award(c echo.Context) error {
	body, err := readBody(c)
	if err != nil {
		return writeError(c, err)
	}
	r, err := s.idempotency(c, ledger.OperatorIssuer, body)
	if err != nil {
		return writeError(c, err)
	}
	status, answer, err := s.runOnce(c, r, body, s.awardOp)
	if err != nil {
		return writeError(c, err)
	}
	return c.JSON(status, answer)
}

// awardOp decides an award: the operation under runOnce, which stores its refusal as
// the key's first answer.
func (s *Server) awardOp(c echo.Context, r partners.Request, body []byte) (int, any, error) {
	var in awardJSON
	if err := decodeBytes(body, &in); err != nil {
		return 0, nil, err
	}
	ref, err := memberParam(c)
	if err != nil {
		return 0, nil, err
	}
	sc, err := s.scales(c)
	if err != nil {
		return 0, nil, err
	}
	pts, err := part(sc.points, "points", in.Points)
	if err != nil {
		return 0, nil, err
	}
	if in.Points == "" {
		return 0, nil, ledger.Errorf(ledger.CodeInvalid, "points is required").With("field", "points")
	}
	res, err := s.service().Award(c.Request().Context(), r.IdempotencyKey, r.RequestHash, partners.AwardInput{
		Member: ref, Points: pts, Reason: in.Reason, ExpiryDays: in.ExpiryDays, BusinessTime: in.BusinessTime, Reference: in.Reference,
		Import: in.Import})
	if err != nil {
		return 0, nil, err
	}
	s.countEntry(string(ledger.EntryAward), res.Replayed)
	return http.StatusCreated, res, nil
}
