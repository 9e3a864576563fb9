// Package cors is a Caddy HTTP handler that answers CORS preflights at the
// edge and decorates responses to allowed origins.
//
// Stock Caddy has no CORS directive; hand-written `header` rules usually get
// the details wrong (no `Vary: Origin`, `*` with credentials, headers leaked
// to disallowed origins). This handler gets them right in one place.
package cors

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler implements CORS (https://fetch.spec.whatwg.org/#http-cors-protocol).
//
// Preflight requests (OPTIONS with Origin and Access-Control-Request-Method)
// are answered here with 204, or rejected with a 403 handler error when the
// origin, method or a requested header is not allowed; they never reach the
// upstream. Other requests from an allowed origin get the CORS response
// headers and continue down the chain; a disallowed origin gets no CORS
// headers at all, so the browser blocks the response. `Vary: Origin` is
// always added because the response depends on the Origin header.
type Handler struct {
	// Origins allowed to make cross-origin requests: exact origins
	// ("https://app.example.com"), wildcard subdomains
	// ("https://*.example.com" matches any depth of subdomain, not the apex),
	// or "*" for any origin. Required.
	AllowedOrigins []string `json:"allowed_origins,omitempty"`

	// Methods allowed in preflights. Default: GET, HEAD, POST, PUT, PATCH, DELETE.
	AllowedMethods []string `json:"allowed_methods,omitempty"`

	// Request headers allowed in preflights (case-insensitive).
	// Default: Accept, Authorization, Content-Type, X-Request-ID.
	AllowedHeaders []string `json:"allowed_headers,omitempty"`

	// Response headers the browser may expose to scripts. Default: none.
	ExposedHeaders []string `json:"exposed_headers,omitempty"`

	// Whether to send Access-Control-Allow-Credentials: true. Cannot be
	// combined with the "*" origin (browsers refuse it, and it would let
	// any site make credentialed requests).
	AllowCredentials bool `json:"allow_credentials,omitempty"`

	// How long browsers may cache a preflight answer. Default: 10m.
	// Browsers cap it (Chromium at 2h, Firefox at 24h).
	MaxAge caddy.Duration `json:"max_age,omitempty"`

	anyOrigin    bool
	exact        map[string]struct{}
	wildcards    []wildcardOrigin
	methods      map[string]struct{}
	headers      map[string]struct{}
	methodsValue string
	headersValue string
	exposedValue string
	maxAgeValue  string
}

// wildcardOrigin is "scheme://*.suffix[:port]", split for matching.
type wildcardOrigin struct {
	scheme string
	suffix string // ".example.com" (with leading dot, lowercase)
	port   string
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.cors",
		New: func() caddy.Module { return new(Handler) },
	}
}

var (
	defaultMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}
	defaultHeaders = []string{"Accept", "Authorization", "Content-Type", "X-Request-ID"}
)

const defaultMaxAge = caddy.Duration(10 * time.Minute)

// Provision sets defaults and builds the lookup tables.
func (h *Handler) Provision(caddy.Context) error {
	if len(h.AllowedMethods) == 0 {
		h.AllowedMethods = defaultMethods
	}
	if len(h.AllowedHeaders) == 0 {
		h.AllowedHeaders = defaultHeaders
	}
	if h.MaxAge == 0 {
		h.MaxAge = defaultMaxAge
	}
	h.exact = make(map[string]struct{})
	h.wildcards = nil
	for _, o := range h.AllowedOrigins {
		if o == "*" {
			h.anyOrigin = true
			continue
		}
		w, isWildcard, err := parseOrigin(o)
		if err != nil {
			return fmt.Errorf("loading allowed origin %q: %w", o, err)
		}
		if isWildcard {
			h.wildcards = append(h.wildcards, w)
		} else {
			h.exact[strings.ToLower(o)] = struct{}{}
		}
	}
	h.methods = make(map[string]struct{}, len(h.AllowedMethods))
	for _, m := range h.AllowedMethods {
		h.methods[strings.ToUpper(m)] = struct{}{}
	}
	h.headers = make(map[string]struct{}, len(h.AllowedHeaders))
	for _, hd := range h.AllowedHeaders {
		h.headers[strings.ToLower(hd)] = struct{}{}
	}
	h.methodsValue = strings.Join(h.AllowedMethods, ", ")
	h.headersValue = strings.Join(h.AllowedHeaders, ", ")
	h.exposedValue = strings.Join(h.ExposedHeaders, ", ")
	h.maxAgeValue = strconv.FormatInt(int64(time.Duration(h.MaxAge)/time.Second), 10)
	return nil
}

