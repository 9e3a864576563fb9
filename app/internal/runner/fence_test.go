package runner

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/finetune-studio/finetune-studio/app/internal/kaggle"
	"github.com/finetune-studio/finetune-studio/app/internal/training"
	"github.com/finetune-studio/finetune-studio/app/internal/worker"
)

// gatedKaggle holds kernel pushes until released, as a push that is slow
// to answer while its worker's lease runs out.
type gatedKaggle struct {
	Kaggle
	entered chan struct{}
	release chan struct{}
}

func (g *gatedKaggle) PushKernel(ctx context.Context, k kaggle.KernelPush) (kaggle.KernelRef, error) {
	close(g.entered)
	<-g.release
	return g.Kaggle.PushKernel(ctx, k)
}

// TestStaleWorkerCannotPushOverTheNewOwner: worker A is inside the kernel
// push when its lease passes to worker B. B must not push a second kernel
// (two versions, twice the GPU quota) but wait for A's to show up and
// adopt it; A, once its push returns, must not record anything.
func TestStaleWorkerCannotPushOverTheNewOwner(t *testing.T) {
	f := newFixture(t, nil)
	f.emu.SetKernelProgress(0, 1, kaggle.KernelComplete, "")
	j := f.newJob(t)
	ctx := context.Background()
	claim := func() worker.Task {
		t.Helper()
		st, err := f.store.ClaimTask(ctx, []string{training.TaskKind}, time.Hour)
		if err != nil || st == nil {
			t.Fatalf("claim: %v %v", st, err)
		}
		return worker.Task{ID: st.ID, Kind: st.Kind, Payload: st.Payload, DedupeKey: st.DedupeKey,
			Attempts: st.Attempts, MaxAttempts: st.MaxAttempts, LeaseToken: st.LeaseToken}
	}
	taskA := claim()
	gate := &gatedKaggle{Kaggle: f.client, entered: make(chan struct{}), release: make(chan struct{})}
	a := New(f.store, f.objects, gate, Config{MaxRuntime: time.Hour, PollInterval: time.Second, Now: f.clock.Now}, slog.New(slog.DiscardHandler))
	aDone := make(chan error, 1)
	go func() {
		for {
			err := a.Handle(ctx, taskA)
			if isReschedule(err) {
				continue // Kaggle is processing the dataset: step again at once
			}
			aDone <- err
			return
		}
	}()
	select {
	case <-gate.entered:
	case err := <-aDone:
		t.Fatalf("worker A finished (%v) before pushing", err)
	}

	// A's lease expires and B claims the task.
	if err := f.store.ReleaseTask(ctx, taskA.ID, taskA.LeaseToken); err != nil {
		t.Fatal(err)
	}
	taskB := claim()
	err := f.runner.Handle(ctx, taskB)
	if !isReschedule(err) {
		t.Fatalf("worker B's first step = %v, want a reschedule while A's push may land", err)
	}
	if n := f.pushes(j); n != 0 {
		t.Fatalf("worker B pushed %d kernels while A's push was in flight", n)
	}

	close(gate.release)
	if err := <-aDone; !errors.Is(err, training.ErrLeaseLost) {
		t.Fatalf("worker A after its push = %v, want ErrLeaseLost", err)
	}
	if got, _ := f.store.GetJob(ctx, j.ID); got.KaggleKernel != "" || got.Status != training.StatusUploading {
		t.Fatalf("the stale worker recorded its push: %s %q", got.Status, got.KaggleKernel)
	}

	// B adopts A's kernel and finishes the job.
	for range 100 {
		err := f.runner.Handle(ctx, taskB)
		if err == nil {
			break
		}
		if !isReschedule(err) {
			t.Fatalf("worker B: %v", err)
		}
	}
	got, _ := f.store.GetJob(ctx, j.ID)
	if got.Status != training.StatusSucceeded {
		t.Fatalf("job %s (%s), want succeeded", got.Status, got.Error)
	}
	if n := f.pushes(j); n != 1 {
		t.Errorf("kernel pushed %d times, want 1", n)
	}
}

// isReschedule reports whether err is a worker.Reschedule.
func isReschedule(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "reschedule after ")
}

// racingCreate lets another worker's create of the same dataset land just
// before ours, as when a worker that lost the task's lease was inside its
// create while the new owner checked for the dataset.
type racingCreate struct {
	Kaggle
	raced bool
}

func (r *racingCreate) CreateDataset(ctx context.Context, d kaggle.NewDataset) (string, error) {
	if !r.raced {
		r.raced = true
		if _, err := r.Kaggle.CreateDataset(ctx, d); err != nil {
			return "", err
		}
	}
	return r.Kaggle.CreateDataset(ctx, d)
}

// TestDatasetCreatedMeanwhileIsAdopted: Kaggle refuses our create because
// the slug was just taken by the stale worker's create; the job adopts
// that dataset instead of failing.
func TestDatasetCreatedMeanwhileIsAdopted(t *testing.T) {
	f := newFixture(t, nil)
	j := f.newJob(t)
	k := &racingCreate{Kaggle: f.client}
	r := New(f.store, f.objects, k, Config{MaxRuntime: time.Hour, PollInterval: time.Second, Now: f.clock.Now}, slog.New(slog.DiscardHandler))
	got, err := f.runUntil(t, r, j.ID, nil)
	if err != nil || got.Status != training.StatusSucceeded {
		t.Fatalf("job %s (%s) err %v, want succeeded with the adopted dataset", got.Status, got.Error, err)
	}
	if !k.raced || f.emu.Calls("/datasets/create/new") != 2 {
		t.Errorf("raced %v, %d creates; want the race and 2 creates", k.raced, f.emu.Calls("/datasets/create/new"))
	}
}
