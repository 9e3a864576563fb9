package runner

import (
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
}
