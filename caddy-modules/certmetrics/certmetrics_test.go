package certmetrics

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
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

func TestEventsAndCollector(t *testing.T) {
	tr := newTracker()
	tr.setMaxNames(3)
	h := eventHandler{tracker: tr, logger: zap.NewNop()}
	for _, e := range []caddy.Event{
		event(t, "cached_managed_cert", map[string]any{"sans": []string{"a.example", "www.a.example"}}),
		event(t, "cert_obtained", map[string]any{"renewal": false, "identifier": "b.example"}),
		event(t, "cert_obtained", map[string]any{"renewal": true, "identifier": "a.example"}),
		event(t, "cert_failed", map[string]any{"renewal": true, "identifier": "b.example"}),
		event(t, "cert_failed", map[string]any{"renewal": false, "identifier": "c.example"}), // beyond max_names
		event(t, "tls_get_certificate", map[string]any{"identifier": "ignored.example"}),
	} {
		if err := h.Handle(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}

	expiry := time.Unix(1900000000, 0)
	cached := map[string]time.Time{"a.example": expiry, "www.a.example": expiry}
	lookup := func(name string) time.Time { return cached[name] }

	got := tr.certificates(lookup)
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
	if err := reg.Register(collector{tracker: tr, lookup: lookup}); err != nil {
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
	if err := h.Handle(context.Background(), event(t, "cert_obtained", map[string]any{"renewal": true, "identifier": "b.example"})); err != nil {
		t.Fatal(err)
	}
	for _, c := range tr.certificates(lookup) {
		if c.Name == "b.example" {
			t.Errorf("b.example reported with no cached certificate and no failure")
		}
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
