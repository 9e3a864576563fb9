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
	"slices"
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
	// or "*" for any origin. Required. Written the way a browser sends
	// them or not: scheme and host are matched case-insensitively, and a
	// trailing "/" or the scheme's default port (":443", ":80") is ignored.
	AllowedOrigins []string `json:"allowed_origins,omitempty"`

	// Methods allowed in preflights, matched and advertised upper-case.
	// "*" allows any method (the Fetch standard's wildcard; refused with
	// allow_credentials, where browsers read it as a method named "*").
	// Default: GET, HEAD, POST, PUT, PATCH, DELETE.
	AllowedMethods []string `json:"allowed_methods,omitempty"`

	// Request headers allowed in preflights (case-insensitive). "*" allows
	// any header except Authorization, which browsers require to be listed
	// by name; refused with allow_credentials, as for methods.
	// Default: Accept, Authorization, Content-Type, X-Request-ID.
	AllowedHeaders []string `json:"allowed_headers,omitempty"`

	// Response headers the browser may expose to scripts. "*" exposes all
	// (refused with allow_credentials). Default: none.
	ExposedHeaders []string `json:"exposed_headers,omitempty"`

	// Whether to send Access-Control-Allow-Credentials: true. Cannot be
	// combined with the "*" origin (browsers refuse it, and it would let
	// any site make credentialed requests).
	AllowCredentials bool `json:"allow_credentials,omitempty"`

	// How long browsers may cache a preflight answer. Default (unset): 10m.
	// 0 sends `Access-Control-Max-Age: 0`, which tells browsers not to
	// cache (leaving the header out would mean 5 s). Browsers cap it
	// (Chromium at 2h, Firefox at 24h).
	MaxAge *caddy.Duration `json:"max_age,omitempty"`

	anyOrigin    bool
	anyMethod    bool
	anyHeader    bool
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
		// Namespaced: a third-party plugin (or a future Caddy) registering
		// "cors" would otherwise make the build panic at start.
		ID:  "http.handlers.finetune_cors",
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
	maxAge := defaultMaxAge
	if h.MaxAge != nil {
		maxAge = *h.MaxAge
	}
	h.exact = make(map[string]struct{})
	h.wildcards = nil
	for _, o := range h.AllowedOrigins {
		if o == "*" {
			h.anyOrigin = true
			continue
		}
		parsed, isWildcard, err := parseAllowedOrigin(o)
		if err != nil {
			return fmt.Errorf("loading allowed origin %q: %w", o, err)
		}
		if isWildcard {
			h.wildcards = append(h.wildcards, wildcardOrigin{scheme: parsed.scheme, suffix: parsed.host[1:], port: parsed.port})
		} else {
			h.exact[parsed.String()] = struct{}{}
		}
	}
	upper := make([]string, len(h.AllowedMethods))
	for i, m := range h.AllowedMethods {
		upper[i] = strings.ToUpper(m) // advertised as matched
	}
	var methods []string
	h.methods, methods = set(upper, strings.ToUpper)
	_, h.anyMethod = h.methods["*"]
	var headers []string
	h.headers, headers = set(h.AllowedHeaders, strings.ToLower)
	_, h.anyHeader = h.headers["*"]
	h.methodsValue = strings.Join(methods, ", ")
	h.headersValue = strings.Join(headers, ", ")
	h.exposedValue = strings.Join(h.ExposedHeaders, ", ")
	h.maxAgeValue = strconv.FormatInt(int64(time.Duration(maxAge)/time.Second), 10)
	return nil
}

// set returns the values as a set of key(value), and the values in order
// without those whose key repeats an earlier one (advertised once each).
func set(values []string, key func(string) string) (map[string]struct{}, []string) {
	m := make(map[string]struct{}, len(values))
	var unique []string
	for _, v := range values {
		k := key(v)
		if _, dup := m[k]; dup {
			continue
		}
		m[k] = struct{}{}
		unique = append(unique, v)
	}
	return m, unique
}

