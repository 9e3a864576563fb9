package api

import (
	"encoding/json"
	"net/http"

	"github.com/finetune-studio/finetune-studio/app/internal/health"
)

// livez answers without any I/O: the process is up and serving.
func (a *API) livez(w http.ResponseWriter, r *http.Request) error {
	return writeHealth(w, health.Report{Status: health.Pass})
}

// readyz runs (or reuses) the readiness checks.
func (a *API) readyz(w http.ResponseWriter, r *http.Request) error {
	return writeHealth(w, a.health.Ready(r.Context()))
}

func writeHealth(w http.ResponseWriter, rep health.Report) error {
	b, err := json.Marshal(rep)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", health.ContentType)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(rep.HTTPStatus())
	_, _ = w.Write(append(b, '\n'))
	return nil
}
