package runner

import (
	"context"
	"net/http"
	"testing"

	"github.com/finetune-studio/finetune-studio/app/internal/training"
)

// TestRunnerDeletesKaggleDatasetAfterSuccess: once the model is stored,
// the job's private dataset on Kaggle is deleted.
func TestRunnerDeletesKaggleDatasetAfterSuccess(t *testing.T) {
	f := newFixture(t, nil)
	j := f.newJob(t)
	got, err := f.runUntil(t, f.runner, j.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != training.StatusSucceeded || got.KaggleDataset == "" {
		t.Fatalf("status %s dataset %q, want succeeded with a Kaggle dataset", got.Status, got.KaggleDataset)
	}
	if ds := f.emu.Datasets(); len(ds) != 0 {
		t.Errorf("Kaggle datasets left after success: %+v, want none", ds)
	}
	// A live event stream ends at the terminal status: the deletion's event
	// must come before it, or a follower never sees it (and a stream
	// resumed later sees more than the live one did).
	evs, err := f.store.ListEvents(context.Background(), j.ID, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if last := evs[len(evs)-1]; last.Kind != training.EventStatus || last.ToStatus != training.StatusSucceeded {
		t.Errorf("last event = %s %q %q, want the status change to succeeded", last.Kind, last.ToStatus, last.Message)
	}
}

// TestRunnerOutlastsBriefInvisibility: Kaggle answers 403 for the new
// dataset and kernel for a moment after creating them. The job neither
// fails nor pushes twice: its kernel is followed to the end.
func TestRunnerOutlastsBriefInvisibility(t *testing.T) {
	f := newFixture(t, nil)
	f.emu.SetMissingStatus(http.StatusForbidden)
	f.emu.SetInvisibleLookups(3)
	j := f.newJob(t)
	got, err := f.runUntil(t, f.runner, j.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != training.StatusSucceeded {
		t.Fatalf("status %s (%s), want succeeded", got.Status, got.Error)
	}
	if n := f.pushes(j); n != 1 {
		t.Errorf("kernel pushed %d times, want 1", n)
	}
}
