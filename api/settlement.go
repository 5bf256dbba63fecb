package api

import (
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/coalitionledger/coalition/ledger"
	"github.com/coalitionledger/coalition/settlement"
)

// registerSettlementRoutes adds the operator's and auditor's settlement routes; a
// partner's own side of a run is under /v1/partners/:partner.
func (s *Server) registerSettlementRoutes(v1, partner *echo.Group, operator, reader echo.MiddlewareFunc) {
	v1.POST("/settlements", s.runSettlement, operator, s.idempotentWrite)
	v1.GET("/settlements", s.listSettlements, reader)
	v1.GET("/settlements/:date", s.getSettlement, reader)
	v1.GET("/settlements/:date/check", s.checkSettlement, reader)
	v1.POST("/settlements/:date/instructions/:partner/confirm", s.confirmInstruction, operator, s.idempotentWrite)
	partner.GET("/settlements/:date", s.partnerSettlement) // the operator, an auditor, or the partner itself
}

// settlementJSON is the body that asks for a run.
type settlementJSON struct {
	BusinessDate string `json:"business_date"`
}

// runSettlement settles a business day: 201 with the run when this call made it, 200
// with the existing run when the day was settled already.
func (s *Server) runSettlement(c echo.Context) error {
	var in settlementJSON
	if err := decode(c, &in); err != nil {
		return writeError(c, err)
	}
	day, err := settlement.ParseDay(in.BusinessDate)
	if err != nil {
		return writeError(c, err)
	}
	run, created, err := s.runs.Run(c.Request().Context(), day, nil)
	if err != nil {
		return writeError(c, err)
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	c.Response().Header().Set(echo.HeaderLocation, "/v1/settlements/"+day.String())
	return c.JSON(status, run)
}

// settlementList is the answer listing runs.
type settlementList struct {
	Settlements []settlement.Summary `json:"settlements"`
}

// listSettlements answers the runs, latest first (?limit=, default 100, at most 1000).
func (s *Server) listSettlements(c echo.Context) error {
	if err := knownQuery(c, "limit"); err != nil {
		return writeError(c, err)
	}
	limit := 100
	if q := c.QueryParam("limit"); q != "" {
		n, err := strconv.Atoi(q)
		if err != nil || n < 1 || n > 1000 {
			return writeError(c, ledger.Errorf(ledger.CodeInvalid, "limit must be a whole number from 1 to 1000, not %q", q).With("field", "limit"))
		}
		limit = n
	}
	list, err := s.runs.List(c.Request().Context(), limit)
	if err != nil {
		return writeError(c, err)
	}
	if list == nil {
		list = []settlement.Summary{}
	}
	return c.JSON(http.StatusOK, settlementList{Settlements: list})
}

// dayParam reads the :date of a settlement route.
func dayParam(c echo.Context) (settlement.Day, error) { return settlement.ParseDay(c.Param("date")) }

// getSettlement answers a run's report: JSON, or CSV when the client accepts text/csv
// (and not JSON first).
func (s *Server) getSettlement(c echo.Context) error {
	if err := knownQuery(c); err != nil {
		return writeError(c, err)
	}
	day, err := dayParam(c)
	if err != nil {
		return writeError(c, err)
	}
	run, err := s.runs.Get(c.Request().Context(), day)
	if err != nil {
		return writeError(c, err)
	}
	if wantsCSV(c.Request().Header.Get(echo.HeaderAccept)) {
		return answerCSV(c, "settlement-"+day.String()+".csv", run.WriteCSV)
	}
	return c.JSON(http.StatusOK, run)
}

// answerCSV answers 200 with the CSV that write writes, as a download named file.
func answerCSV(c echo.Context, file string, write func(io.Writer) error) error {
	c.Response().Header().Set(echo.HeaderContentType, "text/csv; charset=utf-8")
	c.Response().Header().Set(echo.HeaderContentDisposition, `attachment; filename="`+file+`"`)
	c.Response().WriteHeader(http.StatusOK)
	return write(c.Response())
}

// wantsCSV reports whether an Accept header prefers CSV to JSON: text/csv with a higher
// quality (q) than application/json, or the same and named first. Media types are
// compared without regard to case; wildcards leave the default, JSON.
func wantsCSV(accept string) bool {
	csv, json := -1.0, -1.0 // the quality of each, -1 when not named
	csvFirst := false
	for _, part := range strings.Split(accept, ",") {
		media, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		q := 1.0
		if v, ok := params["q"]; ok {
			if q, err = strconv.ParseFloat(v, 64); err != nil {
				continue
			}
		}
		switch media { // ParseMediaType lower-cases it
		case "text/csv":
			if csv < 0 && json < 0 {
				csvFirst = true
			}
			csv = max(csv, q)
		case "application/json":
			json = max(json, q)
		}
	}
	return csv > 0 && (csv > json || csv == json && csvFirst)
}

// checkSettlement re-derives a run from the journal and answers the comparison: 200
// either way; matches says whether every figure agreed.
func (s *Server) checkSettlement(c echo.Context) error {
	if err := knownQuery(c); err != nil {
		return writeError(c, err)
	}
	day, err := dayParam(c)
	if err != nil {
		return writeError(c, err)
	}
	check, err := s.runs.Check(c.Request().Context(), day)
	if err != nil {
		return writeError(c, err)
	}
	return c.JSON(http.StatusOK, check)
}

// confirmInstruction records that an instruction's money moved: 201 with the payment
// when this call posted it, 200 when it was confirmed already.
func (s *Server) confirmInstruction(c echo.Context) error {
	if err := emptyBody(c); err != nil {
		return writeError(c, err)
	}
	day, err := dayParam(c)
	if err != nil {
		return writeError(c, err)
	}
	pay, confirmed, err := s.runs.Confirm(c.Request().Context(), day, c.Param("partner"))
	if err != nil {
		return writeError(c, err)
	}
	status := http.StatusOK
	if confirmed {
		status = http.StatusCreated
	}
	return c.JSON(status, pay)
}

// partnerSettlement answers a partner's own side of a run: JSON, or CSV as getSettlement.
func (s *Server) partnerSettlement(c echo.Context) error {
	if err := knownQuery(c); err != nil {
		return writeError(c, err)
	}
	id := c.Param("partner")
	if err := s.authorisePartnerRead(c, id); err != nil {
		return writeError(c, err)
	}
	day, err := dayParam(c)
	if err != nil {
		return writeError(c, err)
	}
	run, err := s.runs.Get(c.Request().Context(), day)
	if err != nil {
		return writeError(c, err)
	}
	view := run.For(id)
	if wantsCSV(c.Request().Header.Get(echo.HeaderAccept)) {
		return answerCSV(c, "settlement-"+day.String()+"-"+id+".csv", view.WriteCSV)
	}
	return c.JSON(http.StatusOK, view)
}
