package api

import (
	"log/slog"
	"testing"
)

// TestRoutesListsTheRouter: Routes is what the security suite probes
// through the edge, so it must be the router's own list, not a copy.
func TestRoutesListsTheRouter(t *testing.T) {
	a := New(Deps{Log: slog.New(slog.DiscardHandler)})
	got := map[Route]bool{}
	for _, r := range a.Routes() {
		if got[r] {
			t.Errorf("%s %s listed twice", r.Method, r.Path)
		}
		got[r] = true
	}
	for _, want := range []Route{
		{"GET", "/livez"}, {"GET", "/readyz"}, {"GET", "/api/v1/whoami"},
		{"POST", "/api/v1/datasets"}, {"GET", "/api/v1/jobs/{id}/events/stream"}, {"DELETE", "/api/v1/models/{id}"},
	} {
		if !got[want] {
			t.Errorf("Routes() lacks %s %s (got %v)", want.Method, want.Path, got)
		}
	}
	// A route registered later shows up without anyone editing a list.
	a.route("PATCH", "/api/v1/things/{id}", nil)
	if n := len(a.Routes()); n != len(got)+1 {
		t.Errorf("after adding a route: %d routes, want %d", n, len(got)+1)
	}
}
