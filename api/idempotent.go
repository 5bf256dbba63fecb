package api

import (
	"bytes"
	"io"
	"net/http"

	"github.com/labstack/echo/v4"
	"go.uber.org/zap"

	"github.com/coalitionledger/coalition/ledger"
	"github.com/coalitionledger/coalition/partners"
)

// answerScope is the scope of the keys a principal sends: its partner's, the one its
// journal writes are kept under too, so that one key names one request whichever route
// it was sent to (a key of an earn reused on a /batch is a 409, not a second posting);
// the operator's keys are the reserved issuer's, as its awards are.
func answerScope(p partners.Principal) string {
	if p.Role == partners.RolePartner {
		return p.Partner
	}
	return ledger.OperatorIssuer
}

// idempotentWrite makes a write that is not a journal entry (a partner, a contract
// version, an enrolment) idempotent when it carries an Idempotency-Key: its first answer
// below 500 is stored under the key, and a retry with the same body gets that answer back;
// another body under the same key is a 409.
func (s *Server) idempotentWrite(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		key := c.Request().Header.Get("Idempotency-Key")
		if key == "" {
			return next(c)
		}
		if len(key) > ledger.MaxTextLength {
			return writeError(c, ledger.Errorf(ledger.CodeInvalid, "Idempotency-Key is limited to %d bytes", ledger.MaxTextLength))
		}
		body, err := readBody(c)
		if err != nil {
			return writeError(c, err)
		}
		c.Request().Body = io.NopCloser(bytes.NewReader(body))
		ctx := c.Request().Context()
		scope := answerScope(principal(c))
		hash := requestHash(c.Request().Method, c.Request().URL.Path, body)
		stored, err := s.cfg.Ledger.LookupAnswer(ctx, scope, key, hash)
		if err != nil {
			return writeError(c, err)
		}
		if stored != nil {
			c.Response().Header().Set("Idempotent-Replayed", "true")
			return c.JSONBlob(stored.Status, stored.Body)
		}
		rec := &recorder{ResponseWriter: c.Response().Writer}
		c.Response().Writer = rec
		if err := next(c); err != nil {
			return err
		}
		// 401 and 403 are about the caller's key, not the request: they are never a first
		// answer that another key's retry should get. Nor is an answer that holds a 5xx
		// inside it (a /batch item that ran out of time): its retry must run it again.
		if held, _ := c.Get(ctxHolds5xx).(bool); held {
			return nil
		}
		if rec.status > 0 && rec.status < http.StatusInternalServerError &&
			rec.status != http.StatusUnauthorized && rec.status != http.StatusForbidden {
			// Two first requests racing with one key both run; the first stored answer
			// is the one every later retry gets.
			if _, err := s.cfg.Ledger.StoreAnswer(ctx, scope, key, hash, ledger.Answer{Status: rec.status, Body: rec.body.Bytes()}); err != nil {
				s.cfg.Logger.Warn("idempotency: answer not stored", zap.String("request_id", requestIDOf(c)), zap.Error(err))
			}
		}
		return nil
	}
}

// ctxHolds5xx is set on a request whose answer, though below 500 itself, carries a 5xx
// (a /batch item's): idempotentWrite then stores no first answer for its key.
const ctxHolds5xx = "idempotency.holds5xx"

// recorder keeps a copy of the answer on its way to the client.
type recorder struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (r *recorder) WriteHeader(status int) {
	r.status = status
	r.ResponseWriter.WriteHeader(status)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	r.body.Write(b)
	return r.ResponseWriter.Write(b)
}
