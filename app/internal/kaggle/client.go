// Package kaggle is a small client for the parts of Kaggle's public REST API
// (v1, https://www.kaggle.com/api/v1) that training jobs use: blob upload,
// private dataset creation and status, kernel push, kernel status, kernel
// output listing and output download.
//
// Every call takes a context, retries rate limits and server errors with
// capped exponential backoff and jitter (honouring Retry-After), caps the
// size of the JSON it decodes, and returns an *APIError that unwraps to
// ErrUnauthorized, ErrNotFound or ErrRejected when those apply. Credentials
// never appear in errors. Calls that create things on Kaggle (dataset create,
// kernel push) are retried only when the server said it did not process the
// request (429, 503); see docs/kaggle.md.
//
// The in-repo emulator in package kaggletest serves the same paths.
package kaggle

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// DefaultBaseURL is Kaggle's public API root.
const DefaultBaseURL = "https://www.kaggle.com/api/v1"

// Defaults used when the matching Config field is zero.
const (
	DefaultMaxAttempts           = 5
	DefaultBaseDelay             = time.Second
	DefaultMaxDelay              = 30 * time.Second
	DefaultMaxRetryAfter         = 2 * time.Minute
	DefaultMaxResponseBytes      = 16 << 20
	DefaultResponseHeaderTimeout = 60 * time.Second
	DefaultUploadChunkSize       = 8 << 20
)

// Config configures a Client. Only the credentials are required.
type Config struct {
	// BaseURL is the API root, without a trailing slash. Default
	// DefaultBaseURL; tests point it at the emulator.
	BaseURL string
	// Username and Key are the classic API credentials (KAGGLE_USERNAME,
	// KAGGLE_KEY), sent with HTTP Basic auth.
	Username string
	Key      string
	// Token is a newer API token (KAGGLE_API_TOKEN), sent as a Bearer token.
	// When set it takes precedence over Username/Key for authentication;
	// Username is still needed as the owner of datasets and kernels.
	Token string
	// HTTPClient sends the requests. Default: a client whose transport gives
	// up when response headers take longer than DefaultResponseHeaderTimeout;
	// bodies are bounded by the caller's context only.
	HTTPClient *http.Client
	// MaxAttempts bounds the tries of one call, first try included.
	// Default DefaultMaxAttempts.
	MaxAttempts int
	// BaseDelay and MaxDelay shape the exponential backoff between tries.
	BaseDelay time.Duration
	MaxDelay  time.Duration
	// MaxRetryAfter is the longest Retry-After the client waits for itself;
	// a longer one ends the call with a retryable *APIError carrying the
	// delay, so the caller can reschedule instead of holding a worker.
	MaxRetryAfter time.Duration
	// MaxResponseBytes caps the JSON bodies the client decodes.
	MaxResponseBytes int64
	// Sleep waits between tries; it must return early with ctx.Err() when
	// ctx ends. Default: a timer. Tests inject a recorder.
	Sleep func(ctx context.Context, d time.Duration) error
	// Now is the clock used to read HTTP-date Retry-After values.
	Now func() time.Time
	// UploadChunkSize is how many bytes of a blob one upload request
	// carries (and the most the client holds in memory for it). Rounded
	// down to a multiple of 256 KiB; default DefaultUploadChunkSize.
	UploadChunkSize int
	// MachineShape is the accelerator of GPU pushes that name none.
	// Default DefaultMachineShape; see MachineShapes.
	MachineShape string
	// Logger receives one debug line per retry. Default: discard.
	Logger *slog.Logger
}

// Client talks to Kaggle. It is safe for concurrent use.
type Client struct {
	cfg  Config
	base *url.URL
}

// New returns a client for cfg, filling in defaults. A client without
// credentials is valid; its calls fail with ErrNotConfigured, which lets the
// app start without Kaggle settings.
func New(cfg Config) *Client {
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultBaseURL
	}
	cfg.BaseURL = strings.TrimRight(cfg.BaseURL, "/")
	if cfg.HTTPClient == nil {
		// No overall Timeout: output downloads can be large and are bounded
		// by the caller's context. A stalled server is caught by the
		// response-header timeout instead.
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.ResponseHeaderTimeout = DefaultResponseHeaderTimeout
		cfg.HTTPClient = &http.Client{Transport: tr}
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	if cfg.BaseDelay <= 0 {
		cfg.BaseDelay = DefaultBaseDelay
	}
	if cfg.MaxDelay <= 0 {
		cfg.MaxDelay = DefaultMaxDelay
	}
	if cfg.MaxRetryAfter <= 0 {
		cfg.MaxRetryAfter = DefaultMaxRetryAfter
	}
	if cfg.MaxResponseBytes <= 0 {
		cfg.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if cfg.Sleep == nil {
		cfg.Sleep = sleepCtx
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.UploadChunkSize -= cfg.UploadChunkSize % uploadQuantum
	if cfg.UploadChunkSize <= 0 {
		cfg.UploadChunkSize = DefaultUploadChunkSize
	}
	if cfg.MachineShape == "" {
		cfg.MachineShape = DefaultMachineShape
	}
	// A nil base (not an absolute http(s) URL) is rejected by config
	// validation before we get here; the client stays usable and every call
	// reports it.
	return &Client{cfg: cfg, base: httpURL(cfg.BaseURL)}
}

// httpURL parses s if it is an absolute http or https URL, else returns nil.
func httpURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil
	}
	return u
}

