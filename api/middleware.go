package api

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
	"github.com/oklog/ulid/v2"
	"go.uber.org/zap"

	"github.com/coalitionledger/coalition/ledger"
)

// Context keys of the middleware.
const (
	ctxRequestID = "coalition.request_id"
	ctxPanic     = "coalition.panic_stack"
)

// HeaderRequestID carries the request id, given by the client or made by the server.
const HeaderRequestID = "X-Request-Id"

// maxRequestIDLength bounds a client's request id; a longer or odd one is replaced.
const maxRequestIDLength = 128

// routeUnmatched is the route label of requests that match no route, so that scanners
// cannot grow the metrics without bound.
const routeUnmatched = "unmatched"

// requestID takes the client's X-Request-Id when it is a short printable token, or makes
// one, and sends it back on the answer.
func requestID(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		id := c.Request().Header.Get(HeaderRequestID)
		if !validRequestID(id) {
			id = ulid.Make().String()
		}
		c.Set(ctxRequestID, id)
		c.Response().Header().Set(HeaderRequestID, id)
		return next(c)
	}
}

// refuseBadText refuses a request whose path, query or Idempotency-Key holds a NUL
// character (%00) or bytes that are not UTF-8 (%FF): no name, id, key or reference may
// hold them, and the database cannot store them. Refused here, such text never reaches
// a round trip that other requests share, which the database would fail as a whole.
func refuseBadText(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		query, err := url.ParseQuery(r.URL.RawQuery)
		if err != nil {
			return writeError(c, ledger.Errorf(ledger.CodeInvalid, "the query is not validly percent-encoded"))
		}
		type text struct{ where, value string }
		texts := []text{{"the path", r.URL.Path}, {"Idempotency-Key", r.Header.Get("Idempotency-Key")}}
		for name, values := range query {
			texts = append(texts, text{"the query", name})
			for _, v := range values {
				texts = append(texts, text{"the query", v})
			}
		}
		for _, t := range texts {
			if strings.ContainsRune(t.value, 0) || !utf8.ValidString(t.value) {
				return writeError(c, ledger.Errorf(ledger.CodeInvalid, "%s may hold neither NUL characters (%%00) nor bytes that are not UTF-8", t.where))
			}
		}
		return next(c)
	}
}

func validRequestID(id string) bool {
	if id == "" || len(id) > maxRequestIDLength {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' {
			return false
		}
	}
	return true
}

// requestIDOf returns the request's id.
func requestIDOf(c echo.Context) string {
	id, _ := c.Get(ctxRequestID).(string)
	return id
}

// observe answers an error the inner handlers returned (through writeError), then logs the
// request and counts it. It never logs a header, so never a secret.
func (s *Server) observe(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		if err := next(c); err != nil {
			c.Error(err)
		}
		elapsed := time.Since(start)
		req, res := c.Request(), c.Response()
		route := c.Path()
		if !s.routes[routeKey(req.Method, route)] {
			route = routeUnmatched
		}
		status := res.Status
		code, _ := c.Get(ctxErrorCode).(string)
		counted := status
		if code == string(CodeClientClosed) {
			counted = statusClientClosed // nobody read the 503: not a failure to alert on
		}
		s.metrics.requests.WithLabelValues(req.Method, route, strconv.Itoa(counted)).Inc()
		s.metrics.duration.WithLabelValues(req.Method, route).Observe(elapsed.Seconds())
		if code != "" {
			s.metrics.errors.WithLabelValues(code).Inc()
		}
		p := principal(c)
		fields := []zap.Field{
			zap.String("request_id", requestIDOf(c)),
			zap.String("method", req.Method),
			zap.String("route", route),
			zap.String("path", req.URL.Path),
			zap.Int("status", status),
			zap.Duration("duration", elapsed),
			zap.Int64("bytes_out", res.Size),
			zap.String("remote_ip", c.RealIP()),
		}
		if p.Role != "" {
			fields = append(fields, zap.String("role", string(p.Role)), zap.String("key_id", p.KeyID))
			if p.Partner != "" {
				fields = append(fields, zap.String("partner", p.Partner))
			}
		}
		if code != "" {
			fields = append(fields, zap.String("error_code", code))
		}
		if code == string(CodeClientClosed) {
			s.log.Info("request abandoned by the client", fields...)
			return nil
		}
		if status >= http.StatusInternalServerError {
			if ierr, ok := c.Get(ctxInternalError).(error); ok {
				fields = append(fields, zap.Error(ierr))
			}
			if stack, ok := c.Get(ctxPanic).(string); ok {
				fields = append(fields, zap.String("stack", stack))
			}
			s.log.Error("request failed", fields...)
			return nil
		}
		s.log.Info("request", fields...)
		return nil
	}
}

// recoverPanic turns a panic of a handler into a 500 (the stack goes to the request log).
// http.ErrAbortHandler is re-raised: it is how a handler aborts on purpose.
func recoverPanic(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		defer func() {
			r := recover()
			if r == nil {
				return
			}
			if r == http.ErrAbortHandler {
				panic(r)
			}
			c.Set(ctxPanic, string(debug.Stack()))
			err = fmt.Errorf("panic: %v", r)
		}()
		return next(c)
	}
}

// limitRequest gives the request a deadline and caps its body: a declared length above the
// limit is refused at once, and reading past it fails with *http.MaxBytesError (a 413).
func (s *Server) limitRequest(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		if req.ContentLength > s.cfg.MaxBody {
			return &http.MaxBytesError{Limit: s.cfg.MaxBody}
		}
		ctx, cancel := context.WithTimeout(req.Context(), s.cfg.RequestTimeout)
		defer cancel()
		req = req.WithContext(ctx)
		req.Body = http.MaxBytesReader(c.Response(), req.Body, s.cfg.MaxBody)
		c.SetRequest(req)
		return next(c)
	}
}
