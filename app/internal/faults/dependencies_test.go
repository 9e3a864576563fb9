//go:build faults

package faults

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/finetune-studio/finetune-studio/app/internal/testenv"
)

// postgresOutage is how long Postgres stays down. Production outages last
// longer; what matters is that it spans several edge health checks (every
// 5 s) and several lb_try_duration windows (15 s), so every state a user
// can meet is met: the app's own 503, the edge's 503 once the instance is
// out of rotation, and the way back.
const postgresOutage = 30 * time.Second

// readRequest alternates the two cheapest authenticated reads.
func (s *stack) readRequest(w, n int) *http.Request {
	if (w+n)%2 == 0 {
		return s.request("GET", "/api/v1/datasets", s.token, nil, "")
	}
	return s.request("GET", "/api/v1/whoami", s.token, nil, "")
}

// unavailableWithRetryAfter accepts a 503 in the JSON error shape with a
// Retry-After: what a client may see while a dependency is down.
func unavailableWithRetryAfter(resp *http.Response, body []byte) error {
	_, err := checkError(resp, body, http.StatusServiceUnavailable, true)
	return err
}

// TestPostgresOutage stops Postgres for postgresOutage under load through
// the edge. The app must report `fail` on /readyz within seconds; its API
// must answer 503 JSON with Retry-After at once, never hang; users through
// the edge get only 200s or such 503s; and after Postgres returns the
// same app process serves again within seconds.
func TestPostgresOutage(t *testing.T) {
	s := newStack(t, stackOptions{apps: 1})
	app := s.apps[0]
	l := s.startLoad(t, loadSpec{name: "read", workers: 4, interval: 50 * time.Millisecond,
		request: s.readRequest, accept: unavailableWithRetryAfter})
	l.waitOK(t, 50, 2*time.Minute)
	if n := l.unavailable.Load(); n != 0 {
		t.Fatalf("%d requests answered 503 before the outage", n)
	}

	pg := testenv.StartPostgres(t)
	before := l.counts()
	pg.Stop(t)
	stopped := time.Now()
	pgUp := false
	t.Cleanup(func() {
		if !pgUp {
			pg.Start(t)
		}
	})

	toFail := waitFor(t, time.Minute, "the app's /readyz to report fail", func() bool {
		code, status, _ := app.readyz()
		return code == http.StatusServiceUnavailable && status == "fail"
	})

	// The app itself, bypassing the edge: every API route answers a
	// prompt 503 (a request bounded by a 10 s client timeout must come back
	// well before it).
	direct := &http.Client{Timeout: 10 * time.Second}
	var directSlowest time.Duration
	for _, path := range []string{"/api/v1/whoami", "/api/v1/datasets", "/api/v1/jobs", "/api/v1/models"} {
		req, _ := http.NewRequest("GET", "http://"+app.addr+path, nil)
		req.Header.Set("Authorization", "Bearer "+s.token)
		resp, body, took, err := do(direct, req)
		if err != nil {
			t.Fatalf("app %s with the database down: %v after %s", path, err, took)
		}
		code, err := checkError(resp, body, http.StatusServiceUnavailable, true)
		if err != nil || code != "service_unavailable" {
			t.Fatalf("app %s with the database down: %v (code %q)", path, err, code)
		}
		directSlowest = max(directSlowest, took)
	}

	// Through the edge, as users see it: a 503 with Retry-After, within the
	// client's 30 s timeout (the edge waits lb_try_duration for a ready
	// instance first).
	user := s.client("127.0.0.1", 30*time.Second)
	resp, body, edgeTook, err := do(user, s.request("GET", "/api/v1/datasets", s.token, nil, ""))
	if err != nil {
		t.Fatalf("edge with the database down: %v after %s", err, edgeTook)
	}
	edgeCode, err := checkError(resp, body, http.StatusServiceUnavailable, true)
	if err != nil {
		t.Fatalf("edge with the database down: %v", err)
	}

	for time.Since(stopped) < postgresOutage {
		if l.failed.Load() > 0 {
			break
		}
		time.Sleep(200 * time.Millisecond) // the outage's length, not a synchronisation
	}
	l.requireNoFailures(t)
	outage := l.counts()

	pg.Start(t)
	pgUp = true
	restarted := time.Now()
	appBack := waitFor(t, 2*time.Minute, "the app's /readyz to pass again", func() bool {
		code, status, _ := app.readyz()
		return code == http.StatusOK && status == "pass"
	})
	probe := s.client("127.0.0.1", 30*time.Second)
	waitFor(t, 2*time.Minute, "the edge to serve the API again", func() bool {
		resp, _, _, err := do(probe, s.request("GET", "/api/v1/datasets", s.token, nil, ""))
		return err == nil && resp.StatusCode == http.StatusOK
	})
	edgeBack := time.Since(restarted)
	l.waitOK(t, 50, 2*time.Minute)
	l.halt()
	l.requireNoFailures(t)
	if outage.unavailable == before.unavailable {
		t.Fatal("no request saw the outage: the scenario proved nothing")
	}
	if app.proc.exited() {
		t.Fatal("the app exited during the outage")
	}
	t.Logf("RESULT postgres: readyz fail after %s; app 503 slowest %s; edge 503 (%s) after %s; "+
		"load during outage: %s; readyz pass %s after restart, edge serving %s after restart; load total: %s",
		toFail.Round(time.Millisecond), directSlowest.Round(time.Millisecond), edgeCode, edgeTook.Round(time.Millisecond),
		outage.since(before), appBack.Round(time.Millisecond), edgeBack.Round(time.Millisecond), l.summary())
}