// Validate refuses configurations browsers would reject or that would be unsafe.
func (h *Handler) Validate() error {
	if len(h.AllowedOrigins) == 0 {
		return errors.New("at least one allowed origin is required")
	}
	if h.anyOrigin && h.AllowCredentials {
		return errors.New(`allow_credentials cannot be combined with the "*" origin`)
	}
	if h.MaxAge < 0 {
		return errors.New("max_age must not be negative")
	}
	return nil
}

// parseOrigin checks that o is a bare origin (scheme://host[:port], no path)
// and reports whether it is a wildcard-subdomain pattern.
func parseOrigin(o string) (wildcardOrigin, bool, error) {
	u, err := url.Parse(o)
	if err != nil {
		return wildcardOrigin{}, false, err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return wildcardOrigin{}, false, errors.New("scheme must be http or https")
	}
	if u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return wildcardOrigin{}, false, errors.New("must be scheme://host[:port] with nothing after the host")
	}
	host := u.Hostname()
	if !strings.Contains(host, "*") {
		return wildcardOrigin{}, false, nil
	}
	if !strings.HasPrefix(host, "*.") || strings.Count(host, "*") != 1 || len(host) < 4 {
		return wildcardOrigin{}, false, errors.New(`a wildcard must be the whole leftmost label, as in "https://*.example.com"`)
	}
	return wildcardOrigin{scheme: u.Scheme, suffix: strings.ToLower(host[1:]), port: u.Port()}, true, nil
}

// allowed reports whether the request's Origin value is allowed.
func (h *Handler) allowed(origin string) bool {
	if h.anyOrigin {
		return true
	}
	lower := strings.ToLower(origin)
	if _, ok := h.exact[lower]; ok {
		return true
	}
	if len(h.wildcards) == 0 {
		return false
	}
	u, err := url.Parse(lower)
	if err != nil || u.Path != "" || u.RawQuery != "" || u.User != nil {
		return false
	}
	host := u.Hostname()
	for _, w := range h.wildcards {
		if u.Scheme == w.scheme && u.Port() == w.port &&
			len(host) > len(w.suffix) && strings.HasSuffix(host, w.suffix) {
			return true
		}
	}
	return false
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	hdr := w.Header()
	hdr.Add("Vary", "Origin")
	origin := r.Header.Get("Origin")
	preflight := r.Method == http.MethodOptions && origin != "" && r.Header.Get("Access-Control-Request-Method") != ""
	if preflight {
		hdr.Add("Vary", "Access-Control-Request-Method")
		hdr.Add("Vary", "Access-Control-Request-Headers")
		return h.preflight(w, r, origin)
	}
	if origin != "" && h.allowed(origin) {
		h.setAllowOrigin(hdr, origin)
		if h.exposedValue != "" {
			hdr.Set("Access-Control-Expose-Headers", h.exposedValue)
		}
	}
	return next.ServeHTTP(w, r)
}

func (h *Handler) preflight(w http.ResponseWriter, r *http.Request, origin string) error {
	if !h.allowed(origin) {
		return caddyhttp.Error(http.StatusForbidden, errors.New("cors: origin not allowed"))
	}
	method := strings.ToUpper(r.Header.Get("Access-Control-Request-Method"))
	if _, ok := h.methods[method]; !ok {
		return caddyhttp.Error(http.StatusForbidden, errors.New("cors: method not allowed"))
	}
	for _, line := range r.Header.Values("Access-Control-Request-Headers") {
		for _, name := range strings.Split(line, ",") {
			name = strings.ToLower(strings.TrimSpace(name))
			if name == "" {
				continue
			}
			if _, ok := h.headers[name]; !ok {
				return caddyhttp.Error(http.StatusForbidden, errors.New("cors: request header not allowed"))
			}
		}
	}
	hdr := w.Header()
	h.setAllowOrigin(hdr, origin)
	hdr.Set("Access-Control-Allow-Methods", h.methodsValue)
	hdr.Set("Access-Control-Allow-Headers", h.headersValue)
	hdr.Set("Access-Control-Max-Age", h.maxAgeValue)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *Handler) setAllowOrigin(hdr http.Header, origin string) {
	if h.anyOrigin && !h.AllowCredentials {
		hdr.Set("Access-Control-Allow-Origin", "*")
		return
	}
	hdr.Set("Access-Control-Allow-Origin", origin)
	if h.AllowCredentials {
		hdr.Set("Access-Control-Allow-Credentials", "true")
	}
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
