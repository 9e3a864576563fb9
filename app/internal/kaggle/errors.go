package kaggle

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Sentinels a caller can test with errors.Is. Every error returned by the
// client is an *APIError that unwraps to one of these when it applies.
var (
	// ErrUnauthorized means Kaggle refused the credentials (401 or 403). It is
	// permanent: retrying cannot help until an operator fixes the settings.
	ErrUnauthorized = errors.New("kaggle refused the credentials: check KAGGLE_USERNAME and KAGGLE_KEY (or KAGGLE_API_TOKEN)")
	// ErrNotFound means the dataset, kernel or file does not exist (404).
	ErrNotFound = errors.New("kaggle resource not found")
	// ErrRejected means Kaggle answered 200 but reported an error in the body
	// (for example a dataset slug already in use, or an invalid kernel push).
	// The message is Kaggle's own; it is permanent for that request.
	ErrRejected = errors.New("kaggle rejected the request")
	// ErrNotConfigured means the client has no credentials at all.
	ErrNotConfigured = errors.New("kaggle credentials are not configured")
	// ErrResponseTooLarge means a JSON answer exceeded Config.MaxResponseBytes.
	ErrResponseTooLarge = errors.New("kaggle response too large")
	// ErrInvalidArgument means the call was refused before sending anything
	// (an empty or path-changing name, a bad URL, a malformed answer).
	ErrInvalidArgument = errors.New("invalid argument")
)

// APIError describes one failed call. It never contains credentials, and
// URLs in it are stripped of their query strings (download URLs are signed).
type APIError struct {
	// Op names the call ("kernels/push", "blobs/upload", "download").
	Op string
	// Status is the HTTP status, or 0 when no response arrived.
	Status int
	// Message is Kaggle's error message, trimmed and capped; may be empty.
	Message string
	// RetryAfter is the server's Retry-After hint (0 when absent).
	RetryAfter time.Duration
	// Err is the underlying cause: a sentinel above, a network error, or a
	// context error.
	Err error
}

func (e *APIError) Error() string {
	var b strings.Builder
	b.WriteString("kaggle ")
	b.WriteString(e.Op)
	if e.Status != 0 {
		fmt.Fprintf(&b, ": HTTP %d", e.Status)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *APIError) Unwrap() error { return e.Err }

// Retryable reports whether err is worth retrying later, and the delay the
// server asked for (0 if it did not say). Rate limits (429), server errors
// (5xx), request timeouts (408) and network failures are retryable;
// credentials, missing resources, rejections, and the caller's own context
// cancellation are not.
func Retryable(err error) (bool, time.Duration) {
	if err == nil {
		return false, 0
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false, 0
	}
	var ae *APIError
	if !errors.As(err, &ae) {
		return false, 0
	}
	switch {
	case ae.Status == 0:
		// No response at all: a network error. Sentinels with status 0
		// (not configured, too large) are permanent.
		if errors.Is(ae.Err, ErrNotConfigured) || errors.Is(ae.Err, ErrResponseTooLarge) ||
			errors.Is(ae.Err, ErrRejected) || errors.Is(ae.Err, ErrInvalidArgument) {
			return false, 0
		}
		return ae.Err != nil, ae.RetryAfter
	case ae.Status == http.StatusTooManyRequests, ae.Status == http.StatusRequestTimeout:
		return true, ae.RetryAfter
	case ae.Status >= 500 && ae.Status <= 599:
		return true, ae.RetryAfter
	}
	return false, 0
}

// statusError builds the error for a non-2xx answer.
func statusError(op string, status int, message string, retryAfter time.Duration) *APIError {
	e := &APIError{Op: op, Status: status, Message: cleanMessage(message), RetryAfter: retryAfter}
	switch status {
	case http.StatusUnauthorized, http.StatusForbidden:
		e.Err = ErrUnauthorized
	case http.StatusNotFound:
		e.Err = ErrNotFound
	}
	return e
}

// maxMessageLen caps Kaggle's error text in our errors and logs.
const maxMessageLen = 300

// cleanMessage keeps a server message printable and short, so a hostile or
// broken answer cannot flood logs or inject control characters.
func cleanMessage(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\t' {
			return ' '
		}
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return -1
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(s) > maxMessageLen {
		cut := maxMessageLen
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

// invalid builds the error of a call refused before it was sent.
func invalid(op string, err error) *APIError {
	return &APIError{Op: op, Err: fmt.Errorf("%w: %w", ErrInvalidArgument, err)}
}
