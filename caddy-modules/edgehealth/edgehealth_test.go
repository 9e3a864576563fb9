package edgehealth

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/finetune-studio/finetune-studio/caddy-modules/certmetrics"
)

func TestUnmarshalCaddyfile(t *testing.T) {
	for _, tc := range []struct {
		name    string
		input   string
		want    Handler
		wantErr string
	}{
		{"inline upstreams", `edge_health a:1 b:2`, Handler{Upstreams: []string{"a:1", "b:2"}}, ""},
		{"no upstreams", `edge_health`, Handler{}, ""},
		{"block", "edge_health a:1 {\nupstreams b:2\nready_path /ready\ntimeout 1s\ncache_ttl 3s\ncert_warn_days 30\n}",
			Handler{Upstreams: []string{"a:1", "b:2"}, ReadyPath: "/ready", Timeout: caddy.Duration(time.Second), CacheTTL: caddy.Duration(3 * time.Second), CertWarnDays: 30}, ""},
		{"bad timeout", "edge_health {\ntimeout fast\n}", Handler{}, "parsing timeout"},
		{"bad days", "edge_health {\ncert_warn_days -1\n}", Handler{}, "positive integer"},
		{"ready_path two args", "edge_health {\nready_path /a /b\n}", Handler{}, "wrong argument count"},
		{"unknown", "edge_health {\nverbose\n}", Handler{}, "unrecognized"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got Handler
			err := got.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(got.Upstreams, ",") != strings.Join(tc.want.Upstreams, ",") || got.ReadyPath != tc.want.ReadyPath ||
				got.Timeout != tc.want.Timeout || got.CacheTTL != tc.want.CacheTTL || got.CertWarnDays != tc.want.CertWarnDays {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	if err := (&Handler{Upstreams: []string{"no-port"}}).Validate(); err == nil {
		t.Error("upstream without port accepted")
	}
	if err := (&Handler{Upstreams: []string{"app:8080", "[::1]:8080"}}).Validate(); err != nil {
		t.Errorf("valid upstreams refused: %v", err)
	}
}

type fakeCerts []certmetrics.Certificate

func (f fakeCerts) Certificates() []certmetrics.Certificate { return f }

// app is a stub upstream answering /readyz with a fixed status.
func app(t *testing.T, code int, body string, hits *atomic.Int64) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits != nil {
			hits.Add(1)
		}
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/health+json")
		w.WriteHeader(code)
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// newHandler provisions a handler without a Caddy context: the parts
// Provision would load are injected.
func newHandler(upstreams []string, certs certificateSource, now func() time.Time) *Handler {
	h := &Handler{Upstreams: upstreams, ReadyPath: defaultReadyPath, Timeout: caddy.Duration(2 * time.Second),
		CacheTTL: caddy.Duration(5 * time.Second), CertWarnDays: defaultCertWarnDays}
	h.client = &http.Client{Timeout: time.Duration(h.Timeout)}
	h.certs = certs
	h.now = now
	h.started = now()
	h.logger = zap.NewNop()
	h.cache = new(readinessCache)
	return h
}

type report struct {
	Status string `json:"status"`
	Checks map[string][]struct {
		ComponentID   string  `json:"componentId"`
		Status        string  `json:"status"`
		ObservedValue float64 `json:"observedValue"`
	} `json:"checks"`
}

func serve(t *testing.T, h *Handler, method string) (*httptest.ResponseRecorder, report, error) {
	t.Helper()
	w := httptest.NewRecorder()
	err := h.ServeHTTP(w, httptest.NewRequest(method, "/health", nil), nil)
	var rep report
	if err == nil && method == "GET" {
		if jerr := json.Unmarshal(w.Body.Bytes(), &rep); jerr != nil {
			t.Fatalf("body is not JSON: %v: %s", jerr, w.Body.String())
		}
	}
	return w, rep, err
}

func TestServeHTTP(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	pass := app(t, 200, `{"status":"pass"}`, nil)
	warn := app(t, 200, `{"status":"warn"}`, nil)
	fail := app(t, 503, `{"status":"fail"}`, nil)
	garbage := app(t, 200, `<html>`, nil)
	down := "127.0.0.1:1"
	longCert := fakeCerts{{Name: "studio.example", NotAfter: now.Add(60 * 24 * time.Hour)}}

	for _, tc := range []struct {
		name       string
		upstreams  []string
		certs      fakeCerts
		wantStatus string
		wantCode   int
		wantApp    string
		wantCert   string
	}{
		{"all pass", []string{pass}, longCert, "pass", 200, "pass", "pass"},
		{"app warns", []string{warn}, longCert, "warn", 200, "warn", "pass"},
		{"one of two down is a warning", []string{pass, down}, longCert, "warn", 200, "warn", "pass"},
		{"all down", []string{down, fail}, longCert, "fail", 503, "fail", "pass"},
		{"app answers garbage", []string{garbage}, nil, "fail", 503, "fail", ""},
		{"certificate under 14 days", []string{pass}, fakeCerts{{Name: "studio.example", NotAfter: now.Add(13 * 24 * time.Hour)}}, "warn", 200, "pass", "warn"},
		{"certificate expired", []string{pass}, fakeCerts{{Name: "studio.example", NotAfter: now.Add(-time.Minute)}}, "fail", 503, "pass", "fail"},
		{"certificate not obtained yet", []string{pass}, fakeCerts{{Name: "studio.example"}}, "warn", 200, "pass", "warn"},
		{"no upstreams configured", nil, longCert, "pass", 200, "", "pass"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHandler(tc.upstreams, tc.certs, clock)
			w, rep, err := serve(t, h, "GET")
			if err != nil {
				t.Fatal(err)
			}
			if w.Code != tc.wantCode || rep.Status != tc.wantStatus {
				t.Errorf("got %d %q, want %d %q: %s", w.Code, rep.Status, tc.wantCode, tc.wantStatus, w.Body)
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/health+json" {
				t.Errorf("Content-Type = %q", ct)
			}
			if cc := w.Header().Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control = %q", cc)
			}
			if got := statusOf(rep, "app:readiness"); got != tc.wantApp {
				t.Errorf("app:readiness = %q, want %q", got, tc.wantApp)
			}
			if got := statusOf(rep, "certificate:expiry"); got != tc.wantCert {
				t.Errorf("certificate:expiry = %q, want %q", got, tc.wantCert)
			}
			for _, u := range tc.upstreams {
				if strings.Contains(w.Body.String(), u) {
					t.Errorf("answer names upstream %s: %s", u, w.Body)
				}
			}
			for _, leak := range []string{"refused", "dial", "invalid character"} {
				if strings.Contains(w.Body.String(), leak) {
					t.Errorf("answer leaks error text %q: %s", leak, w.Body)
				}
			}
		})
	}
}

func statusOf(rep report, key string) string {
	if c := rep.Checks[key]; len(c) > 0 {
		return c[0].Status
	}
	return ""
}

func TestReadinessIsCached(t *testing.T) {
	var hits atomic.Int64
	upstream := app(t, 200, `{"status":"pass"}`, &hits)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	h := newHandler([]string{upstream}, nil, func() time.Time { return now })
	for range 10 {
		if _, _, err := serve(t, h, "GET"); err != nil {
			t.Fatal(err)
		}
	}
	if got := hits.Load(); got != 1 {
		t.Errorf("app asked %d times within the cache TTL, want 1", got)
	}
	now = now.Add(6 * time.Second)
	serve(t, h, "GET")
	if got := hits.Load(); got != 2 {
		t.Errorf("app asked %d times after the TTL, want 2", got)
	}
}

func TestMethods(t *testing.T) {
	h := newHandler(nil, nil, time.Now)
	w, _, err := serve(t, h, "HEAD")
	if err != nil || w.Code != 200 || w.Body.Len() != 0 {
		t.Errorf("HEAD: %d, %d bytes, %v", w.Code, w.Body.Len(), err)
	}
	_, _, err = serve(t, h, "POST")
	if he, ok := err.(caddyhttp.HandlerError); !ok || he.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: got %v, want a 405 handler error", err)
	}
}

func TestHealthcheckCommand(t *testing.T) {
	for _, tc := range []struct {
		name   string
		code   int
		body   string
		wantOK bool
	}{
		{"pass", 200, `{"status":"pass"}`, true},
		{"warn", 200, `{"status":"warn"}`, true},
		{"fail", 503, `{"status":"fail"}`, false},
		{"200 but fail", 200, `{"status":"fail"}`, false},
		{"not health json", 200, `ok`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tc.code)
				io.WriteString(w, tc.body)
			}))
			defer srv.Close()
			err := healthcheck(context.Background(), srv.URL)
			if (err == nil) != tc.wantOK {
				t.Errorf("healthcheck = %v, want ok=%v", err, tc.wantOK)
			}
		})
	}
	if err := healthcheck(context.Background(), "http://127.0.0.1:1/health"); err == nil {
		t.Error("healthcheck of a closed port succeeded")
	}
}
