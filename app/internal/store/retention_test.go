package store

import (
	"context"
	"strings"
	"testing"
	"time"
)

// explain returns the plan of q.
func explain(t *testing.T, s *Store, q string, args ...any) string {
	t.Helper()
	rows, err := s.pool.Query(context.Background(), "EXPLAIN "+q, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, line)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(plan, "\n")
}

// TestQueueAndRetentionQueriesUseTheirIndexes seeds a history of 20 000
// finished tasks and 20 000 job events beside a few live tasks, and checks
// that the queue-depth query (every 5 s), the retention deletes and the
// Kaggle dataset sweep (every reconcile pass) read their indexes instead of scanning the tables.
func TestQueueAndRetentionQueriesUseTheirIndexes(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	if _, err := s.pool.Exec(ctx, `
		INSERT INTO tasks (kind, state, max_attempts, finished_at)
		SELECT 'k', CASE WHEN i % 10 = 0 THEN 'dead' ELSE 'done' END, 3, now() - (i || ' seconds')::interval
		FROM generate_series(1, 20000) AS i;
		INSERT INTO tasks (kind, max_attempts) SELECT 'k', 3 FROM generate_series(1, 5);
		INSERT INTO jobs (id, base_model, hyperparameters, status, finished_at)
		SELECT gen_random_uuid(), 'm', '{}', 'succeeded', now() - (i || ' minutes')::interval
		FROM generate_series(1, 2000) AS i;
		INSERT INTO job_events (job_id, seq, kind, created_at)
		SELECT j.id, s, 'log', j.finished_at - (s || ' seconds')::interval
		FROM jobs j, generate_series(1, 10) AS s;
		ANALYZE tasks; ANALYZE jobs; ANALYZE job_events;`); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-7 * 24 * time.Hour)
	tests := []struct {
		name  string
		q     string
		args  []any
		index string
		table string
	}{
		{"queue depth", queueDepthSQL, nil, "tasks_live_state", "tasks"},
		{"expired tasks", deleteFinishedTasksSQL, []any{old, 1000}, "tasks_finished_at", "tasks"},
		{"expired job events", deleteJobEventsSQL, []any{old, 1000}, "job_events_created_at_idx", "job_events"},
		{"Kaggle datasets to delete", kaggleCleanupSQL, []any{"me", 100}, "jobs_kaggle_dataset_cleanup_idx", "jobs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan := explain(t, s, tt.q, tt.args...)
			if !strings.Contains(plan, tt.index) || strings.Contains(plan, "Seq Scan on "+tt.table) {
				t.Errorf("plan does not use %s:\n%s", tt.index, plan)
			}
		})
	}
	d, err := s.TaskQueueDepth(ctx)
	if err != nil || d.Queued != 5 || d.Running != 0 {
		t.Errorf("queue depth = %+v, %v; want 5 queued", d, err)
	}
}
