package certmetrics

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func TestUnmarshalCaddyfile(t *testing.T) {
	for _, tc := range []struct {
		name    string
		input   string
		want    int
		wantErr string
	}{
		{"bare", `cert_metrics`, 0, ""},
		{"max_names", "cert_metrics {\nmax_names 7\n}", 7, ""},
		{"max_names zero", "cert_metrics {\nmax_names 0\n}", 0, "positive integer"},
		{"max_names text", "cert_metrics {\nmax_names many\n}", 0, "positive integer"},
		{"max_names two args", "cert_metrics {\nmax_names 1 2\n}", 0, "wrong argument count"},
		{"inline argument", `cert_metrics 5`, 0, "wrong argument count"},
		{"unknown option", "cert_metrics {\nnames a.example\n}", 0, "unrecognized"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var a App
			err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || a.MaxNames != tc.want {
				t.Fatalf("got max_names %d, err %v; want %d", a.MaxNames, err, tc.want)
			}
		})
	}
}

func event(t *testing.T, name string, data map[string]any) caddy.Event {
	t.Helper()
	e, err := caddy.NewEvent(caddy.Context{Context: context.Background()}, name, data)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// fakeCache stands for Caddy's certificate cache and clock.
type fakeCache struct {
	notAfter map[string]time.Time
	now      time.Time
}

func (c *fakeCache) lookup(name string) time.Time { return c.notAfter[name] }
func (c *fakeCache) clock() time.Time             { return c.now }

// liveApp is an App whose config has started, over tr, logging to logs.
func liveApp(t *testing.T, tr *tracker, maxNames int) (*App, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zap.WarnLevel)
	a := &App{MaxNames: maxNames, tracker: tr, logger: zap.New(core), held: new(heldEvents)}
	handle(t, a, event(t, "started", nil))
	return a, logs
}

