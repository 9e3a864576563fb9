// Package edgehealth is a Caddy HTTP handler that answers the edge's
// health endpoint for monitors, in the application/health+json format of
// draft-inadarei-api-health-check.
//
// It reports the edge itself, the readiness of the upstream app instances
// (their /readyz, with a short timeout, cached so a monitor hammering the
// endpoint cannot hammer the app) and the days left on every managed
// certificate. The answer names no upstream host and carries no error
// strings: it is public.
package edgehealth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/finetune-studio/finetune-studio/caddy-modules/certmetrics"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler is the `edge_health` handler.
type Handler struct {
	// Upstreams are the app instances as host:port; each is asked for
	// ReadyPath over plain HTTP. Empty means no app check.
	Upstreams []string `json:"upstreams,omitempty"`

	// ReadyPath is the app's readiness path. Default: /readyz.
	ReadyPath string `json:"ready_path,omitempty"`

	// Timeout bounds each readiness request. Default: 2s.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// CacheTTL is how long an app readiness result is reused. Default: 5s.
	CacheTTL caddy.Duration `json:"cache_ttl,omitempty"`

	// CertWarnDays: a certificate with fewer days left makes the answer
	// `warn` (an expired one makes it `fail`). Default: 14.
	CertWarnDays int `json:"cert_warn_days,omitempty"`

	client  *http.Client
	certs   certificateSource
	now     func() time.Time
	started time.Time
	logger  *zap.Logger

	cache *readinessCache
}

// readinessCache holds the last app readiness result.
type readinessCache struct {
	mu       sync.Mutex
	result   check
	storedAt time.Time
}

// certificateSource is what the handler needs from the cert_metrics app.
type certificateSource interface {
	Certificates() []certmetrics.Certificate
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.edge_health",
		New: func() caddy.Module { return new(Handler) },
	}
}

const (
	defaultReadyPath    = "/readyz"
	defaultTimeout      = caddy.Duration(2 * time.Second)
	defaultCacheTTL     = caddy.Duration(5 * time.Second)
	defaultCertWarnDays = 14
)

// Provision sets defaults and loads the cert_metrics app.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	if h.ReadyPath == "" {
		h.ReadyPath = defaultReadyPath
	}
	if h.Timeout == 0 {
		h.Timeout = defaultTimeout
	}
	if h.CacheTTL == 0 {
		h.CacheTTL = defaultCacheTTL
	}
	if h.CertWarnDays == 0 {
		h.CertWarnDays = defaultCertWarnDays
	}
	app, err := ctx.App("cert_metrics")
	if err != nil {
		return fmt.Errorf("loading cert_metrics app: %w", err)
	}
	h.certs = app.(*certmetrics.App)
	h.client = &http.Client{
		Timeout: time.Duration(h.Timeout),
		// Readiness must reflect the app, never a proxy from the environment.
		Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 2, IdleConnTimeout: 30 * time.Second},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	h.now = time.Now
	h.started = h.now()
	h.cache = new(readinessCache)
	return nil
}

// Validate checks the configuration.
func (h *Handler) Validate() error {
	for _, u := range h.Upstreams {
		if _, _, err := net.SplitHostPort(u); err != nil {
			return fmt.Errorf("upstream %q must be host:port: %w", u, err)
		}
	}
	if h.Timeout < 0 || h.CacheTTL < 0 || h.CertWarnDays < 0 {
		return errors.New("timeout, cache_ttl and cert_warn_days must not be negative")
	}
	return nil
}

// Cleanup closes the readiness client's idle connections when the config
// generation that owns the handler is unloaded.
func (h *Handler) Cleanup() error {
	if h.client != nil {
		h.client.CloseIdleConnections()
	}
	return nil
}

// Status values of the health-check draft, ordered by severity.
const (
	statusPass = "pass"
	statusWarn = "warn"
	statusFail = "fail"
)

func severity(s string) int {
	switch s {
	case statusPass:
		return 0
	case statusWarn:
		return 1
	default:
		return 2
	}
}

// check is one entry of the draft's "checks" object.
type check struct {
	ComponentID   string  `json:"componentId,omitempty"`
	Status        string  `json:"status"`
	ObservedValue float64 `json:"observedValue"`
	ObservedUnit  string  `json:"observedUnit,omitempty"`
	Time          string  `json:"time,omitempty"`
}

// Report is the application/health+json body.
type Report struct {
	Status string             `json:"status"`
	Checks map[string][]check `json:"checks"`
}

