// Package edgehealth is a Caddy HTTP handler that answers the edge's
// health endpoints for monitors, in the application/health+json format of
// draft-inadarei-api-health-check.
//
// It reads what the edge already knows instead of asking anyone again: the
// health of the reverse proxy's upstreams as the proxy's own active and
// passive checks see it, and the expiry of every managed certificate judged
// against its lifetime. One handler answers one of three reports: liveness
// (the edge itself), status (overall status and the fewest days left on a
// certificate, safe to publish) and full
// (every check, for the internal listener).
package edgehealth

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"github.com/caddyserver/caddy/v2/modules/caddytls"
	"go.uber.org/zap"

	"github.com/finetune-studio/finetune-studio/caddy-modules/certmetrics"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Report kinds.
const (
	// ReportLiveness answers pass while the edge serves HTTP, whatever the
	// app or the certificates: what a container HEALTHCHECK restarts on.
	ReportLiveness = "liveness"
	// ReportStatus answers the overall status (and 503 on fail) and the
	// fewest days left on a certificate: what a public monitor needs,
	// without naming certificates or counting instances.
	ReportStatus = "status"
	// ReportFull answers every check with its detail.
	ReportFull = "full"
)

// Handler is the `edge_health` handler.
type Handler struct {
	// Report is what the answer carries: "status" (the overall status of
	// the edge, the app behind it and the certificates, and the fewest
	// days left on a certificate, with no names or counts),
	// "full" (the same status with every check: edge:uptime,
	// app:readiness, certificate:expiry) or "liveness" (edge:uptime only,
	// always pass while the edge serves). Default: status.
	Report string `json:"report,omitempty"`

	ctx       caddy.Context
	logger    *zap.Logger
	now       func() time.Time
	started   time.Time
	certs     certificateSource
	validFrom func(name string, notAfter time.Time) time.Time

	upstreams *upstreamList
}

// upstreamList finds the proxied upstreams once, on first use: the http
// app is only complete after every handler in it is provisioned.
type upstreamList struct {
	once  sync.Once
	find  func() []upstream
	found []upstream
}

func (l *upstreamList) get() []upstream {
	l.once.Do(func() { l.found = l.find() })
	return l.found
}

// upstream is what the handler reads of a reverse proxy's upstream.
type upstream interface {
	// String is the dial address.
	String() string
	// Healthy is the proxy's view: active checks and passive failures.
	Healthy() bool
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

// processStart holds when the first edge_health handler of this process
// was provisioned. A config reload provisions the new handlers before it
// cleans up the old ones, so the entry, and edge:uptime, outlive reloads.
var processStart = caddy.NewUsagePool()

const processStartKey = "started"

type startTime time.Time

func (startTime) Destruct() error { return nil }

// Provision sets defaults, loads the cert_metrics app and records the
// process start.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.ctx = ctx
	h.logger = ctx.Logger()
	if h.Report == "" {
		h.Report = ReportStatus
	}
	h.now = time.Now
	v, _, err := processStart.LoadOrNew(processStartKey, func() (caddy.Destructor, error) {
		return startTime(h.now()), nil
	})
	if err != nil {
		return fmt.Errorf("loading process start: %w", err)
	}
	h.started = time.Time(v.(startTime))
	app, err := ctx.App("cert_metrics")
	if err != nil {
		return fmt.Errorf("loading cert_metrics app: %w", err)
	}
	h.certs = app.(*certmetrics.App)
	h.validFrom = cachedNotBefore
	h.upstreams = &upstreamList{find: h.proxiedUpstreams}
	return nil
}

// Validate checks the configuration.
func (h *Handler) Validate() error {
	switch h.Report {
	case ReportLiveness, ReportStatus, ReportFull:
		return nil
	default:
		return fmt.Errorf("report must be %s, %s or %s, got %q", ReportLiveness, ReportStatus, ReportFull, h.Report)
	}
}

// Cleanup releases this handler's hold on the process start.
func (h *Handler) Cleanup() error {
	_, err := processStart.Delete(processStartKey)
	return err
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
	Status string `json:"status"`
	// CertificateDaysLeft is the fewest days left on any managed
	// certificate that has been obtained, the one number a public monitor
	// needs to see a renewal stall coming without learning any name. Nil
	// (omitted) when no certificate is managed or none is obtained yet.
	CertificateDaysLeft *float64           `json:"certificate_days_left,omitempty"`
	Checks              map[string][]check `json:"checks,omitempty"`
}

// ServeHTTP implements caddyhttp.MiddlewareHandler. It is terminal: it
// never calls next.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return caddyhttp.Error(http.StatusMethodNotAllowed, errors.New("health: method not allowed"))
	}
	rep := h.report()
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

func (h *Handler) report() Report {
	now := h.now()
	checks := map[string][]check{
		"edge:uptime": {{Status: statusPass, ObservedValue: now.Sub(h.started).Truncate(time.Second).Seconds(), ObservedUnit: "s"}},
	}
	rep := Report{Status: statusPass, Checks: checks}
	if h.Report != ReportLiveness {
		if app, ok := h.appReadiness(now); ok {
			checks["app:readiness"] = []check{app}
		}
		if certs := h.certificateChecks(now); len(certs) > 0 {
			checks["certificate:expiry"] = certs
			rep.CertificateDaysLeft = minDaysLeft(certs)
		}
	}
	for _, cs := range checks {
		for _, c := range cs {
			if severity(c.Status) > severity(rep.Status) {
				rep.Status = c.Status
			}
		}
	}
	if h.Report == ReportStatus {
		rep.Checks = nil
	}
	return rep
}

