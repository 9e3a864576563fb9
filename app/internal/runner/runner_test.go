package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/finetune-studio/finetune-studio/app/internal/blob"
	"github.com/finetune-studio/finetune-studio/app/internal/kaggle"
	"github.com/finetune-studio/finetune-studio/app/internal/kaggle/kaggletest"
	"github.com/finetune-studio/finetune-studio/app/internal/store"
	"github.com/finetune-studio/finetune-studio/app/internal/testenv"
	"github.com/finetune-studio/finetune-studio/app/internal/training"
	"github.com/finetune-studio/finetune-studio/app/internal/worker"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

type fixture struct {
	store   *store.Store
	db      *pgxpool.Pool // reads task rows, which only tests look at
	blob    *blob.Store
	objects training.Objects
	emu     *kaggletest.Server
	client  *kaggle.Client
	clock   *clock
	runner  *Runner
}

// clock is a settable test clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newFixture(t *testing.T, kcfg func(*kaggle.Config)) *fixture {
	t.Helper()
	return newFixtureAttempts(t, kcfg, 0)
}

// newFixtureAttempts is newFixture with jobs' tasks limited to maxAttempts
// (0: the store's default).
func newFixtureAttempts(t *testing.T, kcfg func(*kaggle.Config), maxAttempts int) *fixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dsn := testenv.NewDatabase(t)
	st, err := store.Open(ctx, store.Options{URL: dsn, Migrate: true, TaskMaxAttempts: maxAttempts}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("opening store: %v", err)
	}
	t.Cleanup(st.Close)
	m := testenv.StartMinIO(t)
	b, err := blob.Open(blob.Options{Endpoint: m.Endpoint, AccessKey: m.AccessKey, SecretKey: m.SecretKey,
		Region: "us-east-1", Bucket: testenv.UniqueName("runner"), PublicURL: &url.URL{Scheme: "http", Host: m.Endpoint}})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.EnsureBucket(ctx); err != nil {
		t.Fatal(err)
	}
	emu := kaggletest.NewServer(t)
	cfg := emu.Config()
	if kcfg != nil {
		kcfg(&cfg)
	}
	db, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	f := &fixture{store: st, db: db, blob: b, objects: b.TrainingObjects(), emu: emu, client: kaggle.New(cfg),
		clock: &clock{now: time.Now()}}
	f.runner = f.newRunner()
	return f
}

func (f *fixture) newRunner() *Runner {
	return New(f.store, f.objects, f.client, Config{MaxRuntime: time.Hour, PollInterval: time.Second, Now: f.clock.Now},
		slog.New(slog.DiscardHandler))
}

// chatDataset is a valid 12-example chat dataset.
func chatDataset() []byte {
	var b bytes.Buffer
	for i := range 12 {
		fmt.Fprintf(&b, `{"messages":[{"role":"user","content":"question %d"},{"role":"assistant","content":"answer %d"}]}`+"\n", i, i)
	}
	return b.Bytes()
}

