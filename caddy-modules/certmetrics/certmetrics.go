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
//
// A config being loaded must not change what the running one reports: a
// reload that fails (a bad site, a port in use) would otherwise leave its
// max_names, or names from its half-started TLS app, in the live metrics.
// So Provision only takes a reference to the shared tracker; certificate
// events are held back until Caddy emits "started" (every app of the new
// config started), and only then is the new config's max_names applied and
// the held events recorded.
type App struct {
	// MaxNames bounds how many certificate names are tracked, and so the
	// cardinality of the `name` label. Names no longer managed are evicted
	// (see tracker.stale), so only current names count. Names beyond it
	// are ignored and logged once each. Default: 100.
	MaxNames int `json:"max_names,omitempty"`

	tracker *tracker
	logger  *zap.Logger
	held    *heldEvents
}

// heldEvents is an App's gate between its certificate events and the
// shared tracker.
type heldEvents struct {
	mu      sync.Mutex
	live    bool          // "started" seen: events go to the tracker
	pending []observation // events before that
}

// observation is one certificate event, as the tracker records it.
type observation struct {
	name      string
	failing   bool
	operation string // obtain | renew | "" (cached, no operation)
	result    string // success | failure
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
// It changes nothing the running config reports (see App).
func (a *App) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	a.held = new(heldEvents)
	if a.MaxNames == 0 {
		a.MaxNames = defaultMaxNames
	}
	val, _, err := trackers.LoadOrNew(trackerKey, func() (caddy.Destructor, error) {
		return newTracker(cachedNotAfter, time.Now), nil
	})
	if err != nil {
		return fmt.Errorf("loading tracker: %w", err)
	}
	a.tracker = val.(*tracker)

	eventsApp, err := ctx.App("events")
	if err != nil {
		return fmt.Errorf("loading events app: %w", err)
	}
	events := eventsApp.(*caddyevents.App)
	for _, name := range []string{"cached_managed_cert", "cert_obtained", "cert_failed", "started"} {
		if err := events.On(name, eventHandler{app: a}); err != nil {
			return fmt.Errorf("subscribing to %s: %w", name, err)
		}
	}

	if err := ctx.GetMetricsRegistry().Register(collector{tracker: a.tracker}); err != nil {
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

// Start implements caddy.App; the config goes live on "started" instead,
// because another app may still fail to start after this one.
func (a *App) Start() error { return nil }

// Stop implements caddy.App.
func (a *App) Stop() error { return nil }

// Cleanup releases this config generation's hold on the shared tracker.
func (a *App) Cleanup() error {
	_, err := trackers.Delete(trackerKey)
	return err
}

// commit makes this config the one the tracker follows: its max_names,
// stale names evicted, and the events held back since Provision.
func (a *App) commit() {
	a.held.mu.Lock()
	defer a.held.mu.Unlock()
	if a.held.live {
		return
	}
	a.held.live = true
	a.tracker.setMaxNames(a.MaxNames)
	for _, o := range a.held.pending {
		a.record(o)
	}
	a.held.pending = nil
}

// observe records o, or holds it back until the config is live.
func (a *App) observe(o observation) {
	a.held.mu.Lock()
	defer a.held.mu.Unlock()
	if !a.held.live {
		a.held.pending = append(a.held.pending, o)
		return
	}
	a.record(o)
}

func (a *App) record(o observation) {
	if o.operation != "" {
		a.tracker.count(o.operation, o.result)
	}
	if o.name == "" {
		return
	}
	tracked, firstDrop := a.tracker.observe(o.name, o.failing)
	if !tracked && firstDrop {
		a.logger.Warn("certificate name not tracked: max_names reached",
			zap.String("name", o.name), zap.Int("max_names", a.MaxNames))
	}
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
	return a.tracker.certificates()
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

// How long a name without a cached certificate stays tracked after its
// last event. A failing name is retried by certmagic at least every 6
// hours for 30 days, each attempt a cert_failed event, so a day without
// one means nobody manages it any more. A name that is not failing has its
// certificate cached right after cert_obtained; without one (Caddy drops
// certificates a new config no longer manages) it is gone once this short
// grace has passed.
const (
	failingStaleAfter = 24 * time.Hour
	cachedStaleAfter  = time.Minute
)

// maxRefusedLogged bounds the set of names refused for max_names that
// have been logged (each is logged once).
const maxRefusedLogged = 1000

// tracker is the reload-surviving state: known names and operation counts.
type tracker struct {
	lookup func(string) time.Time // NotAfter of the cached certificate, zero if none
	now    func() time.Time

	mu       sync.Mutex
	maxNames int
	names    map[string]nameState
	dropped  map[string]struct{} // names refused for max_names, logged once each
	ops      map[opKey]uint64
}

type nameState struct {
	// failing is true when the latest event for the name was a failed
	// obtain or renew, so a name with no certificate yet is still reported.
	failing bool
	// lastEvent is when the latest event for the name arrived.
	lastEvent time.Time
}

type opKey struct {
	operation string // obtain | renew
	result    string // success | failure
}

func newTracker(lookup func(string) time.Time, now func() time.Time) *tracker {
	t := &tracker{
		lookup:   lookup,
		now:      now,
		maxNames: defaultMaxNames,
		names:    make(map[string]nameState),
		dropped:  make(map[string]struct{}),
		ops:      make(map[opKey]uint64),
	}
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
	defer t.mu.Unlock()
	t.maxNames = n
	t.evictLocked()
}

// observe records an event for name. It reports whether the name is
// tracked, and, when it is not (max_names reached even after evicting
// stale names), whether this is the first time the name was refused.
func (t *tracker) observe(name string, failing bool) (tracked, firstDrop bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, known := t.names[name]; !known && len(t.names) >= t.maxNames {
		t.evictLocked()
		if len(t.names) >= t.maxNames {
			if _, seen := t.dropped[name]; seen || len(t.dropped) >= maxRefusedLogged {
				// Bounded memory: past that many refused names, the rest
				// are refused without a line each.
				return false, false
			}
			t.dropped[name] = struct{}{}
			return false, true
		}
	}
	delete(t.dropped, name)
	t.names[name] = nameState{failing: failing, lastEvent: t.now()}
	return true, false
}

// evictLocked forgets the names that are no longer managed: no cached
// certificate, and no event for longer than the grace of their kind.
func (t *tracker) evictLocked() {
	now := t.now()
	for n, s := range t.names {
		grace := cachedStaleAfter
		if s.failing {
			grace = failingStaleAfter
		}
		if now.Sub(s.lastEvent) > grace && t.lookup(n).IsZero() {
			delete(t.names, n)
		}
	}
}

func (t *tracker) count(operation, result string) {
	t.mu.Lock()
	t.ops[opKey{operation, result}]++
	t.mu.Unlock()
}

// certificates lists names with a cached certificate or a failing first
// obtain. Names whose certificate left the cache without a failure (no
// longer managed after a reload) are not reported.
func (t *tracker) certificates() []Certificate {
	t.mu.Lock()
	names := make(map[string]nameState, len(t.names))
	for n, s := range t.names {
		names[n] = s
	}
	t.mu.Unlock()
	out := make([]Certificate, 0, len(names))
	for n, s := range names {
		notAfter := t.lookup(n)
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

// eventHandler feeds Caddy's events into the app.
type eventHandler struct {
	app *App
}

// Handle implements caddyevents.Handler.
func (h eventHandler) Handle(_ context.Context, e caddy.Event) error {
	renewal, _ := e.Data["renewal"].(bool)
	operation := "obtain"
	if renewal {
		operation = "renew"
	}
	id, _ := e.Data["identifier"].(string)
	switch e.Name() {
	case "started":
		h.app.commit()
	case "cached_managed_cert":
		sans, _ := e.Data["sans"].([]string)
		for _, san := range sans {
			h.app.observe(observation{name: san})
		}
	case "cert_obtained":
		h.app.observe(observation{name: id, operation: operation, result: "success"})
	case "cert_failed":
		h.app.observe(observation{name: id, failing: true, operation: operation, result: "failure"})
	}
	return nil
}

// collector exports the tracker on a Prometheus registry. Values are read
// at scrape time so the expiry is always what Caddy serves right now.
type collector struct {
	tracker *tracker
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
	for _, cert := range c.tracker.certificates() {
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
