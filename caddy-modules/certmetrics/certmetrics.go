// Package certmetrics is a Caddy app that tracks the certificates Caddy
// manages and exports their expiry and the outcome of obtain/renew
// operations on Caddy's metrics registry.
//
// Stock Caddy exports no certificate-expiry metric, so an expired or
// failing certificate is only noticed by users. The app learns the managed
// names from Caddy's certificate events (cached_managed_cert, cert_obtained,
// cert_failed), reads the current expiry from Caddy's certificate cache at
// scrape time, and keeps its state in a caddy.UsagePool so counters and
// known names survive config reloads (a reload does not re-emit events for
// certificates already in the cache).
package certmetrics

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"
	"github.com/caddyserver/caddy/v2/modules/caddytls"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(App{})
}

// trackers holds the one tracker shared by every config generation.
var trackers = caddy.NewUsagePool()

const trackerKey = "cert_metrics"

// App is the `cert_metrics` Caddy app.
type App struct {
	// MaxNames bounds how many certificate names are tracked, and so the
	// cardinality of the `name` label. Names beyond it are ignored (and
	// logged once each). Default: 100.
	MaxNames int `json:"max_names,omitempty"`

	tracker *tracker
	logger  *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "cert_metrics",
		New: func() caddy.Module { return new(App) },
	}
}

const defaultMaxNames = 100

// Provision subscribes to certificate events and registers the collector.
func (a *App) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	if a.MaxNames == 0 {
		a.MaxNames = defaultMaxNames
	}
	val, _, err := trackers.LoadOrNew(trackerKey, func() (caddy.Destructor, error) {
		return newTracker(), nil
	})
	if err != nil {
		return fmt.Errorf("loading tracker: %w", err)
	}
	a.tracker = val.(*tracker)
	a.tracker.setMaxNames(a.MaxNames)

	eventsApp, err := ctx.App("events")
	if err != nil {
		return fmt.Errorf("loading events app: %w", err)
	}
	events := eventsApp.(*caddyevents.App)
	for _, name := range []string{"cached_managed_cert", "cert_obtained", "cert_failed"} {
		if err := events.On(name, eventHandler{tracker: a.tracker, logger: a.logger}); err != nil {
			return fmt.Errorf("subscribing to %s: %w", name, err)
		}
	}

	if err := ctx.GetMetricsRegistry().Register(collector{tracker: a.tracker, lookup: cachedNotAfter}); err != nil {
		return fmt.Errorf("registering metrics: %w", err)
	}
	return nil
}

// Validate checks the configuration.
func (a *App) Validate() error {
	if a.MaxNames < 0 {
		return fmt.Errorf("max_names must not be negative")
	}
	return nil
}

// Start implements caddy.App; all work happens on events and scrapes.
func (a *App) Start() error { return nil }

// Stop implements caddy.App.
func (a *App) Stop() error { return nil }

// Cleanup releases this config generation's hold on the shared tracker.
func (a *App) Cleanup() error {
	_, err := trackers.Delete(trackerKey)
	return err
}

// Certificate is the state of one managed certificate name.
type Certificate struct {
	// Name is the managed name (subject) as configured.
	Name string
	// NotAfter is the expiry of the newest cached certificate for Name;
	// zero when none is cached yet (first obtain pending or failing).
	NotAfter time.Time
}

// Certificates returns the tracked names, sorted, with the expiry of the
// certificate Caddy currently serves for each.
func (a *App) Certificates() []Certificate {
	return a.tracker.certificates(cachedNotAfter)
}

// cachedNotAfter returns the latest NotAfter among the certificates in
// Caddy's cache that match name.
func cachedNotAfter(name string) time.Time {
	var latest time.Time
	for _, c := range caddytls.AllMatchingCertificates(name) {
		if c.Leaf != nil && c.Leaf.NotAfter.After(latest) {
			latest = c.Leaf.NotAfter
		}
	}
	return latest
}

// tracker is the reload-surviving state: known names and operation counts.
type tracker struct {
	mu       sync.Mutex
	maxNames int
	names    map[string]nameState
	ops      map[opKey]uint64
}

type nameState struct {
	// failing is true when the latest event for the name was a failed
	// obtain or renew, so a name with no certificate yet is still reported.
	failing bool
}

type opKey struct {
	operation string // obtain | renew
	result    string // success | failure
}