func handle(t *testing.T, a *App, events ...caddy.Event) {
	t.Helper()
	for _, e := range events {
		if err := (eventHandler{app: a}).Handle(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
}

func TestEventsAndCollector(t *testing.T) {
	expiry := time.Unix(1900000000, 0)
	cache := &fakeCache{notAfter: map[string]time.Time{"a.example": expiry, "www.a.example": expiry}, now: time.Unix(1800000000, 0)}
	tr := newTracker(cache.lookup, cache.clock)
	a, _ := liveApp(t, tr, 3)
	handle(t, a,
		event(t, "cached_managed_cert", map[string]any{"sans": []string{"a.example", "www.a.example"}}),
		event(t, "cert_obtained", map[string]any{"renewal": false, "identifier": "b.example"}),
		event(t, "cert_obtained", map[string]any{"renewal": true, "identifier": "a.example"}),
		event(t, "cert_failed", map[string]any{"renewal": true, "identifier": "b.example"}),
		event(t, "cert_failed", map[string]any{"renewal": false, "identifier": "c.example"}), // beyond max_names
		event(t, "tls_get_certificate", map[string]any{"identifier": "ignored.example"}),
	)

	got := tr.certificates()
	var names []string
	for _, c := range got {
		names = append(names, c.Name)
	}
	// b.example has no certificate but its last event failed: reported.
	// c.example was dropped: max_names is 3.
	if strings.Join(names, ",") != "a.example,b.example,www.a.example" {
		t.Fatalf("tracked names = %v", names)
	}

	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(collector{tracker: tr}); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP edge_tls_certificate_not_after_timestamp_seconds Expiry (NotAfter, Unix seconds) of the certificate Caddy serves for each managed name.
# TYPE edge_tls_certificate_not_after_timestamp_seconds gauge
edge_tls_certificate_not_after_timestamp_seconds{name="a.example"} 1.9e+09
edge_tls_certificate_not_after_timestamp_seconds{name="www.a.example"} 1.9e+09
# HELP edge_tls_certificate_operations_total Certificate obtain and renew attempts by outcome, from Caddy's certificate events.
# TYPE edge_tls_certificate_operations_total counter
edge_tls_certificate_operations_total{operation="obtain",result="failure"} 1
edge_tls_certificate_operations_total{operation="obtain",result="success"} 1
edge_tls_certificate_operations_total{operation="renew",result="failure"} 1
edge_tls_certificate_operations_total{operation="renew",result="success"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}

	// A later success clears the failure; once the certificate leaves the
	// cache (no longer managed after a reload) the name is not reported.
	handle(t, a, event(t, "cert_obtained", map[string]any{"renewal": true, "identifier": "b.example"}))
	for _, c := range tr.certificates() {
		if c.Name == "b.example" {
			t.Errorf("b.example reported with no cached certificate and no failure")
		}
	}
}

// Names no longer managed must not hold max_names forever.
func TestStaleNamesAreEvicted(t *testing.T) {
	expiry := time.Unix(1900000000, 0)
	cache := &fakeCache{notAfter: map[string]time.Time{"a.example": expiry}, now: time.Unix(1800000000, 0)}
	tr := newTracker(cache.lookup, cache.clock)
	a, _ := liveApp(t, tr, 2)
	handle(t, a,
		event(t, "cached_managed_cert", map[string]any{"sans": []string{"a.example"}}),
		event(t, "cert_failed", map[string]any{"identifier": "b.example"}),
	)
	tracked := func() string {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		var names []string
		for n := range tr.names {
			names = append(names, n)
		}
		slices.Sort(names)
		return strings.Join(names, ",")
	}
	arrive := func(name string) {
		t.Helper()
		handle(t, a, event(t, "cached_managed_cert", map[string]any{"sans": []string{name}}))
		cache.notAfter[name] = expiry
	}

	// A reload drops a.example: Caddy removes its certificate from the cache.
	delete(cache.notAfter, "a.example")
	cache.now = cache.now.Add(cachedStaleAfter / 2)
	arrive("c.example")
	if got := tracked(); got != "a.example,b.example" {
		t.Fatalf("within the grace after its last event a.example must stay; tracked %s", got)
	}
	cache.now = cache.now.Add(cachedStaleAfter)
	arrive("c.example")
	if got := tracked(); got != "b.example,c.example" {
		t.Fatalf("a.example (no certificate, no event for %s) not evicted for c.example; tracked %s", cachedStaleAfter, got)
	}

	// A failing name is retried by certmagic for days: it stays a day.
	cache.now = cache.now.Add(failingStaleAfter - time.Hour)
	arrive("d.example")
	if got := tracked(); got != "b.example,c.example" {
		t.Fatalf("failing b.example evicted within a day; tracked %s", got)
	}
	cache.now = cache.now.Add(2 * time.Hour)
	arrive("d.example")
	if got := tracked(); got != "c.example,d.example" {
		t.Fatalf("b.example (failing, no event for a day) not evicted; tracked %s", got)
	}
}

func TestDroppedNameIsLoggedOnce(t *testing.T) {
	cache := &fakeCache{notAfter: map[string]time.Time{"a.example": time.Unix(1900000000, 0)}, now: time.Unix(1800000000, 0)}
	tr := newTracker(cache.lookup, cache.clock)
	a, logs := liveApp(t, tr, 1)
	handle(t, a, event(t, "cached_managed_cert", map[string]any{"sans": []string{"a.example"}}))
	for range 3 {
		handle(t, a,
			event(t, "cert_failed", map[string]any{"identifier": "b.example"}),
			event(t, "cert_failed", map[string]any{"identifier": "c.example"}),
		)
	}
	if got := logs.FilterMessage("certificate name not tracked: max_names reached").Len(); got != 2 {
		t.Fatalf("%d warnings for 2 names refused 3 times each, want 2 (once per name)", got)
	}
	// Refused names count as operations all the same.
	if got := tr.operations()[opKey{"obtain", "failure"}]; got != 6 {
		t.Errorf("obtain failures = %d, want 6", got)
	}
}

// Until Caddy reports the new config started, its certificate events and
// its max_names must not reach the tracker the running config reports.
func TestEventsWaitForStarted(t *testing.T) {
	cache := &fakeCache{notAfter: map[string]time.Time{}, now: time.Unix(1800000000, 0)}
	tr := newTracker(cache.lookup, cache.clock)
	running, _ := liveApp(t, tr, 5)
	handle(t, running, event(t, "cert_failed", map[string]any{"identifier": "a.example"}))

	next := &App{MaxNames: 1, tracker: tr, logger: zap.NewNop(), held: new(heldEvents)}
	handle(t, next,
		event(t, "cert_failed", map[string]any{"identifier": "b.example"}),
		event(t, "cert_obtained", map[string]any{"identifier": "b.example"}),
	)
	if got := len(tr.certificates()); got != 1 || tr.maxNames != 5 {
		t.Fatalf("before started: %d names, max_names %d; want 1 and 5 (unchanged)", got, tr.maxNames)
	}
	if got := tr.operations()[opKey{"obtain", "success"}]; got != 0 {
		t.Fatalf("before started: obtain successes = %d, want 0", got)
	}
	handle(t, next, event(t, "started", nil))
	if tr.maxNames != 1 || tr.operations()[opKey{"obtain", "success"}] != 1 || tr.operations()[opKey{"obtain", "failure"}] != 2 {
		t.Fatalf("after started: max_names %d, ops %v", tr.maxNames, tr.operations())
	}
}

// A reload that fails validation must leave the running config's
// tracker as it was (Provision used to set max_names on it).
func TestFailedReloadKeepsLiveState(t *testing.T) {
	storage := t.TempDir()
	load := func(maxNames int) error {
		cfg := fmt.Sprintf(`{"admin":{"disabled":true},"storage":{"module":"file_system","root":%q},"apps":{"cert_metrics":{"max_names":%d}}}`, storage, maxNames)
		return caddy.Load([]byte(cfg), true)
	}
	if err := load(5); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { caddy.Stop() })
	live := func() *tracker {
		var tr *tracker
		trackers.Range(func(_, v any) bool { tr = v.(*tracker); return false })
		if tr == nil {
			t.Fatal("no tracker in the pool")
		}
		return tr
	}
	if got := live().maxNames; got != 5 {
		t.Fatalf("running config: max_names %d, want 5", got)
	}
	if err := load(-1); err == nil || !strings.Contains(err.Error(), "max_names must not be negative") {
		t.Fatalf("loading max_names -1: %v, want the validation error", err)
	}
	if got := live().maxNames; got != 5 {
		t.Fatalf("after a failed reload max_names is %d, want 5 (the running config's)", got)
	}
}

func TestValidate(t *testing.T) {
	if err := (&App{MaxNames: -1}).Validate(); err == nil {
		t.Error("negative max_names accepted")
	}
	if err := (&App{}).Validate(); err != nil {
		t.Errorf("zero max_names (default) refused: %v", err)
	}
}
