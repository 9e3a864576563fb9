package store

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/finetune-studio/finetune-studio/app/internal/training"
)

// lister reads one page of a list: the ids on it and the next cursor.
type lister func(ctx context.Context, page training.Page) ([]string, string, error)

func idsOf[T any](rows []T, id func(T) string) []string {
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = id(r)
	}
	return out
}

func datasetIDs(s *Store) lister {
	return func(ctx context.Context, p training.Page) ([]string, string, error) {
		rows, next, err := s.ListDatasets(ctx, "", p)
		return idsOf(rows, func(d training.Dataset) string { return d.ID }), next, err
	}
}

func jobIDs(s *Store, status training.Status) lister {
	return func(ctx context.Context, p training.Page) ([]string, string, error) {
		rows, next, err := s.ListJobs(ctx, status, p)
		return idsOf(rows, func(j training.Job) string { return j.ID }), next, err
	}
}

func modelIDs(s *Store) lister {
	return func(ctx context.Context, p training.Page) ([]string, string, error) {
		rows, next, err := s.ListModels(ctx, p)
		return idsOf(rows, func(m training.Model) string { return m.ID }), next, err
	}
}

// walk reads pages of limit rows from after until the last page, or until
// stop is met (exclusive).
func walk(t *testing.T, list lister, after string, limit int, stop string) []string {
	t.Helper()
	var out []string
	for {
		p := training.Page{Limit: limit}
		if after != "" {
			c, _, err := training.ParseCursor(after)
			if err != nil {
				t.Fatal(err)
			}
			p.After = &c
		}
		got, next, err := list(context.Background(), p)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range got {
			if id == stop {
				return out
			}
			out = append(out, id)
		}
		if next == "" {
			return out
		}
		after = next
	}
}

// waitBlockedOrDone waits until done reports or some session of this
// database waits on a lock: the second insert of the scenario either
// commits at once (created_at order) or queues behind the first (list
// positions), and the test must go on in both cases.
func waitBlockedOrDone(t *testing.T, s *Store, done <-chan error) (finished bool) {
	t.Helper()
	ctx := context.Background()
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			return true
		default:
		}
		var waiting int
		if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			return false
		}
		time.Sleep(time.Millisecond)
	}
}

// TestPaginationSeesLateCommits: transaction A begins and inserts, then B
// inserts and commits, a client reads the first page, A commits. The
// client then reads on to the last page and, as docs/api.md says, catches
// up by reading from the start again until it meets the first row of its
// first page. Every row must have been seen exactly once. With created_at
// (the transaction's start) as the order key, A sorts between B and the
// rows before it, behind the first page: neither reading on nor catching
// up finds it.
func TestPaginationSeesLateCommits(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	insertJob := `INSERT INTO jobs (id, base_model, hyperparameters, status) VALUES ($1, 'm', '{}', 'queued')`
	tests := []struct {
		name   string
		list   lister
		insert string
	}{
		{"datasets", datasetIDs(s), `INSERT INTO datasets (id, name, object_key, size_bytes, sha256, format, schema, examples, report)
			VALUES ($1::uuid, 'd-' || $1::uuid, 'datasets/' || $1::uuid, 1, repeat('ab', 32), 'jsonl', 'chat', 1, '{}')`},
		{"jobs", jobIDs(s, ""), insertJob},
		{"jobs by status", jobIDs(s, training.StatusQueued), insertJob},
		{"models", modelIDs(s), `WITH j AS (INSERT INTO jobs (base_model, hyperparameters, status, finished_at) VALUES ('m', '{}', 'succeeded', now()) RETURNING id)
			INSERT INTO models (id, job_id, base_model, prefix, files, size_bytes)
			SELECT $1::uuid, j.id, 'm', 'models/' || $1::uuid || '/', '[]', 1 FROM j`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var want []string
			for range 3 {
				id := training.NewID()
				if _, err := s.pool.Exec(ctx, tt.insert, id); err != nil {
					t.Fatal(err)
				}
				want = append(want, id)
			}
			a, err := s.pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = a.Rollback(ctx) }()
			idA, idB := training.NewID(), training.NewID()
			if _, err := a.Exec(ctx, tt.insert, idA); err != nil {
				t.Fatal(err)
			}
			bDone := make(chan error, 1)
			go func() {
				_, err := s.pool.Exec(ctx, tt.insert, idB)
				bDone <- err
			}()
			bFinished := waitBlockedOrDone(t, s, bDone)

			first, next, err := tt.list(ctx, training.Page{Limit: 2})
			if err != nil {
				t.Fatal(err)
			}
			if err := a.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			if !bFinished {
				if err := <-bDone; err != nil {
					t.Fatal(err)
				}
			}
			seen := slices.Clone(first)
			if next != "" {
				seen = append(seen, walk(t, tt.list, next, 2, "")...)
			}
			seen = append(seen, walk(t, tt.list, "", 2, first[0])...)

			want = append(want, idA, idB)
			for _, id := range want {
				if n := count(seen, id); n != 1 {
					t.Errorf("row %s seen %d times, want once (A=%s B=%s)", id, n, idA, idB)
				}
			}
			// Leave the next subtest's list to itself: jobs and models share rows.
			if _, err := s.pool.Exec(ctx, `DELETE FROM models; DELETE FROM jobs; DELETE FROM datasets`); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestStatusChangeBetweenPages: a job's list position does not depend on
// its status, so a status-filtered walk lists each job at most once, and
// lists a job exactly when it has the status at the time the page holding
// its position is read (docs/api.md): one that leaves the status after it
// was listed is not repeated; one that leaves it before is not listed;
// one that gains it behind the client's cursor is not listed, and one
// that gains it ahead of the cursor is.
func TestStatusChangeBetweenPages(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	// j[0] oldest ... j[7] newest; j[2] and j[6] start running, the rest queued.
	j := make([]string, 8)
	for i := range j {
		j[i] = training.NewID()
		status := training.StatusQueued
		if i == 2 || i == 6 {
			status = training.StatusRunning
		}
		if _, err := s.pool.Exec(ctx, `INSERT INTO jobs (id, base_model, hyperparameters, status) VALUES ($1, 'm', '{}', $2)`,
			j[i], string(status)); err != nil {
			t.Fatal(err)
		}
	}
	setStatus := func(id string, st training.Status) {
		t.Helper()
		if _, err := s.pool.Exec(ctx, `UPDATE jobs SET status = $2 WHERE id = $1`, id, string(st)); err != nil {
			t.Fatal(err)
		}
	}
	list := jobIDs(s, training.StatusQueued)
	first, next, err := list(ctx, training.Page{Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(first, []string{j[7], j[5]}) {
		t.Fatalf("first page = %v, want [j7 j5] = %v", first, []string{j[7], j[5]})
	}
	setStatus(j[5], training.StatusRunning) // listed, then leaves: not repeated
	setStatus(j[7], training.StatusRunning)
	setStatus(j[7], training.StatusQueued)  // listed, leaves and comes back: not repeated
	setStatus(j[6], training.StatusQueued)  // gains the status behind the cursor: not listed
	setStatus(j[3], training.StatusRunning) // leaves before it is reached: not listed
	setStatus(j[2], training.StatusQueued)  // gains it ahead of the cursor: listed
	rest := walk(t, list, next, 2, "")
	if want := []string{j[4], j[2], j[1], j[0]}; !slices.Equal(rest, want) {
		t.Errorf("later pages = %v, want [j4 j2 j1 j0] = %v", rest, want)
	}
}
