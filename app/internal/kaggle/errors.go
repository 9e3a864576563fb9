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
	// ErrUnauthorized means Kaggle refused the credentials (401). It is
	// permanent: retrying cannot help until an operator fixes the settings.
	ErrUnauthorized = errors.New("kaggle refused the credentials: check KAGGLE_USERNAME and KAGGLE_KEY (or KAGGLE_API_TOKEN)")
	// ErrNotFound means the dataset, kernel or file does not exist (404, or
	// 403 on a lookup: Kaggle answers 403 for things it will not confirm
	// exist, Kaggle/kaggle-api#548).
	ErrNotFound = errors.New("kaggle resource not found")
	// ErrRejected means Kaggle refused the request itself: 400, 409, 413 or
	// 422 with its {"code","message"} body, or a 200 whose body carries an
	// error (a dataset slug already in use, an invalid kernel push, unknown
	// data sources). The message is Kaggle's own; the request must change
	// before it can succeed, so it is never retried.
	ErrRejected = errors.New("kaggle rejected the request")
	// ErrForbidden means Kaggle denied an action with 403 (not a lookup):
	// the account may not do it, for example GPU or internet without a
	// phone-verified account. It wraps ErrRejected: permanent too.
	ErrForbidden = fmt.Errorf("%w: permission denied", ErrRejected)
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
	case ae.Err != nil && (errors.Is(ae.Err, ErrRejected) || errors.Is(ae.Err, ErrNotFound) || errors.Is(ae.Err, ErrUnauthorized)):
		return false, 0
	case ae.Status == http.StatusTooManyRequests, ae.Status == http.StatusRequestTimeout:
		return true, ae.RetryAfter
	case ae.Status >= 500 && ae.Status <= 599:
		return true, ae.RetryAfter
	}
	return false, 0
}

// Permanent reports whether err is a Kaggle failure that retrying the same
// request cannot fix: credentials, rejections with Kaggle's message,
// missing resources, bad arguments. Network errors, 408, 429, 5xx and the
// caller's own context ending are not permanent.
func Permanent(err error) bool {
	var ae *APIError
	if !errors.As(err, &ae) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	ok, _ := Retryable(err)
	return !ok
}

// UserMessage is the text to show a user for err: Kaggle's own message
// when it sent one, with a plain summary of what failed and what to do. ok
// is false when err is not a Kaggle error.
func UserMessage(err error) (msg string, ok bool) {
	var ae *APIError
	if !errors.As(err, &ae) {
		return "", false
	}
	return ae.UserMessage(), true
}

// UserMessage says what failed in words a user understands, carrying
// Kaggle's message (already cleaned and capped) and never a credential or a
// signed URL.
func (e *APIError) UserMessage() string {
	what := opNames[e.Op]
	if what == "" {
		what = "a Kaggle request"
	}
	var b strings.Builder
	switch {
	case errors.Is(e.Err, ErrUnauthorized):
		fmt.Fprintf(&b, "Kaggle refused the credentials during %s (HTTP %d): check KAGGLE_USERNAME and KAGGLE_KEY or KAGGLE_API_TOKEN", what, e.Status)
	case errors.Is(e.Err, ErrNotConfigured):
		b.WriteString("training backend not configured: Kaggle credentials are missing")
	case errors.Is(e.Err, ErrForbidden):
		fmt.Fprintf(&b, "Kaggle denied %s (HTTP 403)", what)
	case errors.Is(e.Err, ErrRejected):
		fmt.Fprintf(&b, "Kaggle refused %s", what)
		if e.Status != http.StatusOK && e.Status != 0 {
			fmt.Fprintf(&b, " (HTTP %d)", e.Status)
		}
	case errors.Is(e.Err, ErrNotFound):
		fmt.Fprintf(&b, "Kaggle could not find what %s needs (HTTP %d)", what, e.Status)
	case errors.Is(e.Err, ErrInvalidArgument), errors.Is(e.Err, ErrResponseTooLarge):
		fmt.Fprintf(&b, "%s failed: %s", what, e.Err.Error())
		return capitalize(b.String())
	case e.Status != 0:
		fmt.Fprintf(&b, "Kaggle failed %s (HTTP %d)", what, e.Status)
	default:
		fmt.Fprintf(&b, "Kaggle could not be reached during %s", what)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	return b.String()
}

// opNames turn an Op into words for UserMessage.
var opNames = map[string]string{
	"blobs/upload":    "the dataset upload",
	"blobs/put":       "the dataset upload",
	"datasets/create": "the dataset creation",
	"datasets/status": "the dataset status check",
	"datasets/delete": "the dataset deletion",
	"kernels/push":    "the kernel push",
	"kernels/status":  "the kernel status check",
	"kernels/output":  "the kernel output listing",
	"download":        "the output download",
	"check":           "the credentials check",
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	r, n := utf8.DecodeRuneInString(s)
	return string(unicode.ToUpper(r)) + s[n:]
}

// statusError builds the error for a non-2xx answer. Every status that
// retrying cannot fix maps to a sentinel, so no caller retries a request
// Kaggle refused until its queue gives up (issue 10, item 3).
func statusError(op string, status int, message string, retryAfter time.Duration) *APIError {
	e := &APIError{Op: op, Status: status, Message: cleanMessage(message), RetryAfter: retryAfter}
	switch status {
	case http.StatusUnauthorized:
		e.Err = ErrUnauthorized
	case http.StatusForbidden:
		if lookupOps[op] {
			e.Err = ErrNotFound
		} else {
			e.Err = ErrForbidden
		}
	case http.StatusNotFound, http.StatusGone:
		e.Err = ErrNotFound
	case http.StatusRequestTimeout, http.StatusTooManyRequests:
		// Retryable: Kaggle did not get to the request.
	default:
		// 400 ("kernel source must be less than 1 megabytes"), 409, 413,
		// 422 and any other 4xx: the request itself was refused.
		if status >= 400 && status <= 499 {
			e.Err = ErrRejected
		}
	}
	return e
}

// lookupOps are the reads of one named resource, where Kaggle's 403 means
// "not found or not yours" (Kaggle/kaggle-api#548: "403 can in some cases
// also mean not found"). Elsewhere 403 is a real denial.
var lookupOps = map[string]bool{"datasets/status": true, "kernels/status": true, "kernels/output": true}

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
