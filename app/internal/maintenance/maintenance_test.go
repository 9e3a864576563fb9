package maintenance

import (
	"bytes"
	"context"
	"log/slog"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/finetune-studio/finetune-studio/app/internal/blob"
	"github.com/finetune-studio/finetune-studio/app/internal/store"
	"github.com/finetune-studio/finetune-studio/app/internal/testenv"
	"github.com/finetune-studio/finetune-studio/app/internal/training"
	"github.com/finetune-studio/finetune-studio/app/internal/worker"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

type fixture struct {
	store *store.Store
	blob  *blob.Store
	tasks *testenv.TaskReader
	cfg   Config
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dsn := testenv.NewDatabase(t)
	st, err := store.Open(ctx, store.Options{URL: dsn, Migrate: true}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	m := testenv.StartMinIO(t)
	b, err := blob.Open(blob.Options{Endpoint: m.Endpoint, AccessKey: m.AccessKey, SecretKey: m.SecretKey,
		Region: "us-east-1", Bucket: testenv.UniqueName("maint"), PublicURL: &url.URL{Scheme: "http", Host: m.Endpoint}})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.EnsureBucket(ctx); err != nil {
		t.Fatal(err)
	}
	return &fixture{store: st, blob: b, tasks: testenv.NewTaskReader(t, dsn), cfg: Config{
		Interval: time.Hour, TaskRetention: 7 * 24 * time.Hour, EventRetention: 30 * 24 * time.Hour, OrphanMinAge: 24 * time.Hour,
	}}
}

// at returns a Maintainer whose clock reads now+d.
func (f *fixture) at(d time.Duration) *Maintainer {
	cfg := f.cfg
	cfg.Now = func() time.Time { return time.Now().Add(d) }
	return New(f.store, f.blob, cfg, slog.New(slog.DiscardHandler))
}

func (f *fixture) dataset(t *testing.T, key string) training.Dataset {
	t.Helper()
	d, err := f.store.InsertDataset(context.Background(), training.Dataset{
		ID: training.NewID(), Name: "d", ObjectKey: key, SHA256: strings.Repeat("ab", 32),
		Format: "jsonl", Schema: "chat", Report: []byte(`{}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// job inserts a job on d and moves it through path (from queued).
func (f *fixture) job(t *testing.T, d training.Dataset, path ...training.Status) training.Job {
	t.Helper()
	ctx := context.Background()
	id := training.NewID()
	j, err := f.store.InsertJob(ctx, training.Job{ID: id, DatasetID: d.ID, BaseModel: "m",
		Hyperparameters: training.DefaultHyperparameters()}, training.StepTask(id))
	if err != nil {
		t.Fatal(err)
	}
	for _, to := range path {
		if j, err = f.store.Transition(ctx, id, j.Status, to, training.JobUpdate{}, "test"); err != nil {
			t.Fatalf("%s -> %s: %v", j.Status, to, err)
		}
	}
	return j
}

func (f *fixture) put(t *testing.T, key string) {
	t.Helper()
	if _, err := f.blob.Put(context.Background(), key, bytes.NewReader([]byte("x")), 1, "application/octet-stream"); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) keys(t *testing.T) []string {
	t.Helper()
	infos, err := f.blob.List(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, i := range infos {
		out = append(out, i.Key)
	}
	return out
}

// finishTask enqueues a task of kind and ends it done (or dead).
func (f *fixture) finishTask(t *testing.T, kind string, dead bool) int64 {
	t.Helper()
	ctx := context.Background()
	err := f.store.InTx(ctx, func(tx *store.Tx) error {
		_, _, err := tx.Enqueue(ctx, store.NewTask{Kind: kind, MaxAttempts: 1})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	task, err := f.store.ClaimTask(ctx, []string{kind}, time.Minute)
	if err != nil || task == nil {
		t.Fatalf("claim: %v %v", task, err)
	}
	if dead {
		err = f.store.KillTask(ctx, task.ID, task.LeaseToken, "gone")
	} else {
		err = f.store.CompleteTask(ctx, task.ID, task.LeaseToken)
	}
	if err != nil {
		t.Fatal(err)
	}
	return task.ID
}

func (f *fixture) taskStates(t *testing.T) map[string]string {
	t.Helper()
	tasks, err := f.tasks.Tasks(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, task := range tasks {
		out[task.Kind] = task.State
	}
	return out
}

func (f *fixture) eventCount(t *testing.T, jobID string) int {
	t.Helper()
	evs, err := f.store.ListEvents(context.Background(), jobID, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	return len(evs)
}

// TestRetention: done and dead tasks go once TaskRetention has passed since
// they finished, live tasks never; a finished job's events go once
// EventRetention has passed since it finished, an unfinished job's never.
func TestRetention(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	d := f.dataset(t, "datasets/x")
	finished := f.job(t, d, training.StatusCancelled)
	running := f.job(t, d, training.StatusUploading)
	f.finishTask(t, "done-kind", false)
	f.finishTask(t, "dead-kind", true)

	// Not old enough yet: nothing goes.
	if err := f.at(6 * 24 * time.Hour).Retention(ctx); err != nil {
		t.Fatal(err)
	}
	if got := f.taskStates(t); got["done-kind"] != store.TaskDone || got["dead-kind"] != store.TaskDead {
		t.Fatalf("tasks before their retention: %v", got)
	}
	// Past the task retention: finished tasks go, the jobs' live step
	// tasks stay, events stay.
	if err := f.at(8 * 24 * time.Hour).Retention(ctx); err != nil {
		t.Fatal(err)
	}
	got := f.taskStates(t)
	if _, ok := got["done-kind"]; ok {
		t.Errorf("done task kept past its retention: %v", got)
	}
	if _, ok := got["dead-kind"]; ok {
		t.Errorf("dead task kept past its retention: %v", got)
	}
	if got[training.TaskKind] != store.TaskQueued {
		t.Errorf("live tasks must stay: %v", got)
	}
	if n := f.eventCount(t, finished.ID); n != 2 {
		t.Errorf("finished job's events after 8 days: %d, want 2 (event retention is 30 days)", n)
	}
	// Past the event retention: the finished job's log goes, the job row
	// and the unfinished job's log stay.
	if err := f.at(31 * 24 * time.Hour).Retention(ctx); err != nil {
		t.Fatal(err)
	}
	if n := f.eventCount(t, finished.ID); n != 0 {
		t.Errorf("finished job's events after 31 days: %d, want 0", n)
	}
	if n := f.eventCount(t, running.ID); n != 2 {
		t.Errorf("unfinished job's events: %d, want 2", n)
	}
	if _, err := f.store.GetJob(ctx, finished.ID); err != nil {
		t.Errorf("the job row must stay: %v", err)
	}
}

// TestRetentionDeletesInBatches: more expired rows than one batch are all
// deleted in one run.
func TestRetentionDeletesInBatches(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for range batchSize + 5 {
		f.finishTask(t, "k", false)
	}
	if err := f.at(8 * 24 * time.Hour).Retention(ctx); err != nil {
		t.Fatal(err)
	}
	if got := f.taskStates(t); len(got) != 0 {
		t.Errorf("tasks left: %v", got)
	}
}

// TestSweepOrphans: objects no row refers to are removed once older than
// OrphanMinAge: an upload whose row was never inserted (kill -9 between
// upload and insert), the partial output of a cancelled job. Referenced
// objects, the output of a job still running, young objects and anything
// outside the application's prefixes stay.
func TestSweepOrphans(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	d := f.dataset(t, "datasets/referenced")
	cancelled := f.job(t, d, training.StatusCancelled)
	running := f.job(t, d, training.StatusUploading, training.StatusSubmitted, training.StatusRunning, training.StatusCollecting)
	done := f.job(t, d, training.StatusUploading, training.StatusSubmitted, training.StatusRunning, training.StatusCollecting)
	prefix := "models/" + done.ID + "/"
	if _, err := f.store.CompleteJob(ctx, training.Model{ID: training.NewID(), JobID: done.ID, BaseModel: "m",
		Prefix: prefix, Metrics: []byte(`{}`), Files: []training.ModelFile{}}); err != nil {
		t.Fatal(err)
	}
	keep := []string{
		"datasets/referenced",
		prefix + "adapter/adapter_model.safetensors",
		"models/" + running.ID + "/adapter/partial.bin",
		"notes/not-ours.txt",
	}
	orphans := []string{
		"datasets/" + training.NewID(),
		"models/" + cancelled.ID + "/adapter/partial.bin",
		"models/" + training.NewID() + "/metrics.json",
		"models/not-a-job-id/x",
	}
	for _, k := range append(slices.Clone(keep), orphans...) {
		f.put(t, k)
	}

	// Young objects are never removed, referenced or not.
	if err := f.at(0).SweepOrphans(ctx); err != nil {
		t.Fatal(err)
	}
	if got := f.keys(t); len(got) != len(keep)+len(orphans) {
		t.Fatalf("a sweep removed young objects: %v", got)
	}
	if err := f.at(25 * time.Hour).SweepOrphans(ctx); err != nil {
		t.Fatal(err)
	}
	got := f.keys(t)
	slices.Sort(got)
	slices.Sort(keep)
	if !slices.Equal(got, keep) {
		t.Errorf("after the sweep: %q, want %q", got, keep)
	}
}

// TestPeriodicTasksRunThroughTheQueue: the tasks enqueued at startup run
// on a worker pool, do their work and reschedule themselves one interval
// later (queued, not done): one live task per kind, however many times
// they are enqueued.
func TestPeriodicTasksRunThroughTheQueue(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.put(t, "datasets/orphan")
	f.finishTask(t, "old", false)
	for range 2 { // a second instance starting enqueues again: deduplicated
		err := f.store.InTx(ctx, func(tx *store.Tx) error {
			for _, kind := range Kinds {
				if _, _, err := tx.Enqueue(ctx, store.NewTask{Kind: kind, DedupeKey: kind, MaxAttempts: 3}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	pool := worker.New(f.store, slog.New(slog.DiscardHandler), worker.Options{
		Concurrency: 2, Lease: 30 * time.Second, PollInterval: 20 * time.Millisecond})
	f.at(30 * 24 * time.Hour).Register(pool)
	pool.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = pool.Shutdown(ctx)
	})
	deadline := time.Now().Add(time.Minute)
	for {
		got := f.taskStates(t)
		_, oldLeft := got["old"]
		if !oldLeft && len(f.keys(t)) == 0 && got[RetentionKind] == store.TaskQueued && got[OrphansKind] == store.TaskQueued {
			tasks, err := f.tasks.Tasks(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(tasks) != 2 {
				t.Fatalf("want one live task per kind, got %+v", tasks)
			}
			for _, task := range tasks {
				if task.Attempts != 0 {
					t.Errorf("%s: attempts %d, want 0 (a run reschedules, it does not fail)", task.Kind, task.Attempts)
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("periodic tasks did not run: tasks %v, objects %v", got, f.keys(t))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
