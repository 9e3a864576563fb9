package metrics

import (
	"context"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

func exercised(t *testing.T) *Metrics {
	t.Helper()
	m := New(BuildInfo{Version: "v1.2.3", Revision: "abc"})
	m.WatchDBPool(func() DBPoolStats {
		return DBPoolStats{Acquired: 1, Idle: 2, Total: 3, Max: 10, AcquireCount: 42, AcquireWait: 1500 * time.Millisecond}
	})
	m.WatchWorkerPool(func() WorkerPoolStats { return WorkerPoolStats{Workers: 4, Busy: 1, Queued: 7, Running: 2} })
	m.WatchUploads(func() int { return 3 })
	m.WatchBackups(func(context.Context) (map[string]time.Time, error) {
		return map[string]time.Time{"postgres": time.Unix(1700000000, 500e6), "objects": {}}, nil
	})
	m.RequestStarted()
	m.RequestDone("/api/v1/jobs/{id}", "GET", 200, 12*time.Millisecond)
	m.RequestStarted()
	m.RequestDone("unmatched", "BREW", 404, time.Millisecond)
	m.ObserveTask("training.step", "done", 2*time.Second)
	return m
}

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	b, _ := io.ReadAll(rec.Body)
	return string(b)
}

// TestPromlint lints the whole exposition, including the Go and process
// collectors, and fails on any problem.
func TestPromlint(t *testing.T) {
	out := scrape(t, exercised(t))
	problems, err := promlint.New(strings.NewReader(out)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

func TestExposition(t *testing.T) {
	out := scrape(t, exercised(t))
	for _, want := range []string{
		`http_requests_total{code="200",method="GET",route="/api/v1/jobs/{id}"} 1`,
		`http_requests_total{code="404",method="OTHER",route="unmatched"} 1`,
		`http_request_duration_seconds_bucket{method="GET",route="/api/v1/jobs/{id}",le="0.025"} 1`,
		`http_requests_in_flight 0`,
		`db_pool_acquired_connections 1`,
		`backup_last_success_timestamp_seconds{kind="postgres"} 1.7000000005e+09`,
		`backup_last_success_timestamp_seconds{kind="objects"} 0`,
		`db_pool_idle_connections 2`,
		`db_pool_connections 3`,
		`db_pool_acquire_wait_seconds_total 1.5`,
		`worker_pool_workers 4`,
		`worker_pool_busy_workers 1`,
		`worker_queue_depth 7`,
		`uploads_in_flight 3`,
		`worker_tasks_total{kind="training.step",outcome="done"} 1`,
		`worker_task_duration_seconds_count{kind="training.step"} 1`,
		`build_info{goversion="go`,
		`go_goroutines `,
		`process_cpu_seconds_total `,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("exposition lacks %q", want)
		}
	}
}

// TestOwnRegistry: nothing lands on the default registry, so two
// instances coexist (tests, or a future second server) without panics.
func TestOwnRegistry(t *testing.T) {
	before, _ := prometheus.DefaultGatherer.Gather()
	a, b := exercised(t), exercised(t)
	after, _ := prometheus.DefaultGatherer.Gather()
	if len(before) != len(after) {
		t.Fatalf("default registry changed: %d -> %d families", len(before), len(after))
	}
	if a.reg == b.reg {
		t.Fatal("instances share a registry")
	}
}
