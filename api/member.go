package api

import (
	"net/http"

	"github.com/labstack/echo/v4"

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
