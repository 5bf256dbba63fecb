package api

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/coalitionledger/coalition/ledger"
	"github.com/coalitionledger/coalition/partners"
	"github.com/coalitionledger/coalition/settlement"
)

// The codes of the HTTP layer, in addition to the domain's. They are part of the contract:
// never rename one.
const (
	// CodeMalformedJSON: the body is not one JSON object of the expected shape (400).
	CodeMalformedJSON ledger.Code = "malformed_json"
	// CodeUnauthorized: no API key, or one that is unknown or revoked (401).
	CodeUnauthorized ledger.Code = "unauthorized"
	// CodeMethodNotAllowed: the path exists but not with this method (405).
	CodeMethodNotAllowed ledger.Code = "method_not_allowed"
	// CodeBodyTooLarge: the body is above the server's limit (413).
	CodeBodyTooLarge ledger.Code = "body_too_large"
	// CodeIdempotencyKeyRequired: a partner write came without an Idempotency-Key (400).
	CodeIdempotencyKeyRequired ledger.Code = "idempotency_key_required"
	// CodeInternal: the server failed; the message is generic and the log has the detail (500).
	CodeInternal ledger.Code = "internal"
	// CodeTimeout: the request ran out of time before it finished; retry it with the same
	// Idempotency-Key (503).
	CodeTimeout ledger.Code = "timeout"
	// CodeClientClosed: the client went away before its answer (503, which nobody reads):
	// kept apart from internal so that the log does not call it a failure, and counted in
	// the requests metric under nginx's 499 rather than as a 5xx.
	CodeClientClosed ledger.Code = "client_closed"
)

// statusClientClosed is the status the requests metric counts a client_closed request
// under (nginx's "client closed request").
const statusClientClosed = 499

// codeStatus is the status of the codes whose status is not their class's: the HTTP
// layer's own, and the domain codes that ledger.Code.Class does not know.
var codeStatus = map[ledger.Code]int{
	CodeMalformedJSON:           http.StatusBadRequest,
	CodeIdempotencyKeyRequired:  http.StatusBadRequest,
	CodeUnauthorized:            http.StatusUnauthorized,
	CodeMethodNotAllowed:        http.StatusMethodNotAllowed,
	CodeBodyTooLarge:            http.StatusRequestEntityTooLarge,
	ledger.CodeBatchTooLarge:    http.StatusRequestEntityTooLarge,
	CodeInternal:                http.StatusInternalServerError,
	CodeTimeout:                 http.StatusServiceUnavailable,
	CodeClientClosed:            http.StatusServiceUnavailable,
	CodeOverloaded:              http.StatusServiceUnavailable,
	partners.CodeSettingsFrozen: http.StatusConflict,

	settlement.CodeDayNotOver:           http.StatusConflict,
	settlement.CodePreviousDayUnsettled: http.StatusConflict,
	settlement.CodeBeforeFirstRun:       http.StatusConflict,
	CodeCheckpointKeyMissing:            http.StatusServiceUnavailable, // api/audit.go
}

// classStatus is the status of each class of domain error.
var classStatus = map[ledger.Class]int{
	ledger.ClassInvalid:   http.StatusUnprocessableEntity,
	ledger.ClassConflict:  http.StatusConflict,
	ledger.ClassNotFound:  http.StatusNotFound,
	ledger.ClassForbidden: http.StatusForbidden,
}

// errorResponse is the body of every error answer:
// {"error": {"code": "...", "message": "...", "details": {...}}}.
type errorResponse struct {
	Error errorPayload `json:"error"`
}

type errorPayload struct {
	Code    ledger.Code    `json:"code"`
	Message string         `json:"message"`
	Details map[string]any `json:"details"`
}

// Context keys under which writeError leaves what the request log reports.
const (
	ctxErrorCode     = "coalition.error_code"
	ctxInternalError = "coalition.internal_error"
)

// internalMessage is all a client learns of a 500: the detail is in the server's log.
const internalMessage = "the server failed to answer this request; it is logged under the request id in X-Request-Id"

// statusOf returns the HTTP status of a domain error's code.
func statusOf(code ledger.Code) int {
	if st, ok := codeStatus[code]; ok {
		return st
	}
	if st, ok := classStatus[code.Class()]; ok {
		return st
	}
	return http.StatusUnprocessableEntity
}

