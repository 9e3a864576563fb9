package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/finetune-studio/finetune-studio/app/internal/problem"
)

// requestInfo travels in the request context so the outer middleware can
// log what inner layers learned: the route template, the error, the token.
type requestInfo struct {
	id      string
	route   string
	err     error
	tokenID string
}

type infoKey struct{}

func infoFrom(ctx context.Context) *requestInfo {
	if ri, ok := ctx.Value(infoKey{}).(*requestInfo); ok {
		return ri
	}
	return &requestInfo{}
}

// TokenID returns the id of the token that authenticated the request.
func TokenID(ctx context.Context) string { return infoFrom(ctx).tokenID }

// observe is the outermost layer: request id, panic recovery, one log line
// and the metrics for every request, matched or not.
func (a *API) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ri := &requestInfo{id: requestID(r.Header.Get("X-Request-ID")), route: routeUnmatched}
		w.Header().Set("X-Request-ID", ri.id)
		rec := &recorder{ResponseWriter: w}
		r = r.WithContext(context.WithValue(r.Context(), infoKey{}, ri))
		if a.metrics != nil {
			a.metrics.RequestStarted()
		}
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler { // the handler chose to abort the connection
					a.finish(r, rec, ri, start)
					panic(p)
				}
				a.log.Error("panic recovered", "request_id", ri.id, "route", ri.route,
					"panic", fmt.Sprint(p), "stack", string(debug.Stack()))
				ri.err = fmt.Errorf("panic: %v", p)
				if !rec.wroteHeader {
					writeProblem(rec, problem.New(problem.CodeInternal, "internal error"))
				}
			}
			a.finish(r, rec, ri, start)
		}()
		next.ServeHTTP(rec, r)
	})
}

func (a *API) finish(r *http.Request, rec *recorder, ri *requestInfo, start time.Time) {
	d := time.Since(start)
	status := rec.status
	if status == 0 {
		status = http.StatusOK
	}
	if a.metrics != nil {
		a.metrics.RequestDone(ri.route, r.Method, status, d)
	}
	attrs := []slog.Attr{
		slog.String("request_id", ri.id),
		slog.String("method", r.Method),
		slog.String("route", ri.route),
		slog.Int("status", status),
		slog.Int64("bytes", rec.bytes),
		slog.Float64("duration_ms", float64(d.Microseconds())/1000),
		slog.String("client_ip", clientIP(r, a.conf.HTTP.TrustedProxies)),
	}
	if ri.tokenID != "" {
		attrs = append(attrs, slog.String("token_id", ri.tokenID))
	}
	level := slog.LevelInfo
	if ri.err != nil {
		attrs = append(attrs, slog.String("error", ri.err.Error()))
		if status >= 500 {
			level = slog.LevelError
		}
	}
	a.log.LogAttrs(r.Context(), level, "request", attrs...)
}

// wrap turns a HandlerFunc into an http.Handler with the route's options:
// template for logs, authentication, body cap, upload slot, deadlines,
// error rendering.
func (a *API) wrap(route string, h HandlerFunc, o routeOptions) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ri := infoFrom(r.Context())
		ri.route = route
		// Authenticate before anything that depends on the route: an
		// anonymous client must neither hold a connection open past the
		// server's timeouts nor learn the route's body limit from a 413.
		// Every /api/ path needs a token, including unknown ones, so the
		// API's shape is not discoverable without credentials.
		if strings.HasPrefix(r.URL.Path, "/api/") {
			id, err := a.auth.Authenticate(r.Context(), r.Header.Get("Authorization"))
			if err != nil {
				w.Header().Set("WWW-Authenticate", `Bearer realm="finetune-studio"`)
				a.fail(w, r, err)
				return
			}
			ri.tokenID = id
		}
		if r.ContentLength > o.bodyLimit {
			a.fail(w, r, tooLarge(o.bodyLimit))
			return
		}
		// The slot is taken before deadlines are lifted, so a refused
		// upload stays bound by the server's timeouts.
		if o.uploadSlot {
			release, err := a.takeUploadSlot(w)
			if err != nil {
				a.fail(w, r, err)
				return
			}
			defer release()
		}
		if o.noDeadlines {
			rc := http.NewResponseController(w)
			_ = rc.SetReadDeadline(time.Time{})
			_ = rc.SetWriteDeadline(time.Time{})
		}
		r.Body = http.MaxBytesReader(w, r.Body, o.bodyLimit)
		if err := h(w, r); err != nil {
			a.fail(w, r, err)
		}
	})
}

// uploadRetryAfter is the Retry-After, in seconds, of an upload refused by
// the cap: an upload of the default 100 MiB limit takes seconds to minutes.
const uploadRetryAfter = "30"

// takeUploadSlot takes an upload slot without waiting, or answers 429 with
// Retry-After: a refused client retries later rather than holding a
// connection (and soon 32 MiB of buffers) in a queue. The refusal closes
// the connection, so the server does not read (and wait for) the unwanted
// body before answering.
func (a *API) takeUploadSlot(w http.ResponseWriter) (release func(), err error) {
	if a.uploads == nil {
		return func() {}, nil
	}
	select {
	case a.uploads <- struct{}{}:
		return func() { <-a.uploads }, nil
	default:
		w.Header().Set("Retry-After", uploadRetryAfter)
		w.Header().Set("Connection", "close")
		return nil, problem.New(problem.CodeRateLimited,
			"this server already has %d dataset uploads in progress, the most allowed: retry after %s seconds",
			cap(a.uploads), uploadRetryAfter)
	}
}

// fail renders err as the JSON error shape, unless the handler already
// started its response, and records it for the request's log line.
func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	ri := infoFrom(r.Context())
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		err = tooLarge(mbe.Limit)
	}
	ri.err = err
	if rec, ok := w.(*recorder); ok && rec.wroteHeader {
		return // too late for a status; the log line still carries the error
	}
	writeProblem(w, problem.From(err))
}

func tooLarge(limit int64) *problem.Error {
	return problem.New(problem.CodeTooLarge, "request body exceeds the limit of %d bytes", limit)
}

// requestID keeps a sane incoming id (from the edge) or makes a new one.
func requestID(in string) string {
	if n := len(in); n > 0 && n <= 128 {
		ok := true
		for _, c := range in {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
				ok = false
				break
			}
		}
		if ok {
			return in
		}
	}
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// recorder captures the status and size for logs and metrics. It unwraps
// for http.ResponseController, so Flush and deadlines reach the connection.
type recorder struct {
	http.ResponseWriter
	status      int
	bytes       int64
	wroteHeader bool
}

func (r *recorder) WriteHeader(code int) {
	if !r.wroteHeader {
		r.status, r.wroteHeader = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if !r.wroteHeader {
		r.WriteHeader(http.StatusOK)
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// Flush lets handlers that type-assert http.Flusher still stream.
func (r *recorder) Flush() {
	if !r.wroteHeader {
		r.WriteHeader(http.StatusOK)
	}
	_ = http.NewResponseController(r.ResponseWriter).Flush()
}