// ServeHTTP implements caddyhttp.MiddlewareHandler. It is terminal: it
// never calls next.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return caddyhttp.Error(http.StatusMethodNotAllowed, errors.New("health: method not allowed"))
	}
	rep := h.report(r.Context())
	body, err := json.Marshal(rep)
	if err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, err)
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "application/health+json")
	hdr.Set("Cache-Control", "no-store")
	code := http.StatusOK
	if rep.Status == statusFail {
		code = http.StatusServiceUnavailable
	}
	w.WriteHeader(code)
	if r.Method == http.MethodHead {
		return nil
	}
	_, err = w.Write(body)
	return err
}

func (h *Handler) report(ctx context.Context) Report {
	now := h.now()
	rep := Report{Status: statusPass, Checks: map[string][]check{
		"edge:uptime": {{Status: statusPass, ObservedValue: now.Sub(h.started).Truncate(time.Second).Seconds(), ObservedUnit: "s"}},
	}}
	if len(h.Upstreams) > 0 {
		rep.Checks["app:readiness"] = []check{h.appReadiness(ctx, now)}
	}
	if certs := h.certificateChecks(now); len(certs) > 0 {
		rep.Checks["certificate:expiry"] = certs
	}
	for _, checks := range rep.Checks {
		for _, c := range checks {
			if severity(c.Status) > severity(rep.Status) {
				rep.Status = c.Status
			}
		}
	}
	return rep
}

// appReadiness asks every upstream, at most once per CacheTTL. Callers
// arriving during a refresh wait for it rather than starting their own.
func (h *Handler) appReadiness(ctx context.Context, now time.Time) check {
	h.cache.mu.Lock()
	defer h.cache.mu.Unlock()
	if !h.cache.storedAt.IsZero() && now.Sub(h.cache.storedAt) < time.Duration(h.CacheTTL) {
		return h.cache.result
	}
	// Detached from the monitor's request: a client hanging up must not
	// turn into a cached failure.
	ctx = context.WithoutCancel(ctx)
	results := make([]string, len(h.Upstreams))
	var wg sync.WaitGroup
	for i, u := range h.Upstreams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = h.probe(ctx, u)
		}()
	}
	wg.Wait()
	ready, worst := 0, statusPass
	for _, s := range results {
		if s != statusFail {
			ready++
		}
		if severity(s) > severity(worst) {
			worst = s
		}
	}
	status := worst
	if ready == 0 {
		status = statusFail
	} else if worst == statusFail {
		// Some instances are down but the load balancer routes around them.
		status = statusWarn
	}
	h.cache.result = check{Status: status, ObservedValue: float64(ready), ObservedUnit: "ready_instances", Time: now.UTC().Format(time.RFC3339)}
	h.cache.storedAt = now
	return h.cache.result
}

// probe returns the status of one app instance. Details of a failure are
// logged here, never put in the public answer.
func (h *Handler) probe(ctx context.Context, hostport string) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+hostport+h.ReadyPath, nil)
	if err != nil {
		h.logger.Warn("app readiness request invalid", zap.String("upstream", hostport), zap.Error(err))
		return statusFail
	}
	resp, err := h.client.Do(req)
	if err != nil {
		h.logger.Warn("app readiness request failed", zap.String("upstream", hostport), zap.Error(err))
		return statusFail
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&body); err != nil {
		h.logger.Warn("app readiness answer unreadable", zap.String("upstream", hostport), zap.Int("status_code", resp.StatusCode), zap.Error(err))
		return statusFail
	}
	switch {
	case resp.StatusCode == http.StatusOK && (body.Status == statusPass || body.Status == statusWarn):
		return body.Status
	default:
		h.logger.Warn("app not ready", zap.String("upstream", hostport), zap.Int("status_code", resp.StatusCode), zap.String("app_status", body.Status))
		return statusFail
	}
}

func (h *Handler) certificateChecks(now time.Time) []check {
	if h.certs == nil {
		return nil
	}
	var out []check
	for _, c := range h.certs.Certificates() {
		ck := check{ComponentID: c.Name, ObservedUnit: "days"}
		switch {
		case c.NotAfter.IsZero():
			// Managed but nothing obtained yet: certmagic keeps retrying.
			ck.Status = statusWarn
		default:
			days := c.NotAfter.Sub(now).Hours() / 24
			ck.ObservedValue = float64(int(days*10)) / 10
			ck.Time = c.NotAfter.UTC().Format(time.RFC3339)
			switch {
			case days <= 0:
				ck.Status = statusFail
			case days < float64(h.CertWarnDays):
				ck.Status = statusWarn
			default:
				ck.Status = statusPass
			}
		}
		out = append(out, ck)
	}
	return out
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
