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
// that a token works. It also says what trains the models (kaggle,
// simulator or none) and which base models are allowed, so the UI can label
// simulated runs and offer the allow-list.
func (a *API) whoami(w http.ResponseWriter, r *http.Request) error {
	type training struct {
		Backend    string   `json:"backend"`
		BaseModels []string `json:"base_models"`
	}
	return writeJSON(w, http.StatusOK, struct {
		TokenID  string   `json:"token_id"`
		Training training `json:"training"`
	}{TokenID(r.Context()), training{a.conf.Kaggle.Backend(), a.conf.Training.BaseModels}})
}
