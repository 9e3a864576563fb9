package api

import "net/http"

// routes registers every route, one line each. Paths under /api/ require a
// bearer token (enforced in wrap, not here).
func (a *API) routes() {
	a.route(http.MethodGet, "/livez", a.livez)
	a.route(http.MethodGet, "/readyz", a.readyz)
	a.route(http.MethodGet, "/api/v1/whoami", a.whoami)

	// Domain routes (datasets, jobs, job events, models): see training.go.
	a.trainingRoutes()
}

// whoami tells a client which token it is using: the cheapest way to check
// that a token works.
func (a *API) whoami(w http.ResponseWriter, r *http.Request) error {
	return writeJSON(w, http.StatusOK, map[string]string{"token_id": TokenID(r.Context())})
}
