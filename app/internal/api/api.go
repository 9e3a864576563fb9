// Package api is the HTTP face of the application and the only package that
// imports gorilla/mux. It owns routing, the middleware every request passes
// through (request id, panic recovery, logging, metrics, auth, body caps),
// the one mapping from errors to JSON responses, and the health endpoints.
//
// Handlers have the shape func(w, r) error. A handler that fails returns its
// error; it never writes an error body itself. The error is turned into
// {"error":{"code","message","details"}} by problem.From in writeError and
// logged once, on the request's log line.
//
// Routes are added one line each in routes.go:
//
//	a.route("GET", "/api/v1/datasets/{id}", a.getDataset)
//	a.route("POST", "/api/v1/datasets", a.uploadDataset, BodyLimit(a.conf.HTTP.MaxUploadBytes), NoDeadlines())
//	a.route("GET", "/api/v1/jobs/{id}/events", a.jobEvents, Streaming())
//
// Every path under /api/ requires a bearer token; there is no option to
// turn that off.
package api

import (
	"context"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/finetune-studio/finetune-studio/app/internal/config"
	"github.com/finetune-studio/finetune-studio/app/internal/feed"
	"github.com/finetune-studio/finetune-studio/app/internal/health"
	"github.com/finetune-studio/finetune-studio/app/internal/problem"
	"github.com/finetune-studio/finetune-studio/app/internal/training"
)

// HandlerFunc is an API handler: it writes a success response or returns an
// error for the API to render.
type HandlerFunc func(w http.ResponseWriter, r *http.Request) error

// Authenticator checks an Authorization header and returns the token id.
type Authenticator interface {
	Authenticate(ctx context.Context, header string) (string, error)
}

// Observer records request metrics. route is always a template.
type Observer interface {
	RequestStarted()
	RequestDone(route, method string, code int, d time.Duration)
}

// Deps are what the API needs. Domain services are added here as fields.
type Deps struct {
	Config  config.Config
	Log     *slog.Logger
	Auth    Authenticator
	Health  *health.Checker
	Metrics Observer
	// Repo and Objects back the product's routes; without both (tests of
	// the router alone) those routes answer 503.
	Repo    training.Repository
	Objects training.Objects
	// Feed wakes live event streams and caps them; fed by the store's
	// job-event listener. Nil: streams answer 503.
	Feed *feed.Hub
}

// API is the router and its dependencies.
type API struct {
	conf     config.Config
	log      *slog.Logger
	auth     Authenticator
	health   *health.Checker
	metrics  Observer
	repo     training.Repository
	objects  training.Objects
	feed     *feed.Hub
	router   *mux.Router
	stopping chan struct{}
	handler  http.Handler
	// uploads holds one token per dataset upload in progress; its capacity
	// is APP_MAX_CONCURRENT_UPLOADS (nil: no cap).
	uploads chan struct{}
}

// New builds the API and registers every route.
func New(d Deps) *API {
	a := &API{
		conf: d.Config, log: d.Log, auth: d.Auth, health: d.Health,
		metrics: d.Metrics, repo: d.Repo, objects: d.Objects, feed: d.Feed,
		router:   mux.NewRouter(),
		stopping: make(chan struct{}),
	}
	if n := d.Config.HTTP.MaxConcurrentUploads; n > 0 {
		a.uploads = make(chan struct{}, n)
	}
	a.router.NotFoundHandler = a.wrap(routeUnmatched, a.notFound, a.optionsFor())
	a.router.MethodNotAllowedHandler = a.wrap(routeUnmatched, a.methodNotAllowed, a.optionsFor())
	a.routes()
	a.handler = a.observe(a.router)
	return a
}

// Handler is the complete HTTP handler: middleware and router.
func (a *API) Handler() http.Handler { return a.handler }

// Stopping is closed when the server starts shutting down. Streaming
// handlers (SSE) select on it and return, so shutdown is not held up by
// connections that would otherwise stay open for hours.
func (a *API) Stopping() <-chan struct{} { return a.stopping }

// BeginShutdown closes Stopping. Call it once, before http.Server.Shutdown.
func (a *API) BeginShutdown() { close(a.stopping) }

const routeUnmatched = "unmatched"

// RouteOption tunes one route.
type RouteOption func(*routeOptions)

type routeOptions struct {
	bodyLimit   int64
	noDeadlines bool
	uploadSlot  bool
}

// BodyLimit caps the request body at n bytes (default APP_MAX_BODY_BYTES);
// more is answered with 413.
func BodyLimit(n int64) RouteOption { return func(o *routeOptions) { o.bodyLimit = n } }

// NoDeadlines lifts the server's read and write timeouts for this route:
// for large uploads and long downloads that may legitimately take longer.
func NoDeadlines() RouteOption { return func(o *routeOptions) { o.noDeadlines = true } }

// Streaming marks a long-lived response (server-sent events). It is
// NoDeadlines under a name that says why; the handler flushes each event
// itself (see Flush).
func Streaming() RouteOption { return NoDeadlines() }

// UploadSlot makes the route take one of the APP_MAX_CONCURRENT_UPLOADS
// slots, after authentication and before the body is read, for as long as
// the handler runs; with none free it answers 429 (see takeUploadSlot).
func UploadSlot() RouteOption { return func(o *routeOptions) { o.uploadSlot = true } }

// UploadsInFlight is the number of upload slots taken right now (the
// uploads_in_flight gauge).
func (a *API) UploadsInFlight() int { return len(a.uploads) }

func (a *API) optionsFor(opts ...RouteOption) routeOptions {
	o := routeOptions{bodyLimit: a.conf.HTTP.MaxBodyBytes}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// route registers h for method and path (a mux template such as
// /api/v1/jobs/{id}). The template is what logs and metrics see.
func (a *API) route(method, path string, h HandlerFunc, opts ...RouteOption) {
	a.router.Handle(path, a.wrap(path, h, a.optionsFor(opts...))).Methods(method)
}

// Flush sends buffered response bytes to the client now (for streaming).
func Flush(w http.ResponseWriter) error { return http.NewResponseController(w).Flush() }

func (a *API) notFound(w http.ResponseWriter, r *http.Request) error {
	return problem.New(problem.CodeNotFound, "no route for %s %s", r.Method, r.URL.Path)
}

func (a *API) methodNotAllowed(w http.ResponseWriter, r *http.Request) error {
	return problem.New(problem.CodeMethodNotAllowed, "method %s is not allowed on %s", r.Method, r.URL.Path)
}

// clientIP is the peer address, or, when the peer is a trusted proxy, the
// right-most address in X-Forwarded-For that is not itself trusted.
func clientIP(r *http.Request, trusted []netip.Prefix) string {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	peer := ap.Addr().Unmap()
	if !isTrusted(peer, trusted) {
		return peer.String()
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break
		}
		a = a.Unmap()
		if !isTrusted(a, trusted) {
			return a.String()
		}
		peer = a
	}
	return peer.String()
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Route is one registered route: its method and path template.
type Route struct {
	Method string
	Path   string
}

// Routes lists every registered route in registration order, so checks
// that must cover every route (the security suite probes each one through
// the edge) follow the router instead of a copied list.
func (a *API) Routes() []Route {
	var out []Route
	_ = a.router.Walk(func(r *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		path, err := r.GetPathTemplate()
		if err != nil {
			return nil
		}
		methods, _ := r.GetMethods()
		for _, m := range methods {
			out = append(out, Route{Method: m, Path: path})
		}
		return nil
	})
	return out
}
