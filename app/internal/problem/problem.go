// Package problem is the application's one error shape. Domain code returns
// *Error values (or wraps the sentinels below); the api package turns any
// error into the JSON body {"error":{"code","message","details"}} with the
// matching HTTP status, in exactly one place.
//
// Messages are written for the API's users: they name the problem and never
// carry internal detail (hostnames, SQL, credentials). Anything unexpected
// becomes a generic 500 "internal" error, and the cause is logged once by
// the request logger.
package problem

import (
	"errors"
	"fmt"
	"net/http"
)

// Code is a stable, machine-readable error code.
type Code string

// The codes clients can rely on. Each maps to one HTTP status.
const (
	CodeInvalid          Code = "invalid_request"        // 400
	CodeUnauthenticated  Code = "unauthenticated"        // 401
	CodeNotFound         Code = "not_found"              // 404
	CodeMethodNotAllowed Code = "method_not_allowed"     // 405
	CodeConflict         Code = "conflict"               // 409
	CodeTooLarge         Code = "payload_too_large"      // 413
	CodeUnsupportedMedia Code = "unsupported_media"      // 415
	CodeUnprocessable    Code = "validation_failed"      // 422
	CodeRateLimited      Code = "rate_limited"           // 429, with Retry-After
	CodeInternal         Code = "internal"               // 500
	CodeUnavailable      Code = "service_unavailable"    // 503
	CodeNotConfigured    Code = "backend_not_configured" // 503
	CodeStorageFull      Code = "storage_full"           // 507
)

var statusOf = map[Code]int{
	CodeInvalid:          http.StatusBadRequest,
	CodeUnauthenticated:  http.StatusUnauthorized,
	CodeNotFound:         http.StatusNotFound,
	CodeMethodNotAllowed: http.StatusMethodNotAllowed,
	CodeConflict:         http.StatusConflict,
	CodeTooLarge:         http.StatusRequestEntityTooLarge,
	CodeUnsupportedMedia: http.StatusUnsupportedMediaType,
	CodeUnprocessable:    http.StatusUnprocessableEntity,
	CodeRateLimited:      http.StatusTooManyRequests,
	CodeInternal:         http.StatusInternalServerError,
	CodeUnavailable:      http.StatusServiceUnavailable,
	CodeNotConfigured:    http.StatusServiceUnavailable,
	CodeStorageFull:      http.StatusInsufficientStorage,
}

// Detail points at one specific problem: a field, a record, a line.
type Detail struct {
	// Field is a JSON path or parameter name ("hyperparameters.epochs").
	Field string `json:"field,omitempty"`
	// Line or Record locate a problem inside an uploaded file (1-based).
	Line   int    `json:"line,omitempty"`
	Record int    `json:"record,omitempty"`
	Issue  string `json:"issue"`
}

// Error is an error a client can act on.
type Error struct {
	Code    Code     `json:"code"`
	Message string   `json:"message"`
	Details []Detail `json:"details,omitempty"`
	// Extra holds additional top-level members of the error object (for
	// example the total number of details before they were capped).
	Extra map[string]any `json:"-"`
	// cause is kept for logs and errors.Is; it is never sent to clients.
	cause error
}

func (e *Error) Error() string {
	if e.cause != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.cause)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

// Unwrap exposes the cause to errors.Is and errors.As.
func (e *Error) Unwrap() error { return e.cause }

// Status is the HTTP status for the error's code.
func (e *Error) Status() int {
	if s, ok := statusOf[e.Code]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// New returns an error with code and a formatted message.
func New(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Wrap returns an error with code and message that keeps cause for logs.
func Wrap(cause error, code Code, message string) *Error {
	return &Error{Code: code, Message: message, cause: cause}
}

// WithDetails returns a copy of e with details appended.
func (e *Error) WithDetails(details ...Detail) *Error {
	c := *e
	c.Details = append(append([]Detail(nil), e.Details...), details...)
	return &c
}

// Sentinels for the store and other edges to map vendor errors onto.
// Wrap them with fmt.Errorf("...: %w", problem.ErrNotFound) and the api
// layer answers with the matching status.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("conflict")
	// ErrUnavailable marks a dependency that is down or overloaded (the
	// database, object storage): the client may retry later.
	ErrUnavailable = errors.New("unavailable")
	// ErrStorageFull marks a write refused because the storage behind it
	// has no space left: retrying will not help until an operator frees
	// space or adds capacity.
	ErrStorageFull = errors.New("storage full")
)

// From turns any error into an *Error. Known sentinels map to their codes;
// anything else is an internal error whose message reveals nothing.
func From(err error) *Error {
	var e *Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &e):
		return e
	case errors.Is(err, ErrNotFound):
		return Wrap(err, CodeNotFound, "resource not found")
	case errors.Is(err, ErrConflict):
		return Wrap(err, CodeConflict, "the request conflicts with the resource's current state")
	case errors.Is(err, ErrUnavailable):
		return Wrap(err, CodeUnavailable, "a backing service is temporarily unavailable; retry later")
	case errors.Is(err, ErrStorageFull):
		return Wrap(err, CodeStorageFull, "object storage is out of space, so nothing was stored; retry once the operator has freed space")
	default:
		return Wrap(err, CodeInternal, "internal error")
	}
}
