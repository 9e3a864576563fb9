package edgehealth

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/finetune-studio/finetune-studio/caddy-modules/certmetrics"
)

func TestUnmarshalCaddyfile(t *testing.T) {
	for _, tc := range []struct {
		name    string
		input   string
		want    string
		wantErr string
	}{
		{"no options", `edge_health`, "", ""},
		{"full", "edge_health {\nreport full\n}", ReportFull, ""},
		{"liveness", "edge_health {\nreport liveness\n}", ReportLiveness, ""},
		{"unknown report", "edge_health {\nreport everything\n}", "", "report must be"},
		{"report two args", "edge_health {\nreport full status\n}", "", "wrong argument count"},
		{"report no arg", "edge_health {\nreport\n}", "", "wrong argument count"},
		{"upstreams are no longer listed", `edge_health app:8080`, "", "takes no arguments"},
		{"unknown option", "edge_health {\ncert_warn_days 14\n}", "", "unrecognized"},
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
			if got.Report != tc.want {
				t.Errorf("report = %q, want %q", got.Report, tc.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	for _, r := range []string{ReportLiveness, ReportStatus, ReportFull} {
		if err := (&Handler{Report: r}).Validate(); err != nil {
			t.Errorf("report %q refused: %v", r, err)
		}
	}
	if err := (&Handler{Report: "verbose"}).Validate(); err == nil {
		t.Error("report verbose accepted")
	}
}

type fakeCerts []certmetrics.Certificate

func (f fakeCerts) Certificates() []certmetrics.Certificate { return f }

// fakeUpstream is an upstream whose proxy-side health the test sets.
type fakeUpstream struct {
	addr    string
	healthy bool
}

func (u fakeUpstream) String() string { return u.addr }
func (u fakeUpstream) Healthy() bool  { return u.healthy }

// newHandler provisions a handler without a Caddy context: the parts
// Provision would load are injected. Certificates are issued `lifetime`
// before their NotAfter.
func newHandler(report string, ups []upstream, certs certificateSource, lifetime time.Duration, now func() time.Time) *Handler {
	h := &Handler{Report: report}
	h.logger = zap.NewNop()
	h.now = now
	h.started = now()
	h.certs = certs
	h.validFrom = func(_ string, notAfter time.Time) time.Time {
		if lifetime == 0 {
			return time.Time{}
		}
		return notAfter.Add(-lifetime)
	}
	h.upstreams = &upstreamList{find: func() []upstream { return ups }}
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

func TestFullReport(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	up := fakeUpstream{"app-1:8080", true}
	down := fakeUpstream{"app-2:8080", false}
	const day = 24 * time.Hour
	cert := func(left time.Duration) fakeCerts {
		return fakeCerts{{Name: "studio.example", NotAfter: now.Add(left)}}
	}

	for _, tc := range []struct {
		name       string
		upstreams  []upstream
		certs      fakeCerts
		lifetime   time.Duration
		wantStatus string
		wantCode   int
		wantApp    string
		wantReady  float64
		wantCert   string
	}{
		{"all pass", []upstream{up}, cert(60 * day), 90 * day, "pass", 200, "pass", 1, "pass"},
		{"one of two down is a warning", []upstream{up, down}, cert(60 * day), 90 * day, "warn", 200, "warn", 1, "pass"},
		{"all down", []upstream{down}, cert(60 * day), 90 * day, "fail", 503, "fail", 0, "pass"},
		{"an address one of two proxies finds down is down", []upstream{up, fakeUpstream{"app-1:8080", false}}, nil, 0, "fail", 503, "fail", 0, ""},
		{"two proxies, same healthy address, one instance", []upstream{up, up}, nil, 0, "pass", 200, "pass", 1, ""},
		{"no proxy", nil, cert(60 * day), 90 * day, "pass", 200, "", 0, "pass"},
		// Caddy's internal CA: 12-hour certificates renewed with 4 hours left.
		{"12-hour internal certificate, 6 hours left", nil, cert(6 * time.Hour), 12 * time.Hour, "pass", 200, "", 0, "pass"},
		{"12-hour internal certificate, 1 hour left", nil, cert(time.Hour), 12 * time.Hour, "warn", 200, "", 0, "warn"},
		// Let's Encrypt's short-lived profile: about 6 days.
		{"6-day certificate, 3 days left", nil, cert(3 * day), 6 * day, "pass", 200, "", 0, "pass"},
		{"6-day certificate, 20 hours left", nil, cert(20 * time.Hour), 6 * day, "warn", 200, "", 0, "warn"},
		{"6-day certificate, 4 hours left", nil, cert(4 * time.Hour), 6 * day, "fail", 503, "", 0, "fail"},
		{"90-day certificate, 20 days left (renewal due, not late)", nil, cert(20 * day), 90 * day, "pass", 200, "", 0, "pass"},
		{"90-day certificate, 13 days left", nil, cert(13 * day), 90 * day, "warn", 200, "", 0, "warn"},
		{"90-day certificate, 2 days left", nil, cert(2 * day), 90 * day, "fail", 503, "", 0, "fail"},
		{"certificate expired", nil, cert(-time.Minute), 90 * day, "fail", 503, "", 0, "fail"},
		{"lifetime unknown, not expired", nil, cert(time.Hour), 0, "pass", 200, "", 0, "pass"},
		{"certificate not obtained yet", nil, fakeCerts{{Name: "studio.example"}}, 0, "warn", 200, "", 0, "warn"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHandler(ReportFull, tc.upstreams, tc.certs, tc.lifetime, clock)
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
			app := rep.Checks["app:readiness"]
			if got := statusOf(rep, "app:readiness"); got != tc.wantApp {
				t.Errorf("app:readiness = %q, want %q", got, tc.wantApp)
			} else if len(app) == 1 && app[0].ObservedValue != tc.wantReady {
				t.Errorf("ready instances = %v, want %v", app[0].ObservedValue, tc.wantReady)
			}
			if got := statusOf(rep, "certificate:expiry"); got != tc.wantCert {
				t.Errorf("certificate:expiry = %q, want %q", got, tc.wantCert)
			}
			if statusOf(rep, "edge:uptime") != "pass" {
				t.Errorf("edge:uptime missing: %s", w.Body)
			}
			for _, u := range tc.upstreams {
				if strings.Contains(w.Body.String(), u.String()) {
					t.Errorf("answer names upstream %s: %s", u, w.Body)
				}
			}
		})
	}
}

// TestStatusReportHasNoDetail: the public answer carries the overall
// status, and nothing that names a certificate or counts instances.
func TestStatusReportHasNoDetail(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	certs := fakeCerts{{Name: "studio.example", NotAfter: now.Add(time.Hour)}}
	h := newHandler(ReportStatus, []upstream{fakeUpstream{"app:8080", true}, fakeUpstream{"app-2:8080", false}}, certs, 90*24*time.Hour, func() time.Time { return now })
	w, rep, err := serve(t, h, "GET")
	if err != nil {
		t.Fatal(err)
	}
	if w.Code != 503 || rep.Status != "fail" {
		t.Errorf("got %d %q, want 503 fail (certificate about to expire)", w.Code, rep.Status)
	}
	if got := strings.TrimSpace(w.Body.String()); got != `{"status":"fail","certificate_days_left":0}` {
		t.Errorf("public answer = %s, want the status and the days left alone", got)
	}
}

// TestStatusReportCertificateDaysLeft: the public answer carries the
// fewest days left over the certificates obtained, and no name; without
// an obtained certificate the field is left out.
func TestStatusReportCertificateDaysLeft(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const day = 24 * time.Hour
	for _, tc := range []struct {
		name  string
		certs fakeCerts
		want  string
	}{
		{"fewest of two, a pending one ignored", fakeCerts{
			{Name: "studio.example", NotAfter: now.Add(60 * day)},
			{Name: "api.studio.example", NotAfter: now.Add(41*day + 5*time.Hour)},
			{Name: "new.studio.example"},
		}, `{"status":"warn","certificate_days_left":41.2}`},
		{"none managed", nil, `{"status":"pass"}`},
		{"none obtained yet", fakeCerts{{Name: "studio.example"}}, `{"status":"warn"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHandler(ReportStatus, nil, tc.certs, 90*day, func() time.Time { return now })
			w, _, err := serve(t, h, "GET")
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.TrimSpace(w.Body.String()); got != tc.want {
				t.Errorf("public answer = %s, want %s", got, tc.want)
			}
		})
	}
}

// TestLivenessIgnoresAppAndCertificates: with every app instance down and
// the certificate expired, liveness still passes.
func TestLivenessIgnoresAppAndCertificates(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	certs := fakeCerts{{Name: "studio.example", NotAfter: now.Add(-time.Hour)}}
	h := newHandler(ReportLiveness, []upstream{fakeUpstream{"app:8080", false}}, certs, 90*24*time.Hour, func() time.Time { return now })
	w, rep, err := serve(t, h, "GET")
	if err != nil {
		t.Fatal(err)
	}
	if w.Code != 200 || rep.Status != "pass" {
		t.Errorf("got %d %q, want 200 pass: %s", w.Code, rep.Status, w.Body)
	}
	if len(rep.Checks) != 1 || statusOf(rep, "edge:uptime") != "pass" {
		t.Errorf("checks = %v, want edge:uptime only", rep.Checks)
	}
}

// TestUpstreamsReadOnce: the proxies are looked up on first use only; the
// health read from them is current on every request.
func TestUpstreamsReadOnce(t *testing.T) {
	u := &mutableUpstream{addr: "app:8080", healthy: true}
	lookups := 0
	h := newHandler(ReportFull, nil, nil, 0, time.Now)
	h.upstreams = &upstreamList{find: func() []upstream { lookups++; return []upstream{u} }}
	if _, rep, _ := serve(t, h, "GET"); rep.Status != "pass" {
		t.Fatalf("status %q, want pass", rep.Status)
	}
	u.healthy = false
	if _, rep, _ := serve(t, h, "GET"); rep.Status != "fail" {
		t.Errorf("status %q after the proxy marked the upstream down, want fail", rep.Status)
	}
	if lookups != 1 {
		t.Errorf("upstreams looked up %d times, want 1", lookups)
	}
}

type mutableUpstream struct {
	addr    string
	healthy bool
}

func (u *mutableUpstream) String() string { return u.addr }
func (u *mutableUpstream) Healthy() bool  { return u.healthy }

func statusOf(rep report, key string) string {
	if c := rep.Checks[key]; len(c) > 0 {
		return c[0].Status
	}
	return ""
}

func TestMethods(t *testing.T) {
	h := newHandler(ReportFull, nil, nil, 0, time.Now)
	w, _, err := serve(t, h, "HEAD")
	if err != nil || w.Code != 200 || w.Body.Len() != 0 {
		t.Errorf("HEAD: %d, %d bytes, %v", w.Code, w.Body.Len(), err)
	}
	_, _, err = serve(t, h, "POST")
	if he, ok := err.(caddyhttp.HandlerError); !ok || he.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: got %v, want a 405 handler error", err)
	}
}

func TestHealthcheckURL(t *testing.T) {
	for _, tc := range []struct {
		flag, env string
		ready     bool
		want      string
	}{
		{"", "", false, "http://127.0.0.1:9180/livez"},
		{"", "", true, "http://127.0.0.1:9180/health"},
		{"", "http://e/x", true, "http://e/x"},
		{"http://f/y", "http://e/x", false, "http://f/y"},
	} {
		if got := healthcheckURL(tc.flag, tc.env, tc.ready); got != tc.want {
			t.Errorf("healthcheckURL(%q, %q, %v) = %q, want %q", tc.flag, tc.env, tc.ready, got, tc.want)
		}
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
