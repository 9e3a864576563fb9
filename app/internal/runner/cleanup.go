package runner

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/finetune-studio/finetune-studio/app/internal/kaggle"
	"github.com/finetune-studio/finetune-studio/app/internal/training"
)

// A finished job's private dataset copy on Kaggle is deleted once no
// kernel of the job can still read it: private datasets count against the
// account's storage, and nothing reads the copy again (its slug belongs to
// this job alone). A job that fails in the runner, or succeeds, has it
// deleted at once when no kernel of it may still run; every other case
// (a job cancelled through the API, which has no Kaggle client; a kernel
// that may still run; a deletion that failed or never happened because a
// process stopped) is left to SweepKaggleDatasets, which the reconciler
// runs every pass. A kernel that may still run keeps its input: Kaggle's
// public API cannot stop a kernel, and nothing Kaggle publishes says a
// running session keeps a dataset deleted under it, so the copy waits
// until the kernel has ended. Deleting is best effort: a failure is
// logged and retried by the next sweep; the job's outcome stands.

// KaggleDatasets is what the sweep needs from the job table; *store.Store
// satisfies it.
type KaggleDatasets interface {
	// KaggleDatasetsToDelete lists finished jobs whose Kaggle dataset copy,
	// owned by owner, is still to delete.
	KaggleDatasetsToDelete(ctx context.Context, owner string, limit int) ([]training.Job, error)
}

// errKernelMayRun says a job's dataset copy is kept for a kernel that may
// still read it.
var errKernelMayRun = errors.New("a kernel of the job may still be running")

// jobKernel returns the Kaggle kernel a job may have started ("owner/slug"),
// or "" when no push was ever started. A push whose answer was lost left
// no reference, but the kernel's slug derives from the job.
func (r *Runner) jobKernel(j training.Job) string {
	switch {
	case j.KaggleKernel != "":
		return j.KaggleKernel
	case j.PushStartedAt != nil:
		return r.kaggle.Username() + "/" + slug(j)
	}
	return ""
}

// kernelEnded reports whether a kernel status is final: the run is over
// and reads no input again.
func kernelEnded(status string) bool {
	switch status {
	case kaggle.KernelComplete, kaggle.KernelError, kaggle.KernelCancelAcknowledged:
		return true
	}
	return false
}

// deleteKaggleDatasetNow deletes a finished job's dataset copy when the
// job row alone shows no kernel of it may still run (none was pushed, or
// its last status was final), logging a failure; otherwise, and on
// failure, the sweep takes it.
func (r *Runner) deleteKaggleDatasetNow(ctx context.Context, j training.Job) {
	if j.KaggleDataset == "" || (r.jobKernel(j) != "" && !kernelEnded(j.KaggleStatus)) {
		return
	}
	if err := r.deleteKaggleDataset(ctx, j, false); err != nil {
		r.log.Warn("deleting the job's Kaggle dataset failed", "job_id", j.ID, "kaggle_dataset", j.KaggleDataset, "error", err.Error())
	}
}

// deleteUnrecordedDataset deletes the Kaggle dataset copy ref that the
// upload of job id created but could not record because the job moved on
// meanwhile: if the job has finished (cancelled during the upload) and
// holds no copy, nothing else knows this one. A job that another worker
// took over is left alone: that worker adopts the same copy.
func (r *Runner) deleteUnrecordedDataset(ctx context.Context, id, ref string) {
	j, err := r.repo.GetJob(ctx, id)
	if err != nil || !j.Status.Terminal() || j.KaggleDataset != "" {
		return
	}
	owner, s, _ := strings.Cut(ref, "/")
	if err := r.kaggle.DeleteDataset(ctx, owner, s); err != nil {
		r.log.Warn("deleting the job's Kaggle dataset failed", "job_id", id, "kaggle_dataset", ref, "error", err.Error())
		return
	}
	r.log.Info("deleted the Kaggle dataset of a job that finished during its upload", "job_id", id, "kaggle_dataset", ref)
}

// deleteKaggleDataset deletes finished job j's dataset copy on Kaggle and
// records it. With askKernel, a kernel of the job whose last known status
// is not final is asked for its status first, and errKernelMayRun returned
// while it may still run.
func (r *Runner) deleteKaggleDataset(ctx context.Context, j training.Job, askKernel bool) error {
	owner, s, ok := strings.Cut(j.KaggleDataset, "/")
	if !ok {
		return nil
	}
	if owner != r.kaggle.Username() {
		// Created under other credentials: these cannot delete it.
		return nil
	}
	if k := r.jobKernel(j); askKernel && k != "" && !kernelEnded(j.KaggleStatus) {
		if err := r.kernelGone(ctx, j, k); err != nil {
			return err
		}
	}
	if err := r.kaggle.DeleteDataset(ctx, owner, s); err != nil {
		return err
	}
	return r.repo.MarkKaggleDatasetDeleted(ctx, j.ID, j.KaggleDataset)
}

// kernelGone returns nil when kernel ref of job j has ended or does not
// exist, errKernelMayRun while it may still run, and the error of a
// status lookup that failed.
func (r *Runner) kernelGone(ctx context.Context, j training.Job, ref string) error {
	owner, s, _ := strings.Cut(ref, "/")
	st, err := r.kaggle.KernelStatus(ctx, owner, s)
	switch {
	case errors.Is(err, kaggle.ErrNotFound):
		// Never pushed, or deleted by hand; but a kernel pushed moments
		// ago can still be invisible (PushGrace).
		if j.PushStartedAt != nil && r.cfg.Now().Before(j.PushStartedAt.Add(r.cfg.PushGrace)) {
			return errKernelMayRun
		}
		return nil
	case err != nil:
		return fmt.Errorf("asking whether the job's kernel still runs: %w", err)
	case !kernelEnded(st.Status):
		return errKernelMayRun
	}
	return nil
}

// SweepKaggleDatasets deletes the Kaggle dataset copies of finished jobs
// that still have one and whose kernels, if any, have ended (see above).
// It returns how many it deleted. Failures are logged per job and retried
// by the next sweep; only failing to list the jobs is returned. Safe to
// run on several instances at once: deleting is idempotent and the record
// is written once.
func (r *Runner) SweepKaggleDatasets(ctx context.Context, jobs KaggleDatasets) (int, error) {
	pending, err := jobs.KaggleDatasetsToDelete(ctx, r.kaggle.Username(), reconcileBatch)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, j := range pending {
		err := r.deleteKaggleDataset(ctx, j, true)
		switch {
		case errors.Is(err, errKernelMayRun):
			continue
		case err != nil:
			if ctx.Err() != nil {
				return n, ctx.Err()
			}
			r.log.Warn("deleting a finished job's Kaggle dataset failed", "job_id", j.ID, "kaggle_dataset", j.KaggleDataset, "error", err.Error())
			continue
		}
		r.log.Info("deleted a finished job's Kaggle dataset", "job_id", j.ID, "kaggle_dataset", j.KaggleDataset, "status", string(j.Status))
		n++
	}
	return n, nil
}
