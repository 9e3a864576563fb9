package api

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/finetune-studio/finetune-studio/app/internal/training"
)

// seedJobs fills the database behind f with 1 000 datasets and 10 000 jobs
// spread over every status and over 30 days, in one statement each (test
// data only: the application never writes SQL outside the store).
func seedJobs(b *testing.B, f *trainingFixture) (deepCursor string) {
	b.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, f.dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, `
		INSERT INTO datasets (id, name, object_key, size_bytes, sha256, format, schema, examples, report, created_at)
		SELECT gen_random_uuid(), 'dataset-' || i, 'datasets/seed-' || i, 1000, repeat('ab', 32), 'jsonl', 'chat', 100,
		       '{"valid":true}', now() - (i || ' minutes')::interval
		FROM generate_series(1, 1000) AS i`)
	if err != nil {
		b.Fatal(err)
	}
	_, err = conn.Exec(ctx, `
		INSERT INTO jobs (id, dataset_id, base_model, hyperparameters, status, created_at, started_at, finished_at)
		SELECT gen_random_uuid(), d.id, 'Qwen/Qwen2.5-0.5B-Instruct',
		       '{"lora_rank":16,"lora_alpha":32,"lora_dropout":0.05,"epochs":3,"learning_rate":0.0002,"batch_size":4,"max_seq_length":1024}',
		       s.status, now() - (i * 259 || ' seconds')::interval, now(), CASE WHEN s.status IN ('succeeded','failed','cancelled') THEN now() END
		FROM generate_series(1, 10000) AS i
		JOIN LATERAL (SELECT id FROM datasets ORDER BY id OFFSET (i % 1000) LIMIT 1) d ON true
		JOIN LATERAL (SELECT (ARRAY['queued','uploading','submitted','running','collecting','succeeded','failed','cancelled'])[1 + i % 8] AS status) s ON true`)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `ANALYZE datasets; ANALYZE jobs`); err != nil {
		b.Fatal(err)
	}
	var c training.Cursor
	if err := conn.QueryRow(ctx, `SELECT list_position FROM jobs ORDER BY list_position DESC OFFSET 5000 LIMIT 1`).Scan(&c.Position); err != nil {
		b.Fatal(err)
	}
	return c.Encode()
}

// BenchmarkListEndpoints measures GET latency of the list endpoints over
// HTTP on loopback with 10 000 jobs in the database, one request at a
// time, and reports p50/p95/p99 in microseconds. deploy/scripts/bench-api.sh
// runs it; docs/benchmarks.md quotes it.
func BenchmarkListEndpoints(b *testing.B) {
	f := newTrainingFixture(b, false)
	deep := seedJobs(b, f)
	cases := []struct{ name, path string }{
		{"jobs", "/api/v1/jobs"},
		{"jobs_limit100", "/api/v1/jobs?limit=100"},
		{"jobs_status_running", "/api/v1/jobs?status=running"},
		{"jobs_page_after_5000", "/api/v1/jobs?cursor=" + url.QueryEscape(deep)},
		{"datasets", "/api/v1/datasets"},
		{"datasets_name_prefix", "/api/v1/datasets?name=dataset-99"},
	}
	client := f.srv.Client()
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			req, err := http.NewRequest(http.MethodGet, f.srv.URL+c.path, nil)
			if err != nil {
				b.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+f.token)
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				start := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				lat = append(lat, time.Since(start))
				if resp.StatusCode != http.StatusOK {
					b.Fatalf("%s: status %d", c.path, resp.StatusCode)
				}
			}
			b.StopTimer()
			slices.Sort(lat)
			pct := func(p float64) float64 {
				return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds())
			}
			b.ReportMetric(pct(0.50), "p50-µs")
			b.ReportMetric(pct(0.95), "p95-µs")
			b.ReportMetric(pct(0.99), "p99-µs")
		})
	}
}
