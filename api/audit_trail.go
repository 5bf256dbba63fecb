package api

import (
	"bytes"
	"encoding/json"
	"net/http"

	"github.com/labstack/echo/v4"
	"go.uber.org/zap"

	"github.com/coalitionledger/coalition/audit"
)

// auditedRoute is an operator action the audit trail records: its action, and the fields
// of the answer it keeps (never a key's secret).
type auditedRoute struct {
	action string
	fields []string // nil: the whole answer
}

// auditedRoutes are the routes whose successful answers the audit trail records.
// Settlement's routes record their own actions, inside their transactions.
var auditedRoutes = map[string]auditedRoute{
	routeKey(http.MethodPost, "/v1/partners"):                    {audit.ActionPartnerCreated, []string{"id", "name", "status"}},
	routeKey(http.MethodPatch, "/v1/partners/:partner"):          {audit.ActionPartnerStatusChanged, []string{"id", "status"}},
	routeKey(http.MethodPost, "/v1/partners/:partner/contracts"): {audit.ActionContractAdded, nil},
	routeKey(http.MethodPost, "/v1/keys"):                        {audit.ActionKeyCreated, []string{"id", "role", "partner"}},
	routeKey(http.MethodDelete, "/v1/keys/:key"):                 {audit.ActionKeyRevoked, []string{}},
	routeKey(http.MethodPut, "/v1/coalition"):                    {audit.ActionCoalitionChanged, nil},
}

// maxAuditedAnswer bounds the answer the trail keeps a copy of.
const maxAuditedAnswer = 64 << 10

// auditTrail records in the audit log every successful operator action of auditedRoutes:
// who (the key), the route's parameters and the answer's fields. A replayed answer is not
// a second action. The record is written after the action has committed (partners.Store
// owns that transaction); if writing it fails, the failure is logged at error level.
func (s *Server) auditTrail(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		route, ok := auditedRoutes[routeKey(c.Request().Method, c.Path())]
		if !ok {
			return next(c)
		}
		rec := &answerCopy{ResponseWriter: c.Response().Writer}
		c.Response().Writer = rec
		if err := next(c); err != nil {
			return err
		}
		status := c.Response().Status
		if status < 200 || status >= 300 || c.Response().Header().Get("Idempotent-Replayed") == "true" {
			return nil
		}
		details := map[string]any{}
		params := map[string]string{}
		for _, name := range c.ParamNames() {
			params[name] = c.Param(name)
		}
		if len(params) > 0 {
			details["params"] = params
		}
		var answer map[string]json.RawMessage
		if rec.body.Len() > 0 && !rec.truncated && json.Unmarshal(rec.body.Bytes(), &answer) == nil {
			if route.fields == nil {
				details["result"] = answer
			} else if len(route.fields) > 0 {
				kept := map[string]json.RawMessage{}
				for _, f := range route.fields {
					if v, ok := answer[f]; ok {
						kept[f] = v
					}
				}
				details["result"] = kept
			}
		}
		if err := audit.Record(c.Request().Context(), s.cfg.Ledger.Pool(), actorOf(c), route.action, details); err != nil {
			s.log.Error("audit trail: the action succeeded but was not recorded", zap.String("request_id", requestIDOf(c)),
				zap.String("action", route.action), zap.Error(err))
		}
		return nil
	}
}

// answerCopy keeps a copy of an answer's body, up to maxAuditedAnswer bytes.
type answerCopy struct {
	http.ResponseWriter
	body      bytes.Buffer
	truncated bool
}

func (a *answerCopy) Write(b []byte) (int, error) {
	if a.body.Len()+len(b) <= maxAuditedAnswer {
		a.body.Write(b)
	} else {
		a.truncated = true
	}
	return a.ResponseWriter.Write(b)
}