func newTracker() *tracker {
	t := &tracker{names: make(map[string]nameState), ops: make(map[opKey]uint64)}
	for _, op := range []string{"obtain", "renew"} {
		for _, res := range []string{"success", "failure"} {
			t.ops[opKey{op, res}] = 0
		}
	}
	return t
}

// Destruct implements caddy.Destructor.
func (t *tracker) Destruct() error { return nil }

func (t *tracker) setMaxNames(n int) {
	t.mu.Lock()
	t.maxNames = n
	t.mu.Unlock()
}

// observe records an event; it reports false when the name was dropped
// because the tracker is full.
func (t *tracker) observe(name string, failing bool) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, known := t.names[name]; !known && len(t.names) >= t.maxNames {
		return false
	}
	t.names[name] = nameState{failing: failing}
	return true
}

func (t *tracker) count(operation, result string) {
	t.mu.Lock()
	t.ops[opKey{operation, result}]++
	t.mu.Unlock()
}

// certificates lists names with a cached certificate or a failing first
// obtain. Names whose certificate left the cache without a failure (no
// longer managed after a reload) are not reported.
func (t *tracker) certificates(lookup func(string) time.Time) []Certificate {
	t.mu.Lock()
	names := make(map[string]nameState, len(t.names))
	for n, s := range t.names {
		names[n] = s
	}
	t.mu.Unlock()
	out := make([]Certificate, 0, len(names))
	for n, s := range names {
		notAfter := lookup(n)
		if notAfter.IsZero() && !s.failing {
			continue
		}
		out = append(out, Certificate{Name: n, NotAfter: notAfter})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (t *tracker) operations() map[opKey]uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[opKey]uint64, len(t.ops))
	for k, v := range t.ops {
		out[k] = v
	}
	return out
}

// eventHandler feeds certificate events into the tracker.
type eventHandler struct {
	tracker *tracker
	logger  *zap.Logger
}

// Handle implements caddyevents.Handler.
func (h eventHandler) Handle(_ context.Context, e caddy.Event) error {
	renewal, _ := e.Data["renewal"].(bool)
	operation := "obtain"
	if renewal {
		operation = "renew"
	}
	switch e.Name() {
	case "cached_managed_cert":
		sans, _ := e.Data["sans"].([]string)
		for _, san := range sans {
			h.track(san, false)
		}
	case "cert_obtained":
		h.tracker.count(operation, "success")
		if id, ok := e.Data["identifier"].(string); ok {
			h.track(id, false)
		}
	case "cert_failed":
		h.tracker.count(operation, "failure")
		if id, ok := e.Data["identifier"].(string); ok {
			h.track(id, true)
		}
	}
	return nil
}

func (h eventHandler) track(name string, failing bool) {
	if !h.tracker.observe(name, failing) {
		h.logger.Warn("certificate name not tracked: max_names reached", zap.String("name", name))
	}
}

// collector exports the tracker on a Prometheus registry. Values are read
// at scrape time so the expiry is always what Caddy serves right now.
type collector struct {
	tracker *tracker
	lookup  func(string) time.Time
}

var (
	notAfterDesc = prometheus.NewDesc(
		"edge_tls_certificate_not_after_timestamp_seconds",
		"Expiry (NotAfter, Unix seconds) of the certificate Caddy serves for each managed name.",
		[]string{"name"}, nil)
	operationsDesc = prometheus.NewDesc(
		"edge_tls_certificate_operations_total",
		"Certificate obtain and renew attempts by outcome, from Caddy's certificate events.",
		[]string{"operation", "result"}, nil)
)

// Describe implements prometheus.Collector.
func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- notAfterDesc
	ch <- operationsDesc
}

// Collect implements prometheus.Collector.
func (c collector) Collect(ch chan<- prometheus.Metric) {
	for _, cert := range c.tracker.certificates(c.lookup) {
		if cert.NotAfter.IsZero() {
			continue
		}
		ch <- prometheus.MustNewConstMetric(notAfterDesc, prometheus.GaugeValue,
			float64(cert.NotAfter.Unix()), cert.Name)
	}
	for k, v := range c.tracker.operations() {
		ch <- prometheus.MustNewConstMetric(operationsDesc, prometheus.CounterValue,
			float64(v), k.operation, k.result)
	}
}

// Interface guards
var (
	_ caddy.App            = (*App)(nil)
	_ caddy.Provisioner    = (*App)(nil)
	_ caddy.Validator      = (*App)(nil)
	_ caddy.CleanerUpper   = (*App)(nil)
	_ caddyevents.Handler  = eventHandler{}
	_ prometheus.Collector = collector{}
)
