package runner

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/finetune-studio/finetune-studio/app/internal/kaggle"
	"github.com/finetune-studio/finetune-studio/app/internal/store"
	"github.com/finetune-studio/finetune-studio/app/internal/training"
	"github.com/finetune-studio/finetune-studio/app/internal/worker"
)

// startPool runs r's tasks on a worker pool over the fixture's store,
// stopped when the test ends.
func (f *fixture) startPool(t *testing.T, r *Runner) {
	t.Helper()
	p := worker.New(f.store, slog.New(slog.DiscardHandler), worker.Options{
		Concurrency: 1, Lease: time.Second, PollInterval: 20 * time.Millisecond,
		Backoff: func(int) time.Duration { return 10 * time.Millisecond },
	})
	r.Register(p)
	p.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = p.Shutdown(ctx)
	})
}

// waitJob polls until the job is finished.
func (f *fixture) waitJob(t *testing.T, id string) training.Job {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		j, err := f.store.GetJob(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if j.Status.Terminal() {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s still %s", id, j.Status)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// jobTaskState returns the state of a job's newest task.
func (f *fixture) jobTaskState(t *testing.T, jobID string) string {
	t.Helper()
	var state string
	err := f.db.QueryRow(context.Background(),
		`SELECT state FROM tasks WHERE dedupe_key = $1 ORDER BY id DESC LIMIT 1`, jobID).Scan(&state)
	if err != nil {
		t.Fatalf("job %s's task: %v", jobID, err)
	}
	return state
}

// crashClaims claims the job's task n times with a lease that expires at
// once, as n workers that crashed mid-step would.
func (f *fixture) crashClaims(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for claimed := 0; claimed < n; {
		task, err := f.store.ClaimTask(context.Background(), []string{training.TaskKind}, time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if task != nil {
			claimed++
			continue
		}
		if time.Now().After(deadline) {
			t.Fatalf("task not claimable after %d crashed claims", claimed)
		}
		time.Sleep(5 * time.Millisecond) // the 1 ms lease is expiring
	}
}

func (f *fixture) events(t *testing.T, id string) string {
	t.Helper()
	evs, err := f.store.ListEvents(context.Background(), id, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range evs {
		b.WriteString(e.Message + "\n")
	}
	return b.String()
}

// TestCrashedClaimsFailTheJob: two workers crash on a job's step with two
// attempts allowed. The queue dead-letters the task without running the
// step again, and the job is failed with it instead of staying queued
// forever.
func TestCrashedClaimsFailTheJob(t *testing.T) {
	f := newFixtureAttempts(t, nil, 2)
	j := f.newJob(t)
	f.crashClaims(t, 2)
	f.startPool(t, f.runner)
	got := f.waitJob(t, j.ID)
	if got.Status != training.StatusFailed || !strings.Contains(got.Error, "crashed or lost its lease") {
		t.Errorf("job = %s %q, want failed saying its workers kept stopping", got.Status, got.Error)
	}
	if state := f.jobTaskState(t, j.ID); state != store.TaskDead {
		t.Errorf("task state %s, want dead", state)
	}
	if len(f.emu.Pushes()) != 0 || len(f.emu.Blobs()) != 0 {
		t.Error("the step ran although its attempts were used up")
	}
}

// flakyRepo fails the first n writes that would fail a job, as a database
// that is down when the queue gives up.
type flakyRepo struct {
	training.Repository
	mu sync.Mutex
	n  int
}

func (r *flakyRepo) Transition(ctx context.Context, id string, from, to training.Status, upd training.JobUpdate, message string) (training.Job, error) {
	r.mu.Lock()
	down := to == training.StatusFailed && r.n > 0
	if down {
		r.n--
	}
	r.mu.Unlock()
	if down {
		return training.Job{}, errors.New("failed to connect to the database: connection refused")
	}
	return r.Repository.Transition(ctx, id, from, to, upd, message)
}

// TestGiveUpSurvivesADatabaseOutage: the step keeps failing until the
// queue gives up, and the write that fails the job fails too. The task is
// not dead-lettered then; the give-up is tried again and the job ends
// failed with the step's real error, not a generic text.
func TestGiveUpSurvivesADatabaseOutage(t *testing.T) {
	f := newFixtureAttempts(t, nil, 2)
	j := f.newJob(t)
	f.emu.Fail("/datasets/status", 500, 0)
	repo := &flakyRepo{Repository: f.store, n: 1}
	f.startPool(t, New(repo, f.objects, f.client, Config{MaxRuntime: time.Hour, PollInterval: time.Second, Now: f.clock.Now}, slog.New(slog.DiscardHandler)))
	got := f.waitJob(t, j.ID)
	if got.Status != training.StatusFailed || !strings.Contains(got.Error, "HTTP 500") || strings.Contains(got.Error, "logged for the operator") {
		t.Errorf("job = %s %q, want failed with the step's last error", got.Status, got.Error)
	}
	if !strings.Contains(f.events(t, j.ID), "HTTP 500") {
		t.Error("the job's events do not say why it failed")
	}
	repo.mu.Lock()
	defer repo.mu.Unlock()
	if repo.n != 0 {
		t.Error("the outage was never hit")
	}
}

// TestReconcileFinishesStrandedJobs: a job whose task is dead (the give-up
// never landed) is failed with the task's last error; a job with only a
// finished task gets a new one; healthy and finished jobs are left alone.
func TestReconcileFinishesStrandedJobs(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	dead, done, healthy, cancelled := f.newJob(t), f.newJob(t), f.newJob(t), f.newJob(t)
	claim := func(jobID string) *store.Task {
		t.Helper()
		for {
			task, err := f.store.ClaimTask(ctx, []string{training.TaskKind}, time.Hour)
			if err != nil || task == nil {
				t.Fatalf("claim: %v %v", task, err)
			}
			if task.DedupeKey == jobID {
				return task
			}
			if err := f.store.ReleaseTask(ctx, task.ID, task.LeaseToken); err != nil {
				t.Fatal(err)
			}
		}
	}
	task := claim(dead.ID)
	if err := f.store.KillTask(ctx, task.ID, task.LeaseToken, "kaggle kernels/push: HTTP 503: Service Unavailable"); err != nil {
		t.Fatal(err)
	}
	task = claim(done.ID)
	if err := f.store.CompleteTask(ctx, task.ID, task.LeaseToken); err != nil {
		t.Fatal(err)
	}
	svc := training.NewService(f.store, f.objects, training.ServiceConfig{BackendConfigured: true}, slog.New(slog.DiscardHandler))
	if _, err := svc.CancelJob(ctx, cancelled.ID); err != nil {
		t.Fatal(err)
	}

	n, err := f.runner.Reconcile(ctx, f.store)
	if err != nil || n != 2 {
		t.Fatalf("Reconcile = %d, %v; want 2 jobs", n, err)
	}
	got, _ := f.store.GetJob(ctx, dead.ID)
	if got.Status != training.StatusFailed || !strings.Contains(got.Error, "HTTP 503: Service Unavailable") {
		t.Errorf("job of the dead task: %s %q, want failed with its last error", got.Status, got.Error)
	}
	if state := f.jobTaskState(t, done.ID); state != store.TaskQueued {
		t.Errorf("job without a live task: newest task %s, want a new queued one", state)
	}
	for _, j := range []training.Job{done, healthy} {
		if got, _ := f.store.GetJob(ctx, j.ID); got.Status != training.StatusQueued {
			t.Errorf("job %s: %s, want still queued", j.ID, got.Status)
		}
	}
	if n, err := f.runner.Reconcile(ctx, f.store); err != nil || n != 0 {
		t.Errorf("second pass = %d, %v; want nothing left to do", n, err)
	}
	// The requeued job runs to the end.
	f.emu.SetKernelProgress(0, 1, kaggle.KernelComplete, "")
	if got, err := f.runUntil(t, f.runner, done.ID, nil); err != nil || got.Status != training.StatusSucceeded {
		t.Errorf("requeued job: %s %v", got.Status, err)
	}
}

// TestRunReconcilerPasses: the periodic loop finds a job stranded after it
// started, and stops when its context ends.
func TestRunReconcilerPasses(t *testing.T) {
	f := newFixture(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f.runner.RunReconciler(ctx, f.store, 20*time.Millisecond) }()
	defer func() { cancel(); <-done }()
	j := f.newJob(t)
	task, err := f.store.ClaimTask(context.Background(), []string{training.TaskKind}, time.Hour)
	if err != nil || task == nil {
		t.Fatalf("claim: %v %v", task, err)
	}
	if err := f.store.KillTask(context.Background(), task.ID, task.LeaseToken, "lost"); err != nil {
		t.Fatal(err)
	}
	if got := f.waitJob(t, j.ID); got.Status != training.StatusFailed || !strings.Contains(got.Error, "lost") {
		t.Errorf("job = %s %q, want failed by the reconciler", got.Status, got.Error)
	}
}
