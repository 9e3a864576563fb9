package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/finetune-studio/finetune-studio/app/internal/training"
	"github.com/finetune-studio/finetune-studio/app/internal/worker"
)

// Handle is the worker handler for training.TaskKind.
func (r *Runner) Handle(ctx context.Context, t worker.Task) error {
	var p training.TaskPayload
	if err := json.Unmarshal(t.Payload, &p); err != nil || !training.ValidID(p.JobID) {
		return worker.Permanent(fmt.Errorf("malformed %s task payload", training.TaskKind))
	}
	lease := training.Lease{TaskID: t.ID, Token: t.LeaseToken}
	wait, err := r.fenced(lease).Step(ctx, p.JobID)
	var retry *RetryError
	switch {
	case errors.As(err, &retry) && retry.After > 0:
		// The backend said when to come back: that is not a failure.
		return worker.Reschedule(retry.After)
	case err != nil:
		return err
	case wait > 0:
		return worker.Reschedule(wait)
	}
	return nil
}

// fenced returns a copy of r whose job writes apply only while lease is
// held: a worker that lost its task's lease to another cannot record
// Kaggle side effects (a pushed kernel, an uploaded dataset) or move the
// job over that worker's.
func (r *Runner) fenced(lease training.Lease) *Runner {
	c := *r
	c.repo = fencedRepo{Repository: r.repo, lease: lease}
	return &c
}

// fencedRepo sets the lease fence on every job write.
type fencedRepo struct {
	training.Repository
	lease training.Lease
}

func (f fencedRepo) Transition(ctx context.Context, id string, from, to training.Status, upd training.JobUpdate, message string) (training.Job, error) {
	upd.Fence = &f.lease
	return f.Repository.Transition(ctx, id, from, to, upd, message)
}

func (f fencedRepo) UpdateJob(ctx context.Context, id string, status training.Status, upd training.JobUpdate, kind training.EventKind, message string) (training.Job, error) {
	upd.Fence = &f.lease
	return f.Repository.UpdateJob(ctx, id, status, upd, kind, message)
}

// Register makes the pool run training jobs with r, and fail a job whose
// task the queue gives up on (its step kept failing, or its workers kept
// crashing), before the task is dead-lettered.
func (r *Runner) Register(p *worker.Pool) {
	p.Handle(training.TaskKind, r.Handle)
	p.HandleGiveUp(training.TaskKind, r.handleGiveUp)
}

// handleGiveUp is the GiveUp hook for training.TaskKind.
func (r *Runner) handleGiveUp(ctx context.Context, t worker.Task, cause error) error {
	var p training.TaskPayload
	if err := json.Unmarshal(t.Payload, &p); err != nil || !training.ValidID(p.JobID) {
		return nil // no job to fail
	}
	return r.fenced(training.Lease{TaskID: t.ID, Token: t.LeaseToken}).GiveUp(ctx, p.JobID, cause)
}