// TestMinIOOutage stops MinIO under read load through the edge. The app
// must stay ready with `warn`; dataset uploads answer a prompt 503 JSON
// error with Retry-After; listing and reading datasets keep working with
// no failed request; uploads work again once MinIO is back.
func TestMinIOOutage(t *testing.T) {
	s := newStack(t, stackOptions{apps: 1})
	app := s.apps[0]
	user := s.client("127.0.0.1", 60*time.Second)
	resp, body, _, err := do(user, s.uploadRequest("before-outage"))
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("upload before the outage: %v %v %s", err, resp, body)
	}
	var ds struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(body, &ds); err != nil || ds.ID == "" {
		t.Fatalf("upload answer: %s", body)
	}
	l := s.startLoad(t, loadSpec{name: "read", workers: 4, interval: 50 * time.Millisecond,
		request: func(w, n int) *http.Request {
			if (w+n)%3 == 0 {
				return s.request("GET", "/api/v1/datasets/"+ds.ID, s.token, nil, "")
			}
			return s.readRequest(w, n)
		}})
	l.waitOK(t, 50, 2*time.Minute)

	mi := testenv.StartMinIO(t)
	before := l.counts()
	mi.Stop(t)
	miUp := false
	t.Cleanup(func() {
		if !miUp {
			mi.Start(t)
		}
	})
	toWarn := waitFor(t, time.Minute, "the app's /readyz to report warn", func() bool {
		code, status, _ := app.readyz()
		return code == http.StatusOK && status == "warn"
	})

	resp, body, uploadTook, err := do(user, s.uploadRequest("during-outage"))
	if err != nil {
		t.Fatalf("upload with object storage down: %v after %s", err, uploadTook)
	}
	code, err := checkError(resp, body, http.StatusServiceUnavailable, true)
	if err != nil || code != "service_unavailable" {
		t.Fatalf("upload with object storage down: %v (code %q)", err, code)
	}
	// Reads go on meanwhile, through the edge (the instance stays in
	// rotation: readiness is 200).
	l.waitOK(t, 100, 2*time.Minute)
	l.requireNoFailures(t)
	outage := l.counts()

	mi.Start(t)
	miUp = true
	restarted := time.Now()
	var uploads int
	waitFor(t, 2*time.Minute, "an upload to succeed after MinIO returned", func() bool {
		uploads++
		resp, _, _, err := do(user, s.uploadRequest(fmt.Sprintf("after-outage-%d", uploads)))
		return err == nil && resp.StatusCode == http.StatusCreated
	})
	uploadBack := time.Since(restarted)
	waitFor(t, time.Minute, "the app's /readyz to pass again", func() bool {
		code, status, _ := app.readyz()
		return code == http.StatusOK && status == "pass"
	})
	l.halt()
	l.requireNoFailures(t)
	t.Logf("RESULT minio: readyz warn after %s; upload 503 in %s; reads during outage: %s; "+
		"upload accepted %s after restart; load total: %s",
		toWarn.Round(time.Millisecond), uploadTook.Round(time.Millisecond), outage.since(before), uploadBack.Round(time.Millisecond), l.summary())
}
