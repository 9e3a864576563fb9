package runner

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/finetune-studio/finetune-studio/app/internal/kaggle"
	"github.com/finetune-studio/finetune-studio/app/internal/kaggle/kaggletest"
	"github.com/finetune-studio/finetune-studio/app/internal/training"
)

// onKaggle reports whether the emulator still holds dataset ref.
func (f *fixture) onKaggle(ref string) bool {
	return slices.ContainsFunc(f.emu.Datasets(), func(d kaggletest.Dataset) bool { return d.Ref == ref })
}

// TestSweepDeletesKaggleDatasetsOfFinishedJobs: the private Kaggle
// datasets of a job cancelled before its push, of a job that timed out
// while its kernel ran, and of a job cancelled while its kernel ran are
// deleted by the sweep once no kernel can still read them; a running job's
// dataset, and a finished job's whose kernel still runs, are left alone.
func TestSweepDeletesKaggleDatasetsOfFinishedJobs(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	f.emu.SetKernelProgress(0, 1_000_000, kaggle.KernelComplete, "") // kernels run until told otherwise
	svc := training.NewService(f.store, f.objects, training.ServiceConfig{BackendConfigured: true}, slog.New(slog.DiscardHandler))
	until := func(j training.Job, stop func(training.Job) bool) training.Job {
		t.Helper()
		got, err := f.runUntil(t, f.runner, j.ID, stop)
		if err != nil || got.KaggleDataset == "" || !f.onKaggle(got.KaggleDataset) {
			t.Fatalf("job %s: %s, dataset %q, %v; want its dataset on Kaggle", j.ID, got.Status, got.KaggleDataset, err)
		}
		return got
	}
	running := func(j training.Job) bool { return j.Status == training.StatusRunning }
	cancel := func(j training.Job) {
		t.Helper()
		if _, err := svc.CancelJob(ctx, j.ID); err != nil {
			t.Fatal(err)
		}
	}
	sweep := func(want int) {
		t.Helper()
		if n, err := f.runner.SweepKaggleDatasets(ctx, f.store); err != nil || n != want {
			t.Fatalf("sweep deleted %d, %v; want %d", n, err, want)
		}
	}

	// Cancelled after its dataset reached Kaggle, before any push.
	early := until(f.newJob(t), func(j training.Job) bool { return j.KaggleDataset != "" })
	if early.KaggleKernel != "" || early.PushStartedAt != nil {
		t.Fatalf("job %s pushed a kernel already; want it stopped before the push", early.ID)
	}
	cancel(early)
	// Cancelled while its kernel runs.
	cancelledRunning := until(f.newJob(t), running)
	cancel(cancelledRunning)
	// Still running: its dataset is in use.
	live := until(f.newJob(t), running)
	// Timed out while its kernel runs: failed, the kernel left running.
	timedOut := until(f.newJob(t), running)
	f.clock.Add(2 * time.Hour)
	if got, err := f.runUntil(t, f.runner, timedOut.ID, nil); err != nil || got.Status != training.StatusFailed || !f.onKaggle(got.KaggleDataset) {
		t.Fatalf("timed-out job: %s %v, dataset on Kaggle %v; want failed with its dataset kept for its running kernel", got.Status, err, f.onKaggle(got.KaggleDataset))
	}

	sweep(1)
	if f.onKaggle(early.KaggleDataset) {
		t.Error("the dataset of a job cancelled before its push is still on Kaggle")
	}
	for _, j := range []training.Job{cancelledRunning, live, timedOut} {
		if !f.onKaggle(j.KaggleDataset) {
			t.Errorf("job %s: dataset deleted while its kernel may still read it", j.ID)
		}
	}

	// The kernels of the finished jobs end; the live job's runs on.
	f.emu.SetKernelStatus(cancelledRunning.KaggleKernel, kaggle.KernelComplete, "")
	f.emu.SetKernelStatus(timedOut.KaggleKernel, kaggle.KernelError, "stopped by hand")
	sweep(2)
	for _, j := range []training.Job{cancelledRunning, timedOut} {
		if f.onKaggle(j.KaggleDataset) {
			t.Errorf("job %s: dataset still on Kaggle after its kernel ended", j.ID)
		}
		if !strings.Contains(f.events(t, j.ID), "deleted the job's private dataset copy on Kaggle ("+j.KaggleDataset+")") {
			t.Errorf("job %s: no event records the deletion", j.ID)
		}
	}
	if !f.onKaggle(live.KaggleDataset) {
		t.Error("a running job's dataset was deleted")
	}
	if got, _ := f.store.GetJob(ctx, live.ID); got.Status != training.StatusRunning {
		t.Errorf("running job: %s, want still running", got.Status)
	}
	// Recorded: the next pass finds nothing to delete and calls no
	// dataset endpoint.
	deletes := f.emu.Calls("/dataset/")
	sweep(0)
	if n := f.emu.Calls("/dataset/"); n != deletes {
		t.Errorf("a second sweep sent %d more dataset calls, want none", n-deletes)
	}
}

