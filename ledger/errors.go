package ledger

import (
	"errors"
	"fmt"
)

// Code is a stable, machine-readable error code that clients act on.
type Code string

// The codes the engine returns. They are part of the contract: never rename one.
const (
	CodeInvalid             Code = "invalid_request"
	CodeInvalidAmount       Code = "invalid_amount"
	CodeInvalidScale        Code = "invalid_scale"
	CodeUnknownUnit         Code = "unknown_unit"
	CodeInvalidAccount      Code = "invalid_account"
	CodeUnbalanced          Code = "unbalanced_entry"
	CodeTooManyPostings     Code = "too_many_postings"
	CodeEmptyBatch          Code = "empty_batch"
	CodeBatchTooLarge       Code = "batch_too_large"
	CodeBusinessTime        Code = "business_time_out_of_window"
	CodeInsufficientPoints  Code = "insufficient_points"
	CodeNotFound            Code = "not_found"
	CodeNothingToExpire     Code = "nothing_to_expire"
	CodeLotNotExpired       Code = "lot_not_expired"
	CodeReversalTooLarge    Code = "reversal_exceeds_original"
	CodeHoldNotOpen         Code = "hold_not_open"
	CodeHoldExpired         Code = "hold_expired"
	CodeForbidden           Code = "forbidden"
	CodeCaptureTooLarge     Code = "capture_exceeds_hold"
	CodeIdempotencyConflict Code = "idempotency_conflict"
	CodeDuplicateReference  Code = "duplicate_reference"
	CodeBatchAborted        Code = "batch_aborted"
	// CodeTermsChanged marks an entry sent back unwritten because it was priced at an
	// older terms version; callers see ErrTermsChanged, never this code.
	CodeTermsChanged Code = "terms_changed"
)

// Class groups codes by what a client should do about them; the HTTP layer maps each
// class to one status.
type Class int

// The classes of error.
const (
	ClassInvalid   Class = iota + 1 // the request breaks a rule: fix it (422)
	ClassConflict                   // the request clashes with state or an earlier request (409)
	ClassNotFound                   // something the request names does not exist (404)
	ClassForbidden                  // the request acts on what another partner owns (403)
)

var codeClass = map[Code]Class{
	CodeIdempotencyConflict: ClassConflict,
	CodeDuplicateReference:  ClassConflict,
	CodeBatchAborted:        ClassConflict,
	CodeHoldNotOpen:         ClassConflict,
	CodeHoldExpired:         ClassConflict,
	CodeForbidden:           ClassForbidden,
	CodeNotFound:            ClassNotFound,
}

// Class reports the class of the code.
func (c Code) Class() Class {
	if cl, ok := codeClass[c]; ok {
		return cl
	}
	return ClassInvalid
}

// Error is a rule the engine enforced: it carries a code, a message that says what to fix,
// and details a client can use (for example the points available).
type Error struct {
	Code    Code           `json:"code"`
	Message string         `json:"message"`
	Details map[string]any `json:"details,omitempty"`
	// stored: the refusal is already the stored first answer to its idempotency key;
	// replayed: it was stored for an earlier request (see Result.Refusal).
	stored, replayed bool
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

// Stored reports whether the refusal is already the stored first answer to its
// idempotency key, as the engine stores its own refusals: nobody needs to store it.
func (e *Error) Stored() bool { return e.stored }

// Replayed reports whether the refusal is the stored answer to an earlier request with
// the same idempotency key.
func (e *Error) Replayed() bool { return e.replayed }

// Errorf returns an *Error with the code and a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// With returns the error with a detail added.
func (e *Error) With(key string, value any) *Error {
	if e.Details == nil {
		e.Details = map[string]any{}
	}
	e.Details[key] = value
	return e
}

// ErrorCode returns the code of the *Error in err's chain, or "" if there is none.
func ErrorCode(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}