// Username is the account that owns the datasets and kernels we create.
func (c *Client) Username() string { return c.cfg.Username }

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// retryPolicy says which failures of one call may be retried.
type retryPolicy int

const (
	// retryIdempotent retries 408, 429, 5xx and network errors.
	retryIdempotent retryPolicy = iota
	// retryUnprocessed retries only answers that say the server did not act
	// on the request (429 and 503). Used for calls that create things.
	retryUnprocessed
	// retryNever makes a single attempt; the caller runs its own protocol
	// (the resumable upload).
	retryNever
	// retryLookup is retryIdempotent that also retries "not found" (404,
	// and 403 on lookups) a bounded number of times: right after creation a
	// dataset or kernel can be briefly invisible (issue 10, item 4;
	// Kaggle/kaggle-api#284), and a lookup deciding "create or reuse" must
	// not create a second one, nor a poll fail a kernel that is running.
	retryLookup
)

// call is one logical API call.
type call struct {
	op     string
	method string
	url    string // absolute
	body   []byte // request body, replayed on retries; nil for none
	// contentType of body; default application/json.
	contentType string
	// header holds extra request headers (Content-Range for uploads).
	header http.Header
	// resumeIncomplete makes a 308 answer a success: the resumable upload
	// protocol's "Resume Incomplete".
	resumeIncomplete bool
	policy           retryPolicy
}

// apiURL joins the base URL with an already escaped path and query.
func (c *Client) apiURL(pathAndQuery string) string {
	return c.cfg.BaseURL + pathAndQuery
}

// doJSON runs a call with retries and decodes a 2xx answer with decode.
func (c *Client) doJSON(ctx context.Context, cl call, decode func([]byte) error) error {
	resp, err := c.do(ctx, cl)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := c.readCapped(resp.Body)
	if err != nil {
		return &APIError{Op: cl.op, Status: resp.StatusCode, Err: err}
	}
	if err := decode(data); err != nil {
		var ae *APIError
		if errors.As(err, &ae) {
			ae.Op = cl.op
			return ae
		}
		return &APIError{Op: cl.op, Status: resp.StatusCode, Err: fmt.Errorf("%w: decoding response: %w", ErrInvalidArgument, err)}
	}
	return nil
}

// do sends cl, retrying per its policy, and returns a 2xx response whose body
// the caller must close.
func (c *Client) do(ctx context.Context, cl call) (*http.Response, error) {
	// Whether training is enabled at all is the application's decision
	// (config.Kaggle.Configured); this only refuses a request that could
	// not be authenticated, or whose owner would be unknown.
	switch {
	case c.cfg.Key == "" && c.cfg.Token == "":
		return nil, &APIError{Op: cl.op, Err: ErrNotConfigured}
	case c.cfg.Username == "":
		return nil, &APIError{Op: cl.op, Err: fmt.Errorf("%w: KAGGLE_USERNAME is required (it owns the datasets and kernels)", ErrNotConfigured)}
	}
	if c.base == nil {
		return nil, invalid(cl.op, errors.New("the Kaggle API URL is not an absolute http(s) URL"))
	}
	for attempt := 1; ; attempt++ {
		resp, apiErr := c.once(ctx, cl)
		if apiErr == nil {
			return resp, nil
		}
		if ctx.Err() != nil {
			return nil, &APIError{Op: cl.op, Err: ctx.Err()}
		}
		if attempt >= c.cfg.MaxAttempts || !c.mayRetry(cl.policy, apiErr) {
			return nil, c.finalError(cl, apiErr, attempt)
		}
		if err := c.pause(ctx, cl.op, attempt, apiErr); err != nil {
			return nil, err
		}
	}
}

// pause waits before the next try after apiErr: the server's Retry-After
// when it sent one, else backoff. It returns apiErr itself when the server
// asked for longer than MaxRetryAfter (the caller reschedules instead of
// holding a worker), or the context's error when the wait is cut short.
func (c *Client) pause(ctx context.Context, op string, attempt int, apiErr *APIError) *APIError {
	delay := c.backoff(attempt)
	if apiErr.RetryAfter > 0 {
		if apiErr.RetryAfter > c.cfg.MaxRetryAfter {
			return apiErr
		}
		delay = apiErr.RetryAfter
	}
	c.cfg.Logger.LogAttrs(ctx, slog.LevelDebug, "kaggle request retry",
		slog.String("op", op), slog.Int("status", apiErr.Status),
		slog.Int("attempt", attempt), slog.Int64("delay_ms", delay.Milliseconds()))
	if err := c.cfg.Sleep(ctx, delay); err != nil {
		return &APIError{Op: op, Err: err}
	}
	return nil
}

