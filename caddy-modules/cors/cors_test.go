package cors

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func provisioned(t *testing.T, h Handler) *Handler {
	t.Helper()
	if err := h.Provision(caddy.Context{}); err != nil {
		t.Fatalf("provision: %v", err)
	}
	if err := h.Validate(); err != nil {
		t.Fatalf("validate: %v", err)
	}
	return &h
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		h       Handler
		wantErr string
	}{
		{"no origins", Handler{}, "at least one allowed origin"},
		{"credentials with any origin", Handler{AllowedOrigins: []string{"*"}, AllowCredentials: true}, "cannot be combined"},
		{"origin with path", Handler{AllowedOrigins: []string{"https://a.example/app"}}, "nothing after the host"},
		{"origin without scheme", Handler{AllowedOrigins: []string{"a.example"}}, "scheme"},
		{"wildcard in the middle", Handler{AllowedOrigins: []string{"https://a.*.example"}}, "leftmost label"},
		{"wildcard partial label", Handler{AllowedOrigins: []string{"https://*foo.example"}}, "leftmost label"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.h.Provision(caddy.Context{})
			if err == nil {
				err = tc.h.Validate()
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("got %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

type nextRecorder struct{ called bool }

func (n *nextRecorder) ServeHTTP(w http.ResponseWriter, _ *http.Request) error {
	n.called = true
	w.WriteHeader(http.StatusOK)
	return nil
}

func TestServeHTTP(t *testing.T) {
	h := provisioned(t, Handler{
		AllowedOrigins: []string{"https://app.example", "https://*.tenant.example", "http://localhost:5173"},
		ExposedHeaders: []string{"X-Request-ID"},
	})
	creds := provisioned(t, Handler{AllowedOrigins: []string{"https://app.example"}, AllowCredentials: true})
	anyOrigin := provisioned(t, Handler{AllowedOrigins: []string{"*"}})

	for _, tc := range []struct {
		name       string
		h          *Handler
		method     string
		hdr        map[string]string
		wantStatus int // handler error status, or the status written
		wantNext   bool
		wantACAO   string
		wantCreds  bool
	}{
		{"no Origin passes through untouched", h, "GET", nil, 200, true, "", false},
		{"allowed exact origin", h, "GET", map[string]string{"Origin": "https://app.example"}, 200, true, "https://app.example", false},
		{"origin match is case-insensitive", h, "GET", map[string]string{"Origin": "HTTPS://APP.EXAMPLE"}, 200, true, "HTTPS://APP.EXAMPLE", false},
		{"wildcard subdomain", h, "GET", map[string]string{"Origin": "https://x.y.tenant.example"}, 200, true, "https://x.y.tenant.example", false},
		{"wildcard excludes apex", h, "GET", map[string]string{"Origin": "https://tenant.example"}, 200, true, "", false},
		{"wildcard port must match", h, "GET", map[string]string{"Origin": "https://x.tenant.example:8443"}, 200, true, "", false},
		{"port is part of the origin", h, "GET", map[string]string{"Origin": "http://localhost:5174"}, 200, true, "", false},
		{"null origin", h, "GET", map[string]string{"Origin": "null"}, 200, true, "", false},
		{"preflight allowed", h, "OPTIONS", map[string]string{"Origin": "https://app.example", "Access-Control-Request-Method": "PATCH", "Access-Control-Request-Headers": "content-type, x-request-id"}, 204, false, "https://app.example", false},
		{"preflight disallowed origin", h, "OPTIONS", map[string]string{"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}, 403, false, "", false},
		{"preflight disallowed method", h, "OPTIONS", map[string]string{"Origin": "https://app.example", "Access-Control-Request-Method": "CONNECT"}, 403, false, "", false},
		{"preflight disallowed header", h, "OPTIONS", map[string]string{"Origin": "https://app.example", "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "x-admin"}, 403, false, "", false},
		{"plain OPTIONS is not a preflight", h, "OPTIONS", map[string]string{"Origin": "https://app.example"}, 200, true, "https://app.example", false},
		{"credentials echo the origin", creds, "GET", map[string]string{"Origin": "https://app.example"}, 200, true, "https://app.example", true},
		{"any origin answers *", anyOrigin, "GET", map[string]string{"Origin": "https://whoever.example"}, 200, true, "*", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, "/api/v1/x", nil)
			for k, v := range tc.hdr {
				r.Header.Set(k, v)
			}
			w := httptest.NewRecorder()
			next := &nextRecorder{}
			err := tc.h.ServeHTTP(w, r, next)
			status := w.Code
			if err != nil {
				he, ok := err.(caddyhttp.HandlerError)
				if !ok {
					t.Fatalf("error %v is not a caddyhttp.HandlerError", err)
				}
				status = he.StatusCode
			}
			if status != tc.wantStatus {
				t.Errorf("status = %d, want %d", status, tc.wantStatus)
			}
			if next.called != tc.wantNext {
				t.Errorf("next called = %v, want %v", next.called, tc.wantNext)
			}
			if got := w.Header().Get("Access-Control-Allow-Origin"); got != tc.wantACAO {
				t.Errorf("Access-Control-Allow-Origin = %q, want %q", got, tc.wantACAO)
			}
			if got := w.Header().Get("Access-Control-Allow-Credentials") == "true"; got != tc.wantCreds {
				t.Errorf("Access-Control-Allow-Credentials = %v, want %v", got, tc.wantCreds)
			}
			if !strings.Contains(strings.Join(w.Header().Values("Vary"), ","), "Origin") {
				t.Errorf("Vary = %q, want Origin", w.Header().Values("Vary"))
			}
			if tc.wantACAO == "" {
				for k := range w.Header() {
					if strings.HasPrefix(k, "Access-Control-") {
						t.Errorf("disallowed request got %s", k)
					}
				}
			}
			if tc.wantStatus == 204 {
				if got := w.Header().Get("Access-Control-Allow-Methods"); !strings.Contains(got, "PATCH") {
					t.Errorf("Access-Control-Allow-Methods = %q", got)
				}
				if got := w.Header().Get("Access-Control-Max-Age"); got != "600" {
					t.Errorf("Access-Control-Max-Age = %q, want 600", got)
				}
			}
		})
	}
}