// appReadiness reports how many distinct upstream addresses the reverse
// proxies consider healthy. An address several proxies share counts as
// healthy only if every one of them finds it so. ok is false when no
// proxy has static upstreams.
func (h *Handler) appReadiness(now time.Time) (c check, ok bool) {
	found := h.upstreams.get()
	if len(found) == 0 {
		return check{}, false
	}
	healthy := make(map[string]bool, len(found))
	for _, u := range found {
		prev, seen := healthy[u.String()]
		healthy[u.String()] = u.Healthy() && (prev || !seen)
	}
	ready := 0
	for _, ok := range healthy {
		if ok {
			ready++
		}
	}
	status := statusPass
	switch {
	case ready == 0:
		status = statusFail
	case ready < len(healthy):
		// The load balancer routes around the unhealthy instances.
		status = statusWarn
	}
	return check{Status: status, ObservedValue: float64(ready), ObservedUnit: "ready_instances", Time: now.UTC().Format(time.RFC3339)}, true
}

// proxiedUpstreams walks this config's HTTP routes, error routes and
// subroutes for reverse_proxy handlers with active health checks and
// returns their static upstreams, whose health state the proxies' checkers
// keep up to date. A proxy without active checks (the model-download route
// to object storage) is not an app instance: counted, it would turn a down
// app from fail into warn, since nothing would ever mark it unhealthy.
func (h *Handler) proxiedUpstreams() []upstream {
	appIface, err := h.ctx.AppIfConfigured("http")
	if err != nil {
		h.logger.Warn("http app unavailable: no app readiness", zap.Error(err))
		return nil
	}
	app := appIface.(*caddyhttp.App)
	var out []upstream
	var walk func(caddyhttp.RouteList)
	walk = func(routes caddyhttp.RouteList) {
		for _, route := range routes {
			for _, mh := range route.Handlers {
				switch hd := mh.(type) {
				case *reverseproxy.Handler:
					if hd.HealthChecks == nil || hd.HealthChecks.Active == nil {
						continue
					}
					for _, u := range hd.Upstreams {
						out = append(out, u)
					}
				case *caddyhttp.Subroute:
					walk(hd.Routes)
				}
			}
		}
	}
	names := make([]string, 0, len(app.Servers))
	for name := range app.Servers {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		srv := app.Servers[name]
		walk(srv.Routes)
		if srv.Errors != nil {
			walk(srv.Errors.Routes)
		}
	}
	return out
}

// Certificate thresholds, as fractions of a certificate's lifetime.
// certmagic renews when a third of the lifetime is left (its default
// renewal window ratio), so a certificate with under a sixth left has
// spent half of its renewal window unrenewed: warn. Under a thirtieth
// (3 days of 90, 5 hours of 6 days) it is about to expire: fail.
const (
	certWarnFraction = 6
	certFailFraction = 30
)

func (h *Handler) certificateChecks(now time.Time) []check {
	if h.certs == nil {
		return nil
	}
	var out []check
	for _, c := range h.certs.Certificates() {
		ck := check{ComponentID: c.Name, ObservedUnit: "days"}
		if c.NotAfter.IsZero() {
			// Managed but nothing obtained yet: certmagic keeps retrying.
			ck.Status = statusWarn
			out = append(out, ck)
			continue
		}
		left := c.NotAfter.Sub(now)
		ck.ObservedValue = float64(int(left.Hours()/24*10)) / 10
		ck.Time = c.NotAfter.UTC().Format(time.RFC3339)
		var lifetime time.Duration
		if from := h.validFrom(c.Name, c.NotAfter); !from.IsZero() {
			lifetime = c.NotAfter.Sub(from)
		}
		ck.Status = expiryStatus(left, lifetime)
		out = append(out, ck)
	}
	return out
}

// minDaysLeft returns the fewest days left over the certificates obtained
// (those with an expiry time), or nil when none is.
func minDaysLeft(certs []check) *float64 {
	var least *float64
	for i := range certs {
		if certs[i].Time == "" {
			continue
		}
		if v := certs[i].ObservedValue; least == nil || v < *least {
			least = &v
		}
	}
	return least
}

// expiryStatus judges the time left on a certificate against its
// lifetime; with the lifetime unknown (<= 0) only expiry fails.
func expiryStatus(left, lifetime time.Duration) string {
	switch {
	case left <= 0:
		return statusFail
	case lifetime <= 0:
		return statusPass
	case left < lifetime/certFailFraction:
		return statusFail
	case left < lifetime/certWarnFraction:
		return statusWarn
	default:
		return statusPass
	}
}

// cachedNotBefore returns the NotBefore of the certificate in Caddy's
// cache for name that expires at notAfter (the one cert_metrics reports),
// or zero when it is gone.
func cachedNotBefore(name string, notAfter time.Time) time.Time {
	for _, c := range caddytls.AllMatchingCertificates(name) {
		if c.Leaf != nil && c.Leaf.NotAfter.Equal(notAfter) {
			return c.Leaf.NotBefore
		}
	}
	return time.Time{}
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
