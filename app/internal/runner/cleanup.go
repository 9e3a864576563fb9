package runner

import (
	"context"
	"strings"

	"github.com/finetune-studio/finetune-studio/app/internal/training"
)

// deleteKaggleDataset removes the job's private dataset from Kaggle once
// the kernel that read it has finished and its output is stored: private
// datasets count against the account's storage, and nothing reads it again
// (the slug belongs to this job alone). Best effort: a failure is logged,
// and the job's outcome stands.
func (r *Runner) deleteKaggleDataset(ctx context.Context, j training.Job) {
	owner, s, ok := strings.Cut(j.KaggleDataset, "/")
	if !ok {
		return
	}
	if err := r.kaggle.DeleteDataset(ctx, owner, s); err != nil {
		r.log.Warn("deleting the job's Kaggle dataset failed", "job_id", j.ID, "kaggle_dataset", j.KaggleDataset, "error", err.Error())
	}
}