// errorBody returns the status and body of the answer to err. It is the one mapping from
// errors to HTTP: a *ledger.Error by its code (see statusOf), an oversized body, echo's
// routing errors, a timeout; anything else is a 500 with a generic message.
func errorBody(err error) (int, errorResponse) {
	var lerr *ledger.Error
	var tooLarge *http.MaxBytesError
	var herr *echo.HTTPError
	if st, body, ok := overloaded(err); ok {
		return st, body
	}
	switch {
	case errors.As(err, &lerr):
		details := make(map[string]any, len(lerr.Details))
		for k, v := range lerr.Details {
			details[k] = v
		}
		return statusOf(lerr.Code), errorResponse{errorPayload{Code: lerr.Code, Message: lerr.Message, Details: details}}
	case errors.As(err, &tooLarge):
		return bodyTooLarge(tooLarge.Limit)
	case errors.As(err, &herr):
		return echoErrorBody(herr)
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, errorResponse{errorPayload{Code: CodeTimeout,
			Message: "the request ran out of time; retry it (with the same Idempotency-Key for a write)", Details: map[string]any{}}}
	case errors.Is(err, context.Canceled):
		return http.StatusServiceUnavailable, errorResponse{errorPayload{Code: CodeClientClosed,
			Message: "the client closed the request before its answer; retry it (with the same Idempotency-Key for a write)", Details: map[string]any{}}}
	}
	return http.StatusInternalServerError, errorResponse{errorPayload{Code: CodeInternal, Message: internalMessage, Details: map[string]any{}}}
}

// bodyTooLarge is the answer to a body above limit bytes.
func bodyTooLarge(limit int64) (int, errorResponse) {
	return http.StatusRequestEntityTooLarge, errorResponse{errorPayload{Code: CodeBodyTooLarge,
		Message: "the request body is larger than the limit of " + itoa(int(limit)) + " bytes", Details: map[string]any{"limit": limit}}}
}

// echoErrorBody maps the errors echo itself raises (no route, wrong method) and the
// *echo.HTTPError a handler may return.
func echoErrorBody(herr *echo.HTTPError) (int, errorResponse) {
	st := herr.Code
	msg, _ := herr.Message.(string)
	var code ledger.Code
	switch st {
	case http.StatusBadRequest:
		code = CodeMalformedJSON
	case http.StatusUnauthorized:
		code = CodeUnauthorized
	case http.StatusForbidden:
		code = ledger.CodeForbidden
	case http.StatusNotFound:
		code = ledger.CodeNotFound
	case http.StatusMethodNotAllowed:
		code = CodeMethodNotAllowed
	case http.StatusRequestEntityTooLarge:
		code = CodeBodyTooLarge
	case http.StatusServiceUnavailable:
		code = CodeTimeout
	default:
		if st < 400 || st >= 500 {
			return http.StatusInternalServerError, errorResponse{errorPayload{Code: CodeInternal, Message: internalMessage, Details: map[string]any{}}}
		}
		code = ledger.Code(strings.ReplaceAll(strings.ToLower(http.StatusText(st)), " ", "_"))
	}
	if msg == "" {
		msg = http.StatusText(st)
	}
	return st, errorResponse{errorPayload{Code: code, Message: msg, Details: map[string]any{}}}
}

// writeError answers the request with the error: the status and body of errorBody, with
// WWW-Authenticate on a 401, a message that names the route on a 404 or 405, and on a 500
// the detail left for the request log (never sent). It returns the error of writing the
// answer, so that a handler ends with `return writeError(c, err)`.
func writeError(c echo.Context, err error) error {
	switch {
	case errors.Is(err, echo.ErrNotFound):
		err = ledger.Errorf(ledger.CodeNotFound, "no route matches %s %s: see docs/openapi.yaml", c.Request().Method, c.Request().URL.Path)
	case errors.Is(err, echo.ErrMethodNotAllowed):
		allow := c.Response().Header().Get(echo.HeaderAllow)
		err = ledger.Errorf(CodeMethodNotAllowed, "%s is not allowed on %s; allowed: %s", c.Request().Method, c.Request().URL.Path, allow).With("allow", allow)
	}
	status, body := errorBody(err)
	c.Set(ctxErrorCode, string(body.Error.Code))
	if status >= http.StatusInternalServerError {
		c.Set(ctxInternalError, err)
	}
	if status == http.StatusUnauthorized {
		c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="coalition"`)
	}
	if retryLater(body.Error.Code) {
		c.Response().Header().Set(echo.HeaderRetryAfter, retryAfterSeconds)
	}
	if c.Response().Committed {
		return nil
	}
	return c.JSON(status, body)
}

// handleError is echo's HTTPErrorHandler: errors a handler or middleware returned, and
// echo's own (no route, wrong method), answered by writeError.
func handleError(err error, c echo.Context) {
	_ = writeError(c, err)
}

// retryLater reports whether an answer with code asks the client to send the request
// again after a pause (with Retry-After): the server was busy, not the request wrong.
func retryLater(code ledger.Code) bool { return code == CodeOverloaded || code == CodeTimeout }