// newJob stores a dataset (object and row) and queues a job on it.
func (f *fixture) newJob(t *testing.T) training.Job {
	t.Helper()
	ctx := context.Background()
	svc := training.NewService(f.store, f.objects, training.ServiceConfig{BaseModels: []string{"Qwen/Qwen2.5-0.5B-Instruct"},
		BackendConfigured: true, PresignExpiry: time.Minute}, slog.New(slog.DiscardHandler))
	up, err := svc.StoreUpload(ctx, bytes.NewReader(chatDataset()), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	ds, err := svc.CreateDataset(ctx, training.DatasetInput{Name: "chat"}, up)
	if err != nil {
		t.Fatal(err)
	}
	j, err := svc.CreateJob(ctx, training.JobInput{DatasetID: ds.ID, BaseModel: "Qwen/Qwen2.5-0.5B-Instruct"})
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// runUntil calls Step until the job leaves the running states or stop
// says so, failing after a generous number of steps. Waits the runner asks
// for are not slept: the emulator advances per poll, not per second.
func (f *fixture) runUntil(t *testing.T, r *Runner, id string, stop func(training.Job) bool) (training.Job, error) {
	t.Helper()
	for range 100 {
		wait, err := r.Step(context.Background(), id)
		j, gerr := f.store.GetJob(context.Background(), id)
		if gerr != nil {
			t.Fatal(gerr)
		}
		if err != nil {
			return j, err
		}
		if (wait == 0 && j.Status.Terminal()) || (stop != nil && stop(j)) {
			return j, nil
		}
	}
	t.Fatal("job did not finish within 100 steps")
	return training.Job{}, nil
}

func (f *fixture) pushes(j training.Job) int {
	return f.emu.PushCount(f.emu.Username() + "/" + slug(j))
}

func TestRunnerDrivesJobToModel(t *testing.T) {
	f := newFixture(t, nil)
	j := f.newJob(t)
	got, err := f.runUntil(t, f.runner, j.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != training.StatusSucceeded {
		t.Fatalf("status = %s (%s), want succeeded", got.Status, got.Error)
	}
	if n := f.pushes(j); n != 1 {
		t.Errorf("kernel pushed %d times, want 1", n)
	}
	// The dataset that reached Kaggle is the uploaded file, byte for byte.
	blobs := f.emu.Blobs()
	if len(blobs) != 1 {
		t.Fatalf("%d blobs uploaded, want 1", len(blobs))
	}
	data, err := f.emu.BlobData(blobs[0].Token)
	if err != nil || !bytes.Equal(data, chatDataset()) {
		t.Errorf("uploaded blob differs from the dataset (err %v)", err)
	}
	// The pushed notebook carries the job's real configuration.
	push := f.emu.Pushes()[0].Request
	if push.IsPrivate == nil || !*push.IsPrivate || push.EnableGpu == nil || !*push.EnableGpu || !strings.Contains(push.Text, "Qwen/Qwen2.5-0.5B-Instruct") || !strings.Contains(push.Text, j.ID) {
		t.Errorf("push = private %v gpu %v, notebook mentions model/job: %v/%v", push.IsPrivate != nil && *push.IsPrivate, push.EnableGpu != nil && *push.EnableGpu,
			strings.Contains(push.Text, "Qwen/Qwen2.5-0.5B-Instruct"), strings.Contains(push.Text, j.ID))
	}

	models, _, err := f.store.ListModels(context.Background(), training.Page{Limit: 10})
	if err != nil || len(models) != 1 {
		t.Fatalf("models = %d, err %v; want 1", len(models), err)
	}
	m := models[0]
	want := map[string]int64{}
	for _, file := range kaggletest.DefaultOutputFiles() {
		if !slices.Contains(kaggletest.KaggleOutputFiles, file.Name) { // Kaggle's own files stay out
			want[file.Name] = int64(len(file.Data))
		}
	}
	if len(m.Files) != len(want) {
		t.Errorf("model files = %+v, want %v", m.Files, want)
	}
	for _, file := range m.Files {
		if want[file.Name] != file.SizeBytes {
			t.Errorf("file %s size %d, want %d", file.Name, file.SizeBytes, want[file.Name])
		}
	}
	var metrics map[string]any
	if err := json.Unmarshal(m.Metrics, &metrics); err != nil || metrics["train_loss"] != 1.2345 {
		t.Errorf("metrics = %s, want train_loss 1.2345 from metrics.json", m.Metrics)
	}
	objs, err := f.blob.List(context.Background(), "models/"+j.ID+"/")
	if err != nil || len(objs) != len(want) {
		t.Errorf("objects under models/%s/ = %d, err %v; want %d", j.ID, len(objs), err, len(want))
	}

	evs, err := f.store.ListEvents(context.Background(), j.ID, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var path []string
	var sawLog bool
	for _, e := range evs {
		if e.Kind == training.EventStatus {
			path = append(path, string(e.ToStatus))
		}
		if e.Kind == training.EventLog && strings.Contains(e.Message, "Saved adapter") {
			sawLog = true
		}
	}
	if got, want := strings.Join(path, ">"), "queued>uploading>submitted>running>collecting>succeeded"; got != want {
		t.Errorf("status path = %s, want %s", got, want)
	}
	if !sawLog {
		t.Error("the kernel's log was not recorded as an event")
	}
}

func TestRunnerUnauthorizedFailsAtOnce(t *testing.T) {
	f := newFixture(t, nil)
	j := f.newJob(t)
	f.emu.SetCredentials(f.emu.Username(), "another-key-entirely", "")
	got, err := f.runUntil(t, f.runner, j.ID, nil)
	if err != nil {
		t.Fatalf("Step returned %v; a credentials error must fail the job, not retry", err)
	}
	if got.Status != training.StatusFailed || !strings.Contains(got.Error, "refused the credentials") {
		t.Errorf("job = %s %q, want failed with a credentials message", got.Status, got.Error)
	}
	if n := f.emu.Calls("/"); n > 3 {
		t.Errorf("%d calls to Kaggle after a 401; want no retries", n)
	}
}

func TestRunnerHonoursRetryAfterThenSucceeds(t *testing.T) {
	f := newFixture(t, func(c *kaggle.Config) { c.MaxRetryAfter = 100 * time.Millisecond })
	j := f.newJob(t)
	// A Retry-After longer than the client waits for itself comes back to
	// the runner, which asks to be rescheduled after exactly that delay.
	f.emu.Fail("/kernels/status", 429, 1).RetryAfter("7")
	var retry *RetryError
	var sawRetry bool
	for range 100 {
		_, err := f.runner.Step(context.Background(), j.ID)
		if errors.As(err, &retry) {
			sawRetry = true
			if retry.After != 7*time.Second {
				t.Errorf("retry after %s, want the server's 7s", retry.After)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := f.store.GetJob(context.Background(), j.ID); got.Status.Terminal() {
			if got.Status != training.StatusSucceeded {
				t.Fatalf("status %s (%s), want succeeded after the 429", got.Status, got.Error)
			}
			break
		}
	}
	if !sawRetry {
		t.Error("the 429 with Retry-After never reached the runner")
	}
	// A short Retry-After and 500s are absorbed by the client's own retries.
	j2 := f.newJob(t)
	f.emu.Fail("/kernels/status", 429, 1).RetryAfter("0")
	f.emu.Fail("/kernels/output", 500, 2)
	got, err := f.runUntil(t, f.runner, j2.ID, nil)
	if err != nil || got.Status != training.StatusSucceeded {
		t.Fatalf("after transient errors: status %s err %v", got.Status, err)
	}
}

func TestRunnerKernelErrorFailsWithKaggleMessage(t *testing.T) {
	f := newFixture(t, nil)
	f.emu.SetKernelProgress(0, 1, kaggle.KernelError, "CUDA out of memory")
	j := f.newJob(t)
	got, err := f.runUntil(t, f.runner, j.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != training.StatusFailed || !strings.Contains(got.Error, "CUDA out of memory") {
		t.Errorf("job = %s %q, want failed with Kaggle's message", got.Status, got.Error)
	}
	if models, _, _ := f.store.ListModels(context.Background(), training.Page{Limit: 1}); len(models) != 0 {
		t.Error("a failed job created a model")
	}
	evs, err := f.store.ListEvents(context.Background(), j.ID, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var sawTraceback bool
	for _, e := range evs {
		sawTraceback = sawTraceback || (e.Kind == training.EventLog && strings.Contains(e.Message, "Traceback"))
	}
	if !sawTraceback {
		t.Error("the failed kernel's log is not among the job's events")
	}
}

func TestRunnerTimeout(t *testing.T) {
	f := newFixture(t, nil)
	f.emu.SetKernelProgress(0, 1000, kaggle.KernelComplete, "")
	j := f.newJob(t)
	got, err := f.runUntil(t, f.runner, j.ID, func(j training.Job) bool { return j.Status == training.StatusRunning })
	if err != nil || got.Status != training.StatusRunning {
		t.Fatalf("status %s err %v, want running", got.Status, err)
	}
	f.clock.Add(time.Hour + time.Minute)
	got, err = f.runUntil(t, f.runner, j.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != training.StatusFailed || !strings.Contains(got.Error, "timeout") {
		t.Errorf("job = %s %q, want failed with a timeout", got.Status, got.Error)
	}
	// The kernel cannot be stopped through the API: the user is told where.
	if !strings.Contains(got.Error, "https://www.kaggle.com/code/"+got.KaggleKernel) {
		t.Errorf("error %q does not say where to stop the kernel", got.Error)
	}
}

func TestRunnerRestartResumesWithoutSecondPush(t *testing.T) {
	f := newFixture(t, nil)
	f.emu.SetKernelProgress(1, 3, kaggle.KernelComplete, "")
	j := f.newJob(t)
	_, err := f.runUntil(t, f.runner, j.ID, func(j training.Job) bool { return j.Status == training.StatusRunning })
	if err != nil {
		t.Fatal(err)
	}
	// A new process: a fresh runner with nothing in memory.
	restarted := f.newRunner()
	got, err := f.runUntil(t, restarted, j.ID, nil)
	if err != nil || got.Status != training.StatusSucceeded {
		t.Fatalf("after restart: status %s err %v", got.Status, err)
	}
	if n := f.pushes(j); n != 1 {
		t.Errorf("kernel pushed %d times across the restart, want 1", n)
	}
}

func TestRunnerLostPushAnswerIsNotPushedAgain(t *testing.T) {
	f := newFixture(t, nil)
	j := f.newJob(t)
	// Kaggle processes the push but the answer is lost (as in a crash right
	// after pushing): the next step must find the kernel, not push again.
	f.emu.Inject(kaggletest.Fault{Path: "/kernels/push", Status: 500, AfterHandling: true, Times: 1})
	got, err := f.runUntil(t, f.runner, j.ID, nil)
	for err != nil {
		got, err = f.runUntil(t, f.newRunner(), j.ID, nil)
	}
	if got.Status != training.StatusSucceeded {
		t.Fatalf("status %s (%s), want succeeded", got.Status, got.Error)
	}
	if n := f.pushes(j); n != 1 {
		t.Errorf("kernel pushed %d times, want 1", n)
	}
}

// countingRepo counts the dataset reads the runner makes.
type countingRepo struct {
	training.Repository
	mu          sync.Mutex
	datasetRead int
}

func (c *countingRepo) GetDataset(ctx context.Context, id string) (training.Dataset, error) {
	c.mu.Lock()
	c.datasetRead++
	c.mu.Unlock()
	return c.Repository.GetDataset(ctx, id)
}

// TestRunnerReadsTheDatasetOnlyToUploadAndRender polls a dataset Kaggle
// takes a while to process: the dataset row is read to upload the file and
// to render the notebook, not on every poll.
func TestRunnerReadsTheDatasetOnlyToUploadAndRender(t *testing.T) {
	f := newFixture(t, nil)
	f.emu.SetDatasetPendingPolls(4)
	j := f.newJob(t)
	repo := &countingRepo{Repository: f.store}
	r := New(repo, f.objects, f.client, Config{MaxRuntime: time.Hour, PollInterval: time.Second, Now: f.clock.Now},
		slog.New(slog.DiscardHandler))
	got, err := f.runUntil(t, r, j.ID, nil)
	if err != nil || got.Status != training.StatusSucceeded {
		t.Fatalf("status %s (%s) err %v, want succeeded", got.Status, got.Error, err)
	}
	if n := f.emu.Calls("/datasets/status/"); n < 5 {
		t.Fatalf("%d dataset status polls, want at least 5 (4 pending, then ready)", n)
	}
	if repo.datasetRead != 2 {
		t.Errorf("dataset read %d times, want 2 (upload, render)", repo.datasetRead)
	}
}

// TestRunnerAdoptsDatasetOfLostCreateAnswer: Kaggle creates the dataset
// but its answer is lost. The next step adopts the dataset instead of
// uploading again, and uses the status it read to find it rather than
// asking Kaggle a second time.
func TestRunnerAdoptsDatasetOfLostCreateAnswer(t *testing.T) {
	f := newFixture(t, nil)
	j := f.newJob(t)
	f.emu.Inject(kaggletest.Fault{Path: "/datasets/create/new", Status: 500, AfterHandling: true, Times: 1})
	ctx := context.Background()
	if _, err := f.runner.Step(ctx, j.ID); err == nil {
		t.Fatal("the lost answer was not reported")
	}
	before := f.emu.Calls("/datasets/status/")
	if _, err := f.runner.Step(ctx, j.ID); err != nil {
		t.Fatal(err)
	}
	if n := f.emu.Calls("/datasets/status/") - before; n != 1 {
		t.Errorf("adopting the dataset asked its status %d times, want 1", n)
	}
	got, err := f.runUntil(t, f.runner, j.ID, nil)
	if err != nil || got.Status != training.StatusSucceeded {
		t.Fatalf("status %s (%s) err %v, want succeeded", got.Status, got.Error, err)
	}
	// Created once (the lost answer's request), and deleted after success.
	if n, left := f.emu.Calls("/datasets/create/new"), len(f.emu.Datasets()); n != 1 || left != 0 {
		t.Errorf("%d dataset creates and %d datasets left, want 1 and 0", n, left)
	}
	if n := len(f.emu.Blobs()); n != 1 {
		t.Errorf("%d blob uploads, want 1", n)
	}
}

func TestRunnerStopsFollowingCancelledJob(t *testing.T) {
	f := newFixture(t, nil)
	f.emu.SetKernelProgress(0, 1000, kaggle.KernelComplete, "")
	j := f.newJob(t)
	if _, err := f.runUntil(t, f.runner, j.ID, func(j training.Job) bool { return j.Status == training.StatusRunning }); err != nil {
		t.Fatal(err)
	}
	svc := training.NewService(f.store, f.objects, training.ServiceConfig{BackendConfigured: true}, slog.New(slog.DiscardHandler))
	if _, err := svc.CancelJob(context.Background(), j.ID); err != nil {
		t.Fatal(err)
	}
	before := f.emu.Calls("/kernels/")
	wait, err := f.runner.Step(context.Background(), j.ID)
	if err != nil || wait != 0 {
		t.Fatalf("Step on a cancelled job = %s, %v; want done", wait, err)
	}
	if after := f.emu.Calls("/kernels/"); after != before {
		t.Errorf("a cancelled job was still polled on Kaggle (%d calls)", after-before)
	}
}

// TestCancelRacingRunner cancels while the runner is working: whatever the
// interleaving, the job ends cancelled (or finished first), never
// "un-cancelled" by the worker, and a cancelled job never starts.
func TestCancelRacingRunner(t *testing.T) {
	f := newFixture(t, nil)
	svc := training.NewService(f.store, f.objects, training.ServiceConfig{BackendConfigured: true}, slog.New(slog.DiscardHandler))
	for i := range 5 {
		j := f.newJob(t)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				wait, err := f.runner.Step(context.Background(), j.ID)
				if err != nil {
					t.Errorf("round %d: Step: %v", i, err)
					return
				}
				if wait == 0 {
					return
				}
			}
		}()
		_, cancelErr := svc.CancelJob(context.Background(), j.ID)
		wg.Wait()
		got, err := f.store.GetJob(context.Background(), j.ID)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case cancelErr == nil && got.Status != training.StatusCancelled:
			t.Errorf("round %d: cancel succeeded but the job ended %s", i, got.Status)
		case cancelErr != nil && !got.Status.Terminal():
			t.Errorf("round %d: cancel failed (%v) and the job is %s", i, cancelErr, got.Status)
		}
	}
	// Cancelled before any worker ran: it never starts.
	j := f.newJob(t)
	if _, err := svc.CancelJob(context.Background(), j.ID); err != nil {
		t.Fatal(err)
	}
	pushesBefore, blobsBefore := len(f.emu.Pushes()), len(f.emu.Blobs())
	if wait, err := f.runner.Step(context.Background(), j.ID); err != nil || wait != 0 {
		t.Fatalf("Step = %s, %v", wait, err)
	}
	if len(f.emu.Pushes()) != pushesBefore || len(f.emu.Blobs()) != blobsBefore {
		t.Error("a job cancelled while queued reached Kaggle")
	}
	if got, _ := f.store.GetJob(context.Background(), j.ID); got.StartedAt != nil {
		t.Error("a job cancelled while queued has a start time")
	}
}

// TestHandleReschedulesOnRetryAfter: a long Retry-After is a reschedule,
// not a failed attempt; other failures are returned for the queue to retry.
func TestHandleReschedulesOnRetryAfter(t *testing.T) {
	f := newFixture(t, func(c *kaggle.Config) { c.MaxRetryAfter = 100 * time.Millisecond })
	f.emu.SetKernelProgress(0, 1000, kaggle.KernelComplete, "")
	j := f.newJob(t)
	if _, err := f.runUntil(t, f.runner, j.ID, func(j training.Job) bool { return j.Status == training.StatusRunning }); err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(training.TaskPayload{JobID: j.ID})
	task := worker.Task{Kind: training.TaskKind, Payload: payload, Attempts: 0, MaxAttempts: 3}

	f.emu.Fail("/kernels/status", 429, 1).RetryAfter("30")
	err := f.runner.Handle(context.Background(), task)
	if err == nil || err.Error() != worker.Reschedule(30*time.Second).Error() {
		t.Errorf("429 with Retry-After 30: Handle = %v, want a reschedule after 30s", err)
	}

	f.emu.Fail("/kernels/status", 500, 0)
	task.Attempts = 2 // the last one: giving up is the queue's GiveUp hook's job
	if err := f.runner.Handle(context.Background(), task); err == nil {
		t.Fatal("a failing step returned nil")
	}
	if got, _ := f.store.GetJob(context.Background(), j.ID); got.Status != training.StatusRunning {
		t.Fatalf("job %s after a failed step, want still running", got.Status)
	}

	bad := worker.Task{Kind: training.TaskKind, Payload: []byte(`{"job_id":"x"}`), MaxAttempts: 3}
	if err := f.runner.Handle(context.Background(), bad); err == nil {
		t.Error("a malformed payload was accepted")
	}
}

// TestRunnerKaggleRefusalFailsAtOnce: Kaggle refuses the push with a 400
// and its {"code","message"} body. The job fails at once, with Kaggle's
// message in its error and events; the push is not retried.
func TestRunnerKaggleRefusalFailsAtOnce(t *testing.T) {
	f := newFixture(t, nil)
	f.emu.Inject(kaggletest.Fault{Path: "/kernels/push", Status: 400, Message: "kernel source must be less than 1 megabytes"})
	j := f.newJob(t)
	got, err := f.runUntil(t, f.runner, j.ID, nil)
	if err != nil {
		t.Fatalf("Step returned %v; a refusal must fail the job, not be retried", err)
	}
	const want = "Kaggle refused the kernel push (HTTP 400): kernel source must be less than 1 megabytes"
	if got.Status != training.StatusFailed || got.Error != want {
		t.Errorf("job = %s %q, want failed with %q", got.Status, got.Error, want)
	}
	evs, err := f.store.ListEvents(context.Background(), j.ID, 0, 100)
	if err != nil || len(evs) == 0 || evs[len(evs)-1].Message != want {
		t.Errorf("last event = %+v (%v), want the failure with Kaggle's message", evs[len(evs)-1], err)
	}
	if n := f.emu.Calls("/kernels/push"); n != 1 {
		t.Errorf("%d pushes, want 1", n)
	}
}