// Validate refuses configurations browsers would reject or that would be unsafe.
func (h *Handler) Validate() error {
	if len(h.AllowedOrigins) == 0 {
		return errors.New("at least one allowed origin is required")
	}
	if h.anyOrigin && h.AllowCredentials {
		return errors.New(`allow_credentials cannot be combined with the "*" origin`)
	}
	if h.AllowCredentials {
		// With credentials the Fetch standard reads "*" as a literal name,
		// so the browser would refuse what the edge allowed.
		for option, values := range map[string][]string{"methods": h.AllowedMethods, "headers": h.AllowedHeaders, "expose": h.ExposedHeaders} {
			if slices.Contains(values, "*") {
				return fmt.Errorf(`allow_credentials cannot be combined with "*" in %s: list the names`, option)
			}
		}
	}
	if h.MaxAge != nil && *h.MaxAge < 0 {
		return errors.New("max_age must not be negative")
	}
	return nil
}

// origin is a parsed origin, serialized the way a browser sends it:
// scheme and host lower-case, no trailing "/", no default port.
type origin struct {
	scheme string
	host   string // without brackets for an IPv6 literal
	port   string // "" for the scheme's default port
}

func (o origin) String() string {
	host := o.host
	if strings.Contains(host, ":") {
		host = "[" + host + "]" // IPv6 literal
	}
	if o.port != "" {
		return o.scheme + "://" + host + ":" + o.port
	}
	return o.scheme + "://" + host
}

var defaultPorts = map[string]string{"http": "80", "https": "443"}

// parseOrigin checks that s is a bare origin (scheme://host[:port], no
// path) and normalises it. The host may hold a "*".
func parseOrigin(s string) (origin, error) {
	u, err := url.Parse(s)
	if err != nil {
		return origin{}, err
	}
	o := origin{scheme: strings.ToLower(u.Scheme), host: strings.ToLower(u.Hostname()), port: u.Port()}
	if o.scheme != "http" && o.scheme != "https" {
		return origin{}, errors.New("scheme must be http or https")
	}
	if o.host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.User != nil {
		return origin{}, errors.New("must be scheme://host[:port] with nothing after the host")
	}
	if o.port == defaultPorts[o.scheme] {
		o.port = ""
	}
	return o, nil
}

// parseAllowedOrigin parses an allowed origin and reports whether it is a
// wildcard-subdomain pattern.
func parseAllowedOrigin(s string) (origin, bool, error) {
	o, err := parseOrigin(s)
	if err != nil || !strings.Contains(o.host, "*") {
		return o, false, err
	}
	if !strings.HasPrefix(o.host, "*.") || strings.Count(o.host, "*") != 1 || len(o.host) < 4 {
		return origin{}, false, errors.New(`a wildcard must be the whole leftmost label, as in "https://*.example.com"`)
	}
	return o, true, nil
}

// allowed reports whether the request's Origin value is allowed.
func (h *Handler) allowed(value string) bool {
	if h.anyOrigin {
		return true
	}
	// How browsers send it: no parsing needed.
	if _, ok := h.exact[strings.ToLower(value)]; ok {
		return true
	}
	o, err := parseOrigin(value)
	if err != nil || strings.Contains(o.host, "*") {
		return false
	}
	if _, ok := h.exact[o.String()]; ok {
		return true
	}
	for _, w := range h.wildcards {
		if o.scheme == w.scheme && o.port == w.port &&
			len(o.host) > len(w.suffix) && strings.HasSuffix(o.host, w.suffix) {
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
	if _, ok := h.methods[method]; !ok && !h.anyMethod {
		return caddyhttp.Error(http.StatusForbidden, errors.New("cors: method not allowed"))
	}
	for _, line := range r.Header.Values("Access-Control-Request-Headers") {
		for _, name := range strings.Split(line, ",") {
			name = strings.ToLower(strings.TrimSpace(name))
			if name == "" {
				continue
			}
			if _, ok := h.headers[name]; ok {
				continue
			}
			// The wildcard never covers Authorization (Fetch standard).
			if !h.anyHeader || name == "authorization" {
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
