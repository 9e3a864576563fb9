package cors

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

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
		{"credentials with any method", Handler{AllowedOrigins: []string{"https://a.example"}, AllowedMethods: []string{"GET", "*"}, AllowCredentials: true}, `"*" in methods`},
		{"credentials with any header", Handler{AllowedOrigins: []string{"https://a.example"}, AllowedHeaders: []string{"*"}, AllowCredentials: true}, `"*" in headers`},
		{"credentials with every header exposed", Handler{AllowedOrigins: []string{"https://a.example"}, ExposedHeaders: []string{"*"}, AllowCredentials: true}, `"*" in expose`},
		{"negative max_age", Handler{AllowedOrigins: []string{"https://a.example"}, MaxAge: ptr(caddy.Duration(-time.Second))}, "negative"},
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

func ptr[T any](v T) *T { return &v }

// preflightResponse sends a preflight for origin and method (and headers,
// if any) through h and returns the status and the response headers.
func preflightResponse(t *testing.T, h *Handler, origin, method, headers string) (int, http.Header) {
	t.Helper()
	r := httptest.NewRequest(http.MethodOptions, "/api/v1/x", nil)
	r.Header.Set("Origin", origin)
	r.Header.Set("Access-Control-Request-Method", method)
	if headers != "" {
		r.Header.Set("Access-Control-Request-Headers", headers)
	}
	w := httptest.NewRecorder()
	err := h.ServeHTTP(w, r, &nextRecorder{})
	if err != nil {
		he, ok := err.(caddyhttp.HandlerError)
		if !ok {
			t.Fatalf("error %v is not a caddyhttp.HandlerError", err)
		}
		return he.StatusCode, w.Header()
	}
	return w.Code, w.Header()
}

// Allowed origins are written by operators, who add a trailing slash, the
// default port or capitals; browsers send the serialized origin.
func TestAllowedOriginsAreNormalised(t *testing.T) {
	h := provisioned(t, Handler{AllowedOrigins: []string{
		"https://app.example/",
		"https://api.example:443",
		"HTTP://Dev.Example:80/",
		"http://localhost:5173/",
		"https://*.Tenant.example:443",
		"https://[::1]:443",
	}})
	for _, tc := range []struct {
		origin string
		want   bool
	}{
		{"https://app.example", true},
		{"https://api.example", true},
		{"http://dev.example", true},
		{"http://localhost:5173", true},
		{"https://x.tenant.example", true},
		{"https://[::1]", true},
		{"https://api.example:443", true}, // not how browsers send it, but the same origin
		{"https://app.example:8443", false},
		{"http://app.example", false},
		{"http://localhost:5174", false},
		{"https://x.tenant.example:8443", false},
	} {
		t.Run(tc.origin, func(t *testing.T) {
			status, hdr := preflightResponse(t, h, tc.origin, "GET", "")
			if got := status == http.StatusNoContent; got != tc.want {
				t.Fatalf("preflight from %s: status %d, want allowed=%v", tc.origin, status, tc.want)
			}
			if tc.want && hdr.Get("Access-Control-Allow-Origin") != tc.origin {
				t.Errorf("Access-Control-Allow-Origin = %q, want the Origin as sent, %q", hdr.Get("Access-Control-Allow-Origin"), tc.origin)
			}
		})
	}
}

func TestPreflightAdvertisesMethodsAsMatched(t *testing.T) {
	h := provisioned(t, Handler{
		AllowedOrigins: []string{"https://app.example"},
		AllowedMethods: []string{"get", "Post", "GET", "patch"},
		AllowedHeaders: []string{"Content-Type", "content-type", "X-Request-ID"},
	})
	status, hdr := preflightResponse(t, h, "https://app.example", "patch", "content-type")
	if status != http.StatusNoContent {
		t.Fatalf("status %d, want 204", status)
	}
	if got, want := hdr.Get("Access-Control-Allow-Methods"), "GET, POST, PATCH"; got != want {
		t.Errorf("Access-Control-Allow-Methods = %q, want %q (upper-case, as matched, once each)", got, want)
	}
	if got, want := hdr.Get("Access-Control-Allow-Headers"), "Content-Type, X-Request-ID"; got != want {
		t.Errorf("Access-Control-Allow-Headers = %q, want %q", got, want)
	}
}

func TestMaxAge(t *testing.T) {
	for _, tc := range []struct {
		name   string
		maxAge *caddy.Duration
		want   string
	}{
		{"unset is the default", nil, "600"},
		{"zero disables caching", ptr(caddy.Duration(0)), "0"},
		{"an hour", ptr(caddy.Duration(time.Hour)), "3600"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := provisioned(t, Handler{AllowedOrigins: []string{"https://app.example"}, MaxAge: tc.maxAge})
			status, hdr := preflightResponse(t, h, "https://app.example", "GET", "")
			if status != http.StatusNoContent {
				t.Fatalf("status %d, want 204", status)
			}
			if got := hdr.Values("Access-Control-Max-Age"); len(got) != 1 || got[0] != tc.want {
				t.Errorf("Access-Control-Max-Age = %q, want %q", got, tc.want)
			}
		})
	}
}

// "*" in methods and headers is the Fetch standard's wildcard for requests
// without credentials; it never covers Authorization.
func TestWildcardMethodsAndHeaders(t *testing.T) {
	h := provisioned(t, Handler{
		AllowedOrigins: []string{"https://app.example"},
		AllowedMethods: []string{"*"},
		AllowedHeaders: []string{"*"},
	})
	withAuth := provisioned(t, Handler{
		AllowedOrigins: []string{"https://app.example"},
		AllowedHeaders: []string{"*", "Authorization"},
	})
	for _, tc := range []struct {
		name            string
		h               *Handler
		method, headers string
		want            int
		wantMethods     string
		wantHeaders     string
	}{
		{"any method", h, "PROPFIND", "", 204, "*", "*"},
		{"any header", h, "GET", "x-custom, x-other", 204, "*", "*"},
		{"authorization is not covered by *", h, "GET", "x-custom, authorization", 403, "", ""},
		{"authorization listed by name", withAuth, "POST", "authorization, x-custom", 204, "GET, HEAD, POST, PUT, PATCH, DELETE", "*, Authorization"},
		{"methods are still checked", withAuth, "PROPFIND", "", 403, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, hdr := preflightResponse(t, tc.h, "https://app.example", tc.method, tc.headers)
			if status != tc.want {
				t.Fatalf("status %d, want %d", status, tc.want)
			}
			if got := hdr.Get("Access-Control-Allow-Methods"); got != tc.wantMethods {
				t.Errorf("Access-Control-Allow-Methods = %q, want %q", got, tc.wantMethods)
			}
			if got := hdr.Get("Access-Control-Allow-Headers"); got != tc.wantHeaders {
				t.Errorf("Access-Control-Allow-Headers = %q, want %q", got, tc.wantHeaders)
			}
		})
	}
}
