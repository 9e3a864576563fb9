package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/finetune-studio/finetune-studio/app/internal/problem"
	"github.com/finetune-studio/finetune-studio/app/internal/testenv"
	"github.com/finetune-studio/finetune-studio/app/internal/training"
)

func openTestStore(t *testing.T) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := Open(ctx, Options{URL: testenv.NewDatabase(t), Migrate: true}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("opening store: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

func insertTestDataset(t *testing.T, s *Store, name string) training.Dataset {
	t.Helper()
	id := training.NewID()
	d, err := s.InsertDataset(context.Background(), training.Dataset{
		ID: id, Name: name, ObjectKey: "datasets/" + id, SizeBytes: 10,
		SHA256: strings.Repeat("ab", 32), Format: "jsonl", Schema: "chat", Examples: 10,
		Report: json.RawMessage(`{"valid":true}`),
	})
	if err != nil {
		t.Fatalf("inserting dataset: %v", err)
	}
	return d
}

func insertTestJob(t *testing.T, s *Store, datasetID string) training.Job {
	t.Helper()
	id := training.NewID()
	j, err := s.InsertJob(context.Background(), training.Job{
		ID: id, DatasetID: datasetID, BaseModel: "m", Hyperparameters: training.DefaultHyperparameters(),
	}, training.StepTask(id))
	if err != nil {
		t.Fatalf("inserting job: %v", err)
	}
	return j
}

func TestDatasetListPaginationAndNameFilter(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	want := map[string]bool{}
	for i := range 25 {
		d := insertTestDataset(t, s, fmt.Sprintf("set-%02d", i))
		want[d.ID] = true
	}
	insertTestDataset(t, s, "50%_off")
	insertTestDataset(t, s, "50 percent")

	seen := map[string]bool{}
	var prev *training.Dataset
	page := training.Page{Limit: 10}
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("pagination does not end")
		}
		got, next, err := s.ListDatasets(ctx, "SET-", page)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range got {
			if seen[d.ID] {
				t.Fatalf("dataset %s listed twice", d.ID)
			}
			seen[d.ID] = true
			if prev != nil && (d.CreatedAt.After(prev.CreatedAt) || d.CreatedAt.Equal(prev.CreatedAt) && d.ID > prev.ID) {
				t.Fatalf("not newest first: %v after %v", d.CreatedAt, prev.CreatedAt)
			}
			prev = &d
			if d.Report != nil {
				t.Error("list rows carry the full report; want it left out")
			}
		}
		if next == "" {
			break
		}
		c, _, err := training.ParseCursor(next)
		if err != nil {
			t.Fatal(err)
		}
		page.After = &c
	}
	if len(seen) != len(want) {
		t.Fatalf("listed %d datasets with prefix set-, want %d", len(seen), len(want))
	}

	// LIKE metacharacters in the filter are literal.
	got, _, err := s.ListDatasets(ctx, "50%_", training.Page{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Name != "50%_off" {
		t.Errorf("filter 50%%_ matched %v, want only 50%%_off", got)
	}
}

func TestGetDatasetReturnsReportAndNotFound(t *testing.T) {
	s := openTestStore(t)
	d := insertTestDataset(t, s, "one")
	got, err := s.GetDataset(context.Background(), d.ID)
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Report) != `{"valid": true}` && string(got.Report) != `{"valid":true}` {
		t.Errorf("report = %s", got.Report)
	}
	for _, id := range []string{training.NewID(), "not-a-uuid", ""} {
		if _, err := s.GetDataset(context.Background(), id); !errors.Is(err, problem.ErrNotFound) {
			t.Errorf("GetDataset(%q) = %v, want ErrNotFound", id, err)
		}
	}
}

func TestDeleteDatasetRefusedWhileAJobIsUnfinished(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	d := insertTestDataset(t, s, "busy")
	j := insertTestJob(t, s, d.ID)
	if err := s.DeleteDataset(ctx, d.ID, nil); !errors.Is(err, problem.ErrConflict) {
		t.Fatalf("deleting a dataset of a queued job: err = %v, want ErrConflict", err)
	}
	if _, err := s.Transition(ctx, j.ID, training.StatusQueued, training.StatusCancelled, training.JobUpdate{}, "cancel"); err != nil {
		t.Fatal(err)
	}
	storageDown := errors.New("storage down")
	if err := s.DeleteDataset(ctx, d.ID, func(training.Dataset) error { return storageDown }); !errors.Is(err, storageDown) {
		t.Fatalf("delete with a failing object removal: err = %v", err)
	}
	if _, err := s.GetDataset(ctx, d.ID); err != nil {
		t.Fatalf("the row is gone although its object could not be removed: %v", err)
	}
	var removed string
	if err := s.DeleteDataset(ctx, d.ID, func(d training.Dataset) error { removed = d.ObjectKey; return nil }); err != nil {
		t.Fatalf("deleting a dataset whose jobs are finished: %v", err)
	}
	if removed != d.ObjectKey {
		t.Errorf("beforeCommit got object %q, want %q", removed, d.ObjectKey)
	}
	got, err := s.GetJob(ctx, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.DatasetID != "" {
		t.Errorf("finished job still points at deleted dataset %q", got.DatasetID)
	}
	if err := s.DeleteDataset(ctx, d.ID, nil); !errors.Is(err, problem.ErrNotFound) {
		t.Errorf("deleting twice: err = %v, want ErrNotFound", err)
	}
}

func TestInsertJobEnqueuesItsTaskInTheSameTransaction(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	d := insertTestDataset(t, s, "ds")
	j := insertTestJob(t, s, d.ID)
	task, err := s.ClaimTask(ctx, []string{training.TaskKind}, time.Minute)
	if err != nil || task == nil {
		t.Fatalf("claiming the job's task: %v, %v", task, err)
	}
	if task.MaxAttempts != 10 {
		t.Errorf("task max attempts = %d, want the default 10", task.MaxAttempts)
	}
	var p training.TaskPayload
	if err := json.Unmarshal(task.Payload, &p); err != nil || p.JobID != j.ID || task.DedupeKey != j.ID {
		t.Errorf("task payload %s dedupe %q, want job %s", task.Payload, task.DedupeKey, j.ID)
	}
	evs, err := s.ListEvents(ctx, j.ID, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Seq != 1 || evs[0].ToStatus != training.StatusQueued {
		t.Errorf("events after insert = %+v, want one 'queued' event with seq 1", evs)
	}

	// A job on a dataset that does not exist is refused and leaves no task.
	id := training.NewID()
	_, err = s.InsertJob(ctx, training.Job{ID: id, DatasetID: training.NewID(), BaseModel: "m"}, training.StepTask(id))
	if !errors.Is(err, problem.ErrConflict) {
		t.Fatalf("job on a missing dataset: err = %v, want ErrConflict", err)
	}
	if task, err := s.ClaimTask(ctx, []string{training.TaskKind}, time.Minute); err != nil || task != nil {
		t.Errorf("a task was left for the refused job: %+v, %v", task, err)
	}
}

// TestJobTaskAttemptsFollowOptions: WORKER_MAX_ATTEMPTS reaches the tasks
// the store enqueues.
func TestJobTaskAttemptsFollowOptions(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := Open(ctx, Options{URL: testenv.NewDatabase(t), Migrate: true, TaskMaxAttempts: 3}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	insertTestJob(t, s, insertTestDataset(t, s, "ds").ID)
	task, err := s.ClaimTask(ctx, []string{training.TaskKind}, time.Minute)
	if err != nil || task == nil {
		t.Fatalf("claiming the job's task: %v, %v", task, err)
	}
	if task.MaxAttempts != 3 {
		t.Errorf("task max attempts = %d, want 3 from Options", task.MaxAttempts)
	}
}

func TestTransitionIsConditionalAndRecordsEvents(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	j := insertTestJob(t, s, insertTestDataset(t, s, "ds").ID)

	got, err := s.Transition(ctx, j.ID, training.StatusQueued, training.StatusUploading, training.JobUpdate{}, "started")
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != training.StatusUploading || got.StartedAt == nil {
		t.Errorf("after queued->uploading: status %s started_at %v", got.Status, got.StartedAt)
	}
	if _, err := s.Transition(ctx, j.ID, training.StatusQueued, training.StatusUploading, training.JobUpdate{}, "again"); !errors.Is(err, training.ErrStale) {
		t.Errorf("repeating a transition: err = %v, want ErrStale", err)
	}
	if _, err := s.Transition(ctx, j.ID, training.StatusUploading, training.StatusSucceeded, training.JobUpdate{}, "skip"); err == nil {
		t.Error("uploading->succeeded was accepted; the state machine forbids it")
	}
	if _, err := s.Transition(ctx, training.NewID(), training.StatusQueued, training.StatusUploading, training.JobUpdate{}, "x"); !errors.Is(err, problem.ErrNotFound) {
		t.Errorf("transition of a missing job: err = %v, want ErrNotFound", err)
	}
	ref := "me/ds"
	if _, err := s.UpdateJob(ctx, j.ID, training.StatusUploading, training.JobUpdate{KaggleDataset: &ref}, training.EventLog, "line 1\nline 2"); err != nil {
		t.Fatal(err)
	}
	msg := "boom"
	got, err = s.Transition(ctx, j.ID, training.StatusUploading, training.StatusFailed, training.JobUpdate{Error: &msg}, msg)
	if err != nil {
		t.Fatal(err)
	}
	if got.FinishedAt == nil || got.Error != "boom" || got.KaggleDataset != "me/ds" {
		t.Errorf("failed job = %+v", got)
	}
	evs, err := s.ListEvents(ctx, j.ID, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for i, e := range evs {
		if e.Seq != int64(i+1) {
			t.Errorf("event %d has seq %d", i, e.Seq)
		}
		kinds = append(kinds, string(e.Kind)+":"+string(e.ToStatus))
	}
	if want := "status:queued status:uploading log: status:failed"; strings.Join(kinds, " ") != want {
		t.Errorf("events = %s, want %s", strings.Join(kinds, " "), want)
	}
	after, err := s.ListEvents(ctx, j.ID, 2, 100)
	if err != nil || len(after) != 2 || after[0].Seq != 3 {
		t.Errorf("events after seq 2 = %+v, %v", after, err)
	}
}

// TestCancelRacingWorker runs a cancel against a worker's transition many
// times: exactly one of them wins each time, and the event log agrees with
// the final status.
func TestCancelRacingWorker(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	d := insertTestDataset(t, s, "ds")
	for i := range 20 {
		j := insertTestJob(t, s, d.ID)
		var wg sync.WaitGroup
		var workerErr, cancelErr error
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, workerErr = s.Transition(ctx, j.ID, training.StatusQueued, training.StatusUploading, training.JobUpdate{}, "started")
		}()
		go func() {
			defer wg.Done()
			_, cancelErr = s.Transition(ctx, j.ID, training.StatusQueued, training.StatusCancelled, training.JobUpdate{}, "cancelled")
		}()
		wg.Wait()
		if (workerErr == nil) == (cancelErr == nil) {
			t.Fatalf("round %d: worker err %v, cancel err %v; want exactly one winner", i, workerErr, cancelErr)
		}
		loser := workerErr
		if loser == nil {
			loser = cancelErr
		}
		if !errors.Is(loser, training.ErrStale) {
			t.Fatalf("round %d: loser's error = %v, want ErrStale", i, loser)
		}
		got, err := s.GetJob(ctx, j.ID)
		if err != nil {
			t.Fatal(err)
		}
		evs, err := s.ListEvents(ctx, j.ID, 0, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != 2 || evs[1].ToStatus != got.Status {
			t.Fatalf("round %d: status %s but events %+v", i, got.Status, evs)
		}
	}
}

func TestCompleteJobCreatesOneModel(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	j := insertTestJob(t, s, insertTestDataset(t, s, "ds").ID)
	for _, st := range [][2]training.Status{
		{training.StatusQueued, training.StatusUploading}, {training.StatusUploading, training.StatusSubmitted},
		{training.StatusSubmitted, training.StatusCollecting},
	} {
		if _, err := s.Transition(ctx, j.ID, st[0], st[1], training.JobUpdate{}, ""); err != nil {
			t.Fatal(err)
		}
	}
	m := training.Model{ID: training.NewID(), JobID: j.ID, BaseModel: "m", Prefix: "models/" + j.ID + "/",
		Files: []training.ModelFile{{Name: "adapter.bin", SizeBytes: 5}}, Metrics: json.RawMessage(`{"loss":0.5}`), SizeBytes: 5}
	if _, err := s.CompleteJob(ctx, m); err != nil {
		t.Fatal(err)
	}
	again := m
	again.ID = training.NewID()
	if _, err := s.CompleteJob(ctx, again); !errors.Is(err, training.ErrStale) {
		t.Errorf("completing twice: err = %v, want ErrStale", err)
	}
	got, err := s.GetModel(ctx, m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Files) != 1 || got.Files[0].Name != "adapter.bin" || !strings.Contains(string(got.Metrics), "loss") {
		t.Errorf("model = %+v", got)
	}
	list, next, err := s.ListModels(ctx, training.Page{Limit: 10})
	if err != nil || len(list) != 1 || next != "" {
		t.Errorf("ListModels = %d models, next %q, err %v", len(list), next, err)
	}
	if job, _ := s.GetJob(ctx, j.ID); job.Status != training.StatusSucceeded {
		t.Errorf("job status = %s, want succeeded", job.Status)
	}
	if err := s.DeleteModel(ctx, m.ID, func(training.Model) error { return errors.New("storage down") }); err == nil {
		t.Fatal("delete succeeded although removing the files failed")
	}
	if _, err := s.GetModel(ctx, m.ID); err != nil {
		t.Fatalf("row gone after a failed file removal: %v", err)
	}
	if err := s.DeleteModel(ctx, m.ID, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetModel(ctx, m.ID); !errors.Is(err, problem.ErrNotFound) {
		t.Errorf("after delete: err = %v, want ErrNotFound", err)
	}
}

func TestListJobsFiltersByStatus(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	d := insertTestDataset(t, s, "ds")
	var cancelled []string
	for i := range 12 {
		j := insertTestJob(t, s, d.ID)
		if i%3 == 0 {
			if _, err := s.Transition(ctx, j.ID, training.StatusQueued, training.StatusCancelled, training.JobUpdate{}, ""); err != nil {
				t.Fatal(err)
			}
			cancelled = append(cancelled, j.ID)
		}
	}
	got, next, err := s.ListJobs(ctx, training.StatusCancelled, training.Page{Limit: 3})
	if err != nil || len(got) != 3 || next == "" {
		t.Fatalf("first page: %d jobs, next %q, err %v", len(got), next, err)
	}
	c, _, _ := training.ParseCursor(next)
	rest, next, err := s.ListJobs(ctx, training.StatusCancelled, training.Page{Limit: 3, After: &c})
	if err != nil || len(rest) != 1 || next != "" {
		t.Fatalf("second page: %d jobs, next %q, err %v", len(rest), next, err)
	}
	for _, j := range append(got, rest...) {
		if j.Status != training.StatusCancelled {
			t.Errorf("status filter returned a %s job", j.Status)
		}
	}
	all, _, err := s.ListJobs(ctx, "", training.Page{Limit: 100})
	if err != nil || len(all) != 12 {
		t.Errorf("unfiltered: %d jobs, err %v", len(all), err)
	}
}

// TestListQueriesUseTheirIndexes seeds 10 000 jobs and checks that every
// list query is answered by an index scan in the list's order: no
// sequential scan, no sort of the whole table, at any page depth.
func TestListQueriesUseTheirIndexes(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	if _, err := s.pool.Exec(ctx, `
		INSERT INTO datasets (id, name, object_key, size_bytes, sha256, format, schema, examples, report, created_at)
		SELECT gen_random_uuid(), 'Dataset-' || i, 'datasets/seed-' || i, 1, repeat('ab', 32), 'jsonl', 'chat', 10, '{}',
		       now() - (i || ' minutes')::interval
		FROM generate_series(1, 2000) AS i;
		INSERT INTO jobs (id, dataset_id, base_model, hyperparameters, status, created_at, finished_at)
		SELECT gen_random_uuid(), NULL, 'm', '{}', s.status, now() - (i || ' seconds')::interval,
		       CASE WHEN s.status IN ('succeeded', 'failed', 'cancelled') THEN now() END
		FROM generate_series(1, 10000) AS i,
		     -- running is rare (1 in 100), as in real use: that is where the
		     -- status index matters. For a status of 1 in 8 the planner rightly
		     -- reads jobs_list_position_idx backwards and filters, ~8 entries a row.
		     LATERAL (SELECT CASE WHEN i % 100 = 0 THEN 'running'
		                          ELSE (ARRAY['queued','uploading','submitted','collecting','succeeded','failed','cancelled'])[1 + i % 7] END AS status) s;
		INSERT INTO models (job_id, base_model, prefix, files, size_bytes)
		SELECT id, 'm', 'models/' || id || '/', '[]', 1 FROM jobs WHERE status = 'succeeded';
		ANALYZE datasets; ANALYZE jobs; ANALYZE models;`); err != nil {
		t.Fatal(err)
	}
	deep := &training.Cursor{Position: 5000}
	tests := []struct {
		name  string
		q     string
		args  []any
		index string
	}{
		{"jobs", "", nil, "jobs_list_position_idx"},
		{"jobs after cursor", "", nil, "jobs_list_position_idx"},
		{"jobs by status", "", nil, "jobs_status_list_position_idx"},
		{"jobs by status after cursor", "", nil, "jobs_status_list_position_idx"},
		{"datasets", "", nil, "datasets_list_position_idx"},
		{"datasets after cursor", "", nil, "datasets_list_position_idx"},
		{"datasets by name prefix", "", nil, "datasets_lower_name_position_idx"},
		{"models", "", nil, "models_list_position_idx"},
		{"models after cursor", "", nil, "models_list_position_idx"},
		{"events of a job", `SELECT seq FROM job_events WHERE job_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`,
			[]any{training.NewID(), 5, 100}, "job_events_pkey"},
		{"active jobs of a dataset", `SELECT EXISTS (SELECT 1 FROM jobs WHERE dataset_id = $1 AND status = ANY($2))`,
			[]any{training.NewID(), unfinished()}, "jobs_dataset_id_idx"},
	}
	tests[0].q, tests[0].args = listJobsQuery("", training.Page{Limit: 21})
	tests[1].q, tests[1].args = listJobsQuery("", training.Page{Limit: 21, After: deep})
	tests[2].q, tests[2].args = listJobsQuery(training.StatusRunning, training.Page{Limit: 21})
	tests[3].q, tests[3].args = listJobsQuery(training.StatusRunning, training.Page{Limit: 21, After: deep})
	tests[4].q, tests[4].args = listDatasetsQuery("", training.Page{Limit: 21})
	tests[5].q, tests[5].args = listDatasetsQuery("", training.Page{Limit: 21, After: deep})
	tests[6].q, tests[6].args = listDatasetsQuery("dataset-1999", training.Page{Limit: 21})
	tests[7].q, tests[7].args = listModelsQuery(training.Page{Limit: 21})
	tests[8].q, tests[8].args = listModelsQuery(training.Page{Limit: 21, After: deep})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text := explain(t, s, tt.q, tt.args...)
			if !strings.Contains(text, tt.index) || strings.Contains(text, "Seq Scan") {
				t.Errorf("plan does not use %s:\n%s", tt.index, text)
			}
			if tt.name != "datasets by name prefix" && strings.Contains(text, "Sort") {
				t.Errorf("plan sorts instead of reading the index in order:\n%s", text)
			}
		})
	}
}

// TestFencedJobWritesNeedTheLease: a write fenced by a task lease applies
// while that lease is held and is refused with ErrLeaseLost, changing
// nothing, once another claim took the task over.
func TestFencedJobWritesNeedTheLease(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	j := insertTestJob(t, s, insertTestDataset(t, s, "ds").ID)
	first, err := s.ClaimTask(ctx, []string{training.TaskKind}, time.Hour)
	if err != nil || first == nil {
		t.Fatalf("claim: %v %v", first, err)
	}
	fence := &training.Lease{TaskID: first.ID, Token: first.LeaseToken}
	got, err := s.Transition(ctx, j.ID, training.StatusQueued, training.StatusUploading, training.JobUpdate{Fence: fence}, "started")
	if err != nil || got.Status != training.StatusUploading {
		t.Fatalf("fenced transition under the lease: %v %v", got.Status, err)
	}
	got, err = s.UpdateJob(ctx, j.ID, training.StatusUploading, training.JobUpdate{Fence: fence, PushStarted: true}, training.EventLog, "")
	if err != nil || got.PushStartedAt == nil {
		t.Fatalf("recording the push start: %v %v", got.PushStartedAt, err)
	}
	// The lease passes to another worker.
	if err := s.ReleaseTask(ctx, first.ID, first.LeaseToken); err != nil {
		t.Fatal(err)
	}
	if second, err := s.ClaimTask(ctx, []string{training.TaskKind}, time.Hour); err != nil || second == nil {
		t.Fatalf("re-claim: %v %v", second, err)
	}
	ref := "emu-user/kernel"
	if _, err := s.Transition(ctx, j.ID, training.StatusUploading, training.StatusSubmitted, training.JobUpdate{Fence: fence, KaggleKernel: &ref}, "pushed"); !errors.Is(err, training.ErrLeaseLost) {
		t.Errorf("stale fenced transition: err = %v, want ErrLeaseLost", err)
	}
	if _, err := s.UpdateJob(ctx, j.ID, training.StatusUploading, training.JobUpdate{Fence: fence, KaggleKernel: &ref}, training.EventLog, "x"); !errors.Is(err, training.ErrLeaseLost) {
		t.Errorf("stale fenced update: err = %v, want ErrLeaseLost", err)
	}
	if got, _ := s.GetJob(ctx, j.ID); got.Status != training.StatusUploading || got.KaggleKernel != "" {
		t.Errorf("a refused write changed the job: %s %q", got.Status, got.KaggleKernel)
	}
}

// TestStrandedJobs lists unfinished jobs without a live task, with their
// newest task's state, and requeues one.
func TestStrandedJobs(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	ds := insertTestDataset(t, s, "ds").ID
	insertTestJob(t, s, ds) // healthy: its task is live
	dead := insertTestJob(t, s, ds)
	for {
		task, err := s.ClaimTask(ctx, []string{training.TaskKind}, time.Hour)
		if err != nil || task == nil {
			t.Fatalf("claim: %v %v", task, err)
		}
		if task.DedupeKey == dead.ID {
			if err := s.KillTask(ctx, task.ID, task.LeaseToken, "boom"); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	got, err := s.StrandedJobs(ctx, training.TaskKind, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].JobID != dead.ID || got[0].TaskState != TaskDead || got[0].LastError != "boom" || got[0].Status != training.StatusQueued {
		t.Fatalf("stranded = %+v, want only job %s with its dead task", got, dead.ID)
	}
	created, err := s.RequeueJob(ctx, dead.ID, training.StepTask(dead.ID))
	if err != nil || !created {
		t.Fatalf("RequeueJob = %v, %v", created, err)
	}
	if created, err := s.RequeueJob(ctx, dead.ID, training.StepTask(dead.ID)); err != nil || created {
		t.Errorf("second RequeueJob = %v, %v; want the live task reused", created, err)
	}
	if got, err := s.StrandedJobs(ctx, training.TaskKind, 10); err != nil || len(got) != 0 {
		t.Errorf("after requeue: %+v %v", got, err)
	}
}
