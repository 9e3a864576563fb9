package runner

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/finetune-studio/finetune-studio/app/internal/training"
)

// JobTasks is what reconciliation needs from the job and task tables;
// *store.Store satisfies it.
type JobTasks interface {
	KaggleDatasets
	// StrandedJobs lists unfinished jobs without a live task of kind.
	StrandedJobs(ctx context.Context, kind string, limit int) ([]training.StrandedJob, error)
	// RequeueJob enqueues step for an unfinished job.
	RequeueJob(ctx context.Context, jobID string, step training.Task) (bool, error)
}

// reconcileBatch bounds the jobs one pass handles; the next pass takes the
// rest.
const reconcileBatch = 100

// Reconcile finds unfinished jobs that no task will move again and
// finishes or restarts them: a job whose task was dead-lettered fails with
// the task's last error (the queue gave up, but failing the job did not
// land, e.g. the database was down at that moment); a job with no task at
// all, or only a finished one, gets a new task. It returns how many jobs
// it acted on. Safe to run on several instances at once: failing a job is
// a conditional transition and a new task is deduplicated by job id.
func (r *Runner) Reconcile(ctx context.Context, jobs JobTasks) (int, error) {
	stranded, err := jobs.StrandedJobs(ctx, training.TaskKind, reconcileBatch)
	if err != nil {
		return 0, err
	}
	var errs []error
	n := 0
	for _, sj := range stranded {
		if err := r.reconcileJob(ctx, jobs, sj); err != nil {
			errs = append(errs, fmt.Errorf("job %s: %w", sj.JobID, err))
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

func (r *Runner) reconcileJob(ctx context.Context, jobs JobTasks, sj training.StrandedJob) error {
	if sj.TaskState == "dead" {
		cause := sj.LastError
		if cause == "" {
			cause = "no error was recorded"
		}
		r.log.Warn("failing a job whose task was dead-lettered", "job_id", sj.JobID, "status", string(sj.Status), "attempts", sj.Attempts)
		return r.GiveUp(ctx, sj.JobID, errors.New(cause))
	}
	created, err := jobs.RequeueJob(ctx, sj.JobID, training.StepTask(sj.JobID))
	if created {
		r.log.Warn("requeued a job that had no live task", "job_id", sj.JobID, "status", string(sj.Status), "task_state", sj.TaskState)
	}
	return err
}

// RunReconciler calls Reconcile, then SweepKaggleDatasets, every interval
// until ctx ends, logging failures (the next pass tries again).
func (r *Runner) RunReconciler(ctx context.Context, jobs JobTasks, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		pass, cancel := context.WithTimeout(ctx, max(interval, time.Minute))
		if _, err := r.Reconcile(pass, jobs); err != nil && ctx.Err() == nil {
			r.log.Error("reconciling jobs failed", "error", err.Error())
		}
		if _, err := r.SweepKaggleDatasets(pass, jobs); err != nil && ctx.Err() == nil {
			r.log.Error("sweeping finished jobs' Kaggle datasets failed", "error", err.Error())
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