// TestFailureDeletesKaggleDatasetAtOnce: a job that fails before any
// kernel was pushed (Kaggle could not process its dataset) has its
// dataset deleted by the failure itself, without waiting for a sweep.
func TestFailureDeletesKaggleDatasetAtOnce(t *testing.T) {
	f := newFixture(t, nil)
	j := f.newJob(t)
	got, err := f.runUntil(t, f.runner, j.ID, func(j training.Job) bool { return j.KaggleDataset != "" })
	if err != nil {
		t.Fatal(err)
	}
	f.emu.SetDatasetStatus(got.KaggleDataset, kaggle.DatasetFailed)
	if got, err = f.runUntil(t, f.runner, j.ID, nil); err != nil || got.Status != training.StatusFailed {
		t.Fatalf("job: %s %v, want failed", got.Status, err)
	}
	if f.onKaggle(got.KaggleDataset) {
		t.Error("the failed job's dataset is still on Kaggle")
	}
	if n, err := f.runner.SweepKaggleDatasets(context.Background(), f.store); err != nil || n != 0 {
		t.Errorf("sweep after the failure deleted %d, %v; want nothing left", n, err)
	}
}

// cancelOnRecord cancels the job just before the runner records its
// Kaggle dataset, as a user whose cancel lands during the upload.
type cancelOnRecord struct {
	training.Repository
	svc *training.Service
}

func (r *cancelOnRecord) UpdateJob(ctx context.Context, id string, status training.Status, upd training.JobUpdate, kind training.EventKind, message string) (training.Job, error) {
	if upd.KaggleDataset != nil {
		if _, err := r.svc.CancelJob(ctx, id); err != nil {
			return training.Job{}, err
		}
	}
	return r.Repository.UpdateJob(ctx, id, status, upd, kind, message)
}

// TestCancelDuringUploadDeletesKaggleDataset: the job is cancelled while
// its dataset is being created on Kaggle, so the job row never records the
// copy. The runner deletes it instead of leaving it on Kaggle for good.
func TestCancelDuringUploadDeletesKaggleDataset(t *testing.T) {
	f := newFixture(t, nil)
	j := f.newJob(t)
	svc := training.NewService(f.store, f.objects, training.ServiceConfig{BackendConfigured: true}, slog.New(slog.DiscardHandler))
	r := New(&cancelOnRecord{Repository: f.store, svc: svc}, f.objects, f.client,
		Config{MaxRuntime: time.Hour, PollInterval: time.Second, Now: f.clock.Now}, slog.New(slog.DiscardHandler))
	got, err := f.runUntil(t, r, j.ID, nil)
	if err != nil || got.Status != training.StatusCancelled || got.KaggleDataset != "" {
		t.Fatalf("job: %s %q %v; want cancelled without a recorded Kaggle dataset", got.Status, got.KaggleDataset, err)
	}
	if n := f.emu.Calls("/datasets/create/new"); n != 1 {
		t.Fatalf("%d dataset creates, want 1", n)
	}
	if ds := f.emu.Datasets(); len(ds) != 0 {
		t.Errorf("Kaggle datasets left after the cancel: %+v, want none", ds)
	}
}