// finalError is the error a call ends with. A lookup that kept answering
// "not found" says so plainly: Kaggle can take a moment to show what was
// just created, so a caller seeing this has already waited.
func (c *Client) finalError(cl call, apiErr *APIError, attempts int) *APIError {
	if cl.policy == retryLookup && errors.Is(apiErr.Err, ErrNotFound) && attempts > 1 {
		e := *apiErr
		e.Err = fmt.Errorf("%w: still not visible after %d tries", ErrNotFound, attempts)
		e.Message = cleanMessage(fmt.Sprintf("still not visible after %d tries (Kaggle said: %s)", attempts, apiErr.Message))
		return &e
	}
	return apiErr
}

func (c *Client) mayRetry(p retryPolicy, e *APIError) bool {
	switch p {
	case retryIdempotent:
		ok, _ := Retryable(e)
		return ok
	case retryUnprocessed:
		return e.Status == http.StatusTooManyRequests || e.Status == http.StatusServiceUnavailable
	case retryLookup:
		ok, _ := Retryable(e)
		return ok || errors.Is(e.Err, ErrNotFound)
	}
	return false
}

// backoff is the delay after the given failed attempt: exponential, capped,
// with "equal jitter" (half fixed, half random) so concurrent workers spread.
func (c *Client) backoff(attempt int) time.Duration {
	d := c.cfg.BaseDelay
	for i := 1; i < attempt && d < c.cfg.MaxDelay; i++ {
		d *= 2
	}
	d = min(d, c.cfg.MaxDelay)
	half := d / 2
	return half + rand.N(half+1) // #nosec G404 -- backoff jitter, not a secret: any PRNG will do
}

// once sends a single request. A non-2xx answer becomes an *APIError with
// the body's message; the body is closed in that case.
func (c *Client) once(ctx context.Context, cl call) (*http.Response, *APIError) {
	var body io.Reader
	if cl.body != nil {
		body = bytes.NewReader(cl.body)
	}
	req, err := http.NewRequestWithContext(ctx, cl.method, cl.url, body)
	if err != nil {
		return nil, &APIError{Op: cl.op, Err: redact(err)}
	}
	for k, v := range cl.header {
		req.Header[k] = v
	}
	if cl.body != nil {
		ct := cl.contentType
		if ct == "" {
			ct = "application/json"
		}
		req.Header.Set("Content-Type", ct)
	}
	req.Header.Set("Accept", "application/json")
	c.authorize(req)
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, &APIError{Op: cl.op, Err: redact(err)}
	}
	if resp.StatusCode >= 200 && resp.StatusCode <= 299 || cl.resumeIncomplete && resp.StatusCode == statusResumeIncomplete {
		return resp, nil
	}
	defer resp.Body.Close()
	return nil, c.errorFromResponse(cl.op, resp)
}

func (c *Client) errorFromResponse(op string, resp *http.Response) *APIError {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return statusError(op, resp.StatusCode, decodeErrorMessage(data),
		parseRetryAfter(resp.Header.Get("Retry-After"), c.cfg.Now()))
}

// authorize adds credentials, but only for requests to the API host: upload
// and download URLs handed out by Kaggle are signed storage URLs on other
// hosts, and must never see our key.
func (c *Client) authorize(req *http.Request) {
	if c.base == nil || !strings.EqualFold(req.URL.Host, c.base.Host) || req.URL.Scheme != c.base.Scheme {
		return
	}
	if c.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.cfg.Token)
		return
	}
	req.SetBasicAuth(c.cfg.Username, c.cfg.Key)
}

func (c *Client) readCapped(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, c.cfg.MaxResponseBytes+1))
	if err != nil {
		return nil, redact(err)
	}
	if int64(len(data)) > c.cfg.MaxResponseBytes {
		return nil, ErrResponseTooLarge
	}
	return data, nil
}

// parseRetryAfter reads delta-seconds or an HTTP-date (RFC 9110 §10.2.3).
// Unparseable or past values give 0.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		if secs > int64(24*time.Hour/time.Second) {
			secs = int64(24 * time.Hour / time.Second)
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return min(d, 24*time.Hour)
		}
	}
	return 0
}

// redact removes query strings (signatures) from URLs inside err.
func redact(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		if u, perr := url.Parse(ue.URL); perr == nil {
			u.RawQuery = ""
			u.User = nil
			u.Fragment = ""
			return &url.Error{Op: ue.Op, URL: u.String(), Err: ue.Err}
		}
		return &url.Error{Op: ue.Op, URL: "(url)", Err: ue.Err}
	}
	return err
}

// marshal encodes a request body. Request types are plain structs, so this
// cannot fail in practice; the error is still reported.
func marshal(op string, v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, &APIError{Op: op, Err: fmt.Errorf("encoding request: %w", err)}
	}
	return b, nil
}
